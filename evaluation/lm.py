"""Two batched primitives every causal-LM task uses: the log-likelihood of a continuation given its
context, and greedy generation from chat prompts with the checkpoint's own template."""

from __future__ import annotations

from dataclasses import dataclass

from medmill.evaluation.models import LoadedModel, render_prompt


@dataclass
class Continuation:
    logprob: float  # sum of the continuation tokens' log-probabilities
    tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / max(self.tokens, 1)


def _encode(tokenizer, text: str) -> list[int]:
    # rendered chat templates carry their own special tokens as text: add none
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def continuation_logprobs(lm: LoadedModel, pairs: list[tuple[str, str]], batch_size: int, share_context: bool = True) -> list[Continuation]:
    """Context and continuation are tokenized apart (a merge across the seam would hide the
    continuation's first token); contexts too long for the model lose their start. Pairs that share a
    context and whose continuations are one token each (option letters) share one forward pass."""
    import torch

    limit = lm.context_length
    # a job: one sequence to run, and (pair index, position of the first target, target ids) read from it
    jobs: dict[tuple[int, ...], list[tuple[int, int, list[int]]]] = {}
    contexts: dict[str, list[int]] = {}
    for n, (context, cont) in enumerate(pairs):
        if context not in contexts:
            contexts[context] = _encode(lm.tokenizer, context)
        c_ids, x_ids = contexts[context], _encode(lm.tokenizer, cont)[: limit - 1]
        c_ids = c_ids[-(limit - len(x_ids)) :]
        seq = tuple(c_ids) if len(x_ids) == 1 and share_context else tuple(c_ids + x_ids)
        jobs.setdefault(seq, []).append((n, len(c_ids), x_ids))  # (identical pairs share a job too)
    results: list[Continuation] = [Continuation(0.0, 0)] * len(pairs)
    pad = lm.tokenizer.pad_token_id or 0
    order = sorted(jobs, key=len, reverse=True)
    for start in range(0, len(order), batch_size):
        seqs = order[start : start + batch_size]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, seq in enumerate(seqs):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        with torch.no_grad():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for r, seq in enumerate(seqs):
            for n, at, targets in jobs[seq]:
                if not targets:
                    continue
                rows = logp[r, at - 1 : at - 1 + len(targets)]
                picked = rows.gather(1, torch.tensor(targets, device=logp.device)[:, None])
                results[n] = Continuation(float(picked.sum()), len(targets))
    return results


def generate(lm: LoadedModel, conversations: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers, one per conversation (ending with a user turn), batched with left padding."""
    import torch

    tok = lm.tokenizer
    prompts = [render_prompt(tok, conv) for conv in conversations]
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            room = max(lm.context_length - max_new_tokens, 8)
            enc = tok([prompts[i] for i in batch], add_special_tokens=False, return_tensors="pt", padding=True)
            ids, mask = enc["input_ids"][:, -room:], enc["attention_mask"][:, -room:]
            with torch.no_grad():
                gen = lm.model.generate(
                    input_ids=ids.to(lm.device),
                    attention_mask=mask.to(lm.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            for r, i in enumerate(batch):
                out[i] = tok.decode(gen[r, ids.shape[1] :], skip_special_tokens=True).strip()
    finally:
        tok.padding_side = side
    return out
