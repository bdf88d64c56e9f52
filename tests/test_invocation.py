"""The recorded command line keeps what the user typed and hides secrets."""

from __future__ import annotations

import sys

from medmill.invocation import invocation, redact_args


def test_redacts_secret_flags_url_credentials_and_query_keys():
    args = [
        "medmill", "push", "d", "--hf-token", "hf_abc123", "--api-key=sk-xyz",
        "--llm-base-url", "https://user:pa55@llm.example/v1?api_key=sk-q&x=1",
        "--llm-api-key-env", "DEEPSEEK_API_KEY",
    ]
    text = " ".join(redact_args(args))
    for secret in ("hf_abc123", "sk-xyz", "pa55", "sk-q"):
        assert secret not in text
    assert "--llm-api-key-env DEEPSEEK_API_KEY" in text  # the variable's name is not a secret
    assert "https://***@llm.example/v1?api_key=***&x=1" in text


def test_uses_argv_when_run_as_medmill(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/medmill", "build-kg-qa", "kg dir", "--out", "o"])
    assert invocation(["ignored"]) == "medmill build-kg-qa 'kg dir' --out o"
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert invocation(["build-kg-qa", "x"]) == "medmill build-kg-qa x"
