"""PPOConfig: the settings of medmill's PPO, in their own module so options.py (which resolves a stage's
config class) and ppo.py (which runs it) do not import each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class PPOConfig(TrainingArguments):
    """TrainingArguments (lr, batch size, max_steps, save/logging steps, seed, ...) plus PPO's own knobs."""

    response_length: int = field(default=64, metadata={"help": "Max new tokens per response."})
    max_prompt_length: int = field(default=512, metadata={"help": "Prompts are cut from the left to this many tokens."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for rollouts."})
    num_ppo_epochs: int = field(default=2, metadata={"help": "Optimisation epochs over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "Mini-batches per rollout batch."})
    kl_coef: float = field(default=0.05, metadata={"help": "Initial per-token KL penalty coefficient."})
    adaptive_kl: bool = field(default=True, metadata={"help": "Adapt kl_coef towards target_kl."})
    target_kl: float = field(default=6.0, metadata={"help": "Target KL (summed over a response) of the adaptive controller."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of the adaptive KL controller."})
    gamma: float = field(default=1.0, metadata={"help": "Discount."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip range."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip range."})
    vf_coef: float = field(default=0.1, metadata={"help": "Value loss coefficient."})
    critic_learning_rate: float | None = field(default=None, metadata={"help": "Critic LR (default: learning_rate)."})
    missing_eos_penalty: float | None = field(default=1.0, metadata={"help": "Subtracted from the score of responses without EOS."})
