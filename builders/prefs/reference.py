"""Strategy reference: chosen = the reference answer, rejected = a model's (or the given) answer,
optionally confirmed by the judge."""

from __future__ import annotations

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.prefs.config import PrefsConfig, add_pair, reject_item
from medmill.builders.prefs.judge import add_judged, judged_meta, record_llm
from medmill.builders.prefs.judging import Candidate, NoPair, confirm_reference, unique_candidates
from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas.errors import MedmillError


def reference(cfg: PrefsConfig, items: list[PromptItem], ctx: BuildContext, out: Collector) -> None:
    from medmill.builders.prefs import llm_steps

    answer_t, judge_t = load_prompt("prefs_answer"), load_prompt("prefs_judge")
    model = cfg.candidates[0] if cfg.candidates else None
    if model is None and not any(i.given_rejected for i in items):
        raise MedmillError("--strategy reference needs a model to answer the prompts (--candidate-model or --llm-model)")
    with_ref = []
    for item in items:
        if item.reference is None:
            reject_item(out, "reference", "no_reference", item, "no reference answer (an sft dir or an answer column)")
        else:
            with_ref.append(item)
    rivals: list[Candidate | None] = [
        Candidate(i.given_rejected, "given_rejected") if i.given_rejected else None for i in with_ref
    ]
    need = [n for n, r in enumerate(rivals) if r is None]
    if need and model is not None:
        out.prompts.append(answer_t.ref)
        generated, rejects, described = llm_steps.generate(model, ctx, [with_ref[n] for n in need], 1, answer_t)
        record_llm(out, f"candidate:{llm_steps.model_label(model)}", described)
        out.rejects.extend(rejects)
        for n, cands in zip(need, generated, strict=True):
            rivals[n] = cands[0] if cands else None
    pairs: list[tuple[PromptItem, Candidate, Candidate]] = []
    for item, rival in zip(with_ref, rivals, strict=True):
        if rival is None:
            if model is None:
                reject_item(out, "reference", "no_model_answer", item, "no given rejected answer and no --candidate-model")
            continue  # the generation failure is already a reject row
        kept, _ = unique_candidates([Candidate(item.reference, "reference"), rival])
        if len(kept) < 2:
            reject_item(out, "reference", "same_answer", item, "the model's answer equals the reference")
            continue
        pairs.append((item, kept[0], kept[1]))
    if cfg.judge is None:
        for item, ref, rival in pairs:
            add_pair(out, item, ref.text, rival.text, {"strategy": "reference", "rejected_model": rival.model}, "reference")
        return
    out.prompts.append(judge_t.ref)
    jobs = [(item, c) for item, ref, rival in pairs for c in (ref, rival)]
    scored, described = llm_steps.judge(cfg.judge, ctx, jobs, judge_t)
    record_llm(out, "judge", described)
    judge_name = llm_steps.model_label(cfg.judge)
    judged = []
    for n, (item, _, _) in enumerate(pairs):
        ref_s, rival_s = scored[2 * n], scored[2 * n + 1]
        choice = confirm_reference(ref_s, rival_s, cfg.min_margin)
        if isinstance(choice, NoPair):
            reject_item(out, "judge", choice.reason, item, choice.message, [ref_s.summary(), rival_s.summary()])
            continue
        judged.append((item, choice, judged_meta("reference", choice, judge_name, cfg.min_margin)))
    add_judged(cfg, ctx, out, judged)
