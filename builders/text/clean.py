"""Cleaning that textbook and guideline texts need before they are chunked or used for pretraining.

Real artefacts (../shared/samples): page numbers glued to running headers (`2第一章总论`), lines broken
mid-sentence by PDF extraction, full-width spaces, headers/footers repeated on every page, citation
marks (`[11]`), OCR slips in heading numbers (`—、` for `一、`, `（－）` for `（一）`) and glued headings
(`第一节感染与免疫—、感染的概念`). Every change is counted so the manifest says what cleaning did.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from medmill.builders.text.sections import detect_heading

CJK = r"\u3400-\u9fff\uf900-\ufaff"
_CN_NUM = "一二三四五六七八九十百零〇两"
_TERMINAL = set("。！？；：…”’」』）)】.!?;:》>|")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_FULLWIDTH_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{CJK}，。；：、！？])\u3000+(?=[{CJK}])")
_SPACES = re.compile("[ \t\u3000\xa0]+")
_HAS_CJK = re.compile(f"[{CJK}]")

_PAGE_NUMBER = re.compile(
    r"^(?:[-—–·]\s*)?\d{1,4}(?:\s*[-—–·])?$|^第\s*\d+\s*页(?:\s*[/，,]?\s*共\s*\d+\s*页)?$"
)
_SECTION_NUMBER_ALONE = re.compile(r"^\d{1,3}(?:\.\d{1,3})+$")
# page number glued before or after a running chapter/section header: "2第一章总论", "第一章总论 3"
_RUNNING_HEADER = re.compile(
    rf"^\d{{1,4}}\s*第[{_CN_NUM}\d]+[篇章节].{{0,24}}$|^第[{_CN_NUM}\d]+[篇章节][^。，；]{{0,24}}?\s+\d{{1,4}}$"
)
_CHAPTER = re.compile(rf"^第[{_CN_NUM}\d]+[篇章](?:\s*\S.{{0,24}})?$")
_CITATION = re.compile(r"\s?[\[［](?:\d{1,3}(?:\s*[-–~～,，、]\s*\d{1,3})*)[\]］]")
# OCR slips in heading numbers: a dash read for 一
_OCR_DASH_HEADING = re.compile(r"^[—－\-–](?=、)")
_OCR_DASH_PAREN = re.compile(r"^[（(]\s*[—－\-–]\s*[）)]")
_GLUED_SUBHEADING = re.compile(rf"^(第[{_CN_NUM}\d]+[章节].{{1,24}}?)([—－{_CN_NUM}]{{1,3}}、.+)$")
# suspicious sequences left as they are but counted: replacement characters, digits or 一 inside Latin words
_OCR_SUSPECT = re.compile(r"\ufffd|[a-z][0-9一][a-z]|[a-z]一|一[a-z]")


class CleanOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    citations: Literal["keep", "strip"] = "keep"
    join_lines: bool = True
    drop_page_artifacts: bool = True
    min_join_length: int = 20  # shorter lines without end punctuation are titles or terms, not wrapped lines


@dataclass
class CleanResult:
    text: str
    counts: Counter = field(default_factory=Counter)


def clean_text(text: str, options: CleanOptions | None = None) -> CleanResult:
    """Return cleaned text (lines = paragraphs or headings) and counts of what was changed."""
    opts = options or CleanOptions()
    counts: Counter = Counter()
    text = _normalise_chars(text, counts)
    pages = text.split("\f")
    if opts.drop_page_artifacts and len(pages) >= 3:
        pages = _drop_repeated_margins(pages, counts)
    lines = [line for page in pages for line in page.split("\n")]
    if opts.drop_page_artifacts:
        lines = _drop_page_lines(lines, counts)
    lines = _fix_heading_slips(lines, counts)
    if opts.citations == "strip":
        lines = [_strip_citations(line, counts) for line in lines]
    else:
        counts["citations_seen"] += sum(len(_CITATION.findall(line)) for line in lines)
    if opts.join_lines:
        lines = _join_broken_lines(lines, opts.min_join_length, counts)
    counts["ocr_suspect"] += sum(len(_OCR_SUSPECT.findall(line)) for line in lines)
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return CleanResult(out, counts)


def _normalise_chars(text: str, counts: Counter) -> str:
    counts["fullwidth_spaces"] += text.count("\u3000")
    counts["zero_width_chars"] += len(_ZERO_WIDTH.findall(text))
    text = _ZERO_WIDTH.sub("", text)
    text = _FULLWIDTH_SPACE_BETWEEN_CJK.sub("", text)
    return "\n".join(_despace_cjk(_SPACES.sub(" ", line).strip(" "), counts) for line in text.split("\n"))


_CJK_PAIR = re.compile(f"(?<=[{CJK}，。；：、！？（）])( ?)(?=[{CJK}，。；：、！？（）])")
_CJK_SPACE = re.compile(f"(?<=[{CJK}，。；：、！？（）]) (?=[{CJK}，。；：、！？（）])")


def _despace_cjk(line: str, counts: Counter) -> str:
    """Undo PDF extraction that puts a space between every Chinese character ("高 血 压 是 …"): when most
    neighbouring CJK characters of a line are space-separated, the spaces go; normal lines are left alone."""
    pairs = _CJK_PAIR.findall(line)
    spaced = sum(1 for p in pairs if p)
    if len(pairs) < 4 or spaced * 2 < len(pairs):
        return line
    counts["cjk_spaces_removed"] += spaced
    return _CJK_SPACE.sub("", line)


def _margin_key(line: str) -> str:
    return re.sub(r"\d+", "#", line.strip())


def _drop_repeated_margins(pages: list[str], counts: Counter) -> list[str]:
    """Lines in the top/bottom two lines of at least half of the pages (digits ignored) are headers/footers."""
    seen: Counter = Counter()
    for page in pages:
        margin = _margins(page)
        seen.update({_margin_key(line) for line in margin})
    threshold = max(3, len(pages) // 2)
    repeated = {k for k, n in seen.items() if n >= threshold and k and len(k) <= 60}
    if not repeated:
        return pages
    cleaned = []
    for page in pages:
        lines = page.split("\n")
        margin_ids = _margin_indices(lines)
        kept = []
        for i, line in enumerate(lines):
            if i in margin_ids and _margin_key(line) in repeated:
                counts["repeated_header_lines"] += 1
                continue
            kept.append(line)
        cleaned.append("\n".join(kept))
    return cleaned


def _margin_indices(lines: list[str]) -> set[int]:
    nonempty = [i for i, line in enumerate(lines) if line.strip()]
    return set(nonempty[:2] + nonempty[-2:])


def _margins(page: str) -> list[str]:
    lines = page.split("\n")
    return [lines[i] for i in sorted(_margin_indices(lines))]


def _drop_page_lines(lines: list[str], counts: Counter) -> list[str]:
    """Drop bare page numbers, page-number+running-header lines and repeats of the chapter title in effect
    (running headers without a page number); join a lone '3.1' to its title.

    Only the current chapter's title counts as a running header: a table of contents lists every chapter
    before the text, and the real chapter headings after it must stay."""
    current: str | None = None
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = _next_nonempty(lines, i)
        if _SECTION_NUMBER_ALONE.match(line) and nxt is not None and _is_title_like(lines[nxt]):
            out.append(f"{line} {lines[nxt]}")
            counts["section_numbers_joined"] += 1
            i = nxt + 1
            continue
        if _PAGE_NUMBER.match(line):
            if (
                line.isdigit()
                and nxt is not None
                and _is_title_like(lines[nxt])
                and not detect_heading(lines[nxt])
            ):
                out.append(f"{line} {lines[nxt]}")  # "4" + "内伤病类术语": a section number, not a page
                counts["section_numbers_joined"] += 1
                i = nxt + 1
                continue
            counts["page_numbers"] += 1
            i += 1
            continue
        chapter = _CHAPTER.match(line)
        if _RUNNING_HEADER.match(line) or (chapter and line == current):
            counts["running_headers"] += 1
            i += 1
            continue
        if chapter:
            current = line
        out.append(line)
        i += 1
    return out


def _next_nonempty(lines: list[str], i: int) -> int | None:
    for j in range(i + 1, min(len(lines), i + 3)):
        if lines[j].strip():
            return j
    return None


def _is_title_like(line: str) -> bool:
    s = line.strip()
    return 0 < len(s) <= 30 and not any(p in s for p in "。，；") and not s[0].isdigit()


def _fix_heading_slips(lines: list[str], counts: Counter) -> list[str]:
    out: list[str] = []
    for line in lines:
        fixed = _OCR_DASH_PAREN.sub("（一）", _OCR_DASH_HEADING.sub("一", line))
        if fixed != line:
            counts["ocr_fixed"] += 1
        glued = _GLUED_SUBHEADING.match(fixed)
        if glued and len(fixed) <= 60:
            head, sub = glued.group(1), glued.group(2)
            if sub[0] in "—－":
                sub = "一" + sub[1:]
                counts["ocr_fixed"] += 1
            out.extend([head, sub])
            counts["glued_headings_split"] += 1
            continue
        out.append(fixed)
    return out


def _strip_citations(line: str, counts: Counter) -> str:
    new, n = _CITATION.subn("", line)
    counts["citations_stripped"] += n
    return new


def _join_broken_lines(lines: list[str], min_length: int, counts: Counter) -> list[str]:
    """Rejoin a line that stops mid-sentence with the next one (PDF wrapping), never across headings."""
    out: list[str] = []
    for line in lines:
        if out and line and _continues(out[-1], line, min_length):
            prev = out[-1]
            sep = " " if re.match(r"[A-Za-z0-9]", prev[-1]) and re.match(r"[A-Za-z0-9]", line[0]) else ""
            if sep and prev[-1].isdigit() and line[0].isdigit() and _HAS_CJK.search(prev):
                sep = ""  # Chinese typesetting wraps inside numbers: "6\n5℃" is 65℃, not "6 5℃"
            out[-1] = prev + sep + line
            counts["lines_joined"] += 1
        else:
            out.append(line)
    return out


def _continues(prev: str, line: str, min_length: int) -> bool:
    if not prev or prev[-1] in _TERMINAL:
        return False
    if detect_heading(prev) or detect_heading(line):
        return False
    if re.match(
        rf"^(?:\d{{1,3}}[.、．）)]|[（(][{_CN_NUM}\d]{{1,3}}[）)]|[{_CN_NUM}]{{1,3}}、|[-*•·])", line
    ):
        return False  # a list item starts a new line on purpose
    if re.match(r"[，。、；：！？）》」』”’,;:!?)]|的(?!确)", line):
        return True  # no paragraph starts with a comma or 的: the line before was cut mid-sentence
    return prev[-1] in "，、" or len(prev) >= min_length
