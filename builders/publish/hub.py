"""Push a dataset dir to the Hugging Face Hub as one config of a dataset repo.

Layout in the repo follows `Dataset.push_to_hub`: the `default` config's shards live in `data/`,
a named config's in `{config}/`; the card (README.md) lists every config in the repo. A push
replaces the config's old shards (stale ones are deleted in the same commit), uploads only files
whose content changed, and makes no commit at all when nothing changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from medmill.builders.core.fileinfo import sha256_file
from medmill.builders.core.manifest import Manifest
from medmill.builders.publish.card import render_card, summary_of
from medmill.builders.publish.plots import PLOTS_DIR, existing_plots
from medmill.schemas.dataset_dir import SHARD_RE, read_manifest
from medmill.schemas.errors import MedmillError
from medmill.version import __version__

log = logging.getLogger(__name__)

CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_CONFIG_NAMES = {"data", PLOTS_DIR}
MAX_FILES_PER_COMMIT = 50
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}

T = TypeVar("T")


@dataclass
class FileToPush:
    """One file of a push: a file of the dataset dir, or bytes made for this push (the card)."""

    path_in_repo: str
    source: Path | bytes

    def content(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else self.source.read_bytes()

    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def sha256(self) -> str:
        return hashlib.sha256(self.source).hexdigest() if isinstance(self.source, bytes) else sha256_file(self.source)

    def git_sha1(self) -> str:
        """The git blob id the Hub reports for a regular (non-LFS) file."""
        content = self.content()
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    def upload_source(self) -> str | bytes:
        """What CommitOperationAdd takes: a path (streamed from disk) or the bytes."""
        return self.source if isinstance(self.source, bytes) else str(self.source)

    def describe(self) -> str:
        return "card rendered for this push" if isinstance(self.source, bytes) else str(self.source)


@dataclass
class PushPlan:
    """What a push does: `plan_offline` fills it for `--dry-run`, `push_dir` against the remote."""

    repo_id: str
    config_name: str
    data_dir: str
    revision: str
    additions: list[FileToPush] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    commit_message: str = ""
    commit_description: str = ""

    @property
    def is_noop(self) -> bool:
        return not self.additions and not self.deletions

    def commits(self, max_files: int = MAX_FILES_PER_COMMIT) -> list[tuple[list[FileToPush], list[str]]]:
        """Shards first in chunks, then a last commit with manifest, card and deletions.

        The card that points at the new shards lands only after every shard is uploaded, so an
        interrupted push never leaves a card describing files that are not there.
        """
        last_names = {"README.md", self._prefix() + "manifest.json"}
        early = [a for a in self.additions if a.path_in_repo not in last_names]
        late = [a for a in self.additions if a.path_in_repo in last_names]
        chunks: list[tuple[list[FileToPush], list[str]]] = []
        while len(early) > max_files:
            chunks.append((early[:max_files], []))
            early = early[max_files:]
        chunks.append((early + late, list(self.deletions)))
        return chunks

    def _prefix(self) -> str:
        return "" if self.config_name == "default" else f"{self.config_name}/"


def repo_layout(config_name: str) -> tuple[str, str]:
    """(data folder, prefix of manifest/plots) of a config inside the repo."""
    if config_name == "default":
        return "data", ""
    if not CONFIG_NAME_RE.match(config_name) or config_name in RESERVED_CONFIG_NAMES:
        raise MedmillError(
            f"--config-name {config_name!r} is not usable: letters, digits, '_', '-', '.'; not 'data' or 'plots'"
        )
    return config_name, f"{config_name}/"


def load_manifest(path: Path) -> Manifest:
    raw = read_manifest(path)
    if raw is None:
        raise MedmillError(f"{path} has no manifest.json: push a finished medmill dataset dir")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        raise MedmillError(f"{path}/manifest.json does not match medmill's manifest: {e.errors()[0]['msg']}") from None
    if not manifest.complete:
        raise MedmillError(f"{path} is an unfinished build (manifest says complete=false); finish or rebuild it")
    if manifest.records_total == 0:
        raise MedmillError(
            f"{path} holds no records (see its rejects.jsonl); nothing to push, and pushing it would delete "
            "the config's shards on the Hub"
        )
    for info in manifest.splits.values():
        for name in info.files:
            if not (path / name).is_file():
                raise MedmillError(f"{path}: shard {name} listed in manifest.json is missing")
    return manifest


def render_push_card(
    path: Path,
    manifest: Manifest,
    config_name: str,
    other_configs: list[dict[str, Any]],
    other_infos: Sequence[dict[str, Any]] = (),
) -> bytes:
    """The card for the repo: this config's statistics, every config of the repo in its YAML header."""
    data_dir, prefix = repo_layout(config_name)
    local_card = path / "README.md"
    description = summary_of(local_card.read_text(encoding="utf-8")) if local_card.exists() else ""
    text = render_card(
        manifest,
        path,
        description,
        config_name=config_name,
        data_dir=data_dir,
        asset_prefix=prefix,
        other_configs=other_configs,
        other_infos=other_infos,
        plots=False,
    )
    return text.encode("utf-8")


