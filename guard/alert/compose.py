"""The words of alert mail: a first report (one message), a burst (many, counted) and
the daily digest. Plain text, Japanese first then English, short lines for a phone
screen. Pure: events and what the policy says in, (subject, body) out.

Recipients outside the company are named by organisation and domain (a customer's name
from customers.csv when the domain is one) unless the policy's alerts.show_addresses
allows full addresses: a first report is read on phones, forwarded and kept, so it
carries no more personal data than the officer needs to act.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from guard.alert.events import CARD, MY_NUMBER, PEOPLE_LIST, RECORDS, Event, records_of
from guard.inspect.domains import registrable_domain
from guard.mail.addresses import domain_of
from guard.mail.notice import one_line
from guard.ownmail import format_time

LISTED = 5  # events listed one by one in a burst; the rest are counted
ID_COLUMNS = 2  # the other messages' ids per line (18 characters each: a phone's width)
TOP = 5  # lines of each "by …" summary

DATA_JA = {MY_NUMBER: "マイナンバー", CARD: "カード番号", PEOPLE_LIST: "名簿",
           RECORDS: "個人の記録"}
DATA_EN = {MY_NUMBER: "My Number", CARD: "card number", PEOPLE_LIST: "people list",
           RECORDS: "personal records"}
HOLD_JA = {"approve": "承認待ち", "confirm": "送信者の確認待ち", "delay": "一定時間の保留"}
HOLD_EN = {"approve": "for approval", "confirm": "for the sender's confirmation",
           "delay": "for a delay"}
ROLE_JA = {"sender": "送信者", "approver": "承認者", "admin": "管理者",
           "timer": "期限切れ（自動送信）", "guard": "guard（自動）"}
ROLE_EN = {"sender": "the sender", "approver": "an approver", "admin": "an administrator",
           "timer": "the time limit (sent on expiry)", "guard": "the guard (automatic)"}
KIND_JA = {"held": "保留", "rejected": "拒否", "released": "保留解除・送信",
           "misdelivery": "誤送信の報告", "near_miss": "ヒヤリハット"}
KIND_EN = {"held": "held", "rejected": "refused", "released": "released and sent",
           "misdelivery": "misdelivery reported", "near_miss": "near miss"}


@dataclass(frozen=True)
class Words:
    """What the texts need besides the events."""

    tz: tzinfo
    base_url: str  # the review base URL; links are {base_url}/reports/incidents/{id}
    show_addresses: bool = False
    department: Callable[[str], str | None] = lambda sender: None  # "営業部 / Sales"
    organisation: Callable[[str], str | None] = lambda domain: None  # customer name
    # the view link (guard/viewlink.py) of a message's report, "" for none: an officer's
    # phone sends no bearer token
    view_link: Callable[[str], str] = lambda message_id: ""

    def link(self, message_id: str) -> str:
        k = self.view_link(message_id)
        return f"{self.base_url}/reports/incidents/{message_id}" + (f"?k={k}" if k else "")


def _time(t: float, tz: tzinfo) -> str:
    return format_time(t, tz)


def _period(since: float, until: float, tz: tzinfo) -> str:
    """'2026-12-07 16:59〜17:04 JST' (the date again only when it changed)."""
    a, b = datetime.fromtimestamp(since, tz), datetime.fromtimestamp(until, tz)
    end = b.strftime("%H:%M %Z") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M %Z")
    return f"{a.strftime('%Y-%m-%d %H:%M')}〜{end}"


def data_ja(e: Event) -> str:
    parts = [f"{DATA_JA[s]} {n} 行" if s == PEOPLE_LIST else f"{DATA_JA[s]} {n} 件"
             for s, n in e.data]
    return "、".join(parts) or "（検出なし）"


def data_en(e: Event) -> str:
    parts = [f"{DATA_EN[s]} ({n} rows)" if s == PEOPLE_LIST else f"{DATA_EN[s]} ×{n}"
             for s, n in e.data]
    return ", ".join(parts) or "(none detected)"


def recipients_text(e: Event, w: Words, lang: str) -> str:
    """The outside recipients: full addresses if allowed, else organisation (domain)."""
    ja = lang == "ja"
    n = len(e.outside)
    if not n:
        return "社内のみ" if ja else "internal only"
    if w.show_addresses:
        names = [one_line(a, 120) for a in e.outside]
        unit_ja, unit_en = "人", "more"
    else:
        orgs: dict[str, str] = {}
        for a in e.outside:
            domain = domain_of(a)
            org = registrable_domain(domain) or domain
            name = w.organisation(domain)
            orgs.setdefault(org, f"{one_line(name, 60)} ({org})" if name else org)
        names = list(orgs.values())
        unit_ja, unit_en = "組織", "more organisations"
    shown = names[:LISTED]
    if len(names) > LISTED:
        rest = len(names) - LISTED
        shown.append(f"ほか {rest} {unit_ja}" if ja else f"{rest} {unit_en}")
    text = ("、" if ja else ", ").join(shown)
    if w.show_addresses:
        return text
    return f"{text}（{n} 人）" if ja else f"{text} ({n} recipient{'s' if n > 1 else ''})"


def _sender(e: Event, w: Words) -> str:
    dept = w.department(e.sender)
    who = one_line(e.sender or "(unknown)", 120)
    return f"{who} ({one_line(dept, 60)})" if dept else who


def action_ja(e: Event) -> str:
    if e.kind == "held":
        return f"保留しました（{HOLD_JA.get(e.hold_kind, '保留')}）"
    if e.kind == "rejected":
        return "送信を拒否しました"
    if e.kind == "released":
        return "重大な保留が解除され、送信されます"
    if e.kind == "misdelivery":
        inc = f"（インシデント {e.incident}）" if e.incident else ""
        who = "送信者が誤送信を報告しました" if e.by_role == "sender" else "誤送信が報告されました"
        return who + inc
    return KIND_JA.get(e.kind, e.kind)


def action_en(e: Event) -> str:
    if e.kind == "held":
        return f"held {HOLD_EN.get(e.hold_kind, '')}".rstrip()
    if e.kind == "rejected":
        return "refused, not sent"
    if e.kind == "released":
        return "a severe hold was released: being sent"
    if e.kind == "misdelivery":
        inc = f" (incident {e.incident})" if e.incident else ""
        who = "the sender reported a misdelivery" if e.by_role == "sender" \
            else "a misdelivery was reported"
        return who + inc
    return KIND_EN.get(e.kind, e.kind)


def decider(e: Event, lang: str) -> str:
    role = (ROLE_JA if lang == "ja" else ROLE_EN).get(e.by_role, e.by_role or "?")
    return f"{role} {one_line(e.by, 120)}" if e.by else role


def _headline(e: Event) -> tuple[str, str]:
    """'マイナンバーを含むメールを保留', 'mail with My Number held'."""
    if e.kind == "misdelivery":
        return "誤送信の報告", "misdelivery reported"
    main = e.data[0][0] if e.data else ""
    if main in (PEOPLE_LIST, RECORDS):
        n = records_of(dict(e.data))
        ja_data, en_data = f"{n} 人分の個人情報", f"{n} people's records"
    else:
        ja_data, en_data = DATA_JA.get(main, "個人情報"), DATA_EN.get(main, "personal data")
    verb_ja = {"held": "保留", "rejected": "拒否", "released": "保留解除して送信"}[e.kind]
    verb_en = {"held": "held", "rejected": "refused", "released": "released after a hold"}[e.kind]
    return f"{ja_data}を含むメールを{verb_ja}", f"mail with {en_data} {verb_en}"


def first_report(events: Sequence[Event], w: Words) -> tuple[str, str]:
    """One message's severe events (usually one): the first report."""
    last = events[-1]
    ja, en = _headline(last)
    subject = f"[guard] 重大: {ja} / Severe: {en}"
    ja_lines = [f"重大: {ja}",
                f"送信者: {_sender(last, w)}",
                f"日時: {_time(last.at, w.tz)}",
                f"宛先: {recipients_text(last, w, 'ja')}",
                f"内容: {data_ja(last)}"]
    en_lines = [f"Severe: {en}",
                f"From: {_sender(last, w)}",
                f"When: {_time(last.at, w.tz)}",
                f"To: {recipients_text(last, w, 'en')}",
                f"Data: {data_en(last)}"]
    for e in events:
        reported = e.kind == "misdelivery"
        ja_lines.append(f"対応: {action_ja(e)}")
        ja_lines.append(f"{'報告' if reported else '判断'}: {decider(e, 'ja')}")
        en_lines.append(f"Action: {action_en(e)}")
        en_lines.append(f"{'Reported by' if reported else 'Decided by'}: {decider(e, 'en')}")
    if last.rule:
        ja_lines.append(f"ルール: {one_line(last.rule, 80)}")
        en_lines.append(f"Rule: {one_line(last.rule, 80)}")
    ja_lines.append(f"詳細: {w.link(last.message_id)}")
    en_lines.append(f"Details: {w.link(last.message_id)}")
    return subject, "\n".join(ja_lines) + "\n\n" + "\n".join(en_lines) + "\n"


