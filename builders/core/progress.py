"""Progress reporting without a console: builders and the LLM engine call a `Progress` they are
given; the CLI passes one that draws rich bars (medmill.console.progress_bars), tests and library
users pass nothing and get `no_progress`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

# advance(n, status): n more items done; status is a short line shown beside the bar ("" keeps it)
Advance = Callable[[int, str], None]


class Progress(Protocol):
    def __call__(self, desc: str, total: int) -> AbstractContextManager[Advance]: ...


@contextmanager
def no_progress(desc: str, total: int) -> Iterator[Advance]:
    """A Progress that shows nothing."""
    yield lambda n=1, status="": None
