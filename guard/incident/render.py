"""The incident report as text: Markdown (Japanese with English alongside), JSON, and
CSV (one row per fact: section, key, value). The page (web/incidents.py) shows the same
sections from the same report."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from guard.incident.report import PURGED_NOTE, IncidentReport

STATUS = {"may_apply": "該当の可能性あり / may apply",
          "not_indicated": "記録上は該当なし / not indicated by the records",
          "unknown": "不明（担当者が判断） / unknown (the officer judges)"}
FIRST = (("what", "何が", "What"), ("when", "いつ", "When"), ("to_whom", "誰に", "To whom"),
         ("how_many", "どのくらい", "How many"), ("data", "データの種類", "Data"),
         ("done", "対応（ガードの記録）", "What was done (the guard's record)"))
WHO = (("sender", "送信者（ユーザー）", "Sender (user)"),
       ("mail_from", "エンベロープ送信者", "Envelope sender"),
       ("header_from", "From ヘッダー", "From header"), ("department", "部署", "Department"))
WHEN = (("submitted", "送信（受付）", "Submitted"), ("held", "保留", "Held"),
        ("released", "保留解除・承認", "Released / approved"),
        ("decided", "保留の決着", "Hold decided"), ("delivered", "配送", "Delivered"),
        ("reported", "報告", "Reported"))
WHY = (("action", "ガードの判定", "The guard's action"), ("rule", "ルール", "Rule"),
       ("reasons", "理由", "Reasons"), ("decided_by", "判断した人", "Decided by"))
OFFICER = (("cause", "原因", "Cause"), ("harm", "被害", "Harm"),
           ("measures", "再発防止策", "Measures"), ("notes", "備考", "Notes"))
KIND = {"misdelivery": "誤送信 / misdelivery", "severe": "重大な事象 / severe event",
        "recorded": "ガードの記録（インシデント未登録） / the guard's record (no incident "
                    "opened)"}
STAGE = {"first_report": "第一報 / first report", "final": "確定 / final"}


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _kv(rows: Any, values: dict[str, str]) -> list[str]:
    out = ["| 項目 / Item | 内容 / Value |", "|---|---|"]
    out += [f"| {ja} / {en} | {_md(values.get(k) or '—')} |" for k, ja, en in rows]
    return [*out, ""]


def title(r: IncidentReport) -> str:
    name = r.incident["id"] if r.incident else r.queue_id
    return f"インシデント報告 {name} / Incident report {name}"


def markdown(r: IncidentReport) -> str:
    out = [f"# {title(r)}", "",
           f"- 種別 / Kind: {KIND.get(r.kind, r.kind)}",
           f"- 段階 / Stage: {STAGE.get(r.stage, r.stage)}",
           f"- メッセージ / Message: `{r.queue_id}` {_md(r.message_id_header)}",
           f"- 件名 / Subject: {_md(r.subject)}",
           f"- 状態 / State: {r.state}"]
    if r.purged:
        out += ["", f"> {PURGED_NOTE}"]
    if r.incident:
        out += [f"- 報告者 / Reported by: {_md(r.incident['opened_by'])} "
                f"({r.incident['opened_at']})",
                f"- 誤った宛先 / Wrong recipients: "
                f"{_md(', '.join(r.incident['wrong_recipients']) or '—')}"]
        if r.incident["reporter_note"]:
            out.append(f"- 報告者のメモ / Reporter's note: {_md(r.incident['reporter_note'])}")
    out += ["", "## 第一報 / First report", "", *_kv(FIRST, r.first),
            "## 5W1H", "", "### 誰が / Who", "", *_kv(WHO, r.who),
            "### いつ / When", "", *_kv(WHEN, r.when),
            "### どこへ / Where (recipients)", "",
            "| 宛先 / Recipient | ドメイン / Domain | 組織 / Organisation | 区分 / Kind | "
            "状態 / State | 誤送信 / Wrong |", "|---|---|---|---|---|---|"]
    out += [f"| {_md(x.address)} | {x.domain} | {x.organisation} | {_md(x.kind)} | "
            f"{x.state} | {'はい / yes' if x.wrong else ''} |" for x in r.where]
    out += ["", "### 何を / What (data types and record counts)", "",
            "| データ / Data | シンボル / Symbol | 場所 / Where | 件数 / Count |",
            "|---|---|---|---:|"]
    out += [f"| {i.ja} / {i.en} | `{i.symbol}` | {_md(i.where)} | {i.count} |"
            for i in r.what] or ["| 検知なし / none detected | | | 0 |"]
    out += ["", "### なぜ・どのように / Why and how", "", *_kv(WHY, r.why),
            "#### 判断の記録 / Every decision (audit trail)", "",
            "| 日時 / At | 誰が / Actor | 操作 / Action | 状態 / State | 詳細 / Detail |",
            "|---|---|---|---|---|"]
    out += [f"| {d.at} | {_md(d.actor)} | {d.ja} / {d.en} (`{d.action}`) | "
            f"{d.from_state or '—'} → {d.to_state or '—'} | {_md(d.note)} |"
            for d in r.decisions]
    out += ["", "## 公表判断の5つの観点 / Five viewpoints for publication", "",
            "| 観点 / Viewpoint | 内容 / Value |", "|---|---|"]
    out += [f"| {ja} / {en} | {_md(v)} |" for _k, ja, en, v in r.viewpoints]
    out += ["", "## 個人情報保護法の報告基準 / APPI reporting criteria (2022)", "",
            "| 基準 / Criterion | 判定 / Status | 根拠 / Basis |", "|---|---|---|"]
    out += [f"| {c.ja} / {c.en} | {STATUS[c.status]} | {_md(c.why)} |" for c in r.appi]
    out += ["", f"> {r.appi_prompt}", "",
            "## 担当者記入欄 / For the officer", "", *_kv(OFFICER, r.officer)]
    if r.incident is not None:
        out += ["## 同じ送信者から同じ宛先への他のメール / Other messages from the same "
                "sender to the same recipients", ""]
        if r.others:
            out += ["| 日時 / At | メッセージ / Message | 宛先 / To | 件名 / Subject | "
                    "状態 / State |", "|---|---|---|---|---|"]
            out += [f"| {o['received_at']} | `{o['id']}` | {_md(o['address'])} | "
                    f"{_md(o['subject'])} | {o['state']} |" for o in r.others]
        else:
            out.append("なし / none")
        out.append("")
    return "\n".join(out)


def dump_json(r: IncidentReport) -> str:
    return json.dumps(r.as_json(), ensure_ascii=False, indent=2) + "\n"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(v: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula (a subject,
    an address, a note are the sender's or a stranger's words) gets a leading '."""
    text = str(v)
    return "'" + text if text.startswith(FORMULA_START) else text


