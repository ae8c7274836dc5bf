"""Keyword rules over subject, body, file names and attachment text."""

from __future__ import annotations

import re

import pytest

from guard.inspect.context import InspectContext, KeywordRule
from guard.inspect.keywords import compile_pattern, detect_keywords
from tests.inspect.standins import Attachment, Chunk, View


def ctx(*rules: KeywordRule) -> InspectContext:
    return InspectContext(keywords=rules)


SECRET = KeywordRule("社外秘", "社外秘|CONFIDENTIAL")


def test_subject_keyword() -> None:
    found = detect_keywords(View(subject="【社外秘】見積書送付の件"), ctx(SECRET))
    assert len(found) == 1
    f = found[0]
    assert (f.symbol, f.where, f.count) == ("keyword", "subject", 1)
    assert f.evidence["rule"] == "社外秘"
    assert f.evidence["match"] == "社外秘"
    assert "社外秘" in f.reason_ja


def test_full_width_and_lower_case_confidential() -> None:
    view = View(texts=[Chunk("body", "ＣＯＮＦＩＤＥＮＴＩＡＬ – internal only\nconfidential")])
    found = detect_keywords(view, ctx(SECRET))
    assert len(found) == 1
    assert found[0].where == "body"
    assert found[0].evidence["match"] == "CONFIDENTIAL"
    assert found[0].count == 1  # one distinct value, whatever its case


def test_half_width_katakana_meets_full_width_rule() -> None:
    rule = KeywordRule("shagaihi", "シャガイヒ")
    found = detect_keywords(View(subject="ｼｬｶﾞｲﾋ 資料"), ctx(rule))
    assert [f.evidence["match"] for f in found] == ["シャガイヒ"]


def test_rule_written_half_width_meets_full_width_text() -> None:
    rule = KeywordRule("shagaihi", "ｼｬｶﾞｲﾋ")
    assert len(detect_keywords(View(subject="シャガイヒ"), ctx(rule))) == 1


def test_full_width_brackets_in_a_pattern_stay_literal() -> None:
    # "［社外秘］" must not become the character class [社外秘] (which matches "秘密")
    rule = KeywordRule("bracketed", "［社外秘］")
    assert detect_keywords(View(subject="秘密の話"), ctx(rule)) == []
    assert len(detect_keywords(View(subject="[社外秘] 資料"), ctx(rule))) == 1
    assert len(detect_keywords(View(subject="［社外秘］ 資料"), ctx(rule))) == 1


def test_fields_are_respected() -> None:
    subject_only = KeywordRule("s", "社外秘", fields=("subject",))
    view = View(subject="資料", texts=[Chunk("body", "社外秘です")])
    assert detect_keywords(view, ctx(subject_only)) == []
    body = KeywordRule("b", "社外秘", fields=("body",))
    assert len(detect_keywords(view, ctx(body))) == 1


def test_filenames_include_archive_members() -> None:
    rule = KeywordRule("n", "社外秘", fields=("filename",))
    view = View(
        attachments=[Attachment("社外秘_見積.xlsx", where="attachment:社外秘_見積.xlsx"),
                     Attachment(None, where="attachment:part2")],
        inner_names=[("attachment:a.zip/社外秘リスト.csv", "社外秘リスト.csv")],
        texts=[Chunk("attachment:a.pdf", "社外秘")],  # attachment text: not this field
    )
    found = detect_keywords(view, ctx(rule))
    assert len(found) == 1
    assert found[0].evidence["places"] == ["attachment:社外秘_見積.xlsx",
                                           "attachment:a.zip/社外秘リスト.csv"]


def test_attachment_text_field() -> None:
    rule = KeywordRule("a", r"極秘", fields=("attachment",))
    view = View(texts=[Chunk("body", "極秘"), Chunk("attachment:報告.docx", "これは極秘資料")])
    found = detect_keywords(view, ctx(rule))
    assert [f.where for f in found] == ["attachment:報告.docx"]


def test_no_rules_no_match_and_empty_matches() -> None:
    view = View(subject="hello", texts=[Chunk("body", "nothing here")])
    assert detect_keywords(view, ctx()) == []
    assert detect_keywords(view, ctx(SECRET)) == []
    # a pattern that matches the empty string everywhere says nothing
    assert detect_keywords(view, ctx(KeywordRule("empty", "x*"))) == []


def test_distinct_matches_are_counted() -> None:
    rule = KeywordRule("project", r"PJ-\d{3}")
    view = View(texts=[Chunk("body", "PJ-001 PJ-002 PJ-001 ｐｊ－００３")])
    found = detect_keywords(view, ctx(rule))
    assert found[0].count == 3


def test_look_behind_falls_back_to_python_re() -> None:
    rule = KeywordRule("public", "(?<!非)公開")
    assert detect_keywords(View(subject="非公開"), ctx(rule)) == []
    assert len(detect_keywords(View(subject="公開資料"), ctx(rule))) == 1


def test_compile_once_and_reject_invalid() -> None:
    assert compile_pattern("社外秘") is compile_pattern("社外秘")
    with pytest.raises(re.error):
        compile_pattern("(unclosed")
    # an invalid rule that slipped past the policy loader is skipped, not fatal
    found = detect_keywords(View(subject="社外秘"), ctx(KeywordRule("bad", "(unclosed"), SECRET))
    assert [f.evidence["rule"] for f in found] == ["社外秘"]
