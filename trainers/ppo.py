"""medmill's compact PPO (trl 1.16 has none): policy (+LoRA), reference = adapter disabled or a frozen
copy, critic = a one-label scorer initialised from the reward model (or the policy) read per token.

Per step: sample responses to a batch of prompts; score = RM at the end of the response + rule
rewards (- missing-EOS penalty); per-token reward = -kl_coef * (logp - ref_logp), score added at the
last token; GAE; whitened advantages; clipped policy and value losses over a few epochs of
mini-batches; adaptive KL controller. Checkpoints hold policy, critic, optimizer and step, so a killed
run resumes where it stopped with the same prompts and sampling seeds.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from medmill.schemas.errors import MedmillError
from medmill.trainers.fit import StageResult
from medmill.trainers.modeling import (
    load_causal_lm,
    load_scorer,
    load_tokenizer,
    read_tokenizer,
    resume_point,
    wrap_lora,
)
from medmill.trainers.options import TrainOptions
from medmill.trainers.ppo_config import PPOConfig
from medmill.trainers.preview import console, length_report, show_example, show_lengths
from medmill.trainers.rewards import Response, parse_rules

log = logging.getLogger(__name__)


class AdaptiveKL:
    """Ziegler et al. 2019: move the KL coefficient so the observed KL tracks a target."""

    def __init__(self, value: float, target: float, horizon: int, adaptive: bool):
        self.value, self.target, self.horizon, self.adaptive = value, target, horizon, adaptive

    def update(self, kl: float, n_steps: int) -> None:
        if not self.adaptive or not math.isfinite(kl):
            return
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def token_scores(scorer, ids, mask, positions):
    """A sequence classifier's head applied at every position (the critic's per-token values)."""
    m = _unwrap(scorer)
    hidden = getattr(m, m.base_model_prefix)(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    return m.score(hidden).squeeze(-1).float()


def positions_of(mask):
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def logprobs_and_entropy(model, ids, mask, n_query: int, temperature: float):
    import torch

    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_of(mask)).logits
    logits = logits[:, n_query - 1 : -1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = torch.gather(logp_all, 2, ids[:, n_query:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x, mask):
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * (var + 1e-8).rsqrt() * mask


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation over response tokens; padded positions hold 0 reward/value."""
    import torch

    values = values * mask
    last, advantages = 0.0, []
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages.append(last)
    advantages = torch.stack(advantages[::-1], dim=1) * mask
    return advantages, advantages + values