def _ranked(c: Counter[str]) -> list[tuple[str, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]


def _summary(pairs: Iterable[tuple[str, int]], sep: str) -> str:
    return sep.join(f"{k} {n}" for k, n in pairs)


def burst(messages: Sequence[Sequence[Event]], w: Words) -> tuple[str, str]:
    """Several messages' severe events in one mail: counted (each message once),
    summed up by rule, sender, data type and what happened, the first few listed."""
    n = len(messages)
    last = [m[-1] for m in messages]
    rules = Counter(e.rule or "-" for e in last)
    senders = Counter(_sender(e, w) for e in last)
    kinds_ja = Counter(KIND_JA[e.kind] for e in last)
    kinds_en = Counter(KIND_EN[e.kind] for e in last)
    dja: Counter[str] = Counter()
    den: Counter[str] = Counter()
    for e in last:
        for s, _ in e.data:
            dja[DATA_JA[s]] += 1
            den[DATA_EN[s]] += 1
    period = _period(min(e.at for m in messages for e in m),
                     max(e.at for m in messages for e in m), w.tz)
    orgs: Counter[str] = Counter()
    for e in last:
        for org in {registrable_domain(domain_of(a)) or domain_of(a) for a in e.outside}:
            orgs[org] += 1
    subject = f"[guard] 重大: {n} 件の重大な事象 / Severe: {n} events"
    ja = [f"重大な事象 {n} 件（{period}）",
          f"対応別: {_summary(_ranked(kinds_ja), '、')}",
          f"宛先別（組織）: {_summary(_ranked(orgs), '、') or '-'}",
          f"ルール別: {_summary(_ranked(rules), '、')}",
          f"送信者別: {_summary(_ranked(senders), '、')}",
          f"データ別（通数）: {_summary(_ranked(dja), '、') or '-'}",
          f"最初の {min(n, LISTED)} 件:"]
    en = [f"Severe events: {n} ({period})",
          f"By action: {_summary(_ranked(kinds_en), ', ')}",
          f"By organisation: {_summary(_ranked(orgs), ', ') or '-'}",
          f"By rule: {_summary(_ranked(rules), ', ')}",
          f"By sender: {_summary(_ranked(senders), ', ')}",
          f"By data type (messages): {_summary(_ranked(den), ', ') or '-'}",
          f"The first {min(n, LISTED)}:"]
    for e in last[:LISTED]:
        hhmm = datetime.fromtimestamp(e.at, w.tz).strftime("%H:%M")
        ja.append(f"- {hhmm} {KIND_JA[e.kind]} {recipients_text(e, w, 'ja')} {data_ja(e)}")
        ja.append(f"  {w.link(e.message_id)}")
        en.append(f"- {hhmm} {KIND_EN[e.kind]} {recipients_text(e, w, 'en')} {data_en(e)}")
        en.append(f"  {w.link(e.message_id)}")
    tail = ""
    if n > LISTED:
        # the others by id, once, at the end (`guard report incident ID`): links only for
        # the first few keeps the mail short enough for a phone
        ja.append(f"ほか {n - LISTED} 件（ID は末尾。guard report incident ID で確認できます）")
        en.append(f"{n - LISTED} more (ids at the end; guard report incident ID shows each)")
        rest = [e.message_id for e in last[LISTED:]]
        tail = "\n" + "\n".join(" ".join(rest[i:i + ID_COLUMNS])
                                for i in range(0, len(rest), ID_COLUMNS)) + "\n"
    return subject, "\n".join(ja) + "\n\n" + "\n".join(en) + "\n" + tail


def digest(day: str, since: float, until: float, minor: Sequence[Event], severe: int,
           w: Words) -> tuple[str, str]:
    """The day's less severe events, counted; the severe ones (already reported) only
    as a count."""
    kinds = Counter(e.kind for e in minor)
    rules = Counter(e.rule or "-" for e in minor)
    symbols = Counter(s for e in minor for s in e.symbols)
    depts = Counter(w.department(e.sender) or "(none)" for e in minor)
    period = _period(since, until, w.tz)
    subject = f"[guard] 日次ダイジェスト {day} / Daily digest {day}"
    ja = [f"日次ダイジェスト {day}",
          f"期間: {period}",
          f"保留 {kinds['held']} 件、拒否 {kinds['rejected']} 件、"
          f"ヒヤリハット {kinds['near_miss']} 件",
          f"重大な事象（通知済み）: {severe} 件",
          f"ルール別: {_summary(_ranked(rules), '、') or '-'}",
          f"検出別: {_summary(_ranked(symbols), '、') or '-'}",
          f"部署別: {_summary(_ranked(depts), '、') or '-'}",
          f"詳細: {w.base_url}/reports/near-misses"]
    en = [f"Daily digest {day}",
          f"Period: {period}",
          f"Held {kinds['held']}, refused {kinds['rejected']}, "
          f"near misses {kinds['near_miss']}",
          f"Severe events (already reported): {severe}",
          f"By rule: {_summary(_ranked(rules), ', ') or '-'}",
          f"By finding: {_summary(_ranked(symbols), ', ') or '-'}",
          f"By department: {_summary(_ranked(depts), ', ') or '-'}",
          f"Details: {w.base_url}/reports/near-misses"]
    return subject, "\n".join(ja) + "\n\n" + "\n".join(en) + "\n"
