#!/bin/bash
# t_bad_input.sh - pimap-proxy's limits and its answers to hostile input.
#
# With limits.max_line_length=4096 and limits.max_literal_size=65536:
#  - a line just under the limit works (positive control);
#  - an over-long line (10000 bytes, no CRLF), before and after login:
#    "* BYE" mentioning the line, then the connection closes;
#  - a sync literal over the limit (APPEND {100000}): tagged NO/BAD
#    mentioning the size, no "+" and the connection still works (NOOP);
#  - a LITERAL+ literal over the limit ({100000+}): "* BYE", closed;
#  - literals that each fit but add up past limits.max_command_size: tagged
#    BAD, and the connection goes on;
#  - NUL bytes, random bytes (with and without a valid tag) and 300 nested
#    parentheses, before and after login: BAD answers and the connection
#    continues, or a BYE and a close; never silence (bounded reads);
#  - a LOGIN with literals and pipelined commands sent one byte at a time work;
#  - clients vanishing mid-literal, mid-response and mid-line do no harm;
#  - 1000 pipelined FETCHes (replies far beyond the output queue, so the
#    proxy's backpressure is exercised) are all answered, in order;
#  - upstream down (a closed port): "* BYE" with a reason naming the upstream.
# Throughout, a second client logged in in parallel keeps working, and the
# proxy is alive at the end.
#
# By hand: tests/integration/t_bad_input.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

start_store_for_proxy
deliver alice "bad input: a message to fetch"

P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--set limits.max_line_length=4096 --set limits.max_literal_size=65536 \
	--set limits.max_command_size=131072

CLOSED_PORT=$(free_port) # nothing listens there
P2=$(free_port)
PROXY_LOG=$T/proxy-down.log
start_proxy --listen "127.0.0.1:$P2" --listen-tls none \
	--upstream "imaps://127.0.0.1:$CLOSED_PORT" --ca-file "$CA" \
	--set upstream.connect_timeout=5s
DOWN_PID=$PROXY_PID
PROXY_LOG=$T/proxy.log

export P P2 DOVECOT_PASS
python3 - <<'PYEOF' || fail "see the messages above"
import os, random, re, socket, sys, threading, time
from imapc import Client, Closed, Timeout, Literal

P, P2 = int(os.environ["P"]), int(os.environ["P2"])
PASS = os.environ["DOVECOT_PASS"]
step = ""
def check(cond, what):
    if not cond:
        print("FAIL (%s): %s" % (step, what), file=sys.stderr)
        sys.exit(1)
    print("ok   (%s): %s" % (step, what), file=sys.stderr)

def client(login=True):
    c = Client("127.0.0.1", P, timeout=10)
    g = c.connect()
    check(g.status == "OK", "greeting %r" % g.first)
    if login:
        c.login("alice", PASS)
    return c

def bystander_ok():
    """The parallel client still gets answers."""
    resps = witness.ok("NOOP")
    resps = witness.ok("FETCH 1 (FLAGS RFC822.SIZE)")
    check(resps[0].first.startswith("* 1 FETCH"), "the parallel client still works")

def expect_bye_and_close(c, rx, what):
    """Read until EOF: there must be a * BYE matching rx, nothing may hang."""
    try:
        resps = c.read_until_closed(timeout=10)
    except Timeout:
        check(False, "%s: the connection stayed open (no BYE, no close)" % what)
    byes = [r.first for r in resps if r.status == "BYE" and r.tag == "*"]
    check(byes and re.search(rx, byes[0], re.I),
          "%s: %r (want * BYE matching /%s/), then closed" % (what, [r.first for r in resps], rx))

witness = client()
witness.ok("SELECT INBOX")

# --- positive control: a long line under the limit ------------------------------
step = "near-limit line"
c = client()
c.ok("SELECT INBOX")
word = "x" * 3900
tag, resps = c.command('SEARCH SUBJECT "%s"' % word)
check(resps[-1].status == "OK", "a %d-byte command works: %r" % (len(word) + 30, resps[-1].first[:60]))
c.ok("LOGOUT")
c.close()

# --- over-long lines --------------------------------------------------------------
for login in (False, True):
    step = "long line, %s login" % ("after" if login else "before")
    c = client(login)
    c.send(b"a1 NOOP " + b"y" * 10000)          # no CRLF
    expect_bye_and_close(c, r"line|long|length", "10000 bytes without CRLF")
    c.close()
    bystander_ok()

