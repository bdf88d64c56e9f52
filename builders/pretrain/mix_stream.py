"""`build-pt --mix`, streamed: the mixture `MixBuilder.generate` makes in memory, record for record.

The plan needs every document's token count and id (seeded order) before the first pick, and the picks
visit a source's documents in seeded-rank order, not in the order they are stored. So one pass reads
each source dir once: counts tokens (in the same batches of `TOKEN_BATCH` texts as in memory), keeps the
ids for the plan, and writes every row to a `RowFile` (pickled rows and their offsets: one row found by
its number with one seek). The stream then hands out the picks `(source, document, epoch, tokens)` in
the plan's order, and `MixStep` on the workers reads each picked row back and makes its record. Memory
per document: its token count, its id until the plan is made, and 8 bytes of offset.
"""

from __future__ import annotations

import pickle
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from medmill.builders.core.builder import Inputs, ItemStream
from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.pretrain.config import MixConfig
from medmill.builders.pretrain.mixing import TOKEN_BATCH, mix_figures, mixed_record, plan_mix
from medmill.builders.pretrain.tokens import TokenCounter
from medmill.schemas.dataset_dir import detect_kind, iter_rows
from medmill.schemas.errors import MedmillError

Pick = tuple[int, int, int, int]  # (source number, document number, epoch, tokens)


class RowFile:
    """Rows written one after another (pickled), read back by number in any order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets = array("q", [0])
        self._file: IO[bytes] | None = open(path, "wb")  # noqa: SIM115 (closed in close())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "the row file is closed"
        self._file.write(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))
        self.offsets.append(self._file.tell())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_sources(cfg: MixConfig, work: Path, counter: TokenCounter) -> tuple[dict[str, list[int]], dict[str, list[str]], list[RowFile], list[Path]]:
    """Every source dir read once, as `MixBuilder.read` reads it (the same errors in the same order):
    token counts and ids per source, the rows in a `RowFile` each, the manifests read."""
    tokens: dict[str, list[int]] = {}
    ids: dict[str, list[str]] = {}
    rows: list[RowFile] = []
    files: list[Path] = []
    for k, path in enumerate(cfg.inputs):
        kind = detect_kind(path)
        if kind != "pretrain":
            raise MedmillError(f"--mix: {path} holds {kind} records; mix pretrain dirs (build-pt outputs)")
        spill = RowFile(work / f"mix-source-{k}.rows")
        rows.append(spill)
        counts: list[int] = []
        keys: list[str] = []
        texts: list[str] = []
        try:
            for _split, _shard, _i, row in iter_rows(path):
                spill.add(row)
                keys.append(str(row["id"]))
                texts.append(row["text"])
                if len(texts) == TOKEN_BATCH:
                    counts += counter.count(texts)
                    texts = []
        finally:
            spill.close()
        if not keys:
            raise MedmillError(f"--mix: {path} holds no records")
        if texts:
            counts += counter.count(texts)
        tokens[str(path)], ids[str(path)] = counts, keys
        if (path / "manifest.json").is_file():
            files.append(path / "manifest.json")
    return tokens, ids, rows, files


def mix_stream(cfg: MixConfig, work: Path, batch_items: int) -> ItemStream:
    """The read pass and the plan; the stream of picks (see the module docstring)."""
    counter = TokenCounter(cfg.tokenizer)
    tokens, ids, rows, files = read_sources(cfg, work, counter)
    plans = plan_mix(tokens, cfg.shares, max_epochs=cfg.max_epochs, seed=cfg.seed, total=cfg.total_tokens, keys=ids)
    del ids
    counts = [tokens[p.name] for p in plans]
    picks = sum(len(p.selection) for p in plans)
    counters, stats = mix_figures(cfg, plans, counter.method, counter.exact)
    step = MixStep([p.name for p in plans], [str(r.path) for r in rows], [r.offsets for r in rows])

    def batches() -> Iterator[list[Pick]]:
        batch: list[Pick] = []
        for s, plan in enumerate(plans):
            for index, epoch in plan.selection:
                batch.append((s, index, epoch, counts[s][index]))
                if len(batch) == batch_items:
                    yield batch
                    batch = []
        if batch:
            yield batch

    inputs = Inputs([], files, [], Counter(), {"mix_step": step, "mix_counters": counters, "mix_stats": stats})
    return ItemStream(inputs, batches, picks)


class MixStep(MapStep):
    """Picks -> records: each picked row read back from its source's `RowFile` (`mixed_record`)."""

    name = "generate"

    def __init__(self, names: list[str], paths: list[str], offsets: list[array]) -> None:
        self.names, self.paths, self.offsets = names, paths, offsets

    def __call__(self, batch: list[Pick]) -> StepResult:
        files: dict[int, IO[bytes]] = {}
        records = []
        try:
            for s, index, epoch, tokens in batch:
                if s not in files:
                    files[s] = open(self.paths[s], "rb")  # noqa: SIM115 (closed below)
                f, offsets = files[s], self.offsets[s]
                f.seek(offsets[index])
                row = pickle.loads(f.read(offsets[index + 1] - offsets[index]))
                records.append(mixed_record(row, tokens, self.names[s], epoch))
        finally:
            for f in files.values():
                f.close()
        return StepResult(records)
