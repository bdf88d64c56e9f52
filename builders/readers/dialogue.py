"""Read doctor–patient dialogue corpora into plain turn lists, whatever their shape.

Formats (formats.md §1, §4, §5, §7, §8), detected from content, never from the file name:
- toyhom: Toyhom Chinese-medical-dialogue-data CSV `department,title,ask,answer` (GBK family, quoted
  multi-line cells) and its `.txt` block form `title,ask\\nanswer\\n\\n\\n`;
- alpaca: `{instruction, input, output}` (Huatuo llama_data, ChatDoctor GenMedGPT-5k / HealthCareMagic);
  an instruction shared by every record of a file is a system prompt, not part of each question;
- icliniq: `{input, answer_icliniq, answer_chatgpt, answer_chatdoctor}` (one answer chosen);
- sharegpt: `{conversations: [{from, value}]}` (MedicalGPT, TCMChat); openai: `{messages: [{role, content}]}`;
- bentsao: alpaca records whose `instruction` is a flattened ` <user>: … <bot>: … <user>: …` history;
- medicalgpt-reward: `{question, response_chosen, response_rejected}`, read from the chosen side;
- dataset: a medmill sft dataset dir.

Readers only know shapes: they turn a row into (role, text) turns and say why a row is unusable.
Cleaning, prefix merging and system prompts are the dialogue builder's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.builders.readers.csvio import iter_csv_rows
from medmill.builders.readers.documents import collect_files, not_text_problem
from medmill.builders.readers.textio import DecodedText, detect_encoding, iter_json_items, sniff_json_layout
from medmill.schemas.dataset_dir import detect_kind, iter_rows, read_manifest
from medmill.schemas.errors import MedmillError

FORMATS = ("toyhom", "alpaca", "icliniq", "sharegpt", "openai", "bentsao", "medicalgpt-reward", "dataset")
ICLINIQ_ANSWERS = ("answer_icliniq", "answer_chatgpt", "answer_chatdoctor")
INCLUDE = ("*.json", "*.jsonl", "*.csv", "*.txt")
TOYHOM_COLUMNS = ("department", "title", "ask", "answer")
# `ask` values that mean "no question beyond the title" (Toyhom: 无 in 6 of the sample's rows)
TOYHOM_NO_ASK = frozenset({"", "无", "无。", "如题", "如题。", "同上", "见标题", "无描述"})
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "observation": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant", "bot": "assistant",
    "chatgpt": "assistant", "model": "assistant", "doctor": "assistant",
    "system": "system",
}
_EXPECTED = (
    "expected a Toyhom CSV (department,title,ask,answer) or .txt blocks, JSON/JSON Lines records with "
    "instruction/output (alpaca, BenTsao), input + answer_icliniq (iCliniq), conversations (ShareGPT), "
    "messages (OpenAI), question + response_chosen (MedicalGPT reward), or a medmill sft dataset dir"
)
_TAG = re.compile(r"\s*<(user|bot)>\s*[:：]\s*")


@dataclass
class Dialogue:
    """One conversation as read: (role, text) turns with roles user / assistant / system."""

    line: int
    turns: list[tuple[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    raw: Any = None


@dataclass
class RowProblem:
    """A row that cannot become a dialogue: a reason code and a message naming what was wrong."""

    line: int
    reason: str
    message: str
    raw: Any = None


@dataclass
class DialogueFile:
    """Everything read from one input: its detected format and encoding, and one item per row."""

    path: Path
    name: str
    format: str
    encoding: str
    items: list[Dialogue | RowProblem] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.items)


@dataclass
class ReaderOptions:
    answer_field: str = "answer_icliniq"


def collect_dialogue_inputs(inputs: Iterable[Path], exclude: Iterable[Path] = ()) -> list[tuple[Path, str, bool]]:
    """(path, name, is_dataset_dir) of every input: files named, files inside folders (not inside the dataset
    dirs found there), medmill dataset dirs named as inputs."""
    skip = {Path(p).resolve() for p in exclude}
    found: list[tuple[Path, str, bool]] = []
    plain: list[Path] = []
    for given in inputs:
        p = Path(given)
        if p.resolve() in skip:
            continue
        if p.is_dir() and _is_dataset_dir(p):
            found.append((p, p.resolve().name, True))
        elif p.is_dir():
            # as every reader (readers/walk.py): dataset dirs inside a folder are builds, not inputs, and are
            # left out (counted by run_build); a dataset dir is read when it is named as an input itself
            found += [(f, name, False) for f, name in collect_files([p], include=INCLUDE, skip=skip)]
        else:
            plain.append(p)
    found += [(f, name, False) for f, name in collect_files(plain)] if plain else []
    if not found:
        raise MedmillError("no dialogue files found (.json, .jsonl, .csv, .txt or medmill dataset dirs)")
    return found


def _is_dataset_dir(p: Path) -> bool:
    return (p / "data").is_dir() and any((p / "data").glob("*.parquet"))


def read_dialogue_file(path: Path, name: str, fmt: str = "auto", options: ReaderOptions | None = None) -> DialogueFile:
    """Read one file (or dataset dir) in format `fmt` ("auto": detected from content)."""
    opts = options or ReaderOptions()
    if fmt not in ("auto", *FORMATS):
        raise MedmillError(f"unknown --format {fmt!r}; one of auto, {', '.join(FORMATS)}")
    if path.is_dir():
        return _read_dataset_dir(path, name)
    if fmt == "dataset":
        raise MedmillError(f"{name}: --format dataset needs a medmill dataset dir, got a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MedmillError(f"cannot read {name}: {e.strerror}") from None
    problem = not_text_problem(data)
    if problem is not None:
        raise MedmillError(f"{name}: {problem}")
    try:
        encoding = detect_encoding(data)
    except MedmillError as e:
        raise MedmillError(f"{name}: {e}") from None
    text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    del data
    if sniff_json_layout(text) != "none":
        items = list(iter_json_items(DecodedText(path, text, encoding)))
        del text
        detected = _detect_json_format(items, name) if fmt == "auto" else fmt
        if detected == "toyhom":
            raise MedmillError(f"{name}: --format toyhom expects a CSV or .txt file, got JSON")
        return DialogueFile(path, name, detected, encoding, list(_json_dialogues(items, detected, opts)))
    if fmt not in ("auto", "toyhom"):
        raise MedmillError(f"{name}: --format {fmt} expects JSON or JSON Lines; the file is not JSON")
    if _is_toyhom_csv(text):
        return DialogueFile(path, name, "toyhom", encoding, list(_toyhom_csv(text, name)))
    if _is_toyhom_txt(text):
        return DialogueFile(path, name, "toyhom-txt", encoding, list(_toyhom_txt(text)))
    first = next((line for line in text.split("\n", 20) if line.strip()), "")[:60]
    raise MedmillError(f"{name}: unknown dialogue file shape (first line {first!r}); {_EXPECTED}")


# --- detection -----------------------------------------------------------------------------------


def _detect_json_format(items: list, name: str) -> str:
    objects = [it.value for it in items[:200] if it.error is None and isinstance(it.value, dict)]
    if not objects:
        raise MedmillError(f"{name}: no JSON objects in the first {min(len(items), 200)} records; {_EXPECTED}")
    keys = set().union(*(o.keys() for o in objects))
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "openai"
    if {"question", "response_chosen"} <= keys:
        return "medicalgpt-reward"
    if "input" in keys and keys & set(ICLINIQ_ANSWERS):
        return "icliniq"
    if {"instruction", "output"} <= keys:
        flattened = any(isinstance(o.get("instruction"), str) and _TAG.match(o["instruction"]) for o in objects)
        return "bentsao" if flattened else "alpaca"
    raise MedmillError(f"{name}: JSON records with keys {sorted(keys)[:12]} match no dialogue format; {_EXPECTED}")


def _is_toyhom_csv(text: str) -> bool:
    header = text.lstrip("\ufeff\n").split("\n", 1)[0].strip().lower()
    cells = [c.strip() for c in header.split(",")]
    return cells == list(TOYHOM_COLUMNS) or cells == ["department", "title", "question", "answer"]


def _is_toyhom_txt(text: str) -> bool:
    """At least two blocks separated by two blank lines, each a `title,ask` line and an answer."""
    blocks = [b.strip("\n") for b in text.strip("\n").split("\n\n\n", 21)[:20] if b.strip()]
    return len(blocks) >= 2 and all("\n" in b and "," in b.split("\n", 1)[0] for b in blocks)


# --- Toyhom --------------------------------------------------------------------------------------


def _toyhom_question(title: str, ask: str) -> str:
    return title if ask.strip() in TOYHOM_NO_ASK else ask


def _csv_rows(text: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line, cells, None) per row, or (line, None, error) for a badly quoted row; reading goes
    on after it (`csvio`), so one stray quote does not take the rest of the file with it."""
    for row in iter_csv_rows(text, ","):
        yield (row.line, row.cells, None) if row.error is None else (row.line, None, row.error)


