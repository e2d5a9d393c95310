#!/usr/bin/env python3
"""fake_imapd - a tiny scripted IMAP server for the tests that need a server
that misbehaves in one specific way (no STARTTLS, a certificate for the wrong
name, ...). Loopback only; standard library only.

  fake_imapd.py --port P --record FILE [--greeting TEXT]
                [--tls-cert CERT --tls-key KEY] [--ready-file FILE]

It greets with --greeting (default "* OK [CAPABILITY IMAP4rev1] hi"), then
answers CAPABILITY, NOOP, LOGIN (always OK), SELECT/EXAMINE (empty mailbox),
LOGOUT, and BAD to anything else (STARTTLS and COMPRESS included, since it
offers neither). With --tls-cert it speaks implicit TLS.
Each connection is served by its own thread. Every byte received
from every connection is appended to --record (so a test can check that a
password never reached it). --ready-file is created once it listens.
It runs until killed.
"""

import argparse
import os
import socket
import ssl
import sys
import threading


def serve_one(conn, args, record):
    conn.settimeout(30)
    f = conn.makefile("rwb", buffering=0)

    def say(line):
        f.write(line.encode() + b"\r\n")

    say(args.greeting)
    while True:
        try:
            line = f.readline(65536)
        except (OSError, ssl.SSLError):
            return
        if not line:
            return
        with open(record, "ab") as r:
            r.write(line)
        words = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        tag = words[0] if words else "*"
        cmd = words[1].upper() if len(words) > 1 else ""
        if cmd == "CAPABILITY":
            say("* CAPABILITY IMAP4rev1")
            say("%s OK CAPABILITY completed" % tag)
        elif cmd == "NOOP":
            say("%s OK NOOP completed" % tag)
        elif cmd == "LOGIN":
            say("%s OK [CAPABILITY IMAP4rev1] LOGIN completed" % tag)
        elif cmd in ("SELECT", "EXAMINE"):
            say("* FLAGS (\\Seen)")
            say("* 0 EXISTS")
            say("* OK [UIDVALIDITY 1] ok")
            say("%s OK [READ-WRITE] done" % tag)
        elif cmd == "LOGOUT":
            say("* BYE fake logging out")
            say("%s OK LOGOUT completed" % tag)
            return
        else:
            say("%s BAD fake_imapd does not do that" % tag)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--greeting", default="* OK [CAPABILITY IMAP4rev1] hi")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--ready-file")
    args = ap.parse_args()

    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", args.port))
    s.listen(16)
    open(args.record, "ab").close()
    if args.ready_file:
        open(args.ready_file, "w").close()
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn, ctx, args), daemon=True).start()


def handle(conn, ctx, args):
    try:
        if ctx is not None:
            conn.settimeout(10)
            conn = ctx.wrap_socket(conn, server_side=True)
        serve_one(conn, args, args.record)
    except (OSError, ssl.SSLError) as e:
        # A client that rejects our certificate lands here: expected.
        print("fake_imapd: connection ended: %s" % e, file=sys.stderr, flush=True)
    finally:
        try:
            conn.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
