"""Named chat templates for base models that ship none.

Every template wraps assistant content in `{% generation %}` markers (trl's assistant-only loss
needs them) and closes each assistant turn with the end-of-turn token inside those markers, so the
model learns to stop (MedicalGPT #157: truncated targets lost their EOS and the model never stopped).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from medmill.schemas.errors import MedmillError


@dataclass(frozen=True)
class TemplateSpec:
    file: str
    # The token that ends an assistant turn; None = the tokenizer's own eos_token.
    end_of_turn: str | None = None
    # Literal control tokens the template emits, registered as special tokens so they stay one token.
    special_tokens: tuple[str, ...] = ()


TEMPLATES: dict[str, TemplateSpec] = {
    "chatml": TemplateSpec("chatml.jinja", "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    "llama3": TemplateSpec(
        "llama3.jinja", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    ),
    "llama2": TemplateSpec("llama2.jinja"),
    "baichuan2": TemplateSpec("baichuan2.jinja", None, ("<reserved_106>", "<reserved_107>")),
    "chatglm3": TemplateSpec("chatglm3.jinja", None, ("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>")),
    "vicuna": TemplateSpec("vicuna.jinja"),
    "alpaca": TemplateSpec("alpaca.jinja"),
}
ALIASES = {"qwen": "chatml", "qwen2": "chatml", "qwen2.5": "chatml"}


def template_names() -> list[str]:
    return sorted([*TEMPLATES, *ALIASES])


def resolve(name: str) -> TemplateSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TEMPLATES:
        raise MedmillError(f"unknown chat template {name!r}; choose one of: {', '.join(template_names())}")
    return TEMPLATES[key]


def template_text(name: str) -> str:
    spec = resolve(name)
    return resources.files("medmill.trainers").joinpath("templates", spec.file).read_text(encoding="utf-8")


def apply_template(tokenizer, name: str) -> int:
    """Install template `name` on `tokenizer`; return how many tokens were added (resize the model then)."""
    spec = resolve(name)
    vocab = tokenizer.get_vocab()
    missing = [t for t in spec.special_tokens if t not in vocab]
    added = tokenizer.add_special_tokens({"additional_special_tokens": missing}) if missing else 0
    if spec.end_of_turn is not None:
        tokenizer.eos_token = spec.end_of_turn
    tokenizer.chat_template = template_text(name)
    return added
