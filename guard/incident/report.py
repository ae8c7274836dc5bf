"""The incident report, built from what the guard recorded (pure: no store, no clock).

Two stages, as the officer's material asks:
- the first report (速報の材料): the minimum, fast — what happened, when, to whom, how
  many, what was done;
- the full report in 5W1H (who, when, where, what, why/how), the five viewpoints a
  company decides publication by (who manages the data, how it leaked, what leaked,
  how much, how large the harm), and a prompt about the reporting duty of Japan's APPI
  (as amended in 2022) — a prompt for the officer, never a legal judgement.

What the guard cannot know (the cause, the harm, the measures) is left visibly blank
(`UNKNOWN`) for the officer, or filled from the incident's officer fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import tzinfo
from typing import Any

from guard.ownmail import format_time
from guard.store.incidents import Incident, RecordedMessage, RecordedRecipient, SentTo
from guard.store.reports import AuditRow

UNKNOWN = "（担当者記入 / for the officer）"
PEOPLE_LIMIT = 1000  # APPI: a leak of more than 1,000 people's data is reportable
# a recipient's state when its message's row was purged (retention) and only the
# incident row is left: it was a wrong recipient, so it was sent (desk.py allows
# only delivered or pending ones)
PURGED = "purged"
PURGED_NOTE = ("メッセージの記録は保持期間を過ぎて削除されました。"
               "この報告はインシデントの記録から作成しています。 / The message's record was "
               "purged after the retention time (message purged); this report is made from "
               "the incident's record.")
# recipients the mail went to, or is still going to
SENT_STATES = frozenset({"delivered", "pending", PURGED})

# personal-data symbols (policies/README.md) as the report names them
DATA_LABELS: dict[str, tuple[str, str]] = {
    "pii.my_number": ("マイナンバー（個人番号）", "My Number (individual number)"),
    "pii.card": ("クレジットカード番号", "credit card numbers"),
    "pii.phone": ("電話番号", "phone numbers"),
    "pii.address": ("住所", "postal addresses"),
    "pii.postal_code": ("郵便番号", "postal codes"),
    "pii.birth_date": ("生年月日", "dates of birth"),
    "pii.email": ("メールアドレス", "e-mail addresses"),
    "pii.people_list": ("個人の一覧（名簿）の行", "rows of a list of people"),
    "pii.records": ("個人データのまとまり", "personal-data records"),
    "pii.corporate_number": ("法人番号", "corporate numbers"),
}
# data whose misuse may cause financial harm (APPI rule 7 (ii))
FINANCIAL = frozenset({"pii.card"})
# what the audit actions mean, for the list of decisions
ACTION_WORDS: dict[str, tuple[str, str]] = {
    "accepted": ("受付（送信待ち）", "accepted, queued"),
    "held": ("保留", "held"),
    "rejected": ("拒否", "refused"),
    "notified": ("通知送信", "notices sent"),
    "approve": ("承認", "approved"),
    "release": ("保留解除", "released"),
    "expire": ("期限到来", "hold expired"),
    "escalate": ("エスカレーション", "escalated"),
    "drop_recipient": ("宛先の削除", "recipient removed"),
    "cancel": ("取消", "cancelled"),
    "reject": ("却下", "rejected by an approver"),
    "hold": ("管理者による保留", "held by an admin"),
    "delivered": ("配送完了", "delivered"),
    "delivered_partially": ("一部配送", "partly delivered"),
    "deferred": ("配送の再試行待ち", "deferred"),
    "bounced": ("配送失敗", "bounced"),
    "retry": ("再試行", "retried"),
    "withdrawn": ("取り下げ", "withdrawn"),
    "misdelivery_reported": ("誤送信の報告", "misdelivery reported"),
    "incident_opened": ("インシデント登録", "incident opened"),
    "incident_updated": ("インシデント更新", "incident updated"),
}
HOLD_ACTIONS = frozenset({"delay", "confirm", "approve"})


@dataclass(frozen=True)
class Orgs:
    """What the policy says about a recipient's organisation: ours, a customer's (by
    name), a partner's, or another one (by its registrable domain)."""

    is_internal: Callable[[str], bool] = lambda a: False
    customer: Callable[[str], str | None] = lambda d: None
    is_partner: Callable[[str], bool] = lambda d: False
    org_domain: Callable[[str], str] = lambda d: d

    def describe(self, address: str) -> tuple[str, str, str]:
        """(domain, organisation's domain, kind as "社外 / external" …)."""
        domain = address.rpartition("@")[2].lower()
        org = self.org_domain(domain)
        if self.is_internal(address):
            kind = "社内 / internal"
        elif (name := self.customer(domain)) is not None:
            kind = f"顧客 / customer: {name}"
        elif self.is_partner(domain):
            kind = "取引先 / partner"
        else:
            kind = "社外 / external"
        return domain, org, kind


