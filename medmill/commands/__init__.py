"""CLI commands, one module each. `register_all` adds them to the app in help order."""

from __future__ import annotations

import importlib

import typer

# Modules in `medmill --help` order. Each defines `register(app)`. Command modules import heavy
# libraries (torch, transformers, datasets) inside their functions so `medmill --help` stays fast.
COMMAND_MODULES = [
    "build_kg_qa",
    "build_book_qa",
    "build_lit_qa",
    "build_prefs",
    "build_self_instruct",
    "build_tasks",
    "build_dialogue",
    "build_pt",
    "filter_cmd",
    "dedup",
    "validate",
    "export",
    "report",
    "push",
    "init_model",
    "train",
    "export_model",
    "eval",
    "chat",
]


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"medmill.commands.{name}").register(app)
