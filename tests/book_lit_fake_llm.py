"""A scripted LLM for build-book-qa / build-lit-qa tests: behaves like a real, imperfect model.

It reads the prompt (chunk or conclusion, question, requested counts) and answers in the JSON the
prompts ask for. Most outputs are good and grounded (built from the source's own sentences); a
deterministic share is bad in the ways real models are: questions that point at "本文", multiple-choice
questions, off-list types, answers with invented facts and a made-up reference, answers whose
reference is real but whose content is not, meta-talk ("根据上述文本"), "文中没有提到" answers,
dialogues with flattened `<bot>:` tags or the wrong number of turns. Which behaviour a request gets
depends only on a hash of its content, so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_SENTENCE = re.compile(r"[^。！？；\n]+[。！？；]?")


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _between(text: str, start: str, end: str) -> str:
    i = text.find(start)
    j = text.find(end, i + len(start))
    return text[i + len(start) : j].strip() if i >= 0 and j >= 0 else ""


def sentences(text: str) -> list[str]:
    out = []
    for s in _SENTENCE.findall(text):
        s = s.strip()
        if len(s) >= 12 and not s.startswith(("#", "第")):
            out.append(s)
    return out


def _bigrams(s: str) -> set[str]:
    return {s[i : i + 2] for i in range(len(s) - 1)}


def _best_sentence(question: str, sents: list[str]) -> str:
    q = _bigrams(question)
    return max(sents, key=lambda s: len(q & _bigrams(s)))


def _topic(sentence: str) -> str:
    """A short noun-ish phrase from a sentence (its first clause, trimmed)."""
    head = re.split(r"[，,：:（(]", sentence.lstrip("（(【[“\"'"))[0]
    return head[:14] or sentence[:10]


def _user_text(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def respond(body: dict[str, Any]) -> str:
    text = _user_text(body)
    if "请根据这段资料提出" in text:
        return _questions(text)
    if "<资料>" in text and "问题：" in text:
        return _answer(text)
    if "请根据这项研究的结论提出" in text:
        return _lit_pairs(text)
    if "请编写一段患者与医生的对话" in text:
        return _dialogue(text)
    return json.dumps({"error": "unexpected prompt"}, ensure_ascii=False)


# --- build-book-qa ------------------------------------------------------------------------------------

_QUESTION_FORMS = {
    "概念": "什么是“{t}”？",
    "机制": "“{t}”的发生机制是怎样的？",
    "诊断": "如何判断“{t}”？",
    "鉴别诊断": "“{t}”需要与哪些情况鉴别？",
    "治疗": "“{t}”应如何处理？",
    "用药剂量": "“{t}”涉及的用药剂量是多少？",
    "注意事项": "“{t}”有哪些需要注意的地方？",
    "预后": "“{t}”的预后如何？",
}


def _questions(prompt: str) -> str:
    chunk = _between(prompt, "<资料>", "</资料>")
    n = int(re.search(r"提出 (\d+) 个", prompt).group(1))
    types = re.search(r"适合这段资料的：(.+?)。", prompt).group(1).split("、")
    sents = sentences(chunk) or [chunk[:40]]
    seed = _h(chunk)
    out = []
    for i in range(n):
        s = sents[(seed + i * 3) % len(sents)]
        qtype = types[(seed + i) % len(types)]
        form = _QUESTION_FORMS.get(qtype, "关于“{t}”有哪些要点？")
        out.append({"question": form.format(t=_topic(s)), "type": qtype})
    bad = seed % 10
    if bad in (0, 1):
        out[-1]["question"] = "本文提到的" + _topic(sents[0]) + "是什么？"
    elif bad == 2:
        out[-1]["question"] = "以下哪项属于" + _topic(sents[0]) + "的表现？"
    elif bad == 3:
        out[-1]["type"] = "流行病学调查"
    if seed % 4 == 0:  # one more than asked for
        out.append({"question": f"{_topic(sents[-1])}的要点有哪些？", "type": types[0]})
    if seed % 3 == 0:  # the same generic question for many chunks: near-duplicates across chunks
        out[0] = {"question": "传染病的主要临床表现有哪些？", "type": types[0]}
    return json.dumps({"questions": out}, ensure_ascii=False)


def _answer(prompt: str) -> str:
    chunk = _between(prompt, "<资料>", "</资料>")
    question = prompt.split("问题：", 1)[1].split("\n", 1)[0].strip()
    sents = sentences(chunk) or [chunk]
    best = _best_sentence(question, sents)
    nxt = sents[(sents.index(best) + 1) % len(sents)]
    kind = _h(question) % 20
    if kind < 12:  # good: grounded, reference copied (one with whitespace changes, as models do)
        ref = best if kind % 3 else " ".join(best[i : i + 10] for i in range(0, len(best), 10))
        answer = best if kind % 2 else f"{best}此外，{nxt}"
        return json.dumps({"answerable": True, "answer": answer, "reference": [ref]}, ensure_ascii=False)
    if kind < 14:  # invented facts and a made-up reference
        return json.dumps(
            {
                "answerable": True,
                "answer": "一般建议多喝热水、注意休息，并可服用维生素C增强抵抗力，通常一周左右即可自愈。",
                "reference": ["多喝热水并服用维生素C可以增强抵抗力。"],
            },
            ensure_ascii=False,
        )
    if kind == 14:  # real reference, answer about something else
        return json.dumps(
            {
                "answerable": True,
                "answer": "这种情况建议尽早到三甲医院就诊，完善相关检查后由专科医生制定个体化方案，平时保持乐观心态。",
                "reference": [best],
            },
            ensure_ascii=False,
        )
    if kind in (15, 16):  # meta-talk
        return json.dumps(
            {"answerable": True, "answer": f"根据上述文本，{best}", "reference": [best]}, ensure_ascii=False
        )
    if kind == 17:  # "the text does not say"
        return json.dumps(
            {"answerable": True, "answer": "文中没有提到相关内容，无法回答。", "reference": []},
            ensure_ascii=False,
        )
    if kind == 18:
        return json.dumps(
            {"answerable": False, "answer": "资料未涉及该问题。", "reference": []}, ensure_ascii=False
        )
    # a reference quoted with an ellipsis whose pieces are both in the chunk: fine
    ref = f"{best[:8]}……{best[-8:]}" if len(best) > 20 else best
    return json.dumps({"answerable": True, "answer": best, "reference": [ref]}, ensure_ascii=False)


# --- build-lit-qa -------------------------------------------------------------------------------------


def _paper(prompt: str) -> tuple[str, str, str]:
    title = _between(prompt, "《", "》")
    year_m = re.search(r"》（(\d{4})年", prompt)
    return title, (year_m.group(1) if year_m else ""), _between(prompt, "<结论>", "</结论>")


def _lit_pairs(prompt: str) -> str:
    title, year, conclusion = _paper(prompt)
    n = int(re.search(r"提出 (\d+) 个问题", prompt).group(1))
    sents = sentences(conclusion) or [conclusion]
    seed = _h(conclusion)
    cite = f"（《{title}》，{year}）" if year else f"（《{title}》）"
    forms = ["{t}有什么临床意义？", "患者关心的{t}具体指什么？", "{t}对后续治疗和随访有哪些影响？"]
    pairs = []
    for i in range(n):
        s = sents[i % len(sents)]
        question = forms[i % len(forms)].format(t=_topic(s))
        pairs.append({"question": question, "answer": f"{s}{cite}", "reference": [s]})
    bad = seed % 4
    if bad == 0:
        pairs[-1] = {"question": "本研究的主要结论是什么？", "answer": sents[0], "reference": [sents[0]]}
    elif bad == 1:
        pairs[-1] = {
            "question": f"{_topic(sents[0])}能否通过中药调理？",
            "answer": "可以长期服用清热解毒类中药调理，效果优于西药且没有副作用。",
            "reference": ["中药调理效果优于西药。"],
        }
    elif bad == 2:
        pairs[-1]["answer"] = "根据所给结论，" + pairs[-1]["answer"]
    return json.dumps({"pairs": pairs}, ensure_ascii=False)


def _dialogue(prompt: str) -> str:
    title, year, conclusion = _paper(prompt)
    turns = int(re.search(r"共 (\d+) 轮", prompt).group(1))
    sents = sentences(conclusion) or [conclusion]
    seed = _h(conclusion + prompt[-40:])
    out = []
    for i in range(turns):
        s = sents[i % len(sents)]
        out.append(
            {"role": "patient", "content": f"医生您好，我想问一下{_topic(s)}这方面的问题，对我有什么影响？"}
        )
        lead = f"{year}年发表的《{title}》研究显示，" if i == 0 and year else ""
        out.append({"role": "doctor", "content": f"{lead}{s}建议您定期到医院复查。"})
    bad = seed % 5
    if bad == 0:
        out.append({"role": "patient", "content": "好的，谢谢医生。"})  # ends on the patient
    elif bad == 1:
        out[1]["content"] = "<bot>: " + out[1]["content"]  # flattened tags leaking into a turn
    elif bad == 2:
        for t in out:
            if t["role"] == "doctor":
                t["content"] = "这个问题不用太担心，多注意饮食和作息，保持心情愉快，一般都会慢慢好起来的。"
    return json.dumps({"turns": out}, ensure_ascii=False)
