import time, json
from tests.conftest import Sink
from tests.smtp_client import RawSMTP, b64

def test_x(guard_factory, sink, tls):
    g = guard_factory(sink.url)
    ctx = tls.client_context()
    with RawSMTP(g.smtp_port) as c:
        c.ehlo(); c.starttls(ctx)
        print("2nd starttls before ehlo", c.cmd("STARTTLS"))
        c.ehlo()
        print("2nd starttls", c.cmd("STARTTLS"))
        print(c.auth_plain())
        print(c.cmd("HELP"))
        for l in ["MAIL FROM:<>", "MAIL FROM:<alice @example.co.jp>", "MAIL FROM:<alice(x)@example.co.jp>", "MAIL FROM:<\"alice\"@example.co.jp>", "MAIL FROM:<alice@example.co.jp\t>",
                  "MAIL FROM:<@evil.example:alice@example.co.jp>", "MAIL FROM:alice@example.co.jp SIZE=10",
                  "MAIL FROM:<alice@example.co.jp> SIZE=10"]:
            print(l, "->", c.cmd(l))
        for l in ["RCPT TO:<x@example.net\r>", "RCPT TO:<x\r@example.net>", "RCPT TO:<x @example.net>", "RCPT TO:<@a.example:x@example.net>", "RCPT TO:<x(c)@example.net>", "RCPT TO:<\"x\"@example.net>",
                  "RCPT TO:<a@b.com\rRCPT TO:<x@y>>", "RCPT TO:<x@example.net\x00>", "RCPT TO:<x@example.net>\x00", "RCPT TO:<x@example.net> NOTIFY=NEVER", "RCPT TO:<Postmaster>", "RCPT TO:<x@[1.2.3.4]>", "RCPT TO:<xäy@example.net>".encode(),
                  "RCPT TO:<" + "a"*65 + "@example.net>", "RCPT TO:<" + "a"*64 + "@example.net>", "RCPT TO:<bob@example.net>"]:
            print(repr(l), "->", c.cmd(l if isinstance(l, bytes) else l.encode()))
        print(c.cmd("DATA"))
        c.send(b"Subject: one\r\n\r\nbody1\r\n.\r\nMAIL FROM:<alice@example.co.jp>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n")
        for r in c.replies(4): print(r)
        c.send(b"Subject: two\r\n\r\n" + b"x"*998 + b"\r\n." + b"y"*997 + b"\r\n.\r\n")
        print(c.reply())
        print(c.cmd("MAIL FROM:<alice@example.co.jp>"), c.cmd("RCPT TO:<bob@example.net>"), c.cmd("DATA"))
        c.send(b"Subject: three\r\n\r\n" + b"x"*1000 + b"\r\n.\r\n")
        print(c.reply())
        print(c.cmd("NOOP"))
    ms = sink.wait_count(2)
    time.sleep(1)
    for m in sink.messages: print(m.mail_from, m.rcpt_tos, m.data[-60:])
    print(g.cli("queue", "list", "--json").stdout[:1500])
