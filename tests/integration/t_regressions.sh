#!/usr/bin/env bash
# t_regressions.sh - defects found in review, each pinned by a test:
#  - a FETCH larger than limits.max_output_queue completes (the upstream's
#    tagged reply was left unread once the client queue drained at once);
#  - reused tags: "a NOOP" then "a LOGIN <wrong password>" is a failed login
#    (the NOOP's OK must not count as the LOGIN's), and a real LOGIN works after;
#  - an empty synchronising literal {0} gets "+" like any other;
#  - a tag longer than 64 bytes gets "* BAD" and the connection goes on
#    (servers may answer such tags untagged, leaving a blocking command hung);
#  - STARTTLS while a command is in flight is refused (replies would cross
#    the TLS switch);
#  - before login, a literal over 8 KiB is refused (no stranger makes the
#    proxy buffer max_command_size);
#  - listen.plaintext_login=never: LOGINDISABLED and NO [PRIVACYREQUIRED]
#    until STARTTLS, then logins work.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
start_store_for_proxy
python3 - >"$T/big.eml" <<'PY'
import sys
sys.stdout.write("From: a@example.org\r\nTo: alice@example.org\r\nSubject: big\r\n\r\n")
for i in range(1500):
    sys.stdout.write("%05d %s\r\n" % (i, "y" * 70))
PY
deliver_file alice "$T/big.eml"
deliver_file alice "$T/big.eml"
P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --set limits.max_output_queue=16K
export P DOVECOT_PASS
python3 - <<'PY' || fail "see above"
import os, socket, sys

P = int(os.environ["P"])
PASS = os.environ["DOVECOT_PASS"].encode()

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, file=sys.stderr)
    if not cond:
        sys.exit(1)

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", P))
        self.s.settimeout(10)
        self.buf = b""
        self.line()  # greeting
    def send(self, data):
        self.s.sendall(data)
    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise SystemExit("connection closed")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def until(self, tag):
        """Lines up to and including the tagged reply (literals are skipped as lines)."""
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines
            if l.endswith(b"}") and b"{" in l:
                n = int(l[l.rindex(b"{") + 1:-1].rstrip(b"+"))
                while len(self.buf) < n:
                    d = self.s.recv(1 << 20)
                    if not d:
                        raise SystemExit("closed in a literal")
                    self.buf += d
                self.buf = self.buf[n:]

# 1. big FETCH through a 16K output queue, repeatedly
c = Conn()
c.send(b"a LOGIN alice " + PASS + b"\r\n"); c.until(b"a")
c.send(b"b SELECT INBOX\r\n"); c.until(b"b")
for n in range(20):
    t = b"f%d" % n
    c.send(t + b" FETCH 1:2 BODY[]\r\n")
    try:
        r = c.until(t)
    except socket.timeout:
        check(False, "FETCH #%d of two 117 KB bodies got no tagged reply within 10 s" % n)
    check(r[-1].startswith(t + b" OK"), "FETCH #%d through a 16K queue: %r" % (n, r[-1][:40])) if n in (0, 19) else None
c.send(b"z LOGOUT\r\n"); c.until(b"z")

