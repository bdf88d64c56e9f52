"""Prefix copies of one conversation, merged: each conversation is kept once, in its longest form.

BenTsao's literature dialogues are prefix-expanded: turn k and turn k+1 of one conversation are
separate samples (formats.md §1.2). Kept apart they teach the same exchange several times and, split
by record, leak a conversation into its own evaluation. A conversation whose turns (system prompt
aside, compared with whitespace and width normalised) are the opening turns of a longer one is
dropped in favour of the longer one, and every conversation gets a group key (its first exchange)
so the splitter keeps prefix copies and branches of one conversation in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from medmill.builders.text.normalise import normalise

Turn = tuple[str, str]


@dataclass
class MergePlan:
    """Per conversation: the index of the longer conversation it is a prefix copy of (None = kept),
    and its group key."""

    copy_of: list[int | None]
    group: list[str]

    @property
    def copies(self) -> int:
        return sum(1 for c in self.copy_of if c is not None)


def prefix_digests(turns: Sequence[Turn]) -> list[str]:
    """Digest of the first 2, 4, … turns (complete exchanges), system turns left out."""
    h = hashlib.blake2b(digest_size=16)
    digests: list[str] = []
    body = [t for r, t in turns if r != "system"]
    for i, text in enumerate(body, start=1):
        h.update(normalise(text).encode())
        h.update(b"\x00")
        if i % 2 == 0:
            digests.append(h.hexdigest())
    return digests


def plan_prefix_merge(conversations: Sequence[Sequence[Turn]]) -> MergePlan:
    """Which conversations are prefix copies of a longer one, and one group key per conversation.

    Linear in the number of turns: every exchange-aligned prefix is hashed once and owned by the
    longest conversation that starts with it (the first one on ties), which cannot itself be a
    prefix of anything longer."""
    return plan_from_digests([prefix_digests(c) for c in conversations])


def plan_from_digests(digests: Sequence[Sequence[str]]) -> MergePlan:
    """`plan_prefix_merge` from each conversation's prefix digests (`prefix_digests`): a streamed build
    keeps only these of every conversation."""
    owner: dict[str, tuple[int, int]] = {}  # prefix digest -> (-length, index) of its longest holder
    for i, ds in enumerate(digests):
        for d in ds:
            best = owner.get(d)
            if best is None or (-len(ds), i) < best:
                owner[d] = (-len(ds), i)
    copy_of: list[int | None] = []
    group: list[str] = []
    for i, ds in enumerate(digests):
        if not ds:
            copy_of.append(None)
            group.append(group_key(ds, i))
            continue
        neg_len, holder = owner[ds[-1]]
        copy_of.append(holder if -neg_len > len(ds) else None)
        group.append(group_key(ds, i))
    return MergePlan(copy_of, group)


def group_key(digests: Sequence[str], index: int) -> str:
    """A conversation's split group: its first exchange (so its prefix copies and branches share it)."""
    return "conv:" + digests[0][:20] if digests else f"conv:{index}"
