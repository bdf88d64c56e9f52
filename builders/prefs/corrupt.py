"""Strategy corrupt (no LLM): chosen = the reference answer, rejected = the same answer made worse by a
recorded perturbation (perturb.py); pairs read from preference files are kept as given."""

from __future__ import annotations

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.prefs.config import PrefsConfig, add_pair, reject_item
from medmill.builders.prefs.perturb import Corrupter
from medmill.builders.readers.prompt_items import PromptItem


def corrupt(cfg: PrefsConfig, items: list[PromptItem], ctx: BuildContext, out: Collector) -> None:
    corrupter = Corrupter(items, cfg.perturbations, cfg.seed)
    out.prompt(corrupter.lexicon.ref)
    for item in items:
        if item.reference is None:
            reject_item(out, "corrupt", "no_reference", item, "no reference answer to corrupt")
            continue
        if item.given_rejected is not None:
            add_pair(out, item, item.reference, item.given_rejected, {"strategy": "given"}, "corrupt")
            continue
        perturbed = corrupter.corrupt(item, item.reference)
        if perturbed is None:
            reject_item(out, "corrupt", "no_perturbation", item, f"none of {', '.join(corrupter.enabled)} applies")
            continue
        meta = {"strategy": "corrupt", "perturbation": perturbed.name, "perturbation_detail": perturbed.detail}
        add_pair(out, item, item.reference, perturbed.text, meta, "corrupt")
        out.counters[f"perturbation.{perturbed.name}"] += 1