@dataclass(frozen=True)
class DataItem:
    symbol: str
    ja: str
    en: str
    where: str  # body, attachment:名簿.xlsx, subject …
    count: int  # distinct values, or rows / records (policies/README.md)
    sensitive: bool = False
    financial: bool = False
    truncated: bool = False  # the inspection sampled: `count` is a lower bound


@dataclass(frozen=True)
class Recipient:
    address: str
    domain: str
    organisation: str
    kind: str
    state: str  # delivered | failed | dropped | pending | purged
    wrong: bool  # named as a wrong recipient in the incident
    internal: bool = False  # the company's own (policy internal_domains)


@dataclass(frozen=True)
class Decision:
    at: str
    actor: str
    action: str
    ja: str
    en: str
    from_state: str
    to_state: str
    note: str


@dataclass(frozen=True)
class Criterion:
    key: str
    ja: str
    en: str
    status: str  # "may_apply" | "not_indicated" | "unknown"
    why: str


@dataclass
class IncidentReport:
    queue_id: str
    incident: dict[str, Any] | None
    kind: str  # misdelivery | severe | recorded (no incident opened)
    stage: str  # first_report | final
    subject: str
    message_id_header: str
    state: str
    first: dict[str, str]
    who: dict[str, str]
    when: dict[str, str]
    where: list[Recipient]
    what: list[DataItem]
    why: dict[str, str]
    decisions: list[Decision]
    viewpoints: list[tuple[str, str, str, str]]  # key, ja, en, value
    appi: list[Criterion]
    appi_prompt: str
    officer: dict[str, str]
    others: list[dict[str, str]] = field(default_factory=list)
    purged: bool = False  # the message row is gone: built from the incident row alone

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["viewpoints"] = [{"key": k, "ja": ja, "en": en, "value": v}
                           for k, ja, en, v in self.viewpoints]
        return d


def fmt_time(t: float | None, tz: tzinfo) -> str:
    return format_time(t, tz, seconds=True)


def data_items(verdict: dict[str, Any]) -> list[DataItem]:
    """The personal data the verdict's reasons name: one item per (symbol, where)."""
    seen: dict[tuple[str, str], DataItem] = {}
    for r in verdict.get("reasons") or []:
        if not isinstance(r, dict):
            continue
        symbol = str(r.get("symbol") or "")
        if not symbol.startswith("pii."):
            continue
        where = str(r.get("where") or "")
        ja, en = DATA_LABELS.get(symbol, (str(r.get("reason_ja") or symbol),
                                          str(r.get("reason_en") or symbol)))
        evidence = r.get("evidence") if isinstance(r.get("evidence"), dict) else {}
        classes = evidence.get("classes") or [] if evidence else []
        sensitive = "sensitive" in classes if isinstance(classes, list) else False
        try:
            count = int(r.get("count") or 0)
        except (TypeError, ValueError):
            count = 0
        truncated = bool(evidence.get("truncated")) if evidence else False
        item = DataItem(symbol, ja, en, where, count, sensitive, symbol in FINANCIAL,
                        truncated)
        old = seen.get((symbol, where))
        if old is None or old.count < count:
            seen[(symbol, where)] = item
        elif truncated and not old.truncated:
            seen[(symbol, where)] = replace(old, truncated=True)
    return list(seen.values())


def people_estimate(items: Sequence[DataItem]) -> int:
    """How many people at least: the largest count of one kind in one place (a card
    number, a row of a list of people, a record is one person at most)."""
    return max((i.count for i in items if i.symbol != "pii.corporate_number"), default=0)