def _toyhom_csv(text: str, name: str) -> Iterator[Dialogue | RowProblem]:
    rows = _csv_rows(text)
    next(rows, None)  # the header (checked by detection)
    for line, cells, error in rows:
        if error is not None:
            yield RowProblem(line, "bad_csv", f"{name}:{line}: {error}")
            continue
        assert cells is not None
        if cells in ([], [""]):
            continue  # a blank line between rows, not a row
        if len(cells) != len(TOYHOM_COLUMNS):
            yield RowProblem(line, "ragged_row", f"{name}:{line}: {len(cells)} cells, expected 4 "
                             f"({','.join(TOYHOM_COLUMNS)})", raw=cells)
            continue
        department, title, ask, answer = cells
        yield Dialogue(
            line,
            [("user", _toyhom_question(title, ask)), ("assistant", answer)],
            meta={"department": department.strip(), "title": title.strip()},
            raw=dict(zip(TOYHOM_COLUMNS, cells, strict=True)),
        )


def _toyhom_txt(text: str) -> Iterator[Dialogue | RowProblem]:
    """Blocks `title,ask\\nanswer` separated by two blank lines (what Toyhom's 数据处理.py wrote)."""
    line = 1
    for block in text.split("\n\n\n"):
        lead = len(block) - len(block.lstrip("\n"))
        body = block.strip("\n")
        start = line + lead
        line += block.count("\n") + 3
        if not body.strip():
            continue
        head, _, answer = body.partition("\n")
        title, sep, ask = head.partition(",")
        if not sep or not answer.strip():
            yield RowProblem(start, "ragged_block", f"line {start}: expected 'title,ask' then the answer on the next line",
                             raw=body[:2000])
            continue
        yield Dialogue(start, [("user", _toyhom_question(title, ask)), ("assistant", answer)],
                       meta={"title": title.strip()}, raw=body)


