"""Notices to senders and approvers (Japanese and English)."""
