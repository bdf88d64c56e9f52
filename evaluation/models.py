"""Load a checkpoint for evaluation: full weights or a LoRA adapter (merged on load), its own tokenizer
and chat template, on the asked device; `device_map="auto"` spreads a big model over several GPUs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmill.schemas.errors import MedmillError


@dataclass
class LoadedModel:
    path: str
    model: Any
    tokenizer: Any
    device: Any  # where inputs go (the first device of a sharded model)

    @property
    def context_length(self) -> int:
        """Tokens the model attends over: the smaller of its position table and the tokenizer's limit."""
        limits = [getattr(self.model.config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**8]
        return min(usable) if usable else 2048


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedmillError(f"--device {name}: no CUDA GPU is visible on this machine; use --device cpu")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise MedmillError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N")
    return name


def load_for_eval(path: str, kind: str = "causal", device: str = "auto", bf16: bool = False, template: str | None = None) -> LoadedModel:
    """kind: "causal" (mcq, generation, ppl, judge, chat) or "scorer" (a reward model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from medmill.trainers.modeling import has_tokenizer_files, load_tokenizer

    src = Path(path)
    if not src.exists():
        raise MedmillError(f"--model {path}: no such directory")
    adapter = src / "adapter_config.json"
    base = None
    if adapter.exists():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if not base or not Path(base).exists():
            raise MedmillError(f"--model {path}: the adapter's base model {base!r} is not here; merge it with `medmill export-model`")
    elif not (src / "config.json").exists():
        raise MedmillError(f"--model {path}: holds neither config.json nor adapter_config.json")
    # every task renders conversations with the chat template, reward models included
    tokenizer, added = load_tokenizer(str(src if has_tokenizer_files(src) else base), template, need_chat=True)
    where = resolve_device(device)
    dtype = torch.bfloat16 if bf16 else torch.float32
    cls = AutoModelForSequenceClassification if kind == "scorer" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": dtype}
    if kind == "scorer":
        kwargs["num_labels"] = 1
    if where == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"  # accelerate shards the layers over every visible GPU
    try:
        model = cls.from_pretrained(base or src, **kwargs)
    except (OSError, ValueError) as e:
        raise MedmillError(f"cannot load a model from {path}: {str(e).strip().splitlines()[0]}") from None
    if added or model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    if base:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, src).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    if "device_map" not in kwargs:
        model.to(where)
    model.eval()
    first = next(model.parameters()).device
    return LoadedModel(str(path), model, tokenizer, first)


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The checkpoint's own chat template up to the assistant's turn."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class LazyModel:
    """Stands in for a LoadedModel and loads it on first use, so a re-run whose items are all cached
    never loads the weights."""

    def __init__(self, path: str, kind: str = "causal", device: str = "auto", bf16: bool = False, template: str | None = None) -> None:
        self.path = path
        self._args = (kind, device, bf16, template)
        self._loaded: LoadedModel | None = None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_for_eval(self.path, *self._args)
        return self._loaded

    def __getattr__(self, name: str) -> Any:  # model, tokenizer, device, context_length
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.loaded, name)
