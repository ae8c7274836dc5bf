"""Notices to senders and approvers: who is told what, and the mails themselves."""