# --- JSON formats --------------------------------------------------------------------------------


def _json_dialogues(items: list, fmt: str, opts: ReaderOptions) -> Iterator[Dialogue | RowProblem]:
    system = _shared_instruction(items) if fmt == "alpaca" else None
    convert = {
        "alpaca": lambda v: _alpaca(v, system),
        "bentsao": _bentsao,
        "icliniq": lambda v: _icliniq(v, opts.answer_field),
        "sharegpt": _sharegpt,
        "openai": _openai,
        "medicalgpt-reward": _reward,
    }[fmt]
    for item in items:
        if item.error is not None:
            yield RowProblem(item.line, "invalid_json", item.error, raw=item.raw)
            continue
        if not isinstance(item.value, dict):
            yield RowProblem(item.line, "not_an_object", f"a JSON {type(item.value).__name__}, expected an object",
                             raw=item.value)
            continue
        result = convert(item.value)
        if isinstance(result, _Bad):
            yield RowProblem(item.line, result.reason, result.message, raw=item.value)
        else:
            turns, meta = result
            yield Dialogue(item.line, turns, meta=meta, raw=item.value)


@dataclass
class _Bad:
    reason: str
    message: str


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _missing(record: dict, *keys: str) -> _Bad | None:
    for key in keys:
        if _text(record.get(key)) is None:
            what = "missing" if key not in record else f"a {type(record[key]).__name__}, not text"
            return _Bad("missing_field", f"field {key!r} is {what}")
    return None


def _shared_instruction(items: list) -> str | None:
    """The instruction every alpaca record of a file shares (GenMedGPT-5k's "If you are a doctor, …"),
    when there are at least two records and they carry their questions in `input`; else None."""
    values = [it.value for it in items if it.error is None and isinstance(it.value, dict)]
    if len(values) < 2:
        return None
    first = values[0].get("instruction")
    if not isinstance(first, str) or not first.strip():
        return None
    if any(v.get("instruction") != first for v in values):
        return None
    return first if any(isinstance(v.get("input"), str) and v["input"].strip() for v in values) else None


def _alpaca(v: dict, system: str | None):
    bad = _missing(v, "instruction", "output")
    if bad:
        return bad
    instruction, extra = _text(v["instruction"]) or "", _text(v.get("input")) or ""
    turns: list[tuple[str, str]] = []
    if system is not None and extra.strip():
        turns = [("system", system), ("user", extra)]
    elif extra.strip():
        turns = [("user", f"{instruction.rstrip()}\n\n{extra.strip()}")]
    else:
        turns = [("user", instruction)]
    return turns + [("assistant", _text(v["output"]) or "")], {}


