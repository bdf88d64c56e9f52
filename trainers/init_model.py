"""A small randomly initialised causal LM plus a byte-level BPE tokenizer trained on a corpus.

For offline smoke runs, examples and tests: nothing comes from the Hub. The tokenizer carries the
chatml template (with generation markers), `<|im_end|>` as EOS and `<|endoftext|>` as padding.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from medmill.schemas.errors import MedmillError
from medmill.trainers.corpus import TextFileReader, iter_texts
from medmill.trainers.templates import template_text

PAD, EOS, IM_START = "<|endoftext|>", "<|im_end|>", "<|im_start|>"

# Fallback corpus so `init-model` works without --corpus: a few medical sentences and the roles.
_FALLBACK = [
    "患者男性，45岁，反复咳嗽咳痰3个月，伴低热、盗汗。",
    "高血压患者应低盐饮食，规律服用降压药物，定期监测血压。",
    "糖尿病的典型症状包括多饮、多食、多尿和体重下降。",
    "The patient reports chest pain radiating to the left arm. Check ECG and troponin.",
    "system user assistant",
]


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int


SIZES = {
    "tiny": ModelSize(64, 2, 4, 2, 128, 1000),
    "small": ModelSize(256, 4, 8, 4, 704, 8000),
    "base": ModelSize(768, 12, 12, 4, 2048, 32000),
}
ARCHS = ("qwen2", "llama")


@dataclass
class InitReport:
    out: str
    arch: str
    size: str
    parameters: int
    vocab_size: int
    corpus_texts: int


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=None)
    hf.chat_template = template_text("chatml")
    hf.model_max_length = 4096
    return hf


def init_model(
    out: Path,
    corpus: list[Path] | None = None,
    arch: str = "qwen2",
    size: str = "tiny",
    vocab_size: int | None = None,
    max_texts: int = 200_000,
    seed: int = 0,
    read_file: TextFileReader | None = None,
) -> InitReport:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    if arch not in ARCHS:
        raise MedmillError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    if size not in SIZES:
        raise MedmillError(f"unknown --size {size!r}; choose one of: {', '.join(SIZES)}")
    if vocab_size is not None and vocab_size < 1:
        raise MedmillError("--vocab-size must be at least 1")
    dims = SIZES[size]
    texts = list(itertools.islice(iter_texts(corpus or [], read_file), max_texts))
    if corpus and not texts:
        raise MedmillError(f"--corpus {', '.join(str(c) for c in corpus)}: no text to train the tokenizer on")
    texts = texts or list(_FALLBACK)
    # Roles and template words must be in the corpus so rendered chats tokenize compactly.
    tokenizer = train_tokenizer([*texts, *_FALLBACK], vocab_size or dims.vocab_size)

    config_cls = Qwen2Config if arch == "qwen2" else LlamaConfig
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=dims.hidden_size,
        num_hidden_layers=dims.num_hidden_layers,
        num_attention_heads=dims.num_attention_heads,
        num_key_value_heads=dims.num_key_value_heads,
        intermediate_size=dims.intermediate_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True, max_new_tokens=256
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report = InitReport(
        out=str(out),
        arch=arch,
        size=size,
        parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer),
        corpus_texts=len(texts),
    )
    (out / "medmill_init.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return report
