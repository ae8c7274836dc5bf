"""customer_mismatch: a mail for customer A that names customer B."""

from __future__ import annotations

from guard.inspect.context import Customer, InspectContext
from guard.inspect.customers import detect_customer_mismatch, name_terms
from guard.policy.datafiles import parse_customers_csv
from tests.inspect.standins import Attachment, Chunk, View

A = Customer("エー商事株式会社", aliases=("エー商事",), domains=("a-shoji.co.jp",))
B = Customer("ビー物産株式会社", aliases=("ビー物産", "BEE"), domains=("bee-bussan.co.jp",))
ACME = Customer("Acme Co., Ltd.", domains=("acme.com",))
NODOMAIN = Customer("ノードメイン工業", domains=())
CTX = InspectContext(internal_domains=frozenset({"ourcorp.co.jp"}),
                     customers=(A, B, ACME, NODOMAIN))


def attach(name: str) -> Attachment:
    return Attachment(name, where=f"attachment:{name}")


def test_mission_case_file_for_b_attached_to_mail_for_a() -> None:
    view = View(rcpt_tos=["suzuki@a-shoji.co.jp", "yamada@ourcorp.co.jp"],
                subject="お見積りの件",
                texts=[Chunk("body", "エー商事 鈴木様\nお見積りを送付します。")],
                attachments=[attach("ビー物産様_見積書.xlsx")])
    found = detect_customer_mismatch(view, CTX)
    assert len(found) == 1
    f = found[0]
    assert f.symbol == "customer_mismatch"
    assert f.evidence["named"] == "ビー物産株式会社"
    assert f.evidence["where"] == ["attachment:ビー物産様_見積書.xlsx"]
    assert f.evidence["recipient_orgs"] == ["a-shoji.co.jp"]
    assert f.evidence["recipient_customers"] == ["エー商事株式会社"]
    assert f.recipients == ("suzuki@a-shoji.co.jp",)
    assert f.where == "attachment:ビー物産様_見積書.xlsx"
    assert f.score >= 0.8
    assert "ビー物産株式会社" in f.reason_ja and "エー商事株式会社" in f.reason_ja


def test_name_inside_attachment_text_and_archive_member() -> None:
    view = View(rcpt_tos=["suzuki@a-shoji.co.jp"],
                texts=[Chunk("attachment:見積.pdf", "御中 ﾋﾞｰ物産株式会社 御見積書")],
                inner_names=[("attachment:x.zip/bee_list.csv", "BEE-list.csv")])
    found = detect_customer_mismatch(view, CTX)
    assert len(found) == 1
    assert found[0].evidence["where"] == ["attachment:x.zip/bee_list.csv", "attachment:見積.pdf"]


def test_mention_in_body_only_is_weaker() -> None:
    view = View(rcpt_tos=["suzuki@a-shoji.co.jp"],
                texts=[Chunk("body", "ビー物産様の事例もご参考まで。")])
    found = detect_customer_mismatch(view, CTX)
    assert len(found) == 1
    assert found[0].score < 0.8


def test_naming_the_recipient_customer_is_fine() -> None:
    view = View(rcpt_tos=["info@mail.bee-bussan.co.jp"],
                attachments=[attach("ビー物産株式会社_請求書.pdf")], subject="BEE 御中")
    assert detect_customer_mismatch(view, CTX) == []


def test_internal_mail_may_name_any_customer() -> None:
    view = View(rcpt_tos=["yamada@ourcorp.co.jp", "sato@mail.ourcorp.co.jp"],
                attachments=[attach("ビー物産様_見積書.xlsx")])
    assert detect_customer_mismatch(view, CTX) == []


def test_no_customer_among_the_recipients_is_no_mismatch() -> None:
    # a customer's plan sent to the contracted warehouse: ordinary work, reported as
    # customer_to_noncustomer for a policy that asks for it, never as a mismatch
    view = View(rcpt_tos=["someone@elsewhere.com"], attachments=[attach("Acme_quote.pdf")])
    found = detect_customer_mismatch(view, CTX)
    assert [(f.symbol, f.evidence["named"]) for f in found] == [
        ("customer_to_noncustomer", "Acme Co., Ltd.")]
    assert found[0].evidence["recipient_orgs"] == ["elsewhere.com"]
    assert found[0].evidence["recipient_customers"] == []
    assert "not a customer" in found[0].reason_en


def test_a_customer_and_a_warehouse_naming_a_third_is_a_mismatch() -> None:
    view = View(rcpt_tos=["suzuki@a-shoji.co.jp", "desk@souko.example"],
                attachments=[attach("ビー物産様_出荷計画.xlsx")])
    found = detect_customer_mismatch(view, CTX)
    assert [(f.symbol, f.evidence["named"]) for f in found] == [
        ("customer_mismatch", "ビー物産株式会社")]


def test_latin_names_match_whole_words_only() -> None:
    rcpt = ["suzuki@a-shoji.co.jp"]
    assert detect_customer_mismatch(View(rcpt, attachments=[attach("AcmeWorks.pdf")]), CTX) == []
    assert detect_customer_mismatch(View(rcpt, subject="BEEHIVE plan"), CTX) == []
    assert len(detect_customer_mismatch(View(rcpt, subject="Quote for ACME."), CTX)) == 1
    assert len(detect_customer_mismatch(View(rcpt, subject="見積_ACME_v2"), CTX)) == 1


def test_customer_without_domains_is_not_judged() -> None:
    view = View(rcpt_tos=["suzuki@a-shoji.co.jp"], attachments=[attach("ノードメイン工業.pdf")])
    assert detect_customer_mismatch(view, CTX) == []


def test_no_customers() -> None:
    view = View(rcpt_tos=["x@y.com"], attachments=[attach("ビー物産.pdf")])
    assert detect_customer_mismatch(view, InspectContext()) == []


def test_name_terms_add_the_core_name() -> None:
    assert name_terms(Customer("ＡＢＣ商事株式会社", domains=("abc.co.jp",))) == [
        "ABC商事株式会社", "ABC商事"]
    assert "Acme" in name_terms(ACME)


def test_customers_from_csv() -> None:
    data = "顧客名,略称,ドメイン\nエー商事株式会社,エー商事|A商事,a-shoji.co.jp\n".encode("cp932")
    parsed = parse_customers_csv(data)
    assert parsed.ok
    ctx = InspectContext(customers=tuple(parsed.customers))
    view = View(rcpt_tos=["x@other.co.jp"], attachments=[attach("A商事_見積.xlsx")])
    found = detect_customer_mismatch(view, ctx)
    assert [(f.symbol, f.evidence["named"]) for f in found] == [
        ("customer_to_noncustomer", "エー商事株式会社")]
