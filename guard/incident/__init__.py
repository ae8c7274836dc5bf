"""Incidents: a misdelivery a sender reports after the fact, and the two-stage incident
report (the first report, then 5W1H with the five publication viewpoints and the APPI
prompt) built from what the guard recorded.

    desk    open a misdelivery incident (web and CLI call the same function), find a
            message by Message-ID, read the report of an incident or a message
    report  the report, pure: from the recorded message, its incident and audit rows
    render  Markdown (Japanese with English), JSON and CSV
"""
