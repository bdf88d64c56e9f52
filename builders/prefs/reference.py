"""Strategy reference: chosen = the reference answer, rejected = a model's (or the given) answer,
optionally confirmed by the judge."""

from __future__ import annotations

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.core.steps import Step
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.prefs.config import PrefsConfig
from medmill.builders.prefs.judge import judged_steps
from medmill.builders.prefs.steps import CandidateWork, ConfirmWork, ReferencePairs, ReferencePools
from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas.errors import MedmillError


def reference_steps(cfg: PrefsConfig, items: list[PromptItem], ctx: BuildContext, out: Collector) -> list[Step]:
    """Prompts with a reference -> a model's answer where no rival is given -> (reference, rival) pairs
    -> [the judge confirms the reference -> side-by-side check] -> records; see steps.py."""
    from medmill.builders.prefs import llm_steps

    model = cfg.candidates[0] if cfg.candidates else None
    if model is None and not any(i.given_rejected for i in items):
        raise MedmillError("--strategy reference needs a model to answer the prompts (--candidate-model or --llm-model)")
    steps: list[Step] = [ReferencePools()]
    need = any(i.reference is not None and not i.given_rejected for i in items)
    if need and model is not None:
        label = llm_steps.model_label(model)
        work = CandidateWork(1, label, model.seed, only_empty=True)
        steps.append(ctx.llm_step("candidates", work, model, out, label=f"candidate:{label}",
                                  prompts=[load_prompt("prefs_answer").ref]))
    steps.append(ReferencePairs(has_model=model is not None, judged=cfg.judge is not None))
    if cfg.judge is None:
        return steps
    work = ConfirmWork(cfg.min_margin, llm_steps.model_label(cfg.judge))
    steps.append(ctx.llm_step("judge", work, cfg.judge, out, label="judge", prompts=[load_prompt("prefs_judge").ref]))
    return steps + judged_steps(cfg, ctx, out)
