#!/bin/bash
# t_gw_bad_input.sh - pimap-gateway's answers to bad input and its limits
# (docs/PROTOCOL.md section 2, "Limits").
#
# With limits.max_line_length=4096, limits.max_literal_size=65536 and
# limits.max_commands_in_flight=8, in every state - not authenticated,
# authenticated (P-IMAP and plain), selected, IDLE, inside AUTHENTICATE and
# inside an XZIP:
#  - random garbage lines, NUL bytes, unknown commands, commands with missing
#    arguments, 300 nested parentheses: one BAD per line (tagged, or
#    untagged when there is no tag; NO accepted for random garbage), never a
#    BYE, and a following NOOP works; a line just under the limit works
#    (positive control). Each case is reported, then the step fails if any did;
#  - an over-long line (10,000 bytes, with and without a tag, also in IDLE,
#    inside AUTHENTICATE and inside XZIP): "* BYE [TOOBIG] Line too long",
#    then the connection closes (PROTOCOL.md section 2: the gateway refuses
#    the first byte over the limit and cannot know where the next command
#    starts), and a new connection works;
#  - in IDLE, a line that is not DONE (random, a command, DONE with junk):
#    a BAD, no BYE, and the connection goes on (after DONE if IDLE is still
#    running);
#  - inside AUTHENTICATE: "*" gets BAD; junk, bad base64, a PLAIN response
#    without NULs get BAD/NO, no BYE; still not logged in, and a LOGIN
#    afterwards works;
#  - inside XZIP: XZIP without arguments and without an inner command get
#    the outer tag's BAD; a bad inner command gets the outer BAD or an
#    "* XZIP" payload ending in the inner tag's BAD;
#  - a LITERAL+ literal over limits.max_literal_size: "* BYE", then closed;
#    a synchronising one: refused without "+" (tagged NO/BAD, the connection
#    goes on) or "* BYE" and closed;
#  - 100 pipelined commands (more than max_commands_in_flight): every one is
#    answered (OK or BAD), none lost, the connection goes on;
#  - clients vanishing mid-literal (LOGIN, APPEND, inside XZIP), mid-line and
#    with a big response unread;
#  - backpressure: 50 pipelined FETCHes of a 10 MB mailbox (500 MB of
#    output) by a client that never reads: the gateway stops reading from
#    the store (its store socket's receive queue fills) and its VmRSS stays
#    within 150 MB of what it was before, and does not grow while stalled;
# Throughout, a second client (P-IMAP, in INBOX) keeps working and the
# gateway stays alive; any sanitizer report fails the test.
#
# By hand: tests/integration/t_gw_bad_input.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"

gen_certs
start_dovecot
deliver alice "bad input: first"
deliver alice "bad input: second"
log "filling carol's mailbox: 40 messages of about 256 KB"
DOVECOT_LMTP=$DOVECOT_LMTP python3 - <<'PYEOF' || hard_error "could not fill carol's mailbox"
import os, random, base64
from imapc import deliver, make_message
rnd = random.Random(7)
lmtp = "127.0.0.1:" + os.environ["DOVECOT_LMTP"]
for i in range(40):
    blob = base64.encodebytes(rnd.randbytes(190000)).decode()
    deliver(lmtp, "carol", make_message("big %02d" % i, blob))
PYEOF

start_gateway --set limits.max_line_length=4096 --set limits.max_literal_size=65536 \
	--set limits.max_commands_in_flight=8
gw_env
py_part "bad input" <<'PYEOF'
import random, re, time
from gwt import *

GW_PID = int(E["GW_PID"])
DIMAPS = int(E["DOVECOT_IMAPS"])
W = {}


def bystander_ok():
    """The second client still gets answers and the gateway is alive."""
    if "c" not in W:
        c = gw()
        fresh_session(login(c, "alice#Pwitness", PASS), "the second client logs in")
        c.ok("SELECT INBOX")
        W["c"] = c
    W["c"].ok("NOOP")
    resps = W["c"].ok("FETCH 1 (FLAGS)")
    check(resps[0].first.startswith("* 1 FETCH") and gw_alive(), "the second client still works, the gateway is alive",
          quiet=True)


