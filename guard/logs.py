"""Structured logs: every line carries the queue id of the message it concerns.

Never log passwords, link tokens or message bodies; log ids, addresses and codes.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

queue_id_var: ContextVar[str] = ContextVar("queue_id", default="-")


class _QueueIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "qid"):
            record.qid = queue_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "qid": getattr(record, "qid", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(qid)s] %(message)s"


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_QueueIdFilter())
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = __import__("time").gmtime
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd logs every DATA line at DEBUG and peers at INFO; keep it quiet.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The database drivers and the SMTP client log statements with their values (message
    # bytes, review-token nonces) and the lines they send at DEBUG: never, even when the
    # guard itself is at DEBUG (tests/test_logs_private.py).
    for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool", "aiosmtplib"):
        logging.getLogger(name).setLevel(logging.WARNING)
