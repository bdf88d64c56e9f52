"""Strategy corrupt (no LLM): chosen = the reference answer, rejected = the same answer made worse by a
recorded perturbation (perturb.py); pairs read from preference files are kept as given."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.prefs.config import PrefsConfig, add_pair, reject_item
from medmill.builders.prefs.perturb import Corrupter, Perturbed
from medmill.builders.readers.prompt_items import PromptItem


def corrupt(cfg: PrefsConfig, items: list[PromptItem], ctx: BuildContext, out: Collector) -> None:
    corrupter = Corrupter(items, cfg.perturbations, cfg.seed)
    out.prompt(corrupter.lexicon.ref)
    for item in items:
        settle_item(out, item, corrupter.enabled, partial(corrupter.corrupt, item))


def settle_item(out: Collector, item: PromptItem, enabled: list[str], perturb: Callable[[str], Perturbed | None]) -> None:
    """One prompt's outcome, the same in memory and streamed: its given pair, a pair whose rejected answer is
    `perturb(reference)`, or the reject saying why neither."""
    if item.reference is None:
        reject_item(out, "corrupt", "no_reference", item, "no reference answer to corrupt")
        return
    if item.given_rejected is not None:
        add_pair(out, item, item.reference, item.given_rejected, {"strategy": "given"}, "corrupt")
        return
    perturbed = perturb(item.reference)
    if perturbed is None:
        reject_item(out, "corrupt", "no_perturbation", item, f"none of {', '.join(enabled)} applies")
        return
    meta = {"strategy": "corrupt", "perturbation": perturbed.name, "perturbation_detail": perturbed.detail}
    add_pair(out, item, item.reference, perturbed.text, meta, "corrupt")
    out.counters[f"perturbation.{perturbed.name}"] += 1