def client(state):
    """A connection in state notauth / auth / plain / selected."""
    c = gw(timeout=15)
    if state == "notauth":
        return c
    user = "alice" if state == "plain" else "alice#Pbad"
    check(login(c, user, PASS)[-1].status == "OK", "%s: login" % state, quiet=True)
    if state == "selected":
        c.ok("SELECT INBOX")
    return c


def answers_until(c, tag, what, timeout=15):
    got = []
    try:
        while True:
            r = c.read_response(timeout=timeout)
            got.append(r)
            if r.tag == tag:
                return got
    except Timeout:
        check(False, "%s: silence after %r" % (what, firsts(got)[-6:]))
    except Closed:
        check(False, "%s: the connection was closed after %r" % (what, firsts(got)[-6:]))


def expect_bad_then_noop(c, lines, what, allowed=("BAD",), tags=None):
    """Send the lines (each one command line) and a NOOP; want exactly one
    answer with a status in allowed per line (no BYE), then the NOOP's OK."""
    c.send(b"".join(lines) + b"zz99 NOOP\r\n")
    got = answers_until(c, "zz99", what)
    ans = [r for r in got[:-1] if r.status is not None]
    other = [r for r in got[:-1] if r.status is None]
    check(len(ans) == len(lines) and all(r.status in allowed for r in ans) and not other,
          "%s: one %s per line (%d lines) -> %r" % (what, "/".join(allowed), len(lines), [f[:60] for f in firsts(got[:-1])][:8]))
    if tags is not None:
        # a store may finish pipelined commands out of order (Dovecot does)
        check(sorted(r.tag for r in ans) == sorted(tags), "%s: answered with tags %r (want %r)" % (what, [r.tag for r in ans], tags))
    check(got[-1].status == "OK", "%s: the connection goes on (NOOP -> %r)" % (what, got[-1].first))


rnd = random.Random(4242)


def random_lines(n):
    out = []
    while len(out) < n:
        line = bytes(rnd.randrange(256) for _ in range(rnd.randrange(5, 120)))
        line = line.replace(b"{", b"(").replace(b"\r", b".").replace(b"\n", b".")
        if not line.strip():
            continue
        out.append(line + b"\r\n")
    return out


MISSING = {
    "notauth": [b"m1 LOGIN\r\n", b"m2 LOGIN onlyuser\r\n", b"m3 AUTHENTICATE\r\n"],
    "auth": [b"m1 SELECT\r\n", b"m2 XSETPIMAPPREF\r\n", b"m3 STATUS INBOX\r\n", b"m4 XZIP\r\n", b"m5 CREATE\r\n"],
    "plain": [b"m1 SELECT\r\n", b"m2 STATUS INBOX\r\n", b"m3 XZIP\r\n", b"m4 RENAME INBOX\r\n"],
    "selected": [b"m1 FETCH\r\n", b"m2 FETCH 1\r\n", b"m3 STORE 1\r\n", b"m4 UID\r\n", b"m5 COPY 1\r\n", b"m7 SEARCH\r\n",
                 b"m6 XGETPIMAPPREFS (PIMAP_INBAND_PUSH\r\n"],
}


def garbage_in(state):
    """Every kind of bad input in one state; each case runs on the same
    connection while it lasts (a new one after a failure), and every case
    is reported before the step fails."""
    cases = [
        (random_lines(12), "12 random lines", ("BAD", "NO"), None),
        ([b"g1 \x00\x00 NOOP\x00\r\n"], "NUL bytes", ("BAD", "NO"), None),
        ([b"u1 FROBNICATE\r\n", b"u2 FROBNICATE now\r\n"], "unknown commands", ("BAD",), ["u1", "u2"]),
        (MISSING[state], "missing arguments", ("BAD",), [l.split()[0].decode() for l in MISSING[state]]),
        ([b"n1 STATUS INBOX " + b"(" * 300 + b"MESSAGES" + b")" * 300 + b"\r\n"], "300 nested parentheses", ("BAD",), ["n1"]),
    ]
    failed = []
    c = client(state)
    for lines, what, allowed, tags in cases:
        try:
            expect_bad_then_noop(c, lines, what, allowed=allowed, tags=tags)
        except (StepFailed, IMAPError, OSError) as e:
            failed.append(what)
            c.close()
            c = client(state)
    if state == "selected":
        tag, resps = c.command('SEARCH SUBJECT "%s"' % ("w" * 3900))
        check(resps[-1].status == "OK", "a 3,930-byte line (under the limit) works: %r" % resps[-1].first[:60])
    c.ok("NOOP")
    c.close()
    bystander_ok()
    check(not failed, "%s: every case answered as the profile says (failed: %s)" % (state, "; ".join(failed)))


