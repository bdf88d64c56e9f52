"""Strategy corrupt, streamed: the pairs `corrupt` makes in memory, in the same order with the same
rejects, in three passes over the prompts (spilled to disk after the first):

1. read (driver): duplicate prompts rejected (only each prompt's key and where it was first seen stay
   in memory), the first `limit` distinct prompts spilled, their KG facts added to the fact pool (what
   fact swaps take values from: every value of every relation across the input);
2. options (workers): which perturbations apply to each prompt's reference answer; then, in the
   driver and in item order, which one each prompt gets (`Corrupter.choose`: the least used so far, so
   every choice depends on all earlier ones; one byte per prompt);
3. pairs (workers, `CorruptStep`, the build's generation map step): the chosen perturbation made again
   and the pair recorded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmill.builders.core.builder import Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.forked import forked_imap
from medmill.builders.core.progress import Progress
from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.prefs.config import PrefsConfig
from medmill.builders.prefs.corrupt import settle_item
from medmill.builders.prefs.perturb import PERTURBATIONS, Corrupter, FactPool, Lexicon, Perturbed
from medmill.builders.readers.batch_spill import BatchSpill
from medmill.builders.readers.prompt_items import FieldNames, PromptItem, iter_inputs
from medmill.schemas import RejectRow
from medmill.schemas.errors import MedmillError

NONE = -1  # no perturbation chosen (none applies, no reference, or a given rejected answer)
Numbered = tuple[int, PromptItem]  # an item and its place among the distinct prompts


def corrupt_stream(cfg: PrefsConfig, work: Path, batch_items: int, workers: int, progress: Progress) -> ItemStream:
    """Passes 1 and 2 (see the module docstring); the stream then hands the spilled prompts to `CorruptStep`."""
    pool = FactPool([], Lexicon.load().max_fact_chars)
    read_rejects: list[RejectRow] = []
    duplicates: list[RejectRow] = []
    first_seen: dict[str, str] = {}
    spill = BatchSpill(work / "prompts.pickles", batch_items)
    n_read = 0
    try:  # a bad input ends the read: the spill file is closed all the same
        for item in iter_inputs(cfg.inputs, FieldNames(cfg.question_field, cfg.answer_field), read_rejects):
            n_read += 1
            where = first_seen.get(item.key)
            if where is not None:  # as `_unique_prompts`: a later copy of a prompt is rejected
                duplicates.append(RejectRow(stage="select", reason="duplicate_prompt", message=f"same prompt as {where}",
                                            source=item.source, raw={"prompt": [m.model_dump() for m in item.prompt]}))
                continue
            first_seen[item.key] = f"{item.source.file}:{item.source.line}" if item.source.line else str(item.source.file)
            if cfg.limit is None or len(spill) < cfg.limit:
                spill.add((len(spill), item))
                pool.add(item)
    finally:
        spill.close()
    del first_seen
    if not len(spill):
        raise MedmillError(f"no usable prompt in the inputs ({len(read_rejects)} record(s) rejected while reading)")
    corrupter = Corrupter([], cfg.perturbations, cfg.seed)  # a bad --perturbations fails after reading, as in memory
    corrupter.pool = pool
    choices = np.full(len(spill), NONE, dtype=np.int8)
    with progress("finding perturbations", len(spill)) as advance:
        for found in forked_imap(_Options(corrupter), spill.batches(), workers):
            for at, key, names in found:
                name = corrupter.choose(key, names)
                if name is not None:
                    choices[at] = PERTURBATIONS.index(name)
            advance(len(found), "prompts")
    counters = Counter({"inputs.items": n_read, "inputs.duplicate_prompts": len(duplicates)})
    inputs = Inputs([], list(cfg.inputs), read_rejects + duplicates, counters, {"corrupt": CorruptStep(corrupter, choices)})
    return ItemStream(inputs, spill.batches, len(spill))


def needs_perturbation(item: PromptItem) -> bool:
    """`corrupt` perturbs a reference answer unless a rejected answer is given."""
    return item.reference is not None and item.given_rejected is None


@dataclass
class _Options:
    """Pass 2 in a worker: for each prompt of a spilled batch needing a perturbation, (place, key,
    names of the perturbations that apply)."""

    corrupter: Corrupter

    def __call__(self, blob: bytes) -> list[tuple[int, str, list[str]]]:
        import pickle

        batch: list[Numbered] = pickle.loads(blob)
        return [(at, item.key, [o.name for o in self.corrupter.options(item, item.reference or "")])
                for at, item in batch if needs_perturbation(item)]


class CorruptStep(MapStep):
    """Pass 3: each prompt's pair (`corrupt` item by item) with the perturbation chosen in pass 2."""

    name = "generate"

    def __init__(self, corrupter: Corrupter, choices: np.ndarray) -> None:
        self.corrupter, self.choices = corrupter, choices

    def __call__(self, batch: list[Numbered]) -> StepResult:
        out = Collector()
        try:
            for at, item in batch:
                self._one(int(self.choices[at]), item, out)
            return StepResult(out.records, list(out.rejects), out.counters)
        finally:
            out.rejects.close()

    def _one(self, choice: int, item: PromptItem, out: Collector) -> None:
        def perturb(reference: str) -> Perturbed | None:
            if choice == NONE:
                return None
            perturbed = self.corrupter.apply(PERTURBATIONS[choice], item, reference)
            if perturbed is None:
                raise RuntimeError(f"perturbation {PERTURBATIONS[choice]} applied in pass 2 but not in pass 3")
            return perturbed

        settle_item(out, item, self.corrupter.enabled, perturb)
