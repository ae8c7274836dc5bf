"""Alerts: severe events mailed to the officers at once, the others in a daily digest,
all read from the audit trail (see dispatch.py)."""
