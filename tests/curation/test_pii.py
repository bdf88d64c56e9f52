"""PII detectors: each type found in prose, checksums and dates rejected, medical numbers left alone."""

from __future__ import annotations

import pytest

from medmill.builders.curation.pii import PIIScanner, luhn_ok, valid_resident_id

SCAN = PIIScanner()


def kinds(text: str) -> list[str]:
    return [m.kind for m in SCAN.find(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("患者电话13812345678，请回电", ["PHONE"]),
        ("手机：138-1234-5678。", ["PHONE"]),
        ("请拨打 +86 139 1234 5678 联系", ["PHONE"]),
        ("科室座机010-62345678转123", ["PHONE"]),
        ("(0571)87654321 为挂号电话", ["PHONE"]),
        ("身份证号11010519491231002X，住址", ["ID_CARD"]),
        ("证件号：440524188001010014", []),  # checksum ok but born 1880: not a living resident's number
        ("邮箱 zhang.san+med@example.com.cn 已登记", ["EMAIL"]),
        ("见 https://www.example.org/a?b=1。", ["URL"]),
        ("访问www.haodf.com查询", ["URL"]),
        ("服务器地址192.168.1.10", ["IP"]),
        ("DNS 设为 8.8.8.8 后可访问", []),  # bare small-part dotted quads are section numbers more often
        ("服务器 8.8.8.8 无法连接", ["IP"]),
        ("卡号4111111111111111，用于缴费", ["BANK_CARD"]),
        ("卡号 5555 5555 5555 4444", ["BANK_CARD"]),
        ("住院号：A20230012，床号 12", ["PATIENT_ID"]),
        ("病历号123456复诊", ["PATIENT_ID"]),
        ("手机：１３８１２３４５６７８", ["PHONE"]),  # fullwidth digits typed with a Chinese IME
        ("座机０１０－６２７５１２３４", ["PHONE"]),
        ("邮箱ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ，谢谢", ["EMAIL"]),
        ("电话（0755）8888 8888", ["PHONE"]),  # landline digits grouped 4+4
        ("0755-8888-8888 为科室电话", ["PHONE"]),
    ],
)
def test_each_detector_finds_its_type(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "每次10mg，每日3次，连服14天",
        "2023-10-15复查血常规，2023年10月15日出院",
        "血压140/90mmHg，心率78次/分",
        "白细胞12.5×10^9/L，血小板 250×10^9/L",
        "订单号123456789012345678",  # 18 digits, not an ID (bad date and checksum)
        "11010519491231002Y",  # bad check character
        "110105194913310021",  # month 13
        "卡号4111111111111112",  # Luhn fails
        "版本号1.2.3.4.5",
        "3.1.1.2 时行感冒 因感受时邪所致",  # a section number of a national standard, not an IP
        "IP 999.1.1.1 不合法",
        "体重65.5kg，身高1.75m",
        "编号12345678901",  # 11 digits but not a mobile prefix
    ],
)
def test_non_pii_numbers_are_left_alone(text):
    assert kinds(text) == []


def test_checksum_validators():
    assert valid_resident_id("11010519491231002X")
    assert valid_resident_id("11010519491231002x")
    assert not valid_resident_id("110105194912310021")  # last digit changed
    assert not valid_resident_id("11010519490231002X")  # 31 Feb... (month 02, day 31)
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111121")


def test_redact_uses_typed_placeholders_and_counts():
    text = "电话13812345678，身份证11010519491231002X，邮箱a@b.com，住院号：88888"
    redacted, counts = SCAN.redact(text)
    assert redacted == "电话<PHONE>，身份证<ID_CARD>，邮箱<EMAIL>，住院号：<PATIENT_ID>"
    assert counts == {"PHONE": 1, "ID_CARD": 1, "EMAIL": 1, "PATIENT_ID": 1}


def test_a_url_is_not_also_a_phone_or_ip():
    assert kinds("http://10.0.0.1/13812345678") == ["URL"]


def test_scanner_subset_and_unknown_type():
    assert [m.kind for m in PIIScanner(["EMAIL"]).find("13812345678 a@b.com")] == ["EMAIL"]
    with pytest.raises(ValueError, match="unknown PII type"):
        PIIScanner(["SSN"])


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("就诊卡号 1234 5678 9012，请携带", "就诊卡号 <PATIENT_ID>，请携带"),  # no digit group left behind
        ("住院号：2023-001234，", "住院号：<PATIENT_ID>，"),
        ("病历号123456 2023年复诊", "病历号<PATIENT_ID> 2023年复诊"),  # a following year is not part of it
        ("手机：１３８１２３４５６７８。", "手机：<PHONE>。"),
        ("电话（0755）8888 8888", "电话<PHONE>"),
        ("电话:138—1234—5678", "电话:<PHONE>"),  # em dashes typed by a Chinese IME
        ("座机 010—62751234。", "座机 <PHONE>。"),
        ("身份证：110105 19491231 002X，", "身份证：<ID_CARD>，"),  # grouped 6-8-4
        ("见第3—5章，2023—2024年", "见第3—5章，2023—2024年"),
    ],
)
def test_redaction_leaves_no_part_of_the_number(text, redacted):
    assert SCAN.redact(text)[0] == redacted


def test_fullwidth_match_reports_the_original_text():
    (m,) = SCAN.find("电话１３８１２３４５６７８")
    assert m.text == "１３８１２３４５６７８"
