"""Recipient detectors: new_domain, lookalike, suppressed, visible_external, external_orgs."""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.inspect.context import InspectContext
from guard.inspect.recipients import (
    detect_external_orgs,
    detect_lookalike,
    detect_new_domain,
    detect_suppressed,
    detect_visible_external,
    mask_address,
)
from guard.mail.digests import address_digest
from guard.policy.datafiles import parse_address_csv


@dataclass
class View:
    """Stand-in for guard.mail.message.MessageView: only what these detectors read."""

    rcpt_tos: list[str] = field(default_factory=list)
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)


CTX = InspectContext(
    sender="yamada@ourcorp.co.jp",
    internal_domains=frozenset({"ourcorp.co.jp"}),
    known_domains=frozenset({"abc.co.jp", "example.co.jp", "例え.jp"}),
    known_addresses=frozenset({"tanaka@abc.co.jp", "sato@example.co.jp"}),
    partner_domains=frozenset({"partner-corp.com"}),
)


# ---------------------------------------------------------------- new_domain


def test_new_domain_one_finding_per_organisation() -> None:
    view = View(rcpt_tos=["a@newco.co.jp", "b@mail.newco.co.jp", "c@other.com",
                          "tanaka@abc.co.jp"])
    found = detect_new_domain(view, CTX)
    assert [(f.symbol, f.evidence["domains"], f.recipients) for f in found] == [
        ("new_domain", ["newco.co.jp"], ("a@newco.co.jp", "b@mail.newco.co.jp")),
        ("new_domain", ["other.com"], ("c@other.com",)),
    ]
    assert "newco.co.jp" in found[0].reason_ja and "newco.co.jp" in found[0].reason_en


def test_new_domain_ignores_known_internal_and_partner() -> None:
    view = View(rcpt_tos=[
        "x@ABC.CO.JP",  # known, upper case
        "x@sales.example.co.jp",  # sub-domain of a known organisation
        "x@mail.corp.ourcorp.co.jp",  # internal, via the registrable domain
        "x@partner-corp.com",
        "x@xn--r8jz45g.jp",  # known as the U-label 例え.jp
    ])
    assert detect_new_domain(view, CTX) == []


def test_new_domain_known_recorded_as_a_subdomain() -> None:
    ctx = InspectContext(known_domains=frozenset({"mail.client1.co.jp"}))
    assert detect_new_domain(View(rcpt_tos=["a@client1.co.jp"]), ctx) == []


def test_new_domain_idn_shows_both_forms() -> None:
    found = detect_new_domain(View(rcpt_tos=["info@新しい.jp"]), CTX)
    assert len(found) == 1
    assert found[0].evidence["domains"] == ["xn--n8jub8830a.jp"]
    assert found[0].evidence["domains_unicode"] == ["新しい.jp"]


def test_new_domain_public_suffix_organisations() -> None:
    # two towns under lg.jp are two organisations, not one "lg.jp"
    ctx = InspectContext(known_domains=frozenset({"shibuya.lg.jp"}))
    view = View(rcpt_tos=["a@city.shibuya.lg.jp", "b@city.minato.lg.jp"])
    assert [f.evidence["domains"] for f in detect_new_domain(view, ctx)] == [["minato.lg.jp"]]


# ---------------------------------------------------------------- lookalike


def test_lookalike_mission_case() -> None:
    found = detect_lookalike(View(rcpt_tos=["tanaka@abd.co.jp"]), CTX)
    assert len(found) == 1
    f = found[0]
    assert f.symbol == "lookalike"
    assert f.evidence == {"address": "tanaka@abd.co.jp", "resembles": "tanaka@abc.co.jp",
                          "kind": "edit_distance", "distance": 1}
    assert f.recipients == ("tanaka@abd.co.jp",)
    assert f.score >= 0.8  # another organisation: not the low colleague-typo score
    assert "did you mean tanaka@abc.co.jp" in f.reason_en
    assert "tanaka@abc.co.jp" in f.reason_ja


def test_lookalike_cyrillic_letter_shows_the_a_label() -> None:
    found = detect_lookalike(View(rcpt_tos=["sato@ex\u0430mple.co.jp"]), CTX)
    assert len(found) == 1
    assert found[0].evidence["kind"] == "skeleton"
    assert found[0].evidence["resembles"] == "sato@example.co.jp"
    assert found[0].evidence["address"] == "sato@xn--exmple-4nf.co.jp"
    assert found[0].score >= 0.8


def test_lookalike_tld_variant_is_low_score() -> None:
    found = detect_lookalike(View(rcpt_tos=["info@example.com"]), CTX)
    assert [(f.evidence["kind"], f.evidence["resembles"]) for f in found] == [
        ("tld_variant", "example.co.jp")]
    assert found[0].score < 0.5


def test_lookalike_not_for_known_internal_or_unrelated() -> None:
    view = View(rcpt_tos=[
        "tanaka@abc.co.jp", "Tanaka@ABC.co.jp",  # known address, any case
        "suzuki@ourcorp.co.jp",  # internal
        "info@unrelated.org",
    ])
    assert detect_lookalike(view, CTX) == []


