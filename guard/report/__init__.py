"""Reports for people: the near misses of a month (staff training) and the yearly
review of the rules (PDCA). Pure: the store reads the events (store/reports.py), these
modules count them, and the CLI (cli/report.py) and the web (web/reports.py) show them.

    periods   a month or a year as database times, in the review time zone
    nearmiss  near misses by reason, rule, department, ISO week and sender
    rules     per rule: fired, held, outcomes, median approval time, rubber stamps
    render    Markdown (Japanese with English), CSV and JSON
"""
