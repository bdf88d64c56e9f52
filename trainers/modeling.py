"""Loading models and tokenizers, LoRA / QLoRA, dtype and checkpoint discovery, shared by every stage."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medmill.schemas.errors import MedmillError
from medmill.trainers.options import TrainOptions
from medmill.trainers.templates import apply_template

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@contextmanager
def model_load_errors(path: str | Path, what: str = "a model") -> Iterator[None]:
    """One line instead of a traceback when weights cannot be read: a missing or truncated
    model.safetensors / adapter, a broken config (OSError, ValueError, SafetensorError)."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        raise MedmillError(
            f"cannot load {what} from {path}: its .safetensors weights are corrupt or cut short ({str(e).splitlines()[0]})"
        ) from None
    except (OSError, ValueError) as e:
        raise MedmillError(f"cannot load {what} from {path}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if has_cuda() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise MedmillError(f"unknown --dtype {name!r}; choose auto, float32, bfloat16 or float16") from None


def runtime_defaults(opts: TrainOptions) -> dict:
    """TrainingArguments defaults medmill sets (a recipe or flag overrides any of them)."""
    import torch

    bf16 = has_cuda() and torch_dtype(opts.dtype) == torch.bfloat16
    return {
        "output_dir": opts.out,
        "report_to": [],
        "bf16": bf16,
        "use_cpu": not has_cuda(),
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 3,
        "logging_steps": 10,
    }


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def has_tokenizer_files(path: str | Path) -> bool:
    return any((Path(path) / name).exists() for name in TOKENIZER_FILES)


def read_tokenizer(path: str | Path):
    """AutoTokenizer.from_pretrained with a one-line error; a local dir without tokenizer files is an
    error too (transformers would otherwise build an empty one-token tokenizer from config.json)."""
    from transformers import AutoTokenizer

    if Path(path).is_dir() and not has_tokenizer_files(path):
        raise MedmillError(f"cannot load a tokenizer from {path}: it holds none of {', '.join(TOKENIZER_FILES)}")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MedmillError(f"cannot load a tokenizer from {path}: {str(e).strip().splitlines()[0]}") from None


def load_tokenizer(path: str, template: str | None, need_chat: bool):
    """The tokenizer with its own chat template, or the named one when `template` is given."""
    tokenizer = read_tokenizer(path)
    added = apply_template(tokenizer, template) if template else 0
    if need_chat and not tokenizer.chat_template:
        raise MedmillError(f"the tokenizer of {path} has no chat template; pass --template NAME (e.g. chatml, llama3)")
    if tokenizer.pad_token is None:
        # A pad distinct from EOS keeps EOS trained and findable (pad==eos hides the end of answers).
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer, added


def _load(cls, path: str, opts: TrainOptions, tokenizer, added: int, **kwargs):
    kwargs.setdefault("dtype", torch_dtype(opts.dtype))
    if opts.qlora:
        kwargs["quantization_config"] = qlora_config(opts)
    with model_load_errors(path):
        model = cls.from_pretrained(path, **kwargs)
    if added or model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_causal_lm(path: str, opts: TrainOptions, tokenizer, added: int = 0):
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, path, opts, tokenizer, added)


def load_scorer(path: str, opts: TrainOptions, tokenizer, added: int = 0):
    """A one-label sequence classifier (head `score`): the reward model / critic format."""
    from transformers import AutoModelForSequenceClassification

    return _load(AutoModelForSequenceClassification, path, opts, tokenizer, added, num_labels=1)


def qlora_config(opts: TrainOptions):
    if not has_cuda():
        raise MedmillError("--qlora needs a CUDA GPU and bitsandbytes; on this machine use --lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MedmillError("--qlora needs bitsandbytes: pip install bitsandbytes") from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def lora_config(opts: TrainOptions, task_type: str, new_tokens: bool = False):
    """peft LoraConfig, or None without --lora/--qlora. A reward head is trained fully (modules_to_save),
    and so are the embeddings when a template added tokens (their fresh rows must be learnt and saved)."""
    if not (opts.lora or opts.qlora):
        return None
    from peft import LoraConfig

    target = opts.lora_target if opts.lora_target == "all-linear" else [t.strip() for t in opts.lora_target.split(",")]
    return LoraConfig(
        r=opts.lora_r,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
        target_modules=target,
        task_type=task_type,
        modules_to_save=_fully_trained(task_type, new_tokens) or None,
        ensure_weight_tying=new_tokens,  # tied input/output embeddings stay one matrix in the adapter
    )


def _fully_trained(task_type: str, new_tokens: bool) -> list[str]:
    heads = ["score"] if task_type == "SEQ_CLS" else []
    if new_tokens:
        heads += ["embed_tokens"] + (["lm_head"] if task_type == "CAUSAL_LM" else [])
    return heads


def wrap_lora(model, opts: TrainOptions, task_type: str, new_tokens: bool = False):
    config = lora_config(opts, task_type, new_tokens)
    if config is None:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if opts.qlora:
        model = prepare_model_for_kbit_training(model)
    return get_peft_model(model, config)


def last_checkpoint(out: Path) -> Path | None:
    """The highest `checkpoint-N` dir in `out` that holds trainer state, or None."""
    out = Path(out)
    if not out.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()]
    found = [(n, p) for n, p in found if (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def resume_point(opts: TrainOptions) -> str | None:
    """--resume-from wins; otherwise the last checkpoint in --out unless --no-resume."""
    found = _resume_point(opts)
    if found:
        ran = _stage_of_run(Path(found).parent)
        wanted = opts.stage if opts.stage != "ppo" or opts.algo == "ppo" else f"ppo/{opts.algo}"
        if ran and opts.stage and ran != wanted:
            raise MedmillError(
                f"cannot resume from {found}: it is a checkpoint of a `{ran}` run, not `{wanted}`; "
                "use another --out (or --no-resume to start over in this one)"
            )
        saved_adapter = (Path(found) / "adapter_config.json").exists()
        wants_adapter = opts.lora or opts.qlora
        if saved_adapter != wants_adapter:
            held, flag = ("a LoRA adapter", "add --lora") if saved_adapter else ("full weights", "drop --lora/--qlora")
            raise MedmillError(
                f"cannot resume from {found}: it holds {held}; {flag} to continue that run, "
                "or pass --no-resume (or another --out) to start over"
            )
    return found


def _stage_of_run(run_dir: Path) -> str | None:
    """The stage medmill_train.json of a finished run records ("sft", "ppo/grpo", ...), if any."""
    import json

    try:
        stage = json.loads((run_dir / "medmill_train.json").read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        return None
    return stage if isinstance(stage, str) else None


def _resume_point(opts: TrainOptions) -> str | None:
    if opts.resume_from:
        given = Path(opts.resume_from)
        if not given.is_dir():
            raise MedmillError(f"--resume-from {opts.resume_from}: no such checkpoint dir")
        if not (given / "trainer_state.json").exists():
            inner = last_checkpoint(given)
            hint = f"; did you mean {inner}?" if inner else " (pass a checkpoint-N dir of a run's --out)"
            raise MedmillError(f"--resume-from {opts.resume_from}: not a checkpoint dir, it has no trainer_state.json{hint}")
        return opts.resume_from
    if opts.no_resume:
        return None
    found = last_checkpoint(Path(opts.out))
    return str(found) if found else None
