"""`Builder`: what a builder declares so `run_build` can run it.

    class KGQABuilder(Builder[KGQAConfig]):
        name = "kg-qa"          # the command name without "build-"; manifest `builder`, source.builder
        version = "1"           # bump when the same inputs and config give different records
        kind = "sft"            # sft | preference | pretrain
        config = KGQAConfig     # a BuildConfig subclass

        def read(self, cfg, ctx) -> Inputs: ...              # reader: source items, files, read rejects
        def generate(self, cfg, inputs, ctx, out) -> None: ...   # generator: records/rejects into `out`

`finish` (final statistics tables into `out.stats`), `describe` (the card's method text), `figures`
(rows of the summary table) and `params` (the manifest's params) have defaults. `finish` and `describe`
run after curation: `out.records` are then the records to be written and `out.rejects` every reject.
A builder holds no state of a run on itself (what a run finds lives in `Inputs` or the `Collector`),
so it pickles without data. Builders never import medmill.commands or medmill.console.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.core.steps import GlobalStep, Step, StepResult
from medmill.builders.curation.stages import curation_steps
from medmill.schemas import RejectRow, Source

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.llm.engine import LLMEngine
    from medmill.builders.llm.map_step import LLMMapStep, Work
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
    kind: str | None = None  # the record kind, when the reader decides it (dataset dirs); else Builder.kind
    # how many items the reader gave: run_build hands `items` to the generation steps (a global step
    # gets them back in `items`), so figures and card text after generation count with this
    items_read: int = 0


@dataclass
class ItemStream:
    """A reader's items as a stream of batches (`Builder.read_stream`), for builds that stream.

    `inputs` is what `read` returns without the items (files, read rejects, counters, `extra` such as
    compact whole-input knowledge); it is complete when `read_stream` returns (a builder that must see
    the whole input first reads it then, keeping only compact state or spilling the items to `work`).
    `batches()` yields the items once, in `read`'s order, in lists of exactly the `batch_items` given to
    `read_stream` or a divisor of it (an item that makes many records: smaller batches), the last maybe
    shorter; a batch may be a pickled list (bytes), which the workers unpickle themselves."""

    inputs: Inputs
    batches: Callable[[], Iterator[list[Any] | bytes]]
    items: int  # how many items `batches` yields (progress bars, `Inputs.items_read`)


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
    # processes a streamed build runs on (set by the streaming executor): a reader's own passes may use them
    workers: int = 1
    # the streamed build's workers may sit on other machines (Ray): they do not see this one's disk
    remote: bool = False
    # where the LLM request cache goes unless the settings name one: the out dir, or (--out a URI, built
    # in a staging dir) a local dir that outlives the run, so a killed build resumes without paying again
    state_dir: Path | None = None

    @property
    def llm_dir(self) -> Path:
        """The dir of the default request cache (`engine.cache_path`)."""
        return self.state_dir or self.out

    @contextmanager
    def engine(self, settings: LLMSettings, out: Collector, label: str | None = None) -> Iterator[LLMEngine]:
        """An LLM engine caching into `llm_dir` (or settings.cache); on exit its description and
        usage go into `out.llm` / `out.usage` (under `label` when a build uses several models)."""
        from medmill.builders.llm.engine import LLMEngine

        self.llm_dir.mkdir(parents=True, exist_ok=True)
        with LLMEngine(settings, self.llm_dir, progress=self.progress) as engine:
            yield engine
            described, usage = engine.describe(), engine.usage
        if label is None:
            out.llm.update(described)
            out.usage.update(usage)
        else:
            out.llm[label], out.usage[label] = described, usage

    def llm_step(self, name: str, work: Work, settings: LLMSettings, out: Collector, *, label: str | None = None,
                 prompts: Sequence[dict[str, str]] = (), optional: bool = False) -> LLMMapStep:
        """Item-wise LLM generation as a map step (`work(batch, engine, collector)` per batch, each worker
        with its own engine and share of the limits, all caching into this build's request cache); what
        the engines did lands in `out.llm` / `out.usage` once the stage is done, `prompts` in `out.prompts`
        (`optional`: only if the step made a request)."""
        from medmill.builders.llm.map_step import LLMMapStep

        self.llm_dir.mkdir(parents=True, exist_ok=True)
        return LLMMapStep(name, work, settings, self.llm_dir, out=out, label=label, prompts=prompts, optional=optional)


class Builder(Generic[C]):
    """Base class of every builder; see the module docstring."""

    name: ClassVar[str]
    version: ClassVar[str]
    kind: ClassVar[str]
    config: ClassVar[type[BuildConfig]]
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """One rule for ids and versions: `name` is a command name without "build-" (lower case,
        digits, hyphens), `version` a whole number as a string."""
        super().__init_subclass__(**kwargs)
        name, version = cls.__dict__.get("name"), cls.__dict__.get("version")
        if isinstance(name, str) and not re.fullmatch(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*", name):
            raise TypeError(f"builder name {name!r}: use the command name without build-, e.g. 'kg-qa'")
        if isinstance(version, str) and not version.isdigit():
            raise TypeError(f"builder version {version!r}: use a whole number as a string, e.g. '1'")

    def read(self, cfg: C, ctx: BuildContext) -> Inputs:
        raise NotImplementedError

    def read_stream(self, cfg: C, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream | None:
        """The items as batches (see `ItemStream`), for a streamed build: then `generation` is called
        with the stream's `inputs` (no items) and must return map steps only. None (the default): the
        builder reads with `read` and builds in memory. `work` is a scratch dir removed after the build."""
        return None

    def generation(self, cfg: C, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """The steps that turn `inputs.items` into records; the executor runs them like curation steps.

        Item-wise generation returns picklable `MapStep`s (named "generate", no dot in a name) holding
        what they need from the whole input (a lexicon, option pools), computed here in the driver, so
        the executor batches the items and may run the batches in workers; generation that needs the
        whole input at once or the LLM engine is a `GlobalStep` run in the driver. The default is one
        GlobalStep calling `generate`. Steps' counters become the build's counters without a step prefix;
        prompts, LLM usage and `out.stats` are noted on `out` here or in a global step."""
        return [GenerateInDriver(self, cfg, inputs, ctx, out)]

    def generate(self, cfg: C, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        """Whole-input generation in the driver (the default `generation`): records via `out.add`,
        rejects via `out.reject`, counters via `out.count`, prompts via `out.prompt`."""
        raise NotImplementedError

    def finish(self, cfg: C, inputs: Inputs, out: Collector) -> None:
        """After curation: put tables that need final figures (records kept, rejects by reason) into
        `out.stats`; `out.records` are the records to be written, `out.rejects` holds every reject."""

    def describe(self, cfg: C, inputs: Inputs, out: Collector) -> str:
        """The card's description of how the records were made (after `finish`: final figures)."""
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

    def protected_terms(self, cfg: C, inputs: Inputs) -> frozenset[str]:
        """Facts the build read (entity names, KG values): dedup keeps records that differ in one."""
        return frozenset()

    def license(self, cfg: C, inputs: Inputs) -> str:
        return cfg.license

    def steps(self, cfg: C, kind: str, protected_terms: frozenset[str] = frozenset()) -> list[Step]:
        """The steps run after generation: the curation steps `cfg.curation` asks for (dedup's fact
        guard gets `protected_terms`)."""
        return curation_steps(kind, cfg.curation, protected_terms)

    def own_paths(self, cfg: C) -> list[Path]:
        """What the reader must skip: the out dir, and an LLM cache file with its sqlite siblings."""
        cache = getattr(getattr(cfg, "llm", None), "cache", None)
        return [cfg.out] + ([cache, *sqlite_siblings(cache)] if cache else [])

    def source(self, **fields: Any) -> Source:
        """Provenance stamped with this builder's name and version."""
        return Source(builder=self.name, builder_version=self.version, **fields)


class GenerateInDriver(GlobalStep):
    """`Builder.generate` as a global step: runs once in the driver, with the build's context (LLM
    engine, progress) and its `Collector`; records come back as the step's result, rejects and
    counters went into `out` directly. Not meant to be pickled: global steps never leave the driver."""

    name = "generate"

    def __init__(self, builder: Builder[Any], cfg: BuildConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        self.builder, self.cfg, self.inputs, self.ctx, self.out = builder, cfg, inputs, ctx, out

    def __call__(self, batch: list[Any]) -> StepResult:
        self.inputs.items = batch  # run_build handed the items to the executor; `generate` reads them here
        self.builder.generate(self.cfg, self.inputs, self.ctx, self.out)
        records, self.out.records = self.out.records, []
        return StepResult(records)
