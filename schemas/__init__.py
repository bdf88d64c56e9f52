"""Record schemas shared by every part of medmill. Imports nothing from the project."""

from .records import (
    KIND_COLUMNS,
    Message,
    PreferenceRecord,
    PretrainRecord,
    Record,
    RecordKind,
    RejectRow,
    SFTRecord,
    Source,
    record_class,
    stable_id,
)
from .sources import Dialogue, KGEntity, LiteratureRecord, TextChunk, Triple

__all__ = [
    "KIND_COLUMNS",
    "Dialogue",
    "KGEntity",
    "LiteratureRecord",
    "Message",
    "PreferenceRecord",
    "PretrainRecord",
    "Record",
    "RecordKind",
    "RejectRow",
    "SFTRecord",
    "Source",
    "TextChunk",
    "Triple",
    "record_class",
    "stable_id",
]