def local_files(path: Path, manifest: Manifest, config_name: str) -> list[FileToPush]:
    """Shards, plots and manifest of the dir, at their paths in the repo (card excluded)."""
    data_dir, prefix = repo_layout(config_name)
    files = [
        FileToPush(f"{data_dir}/{Path(name).name}", path / name)
        for info in manifest.splits.values()
        for name in info.files
    ]
    files += [FileToPush(prefix + rel, path / rel) for _title, rel in existing_plots(path)]
    files.append(FileToPush(prefix + "manifest.json", path / "manifest.json"))
    return files


def stale_paths(remote: list[str], config_name: str, keep: set[str]) -> list[str]:
    """Remote shards and plots of this config that the new push does not replace."""
    data_dir, prefix = repo_layout(config_name)
    stale = []
    for p in remote:
        if p in keep:
            continue
        folder, _, name = p.rpartition("/")
        if folder == data_dir and SHARD_RE.match(name):
            stale.append(p)
        elif folder == prefix + PLOTS_DIR and name.endswith(".png"):
            stale.append(p)
    return sorted(stale)


def commit_text(manifest: Manifest, config_name: str, repo_id: str) -> tuple[str, str]:
    message = f"medmill {__version__}: push config '{config_name}' ({manifest.records_total} {manifest.kind} records)"
    description = (
        f"Built with: {manifest.command}\n"
        f"Pushed with: medmill {__version__} push --repo {repo_id} --config-name {config_name}\n"
        f"Splits: {', '.join(f'{s}={i.records}' for s, i in manifest.splits.items())}"
    )
    return message, description


def plan_offline(path: Path, repo_id: str, config_name: str = "default", revision: str = "main") -> PushPlan:
    """The plan against an empty repo (what `--dry-run` shows; it never touches the network)."""
    path = Path(path)
    manifest = load_manifest(path)
    data_dir, _ = repo_layout(config_name)
    plan = PushPlan(repo_id=repo_id, config_name=config_name, data_dir=data_dir, revision=revision)
    plan.additions = local_files(path, manifest, config_name)
    plan.additions.append(FileToPush("README.md", render_push_card(path, manifest, config_name, [])))
    plan.commit_message, plan.commit_description = commit_text(manifest, config_name, repo_id)
    return plan


# --- talking to the Hub ------------------------------------------------------------------------


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


TRANSIENT_ERRORS = {"TransportError", "TimeoutException", "ConnectionError", "TimeoutError"}


def is_transient(exc: BaseException) -> bool:
    """5xx / 429 / 408 answers and network failures (by class name: huggingface_hub's HTTP stack
    moved between requests, httpx and httpx2, and all of them name these errors alike)."""
    if any(cls.__name__ in TRANSIENT_ERRORS for cls in type(exc).__mro__):
        return True
    return _status(exc) in TRANSIENT_STATUS


