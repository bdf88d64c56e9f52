"""Load prompt templates shipped in medmill.prompts (or a user's own YAML file) by id.

A prompt file is YAML with `id`, `version`, `system` (optional), `user` (a Jinja2 template), and any
extra keys a builder needs (e.g. question types). The id and version go into every record's `meta`
and the manifest, so a dataset says which prompt produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from medmill.schemas.errors import MedmillError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """A template compiled once per process: a prompt is rendered for every request of a run, and
    compiling it (parse + Python code generation) costs more than the rendering."""
    return _ENV.from_string(source)


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: str
    user: str
    system: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version}

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Chat messages for this prompt with `variables` filled in (a missing variable is an error)."""
        try:
            messages = []
            if self.system:
                messages.append({"role": "system", "content": _compiled(self.system).render(**variables).strip()})
            messages.append({"role": "user", "content": _compiled(self.user).render(**variables).strip()})
        except jinja2.UndefinedError as e:
            raise MedmillError(f"prompt {self.id} v{self.version}: {e.message}") from None
        return messages


def _parse(text: str, origin: str) -> PromptTemplate:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MedmillError(f"prompt file {origin} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data.get("id") or not data.get("user"):
        raise MedmillError(f"prompt file {origin} needs at least `id`, `version` and `user`")
    extra = {k: v for k, v in data.items() if k not in {"id", "version", "system", "user"}}
    return PromptTemplate(
        id=str(data["id"]),
        version=str(data.get("version", "1")),
        user=str(data["user"]),
        system=data.get("system"),
        extra=extra,
    )


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """A shipped prompt by id (`kg_qa_scenario`) or a YAML file path given by the user."""
    p = Path(str(name_or_path))
    if p.suffix in {".yaml", ".yml"} and p.exists():
        return _parse(p.read_text(encoding="utf-8"), str(p))
    resource = resources.files("medmill.prompts").joinpath(f"{name_or_path}.yaml")
    if not resource.is_file():
        raise MedmillError(f"unknown prompt {name_or_path!r} (no {name_or_path}.yaml in medmill.prompts)")
    return _parse(resource.read_text(encoding="utf-8"), f"medmill.prompts/{name_or_path}.yaml")