# --- literal over the limit ---------------------------------------------------------
step = "sync literal too big"
c = client()
tag = c.next_tag()
c.send(tag + " APPEND INBOX {100000}\r\n")
r = c.read_response()
check(r.tag == tag and r.status in ("NO", "BAD"),
      "APPEND {100000} -> %r (want %s NO/BAD, and no '+')" % (r.first, tag))
check(re.search(r"size|large|big|literal|limit|65536", r.first, re.I),
      "the refusal mentions the size: %r" % r.first)
resps = c.ok("NOOP")
check(True, "the connection still works after the refusal")
c.ok("LOGOUT")
c.close()
bystander_ok()

step = "LITERAL+ literal too big"
c = client()
c.send(b"a2 APPEND INBOX {100000+}\r\n")
expect_bye_and_close(c, r"size|large|big|literal|limit|65536", "APPEND {100000+}")
c.close()
bystander_ok()

# literals that each fit, adding up past limits.max_command_size (a MULTIAPPEND)
step = "command too big"
c = client()
tag = c.next_tag()
c.send(tag + " APPEND INBOX {60000}\r\n")
r = c.read_response()
check(r.first.startswith("+"), "first literal accepted with '+': %r" % r.first)
c.send(b"m" * 60000 + b" {60000}\r\n")
r = c.read_response()
check(r.first.startswith("+"), "second literal accepted with '+': %r" % r.first)
c.send(b"m" * 60000 + b" {60000}\r\n")
r = c.read_response()
check(r.tag == tag and r.status in ("NO", "BAD") and re.search(r"large|131072", r.first),
      "third literal past 128 KiB in one command -> %r (want %s BAD/NO naming the size)" % (r.first, tag))
c.ok("NOOP")
check(True, "the connection still works after the refusal")
c.ok("LOGOUT")
c.close()
bystander_ok()

# a literal just under the limit is fine
step = "literal under the limit"
c = client()
msg = (b"Subject: big but allowed\r\n\r\n" + b"z" * 998 + b"\r\n") * 60
check(len(msg) < 65536, "message of %d bytes" % len(msg))
tag, resps = c.command("APPEND INBOX ", Literal(msg, sync=True))
check(resps[-1].status == "OK", "APPEND of %d bytes: %r" % (len(msg), resps[-1].first))
tag, resps = c.command("APPEND INBOX ", Literal(msg, sync=False))
check(resps[-1].status == "OK", "APPEND of %d bytes as LITERAL+: %r" % (len(msg), resps[-1].first))
c.ok("LOGOUT")
c.close()

# --- garbage ------------------------------------------------------------------------
def garbage_session(login, payload, what):
    """Send garbage then a NOOP with a known tag. The proxy must answer the
    garbage (BAD/NO) and then the NOOP, or say BYE and close; it must never
    go silent (every read is bounded)."""
    c = client(login)
    c.send(payload + b"zz99 NOOP\r\n")
    got = []
    closed = False
    try:
        while not (got and got[-1].tag == "zz99"):
            got.append(c.read_response(timeout=10))
    except Timeout:
        check(False, "%s: silence after %r" % (what, [r.first[:70] for r in got]))
    except Closed:
        closed = True
    firsts = [r.first for r in got]
    print("     %s -> %r%s" % (what, [f[:70] for f in firsts][:8], " + closed" if closed else ""),
          file=sys.stderr)
    garbage_answers = [r for r in got if r.tag != "zz99"]
    check(garbage_answers, "%s: the garbage was answered" % what)
    check(all(r.status in ("BAD", "NO", "BYE") for r in garbage_answers),
          "%s: only BAD/NO/BYE answers to garbage" % what)
    if closed:
        check(any(r.status == "BYE" for r in got), "%s: closed, after a BYE" % what)
    else:
        check(got[-1].status == "OK", "%s: the connection continues (NOOP -> %r)" % (what, got[-1].first))
    c.close()
    bystander_ok()

rnd = random.Random(4242)
def random_lines(n):
    out = b""
    for _ in range(n):
        line = bytes(rnd.randrange(256) for _ in range(rnd.randrange(5, 120)))
        # no "{" (a literal announcement would legitimately wait for data) and
        # no line breaks inside: every line gets exactly one CRLF
        line = line.replace(b"{", b"(").replace(b"\r", b".").replace(b"\n", b".")
        out += line + b"\r\n"
    return out

def tagged_random_lines(n):
    # a valid tag, then random bytes: gets past the tag to the command parser
    return b"".join(b"g%d " % i + line + b"\r\n" for i, line in enumerate(random_lines(n).split(b"\r\n")[:n]))

