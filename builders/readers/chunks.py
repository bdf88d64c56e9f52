"""Documents read, cleaned and chunked: what build-book-qa (and any other builder that works on text
chunks) starts from. Reading is readers.documents; cleaning and chunking are builders.text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medmill.builders.readers.documents import load_documents
from medmill.builders.text.chunking import Chunker, ChunkSettings
from medmill.builders.text.clean import CleanOptions, clean_text
from medmill.schemas import RejectRow, Source, TextChunk


@dataclass
class DocumentSummary:
    """One line of the card's source-document list."""

    name: str
    format: str
    encoding: str | None
    chars: int
    chunks: int


@dataclass
class PreparedChunks:
    chunks: list[TextChunk] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    documents: list[DocumentSummary] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def prepare_chunks(
    inputs: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    text_field: str | None = None,
    clean: CleanOptions | None = None,
    settings: ChunkSettings | None = None,
    skip: Sequence[Path] = (),
) -> PreparedChunks:
    """Inputs -> documents -> cleaned text -> chunks, with every rejected input and cleaning count kept."""
    loaded = load_documents(inputs, include, exclude, text_field, skip)
    chunker = Chunker(settings or ChunkSettings())
    out = PreparedChunks(rejects=list(loaded.rejects), files=list(loaded.files))
    out.counts.update(f"encoding.{enc}" for enc in loaded.encodings.values())
    for doc in loaded.documents:
        cleaned = clean_text(doc.text, clean)
        out.counts.update({f"clean.{k}": v for k, v in cleaned.counts.items() if v})
        out.counts["documents"] += 1
        if not cleaned.text:
            out.rejects.append(
                RejectRow(
                    stage="clean",
                    reason="empty_after_cleaning",
                    message=f"{doc.name}: nothing left after cleaning",
                    source=Source(file=doc.name, line=doc.line, builder="chunking"),
                )
            )
            continue
        meta = {"format": doc.format, **({"line": doc.line} if doc.line else {})}
        chunks = chunker.chunk(doc.name, cleaned.text, meta)
        out.chunks.extend(chunks)
        out.documents.append(
            DocumentSummary(doc.name, doc.format, doc.encoding, len(cleaned.text), len(chunks))
        )
    out.counts["chunks"] = len(out.chunks)
    return out
