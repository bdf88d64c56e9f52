"""`Builder`: what a builder declares so `run_build` can run it.

    class KGQABuilder(Builder[KGQAConfig]):
        name = "kg-qa"          # the command name without "build-"; manifest `builder`, source.builder
        version = "1"           # bump when the same inputs and config give different records
        kind = "sft"            # sft | preference | pretrain
        config = KGQAConfig     # a BuildConfig subclass

        def read(self, cfg, ctx) -> Inputs: ...              # reader: source items, files, read rejects
        def generate(self, cfg, inputs, ctx, out) -> None: ...   # generator: records/rejects into `out`

`describe` (the card's method text), `figures` (rows of the summary table) and `params` (the
manifest's params) have defaults. Builders never import medmill.commands or medmill.console.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.progress import Progress, no_progress
from medmill.schemas import RejectRow, Source

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.llm.engine import LLMEngine
    from medmill.builders.llm.types import LLMSettings

C = TypeVar("C", bound=BuildConfig)


@dataclass
class Inputs:
    """What a builder's reader found: typed source items, the files read, read rejects, counters."""

    items: list[Any] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)


def sqlite_siblings(path: Path) -> list[Path]:
    """The files sqlite keeps beside a database in WAL mode."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


@dataclass
class BuildContext:
    """What a running build offers its builder: where it writes, progress, and LLM engines."""

    out: Path
    progress: Progress = no_progress
    # paths a reader must never take as input: the out dir and every LLM cache file
    own_paths: list[Path] = field(default_factory=list)

    @contextmanager
    def engine(self, settings: LLMSettings, out: Collector, label: str | None = None) -> Iterator[LLMEngine]:
        """An LLM engine caching into the out dir (or settings.cache); on exit its description and
        usage go into `out.llm` / `out.usage` (under `label` when a build uses several models)."""
        from medmill.builders.llm.engine import LLMEngine

        self.out.mkdir(parents=True, exist_ok=True)
        with LLMEngine(settings, self.out, progress=self.progress) as engine:
            yield engine
            described, usage = engine.describe(), engine.usage
        if label is None:
            out.llm.update(described)
            out.usage.update(usage)
        else:
            out.llm[label], out.usage[label] = described, usage


class Builder(Generic[C]):
    """Base class of every builder; see the module docstring."""

    name: ClassVar[str]
    version: ClassVar[str]
    kind: ClassVar[str]
    config: ClassVar[type[BuildConfig]]
    description: ClassVar[str] = ""

    def read(self, cfg: C, ctx: BuildContext) -> Inputs:
        raise NotImplementedError

    def generate(self, cfg: C, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        raise NotImplementedError

    def describe(self, cfg: C, inputs: Inputs, out: Collector) -> str:
        """The card's description of how the records were made."""
        return self.description

    def figures(self, cfg: C, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        """Extra rows for the summary table the command prints."""
        return []

    def params(self, cfg: C) -> dict[str, Any]:
        """The manifest's params: the typed config as JSON, without the output path and the LLM
        settings (those go to the manifest's `llm` entry: host only, never a key)."""
        return cfg.model_dump(mode="json", exclude={"out", "llm"})

    def source_licenses(self, cfg: C, inputs: Inputs) -> dict[str, str]:
        return dict(cfg.source_licenses)

    def own_paths(self, cfg: C) -> list[Path]:
        """What the reader must skip: the out dir, and an LLM cache file with its sqlite siblings."""
        cache = getattr(getattr(cfg, "llm", None), "cache", None)
        return [cfg.out] + ([cache, *sqlite_siblings(cache)] if cache else [])

    def source(self, **fields: Any) -> Source:
        """Provenance stamped with this builder's name and version."""
        return Source(builder=self.name, builder_version=self.version, **fields)
