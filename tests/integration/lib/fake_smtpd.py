#!/usr/bin/env python3
"""fake_smtpd - a small scriptable SMTP submission server for the tests that
need one that misbehaves in one specific way (no STARTTLS, a refused
STARTTLS, replies injected behind "220 Ready to start TLS", a certificate
that does not verify, an odd greeting). Loopback only; standard library
only.

  fake_smtpd.py --port P --record FILE [options]

Options:
  --greeting TEXT       the greeting reply (default "220 fake.test ESMTP")
  --ehlo LIST           EHLO keywords before TLS, space-separated
                        (default "PIPELINING AUTH=PLAIN STARTTLS"; "AUTH=PLAIN"
                        is written "AUTH PLAIN")
  --tls-ehlo LIST       ... once TLS is on (default: --ehlo without STARTTLS)
  --tls-cert C --tls-key K            implicit TLS (smtps://)
  --starttls-cert C --starttls-key K  the certificate STARTTLS switches to
  --starttls-reply TEXT the reply to STARTTLS (default "220 2.0.0 Ready to
                        start TLS"); anything but 220 stays in plaintext
  --inject TEXT         bytes sent in the same write as the STARTTLS reply,
                        before the handshake ("\\r\\n" is CRLF)
  --ready-file FILE     created once it listens

Everything received (after TLS: decrypted) is appended to --record. AUTH
PLAIN/LOGIN are accepted (235), MAIL/RCPT get 250, DATA 354 then 250 after
the final dot, RSET/NOOP 250, QUIT 221; anything else 502.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_base import LineConn, serve_forever  # noqa: E402


class Conn(LineConn):
    def text_line(self):
        return self.line().rstrip(b"\r\n").decode("latin-1")

    def ehlo(self, name):
        words = (self.args.tls_ehlo if self.tls else self.args.ehlo).split()
        lines = ["fake.test greets %s" % name] + [w.replace("AUTH=", "AUTH ") for w in words]
        for i, l in enumerate(lines):
            self.say("250%s%s" % ("-" if i < len(lines) - 1 else " ", l))

    def starttls(self):
        a = self.args
        if self.tls or not a.starttls_cert:
            self.say("502 5.5.1 no STARTTLS here")
            return
        reply = a.starttls_reply + "\r\n"
        if not a.starttls_reply.startswith("220"):
            self.sock.sendall(reply.encode("latin-1"))
            return
        self.switch_to_tls(reply, a.inject, a.starttls_cert, a.starttls_key)

    def serve(self):
        self.say(self.args.greeting)
        if not self.args.greeting.startswith("220"):
            return
        while True:
            line = self.text_line()
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.ehlo(line[5:])
            elif verb == "STARTTLS":
                self.starttls()
            elif verb == "AUTH":
                if line.upper().startswith("AUTH LOGIN"):
                    self.say("334 VXNlcm5hbWU6")
                    self.text_line()
                    self.say("334 UGFzc3dvcmQ6")
                    self.text_line()
                elif len(line.split()) < 3:
                    self.say("334 ")
                    self.text_line()
                self.say("235 2.7.0 Authentication successful")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.say("250 2.0.0 Ok")
            elif verb == "DATA":
                self.say("354 End data with <CR><LF>.<CR><LF>")
                while self.text_line() != ".":
                    pass
                self.say("250 2.0.0 Ok: queued as FAKE1")
            elif verb == "QUIT":
                self.say("221 2.0.0 Bye")
                return
            else:
                self.say("502 5.5.2 fake_smtpd does not do that")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--greeting", default="220 fake.test ESMTP")
    ap.add_argument("--ehlo", default="PIPELINING AUTH=PLAIN STARTTLS")
    ap.add_argument("--tls-ehlo")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--starttls-cert")
    ap.add_argument("--starttls-key")
    ap.add_argument("--starttls-reply", default="220 2.0.0 Ready to start TLS")
    ap.add_argument("--inject")
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    if args.tls_ehlo is None:
        args.tls_ehlo = " ".join(w for w in args.ehlo.split() if w.upper() != "STARTTLS")
    serve_forever(args, Conn, "fake_smtpd")

if __name__ == "__main__":
    main()