step("setup: the second client")(bystander_ok)
for state in ("notauth", "auth", "plain", "selected"):
    step("garbage, unknown commands, missing arguments, long lines: %s" % state)(lambda state=state: garbage_in(state))


def idle_case(payload, what):
    c = client("selected")
    tag = c.idle_start()
    c.send(payload)
    got = []
    try:
        while not any(r.status in ("BAD", "NO") for r in got):
            got.append(c.read_response(timeout=10))
    except (Timeout, Closed) as e:
        check(False, "IDLE, %s: no BAD (%s) after %r" % (what, type(e).__name__, firsts(got)))
    check(not any(r.status == "BYE" for r in got), "IDLE, %s: a BAD, no BYE: %r" % (what, firsts(got)))
    if not any(r.tag == tag for r in got):
        c.send(b"DONE\r\n")
        got += answers_until(c, tag, "DONE after the BAD")
    c.ok("NOOP")
    check(True, "IDLE, %s: the connection goes on" % what)
    c.close()
    bystander_ok()


for payload, what in ((random_lines(1)[0], "a random line"), (b"i1 NOOP\r\n", "a command instead of DONE"),
                      (b"DONE DONE\r\n", "DONE with junk")):
    step("in IDLE: %s" % what)(lambda payload=payload, what=what: idle_case(payload, what))


def auth_case(payload, what, allowed):
    c = client("notauth")
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    r = c.read_response()
    check(r.is_continuation, "AUTHENTICATE PLAIN -> '+' (%r)" % r.first)
    c.send(payload)
    got = answers_until(c, tag, "AUTHENTICATE, %s" % what)
    check(got[-1].status in allowed and not any(x.status == "BYE" for x in got),
          "AUTHENTICATE, %s -> %r (want %s)" % (what, firsts(got), "/".join(allowed)))
    r = c.command("SELECT INBOX")[1][-1]
    check(r.status in ("NO", "BAD"), "AUTHENTICATE, %s: still not authenticated (SELECT -> %r)" % (what, r.first))
    fresh_session(login(c, "alice#Pauth", PASS), "AUTHENTICATE, %s: a LOGIN afterwards works" % what)
    c.ok("LOGOUT")
    c.close()
    bystander_ok()


for payload, what, allowed in ((b"*\r\n", "'*' (cancel)", ("BAD",)),
                               (b"!!!not base64!!!\r\n", "not base64", ("BAD", "NO")),
                               (random_lines(1)[0], "a random line", ("BAD", "NO")),
                               (base64.b64encode(b"no-nul-separators") + b"\r\n", "no NUL separators", ("BAD", "NO"))):
    step("in AUTHENTICATE: %s" % what)(lambda p=payload, w=what, a=allowed: auth_case(p, w, a))


@step("inside XZIP")
def _():
    c = client("selected")
    for line, what in ((b"x1 XZIP\r\n", "XZIP without arguments"), (b"x1 XZIP z1\r\n", "XZIP without an inner command")):
        expect_bad_then_noop(c, [line], what, tags=["x1"])
    for inner, what in ((b"FROBNICATE", "an unknown inner command"), (b"FETCH", "an inner command without arguments"),
                        (b"FETCH 1 (FLAGS", "an unbalanced inner command"),
                        (random_lines(1)[0][:-2].replace(b" ", b"_"), "a random inner command")):
        c.send(b"x2 XZIP z2 " + inner + b"\r\n")
        got = answers_until(c, "x2", "XZIP, %s" % what)
        zs = [r for r in got if r.literals]
        if got[-1].status == "BAD" and not zs:
            check(True, "XZIP, %s -> x2 BAD" % what)
        else:
            check(len(zs) == 1, "XZIP, %s: a BAD or one * XZIP answer: %r" % (what, firsts(got)))
            payload = zlib.decompressobj(-15).decompress(zs[0].literals[0])
            check(re.search(rb"(^|\r\n)z2 BAD[^\r\n]*\r\n$", payload), "XZIP, %s: the inner answer is z2 BAD: %r" % (what, payload[-100:]))
        c.ok("NOOP")
    c.close()
    bystander_ok()


