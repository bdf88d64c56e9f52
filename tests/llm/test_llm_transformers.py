"""The transformers backend with a tiny randomly initialised Qwen2 and a tokenizer trained on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from medmill.builders.llm.engine import LLMEngine
from medmill.builders.llm.types import LLMRequest, LLMSettings
from medmill.schemas.errors import MedmillError

pytestmark = pytest.mark.slow  # imports torch + transformers and builds a model: seconds, not milliseconds

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    path = tmp_path_factory.mktemp("tiny-qwen")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["患者头痛三天，伴有发热。", "高血压患者应限盐饮食。", '{"answer": "多饮水"}', "hello world"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def test_batched_generation_is_deterministic_and_cached(tiny_model: Path, tmp_path: Path) -> None:
    settings = LLMSettings(backend="transformers", model=str(tiny_model), temperature=0.0, max_tokens=6, batch_size=4)
    reqs = [LLMRequest(key=str(i), messages=[{"role": "user", "content": "患者头痛" * (i + 1)}]) for i in range(6)]
    with LLMEngine(settings, tmp_path) as engine:
        first = engine.run(reqs)
        again = engine.run(reqs)
        usage = engine.usage
        info = engine.describe()
    assert all(r.ok and isinstance(r.value, str) for r in first)
    assert all(r.usage["completion_tokens"] <= 6 and r.usage["prompt_tokens"] > 0 for r in first)
    assert [r.value for r in again] == [r.value for r in first] and all(r.cached for r in again)
    assert usage["calls_sent"] == 6 and usage["cache_hits"] == 6
    assert info["backend"] == "transformers" and info["structured_output"] == "prompt"
    # greedy decoding of the same prompt gives the same text alone or in a batch
    with LLMEngine(settings, tmp_path / "solo") as engine:
        [solo] = engine.run(reqs[:1])
    assert solo.value == first[0].value


def test_schema_requests_use_instructions_and_fail_honestly(tiny_model: Path, tmp_path: Path) -> None:
    class Answer(BaseModel):
        answer: str

    settings = LLMSettings(backend="transformers", model=str(tiny_model), temperature=0.0, max_tokens=4, max_reasks=1)
    with LLMEngine(settings, tmp_path) as engine:
        [result] = engine.run([LLMRequest(key="a", messages=[{"role": "user", "content": "头痛怎么办"}], schema=Answer)])
    # a random model cannot write JSON: the result is a failure that keeps the raw text, never an empty answer
    assert not result.ok and result.error == "invalid_output" and result.raw is not None and result.attempts == 2


def test_missing_model_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(MedmillError, match="local model directory"):
        LLMEngine(LLMSettings(backend="transformers", model=str(tmp_path / "nope")), tmp_path)
