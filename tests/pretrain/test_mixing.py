"""Mixing by token share: ratios within 1 %, epochs, caps, and the same seed giving the same mixture."""

from __future__ import annotations

import random

import pytest

from medmill.builders.pretrain.mixing import parse_mix, plan_mix, select_documents
from medmill.schemas.errors import MedmillError


def _tokens(n: int, seed: int, lo: int = 40, hi: int = 900) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def _shares(plans) -> dict[str, float]:
    total = sum(p.tokens_selected for p in plans)
    return {p.name: p.tokens_selected / total for p in plans}


@pytest.mark.parametrize(
    ("domain_docs", "general_docs", "spec", "max_epochs"),
    [
        (300, 3000, "d=0.3,g=0.7", 1.0),  # downsample general
        (100, 3000, "d=0.3,g=0.7", 3.0),  # upsample domain (about 3 epochs)
        (2000, 2000, "d=0.2,g=0.8", 2.0),  # downsample domain
        (50, 4000, "d=1,g=4", 4.0),  # shares normalised: 0.2 / 0.8
    ],
)
def test_mix_reaches_requested_ratios_within_one_percent(domain_docs, general_docs, spec, max_epochs):
    entries = parse_mix(spec)
    tokens = {"d": _tokens(domain_docs, 1), "g": _tokens(general_docs, 2)}
    plans = plan_mix(tokens, {e.name: e.weight for e in entries}, max_epochs=max_epochs, seed=7)
    reached = _shares(plans)
    for e in entries:
        assert abs(reached[e.name] - e.weight) / e.weight <= 0.01, (reached, e)
    # the scarce source is used up to the cap, no source beyond it
    assert max(p.epochs for p in plans) == pytest.approx(max_epochs, rel=0.01)
    assert all(p.epochs <= max_epochs + 1e-9 for p in plans)


def test_upsampled_epochs_and_copies():
    tokens = {"d": _tokens(100, 1), "g": _tokens(3000, 2)}
    plans = {p.name: p for p in plan_mix(tokens, {"d": 0.3, "g": 0.7}, max_epochs=3.0, seed=1)}
    d = plans["d"]
    assert 2.9 < d.epochs <= 3.0
    epochs_of = {}
    for i, e in d.selection:
        epochs_of.setdefault(i, set()).add(e)
    assert all({0, 1} <= v for v in epochs_of.values())  # every document at least twice
    assert len(d.selection) > 2 * 100


def test_same_seed_same_mixture_other_seed_other():
    tokens = _tokens(1000, 3)
    a = select_documents(tokens, sum(tokens) // 3, seed=11, name="g")
    b = select_documents(tokens, sum(tokens) // 3, seed=11, name="g")
    c = select_documents(tokens, sum(tokens) // 3, seed=12, name="g")
    assert a == b and a != c
    got = sum(tokens[i] for i, _ in a)
    assert sum(tokens) // 3 - min(tokens) < got <= sum(tokens) // 3


def test_requested_total_beyond_the_epoch_cap_is_an_error():
    tokens = {"d": [100] * 10, "g": [100] * 1000}
    plans = plan_mix(tokens, {"d": 0.5, "g": 0.5}, max_epochs=3.0, seed=1, total=6000)
    assert {p.name: p.tokens_selected for p in plans} == {"d": 3000, "g": 3000}
    with pytest.raises(MedmillError, match=r"d has 1,000 tokens.*needs 5.00 epochs, above --max-epochs 3"):
        plan_mix(tokens, {"d": 0.5, "g": 0.5}, max_epochs=3.0, seed=1, total=10_000)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a=0.3", "at least two sources"),
        ("a=0.3,b", "expected DIR=SHARE"),
        ("a=x,b=0.5", "is not a number"),
        ("a=0,b=1", "must be above 0"),
        ("a=0.5,a=0.5", "given twice"),
    ],
)
def test_bad_mix_specs(spec, message):
    with pytest.raises(MedmillError, match=message):
        parse_mix(spec)
