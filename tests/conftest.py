"""Shared fixtures. Tests that read ../shared/samples skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLES = REPO.parent / "shared" / "samples"
EXAMPLES = REPO / "examples"


@pytest.fixture
def samples_dir() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    return SHARED_SAMPLES


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture
def llm_server():
    """A started local OpenAI-compatible server (tests/llm_server.py); set `.responder`, `.faults`,
    `.latency` as needed; `.base_url` goes to LLMSettings(base_url=...)."""
    from tests.llm_server import FakeLLMServer

    with FakeLLMServer() as server:
        yield server
