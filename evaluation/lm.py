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


def continuation_logprobs(lm: LoadedModel, pairs: list[tuple[str, str]], batch_size: int) -> list[Continuation]:
    """Context and continuation are tokenized apart (a merge across the seam would hide the
    continuation's first token); contexts too long for the model lose their start."""
    import torch

    limit = lm.context_length
    encoded = []
    for context, cont in pairs:
        c_ids, x_ids = _encode(lm.tokenizer, context), _encode(lm.tokenizer, cont)
        x_ids = x_ids[: limit - 1]
        c_ids = c_ids[-(limit - len(x_ids)) :]
        encoded.append((c_ids, x_ids))
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    results: list[Continuation | None] = [None] * len(encoded)
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        seqs = [encoded[i][0] + encoded[i][1] for i in batch]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        with torch.no_grad():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for r, i in enumerate(batch):
            c_len, x_len = len(encoded[i][0]), len(encoded[i][1])
            if x_len == 0:
                results[i] = Continuation(0.0, 0)
                continue
            targets = ids[r, c_len : c_len + x_len].to(logp.device)
            rows = logp[r, c_len - 1 : c_len - 1 + x_len]
            results[i] = Continuation(float(rows.gather(1, targets[:, None]).sum()), x_len)
    return [r for r in results if r is not None]


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
