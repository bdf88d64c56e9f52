"""A terminal chat with a checkpoint, for a look at a model (serving stays with vLLM / llama.cpp).

The prompt is the checkpoint's own chat template; tokens are printed as they are generated
(TextIteratorStreamer, generation on a worker thread); `/reset` clears the history, `/system TEXT`
sets the system prompt (an empty TEXT removes it), `/exit` or end of input quits. The oldest turns are
dropped when the conversation plus the answer would not fit the model's context length.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from medmill.evaluation.models import LoadedModel, render_prompt

HELP_TEXT = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /exit"


@dataclass
class ChatSession:
    lm: LoadedModel
    system: str | None = None
    max_new_tokens: int = 512
    temperature: float = 0.7
    history: list[dict[str, str]] = field(default_factory=list)
    trimmed_turns: int = 0  # user/assistant pairs dropped to fit the context, over the session

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def prompt_ids(self) -> list[int]:
        """The rendered conversation's tokens, oldest turns dropped until prompt + answer fit."""
        budget = self.lm.context_length - self.max_new_tokens
        while True:
            ids = self.lm.tokenizer(render_prompt(self.lm.tokenizer, self.messages()), add_special_tokens=False)["input_ids"]
            keep = 1 if self.history and self.history[-1]["role"] == "user" else 2  # the latest exchange stays
            if len(ids) <= budget or len(self.history) <= keep:
                return ids[-max(budget, 1) :]
            self.history = self.history[2:]  # the oldest user turn and its answer
            self.trimmed_turns += 1

    def reply(self, text: str, on_token: Callable[[str], None]) -> str:
        import torch
        from transformers import TextIteratorStreamer

        self.history.append({"role": "user", "content": text})
        ids = torch.tensor([self.prompt_ids()], device=self.lm.device)
        tok = self.lm.tokenizer
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                      streamer=streamer, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **sampling)  # fmt: skip
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with torch.no_grad():
                    self.lm.model.generate(**kwargs)
            except BaseException as e:  # shown to the user by the main thread, not lost in the worker
                failure.append(e)
                streamer.end()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        parts = []
        for piece in streamer:
            parts.append(piece)
            on_token(piece)
        worker.join()
        if failure:
            self.history.pop()
            raise failure[0]
        answer = "".join(parts).strip()
        self.history.append({"role": "assistant", "content": answer})
        return answer


def run_chat(session: ChatSession, stdin: TextIO, stdout: TextIO, prompt: str = "你> ") -> int:
    """Read lines until /exit or end of input; returns the number of answers given."""
    answers = 0
    stdout.write(HELP_TEXT + "\n")
    while True:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return answers
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return answers
        if text == "/reset":
            session.history.clear()
            stdout.write("[history cleared]\n")
            continue
        if text == "/system" or text.startswith("/system "):
            session.system = text[len("/system") :].strip() or None
            stdout.write(f"[system prompt {'set' if session.system else 'removed'}]\n")
            continue
        if text.startswith("/"):
            stdout.write(f"[unknown command {text.split()[0]}] {HELP_TEXT}\n")
            continue
        stdout.write("模型> ")
        before = session.trimmed_turns

        def show(piece: str) -> None:
            stdout.write(piece)
            stdout.flush()

        session.reply(text, show)
        stdout.write("\n")
        if session.trimmed_turns > before:
            stdout.write(f"[{session.trimmed_turns - before} oldest turn(s) dropped to fit the context]\n")
        answers += 1
