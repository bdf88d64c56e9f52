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


def test_json_argument_with_a_key_is_redacted():
    text = " ".join(redact_args(["medmill", "build-book-qa", "--extra-body", '{"api_key": "sk-live-123", "top_k": 20}']))
    assert "sk-live-123" not in text and '"top_k": 20' in text


def test_written_manifest_and_card_never_hold_secrets(tmp_path):
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir
    from medmill.builders.publish.card import render_card
    from medmill.schemas import Message, SFTRecord, Source

    secret = "sk-do-not-leak-42"
    m = [Message(role="user", content="问"), Message(role="assistant", content="答")]
    rec = SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t"))
    info = BuildInfo(
        kind="sft",
        builder="t",
        command=f"medmill build-book-qa x --extra-body '{{\"api_key\": \"{secret}\"}}' --llm-base-url https://u:{secret}@h/v1",
        params={"llm": {"extra_body": {"api_key": secret, "top_k": 20}, "api_key_env": "MY_KEY", "max_tokens": 512}},
        llm={"params": {"extra_body": {"Authorization": f"Bearer {secret}"}}},
    )
    write_dataset_dir(tmp_path / "ds", [rec], [], info, render_card=render_card)
    for f in (tmp_path / "ds").rglob("*"):
        if f.is_file() and f.suffix in {".json", ".md", ".jsonl"}:
            assert secret not in f.read_text(encoding="utf-8"), f
    manifest = (tmp_path / "ds" / "manifest.json").read_text(encoding="utf-8")
    assert '"api_key_env": "MY_KEY"' in manifest and '"max_tokens": 512' in manifest and '"top_k": 20' in manifest