def sampled(items: Sequence[DataItem]) -> bool:
    """Whether the inspection sampled (large texts and sheets): counts are lower bounds."""
    return any(i.truncated for i in items if i.symbol != "pii.corporate_number")


def people_text(items: Sequence[DataItem]) -> str:
    """"1200" or, when sampled, "≥ 1200": never an exact-looking lower bound."""
    n = people_estimate(items)
    return f"≥ {n}" if sampled(items) else str(n)


def _first_at(audit: Sequence[AuditRow], pred: Callable[[AuditRow], bool]
              ) -> float | None:
    return next((a.at for a in audit if pred(a)), None)


def _last_at(audit: Sequence[AuditRow], pred: Callable[[AuditRow], bool]
             ) -> float | None:
    return next((a.at for a in reversed(audit) if pred(a)), None)


def _note(a: AuditRow) -> str:
    d = a.detail
    parts = []
    for key in ("reason", "address", "to", "wrong_recipients", "incident", "link", "rule",
                "fields"):
        if d.get(key) not in (None, "", [], {}):
            v = d[key]
            parts.append(f"{key}: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    return "; ".join(parts)[:300]


def appi(items: Sequence[DataItem], delivered_outside: bool) -> tuple[list[Criterion], str]:
    """The criteria of APPI art. 26 / rule 7 as far as the guard can tell, and the
    prompt for the officer."""
    sensitive = [i for i in items if i.sensitive]
    financial = [i for i in items if i.financial]
    people = people_estimate(items)
    if people > PEOPLE_LIMIT:
        over = "may_apply"
    else:  # a sampled count says nothing about what was not read
        over = "unknown" if sampled(items) else "not_indicated"
    crit = [
        Criterion("sensitive", "要配慮個人情報が含まれる",
                  "sensitive personal data (要配慮個人情報)",
                  "may_apply" if sensitive else "not_indicated",
                  "名簿に要配慮の列（病歴など）/ a list of people with sensitive columns"
                  if sensitive else
                  "検知なし（ガードはすべての要配慮情報を検知できません）/ none detected "
                  "(the guard cannot detect every kind)"),
        Criterion("financial", "不正利用により財産的被害が生じるおそれ（カード番号など）",
                  "data whose misuse may cause financial harm (card numbers …)",
                  "may_apply" if financial else "not_indicated",
                  ", ".join(f"{i.ja} / {i.en}: {i.count} ({i.where})" for i in financial)
                  or "検知なし / none detected"),
        Criterion("malicious", "不正の目的によるおそれ", "possibly caused with unlawful intent",
                  "unknown", UNKNOWN),
        Criterion("over_1000", "本人の数が1,000人を超える", "more than 1,000 people",
                  over, f"推定 / estimated: {people_text(items)}"
                  + ("（検査は抜き取り: 下限） / (the inspection sampled: a lower bound)"
                     if sampled(items) else "")),
    ]
    may = [c for c in crit if c.status == "may_apply"]
    if may and delivered_outside:
        prompt = ("この事案は個人情報保護法（2022年改正）の報告対象に当たる可能性があります（"
                  + "、".join(c.ja for c in may)
                  + "）。該当する場合は、個人情報保護委員会へ速やかに速報（発覚から概ね3〜5日以内）"
                  "し、30日以内（不正の目的によるものは60日以内）に確報を提出し、本人へ通知します。"
                  "判断は担当者が行ってください（これは法的判断ではありません）。 / This event "
                  "may meet the reporting criteria of the APPI as amended in 2022 ("
                  + "; ".join(c.en for c in may)
                  + "). If it does: report to the Personal Information Protection Commission "
                  "promptly (a preliminary report, within about 3–5 days of learning of it) "
                  "and in full within 30 days (60 for unlawful intent), and notify the "
                  "people concerned. The officer decides; this is not a legal judgement.")
    elif may:
        prompt = ("報告対象となりうるデータが含まれますが、ガードの記録では社外へは"
                  "送られていません。"
                  "漏えいのおそれがないか担当者が確認してください。 / Data of a reportable "
                  "kind, but the guard's records show it did not go outside. The officer "
                  "confirms there is no risk of a leak.")
    else:
        prompt = ("ガードの記録からは報告基準に当たる事実は見当たりません。"
                  "不正の目的の有無と、ガードが"
                  "検知できない情報の有無は担当者が確認してください。 / Nothing in the guard's "
                  "records meets a reporting criterion. The officer checks for unlawful "
                  "intent and for data the guard cannot detect.")
    if any(i.symbol == "pii.my_number" for i in items):
        prompt += (" マイナンバーを含むため、番号法に基づく報告の要否も確認してください。 / It "
                   "holds My Numbers: check the reporting duty under the My Number Act too.")
    return crit, prompt


def build(m: RecordedMessage, incident: Incident | None, others: Sequence[SentTo],
          orgs: Orgs, tz: tzinfo, department: str | None = None) -> IncidentReport:
    """The report of one message (and its incident, if one was opened)."""
    v = m.verdict
    wrong = {a.lower() for a in (incident.wrong_recipients if incident else ())}
    where = []
    for r in m.recipients:
        domain, org, kind = orgs.describe(r.address)
        where.append(Recipient(r.address, domain, org, kind, r.state,
                               r.address.lower() in wrong, orgs.is_internal(r.address)))
    items = data_items(v)
    audit = m.audit
    t = {
        "submitted": None if m.state == PURGED else m.received_at,
        "held": _first_at(audit, lambda a: a.to_state == "held"),
        "released": _first_at(audit, lambda a: a.from_state == "held"
                              and a.to_state == "queued"),
        "decided": _last_at(audit, lambda a: a.from_state == "held"
                            and a.to_state != "held"),
        "delivered": _first_at(audit, lambda a: a.action in ("delivered",
                                                             "delivered_partially")),
        "reported": incident.opened_at if incident else None,
    }
    when = {k: fmt_time(x, tz) for k, x in t.items()}
    decisions = [Decision(fmt_time(a.at, tz), a.actor, a.action,
                          *ACTION_WORDS.get(a.action, (a.action, a.action)),
                          a.from_state, a.to_state, _note(a)) for a in audit]
    rule = str(v.get("rule") or "")
    action = str(v.get("action") or "pass")
    reasons = [r for r in v.get("reasons") or [] if isinstance(r, dict)]
    why = {
        "action": action,
        "rule": rule or "—",
        "reasons": "; ".join(f"{r.get('symbol', '')} ({r.get('where', '')}, "
                             f"{r.get('count', '')}): {r.get('reason_en') or ''}"
                             for r in reasons) or "—",
        "decided_by": ", ".join(dict.fromkeys(
            a.actor for a in audit if (a.from_state == "held" and a.to_state != "held")
            or a.action == "approve")) or "—",
    }
    outside = [r for r in where if r.state == "delivered" and not r.internal]
    # a wrong recipient counts when it is outside and the mail went (or is going) there
    wrong_outside = [r for r in where if r.wrong and not r.internal
                     and r.state in SENT_STATES]
    crit, prompt = appi(items, bool(outside) or bool(wrong_outside))
    people = people_text(items)
    targets = [r for r in where if r.wrong] or where
    data_text = ", ".join(f"{i.ja} / {i.en} {i.count} ({i.where})" for i in items)
    kind = incident.kind if incident else "recorded"
    if kind == "misdelivery":
        what_happened = "誤送信（送信者からの報告） / a misdelivery, reported by the sender"
        how = (f"メールの誤送信: {len(targets)} 件の宛先 / e-mail sent to the wrong "
               f"recipient(s): {len(targets)}")
    else:
        what_happened = (f"ガードの判定: {action}（ルール {rule or '—'}） / the guard's "
                         f"verdict: {action} (rule {rule or '—'})")
        how = ("メール送信（社外へ配送済み） / sent by e-mail, delivered outside" if outside
               else "メール送信（社外へは未配送） / e-mail, not delivered outside")
    done = "; ".join(f"{d.ja} / {d.en} ({d.actor}, {d.at})" for d in decisions
                     if d.action not in ("notified",)) or "—"
    # APPI asks when it happened (sent, delivered) and when it was found (reported)
    happened = when["delivered"] or when["submitted"]
    if kind == "misdelivery" and when["reported"]:
        first_when = (f"発生 / happened: {happened or '—'}; "
                      f"発覚・報告 / discovered, reported: {when['reported']}")
    else:
        first_when = happened or when["reported"]
    first = {
        "what": what_happened,
        "when": first_when,
        "to_whom": ", ".join(f"{r.address} ({r.organisation}, {r.kind})" for r in targets),
        "how_many": (f"宛先 {len(targets)} 件、個人データ {people} 件（推定） / "
                     f"{len(targets)} recipient(s), personal data of {people} people "
                     "(estimated)"),
        "data": data_text or "検知なし / none detected",
        "done": done,
    }
    officer = {k: (getattr(incident, k) if incident else "") or UNKNOWN
               for k in ("cause", "harm", "measures", "notes")}
    viewpoints = [
        ("manager", "誰が管理するデータか", "who manages the data",
         "当社（送信者の所属: " + (department or "—") + "） / the company (sender's "
         "department: " + (department or "—") + ")"),
        ("how", "どのように漏えいしたか", "how it leaked", how),
        ("what", "何が漏えいしたか", "what leaked", data_text or UNKNOWN),
        ("how_much", "どのくらい漏えいしたか", "how much",
         f"{people} 人分（推定）、宛先 {len(targets)} 件 / {people} people (estimated), "
         f"{len(targets)} recipient(s)" if items else UNKNOWN),
        ("harm", "被害の大きさ", "how large the harm", officer["harm"]),
    ]
    return IncidentReport(
        queue_id=m.id,
        incident=None if incident is None else {
            "id": incident.id, "kind": incident.kind, "state": incident.state,
            "opened_at": fmt_time(incident.opened_at, tz), "opened_by": incident.opened_by,
            "wrong_recipients": list(incident.wrong_recipients),
            "reporter_note": incident.reporter_note},
        kind=kind,
        stage=incident.state if incident else "first_report",
        subject=m.subject, message_id_header=m.message_id_header, state=m.state,
        first=first,
        who={"sender": m.sender, "mail_from": m.mail_from, "header_from": m.header_from,
             "department": department or "—"},
        when=when, where=where, what=items, why=why, decisions=decisions,
        viewpoints=viewpoints, appi=crit, appi_prompt=prompt, officer=officer,
        others=[{"id": o.id, "received_at": fmt_time(o.received_at, tz), "state": o.state,
                 "subject": o.subject, "address": o.address,
                 "recipient_state": o.recipient_state}
                for o in others if o.id != m.id],
        purged=m.state == PURGED)


def purged_message(incident: Incident) -> RecordedMessage:
    """What is left of a message whose row retention purged: its id and, from the
    incident, the wrong recipients (state PURGED). The report says so (PURGED_NOTE)."""
    m = RecordedMessage(incident.message_id, PURGED, "", "", "", "", "", 0,
                        incident.opened_at, {})
    m.recipients = [RecordedRecipient(a, PURGED, None, "") for a in incident.wrong_recipients]
    return m


def link_first(r: IncidentReport, show_addresses: bool) -> dict[str, str]:
    """The first report as an alert's view link shows it (a link can be forwarded): the
    recipients by organisation and domain unless the policy's alerts.show_addresses,
    what was done without who did it; never the subject, the reporter's note, the
    officer's fields or other messages (the full report needs the reports token)."""
    targets = [x for x in r.where if x.wrong] or list(r.where)
    if show_addresses:
        to_whom = ", ".join(f"{x.address} ({x.organisation}, {x.kind})" for x in targets)
    else:
        orgs = dict.fromkeys(f"{x.organisation} ({x.kind})" for x in targets)
        to_whom = (", ".join(orgs) + f" — 宛先 {len(targets)} 件 / {len(targets)} "
                   "recipient(s)") if targets else ""
    done = "; ".join(f"{d.ja} / {d.en} ({d.at})" for d in r.decisions
                     if d.action not in ("notified",)) or "—"
    return {**r.first, "to_whom": to_whom, "done": done}
