"""The question/answer templates of template-mode KG-QA, loaded from YAML and checked up front.

Templates are data (prompts/kg_qa_templates.yaml, or the user's own file via --templates): a template
with an unknown placeholder or an empty list fails at load with a one-line error, not midway through a
build.
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medmill.schemas.errors import MedmillError

DEFAULT_TEMPLATES = "kg_qa_templates"


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check(templates: list[str], allowed: set[str], where: str) -> None:
    for t in templates:
        try:
            unknown = placeholders(t) - allowed
        except ValueError as e:
            raise ValueError(f"{where}: bad template {t!r}: {e}") from None
        if unknown:
            raise ValueError(f"{where}: template {t!r} uses unknown placeholder(s) {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QAPair(_Strict):
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)


class RelationTemplates(_Strict):
    aliases: list[str] = Field(default_factory=list)
    text: bool = False
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    # for yes/no style attributes (医保: 是/否): the answer chosen by the attribute's exact value
    answers_by_value: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_answers(self) -> RelationTemplates:
        if not self.answers and not self.answers_by_value:
            raise ValueError("needs `answers` or `answers_by_value`")
        return self


class GenericTemplates(_Strict):
    list: QAPair
    text: QAPair


class CombinedTemplates(_Strict):
    id: str
    relations: list[str] = Field(min_length=2)
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)


class ReverseSingle(_Strict):
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)


class ReverseMulti(_Strict):
    symptoms: int = Field(2, ge=2, le=4)
    questions: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)
    answers_without_checks: list[str] = Field(min_length=1)


class ReverseTemplates(_Strict):
    relation: str
    checks_relation: str = "检查"
    min_entities: int = Field(2, ge=1)
    max_entities: int = Field(8, ge=1)
    max_checks: int = Field(6, ge=1)
    single: ReverseSingle
    multi: ReverseMulti | None = None


class KGQATemplates(_Strict):
    id: str
    version: str
    max_values: int = Field(10, ge=1)
    max_text_chars: int = Field(1200, ge=50)
    truncation_note: str
    skip_relations: dict[str, str] = Field(default_factory=dict)
    generic: GenericTemplates
    relations: dict[str, RelationTemplates]
    combined: list[CombinedTemplates] = Field(default_factory=list)
    reverse: ReverseTemplates | None = None

    @model_validator(mode="after")
    def _placeholders(self) -> KGQATemplates:
        _check([self.truncation_note], {"total", "shown"}, "truncation_note")
        _check(self.generic.list.questions, {"entity", "relation"}, "generic.list.questions")
        _check(self.generic.list.answers, {"entity", "relation", "values", "note"}, "generic.list.answers")
        _check(self.generic.text.questions, {"entity", "relation"}, "generic.text.questions")
        _check(self.generic.text.answers, {"entity", "relation", "text"}, "generic.text.answers")
        seen: dict[str, str] = {}
        for name, rel in self.relations.items():
            _check(rel.questions, {"entity"}, f"relations.{name}.questions")
            answer_vars = {"entity", "text"} if rel.text else {"entity", "values", "note"}
            _check(rel.answers, answer_vars, f"relations.{name}.answers")
            _check(list(rel.answers_by_value.values()), {"entity"}, f"relations.{name}.answers_by_value")
            for label in [name, *rel.aliases]:
                if label in seen and seen[label] != name:
                    raise ValueError(f"relation label {label!r} is claimed by both {seen[label]} and {name}")
                seen[label] = name
        for combo in self.combined:
            missing = [r for r in combo.relations if r not in self.relations or self.relations[r].text]
            if missing:
                raise ValueError(f"combined.{combo.id}: {missing} are not list relations of `relations`")
            _check(combo.questions, {"entity"}, f"combined.{combo.id}.questions")
            _check(combo.answers, {"entity", *combo.relations}, f"combined.{combo.id}.answers")
        if self.reverse is not None:
            if self.reverse.relation not in self.relations:
                raise ValueError(f"reverse.relation {self.reverse.relation!r} is not in `relations`")
            if self.reverse.checks_relation not in self.relations:
                raise ValueError(f"reverse.checks_relation {self.reverse.checks_relation!r} is not in `relations`")
            _check(self.reverse.single.questions, {"symptom"}, "reverse.single.questions")
            _check(self.reverse.single.answers, {"symptom", "entities", "note"}, "reverse.single.answers")
            if self.reverse.multi:
                _check(self.reverse.multi.questions, {"symptoms"}, "reverse.multi.questions")
                _check(self.reverse.multi.answers, {"symptoms", "entities", "note", "checks"},
                       "reverse.multi.answers")
                _check(self.reverse.multi.answers_without_checks, {"symptoms", "entities", "note"},
                       "reverse.multi.answers_without_checks")
        return self

    def canonical(self, label: str) -> str | None:
        """The `relations` entry a KG label belongs to (by name or alias), or None."""
        if label in self.relations:
            return label
        for name, rel in self.relations.items():
            if label in rel.aliases:
                return name
        return None

    @property
    def ref(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version}


def load_templates(path: Path | None = None) -> KGQATemplates:
    """The shipped templates, or the user's YAML file at `path`."""
    if path is None:
        origin = f"medmill.prompts/{DEFAULT_TEMPLATES}.yaml"
        text = resources.files("medmill.prompts").joinpath(f"{DEFAULT_TEMPLATES}.yaml").read_text(encoding="utf-8")
    else:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MedmillError(f"templates file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise MedmillError(f"cannot read templates file {path}: {e}") from None
    return _validated(text, origin).model_copy(deep=True)  # a copy: callers may change theirs


@lru_cache(maxsize=8)
def _validated(text: str, origin: str) -> KGQATemplates:
    """Parsed and checked once per process and file content (every KG-QA build loads the shipped
    templates: ~14 kB of YAML and a model check, far more than a copy)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MedmillError(f"templates file {origin} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MedmillError(f"templates file {origin} must hold a mapping")
    try:
        return KGQATemplates.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise MedmillError(f"templates file {origin}: {where}: {first['msg']}") from None
