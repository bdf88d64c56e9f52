"""Rule rewards for RL stages, given as `name[:arg]=weight` specs:

  target:TEXT=w   share of the response made of TEXT (0..1): reward a wanted word or token
  eos=w           1 when the response ended with EOS, else 0
  length:N=w      -|tokens - N| / N: prefer answers near N tokens
  safety:FILE=w   1 when the response contains a term of the lexicon FILE (one term a line); use a
                  negative weight to penalise unsafe advice

PPO whitens advantages, so a weight matters only relative to the other rewards and to the KL
penalty: raise it when the KL term drowns the rule out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medmill.schemas.errors import MedmillError


@dataclass(frozen=True)
class Response:
    text: str
    n_tokens: int
    ended: bool  # closed by EOS within the length budget


@dataclass(frozen=True)
class RuleReward:
    name: str
    weight: float
    fn: Callable[[Response], float]

    def __call__(self, response: Response) -> float:
        return self.weight * self.fn(response)


def _target(text: str) -> Callable[[Response], float]:
    return lambda r: r.text.count(text) * len(text) / max(1, len(r.text))


def _length(arg: str) -> Callable[[Response], float]:
    try:
        n = int(arg)
    except ValueError:
        raise MedmillError(f"length rule needs a token count, got {arg!r}") from None
    return lambda r: -abs(r.n_tokens - n) / max(1, n)


def _safety(arg: str) -> Callable[[Response], float]:
    path = Path(arg)
    if not path.is_file():
        raise MedmillError(f"safety rule: lexicon file {arg!r} not found")
    terms = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip() and not t.startswith("#")]
    return lambda r: float(any(t in r.text for t in terms))


def parse_rule(spec: str) -> RuleReward:
    head, sep, weight_text = spec.rpartition("=")
    if not sep:
        head, weight_text = spec, "1"
    try:
        weight = float(weight_text)
    except ValueError:
        raise MedmillError(f"reward rule {spec!r}: weight {weight_text!r} is not a number") from None
    name, _, arg = head.partition(":")
    if name == "target" and arg:
        return RuleReward(spec, weight, _target(arg))
    if name == "eos":
        return RuleReward(spec, weight, lambda r: float(r.ended))
    if name == "length" and arg:
        return RuleReward(spec, weight, _length(arg))
    if name == "safety" and arg:
        return RuleReward(spec, weight, _safety(arg))
    raise MedmillError(f"unknown reward rule {spec!r}; use target:TEXT=w, eos=w, length:N=w or safety:FILE=w")


def parse_rules(specs: list[str]) -> list[RuleReward]:
    return [parse_rule(s) for s in specs]