for login in (False, True):
    when = "after" if login else "before"
    step = "NUL bytes, %s login" % when
    garbage_session(login, b"\x00\x00\x00 NOOP\x00\r\n", "NUL bytes")
    step = "random bytes, %s login" % when
    garbage_session(login, random_lines(20), "20 random lines")
    step = "tagged random bytes, %s login" % when
    garbage_session(login, tagged_random_lines(20), "20 tagged random lines")
    step = "deep nesting, %s login" % when
    garbage_session(login, b"n1 STATUS INBOX " + b"(" * 300 + b"MESSAGES" + b")" * 300 + b"\r\n",
                    "300 nested parentheses")

# --- fragmented input -----------------------------------------------------------------
step = "1-byte segments"
c = client(login=False)
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def dribble(data):
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(0.0005)      # pacing, so that the proxy reads partial input
dribble(b"f1 LOGIN {5+}\r\nalice {%d+}\r\n%s\r\n" % (len(PASS), PASS.encode()))
r = c.wait_tagged("f1")[-1]
check(r.status == "OK", "LOGIN with LITERAL+ sent one byte at a time -> %r" % r.first)
dribble(b"f2 SELECT INBOX\r\nf3 FETCH 1 (FLAGS)\r\n")
resps = c.wait_all_tagged(["f2", "f3"])
check([r.status for r in resps if r.tag in ("f2", "f3")] == ["OK", "OK"], "two pipelined commands, byte by byte")
c.ok("LOGOUT")
c.close()
bystander_ok()

# --- clients that vanish -----------------------------------------------------------------
step = "vanishing clients"
c = client()
c.send(b"v1 APPEND INBOX {5000+}\r\n" + b"x" * 100)   # then gone, mid-literal
c.close()
c = client()
c.ok("SELECT INBOX")
c.send(b"v2 FETCH 1:* (BODY.PEEK[])\r\n")                 # gone without reading the answer
c.close()
c = client(login=False)
c.send(b"v3 LOGIN alice")                                  # gone mid-line
c.close()
bystander_ok()
check(True, "the proxy survives clients closing mid-literal, mid-response and mid-line")

# --- flood: many pipelined commands, reply volume beyond the output queue ---------------
step = "flood"
c = client()
c.ok("SELECT INBOX")
N = 1000
# every 10th command fetches every message in full (about 120 KB with the two
# 60 KB messages appended above): some 12 MB of replies in total
payload = b"".join((b"w%d FETCH 1:* (BODY.PEEK[])\r\n" if i % 10 == 0 else
                    b"w%d FETCH 1 (FLAGS BODY.PEEK[HEADER])\r\n") % i for i in range(N))
err = []
def writer():
    try:
        c.sock.sendall(payload)
    except OSError as e:
        err.append(e)
th = threading.Thread(target=writer, daemon=True)
th.start()
tags_seen = []
bodies = []
t0 = time.monotonic()
try:
    while len(tags_seen) < N:
        r = c.read_response(timeout=20)
        if r.tag.startswith("w"):
            tags_seen.append(r)
        elif r.literals:
            bodies.append(sum(map(len, r.literals)))
except (Timeout, Closed) as e:
    check(False, "flood: %d of %d replies, then %s" % (len(tags_seen), N, e))
th.join(20)
check(not err, "the client could write all %d commands (%s)" % (N, err))
check([r.tag for r in tags_seen] == ["w%d" % i for i in range(N)] and all(r.status == "OK" for r in tags_seen),
      "%d pipelined FETCHes answered OK, in order, none lost (%.2f s)" % (N, time.monotonic() - t0))
total = sum(bodies)
per_round = sum(bodies[:len(bodies) // (N // 10)]) if bodies else 0
check(total > 4 * 1024 * 1024 and total == per_round * (N // 10),
      "%d bytes of literals, the same in every round (%d per round)" % (total, per_round))
c.ok("LOGOUT")
c.close()
bystander_ok()

# --- upstream down --------------------------------------------------------------------
step = "upstream down"
t0 = time.monotonic()
c = Client("127.0.0.1", P2, timeout=15)
g = c.connect()
check(g.status == "BYE" and re.search(r"upstream|server|connect|refused|unavailable", g.first, re.I),
      "greeting %r after %.2f s (want * BYE naming the upstream)" % (g.first, time.monotonic() - t0))
try:
    c.read_until_closed(timeout=10)
except Timeout:
    check(False, "connection closed after the BYE")
c.close()
bystander_ok()
witness.ok("LOGOUT")
PYEOF

proxy_alive || fail "the proxy died"
running "$DOWN_PID" || fail "the proxy with the upstream down died"
pass
