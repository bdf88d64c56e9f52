"""medmill push DIR --repo ORG/NAME: publish a dataset dir to the Hugging Face Hub as one config."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from medmill.builders.publish.hub import MAX_FILES_PER_COMMIT, plan_offline, push_dir
from medmill.config import ConfigOption
from medmill.console import console, summary_table


def push(
    src: Path = typer.Argument(..., help="A finished medmill dataset dir."),
    repo: str = typer.Option(..., "--repo", help="Dataset repo id, ORG/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private (an existing repo keeps its visibility)."),
    revision: str = typer.Option(None, "--revision", help="Branch to push to (created from main if missing; default main)."),
    config_name: str = typer.Option(
        "default", "--config-name", help="Config name in the repo; other configs stay listed in the card."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the operations and files; no network, no token needed."),
    max_files_per_commit: int = typer.Option(
        MAX_FILES_PER_COMMIT, "--max-files-per-commit", min=1, help="Split uploads of many shards into several commits."
    ),
    config: Path = ConfigOption,
) -> None:
    """Upload shards, card and manifest in one commit (stale shards of the config deleted); token from
    HF_TOKEN or `hf auth login`; HF_ENDPOINT selects a private hub or mirror."""
    if "/" not in repo or repo.count("/") != 1:
        raise typer.BadParameter("expected ORG/NAME", param_hint="--repo")
    if dry_run:
        plan = plan_offline(src, repo, config_name=config_name, revision=revision or "main")
        console.print(f"dry run: no network; would push to dataset repo {repo}@{plan.revision}, config '{config_name}'")
        console.print("  create repo if missing (exist_ok)" + (", private" if private else ""))
        for i, (adds, _deletes) in enumerate(plan.commits(max_files_per_commit), start=1):
            console.print(f"  commit {i}: {plan.commit_message}", highlight=False)
            for a in adds:
                console.print(
                    f"    add {a.path_in_repo}  <- {a.describe()} ({a.size():,} bytes, sha256 {a.sha256()[:12]})",
                    highlight=False,
                )
        console.print(
            f"  delete: any other {plan.data_dir}/*-NNNNN-of-NNNNN.parquet and stale plots of this config found in the repo",
            highlight=False,
        )
        console.print("  skip: files whose content on the Hub is already identical (a repeat push commits nothing)")
        return
    result = push_dir(
        src,
        repo,
        config_name=config_name,
        revision=revision,
        private=private,
        endpoint=os.environ.get("HF_ENDPOINT") or None,
        max_files_per_commit=max_files_per_commit,
    )
    plan = result.plan
    rows: list[tuple[str, object]] = [
        ("repo", f"{repo}@{plan.revision}"),
        ("config", config_name),
        ("files uploaded", len(plan.additions)),
        ("files unchanged", len(plan.unchanged)),
        ("stale files deleted", len(plan.deletions)),
        ("commits", len(result.commits)),
    ]
    rows += [(f"commit {i}", oid) for i, oid in enumerate(result.commits, start=1)]
    summary_table(f"push {src}", rows)
    if plan.is_noop:
        console.print("nothing changed since the last push: no commit made")


def register(app: typer.Typer) -> None:
    app.command("push")(push)
