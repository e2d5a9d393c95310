#!/usr/bin/env python3
"""smtp2lmtp - the relay host behind the tests' Dovecot submission service:
an SMTP server that hands each transaction to Dovecot's LMTP, command by
command, so that a recipient Dovecot does not know is refused at RCPT time
with LMTP's own reply (550 5.1.1), and an accepted message lands in the
recipient's Maildir.

    smtp2lmtp.py LISTEN_PORT LMTP_PORT CONTROL_DIR

Dovecot's submission service cannot relay to LMTP itself (LMTP answers
EHLO with 500), so it relays here. This script only translates: EHLO
becomes LHLO, MAIL FROM loses the AUTH= parameter Dovecot submission adds
(and SIZE=, which LMTP does not take),
and LMTP's one reply per recipient after DATA becomes one SMTP reply (the
first failure, else the first success). It offers no PIPELINING.

Faults, switched by files in CONTROL_DIR (checked at each transaction):
    tempfail   MAIL FROM is answered "451 4.3.0 <file content>"
    permfail   MAIL FROM is answered "554 5.7.1 <file content>"
    hang       the message is taken but the final dot is never answered
               (the connection stays open until the client gives up)
Every message handed to LMTP is logged to CONTROL_DIR/delivered.log as
"<Message-ID> <recipient count>". Everything stays on 127.0.0.1.
"""

import os
import re
import socket
import socketserver
import sys
import threading

listen_port, lmtp_port, ctl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(ctl, exist_ok=True)
log_lock = threading.Lock()


def fault(name):
    p = os.path.join(ctl, name)
    if os.path.exists(p):
        with open(p) as f:
            return f.read().strip() or name
    return None


class Lmtp:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", lmtp_port), timeout=30)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd("LHLO relay.test")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise OSError("LMTP closed")
            lines.append(line.rstrip(b"\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.s.close()


class Handler(socketserver.StreamRequestHandler):
    def out(self, lines):
        if isinstance(lines, (bytes, str)):
            lines = [lines]
        data = b""
        for i, l in enumerate(lines):
            if isinstance(l, str):
                l = l.encode()
            code, text = l[:3], l[4:]
            sep = b" " if i == len(lines) - 1 else b"-"
            data += code + sep + text + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self):
        lmtp = None
        rcpts = 0
        self.out("220 relay.test ESMTP smtp2lmtp")
        try:
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.out(["250 relay.test", "250 8BITMIME", "250 ENHANCEDSTATUSCODES", "250 SIZE 100000000"])
                elif verb == "MAIL":
                    f = fault("tempfail")
                    if f:
                        self.out("451 4.3.0 " + f)
                        continue
                    f = fault("permfail")
                    if f:
                        self.out("554 5.7.1 " + f)
                        continue
                    if lmtp:
                        lmtp.close()
                    lmtp = Lmtp()
                    rcpts = 0
                    # LMTP takes no AUTH= (Dovecot submission adds it) and no SIZE=.
                    mail = re.sub(r"\s+(AUTH|SIZE)=\S+", "", cmd, flags=re.I)
                    self.out(lmtp.cmd(mail))
                elif verb == "RCPT":
                    if not lmtp:
                        self.out("503 5.5.1 MAIL first")
                        continue
                    r = lmtp.cmd(cmd)
                    if r[-1].startswith(b"2"):
                        rcpts += 1
                    self.out(r)
                elif verb == "DATA":
                    if not lmtp or not rcpts:
                        self.out("554 5.5.1 No valid recipients")
                        continue
                    r = lmtp.cmd("DATA")
                    if not r[-1].startswith(b"354"):
                        self.out(r)
                        continue
                    self.out("354 go ahead")
                    data = b""
                    while True:
                        l = self.rfile.readline()
                        if not l:
                            raise OSError("client closed during DATA")
                        data += l
                        if l == b".\r\n":
                            break
                    if fault("hang"):
                        lmtp.close()
                        lmtp = None
                        self.rfile.read()  # until the client closes
                        break
                    lmtp.s.sendall(data)
                    replies = [lmtp.reply() for _ in range(rcpts)]
                    m = re.search(rb"^Message-ID:\s*(\S+)", data, re.I | re.M)
                    ok = [r for r in replies if r[-1].startswith(b"2")]
                    if ok:
                        with log_lock, open(os.path.join(ctl, "delivered.log"), "a") as f:
                            f.write("%s %d\n" % (m.group(1).decode() if m else "-", len(ok)))
                    bad = [r for r in replies if not r[-1].startswith(b"2")]
                    self.out(bad[0] if bad else replies[0])
                    lmtp.close()
                    lmtp = None
                elif verb == "RSET":
                    if lmtp:
                        lmtp.close()
                        lmtp = None
                    self.out("250 2.0.0 OK")
                elif verb == "NOOP":
                    self.out("250 2.0.0 OK")
                elif verb == "QUIT":
                    self.out("221 2.0.0 Bye")
                    break
                else:
                    self.out("502 5.5.2 Command not implemented")
        except OSError:
            pass
        finally:
            if lmtp:
                lmtp.close()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", listen_port), Handler).serve_forever()
