"""`medmill init-model`: a small random model + tokenizer trained on your corpus, for offline runs."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.console import summary_table


def init_model(
    out: Path = typer.Option(..., help="Directory to write the model and tokenizer to."),
    corpus: list[Path] | None = typer.Option(None, "--corpus", help="Dataset dir or text file to train the tokenizer on; repeatable."),
    arch: str = typer.Option("qwen2", help="qwen2 or llama."),
    size: str = typer.Option("tiny", help="tiny (hidden 64, 2 layers), small (256, 4) or base (768, 12)."),
    vocab_size: int | None = typer.Option(None, help="Tokenizer vocabulary (default by size: 1000 / 8000 / 32000)."),
    seed: int = typer.Option(0, help="Weight initialisation seed."),
) -> None:
    """Create a randomly initialised model with a byte-level BPE tokenizer and a chatml template."""
    from medmill.builders.readers.textio import iter_corpus_texts
    from medmill.trainers.init_model import init_model as make

    # text files are decoded as the builds decode inputs (utf-8 / utf-8-sig / gb18030, JSON Lines values)
    report = make(out, corpus=corpus or [], arch=arch, size=size, vocab_size=vocab_size, seed=seed,
                  read_file=iter_corpus_texts)
    summary_table(
        "medmill init-model",
        [("output", report.out), ("arch", report.arch), ("size", report.size), ("parameters", report.parameters),
         ("vocab", report.vocab_size), ("corpus texts", report.corpus_texts)],
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("init-model")(init_model)
