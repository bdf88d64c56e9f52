"""Seeded hashing: the same seed and key give the same rank or fraction on every machine and in every
process (unlike Python's `hash`). Splits, mode mixes and trainers' hold-outs all rank with it, so
adding a group never moves another one."""

from __future__ import annotations

import hashlib


def seeded_digest(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def seeded_rank(seed: int, key: str) -> str:
    """A sortable rank (hex) of `key` under `seed`."""
    return seeded_digest(seed, key).hex()


def seeded_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by `seed` and `key`."""
    return int.from_bytes(seeded_digest(seed, key)[:8], "big") / 2**64
