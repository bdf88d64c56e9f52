"""How a backend says a call failed; the engine decides what to do (retry, step down, stop)."""

from __future__ import annotations


class CallError(Exception):
    """A transient failure worth retrying (429, 5xx, timeout, dropped connection, garbled response)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class RequestRejected(Exception):
    """The server refused this one request for a reason retrying cannot fix (e.g. prompt too long)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FormatUnsupported(Exception):
    """The server rejected the `response_format`; the engine falls back to a weaker mode."""


class FatalCallError(Exception):
    """Every further call would fail the same way (bad key, unknown model, wrong URL): stop the build."""