def with_retries(fn: Callable[[], T], what: str, attempts: int = 5, base_delay: float = 1.0) -> T:
    """Call `fn`, retrying transient Hub errors with exponential backoff (Retry-After honoured)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = base_delay * 2 ** (attempt - 1)
            response = getattr(exc, "response", None)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            if retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, _status(exc) or type(exc).__name__, attempt, attempts - 1, delay)
            time.sleep(min(delay, 60))
    raise AssertionError("unreachable")


def hub_error(exc: BaseException, repo_id: str, token: str | None) -> MedmillError:
    """A one-line error for the user; the token never appears in it."""
    status = _status(exc)
    if status == 401:
        text = "the Hub rejected the token (401 Unauthorized); set a valid HF_TOKEN or run `hf auth login`"
    elif status == 403:
        text = f"the token has no write access to dataset repo {repo_id} (403 Forbidden)"
    elif status == 404:
        text = f"dataset repo {repo_id} or its revision was not found (404)"
    else:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = f"push to {repo_id} failed: {first}"
    if token:
        text = text.replace(token, "***")
    return MedmillError(text)


@dataclass
class PushResult:
    plan: PushPlan
    commits: list[str] = field(default_factory=list)
    created_repo: bool = False


def resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise MedmillError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token is needed)")
    return token


def _remote_state(api, repo_id: str, revision: str) -> dict[str, Any]:
    """{path: RepoFile} of the revision (empty for a fresh repo)."""
    from huggingface_hub.hf_api import RepoFile

    items = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
    return {item.path: item for item in items if isinstance(item, RepoFile)}


def _remote_card(api, repo_id: str, revision: str, remote: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The `configs` and `dataset_info` entries of the card already in the repo (none for a new repo)."""
    if "README.md" not in remote:
        return [], []
    from huggingface_hub import DatasetCard

    with tempfile.TemporaryDirectory() as tmp:
        local = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision, local_dir=tmp)
        data = DatasetCard(Path(local).read_text(encoding="utf-8")).data.to_dict()
    configs = [c for c in data.get("configs") or [] if isinstance(c, dict) and c.get("config_name")]
    infos = data.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    infos = [{"config_name": "default", **i} for i in infos if isinstance(i, dict)]
    return configs, infos


def _unchanged(local: FileToPush, remote: Any) -> bool:
    if remote is None or remote.size != local.size():
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == local.sha256()
    return remote.blob_id == local.git_sha1()


def push_dir(
    path: Path,
    repo_id: str,
    *,
    config_name: str = "default",
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    max_files_per_commit: int = MAX_FILES_PER_COMMIT,
    retry_delay: float = 1.0,
) -> PushResult:
    """Create the repo if missing, then commit the changed files of this config (nothing if none)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    path = Path(path)
    manifest = load_manifest(path)
    data_dir, _ = repo_layout(config_name)
    token = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token, library_name="medmill", library_version=__version__)
    branch = revision or "main"
    plan = PushPlan(repo_id=repo_id, config_name=config_name, data_dir=data_dir, revision=branch)
    result = PushResult(plan=plan)
    try:
        with_retries(
            # private=None when not asked: the organisation's default visibility applies
            lambda: api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True),
            "create repo",
            base_delay=retry_delay,
        )
        if branch != "main":
            with_retries(
                lambda: api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True),
                "create branch",
                base_delay=retry_delay,
            )
        remote = with_retries(lambda: _remote_state(api, repo_id, branch), "list repo files", base_delay=retry_delay)
        other, other_infos = with_retries(
            lambda: _remote_card(api, repo_id, branch, remote), "read remote card", base_delay=retry_delay
        )
        files = local_files(path, manifest, config_name)
        files.append(FileToPush("README.md", render_push_card(path, manifest, config_name, other, other_infos)))
        for f in files:
            if _unchanged(f, remote.get(f.path_in_repo)):
                plan.unchanged.append(f.path_in_repo)
            else:
                plan.additions.append(f)
        plan.deletions = stale_paths(list(remote), config_name, {f.path_in_repo for f in files})
        plan.commit_message, plan.commit_description = commit_text(manifest, config_name, repo_id)
        if plan.is_noop:
            return result
        chunks = plan.commits(max_files_per_commit)
        for i, (adds, deletes) in enumerate(chunks, start=1):
            message = plan.commit_message + (f" (part {i}/{len(chunks)})" if len(chunks) > 1 else "")

            def commit(adds=adds, deletes=deletes, message=message):
                # fresh operation objects per attempt: huggingface_hub mutates them while uploading
                ops = [CommitOperationAdd(a.path_in_repo, a.upload_source()) for a in adds]
                ops += [CommitOperationDelete(p) for p in deletes]
                return api.create_commit(
                    repo_id,
                    ops,
                    commit_message=message,
                    commit_description=plan.commit_description,
                    repo_type="dataset",
                    revision=branch,
                )

            result.commits.append(with_retries(commit, "commit", base_delay=retry_delay).oid)
    except HfHubHTTPError as exc:
        raise hub_error(exc, repo_id, token) from None
    except MedmillError:
        raise
    except Exception as exc:  # network down after retries, malformed answers
        raise hub_error(exc, repo_id, token) from None
    return result
