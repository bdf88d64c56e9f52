"""Load text documents from files and directories: .txt/.md (utf-8, utf-8-sig, gb18030), JSON arrays
of strings (MedicalGPT-zh book_data.json), JSON / JSON Lines records with a text field, PDF (extra
`[pdf]`) and .docx (extra `[docx]`).

Formats are sniffed from content (a `.txt` may hold JSON Lines), encodings are detected and reported,
and every unreadable item becomes a reject row naming its file and line. Shared by build-book-qa and
build-pt.
"""

from __future__ import annotations

import fnmatch
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medmill.builders.readers.textio import (
    DecodedText,
    JsonItem,
    detect_encoding,
    iter_json_items,
    sniff_json_layout,
)
from medmill.schemas import RejectRow, Source
from medmill.schemas.errors import MedmillError

DEFAULT_INCLUDE = ("*.txt", "*.md", "*.markdown", "*.json", "*.jsonl", "*.pdf", "*.docx")
TEXT_FIELDS = ("text", "content", "正文", "内容", "document", "passage", "指南")
_JSON_EXTENSIONS = {".json", ".jsonl", ".ndjson"}


@dataclass
class Document:
    """One document's raw text. `name` is stable across machines (relative to the input given)."""

    name: str
    path: Path
    text: str
    format: str  # txt | md | json | pdf | docx
    encoding: str | None = None
    line: int | None = None  # line where a JSON item starts
    pages: int | None = None  # PDF pages (their texts are joined with form feeds)


@dataclass
class LoadedDocuments:
    documents: list[Document] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)  # file name -> detected encoding


def _reject(reason: str, message: str, name: str, line: int | None = None, raw: object = None) -> RejectRow:
    return RejectRow(
        stage="read",
        reason=reason,
        message=message,
        source=Source(file=name, line=line, builder="documents"),
        raw=raw,
    )


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def collect_files(
    inputs: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = (), skip: Iterable[Path] = ()
) -> list[tuple[Path, str]]:
    """(path, stable name) of every input file; directories are walked recursively.

    Files named directly are always read; inside directories `include` (default: the known text
    formats) and `exclude` globs apply to the path relative to the directory, and hidden files and
    anything under `skip` (the build's own out dir and LLM cache) are left out.
    """
    skipped = [Path(x).resolve() for x in skip]
    found: list[tuple[Path, str]] = []
    for given in inputs:
        p = Path(given)
        if p.is_file():
            if exclude and _matches(p.name, exclude):
                continue
            found.append((p, p.name))
        elif p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                rel = f.relative_to(p).as_posix()
                if any(part.startswith(".") for part in rel.split("/")):
                    continue
                if not _matches(rel, include or DEFAULT_INCLUDE) or (exclude and _matches(rel, exclude)):
                    continue
                if any(f.resolve().is_relative_to(x) for x in skipped):
                    continue
                found.append((f, f"{p.resolve().name or p.resolve().as_posix()}/{rel}"))
        else:
            raise MedmillError(f"no such file or directory: {p}")
    seen: set[Path] = set()
    unique = []
    for path, name in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, name))
    # two inputs with one name (a/guide.txt b/guide.txt): name them by the path given, so sources stay apart
    names = Counter(name for _, name in unique)
    return [(path, path.as_posix() if names[name] > 1 else name) for path, name in unique]


