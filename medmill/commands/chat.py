"""medmill chat --model PATH [--system TEXT]: talk to a checkpoint in the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from medmill.config import ConfigOption
from medmill.console import err_console


def chat(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint dir (full weights or LoRA adapter)."),
    system: str | None = typer.Option(None, "--system", help="System prompt (change it in the chat with /system TEXT)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    bf16: bool = typer.Option(False, "--bf16", help="Load weights in bfloat16."),
    template: str | None = typer.Option(None, "--template", help="Chat template for checkpoints without one (chatml/qwen, llama3, ...)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Longest answer in tokens."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="Sampling temperature (0 = greedy)."),
    config: Path | None = ConfigOption,
) -> None:
    """Chat with a checkpoint using its own chat template; tokens stream as they come. In the chat:
    /reset, /system TEXT, /exit. For a look at a model, not for serving."""
    from medmill.evaluation.chat import ChatSession, run_chat
    from medmill.evaluation.models import load_for_eval

    lm = load_for_eval(model, "causal", device, bf16, template)
    session = ChatSession(lm, system=system, max_new_tokens=min(max_new_tokens, max(lm.context_length // 2, 1)), temperature=temperature)
    err_console.print(f"{model}: context {lm.context_length} tokens", highlight=False, markup=False)
    run_chat(session, sys.stdin, sys.stdout)


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
