"""`medmill export-model`: a training output (LoRA adapter or full weights) -> a standalone model dir
with merged weights, tokenizer, chat template and generation config. A reward model comes out as a
plain AutoModelForSequenceClassification (one label, head `score`), the format trl, verl and
OpenRLHF load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medmill.schemas.errors import MedmillError


@dataclass
class ExportReport:
    out: str
    kind: str  # causal-lm | reward-model
    merged_adapter: bool
    base: str | None
    parameters: int


def _is_scorer(config: dict) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def _looks_local(name: str) -> bool:
    """A filesystem path rather than a Hub id (`org/name`)."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def _from_pretrained(cls, path: str | Path, **kwargs):
    from medmill.trainers.modeling import model_load_errors

    with model_load_errors(path):
        return cls.from_pretrained(path, **kwargs)


def export_model(src: Path, out: Path, base: str | None = None, dtype: str = "auto") -> ExportReport:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from medmill.trainers.modeling import has_tokenizer_files, read_tokenizer
    from medmill.trainers.modeling import torch_dtype as named_dtype

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise MedmillError(f"{src} is not a model directory")
    if out.resolve() == src.resolve():
        raise MedmillError("--out must differ from the source directory")
    torch_dtype = None if dtype == "auto" else named_dtype(dtype)
    adapter_cfg = src / "adapter_config.json"
    if adapter_cfg.exists():
        meta = json.loads(adapter_cfg.read_text(encoding="utf-8"))
        base = base or meta.get("base_model_name_or_path")
        if not base or not Path(base).exists() and ("/" not in base or _looks_local(base)):
            raise MedmillError(f"cannot find the adapter's base model {base!r}; pass --base PATH")
        # an adapter saved without its tokenizer (peft's own save) uses the base model's
        tokenizer = read_tokenizer(src if has_tokenizer_files(src) else base)
        scorer = meta.get("task_type") == "SEQ_CLS"
        cls = AutoModelForSequenceClassification if scorer else AutoModelForCausalLM
        kwargs = {"num_labels": 1} if scorer else {}
        model = _from_pretrained(cls, base, dtype=torch_dtype, **kwargs)
        if model.get_input_embeddings().num_embeddings != len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        from peft import PeftModel

        from medmill.trainers.modeling import model_load_errors

        with model_load_errors(src, "an adapter"):
            model = PeftModel.from_pretrained(model, src).merge_and_unload()
    else:
        config_path = src / "config.json"
        if not config_path.exists():
            raise MedmillError(f"{src} holds neither adapter_config.json nor config.json")
        tokenizer = read_tokenizer(src)
        scorer = _is_scorer(json.loads(config_path.read_text(encoding="utf-8")))
        cls = AutoModelForSequenceClassification if scorer else AutoModelForCausalLM
        model = _from_pretrained(cls, src, dtype=torch_dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    if not scorer and model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return ExportReport(
        out=str(out),
        kind="reward-model" if scorer else "causal-lm",
        merged_adapter=adapter_cfg.exists(),
        base=base,
        parameters=sum(p.numel() for p in model.parameters()),
    )