def load_documents(
    inputs: Iterable[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    text_field: str | None = None,
    skip: Iterable[Path] = (),
) -> LoadedDocuments:
    """Read every input into documents; unreadable files and items become reject rows."""
    out = LoadedDocuments()
    files = collect_files(inputs, include, exclude, skip)
    if not files:
        raise MedmillError("no input files found (check the paths and --include/--exclude globs)")
    for path, name in files:
        out.files.append(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            out.rejects.append(_reject("unreadable", f"cannot read {path}: {e.strerror}", name))
            continue
        if data.startswith(b"%PDF"):
            _load_pdf(path, name, out)
        elif data.startswith(b"PK\x03\x04") and _is_docx(path):
            _load_docx(path, name, out)
        else:
            _load_text(path, name, data, text_field, out)
    return out


def not_text_problem(data: bytes) -> str | None:
    """Why bytes are no utf-8/gb18030 text although they might decode (UTF-16, binary), else None.

    UTF-16 without a BOM decodes as gb18030 mojibake; NUL bytes never occur in utf-8 or gb18030 text.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (byte order mark); convert the file to UTF-8"
    if b"\x00" in data[:65536]:
        return "holds NUL bytes: UTF-16 text without a byte order mark, or a binary file; convert it to UTF-8"
    return None


def _load_text(path: Path, name: str, data: bytes, text_field: str | None, out: LoadedDocuments) -> None:
    problem = not_text_problem(data)
    if problem is not None:
        out.rejects.append(_reject("undecodable", f"{name}: {problem}", name))
        return
    try:
        encoding = detect_encoding(data)
    except MedmillError as e:
        out.rejects.append(_reject("undecodable", f"{name}: {e}", name))
        return
    text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    out.encodings[name] = encoding
    if _looks_like_json(path, text):
        _load_json(DecodedText(path, text, encoding), name, text_field, out)
        return
    if not text.strip():
        out.rejects.append(_reject("empty", f"{name} holds no text", name))
        return
    fmt = "md" if path.suffix.lower() in {".md", ".markdown"} else "txt"
    out.documents.append(Document(name=name, path=path, text=text, format=fmt, encoding=encoding))


def _looks_like_json(path: Path, text: str) -> bool:
    """JSON by content; a .txt/.md that merely starts with '[' or '{' stays text unless it parses."""
    layout = sniff_json_layout(text)
    if layout == "none":
        return False
    if path.suffix.lower() in _JSON_EXTENSIONS:
        return True
    items = iter_json_items(DecodedText(path, text, "utf-8"))
    if layout == "array":  # "[1] 参考文献一。" starts like an array; only a whole array counts
        return all(item.error is None for item in items)
    first = next(items, None)
    return first is not None and first.error is None


def _load_json(decoded: DecodedText, name: str, text_field: str | None, out: LoadedDocuments) -> None:
    fields = (text_field,) if text_field else TEXT_FIELDS
    try:
        items = unwrap_keyed_object(list(iter_json_items(decoded)))
    except MedmillError as e:
        out.rejects.append(_reject("not_json", str(e), name))
        return
    for index, item in items:
        if item.error:
            out.rejects.append(_reject("invalid_json", item.error, name, item.line, item.raw))
            continue
        value = item.value
        if isinstance(value, dict):
            text = next((value[f] for f in fields if isinstance(value.get(f), str)), None)
            if text is None:
                wanted = text_field or "/".join(TEXT_FIELDS)
                out.rejects.append(
                    _reject(
                        "no_text_field",
                        f"record has no string field {wanted} (--text-field)",
                        name,
                        item.line,
                        value,
                    )
                )
                continue
        elif isinstance(value, str):
            text = value
        else:
            out.rejects.append(
                _reject(
                    "not_text",
                    f"JSON item is a {type(value).__name__}, expected a string or an object",
                    name,
                    item.line,
                )
            )
            continue
        if not text.strip():
            out.rejects.append(_reject("empty", "empty text", name, item.line))
            continue
        out.documents.append(
            Document(
                name=f"{name}#{index}",
                path=decoded.path,
                text=text.replace("\r\n", "\n").replace("\r", "\n"),
                format="json",
                encoding=decoded.encoding,
                line=item.line,
            )
        )


def unwrap_keyed_object(items: list[JsonItem]) -> list[tuple[str, JsonItem]]:
    """(key, item) pairs; the key is the item's index, or its key in a keyed collection.

    A single JSON object whose keys are all indices and whose values are all objects or strings
    (MedicalGPT-zh book_based_qa.json: {"27": {"指南": ...}, ...}) is a collection: its values are the items."""
    if len(items) == 1 and not items[0].error and isinstance(items[0].value, dict) and items[0].value:
        obj: dict = items[0].value
        if all(k.strip().isdigit() for k in obj) and all(isinstance(v, (dict, str)) for v in obj.values()):
            return [(k.strip(), JsonItem(line=items[0].line, value=v)) for k, v in obj.items()]
    return [(str(i), item) for i, item in enumerate(items)]


def _load_pdf(path: Path, name: str, out: LoadedDocuments) -> None:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise MedmillError(
            f"{name} is a PDF; reading PDFs needs the pdf extra: pip install 'medmill[pdf]'"
        ) from None
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as e:  # noqa: BLE001 - a malformed PDF makes pypdf raise anything (PdfReadError, struct
        # errors, TypeError ...); one bad file must not end the run
        out.rejects.append(_reject("unreadable_pdf", f"{name}: {type(e).__name__}: {e}", name))
        return
    if not any(p.strip() for p in pages):
        out.rejects.append(
            _reject("no_text", f"{name}: no extractable text (a scanned PDF? OCR it first)", name)
        )
        return
    out.documents.append(
        Document(name=name, path=path, text="\f".join(pages), format="pdf", pages=len(pages))
    )


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "word/document.xml" in z.namelist()
    except zipfile.BadZipFile:
        return False


def _load_docx(path: Path, name: str, out: LoadedDocuments) -> None:
    """Paragraphs and table rows in document order; Word heading styles become Markdown headings."""
    try:
        import docx
        from docx.table import Table
    except ImportError:
        raise MedmillError(
            f"{name} is a .docx; reading it needs the docx extra: pip install 'medmill[docx]'"
        ) from None
    try:
        document = docx.Document(str(path))
        blocks = list(document.iter_inner_content())
        styles = [b.style.name if not isinstance(b, Table) and b.style is not None else "" for b in blocks]
        shift = 1 if "Title" in styles else 0  # the title sits above Heading 1
        lines: list[str] = []
        for block, style in zip(blocks, styles, strict=True):
            if isinstance(block, Table):
                for row in block.rows:
                    cells, seen = [], set()
                    for c in row.cells:  # a merged cell is returned once per grid column it spans
                        if id(c._tc) not in seen:
                            seen.add(id(c._tc))
                            cells.append(c.text.strip())
                    lines.append(" | ".join(c for c in cells if c))
                continue
            text = block.text.strip()
            if not text:
                lines.append("")
                continue
            level = _heading_level(style)
            if level and style != "Title":
                level = min(6, level + shift)
            lines.append(f"{'#' * level} {text}" if level else text)
    except (ValueError, KeyError, zipfile.BadZipFile, SyntaxError) as e:  # lxml's XMLSyntaxError is a SyntaxError
        out.rejects.append(_reject("unreadable_docx", f"{name}: {type(e).__name__}: {e}", name))
        return
    except Exception as e:  # noqa: BLE001 - python-docx raises its own errors (PackageNotFoundError ...) on broken files
        out.rejects.append(_reject("unreadable_docx", f"{name}: {type(e).__name__}: {e}", name))
        return
    text = "\n".join(lines)
    if not text.strip():
        out.rejects.append(_reject("empty", f"{name} holds no text", name))
        return
    out.documents.append(Document(name=name, path=path, text=text, format="docx"))


def _heading_level(style: str) -> int:
    """'Heading 2' / '标题 2' -> 2; 'Title' -> 1; anything else -> 0."""
    if style == "Title":
        return 1
    for prefix in ("Heading ", "标题 ", "标题"):
        if style.startswith(prefix) and style[len(prefix) :].strip().isdigit():
            return min(6, int(style[len(prefix) :].strip()))
    return 0
