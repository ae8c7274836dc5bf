"""Every fixed phrase people read in notices and on the review pages, in both languages.

One catalogue for both, so a page says exactly what the mail said (the reasons
themselves come from the stored verdict: `reason_ja` / `reason_en`).
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["ja", "en", "both"]

TEXTS: dict[str, tuple[str, str]] = {
    # hold kinds
    "kind.delay": ("一時保留", "Delayed send"),
    "kind.confirm": ("送信者確認", "Sender confirmation"),
    "kind.approve": ("承認待ち", "Waiting for approval"),
    # notice subjects (the held message's subject follows)
    "subject.held.delay": ("送信を一時保留しています", "Your message is delayed"),
    "subject.held.confirm": ("要確認：送信を保留しました", "Please confirm before it is sent"),
    "subject.held.approve": ("承認待ちで保留しました", "Held for approval"),
    "subject.approval_request": ("承認依頼", "Approval requested"),
    "subject.approval_request.escalated": ("承認依頼（代理）", "Approval requested (backup)"),
    "subject.approved": ("承認されました（送信します）", "Approved, being sent"),
    "subject.approval_partial": ("承認が一件ありました", "One approval received"),
    "subject.rejected": ("差し戻されました（未送信）", "Rejected, not sent"),
    "subject.cancelled": ("送信を取り消しました（未送信）", "Cancelled, not sent"),
    "subject.expired": ("期限切れのため送信されませんでした", "Expired, not sent"),
    "subject.released": ("保留を解除しました（送信します）", "Released, being sent"),
    "subject.dropped": ("一部の宛先を除外しました", "Some recipients removed"),
    # page and notice labels
    "label.subject": ("件名", "Subject"),
    "label.from": ("差出人", "From"),
    "label.received": ("受付日時", "Received"),
    "label.until": ("期限", "Until"),
    "label.approved_at": ("承認日時", "Approved at"),
    "label.rejected_at": ("差し戻し日時", "Rejected at"),
    "label.cancelled_at": ("取り消し日時", "Cancelled at"),
    "label.expired_at": ("期限切れ日時", "Expired at"),
    "label.released_at": ("保留解除日時", "Released at"),
    "label.removed": ("外した宛先", "Removed recipients"),
    "label.sent_now": ("保留せずに送信したほかの宛先", "Sent now to the other recipients"),
    "label.state": ("状態", "Status"),
    "label.reasons": ("保留の理由", "Why it is held"),
    "label.recipients": ("宛先", "Recipients"),
    "label.attachments": ("添付ファイル", "Attachments"),
    "label.risky_recipients": ("注意が必要な宛先", "Recipients to check"),
    "label.risky_attachments": ("注意が必要な添付ファイル", "Attachments to check"),
    "label.preview": ("本文（テキスト表示）", "Body (shown as plain text)"),
    "label.approvals": ("承認", "Approvals"),
    # {days}: delivery.retention_days
    "help.purged": ("このメールの本文は保存期間（{days}日）を過ぎたため削除されました",
                    "This message's body was deleted: its retention period ({days} days) "
                    "is over"),
    "label.link": ("確認ページ", "Review page"),
    "label.internal": ("社内", "internal"),
    "label.no_reason": ("理由なし", "no specific reason"),
    "label.see_items": ("理由は下の宛先・添付ファイルの欄に示しています。",
                        "The reasons are shown with the recipients and attachments below."),
    "label.members": ("中のファイル", "Files inside"),
    "label.more_members": ("ほかのファイル数", "more files"),
    "action.remove_on_approve": ("この宛先を外して承認する", "Remove this recipient and approve"),
    # states
    "state.held": ("保留中", "held"),
    "state.queued": ("送信待ち（送信処理中）", "queued for delivery"),
    "state.deferred": ("送信再試行中", "being retried"),
    "state.delivered": ("送信済み", "sent"),
    "state.bounced": ("送信失敗", "failed"),
    "state.cancelled": ("取り消し済み（未送信）", "cancelled (not sent)"),
    "state.expired": ("期限切れ（未送信）", "expired (not sent)"),
    "state.rejected": ("拒否（未送信）", "refused (not sent)"),
    "state.corrupt": ("破損", "corrupt"),
    # page actions
    "action.send": ("送信する", "Send"),
    "action.remove": ("宛先から外す", "Remove"),
    "action.confirm": ("確認して送信", "Confirm and send"),
    "action.send_now": ("今すぐ送信", "Send now"),
    "action.cancel": ("送信を取り消す", "Cancel this message"),
    "action.withdraw": ("承認依頼を取り下げる（送信しない）", "Withdraw (do not send)"),
    "action.approve": ("承認して送信", "Approve and send"),
    "action.reject": ("差し戻す（送信しない）", "Reject (do not send)"),
    "action.bcc": ("社外の宛先を To/Cc から Bcc に移して送る"
                   "（社外の受信者同士にアドレスを見せない）",
                   "Move outside addresses from To/Cc to Bcc (outside recipients do not see "
                   "each other)"),
    "help.tick": ("宛先ごとに「送信する」か「宛先から外す」を選んでください。",
                  "For every recipient, choose Send or Remove."),
    "help.domain": ("確認のため、送信先の組織のドメインを入力してください（例: example.co.jp）。",
                    "To confirm, type the recipient organisation's domain (e.g. example.com)."),
    "help.domain_n": ("送信先ドメイン", "Recipient domain"),
    "help.cancel_reason": ("取り消す理由を選んでください（ヒヤリハットとして記録します）。",
                           "Why are you cancelling? (recorded as a near miss)"),
    "help.reject_reason": ("差し戻す理由を入力してください（送信者に伝えます）。",
                           "Why do you reject it? (the sender will be told)"),
    "help.personal_link": ("このリンクはあなた専用です。転送しないでください。",
                           "This link is for you only; do not forward it."),
    "help.approver_self": ("送信者本人は承認できません。",
                           "The sender cannot approve their own mail."),
    "cancel.wrong_recipient": ("宛先の間違い", "wrong recipient"),
    "cancel.wrong_attachment": ("添付ファイルの間違い", "wrong attachment"),
    "cancel.wrong_content": ("本文の間違い", "wrong content"),
    "cancel.other": ("その他", "other"),
    "cancel.all_recipients_removed": ("すべての宛先が外されました", "every recipient was removed"),
    "label.note": ("メモ（任意）", "Note (optional)"),
    # page-only phrases
    "brand.sub": ("誤送信防止", "outbound mail guard"),
    "label.approvers": ("承認者", "Approvers"),
    "label.approved_by": ("承認済み", "Approved by"),
    "help.expiry.send": ("期限を過ぎると、そのまま送信されます。",
                         "When the time is up, it is sent as it is."),
    "help.expiry.cancel": ("期限を過ぎると、送信されずに取り消されます。",
                           "When the time is up, it is cancelled and not sent."),
    "help.intro.delay": ("期限になると自動で送信されます。今すぐ送る場合は、宛先ごとに選んでから"
                         "「今すぐ送信」を押してください。",
                         "It is sent automatically when the time is up. To send it now, "
                         "choose for every recipient, then press Send now."),
    "help.intro.confirm": ("宛先を一件ずつ確かめて、送る宛先と外す宛先を選んでから"
                           "「確認して送信」を押してください。",
                           "Check the recipients one by one, choose Send or Remove for each, "
                           "then press Confirm and send."),
    "help.intro.sender_approve": ("承認者の承認を待っています。送らないことにした場合は、"
                                  "下から取り下げてください。",
                                  "Waiting for approval. If it should not be sent, withdraw it "
                                  "below."),
    "help.intro.approver": ("宛先・添付ファイル・理由を確かめて、承認するか差し戻してください。",
                            "Check the recipients, attachments and reasons, then approve or "
                            "reject."),
    "help.waits_for": ("このパスワードのメールは、次の暗号化添付メールと一緒に"
                       "送信・取り消しされます。単独では送信できません（取り消しはできます）:",
                       "This password mail is sent or cancelled together with the encrypted "
                       "attachment mail below; it cannot be sent on its own (it can be "
                       "cancelled):"),
    "help.linked": ("このメールと一緒に送信・取り消しされるパスワードのメール:",
                    "Password mails sent or cancelled together with this mail:"),
    "help.preview_html": ("HTML メールのため、文字だけを表示しています。",
                          "HTML mail: shown as text only."),
    "help.truncated": ("（長いため途中までを表示しています）", "(cut: too long to show)"),
    "help.no_preview": ("本文を表示できません。", "The body cannot be shown."),
    "help.close": ("このページは閉じてかまいません。", "You can close this page."),
    "help.bcc_recommended": ("多数の社外アドレスが To/Cc に見えています。"
                             "Bcc への変更をおすすめします。",
                             "Many outside addresses are visible in To/Cc: moving them to Bcc "
                             "is recommended."),
    # page titles and results
    "title.review": ("保留中のメール", "Held message"),
    "title.done": ("完了しました", "Done"),
    "title.error": ("操作できません", "Cannot continue"),
    "done.released": ("送信しました。まもなく配送されます。", "Released: it is being sent."),
    "done.cancelled": ("取り消しました。このメールは送信されません。",
                       "Cancelled: this message will not be sent."),
    "done.approved": ("承認しました。メールは送信されます。",
                      "Approved: the message is being sent."),
    "done.approval_partial": ("承認を記録しました。もう一人の承認を待っています。",
                              "Your approval is recorded; waiting for another approver."),
    "done.rejected": ("差し戻しました。送信者に通知しました。",
                      "Rejected: the sender has been told."),
    "error.forbidden": ("このリンクでは操作できません。", "This link cannot be used for that."),
    "error.expired": ("このリンクの有効期限が切れています。",
                      "This link has expired."),
    "error.gone": ("このメールはもうありません。", "This message no longer exists."),
    "error.used": ("このリンクは使用済みです。", "This link has already been used."),
    "error.not_held": ("このメールはすでに処理されています。",
                       "This message has already been dealt with."),
    "error.tick_all": ("すべての宛先について「送信する」か「宛先から外す」を選んでください。",
                       "Choose Send or Remove for every recipient."),
    "error.domain": ("入力したドメインが宛先と一致しません。",
                     "The domain you typed does not match the recipients."),
    "error.reason": ("理由を選んでください。", "Please give a reason."),
    "error.none_left": ("すべての宛先を外すことはできません。送らない場合は差し戻してください。",
                        "You cannot remove every recipient: to stop the message, reject it."),
    "error.csrf": ("ページを開き直してからやり直してください。",
                   "Please reload the page and try again."),
}


def text(key: str, lang: Lang, sep: str = " / ") -> str:
    ja, en = TEXTS[key]
    if lang == "ja":
        return ja
    if lang == "en":
        return en
    return f"{ja}{sep}{en}"
