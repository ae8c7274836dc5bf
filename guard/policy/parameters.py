"""The winning rule's parameters: hold times, who approves, the reject texts.

Each comes from the rule when it sets it, else from the policy's defaults; these are
the Verdict fields beyond the action and the reasons.
"""

from __future__ import annotations

from typing import Any

from guard.mail.replytext import ascii_line, one_line
from guard.policy.compiled import Policy
from guard.policy.schema import SENDER_GROUP, Action, Rule


def winner_parameters(policy: Policy, spec: Rule | None, action: Action, sender: str
                      ) -> dict[str, Any]:
    """Verdict fields for the winning rule (`spec`; None for the uninspectable default)."""
    defaults = policy.defaults
    out: dict[str, Any] = {}
    if spec is not None and spec.message is not None:
        out["message_ja"], out["message_en"] = spec.message.ja, spec.message.en
    if action is Action.DELAY:
        minutes = (spec and spec.delay_minutes) or defaults.hold.delay.minutes
        out["delay_minutes"] = out["expiry_minutes"] = minutes
        out["on_expiry"] = (spec and spec.on_expiry) or defaults.hold.delay.on_expiry
    elif action in (Action.CONFIRM, Action.APPROVE):
        hold = defaults.hold.confirm if action is Action.CONFIRM else defaults.hold.approve
        out["expiry_minutes"] = (spec and spec.expiry_minutes) or hold.minutes
        out["on_expiry"] = (spec and spec.on_expiry) or hold.on_expiry
        if action is Action.APPROVE:
            out.update(_approvers(policy, spec, sender))
    elif action is Action.REJECT:
        message = spec.message if spec is not None and spec.message is not None else None
        ja = (message.ja if message else "") or defaults.reject.message.ja
        en = (message.en if message else "") or defaults.reject.message.en
        status = (spec and spec.reject_status) or defaults.reject.status
        out["message_ja"], out["message_en"] = ja, en
        out["reject_code"] = (spec and spec.reject_code) or defaults.reject.code
        out["reject_status"] = status
        out["reject_text"] = ascii_line(f"{status} {en}")
        utf8 = {"ja": ja, "en": en, "both": f"{ja} / {en}"}[defaults.language]
        out["reject_text_utf8"] = one_line(f"{status} {utf8}")
    return out


def _approvers(policy: Policy, spec: Rule | None, sender: str) -> dict[str, Any]:
    """Who approves: the named group, or the sender's group, never the sender alone."""
    wanted = (spec.approver_group if spec is not None else None) or SENDER_GROUP
    candidates: list[str] = []
    if wanted == SENDER_GROUP:
        candidates += [g for g in policy.groups_of(sender) if policy.groups[g].approvers]
    else:
        candidates.append(wanted)
    fallback = policy.defaults.approver_group
    if fallback is not None and fallback not in candidates:
        candidates.append(fallback)
    for name in candidates:
        group = policy.groups[name]
        approvers = tuple(a for a in group.approvers if a != sender)
        backups = tuple(a for a in group.backup_approvers if a != sender)
        required = group.approvals_required
        if len(approvers) >= required:
            return {
                "approver_group": name,
                "approvers": approvers,
                "backup_approvers": backups,
                "escalate_after_minutes": group.escalate_after if backups else None,
                "approvals_required": required,
            }
        if len(approvers) + len(backups) >= required:
            # the head of department's own mail: the deputies approve it
            return {
                "approver_group": name,
                "approvers": approvers + backups,
                "approvals_required": required,
            }
    # The loader refuses policies where this can happen for lack of configuration; it
    # remains possible when the sender is the only approver everywhere. The hold then
    # expires (cancel, with notice) rather than letting the sender approve themselves.
    return {"approver_group": None, "approvals_required": 1}