def test_lookalike_of_our_own_domain() -> None:
    found = detect_lookalike(View(rcpt_tos=["suzuki@0urcorp.co.jp"]), CTX)
    assert [f.evidence["resembles"] for f in found] == ["ourcorp.co.jp"]


# ---------------------------------------------------------------- suppressed

KEY = b"k" * 32


def _ctx_with_list(addresses: list[str], key: bytes = KEY) -> InspectContext:
    return InspectContext(
        internal_domains=frozenset({"ourcorp.co.jp"}),
        suppression={"withdrawn": frozenset(address_digest(key, a) for a in addresses),
                     "opt-out": frozenset()},
        suppression_key=KEY,
    )


def test_withdrawn_member_found_via_digest() -> None:
    # the list is imported from CSV, as an admin would
    parsed = parse_address_csv("メールアドレス\r\nTanaka@ABC.co.jp\r\n".encode("cp932"))
    assert parsed.ok
    ctx = _ctx_with_list(parsed.addresses)
    view = View(rcpt_tos=["ｔａｎａｋａ＠abc.co.jp", "sato@abc.co.jp"])
    found = detect_suppressed(view, ctx)
    assert [(f.symbol, f.evidence, f.recipients) for f in found] == [
        ("suppressed", {"list": "withdrawn"}, ("ｔａｎａｋａ＠abc.co.jp",))]
    assert found[0].score == 1.0
    assert "withdrawn" in found[0].reason_ja


def test_suppressed_needs_the_same_key() -> None:
    ctx = _ctx_with_list(["tanaka@abc.co.jp"], key=b"another key")
    assert detect_suppressed(View(rcpt_tos=["tanaka@abc.co.jp"]), ctx) == []


def test_suppressed_no_lists() -> None:
    assert detect_suppressed(View(rcpt_tos=["tanaka@abc.co.jp"]), InspectContext()) == []


# ---------------------------------------------------------------- visible_external


def test_visible_external_counts_distinct_external_header_addresses() -> None:
    view = View(
        to_addrs=["a@client1.co.jp", "B@Client2.co.jp", "yamada@ourcorp.co.jp"],
        cc_addrs=["b@client2.co.jp", "c@mail.client1.co.jp"],
    )
    found = detect_visible_external(view, CTX)
    assert len(found) == 1
    f = found[0]
    assert (f.symbol, f.count, f.evidence["domains"]) == ("visible_external", 3, 2)
    assert f.where == "header:to"
    sample = f.evidence["addresses_sample"]
    assert sample == ["a***@client1.co.jp", "b***@client2.co.jp", "c***@mail.client1.co.jp"]
    assert "3" in f.reason_en


def test_visible_external_in_cc_only() -> None:
    view = View(to_addrs=["yamada@ourcorp.co.jp"], cc_addrs=["a@client1.co.jp", "b@client2.com"])
    found = detect_visible_external(view, CTX)
    assert [(f.count, f.where) for f in found] == [(2, "header:cc")]


def test_visible_external_one_address_is_fine() -> None:
    view = View(to_addrs=["a@client1.co.jp"], cc_addrs=["yamada@ourcorp.co.jp", "A@client1.co.jp"])
    assert detect_visible_external(view, CTX) == []


def test_mask_address_hides_the_mailbox() -> None:
    assert mask_address("tanaka@abc.co.jp") == "ta***@abc.co.jp"
    assert "tanaka" not in mask_address("tanaka@abc.co.jp")


# ---------------------------------------------------------------- external_orgs


def test_external_orgs_counts_registrable_domains() -> None:
    view = View(rcpt_tos=["a@client1.co.jp", "b@mail.client1.co.jp", "c@client2.com",
                          "yamada@ourcorp.co.jp"])
    found = detect_external_orgs(view, CTX)
    assert len(found) == 1
    f = found[0]
    assert (f.symbol, f.count) == ("external_orgs", 2)
    assert f.evidence["domains"] == ["client1.co.jp", "client2.com"]
    assert f.recipients == ("a@client1.co.jp", "b@mail.client1.co.jp", "c@client2.com")


def test_external_orgs_single_organisation() -> None:
    view = View(rcpt_tos=["a@client1.co.jp", "b@MAIL.CLIENT1.CO.JP", "yamada@ourcorp.co.jp"])
    assert detect_external_orgs(view, CTX) == []


def test_external_orgs_does_not_count_private_free_mail_addresses() -> None:
    # six members at gmail/yahoo/icloud/docomo are six people, not six companies
    members = ["k.yamamoto@gmail.com", "mika@yahoo.co.jp", "h.kimura@icloud.com",
               "s.hayashi@docomo.ne.jp", "yuko@ezweb.ne.jp", "t.mori@i.softbank.jp"]
    assert detect_external_orgs(View(rcpt_tos=members), CTX) == []
    (f,) = detect_external_orgs(View(rcpt_tos=[*members, "a@client1.co.jp", "b@client2.com"]),
                                CTX)
    assert (f.count, f.evidence["domains"]) == (2, ["client1.co.jp", "client2.com"])
    assert f.recipients == ("a@client1.co.jp", "b@client2.com")
