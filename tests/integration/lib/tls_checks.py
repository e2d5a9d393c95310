#!/usr/bin/env python3
"""tls_checks - client-side checks for the STARTTLS/TLS/authentication tests
(t_tls_upstream.sh, t_tls_client.sh). Each subcommand connects to a daemon
under test, checks one thing and exits 0, or prints why and exits 1.

  tls_checks.py refused PORT REGEX
      the greeting is "* BYE" matching REGEX (case-insensitive) and the
      connection closes; a LOGIN is sent anyway so that a daemon that went
      on would pass the password to its upstream (which records it)
  tls_checks.py greeting PORT [--want CAP]... [--deny CAP]...
      the greeting is "* OK" (never PREAUTH) and its capability list, and
      CAPABILITY's, have every --want and no --deny; then LOGOUT
  tls_checks.py login PORT USER PASS EXPECT [--tls] [--cafile F] [--then CMD]...
      LOGIN gets EXPECT (OK or NO); after an OK each --then command must
      get OK; then LOGOUT

The client side of a daemon (its listeners); PORT is a listener, USER and
PASS a real account behind it, --cafile the CA of its certificate (none:
not verified; these checks are about the daemon's side):
  tls_checks.py no-preauth PORT [--tls]
      the greeting is "* OK", never PREAUTH, on a TCP listener
  tls_checks.py starttls-injection PORT USER PASS
      "STARTTLS" with a LOGIN and a SELECT pipelined behind it in the same
      packet: only the STARTTLS is answered; over TLS the session is still
      not logged in (the injected commands were discarded, not run later)
  tls_checks.py downgrade PORT USER PASS
      (a listener that refuses logins before TLS) CAPABILITY has STARTTLS
      and LOGINDISABLED and no AUTH=; LOGIN, AUTHENTICATE PLAIN with and
      without an initial response get NO before any credentials are asked
      for; after STARTTLS: AUTH=PLAIN, no LOGINDISABLED, no STARTTLS, and
      the login works
  tls_checks.py starttls-misuse PORT TLSPORT USER PASS
      STARTTLS twice, on the implicit-TLS listener, and after login: BAD;
      the session goes on
  tls_checks.py held-session PORT USER PASS READY GO
      (pimap-proxy's plain listener) log in, SELECT INBOX, create READY;
      once GO exists send NOOP (waiting up to 60 s: the link may be down)
      and LOGOUT: a session that must live through an outage
  tls_checks.py xdeliver PORT USER PASS EXPECT --cafile F
      (pimap-gateway) log in over TLS and send one XDELIVER; its tagged
      result must be EXPECT (OK or NO)
  tls_checks.py smtp-starttls-injection PORT USER PASS
      (pimap-proxy's SMTP listener) STARTTLS with AUTH and MAIL pipelined
      behind it: only the 220 is answered; over TLS a MAIL still needs AUTH
  tls_checks.py smtp-downgrade PORT USER PASS
      (the SMTP listener with logins before TLS refused) no AUTH offered,
      AUTH PLAIN and AUTH LOGIN refused with 5xx and no challenge; after
      STARTTLS AUTH is offered
  tls_checks.py leftover-literal PORT USER PASS [--tls] [--after-login]
      a command line with a syntax error that ends in a LITERAL+ header:
      its literal (command lines) is skipped with the line, never run; a
      LITERAL+ literal over the size limit: BYE and the connection closes,
      the bytes after it never run
"""

import argparse
import base64
import os
import re
import socket
import ssl
import sys
import time

from imapc import Client, Literal


def fail(msg):
    print("tls_checks: " + msg, file=sys.stderr)
    sys.exit(1)


def caps_of(resps):
    caps = set()
    for r in resps:
        m = re.search(r"\[CAPABILITY ([^\]]*)\]", r.first, re.I)
        if m:
            caps |= set(m.group(1).upper().split())
        if r.first.upper().startswith("* CAPABILITY "):
            caps |= set(r.first.upper().split()[2:])
    return caps


