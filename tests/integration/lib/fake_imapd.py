#!/usr/bin/env python3
"""fake_imapd - a small scriptable IMAP server for the tests that need a
server that misbehaves in one specific way: no STARTTLS, a certificate for
the wrong name, a PREAUTH or BYE greeting, responses injected behind the
STARTTLS reply, no LITERAL+, a refused literal. Loopback only; standard
library only.

  fake_imapd.py --port P --record FILE [options]

Options (all optional):
  --greeting TEXT        the greeting line (default "* OK [CAPABILITY <caps>] hi");
                         "\\r\\n" in TEXT sends several lines
  --caps LIST            what CAPABILITY answers before TLS (default "IMAP4rev1")
  --tls-caps LIST        ... once TLS is on (default: --caps without STARTTLS)
  --tls-cert C --tls-key K          implicit TLS on every connection
  --starttls-cert C --starttls-key K  the certificate STARTTLS switches to
                         (without it, STARTTLS gets BAD)
  --starttls-reply TEXT  the tagged reply to STARTTLS after the tag
                         (default "OK Begin TLS negotiation now"); a reply
                         other than OK leaves the connection in plaintext
  --inject TEXT          bytes sent in the same write as the STARTTLS reply,
                         before the TLS handshake (the CVE-2011-0411 class on
                         the server side). "\\r\\n" is CRLF, {tag} is the
                         STARTTLS tag and {next} the tag after it (the same
                         prefix, the number plus one)
  --login-reply TEXT     the tagged reply to LOGIN and AUTHENTICATE after the
                         tag (default "OK [CAPABILITY <tls-caps>] Logged in")
  --literals MODE        "accept" (default): "+" for a synchronising literal;
                         "refuse": "NO [TOOBIG]" instead, and the next bytes
                         are read as commands, as a server must
  --commands FILE        every line taken as a command, one per line (literal
                         data not included): what a server would have run
  --ready-file FILE      created once it listens

A non-synchronising literal ("{n+}") when the current capability list has no
LITERAL+ gets BAD, and what follows is read as commands: what a strict server
without LITERAL+ does, so a client that sends one anyway has its literal run
as commands (visible in --commands).

Commands: CAPABILITY, NOOP, ID, ENABLE, LOGIN, AUTHENTICATE PLAIN (with or
without an initial response), SELECT/EXAMINE (an empty mailbox), APPEND,
IDLE/DONE, LIST, STARTTLS, COMPRESS (NO), LOGOUT; BAD to anything else.
Every byte received (after TLS: decrypted) is appended to --record, so a test
can check that a password never reached it. One thread per connection; it
runs until killed.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_base import LOCK, LineConn, serve_forever, unescape  # noqa: E402


class Conn(LineConn):
    def __init__(self, sock, args):
        super().__init__(sock, args)
        self.caps = args.caps

    def record_command(self, line):
        if self.args.commands:
            with LOCK, open(self.args.commands, "ab") as r:
                r.write(line.rstrip(b"\r\n") + b"\n")

    # --- a command, literals included ------------------------------------
    def command(self):
        """Read one command; returns (tag, words, literals) or None when
        the command was refused (its answer already sent)."""
        line = self.line()
        self.record_command(line)
        text = line.decode("latin-1").rstrip("\r\n")
        tag = text.split(" ", 1)[0]
        literals = []
        while True:
            m = re.search(r"~?\{(\d+)(\+?)\}$", text)
            if not m:
                break
            n, nonsync = int(m.group(1)), m.group(2) == "+"
            if nonsync and "LITERAL+" not in self.caps.upper().split():
                self.say("%s BAD Non-synchronising literal without LITERAL+" % tag)
                return None
            if not nonsync:
                if self.args.literals == "refuse":
                    self.say("%s NO [TOOBIG] Literal refused" % tag)
                    return None
                self.say("+ go ahead")
            literals.append(self.exact(n))
            rest = self.line()
            self.record_command(b"<literal " + str(n).encode() + b">" + rest)
            text = text + " <literal>" + rest.decode("latin-1").rstrip("\r\n")
        words = text.split(" ")
        return tag, words, literals

    # --- the session -------------------------------------------------------
    def starttls(self, tag):
        a = self.args
        if self.tls or not a.starttls_cert:
            self.say("%s BAD STARTTLS not available" % tag)
            return
        reply = "%s %s\r\n" % (tag, a.starttls_reply)
        if not a.starttls_reply.upper().startswith("OK"):
            self.sock.sendall(reply.encode("latin-1"))
            return
        inject = a.inject
        if inject:
            m = re.match(r"^(.*?)(\d+)$", tag)
            nxt = "%s%d" % (m.group(1), int(m.group(2)) + 1) if m else tag + "1"
            inject = inject.replace("{tag}", tag).replace("{next}", nxt)
        self.switch_to_tls(reply, inject, a.starttls_cert, a.starttls_key)
        self.caps = a.tls_caps

    def serve(self):
        a = self.args
        self.say(unescape(a.greeting))
        if self.tls:
            self.caps = a.tls_caps
        while True:
            got = self.command()
            if got is None:
                continue
            tag, words, literals = got
            cmd = words[1].upper() if len(words) > 1 else ""
            if cmd == "UID" and len(words) > 2:
                cmd = words[2].upper()
            if cmd == "CAPABILITY":
                self.say("* CAPABILITY " + self.caps)
                self.say("%s OK CAPABILITY completed" % tag)
            elif cmd in ("NOOP", "ENABLE", "LIST", "LSUB", "CHECK", "CLOSE", "UNSELECT", "FETCH", "SEARCH"):
                self.say("%s OK %s completed" % (tag, cmd))
            elif cmd == "ID":
                self.say("* ID NIL")
                self.say("%s OK ID completed" % tag)
            elif cmd == "STARTTLS":
                self.starttls(tag)
            elif cmd == "LOGIN":
                self.say("%s %s" % (tag, a.login_reply or "OK [CAPABILITY %s] Logged in" % a.tls_caps))
            elif cmd == "AUTHENTICATE":
                if len(words) < 4:
                    self.say("+ ")
                    response = self.line()
                    self.record_command(b"<sasl>" + response)
                self.say("%s %s" % (tag, a.login_reply or "OK [CAPABILITY %s] Logged in" % a.tls_caps))
            elif cmd in ("SELECT", "EXAMINE"):
                self.say("* FLAGS (\\Seen)")
                self.say("* 0 EXISTS")
                self.say("* OK [UIDVALIDITY 1] ok")
                self.say("* OK [UIDNEXT 1] ok")
                self.say("%s OK [READ-WRITE] done" % tag)
            elif cmd == "APPEND":
                self.say("%s OK [APPENDUID 1 1] APPEND completed" % tag)
            elif cmd == "IDLE":
                self.say("+ idling")
                done = self.line()
                self.record_command(done)
                self.say("%s OK IDLE done" % tag)
            elif cmd == "COMPRESS":
                self.say("%s NO COMPRESS not here" % tag)
            elif cmd == "LOGOUT":
                self.say("* BYE fake logging out")
                self.say("%s OK LOGOUT completed" % tag)
                return
            else:
                self.say("%s BAD fake_imapd does not do that" % tag)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--commands")
    ap.add_argument("--greeting")
    ap.add_argument("--caps", default="IMAP4rev1")
    ap.add_argument("--tls-caps")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--starttls-cert")
    ap.add_argument("--starttls-key")
    ap.add_argument("--starttls-reply", default="OK Begin TLS negotiation now")
    ap.add_argument("--inject")
    ap.add_argument("--login-reply")
    ap.add_argument("--literals", choices=("accept", "refuse"), default="accept")
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    if args.greeting is None:
        args.greeting = "* OK [CAPABILITY %s] hi" % args.caps
    if args.tls_caps is None:
        args.tls_caps = " ".join(c for c in args.caps.split() if c.upper() != "STARTTLS")

    serve_forever(args, Conn, "fake_imapd", (args.commands,))


if __name__ == "__main__":
    main()