# 2. reused tag: NOOP then a failing LOGIN
c = Conn()
c.send(b"a NOOP\r\na LOGIN alice wrong-password\r\n")
r1 = c.until(b"a"); r2 = c.until(b"a")
check(r1[-1].startswith(b"a OK") and r2[-1].startswith(b"a NO"), "NOOP OK then LOGIN NO: %r %r" % (r1[-1][:30], r2[-1][:40]))
c.send(b"c CAPABILITY\r\n")
caps = b" ".join(c.until(b"c"))
check(b"COMPRESS=DEFLATE" not in caps and b"STARTTLS" in caps, "still not logged in: no COMPRESS, STARTTLS offered")
c.send(b"d COMPRESS DEFLATE\r\n")
check(c.until(b"d")[-1].startswith(b"d BAD"), "COMPRESS before login is refused")
# 3. {0} synchronising literal gets "+", and the login works
c.send(b"e LOGIN alice {%d}\r\n" % len(PASS))
check(c.line().startswith(b"+"), "'+' for the password literal")
c.send(PASS + b"\r\n")
check(c.until(b"e")[-1].startswith(b"e OK"), "the real LOGIN after the failed one works")
c.send(b"f SELECT INBOX\r\n"); c.until(b"f")
c.send(b"g SEARCH SUBJECT {0}\r\n")
check(c.line().startswith(b"+"), "'+' for an empty synchronising literal {0}")
c.send(b"\r\n")
r = c.until(b"g")
check(r[-1].startswith(b"g OK"), "SEARCH SUBJECT with an empty literal completes: %r" % r[-1][:40])
# 4. tag longer than 64 bytes
long_tag = b"t" * 100
c.send(long_tag + b" NOOP\r\nh NOOP\r\n")
l = c.line()
check(l.startswith(b"* BAD") and b"Tag too long" in l, "100-byte tag -> %r" % l[:60])
check(c.until(b"h")[-1].startswith(b"h OK"), "the connection goes on after the long tag")
c.send(b"z LOGOUT\r\n"); c.until(b"z")

# 5. STARTTLS with a command in flight, and 6. a big literal before login
c = Conn()
c.send(b"a NOOP\r\nb STARTTLS\r\n")
tagged = []
while len(tagged) < 2:  # the proxy's refusal may come before the NOOP's OK
    l = c.line()
    if l[:2] in (b"a ", b"b "):
        tagged.append(l)
check(any(l.startswith(b"b BAD") for l in tagged), "STARTTLS behind a NOOP in flight is refused: %r" % tagged)
c.send(b"d LOGIN alice {100000}\r\n")
l = c.line()
check(l.startswith(b"d BAD") and b"8192" in l, "100 KB literal before login -> %r" % l[:70])
c.send(b"e NOOP\r\n")
check(c.until(b"e")[-1].startswith(b"e OK"), "the connection goes on")
PY
proxy_alive || fail "the proxy died"

# listen.plaintext_login=never: no login before STARTTLS, even on loopback
P2=$(free_port)
PROXY_LOG=$T/proxy-never.log start_proxy --listen "127.0.0.1:$P2" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --set listen.plaintext_login=never
export P2
python3 - <<'PY' || fail "see above"
import os, socket, ssl, sys
P2 = int(os.environ["P2"]); PASS = os.environ["DOVECOT_PASS"].encode()
def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, file=sys.stderr)
    if not cond:
        sys.exit(1)
s = socket.create_connection(("127.0.0.1", P2)); s.settimeout(10)
f = s.makefile("rb")
greeting = f.readline()
check(b"LOGINDISABLED" in greeting and b"AUTH=" not in greeting and b"STARTTLS" in greeting,
      "greeting advertises LOGINDISABLED, no AUTH=: %r" % greeting[:120])
s.sendall(b"a LOGIN alice " + PASS + b"\r\n")
l = f.readline()
check(l.startswith(b"a NO [PRIVACYREQUIRED]"), "cleartext LOGIN refused: %r" % l)
s.sendall(b"b STARTTLS\r\n")
check(f.readline().startswith(b"b OK"), "STARTTLS accepted")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="localhost"); t.settimeout(10)
g = t.makefile("rb")
t.sendall(b"c CAPABILITY\r\n")
caps = g.readline(); g.readline()
check(b"LOGINDISABLED" not in caps and b"AUTH=PLAIN" in caps, "after STARTTLS: AUTH=PLAIN, no LOGINDISABLED: %r" % caps[:100])
t.sendall(b"d LOGIN alice " + PASS + b"\r\n")
while True:
    l = g.readline()
    if l.startswith(b"d "):
        break
check(l.startswith(b"d OK"), "LOGIN over TLS works: %r" % l[:40])
PY
pass