def cmd_refused(a):
    c = Client("127.0.0.1", a.port, timeout=20)
    g = c.connect()
    print("greeting %r" % g.first, file=sys.stderr)
    if g.status != "BYE" or not re.search(a.regex, g.first, re.I):
        fail("want * BYE matching /%s/, got %r" % (a.regex, g.first))
    try:
        c.send(b"a1 LOGIN alice secret\r\n")
    except OSError:
        pass
    try:
        rest = c.read_until_closed(timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure to close is the finding
        fail("connection not closed after BYE: %s" % e)
    if rest:
        fail("data after BYE: %r" % [r.first for r in rest])


def cmd_greeting(a):
    c = Client("127.0.0.1", a.port, timeout=20)
    g = c.connect()
    print("greeting %r" % g.first, file=sys.stderr)
    if g.status != "OK":
        fail("want * OK, got %r" % g.first)
    caps = caps_of([g])
    resps = c.ok("CAPABILITY")
    caps2 = caps_of(resps)
    for cs, what in ((caps, "greeting"), (caps2, "CAPABILITY")):
        for w in a.want:
            if w.upper() not in cs:
                fail("%s lacks %s: %s" % (what, w, sorted(cs)))
        for d in a.deny:
            if d.upper() in cs:
                fail("%s has %s: %s" % (what, d, sorted(cs)))
    c.ok("LOGOUT")
    c.close()


def cmd_login(a):
    c = Client("127.0.0.1", a.port, tls=a.tls, cafile=a.cafile, timeout=20)
    g = c.connect()
    if g.status != "OK":
        fail("greeting %r" % g.first)
    tag, resps = c.command('LOGIN "%s" "%s"' % (a.user, a.password))
    last = resps[-1]
    print("LOGIN -> %r" % last.first, file=sys.stderr)
    if last.status != a.expect:
        fail("LOGIN %s -> %r, want %s" % (a.user, last.first, a.expect))
    if last.status == "OK":
        for cmd in a.then:
            c.ok(cmd)
        c.ok("LOGOUT")
    c.close()


def connect(port, tls=False, cafile=None):
    c = Client("127.0.0.1", port, tls=tls, cafile=cafile, verify=bool(cafile), timeout=20)
    g = c.connect()
    if g.status != "OK":
        fail("greeting %r" % g.first)
    return c


def cmd_no_preauth(a):
    c = Client("127.0.0.1", a.port, tls=a.tls, verify=False, timeout=20)
    g = c.connect()
    if g.status != "OK" or "PREAUTH" in g.first.upper():
        fail("greeting %r (want * OK, never PREAUTH)" % g.first)
    c.ok("LOGOUT")


def cmd_starttls_injection(a):
    c = connect(a.port)
    c.send(b"s1 STARTTLS\r\ns2 LOGIN %s %s\r\ns3 SELECT INBOX\r\n" % (a.user.encode(), a.password.encode()))
    r = c.read_response()
    if r.tag != "s1" or r.status != "OK":
        fail("STARTTLS with commands pipelined behind it -> %r" % r.first)
    if c.rbuf:
        fail("answered in plaintext after STARTTLS's OK: %r" % c.rbuf[:80])
    try:
        c._wrap_tls()
    except (OSError, ValueError) as e:
        fail("TLS handshake after the pipelined STARTTLS: %s" % e)
    tag, resps = c.command("NOOP")
    if any(x.tag in ("s2", "s3") for x in resps):
        fail("the injected commands were run: %r" % [x.first[:60] for x in resps])
    tag, resps = c.command("SELECT INBOX")
    if resps[-1].status == "OK":
        fail("logged in by the injected LOGIN: SELECT -> %r" % resps[-1].first)
    caps = caps_of(c.ok("CAPABILITY"))
    if "AUTH=PLAIN" not in caps:
        fail("not the pre-login capabilities over TLS: %s" % sorted(caps))
    c.login(a.user, a.password)
    c.ok("SELECT INBOX")
    c.ok("LOGOUT")


def cmd_downgrade(a):
    c = connect(a.port)
    caps = caps_of([c.greeting]) | caps_of(c.ok("CAPABILITY"))
    if "STARTTLS" not in caps or "LOGINDISABLED" not in caps or any(x.startswith("AUTH=") for x in caps):
        fail("before TLS: want STARTTLS and LOGINDISABLED and no AUTH=: %s" % sorted(caps))
    for attempt in ('LOGIN "%s" "%s"' % (a.user, a.password), "AUTHENTICATE PLAIN " +
                    base64.b64encode(b"\0" + a.user.encode() + b"\0" + a.password.encode()).decode()):
        tag, resps = c.command(attempt)
        if resps[-1].status != "NO" or "PRIVACYREQUIRED" not in resps[-1].first.upper():
            fail("%s before TLS -> %r (want NO [PRIVACYREQUIRED])" % (attempt.split()[0], resps[-1].first))
    # Without an initial response: refused at once, no "+" asking for credentials.
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    r = c.read_response()
    if r.is_continuation or r.tag != tag or r.status != "NO":
        fail("AUTHENTICATE PLAIN without an initial response before TLS -> %r (want NO, no '+')" % r.first)
    c.starttls()
    caps = caps_of(c.ok("CAPABILITY"))
    if "AUTH=PLAIN" not in caps or "LOGINDISABLED" in caps or "STARTTLS" in caps:
        fail("after STARTTLS: want AUTH=PLAIN, no LOGINDISABLED, no STARTTLS: %s" % sorted(caps))
    c.login(a.user, a.password)
    c.ok("LOGOUT")


def expect_bad(c, cmd, what):
    tag, resps = c.command(cmd)
    if resps[-1].status != "BAD":
        fail("%s -> %r (want BAD)" % (what, resps[-1].first))


def cmd_starttls_misuse(a):
    c = connect(a.port)
    c.starttls()
    expect_bad(c, "STARTTLS", "a second STARTTLS")
    c.login(a.user, a.password)
    c.ok("NOOP")
    c.close()
    c = Client("127.0.0.1", a.tls_port, tls=True, verify=False, timeout=20)
    c.connect()
    expect_bad(c, "STARTTLS", "STARTTLS on the implicit-TLS listener")
    c.login(a.user, a.password)
    expect_bad(c, "STARTTLS", "STARTTLS after login")
    c.ok("NOOP")
    c.ok("LOGOUT")


def cmd_leftover_literal(a):
    hidden = b"x1 LOGOUT\r\nx2 DELETE INBOX\r\n"
    c = Client("127.0.0.1", a.port, tls=a.tls, verify=False, timeout=20)
    c.connect()
    if a.after_login:
        c.login(a.user, a.password)
    # A syntax error (a quote inside an atom) on a line that ends in a
    # LITERAL+ header: the literal belongs to the skipped line.
    c.send(b'b1 FOO"BAR {%d+}\r\n' % len(hidden) + hidden + b"\r\nb2 NOOP\r\n")
    resps = c.wait_tagged("b2")
    tags = [x.tag for x in resps]
    if "x1" in tags or "x2" in tags:
        fail("the literal after a bad line was run as commands: %r" % [x.first for x in resps])
    if not any(x.tag == "b1" and x.status == "BAD" for x in resps) or resps[-1].status != "OK":
        fail("want b1 BAD, b2 OK: %r" % [x.first for x in resps])
    # Over the literal size limit: the daemon cannot know where the literal
    # ends, so it must close; what follows is never parsed.
    c.send(b"b3 APPEND INBOX {999999999999+}\r\n" + hidden)
    try:
        rest = c.read_until_closed(timeout=15)
    except Exception as e:  # noqa: BLE001
        fail("not closed after a literal over the limit: %s" % e)
    if any(x.tag in ("x1", "x2") for x in rest):
        fail("bytes after an oversized literal were run: %r" % [x.first for x in rest])
    if not any(x.status == "BYE" for x in rest):
        fail("no BYE before closing after an oversized literal: %r" % [x.first for x in rest])


def cmd_held_session(a):
    c = Client("127.0.0.1", a.port, timeout=60)
    c.connect()
    c.login(a.user, a.password)
    c.ok("SELECT INBOX")
    open(a.ready, "w").close()
    while not os.path.exists(a.go):
        time.sleep(0.05)   # the shell's signal; it breaks the link meanwhile
    # Sent after the outage began: it waits for the link and is answered
    # once the session is back.
    c.ok("NOOP", timeout=60)
    c.ok("LOGOUT")


def cmd_xdeliver(a):
    c = Client("127.0.0.1", a.port, tls=True, cafile=a.cafile, timeout=60)
    c.connect()
    c.login(a.user, a.password)
    msg = ("From: %s@example.org\r\nTo: bob@example.org\r\nSubject: over the submission link\r\n"
           "Message-ID: <tls-checks.%d@example.org>\r\n\r\nhello\r\n" % (a.user, os.getpid())).encode()
    tag, resps = c.command('XDELIVER N ENVELOPE ((NIL NIL "bob" "example.org")) ', Literal(msg, sync=False))
    last = resps[-1]
    print("XDELIVER -> %r" % last.first, file=sys.stderr)
    if last.status != a.expect:
        fail("XDELIVER -> %r, want %s" % (last.first, a.expect))
    c.ok("LOGOUT")


class Smtp:
    """A raw SMTP client: replies as (code, [lines]); the read buffer is visible."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                fail("SMTP: connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")

    def reply(self):
        lines = []
        while True:
            ln = self.line()
            lines.append(ln[4:])
            if len(ln) < 4 or ln[3] != "-":
                return int(ln[:3]), lines

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def starttls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def smtp_keywords(lines):
    return {ln.split()[0].upper() for ln in lines[1:] if ln.split()}


def cmd_smtp_starttls_injection(a):
    s = Smtp(a.port)
    code, _ = s.reply()
    if code != 220:
        fail("SMTP greeting %d" % code)
    code, lines = s.cmd("EHLO tls-checks")
    if code != 250 or "STARTTLS" not in smtp_keywords(lines):
        fail("EHLO before TLS: %d %r (want STARTTLS)" % (code, lines))
    plain = base64.b64encode(b"\0" + a.user.encode() + b"\0" + a.password.encode()).decode()
    s.sock.sendall(("STARTTLS\r\nAUTH PLAIN %s\r\nMAIL FROM:<%s@example.org>\r\n" % (plain, a.user)).encode())
    code, lines = s.reply()
    if code != 220:
        fail("STARTTLS with commands pipelined behind it -> %d %r" % (code, lines))
    if s.buf:
        fail("answered in plaintext after STARTTLS's 220: %r" % s.buf[:80])
    s.buf = b""
    s.starttls()
    code, lines = s.cmd("EHLO tls-checks")
    if code != 250 or "STARTTLS" in smtp_keywords(lines):
        fail("EHLO over TLS: %d %r" % (code, lines))
    # The injected AUTH was not run: a transaction still needs it.
    code, lines = s.cmd("MAIL FROM:<%s@example.org>" % a.user)
    if code != 530:
        fail("MAIL over TLS without AUTH -> %d %r (want 530: the injected AUTH must not count)" % (code, lines))
    s.cmd("QUIT")


def cmd_smtp_downgrade(a):
    s = Smtp(a.port)
    s.reply()
    code, lines = s.cmd("EHLO tls-checks")
    if "AUTH" in smtp_keywords(lines):
        fail("AUTH offered before TLS: %r" % lines)
    plain = base64.b64encode(b"\0" + a.user.encode() + b"\0" + a.password.encode()).decode()
    code, lines = s.cmd("AUTH PLAIN " + plain)
    if not 500 <= code < 600:
        fail("AUTH PLAIN before TLS -> %d %r (want 5xx)" % (code, lines))
    code, lines = s.cmd("AUTH LOGIN")
    if code == 334 or not 500 <= code < 600:
        fail("AUTH LOGIN before TLS -> %d %r (want 5xx, no challenge)" % (code, lines))
    code, lines = s.cmd("STARTTLS")
    if code != 220:
        fail("STARTTLS -> %d" % code)
    s.starttls()
    code, lines = s.cmd("EHLO tls-checks")
    if "AUTH" not in smtp_keywords(lines):
        fail("no AUTH over TLS: %r" % lines)
    s.cmd("QUIT")


# subcommand: (function, positional arguments, flags)
COMMANDS = {
    "refused": (cmd_refused, ("port:int", "regex"), ()),
    "greeting": (cmd_greeting, ("port:int",), ("--want*", "--deny*")),
    "login": (cmd_login, ("port:int", "user", "password", "expect"), ("--tls!", "--cafile", "--then*")),
    "no-preauth": (cmd_no_preauth, ("port:int",), ("--tls!",)),
    "starttls-injection": (cmd_starttls_injection, ("port:int", "user", "password"), ()),
    "downgrade": (cmd_downgrade, ("port:int", "user", "password"), ()),
    "starttls-misuse": (cmd_starttls_misuse, ("port:int", "tls_port:int", "user", "password"), ()),
    "leftover-literal": (cmd_leftover_literal, ("port:int", "user", "password"), ("--tls!", "--after-login!")),
    "held-session": (cmd_held_session, ("port:int", "user", "password", "ready", "go"), ()),
    "xdeliver": (cmd_xdeliver, ("port:int", "user", "password", "expect"), ("--cafile",)),
    "smtp-starttls-injection": (cmd_smtp_starttls_injection, ("port:int", "user", "password"), ()),
    "smtp-downgrade": (cmd_smtp_downgrade, ("port:int", "user", "password"), ()),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, (fn, positional, flags) in COMMANDS.items():
        p = sub.add_parser(name)
        for arg in positional:
            arg_name, _, kind = arg.partition(":")
            p.add_argument(arg_name, type=int if kind == "int" else str)
        for flag in flags:
            if flag.endswith("!"):
                p.add_argument(flag[:-1], action="store_true")
            elif flag.endswith("*"):
                p.add_argument(flag[:-1], action="append", default=[])
            else:
                p.add_argument(flag)
        p.set_defaults(fn=fn)
    a = ap.parse_args()
    if a.cmd in ("login", "xdeliver") and a.expect not in ("OK", "NO", "BAD"):
        ap.error("EXPECT is OK, NO or BAD")
    a.fn(a)


if __name__ == "__main__":
    main()
