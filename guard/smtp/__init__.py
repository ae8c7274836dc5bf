"""SMTP in: listeners, sessions, limits, identity; the only place that words SMTP replies.

    listeners.py   which listeners, bound how, with which TLS context
    server.py      GuardSMTP: one session (aiosmtpd's protocol with our limits)
    admission.py   who may connect; data.py: DATA read in blocks and checked
    handler.py     GuardHandler: MAIL, RCPT, the identity check, the hand-over
    identity.py    whose addresses a message may carry; authlimit.py: failed AUTH
    received.py    ReceivedMessage, what the pipeline gets
    outcome.py     what the pipeline answers; replies.py: its reply line
    front.py       the sessions in child processes, the pipeline in the main one
"""
