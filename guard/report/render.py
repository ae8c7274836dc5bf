"""The reports as text: Markdown (Japanese, with English alongside), CSV (one row per
figure: section, key, count) and JSON. The web page (web/reports.py) shows the same
figures."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from guard.report.nearmiss import NearMissReport, SenderCount
from guard.report.rules import RuleCount, RulesReport

# section keys and their headings (Japanese / English)
NEAR_MISS_SECTIONS = (
    ("reason", "理由（シンボル）", "Reason (symbol)"),
    ("rule", "ルール", "Rule"),
    ("department", "部署", "Department"),
    ("week", "週 (ISO)", "Week (ISO)"),
    ("decided_by", "止めた人", "Stopped by"),
)
RULE_COLUMNS = (
    ("fired", "検知", "fired"), ("held", "保留", "held"), ("tagged", "タグ", "tagged"),
    ("refused", "拒否", "refused"), ("approved", "承認", "approved"),
    ("confirmed", "本人確認", "confirmed"), ("released", "管理者解除", "released"),
    ("cancelled", "取消", "cancelled"), ("rejected", "却下", "rejected"),
    ("expired", "期限切れ", "expired"), ("escalated", "エスカレーション", "escalated"),
)


def near_miss_sections(r: NearMissReport) -> list[tuple[str, str, str, list[tuple[str, int]]]]:
    rows = {"reason": r.by_reason, "rule": r.by_rule, "department": r.by_department,
            "week": r.by_week, "decided_by": r.by_decider}
    return [(key, ja, en, rows[key]) for key, ja, en in NEAR_MISS_SECTIONS]


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def near_miss_markdown(r: NearMissReport) -> str:
    out = [f"# ヒヤリハット報告 {r.period.label} / Near-miss report {r.period.label}", "",
           f"ヒヤリハット件数 / Near misses: **{r.total}**", "",
           "保留された送信を、送信者・管理者が取り消した、または承認者が却下した件数です。 "
           "/ Held messages that the sender or an admin cancelled, or an approver "
           "rejected.", ""]
    for _key, ja, en, rows in near_miss_sections(r):
        out += [f"## {ja} / {en}", "", f"| {ja} / {en} | 件数 / Count |", "|---|---:|"]
        out += [f"| {_md_escape(k)} | {n} |" for k, n in rows] or ["| — | 0 |"]
        out.append("")
    note = ("実名 / real names" if r.named
            else "匿名化 / anonymised (`--names` で実名 / for names)")
    out += [f"## 送信者（上位） / Top senders — {note}", "",
            "| 送信者 / Sender | 件数 / Count |", "|---|---:|"]
    out += [f"| {_md_escape(sender_name(s))} | {s.count} |" for s in r.top_senders]
    if not r.top_senders:
        out.append("| — | 0 |")
    return "\n".join(out) + "\n"


def sender_name(s: SenderCount) -> str:
    """'送信者A / Sender A', or the address when names were asked for."""
    return s.label_ja if s.label_ja == s.label_en else f"{s.label_ja} / {s.label_en}"


def near_miss_json(r: NearMissReport) -> dict[str, Any]:
    return {"report": "near-misses", "month": r.period.label, "total": r.total,
            **{key: [{"key": k, "count": n} for k, n in rows]
               for key, _ja, _en, rows in near_miss_sections(r)},
            "top_senders": [{"label_ja": s.label_ja, "label_en": s.label_en,
                             "count": s.count} for s in r.top_senders],
            "names": r.named}


def near_miss_csv(r: NearMissReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "count"])
    w.writerow(["total", "", r.total])
    for key, _ja, _en, rows in near_miss_sections(r):
        for k, n in rows:
            w.writerow([key, k, n])
    for s in r.top_senders:
        w.writerow(["sender", s.label_en, s.count])
    return buf.getvalue()


def minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f}"


def _rule_row(c: RuleCount) -> str:
    cells = [str(getattr(c, key)) for key, _ja, _en in RULE_COLUMNS]
    return (f"| {_md_escape(c.rule)} | " + " | ".join(cells)
            + f" | {minutes(c.median_approval_seconds)} |")


def rules_markdown(r: RulesReport) -> str:
    head = ("| ルール / Rule | " + " | ".join(f"{ja} / {en}" for _k, ja, en in RULE_COLUMNS)
            + " | 承認までの中央値（分） / median approval (min) |")
    sep = "|---|" + "---:|" * (len(RULE_COLUMNS) + 1)
    out = [f"# ルールの年次見直し {r.period.label} / Yearly rule review {r.period.label}", "",
           "## ルール別 / Per rule", "", head, sep]
    out += [_rule_row(c) for c in r.rules] or ["| — |"]
    out += ["", "## 一度も検知しなかったルール / Rules that never fired", ""]
    out += [f"- {n}" for n in r.never_fired] or ["- なし / none"]
    out += ["", f"## 形だけの承認の疑い / Rubber stamps (≥ {r.min_holds} holds, ≥ 95 % "
            "approved or confirmed)", "",
            "ルールが広すぎるか、承認者が内容を見ていない可能性があります。 "
            "/ The rule may be too wide, or the approvers do not look.", ""]
    out += [f"- {c.rule}: {c.approved + c.confirmed}/{c.held}" for c in r.rubber_stamps] \
        or ["- なし / none"]
    out += ["", "## 削除されたルール / Removed rules", ""]
    if r.removed:
        out += [head, sep] + [_rule_row(c) for c in r.removed]
    else:
        out.append("- なし / none")
    return "\n".join(out) + "\n"


def rules_json(r: RulesReport) -> dict[str, Any]:
    return {"report": "rules", "year": r.period.label, "min_holds": r.min_holds,
            "rules": [c.as_json() for c in r.rules],
            "never_fired": r.never_fired,
            "rubber_stamps": [c.rule for c in r.rubber_stamps],
            "removed": [c.as_json() for c in r.removed]}


def rules_csv(r: RulesReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k, _ja, _en in RULE_COLUMNS]
    w.writerow(["rule", "in_policy", *keys, "median_approval_seconds", "never_fired",
                "rubber_stamp"])
    stamps = {c.rule for c in r.rubber_stamps}
    for in_policy, group in ((True, r.rules), (False, r.removed)):
        for c in group:
            med = c.median_approval_seconds
            w.writerow([c.rule, int(in_policy), *(getattr(c, k) for k in keys),
                        "" if med is None else f"{med:.3f}", int(c.fired == 0),
                        int(c.rule in stamps)])
    return buf.getvalue()


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"

