"""Floor reference (b) for tests/bench/relay_bench.py: the simplest honest durable relay.

aiosmtpd → INSERT + COMMIT in SQLite (WAL, synchronous=FULL: fsync'd) → 250, and one
delivery loop that sends undelivered rows over pooled aiosmtplib connections and marks
them sent (a second fsync'd commit per batch). Stock aiosmtpd, no policy, no audit, no
metrics. The guard has to beat this. Usage (the driver starts it):
    python tests/bench/bare_relay.py --listen 127.0.0.1:2525 --upstream 127.0.0.1:2526 \
        --db /tmp/x/bare.db [--uvloop]
"""

import argparse
import asyncio
import contextlib
import sqlite3

import aiosmtplib
from aiosmtpd.smtp import SMTP

POOL = 10  # upstream connections


class Relay:
    def __init__(self, db_path: str, upstream: tuple[str, int]) -> None:
        self.db = sqlite3.connect(db_path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # every COMMIT is fsync'd
        self.db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, mail_from TEXT,"
                        " rcpts TEXT, data BLOB, sent INTEGER NOT NULL DEFAULT 0)")
        self.upstream, self.wake = upstream, asyncio.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.db.execute("INSERT INTO q (mail_from, rcpts, data) VALUES (?, ?, ?)",
                        (envelope.mail_from, "\n".join(envelope.rcpt_tos), envelope.content))
        self.db.commit()  # durable before the 250
        self.wake.set()
        return "250 2.0.0 Ok: queued"

    async def _send(self, client: aiosmtplib.SMTP, rows: list[tuple]) -> list[int]:
        done = []
        for id_, mail_from, rcpts, data in rows:
            try:
                if not client.is_connected:
                    await client.connect()
                await client.sendmail(mail_from, rcpts.split("\n"), data)
                done.append(id_)
            except (aiosmtplib.SMTPException, OSError):
                client.close()  # the row stays unsent and is tried again
        return done

    async def deliver(self) -> None:
        host, port = self.upstream
        pool = [aiosmtplib.SMTP(hostname=host, port=port, local_hostname="bare.local",
                                start_tls=False, timeout=60) for _ in range(POOL)]
        while True:
            self.wake.clear()
            rows = self.db.execute("SELECT id, mail_from, rcpts, data FROM q WHERE sent = 0"
                                   " ORDER BY id LIMIT ?", (POOL * 10,)).fetchall()
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 1.0)
                continue
            done = await asyncio.gather(*(self._send(c, rows[i::POOL])
                                          for i, c in enumerate(pool)))
            self.db.executemany("UPDATE q SET sent = 1 WHERE id = ?",
                                [(i,) for d in done for i in d])
            self.db.commit()


async def main(a: argparse.Namespace) -> None:
    (host, port), up = a.listen.rsplit(":", 1), a.upstream.rsplit(":", 1)
    relay = Relay(a.db, (up[0], int(up[1])))
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(relay, hostname="bare.local", decode_data=False), host, int(port),
        backlog=1024)
    async with server:
        await relay.deliver()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
