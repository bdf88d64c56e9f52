"""The `transformers` backend: a local model directory, batched `generate` with the tokenizer's chat
template, on GPU when there is one, CPU otherwise. For offline work and tests with tiny models.

Calls from the engine's concurrent requests are gathered into batches (up to `batch_size`, same
generation params) and generated in a worker thread, so the event loop stays free. No server
enforces a schema here: structured output uses prompt instructions + tolerant extraction.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .cache import Completion
from .errors import FatalCallError
from .types import LLMSettings


class TransformersBackend:
    name = "transformers"
    modes = ("prompt",)
    host = "local"

    def __init__(self, settings: LLMSettings) -> None:
        if not settings.model or not Path(settings.model).is_dir():
            raise FatalCallError(f"--llm-model must be a local model directory for the transformers backend: {settings.model}")
        self.settings = settings
        self._model: Any = None
        self._tokenizer: Any = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def scrub(self, text: str) -> str:
        return text

    def _load(self) -> None:
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.settings.model)
            model = AutoModelForCausalLM.from_pretrained(self.settings.model)
        except (OSError, ValueError, SafetensorError) as e:
            raise FatalCallError(f"cannot load the model in {self.settings.model}: {str(e).splitlines()[0]}") from None
        if tok.chat_template is None:
            raise FatalCallError(f"the tokenizer in {self.settings.model} has no chat template")
        tok.padding_side = "left"  # decoder-only batches must be left-padded to generate
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = model.to(device).eval()
        self._tokenizer = tok

    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load)
        self._queue = asyncio.Queue()
        self._worker = asyncio.ensure_future(self._batches())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def unload(self) -> None:
        self._model = None
        self._tokenizer = None

    async def complete(
        self,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        response_format: dict[str, Any] | None,
        extra_body: dict[str, Any],
    ) -> Completion:
        assert self._queue is not None, "backend not started"
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, params, future))
        return await future

    async def _batches(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            await asyncio.sleep(0)  # let the other requests of this round reach the queue
            batch = [first]
            held = []
            while len(batch) < self.settings.batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                (batch if item[1] == first[1] else held).append(item)
            for item in held:
                self._queue.put_nowait(item)
            live = [item for item in batch if not item[2].done()]
            if not live:
                continue
            try:
                outputs = await asyncio.to_thread(self._generate, [m for m, _p, _f in live], first[1])
            except Exception as e:  # a generation error fails this batch's calls, not the loop
                for _m, _p, fut in live:
                    if not fut.done():
                        fut.set_exception(FatalCallError(f"local generation failed: {type(e).__name__}: {e}"))
                continue
            for (_m, _p, fut), out in zip(live, outputs, strict=True):
                if not fut.done():
                    fut.set_result(out)

    def _generate(self, conversations: list[list[dict[str, str]]], params: dict[str, Any]) -> list[Completion]:
        import torch

        tok, model = self._tokenizer, self._model
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        max_new = int(params.get("max_tokens") or 256)
        temperature = float(params.get("temperature") or 0.0)
        gen: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature)
            if params.get("top_p") is not None:
                gen["top_p"] = float(params["top_p"])
        else:
            gen["do_sample"] = False
        if params.get("seed") is not None:
            torch.manual_seed(int(params["seed"]))
        with torch.no_grad():
            out = model.generate(**enc, **gen)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = set(_as_list(model.generation_config.eos_token_id) or _as_list(tok.eos_token_id))
        results = []
        for i, row in enumerate(new.tolist()):
            ended = next((j for j, t in enumerate(row) if t in eos), None)
            used = row if ended is None else row[:ended]
            results.append(
                Completion(
                    text=tok.decode(used, skip_special_tokens=True),
                    finish_reason="length" if ended is None and len(row) >= max_new else "stop",
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=len(used),
                )
            )
        return results


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