def long_line_case(state, prefix, payload, what):
    c = client(state)
    if prefix == "idle":
        c.idle_start()
    elif prefix == "auth":
        tag = c.next_tag()
        c.send(tag + " AUTHENTICATE PLAIN\r\n")
        r = c.read_response()
        check(r.is_continuation, "AUTHENTICATE PLAIN -> '+' (%r)" % r.first)
    c.send(payload)
    try:
        got = c.read_until_closed(timeout=10)
    except Timeout:
        check(False, "%s: the connection stayed open" % what)
    byes = [r for r in got if r.tag == "*" and r.status == "BYE"]
    check(byes and "TOOBIG" in byes[0].first and "4096" in byes[0].first,
          "%s -> * BYE [TOOBIG] naming the limit, then closed: %r" % (what, firsts(got)))
    c.close()
    bystander_ok()


for state, prefix, payload, what in (
        ("notauth", "", b"l1 NOOP " + b"x" * 10000 + b"\r\n", "not authenticated: a 10,000-byte line with a tag"),
        ("notauth", "", b"y" * 10000 + b"\r\n", "not authenticated: a 10,000-byte line without a tag"),
        ("auth", "", b"l1 NOOP " + b"x" * 10000 + b"\r\n", "authenticated: a 10,000-byte line"),
        ("plain", "", b"y" * 10000 + b"\r\n", "plain session: a 10,000-byte line without a tag"),
        ("selected", "", b"l1 SEARCH SUBJECT " + b"x" * 10000 + b"\r\n", "selected: a 10,000-byte line"),
        ("selected", "idle", b"z" * 10000 + b"\r\n", "in IDLE: a 10,000-byte line"),
        ("notauth", "auth", b"QUFB" * 2600 + b"\r\n", "in AUTHENTICATE: a 10,400-byte response"),
        ("selected", "", b"x1 XZIP z1 NOOP " + b"x" * 10000 + b"\r\n", "inside XZIP: a 10,000-byte line")):
    step("over-long line: %s" % what)(lambda s_=state, p=prefix, l=payload, w=what: long_line_case(s_, p, l, w))


@step("a LITERAL+ literal over limits.max_literal_size: BYE and close")
def _():
    for state, cmd in (("notauth", b"b1 LOGIN {100000+}\r\n"), ("auth", b"b1 APPEND INBOX {100000+}\r\n"),
                       ("selected", b"b1 APPEND INBOX {100000+}\r\n"), ("selected", b"b1 XZIP z1 APPEND INBOX {100000+}\r\n")):
        c = client(state)
        c.send(cmd + b"a" * 4000)
        try:
            got = c.read_until_closed(timeout=10)
        except Timeout:
            check(False, "%s, %r: the connection stayed open" % (state, cmd))
        check(any(r.tag == "*" and r.status == "BYE" for r in got), "%s, %r -> * BYE, then closed: %r" % (state, cmd, firsts(got)))
        c.close()
        bystander_ok()


@step("a synchronising literal over limits.max_literal_size: no '+'")
def _():
    for state, cmd in (("notauth", "LOGIN {100000}"), ("auth", "APPEND INBOX {100000}")):
        c = client(state)
        tag = c.next_tag()
        c.send("%s %s\r\n" % (tag, cmd))
        try:
            got = [c.read_response(timeout=10)]
            if got[0].status == "BYE":
                got += c.read_until_closed(timeout=10)
                check(True, "%s, %s -> BYE and closed" % (state, cmd))
            else:
                check(got[0].tag == tag and got[0].status in ("NO", "BAD"), "%s, %s -> %r (want NO/BAD, no '+')" % (state, cmd, got[0].first))
                c.ok("NOOP")
        except Closed:
            check(False, "%s, %s: closed without BYE" % (state, cmd))
        except Timeout:
            check(False, "%s, %s: no answer" % (state, cmd))
        c.close()
        bystander_ok()