class _Cells:
    def __init__(self, w: Any) -> None:
        self.w = w

    def writerow(self, row: list[Any]) -> None:
        self.w.writerow([cell(v) for v in row])


def csv_text(r: IncidentReport) -> str:
    """section, key, value — one fact a row, so a spreadsheet reads it as it is."""
    buf = io.StringIO()
    w = _Cells(csv.writer(buf, lineterminator="\n"))
    w.writerow(["section", "key", "value"])
    w.writerow(["message", "queue_id", r.queue_id])
    w.writerow(["message", "kind", r.kind])
    w.writerow(["message", "stage", r.stage])
    w.writerow(["message", "subject", r.subject])
    w.writerow(["message", "state", r.state])
    if r.purged:
        w.writerow(["message", "purged", PURGED_NOTE])
    for k, v in (r.incident or {}).items():
        w.writerow(["incident", k, ", ".join(v) if isinstance(v, list) else v])
    for section, values in (("first", r.first), ("who", r.who), ("when", r.when),
                            ("why", r.why), ("officer", r.officer)):
        for k, v in values.items():
            w.writerow([section, k, v])
    for x in r.where:
        w.writerow(["where", x.address, f"{x.organisation};{x.kind};{x.state};"
                    f"{'wrong' if x.wrong else ''}"])
    for i in r.what:
        w.writerow(["what", f"{i.symbol}@{i.where}", i.count])
    for d in r.decisions:
        w.writerow(["decision", d.at, f"{d.actor};{d.action};{d.from_state}->{d.to_state}"])
    for k, _ja, _en, v in r.viewpoints:
        w.writerow(["viewpoint", k, v])
    for c in r.appi:
        w.writerow(["appi", c.key, c.status])
    w.writerow(["appi", "prompt", r.appi_prompt])
    for o in r.others:
        w.writerow(["other_message", o["id"], f"{o['address']};{o['state']}"])
    return buf.getvalue()
