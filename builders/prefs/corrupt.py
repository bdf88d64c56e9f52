"""Strategy corrupt (no LLM): chosen = the reference answer, rejected = the same answer made worse by a
recorded perturbation (perturb.py); pairs read from preference files are kept as given."""

from __future__ import annotations

from medmill.builders.prefs.config import Outcome, PrefsConfig
from medmill.builders.prefs.perturb import Corrupter
from medmill.builders.readers.prompt_items import PromptItem


def corrupt(cfg: PrefsConfig, items: list[PromptItem]) -> Outcome:
    out = Outcome()
    corrupter = Corrupter(items, cfg.perturbations, cfg.seed)
    out.prompts = [corrupter.lexicon.ref]
    for item in items:
        if item.reference is None:
            out.reject("corrupt", "no_reference", item, "no reference answer to corrupt")
            continue
        if item.given_rejected is not None:
            out.pair(item, item.reference, item.given_rejected, {"strategy": "given"}, "corrupt")
            continue
        perturbed = corrupter.corrupt(item, item.reference)
        if perturbed is None:
            out.reject("corrupt", "no_perturbation", item, f"none of {', '.join(corrupter.enabled)} applies")
            continue
        meta = {"strategy": "corrupt", "perturbation": perturbed.name, "perturbation_detail": perturbed.detail}
        out.pair(item, item.reference, perturbed.text, meta, "corrupt")
        out.counters[f"perturbation.{perturbed.name}"] += 1
    return out