@step("100 pipelined commands, max_commands_in_flight=8")
def _():
    c = client("selected")
    N = 100
    c.send(b"".join((b"f%d NOOP\r\n" if i % 3 else b"f%d FETCH 1:2 (FLAGS UID)\r\n") % i for i in range(N)))
    left = {"f%d" % i for i in range(N)}
    st = {}
    try:
        while left:
            r = c.read_response(timeout=30)
            if r.tag in left:
                left.discard(r.tag)
                st[r.tag] = r.status
    except (Timeout, Closed) as e:
        check(False, "%d of %d pipelined commands answered, then %s" % (N - len(left), N, e))
    check(all(s in ("OK", "BAD") for s in st.values()),
          "all %d answered (%d OK, %d BAD)" % (N, list(st.values()).count("OK"), list(st.values()).count("BAD")))
    c.ok("NOOP")
    c.close()
    bystander_ok()


@step("vanishing clients")
def _():
    c = client("notauth")
    c.send(b"v1 LOGIN {50+}\r\nalice#Pv")
    c.close()
    c = client("auth")
    c.send(b"v2 APPEND INBOX {5000+}\r\n" + b"x" * 100)
    c.close()
    c = client("selected")
    c.send(b"v3 XZIP z3 APPEND INBOX {5000+}\r\n" + b"x" * 100)
    c.close()
    c = client("selected")
    c.send(b"v4 FETCH 1:* (BODY.PEEK[])\r\nv5 XZIP z5 FETCH 1:* (BODY.PEEK[])\r\n")
    c.close()
    c = client("notauth")
    c.send(b"v6 LOGIN alice")
    c.close()
    bystander_ok()
    check(True, "the gateway survives clients closing mid-literal, mid-line and with answers unread")


def gw_store_sockets():
    """The gateway's TCP connections to Dovecot's imaps port (rows of /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % GW_PID):
        try:
            l = os.readlink("/proc/%d/fd/%s" % (GW_PID, fd))
        except OSError:
            continue
        if l.startswith("socket:["):
            inodes.add(l[8:-1])
    return [r for r in tcp_rows() if r["inode"] in inodes and r["remote"] == "0100007F:%04X" % DIMAPS]


@step("backpressure: 500 MB of answers to a client that does not read")
def _():
    c = gw(timeout=30)
    check(login(c, "carol#Pbp", PASS)[-1].status == "OK", "carol logs in")
    check(exists_of(c.ok("SELECT INBOX")) == 40, "carol has 40 messages")
    c.ok("FETCH 1:* (RFC822.SIZE)")
    base = proc_kb(GW_PID, "VmRSS")
    c.send(b"".join(b"bp%d FETCH 1:* (BODY.PEEK[])\r\n" % i for i in range(50)))
    t0 = time.monotonic()
    peak = base
    stalled_since = None
    while True:
        rss = proc_kb(GW_PID, "VmRSS")
        peak = max(peak, rss)
        if rss - base >= 150 * 1024:
            check(False, "VmRSS %d kB, %d kB above the %d kB before the flood (bound 150 MB): no backpressure" % (rss, rss - base, base))
        full = [r for r in gw_store_sockets() if r["rxq"] >= 64 * 1024]
        if full:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since >= 1.0:
                break
        else:
            stalled_since = None
        if time.monotonic() - t0 >= 60:
            check(False, "within 60 s the gateway stops reading from the store (no store socket with a full "
                  "receive queue; VmRSS +%d kB)" % (rss - base))
        time.sleep(0.05)
    print("     stalled after %.1f s, store socket receive queue %d bytes" % (time.monotonic() - t0, full[0]["rxq"]), file=sys.stderr)
    r0 = proc_kb(GW_PID, "VmRSS")
    bystander_ok()
    t1 = time.monotonic()
    while time.monotonic() - t1 < 3.0:      # an observation window, not a wait for a condition
        peak = max(peak, proc_kb(GW_PID, "VmRSS"))
        time.sleep(0.1)
    r1 = proc_kb(GW_PID, "VmRSS")
    check(peak - base < 150 * 1024, "with 500 MB of answers unread, VmRSS peaked %d kB above the %d kB before (bound 150 MB)" % (peak - base, base))
    check(r1 - r0 < 16 * 1024, "and did not grow while stalled (%d -> %d kB over 3 s)" % (r0, r1))
    check(any(r["rxq"] >= 64 * 1024 for r in gw_store_sockets()), "the store socket is still full: the gateway is not reading it")
    bystander_ok()
    c.close()
    bystander_ok()


@step("the end: the second client logs out, the gateway is alive")
def _():
    bystander_ok()
    check(True, "the second client worked after every step")
    W["c"].ok("LOGOUT")
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop
gw_finish