def parse_flattened_history(history: str) -> tuple[list[tuple[str, str]], str | None]:
    """` <user>: a <bot>: b <user>: c` -> [(user, a), (assistant, b), (user, c)], or ([], why not)."""
    parts = _TAG.split(history)
    if len(parts) < 3:
        return [], "no <user>: tag"
    if parts[0].strip():
        return [], f"text before the first <user>: tag: {parts[0].strip()[:40]!r}"
    turns = [("user" if tag == "user" else "assistant", text.strip()) for tag, text in zip(parts[1::2], parts[2::2], strict=True)]
    return turns, None


def _bentsao(v: dict):
    bad = _missing(v, "instruction", "output")
    if bad:
        return bad
    turns, why = parse_flattened_history(_text(v["instruction"]) or "")
    if why:
        return _Bad("unparsable_history", why)
    extra = (_text(v.get("input")) or "").strip()
    if extra and turns and turns[-1][0] == "user":
        turns[-1] = ("user", f"{turns[-1][1]}\n\n{extra}")
    meta = {"conversation_id": v["id"]} if isinstance(v.get("id"), (int, str)) else {}
    return turns + [("assistant", _text(v["output"]) or "")], meta


def _icliniq(v: dict, answer_field: str):
    bad = _missing(v, "input", answer_field)
    if bad:
        return bad
    return [("user", _text(v["input"]) or ""), ("assistant", _text(v[answer_field]) or "")], {"answer_field": answer_field}


def _reward(v: dict):
    bad = _missing(v, "question", "response_chosen")
    if bad:
        return bad
    return [("user", _text(v["question"]) or ""), ("assistant", _text(v["response_chosen"]) or "")], {}


def _role_list(messages: Any, role_key: str, text_key: str, roles: dict[str, str] | None):
    if not isinstance(messages, list) or not messages:
        return _Bad("missing_field", "no turns (expected a non-empty list)")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict):
            return _Bad("bad_turn", f"turn {i} is a {type(m).__name__}, expected an object")
        raw_role, content = m.get(role_key), _text(m.get(text_key))
        if content is None:
            return _Bad("bad_turn", f"turn {i} has no text {text_key!r}")
        role = (roles or {}).get(str(raw_role).lower()) if roles is not None else (
            raw_role if raw_role in ("system", "user", "assistant") else None)
        if role is None:
            return _Bad("unknown_role", f"turn {i} has role {raw_role!r}")
        turns.append((role, content))
    return turns


def _sharegpt(v: dict):
    result = _role_list(v.get("conversations"), "from", "value", SHAREGPT_ROLES)
    if isinstance(result, _Bad):
        return result
    system = _text(v.get("system_prompt")) or _text(v.get("system"))
    if system and system.strip():
        result.insert(0, ("system", system))
    chosen = _text(v.get("chosen"))
    if chosen is not None:  # MedicalGPT reward/DPO rows: prompt turns + chosen/rejected strings
        return result + [("assistant", chosen)], {"side": "chosen"}
    return result, {}


def _openai(v: dict):
    result = _role_list(v.get("messages"), "role", "content", None)
    if isinstance(result, _Bad):
        return result
    return result, {}


# --- medmill dataset dirs ------------------------------------------------------------------------


def _read_dataset_dir(path: Path, name: str) -> DialogueFile:
    kind = detect_kind(path)
    if kind != "sft":
        raise MedmillError(f"{name}: a medmill {kind} dataset dir; build-dialogue reads sft dirs only")
    manifest = read_manifest(path) or {}
    out = DialogueFile(path, name, "dataset", "parquet")
    for n, (split, shard, i, row) in enumerate(iter_rows(path), start=1):
        result = _role_list(row.get("messages"), "role", "content", None)
        if isinstance(result, _Bad):
            out.items.append(RowProblem(n, result.reason, f"{shard.name} row {i}: {result.message}", raw=row))
            continue
        src = row.get("source") or {}
        meta = {"split": split, "origin_builder": manifest.get("builder") or src.get("builder")}
        if src.get("group"):
            meta["conversation_id"] = src["group"]
        out.items.append(Dialogue(n, result, meta=meta, raw={"id": row.get("id"), "shard": shard.name, "row": i}))
    return out