class PPORunner:
    def __init__(self, opts: TrainOptions, config: PPOConfig, data):
        import torch

        self.opts, self.config = opts, config
        self.device = torch.device("cuda" if torch.cuda.is_available() and not config.use_cpu else "cpu")
        self.tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=True)
        self.tokenizer.padding_side = "left"
        self.rules = parse_rules(opts.reward_rules)
        if not opts.reward_model and not self.rules:
            raise MedmillError("ppo needs a reward: --reward-model PATH and/or --reward-rule SPEC (e.g. eos=1)")
        self.prompt_msgs = data.train["prompt"]
        full = [self._encode_prompt(p) for p in self.prompt_msgs]
        self.prompt_lengths = [len(ids) for ids in full]
        self.prompts = [ids[-config.max_prompt_length :] for ids in full]
        self.resume = resume_point(opts)
        torch.manual_seed(config.seed)
        self.policy = self._load_policy(added)
        self.ref = None
        if not (opts.lora or opts.qlora):
            self.ref = load_causal_lm(opts.ref_model or opts.model, opts, self.tokenizer, added).to(self.device).eval()
            self.ref.requires_grad_(False)
        self.reward_model, self.reward_tokenizer = self._load_reward_model()
        self.critic = self._load_critic(added)
        params = [
            {"params": [p for p in self.policy.parameters() if p.requires_grad], "lr": config.learning_rate},
            {"params": [p for p in self.critic.parameters() if p.requires_grad], "lr": config.critic_learning_rate or config.learning_rate},
        ]
        self.optimizer = torch.optim.AdamW(params, weight_decay=config.weight_decay)
        self.kl = AdaptiveKL(config.kl_coef, config.target_kl, config.kl_horizon, config.adaptive_kl)
        self.step = 0
        self.history: dict[str, list[float]] = {}
        if self.resume:
            self._load_state(Path(self.resume))

    # -- loading ---------------------------------------------------------------------------------
    def _encode_prompt(self, prompt: list[dict]) -> list[int]:
        return self.tokenizer.apply_chat_template(prompt, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]

    def _load_policy(self, added: int):
        if self.resume and (self.opts.lora or self.opts.qlora):
            from peft import PeftModel

            base = load_causal_lm(self.opts.model, self.opts, self.tokenizer, added)
            return PeftModel.from_pretrained(base, self.resume, is_trainable=True).to(self.device)
        path = self.resume or self.opts.model
        policy = load_causal_lm(path, self.opts, self.tokenizer, added)
        return wrap_lora(policy, self.opts, "CAUSAL_LM", new_tokens=added > 0).to(self.device)

    def _load_reward_model(self):
        if not self.opts.reward_model:
            return None, None
        tokenizer = read_tokenizer(self.opts.reward_model)
        tokenizer.padding_side = "right"
        model = load_scorer(self.opts.reward_model, self.opts, tokenizer).to(self.device).eval()
        model.requires_grad_(False)
        return model, tokenizer

    def _load_critic(self, added: int):
        # The RM's head already knows what a good answer is; it is a better start than a random head,
        # but only when it shares the policy's vocabulary (values are read per policy token).
        source = self.opts.value_model or self.opts.model
        if self.opts.value_model is None and self.reward_tokenizer is not None:
            if self.reward_tokenizer.get_vocab() == self.tokenizer.get_vocab():
                source = self.opts.reward_model
        ckpt = Path(self.resume) / "critic" if self.resume else None
        if ckpt is not None and (self.opts.lora or self.opts.qlora):
            from peft import PeftModel

            base = load_scorer(source, self.opts, self.tokenizer, added)
            return PeftModel.from_pretrained(base, ckpt, is_trainable=True).to(self.device)
        critic = load_scorer(str(ckpt) if ckpt else source, self.opts, self.tokenizer, added)
        if ckpt is not None:
            return critic.to(self.device)
        return wrap_lora(critic, self.opts, "SEQ_CLS", new_tokens=added > 0).to(self.device)

    # -- one PPO step ----------------------------------------------------------------------------
    def _batch_prompts(self):
        import torch

        n, size = len(self.prompts), min(self.config.per_device_train_batch_size, len(self.prompts))
        per_epoch = max(1, n // size)
        epoch, index = divmod(self.step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed + epoch)).tolist()
        picked = order[index * size : (index + 1) * size]
        chosen = [self.prompts[i] for i in picked]
        width = max(len(p) for p in chosen)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chosen], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chosen], device=self.device)
        return ids, mask, [self.prompt_msgs[i] for i in picked]

    def _generate(self, q_ids, q_mask):
        import torch

        self.policy.eval()
        with torch.no_grad():
            out = self.policy.generate(
                input_ids=q_ids,
                attention_mask=q_mask,
                max_new_tokens=self.config.response_length,
                do_sample=True,
                temperature=self.config.temperature,
                top_k=0,
                top_p=1.0,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        response = out[:, q_ids.shape[1] :]
        is_eos = response == self.tokenizer.eos_token_id
        ended = is_eos.any(-1)
        first_eos = torch.where(ended, is_eos.float().argmax(-1), torch.full_like(ended, response.shape[1], dtype=torch.long))
        r_mask = (torch.arange(response.shape[1], device=self.device)[None] <= first_eos[:, None]).long()
        response = torch.where(r_mask.bool(), response, self.tokenizer.pad_token_id)
        return response, r_mask, ended

    def _texts(self, response, r_mask) -> list[str]:
        return [
            self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response, r_mask, strict=True)
        ]

    def _scores(self, prompts_text: list[list[dict]], texts: list[str], n_tokens, ended):
        import torch

        scores = torch.zeros(len(texts), device=self.device)
        parts: dict[str, float] = {}
        if self.reward_model is not None:
            convs = [p + [{"role": "assistant", "content": t}] for p, t in zip(prompts_text, texts, strict=True)]
            enc = self.reward_tokenizer.apply_chat_template(convs, tokenize=True, return_dict=True, padding=True, return_tensors="pt")
            with torch.no_grad():
                rm = self.reward_model(input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)).logits[:, 0].float()
            scores += rm
            parts["rm_score"] = rm.mean().item()
        for rule in self.rules:
            values = torch.tensor(
                [rule(Response(t, int(n), bool(e))) for t, n, e in zip(texts, n_tokens.tolist(), ended.tolist(), strict=True)],
                device=self.device,
            )
            scores += values
            parts[f"rule/{rule.name}"] = values.mean().item()
        if self.config.missing_eos_penalty:
            scores -= self.config.missing_eos_penalty * (~ended).float()
        return scores, parts

    def ppo_step(self) -> dict[str, float]:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed + self.step)  # the same rollouts after a resume
        q_ids, q_mask, prompt_msgs = self._batch_prompts()
        response, r_mask, ended = self._generate(q_ids, q_mask)
        n_query = q_ids.shape[1]
        ids = torch.cat([q_ids, response], 1)
        mask = torch.cat([q_mask, r_mask], 1)
        rmask = r_mask.float()
        with torch.no_grad():
            old_logp, _ = logprobs_and_entropy(self.policy, ids, mask, n_query, cfg.temperature)
            if self.ref is None:
                with self.policy.disable_adapter():
                    ref_logp, _ = logprobs_and_entropy(self.policy, ids, mask, n_query, cfg.temperature)
            else:
                ref_logp, _ = logprobs_and_entropy(self.ref, ids, mask, n_query, cfg.temperature)
            old_values = token_scores(self.critic, ids, mask, positions_of(mask))[:, n_query - 1 : -1]
            texts = self._texts(response, r_mask)
            n_tokens = r_mask.sum(-1)
            scores, parts = self._scores(prompt_msgs, texts, n_tokens, ended)
            kl = (old_logp - ref_logp) * rmask
            rewards = -self.kl.value * kl
            last = (n_tokens - 1).clamp(min=0)
            rewards[torch.arange(len(last)), last] += scores
            advantages, returns = gae(rewards, old_values, rmask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, rmask)

        stats: dict[str, list[float]] = {k: [] for k in ("clip_fraction", "value_loss", "policy_loss", "entropy")}
        batch = ids.shape[0]
        mb = max(1, batch // max(1, cfg.num_mini_batches))
        self.policy.train()
        self.critic.train()
        for _ in range(cfg.num_ppo_epochs):
            for idx in torch.randperm(batch).split(mb):
                logp, entropy = logprobs_and_entropy(self.policy, ids[idx], mask[idx], n_query, cfg.temperature)
                m = rmask[idx]
                ratio = torch.exp(logp - old_logp[idx])
                adv = advantages[idx]
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange))
                policy_loss = masked_mean(pg, m)
                values = token_scores(self.critic, ids[idx], mask[idx], positions_of(mask[idx]))[:, n_query - 1 : -1]
                clipped = old_values[idx] + (values - old_values[idx]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                value_loss = 0.5 * masked_mean(torch.max((values - returns[idx]) ** 2, (clipped - returns[idx]) ** 2), m)
                loss = policy_loss + cfg.vf_coef * value_loss
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]], cfg.max_grad_norm
                )
                self.optimizer.step()
                stats["clip_fraction"].append(masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), m).item())
                stats["value_loss"].append(value_loss.item())
                stats["policy_loss"].append(policy_loss.item())
                stats["entropy"].append(masked_mean(entropy, m).item())
        mean_kl = kl.sum(-1).mean().item()
        self.kl.update(mean_kl, batch)
        self.step += 1
        metrics = {
            "score": scores.mean().item(),
            "reward": (rewards.sum(-1)).mean().item(),
            "kl": mean_kl,
            "response_length": n_tokens.float().mean().item(),
            "eos_rate": ended.float().mean().item(),
            "kl_coef": self.kl.value,
            **{k: sum(v) / len(v) for k, v in stats.items()},
            **parts,
        }
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(v)
        return metrics

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path: Path, with_state: bool) -> None:
        import torch

        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.critic.save_pretrained(path / "critic")
        if with_state:
            torch.save({"optimizer": self.optimizer.state_dict(), "kl_coef": self.kl.value}, path / "ppo_state.pt")
            state = {"global_step": self.step, "history": self.history}
            (path / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")

    def _load_state(self, path: Path) -> None:
        import torch

        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        self.step, self.history = state["global_step"], state.get("history", {})
        saved = torch.load(path / "ppo_state.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.kl.value = saved["kl_coef"]

    def _prune(self, out: Path) -> None:
        import shutil

        limit = self.config.save_total_limit
        ckpts = sorted((int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
        if limit:
            for _, p in ckpts[:-limit]:
                shutil.rmtree(p, ignore_errors=True)

    def total_steps(self) -> int:
        if self.config.max_steps and self.config.max_steps > 0:
            return self.config.max_steps
        per_epoch = max(1, len(self.prompts) // min(self.config.per_device_train_batch_size, len(self.prompts)))
        return int(math.ceil(self.config.num_train_epochs * per_epoch))


def run_ppo(opts: TrainOptions, config: PPOConfig, data) -> StageResult:
    runner = PPORunner(opts, config, data)
    report = length_report(
        runner.prompt_lengths, config.max_prompt_length, truncated=sum(n > config.max_prompt_length for n in runner.prompt_lengths)
    )
    if opts.preview:
        ids = runner.prompts[0]
        show_example(runner.tokenizer, ids, [False] * len(ids), "ppo prompt 1 (responses are sampled, then trained)")
        show_lengths(report, "ppo prompt token lengths")
    out = Path(opts.out)
    total = runner.total_steps()
    while runner.step < total:
        metrics = runner.ppo_step()
        if runner.step % max(1, int(config.logging_steps)) == 0 or runner.step == total:
            console.print(f"ppo step {runner.step}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if config.save_steps and runner.step % int(config.save_steps) == 0 and runner.step < total:
            runner.save(out / f"checkpoint-{runner.step}", with_state=True)
            runner._prune(out)
    runner.save(out / f"checkpoint-{runner.step}", with_state=True)
    runner._prune(out)
    runner.save(out, with_state=False)
    final = {f"final_{k}": v[-1] for k, v in runner.history.items() if v}
    return StageResult("ppo", opts.out, runner.step, runner.resume, final, report, {k: runner.history.get(k, []) for k in runner.history})

