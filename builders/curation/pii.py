"""PII in Chinese medical text: find it and replace it by typed placeholders (`<PHONE>`, `<ID_CARD>` …).

Each detector is a regex plus, where the number carries one, a validator (ID numbers: GB 11643
checksum and a real birth date; bank cards: Luhn), so dosages, dates, lab values and order numbers
are left alone. Detectors run in a fixed priority order and a span taken by one is not re-taken by
another (a URL's digits are not a phone, an ID number is not a bank card).

Most texts hold no PII, so each detector also names cheap necessary conditions (`needs`: a run of
three digits, an `@`, ...), each one regex scan shared by the detectors that need it; a detector whose
conditions fail cannot match and is not run. tests/curation/test_pii_fast.py checks the result equals
running every detector.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medmill.builders.curation.char_checks import CharBatch, by_chunks, char_table, count_in

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_resident_id(number: str) -> bool:
    """An 18-character mainland resident ID: checksum (GB 11643-1999) and a real birth date."""
    if len(number) != 18 or not number[:17].isdigit() or not (number[17].isdigit() or number[17] in "xX"):
        return False
    if not _id_checksum_ok(number):
        return False
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ipv4_ok(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


def _id_checksum_ok(digits: str) -> bool:
    if len(digits) != 18:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == digits[17].upper()


_ID_SHAPE = re.compile(r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]")


def _bank_card_ok(text: str) -> bool:
    """16-19 digits passing Luhn, and not an ID number (valid, or mistyped: ID layout with a real
    birth date), which an 18-digit card number would otherwise be confused with."""
    digits = "".join(c for c in text if c.isdigit())
    if not (16 <= len(digits) <= 19 and luhn_ok(digits)) or _id_checksum_ok(digits):
        return False
    return not (len(digits) == 18 and _ID_SHAPE.fullmatch(digits))


@dataclass(frozen=True)
class Detector:
    """One PII type: `pattern` finds candidates, `valid` (on the `group` text) keeps the real ones."""

    name: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _s: True
    group: str | int = 0  # the part of the match that is replaced (patient ids keep their label)
    not_after: re.Pattern[str] | None = None  # words just before that make the number something else
    # patterns every match of `pattern` contains (each found by `search`): when one is absent from a
    # text, the detector cannot match it and is skipped
    needs: tuple[re.Pattern[str], ...] = ()


_NOT_DIGIT_BEFORE = r"(?<![0-9A-Za-z])"
# necessary conditions (see Detector.needs); \d as in the detectors (any Unicode decimal digit)
_DIGITS3 = re.compile(r"\d{3}")
_DIGITS6 = re.compile(r"\d{6}")
_DIGITS10 = re.compile(r"\d{10}")
_DIGITS4_4 = re.compile(r"\d{4}[ -]?\d{4}")
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")
_AT = re.compile("@")
_URL_START = re.compile(r"://|www\.", re.I)
_PATIENT_WORDS = (
    r"(?:住院号|病历号|病案号|门诊号|就诊号|就诊卡号|诊疗卡号|医保卡号|医保号|社保卡号|患者编号|患者ID|病人ID|检查号|登记号|床号)"
)
_PATIENT_WORD = re.compile(_PATIENT_WORDS, re.I)
_NOT_DIGIT_AFTER = r"(?![0-9A-Za-z])"

DETECTORS: list[Detector] = [
    Detector("EMAIL", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
             needs=(_AT,)),
    Detector(
        "URL",
        re.compile(r"(?:(?:https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+(?<![.,;:!?'\])])", re.I),
        needs=(_URL_START,),
    ),
    Detector(
        "ID_CARD",
        re.compile(  # also grouped 6-8-4 as on the card: 110105 19491231 002X
            _NOT_DIGIT_BEFORE + r"[1-9]\d{5}( ?)(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\1\d{3}[0-9Xx]" + _NOT_DIGIT_AFTER
        ),
        lambda s: valid_resident_id(s.replace(" ", "")),
        needs=(_DIGITS3, _DIGITS6),
    ),
    Detector(
        "PATIENT_ID",
        re.compile(
            _PATIENT_WORDS + r"\s*(?:[:：]|是|为)?\s*(?P<num>[A-Za-z]{0,3}[-]?\d{3,20}(?:[ -]\d{3,10}(?![\d年月日岁天周次个])){0,4})" + _NOT_DIGIT_AFTER,
            re.I,
        ),
        group="num",
        needs=(_DIGITS3, _PATIENT_WORD),
    ),
    Detector(
        "BANK_CARD",
        re.compile(_NOT_DIGIT_BEFORE + r"[3-6]\d{3}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?" + _NOT_DIGIT_AFTER),
        _bank_card_ok,
        not_after=re.compile(r"(?:订单|单号|编号|流水|快递|运单|发票|批号|条码|样本|标本|序列号)[号:：\s为是]*$"),
        needs=(_DIGITS3, _DIGITS4_4),
    ),
    Detector(
        "PHONE",
        re.compile(
            r"(?<![0-9A-Za-z.])(?:"
            r"(?:\+?86[ -.]?)?1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4}|\.\d{4}\.\d{4})"  # mobile: 138xxxxxxxx, 138-1234-5678, 138.1234.5678
            r"|(?:\(0\d{2,3}\)|（0\d{2,3}）|0(?:10|2\d|[3-9]\d{2})[ -])\s?[2-9]\d{2,3}[ -]?\d{4}"  # landline: (0571)…, 010-…, 8888 8888
            r"|0(?:10|2\d|[3-9]\d{2})\.[2-9]\d{2,3}\.?\d{4}"  # landline with dots: 0571.8888.8888
            r")(?:[-转]\d{1,5})?(?![0-9A-Za-z]|\.\d)"
        ),
        needs=(_DIGITS3,),  # every form holds 1[3-9]\d or 0 and two more digits
    ),
    Detector(  # a landline written without separator counts only after a phone word (else: sample ids)
        "PHONE",
        re.compile(
            r"(?:电话|座机|热线|固话|联系方式|致电|拨打|tel|phone)[^0-9A-Za-z]{0,4}"
            r"(?P<num>0(?:10|2\d|[3-9]\d{2})[2-9]\d{6,7})(?![0-9A-Za-z]|\.\d)",
            re.I,
        ),
        group="num",
        needs=(_DIGITS3, _DIGITS10),
    ),
    Detector(  # section numbers (3.1.1.2) look like IPs: bare ones need two multi-digit parts
        "IP",
        re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]|\.\d)"),
        lambda s: _ipv4_ok(s) and sum(len(p) > 1 for p in s.split(".")) >= 2,
        needs=(_DIGIT_DOT_DIGIT,),
    ),
    Detector(
        "IP",
        re.compile(r"(?:ip|IP|地址|服务器|主机|host)[^0-9A-Za-z]{0,4}(?P<num>\d{1,3}(?:\.\d{1,3}){3})(?![\d.]|\.\d)"),
        _ipv4_ok,
        group="num",
        needs=(_DIGIT_DOT_DIGIT,),
    ),
]
DETECTOR_NAMES = list(dict.fromkeys(d.name for d in DETECTORS))


# Fullwidth digits, letters, ＋－＠．, dashes and the ideographic space mapped to ASCII, one character for one, so
# numbers typed with a Chinese IME are found like their ASCII forms.
_FULLWIDTH = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９＋－＠．ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ"} | {
    0x3000: 0x20,
    **dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212"), ord("-")),  # dashes a Chinese IME types for -
}


_FULLWIDTH_CHAR = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_FULLWIDTH)) + "]")
# every detector needs (after the fullwidth mapping, which makes no digit) three digits in a row, a
# digit-dot-digit (IP), an @ (email), a : (https://) or a w (www.): a text with none of these, nor a
# fullwidth form of one, holds no PII
_MAY_HOLD_PII = re.compile(r"\d(?:\d\d|[.．]\d)|[@:wW＠ｗＷ]")  # also in PIIScanner.may_find_many


@dataclass(frozen=True)
class PIIMatch:
    kind: str
    start: int
    end: int
    text: str


class PIIScanner:
    """Finds PII of the chosen types; `redact` swaps each for `<TYPE>`."""

    def __init__(self, types: list[str] | None = None) -> None:
        wanted = set(types or DETECTOR_NAMES)
        unknown = wanted - set(DETECTOR_NAMES)
        if unknown:
            raise ValueError(f"unknown PII type(s) {sorted(unknown)}; known: {DETECTOR_NAMES}")
        self.detectors = [d for d in DETECTORS if d.name in wanted]

    def find(self, text: str) -> list[PIIMatch]:
        original = text
        if _MAY_HOLD_PII.search(text) is None:
            return []
        if _FULLWIDTH_CHAR.search(text) is not None:
            text = text.translate(_FULLWIDTH)  # same length: spans stay valid
        taken: list[tuple[int, int]] = []
        found: list[PIIMatch] = []
        present: dict[re.Pattern[str], bool] = {}
        for det in self.detectors:
            runnable = True
            for need in det.needs:
                hit = present.get(need)
                if hit is None:
                    hit = present[need] = need.search(text) is not None
                if not hit:
                    runnable = False
                    break
            if not runnable:
                continue
            for m in det.pattern.finditer(text):
                start, end = m.span(det.group)
                value = m.group(det.group)
                if any(start < e and s < end for s, e in taken) or not det.valid(value):
                    continue
                if det.not_after is not None and det.not_after.search(text[max(0, start - 8) : start]):
                    continue
                taken.append((start, end))
                found.append(PIIMatch(det.name, start, end, original[start:end]))
        return sorted(found, key=lambda x: x.start)

    def may_find_many(self, texts: list[str]) -> np.ndarray:
        """Per text: False when `find` surely returns nothing (it holds nothing `_MAY_HOLD_PII` matches,
        checked for the whole batch with table lookups); True: call `find`."""
        return by_chunks(self._may_find, texts)

    @staticmethod
    def _may_find(texts: list[str]) -> np.ndarray:
        chars = CharBatch.of(texts)
        digit, dot, sign = (chars.lookup(char_table(p)) for p in (r"\d", "[.．]", "[@:wW＠ｗＷ]"))
        # \d(?:\d\d|[.．]\d) at each position (a window running into the next text only adds a maybe)
        tail = np.zeros(len(digit), bool)
        tail[:-2] = (digit[1:-1] | dot[1:-1]) & digit[2:]
        marks = (digit & tail) | sign
        return (count_in(marks, chars.starts, chars.ends) > 0) | chars.astral

    def redact(self, text: str) -> tuple[str, Counter]:
        matches = self.find(text)
        if not matches:
            return text, Counter()
        out, pos = [], 0
        for m in matches:
            out += [text[pos : m.start], f"<{m.kind}>"]
            pos = m.end
        out.append(text[pos:])
        return "".join(out), Counter(m.kind for m in matches)
