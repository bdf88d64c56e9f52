"""The build skeleton's moving parts: picklable steps, the executor's batching, the reject stream,
and run_build with a minimal builder (the "how to add a builder" shape)."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector, RejectSink
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.run import run_build
from medmill.builders.core.steps import GlobalStep, LocalExecutor, MapStep, StepResult
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.streaming.executors import ProcessExecutor
from medmill.schemas import Message, RejectRow, SFTRecord, Source
from medmill.schemas.dataset_dir import iter_rows, read_manifest

ANSWERS = [
    "高血压患者应低盐饮食，规律服药，定期监测血压。",
    "请拨打13812345678联系我，我再告诉你怎么吃药。",  # PII: redacted
    "好的",  # too short for min_chars=5: dropped by quality
    "糖尿病患者要控制总热量，少吃精制糖，按时监测血糖。",
    "糖尿病患者要控制总热量，少吃精制糖，按时监测血糖！",  # near-duplicate of the one before
]


def _records() -> list[SFTRecord]:
    out = []
    for i, a in enumerate(ANSWERS):
        m = [Message(role="user", content=f"问题{i}：平时应注意什么？"), Message(role="assistant", content=a)]
        out.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}")))
    return out


def _run(batch_size: int):
    steps = curation_steps("sft", CurationSettings(min_chars=5))
    sink = RejectSink()
    result = LocalExecutor(batch_size=batch_size).run(_records(), steps, sink)
    return result, [(r.stage, r.reason) for r in sink]


def test_map_steps_in_small_batches_give_what_one_batch_gives():
    whole, whole_rejects = _run(100)
    small, small_rejects = _run(2)
    assert [r.id for r in small.records] == [r.id for r in whole.records]
    assert small_rejects == whole_rejects
    assert small.counters == whole.counters and small.stats == whole.stats
    assert whole_rejects == [("quality", "too_short"), ("dedup", "near_duplicate")]
    assert whole.stats["pii"]["records_redacted"] == 1 and whole.stats["quality"]["in"] == 5


def test_steps_survive_pickling_after_use():
    steps = curation_steps("sft", CurationSettings(min_chars=5))
    records = _records()
    for step in steps:
        first = step(records)  # builds the step's cached state (rules, scanner, matcher)
        copy = pickle.loads(pickle.dumps(step))
        assert not any(k.startswith("_") for k in copy.__dict__)  # heavy state is rebuilt, not shipped
        assert [r.id for r in copy(records).records] == [r.id for r in first.records]


def test_reject_sink_streams_to_disk_and_reads_back():
    sink = RejectSink()
    for i in range(3):
        sink.write(RejectRow(stage="s", reason="r" if i else "first", message=str(i)))
    assert len(sink) == 3 and sink.by_reason == Counter({"s/r": 2, "s/first": 1})
    assert [r.message for r in sink] == ["0", "1", "2"]
    sink.write(RejectRow(stage="s", reason="r", message="3"))  # writing goes on after reading
    assert [json.loads(line)["message"] for line in sink.lines()] == ["0", "1", "2", "3"]
    sink.close()


class EchoConfig(BuildConfig):
    repeat: int = 1


class EchoBuilder(Builder[EchoConfig]):
    """One question per input line; a blank line is a reject."""

    name = "echo"
    version = "1"
    kind = "sft"
    config = EchoConfig

    def read(self, cfg: EchoConfig, ctx: BuildContext) -> Inputs:
        lines = [(f, n, line) for f in cfg.inputs for n, line in enumerate(Path(f).read_text("utf-8").splitlines(), 1)]
        return Inputs(lines, list(cfg.inputs), counters=Counter({"lines": len(lines)}))

    def generate(self, cfg: EchoConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        for f, n, line in inputs.items:
            src = self.source(file=str(f), line=n, group=f"line{n}")
            if not line.strip():
                out.reject(RejectRow(stage="echo", reason="blank", message=f"line {n}", source=src))
                continue
            m = [Message(role="user", content=f"{line}是什么意思？"), Message(role="assistant", content=line * cfg.repeat)]
            out.add(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=src))
            out.count("questions")


def test_run_build_with_a_minimal_builder(tmp_path: Path):
    src = tmp_path / "in.txt"
    src.write_text("高血压是一种常见的慢性病\n\n糖尿病需要长期管理血糖\n", encoding="utf-8")
    cfg = EchoConfig(inputs=[src], out=tmp_path / "out", curation=CurationSettings(dedup=False))
    report = run_build(EchoBuilder(), cfg)
    m = read_manifest(tmp_path / "out")
    assert m["builder"] == "echo" and m["records_total"] == 2 and report.manifest.records_total == 2
    assert m["counters"]["lines"] == 3 and m["counters"]["questions"] == 2
    assert m["rejects_by_reason"] == {"echo/blank": 1}
    assert {"read", "generate", "curate", "total"} <= set(m["timings"])
    assert m["params"]["repeat"] == 1 and "out" not in m["params"]
    rows = [row for _, _, _, row in iter_rows(tmp_path / "out")]
    assert {r["source"]["builder"] for r in rows} == {"echo"} and {r["source"]["builder_version"] for r in rows} == {"1"}


def test_builder_names_and_versions_follow_one_rule():
    import pytest

    with pytest.raises(TypeError, match="command name without build-"):
        type("Bad", (Builder,), {"name": "kg_qa", "version": "1"})
    with pytest.raises(TypeError, match="whole number"):
        type("Bad", (Builder,), {"name": "kg-qa", "version": "0.1.0"})
    from medmill.builders.book_qa.build import BookQABuilder
    from medmill.builders.kg_qa.build import KGQABuilder
    from medmill.builders.lit_qa.build import LitQABuilder
    from medmill.builders.prefs.build import PrefsBuilder

    assert [b.name for b in (KGQABuilder, BookQABuilder, LitQABuilder, PrefsBuilder)] == ["kg-qa", "book-qa", "lit-qa", "prefs"]


class _Double(MapStep):
    """Each item becomes two (a generation stage whose output outnumbers its input)."""

    name = "double"

    def __call__(self, batch: list) -> StepResult:
        return StepResult([x for item in batch for x in (item, item)])


class _KeepHalf(GlobalStep):
    name = "keep_half"

    def __call__(self, records: list) -> StepResult:
        return StepResult(records[: len(records) // 2 + 1])


class _Upper(MapStep):
    name = "upper"

    def __call__(self, batch: list) -> StepResult:
        return StepResult([s.upper() for s in batch])


class _Bars:
    """A Progress that records every bar it opens and what each was advanced by."""

    def __init__(self) -> None:
        self.bars: list[list] = []  # [desc, total, advanced]

    @contextmanager
    def __call__(self, desc: str, total: int):
        bar = [desc, total, 0]
        self.bars.append(bar)
        yield lambda n=1, status="": bar.__setitem__(2, bar[2] + n)


@pytest.mark.parametrize("executor", [LocalExecutor(batch_size=3), ProcessExecutor(2, batch_size=3, sub_batch=2)],
                         ids=["local", "2-processes"])
def test_each_map_stage_gets_a_bar_over_the_items_it_takes_in(executor):
    bars = _Bars()
    result = executor.run([f"x{i}" for i in range(7)], [_Double(), _KeepHalf(), _Upper()], RejectSink(), progress=bars)
    # 7 items -> 14 doubled -> 8 kept -> 8 upper-cased: a bar per map stage, each filled exactly
    assert bars.bars == [["double", 7, 7], ["upper", 8, 8]]
    assert len(result.records) == 8 and result.records[0] == "X0"
