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

# --- shared helpers of the t_gw_*.sh tests (the same block in each) ----------

require dovecot certtool
require_gateway

# gw_check_reports: fail now on any sanitizer report the gateway wrote so far
# (the harness checks again at exit; leak reports are written at exit, so
# this runs after each stop_gateway).
gw_check_reports() {
	local files
	if files=$(gateway_sanitizer_reports); then
		grep -h -E -A5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $files | head -40 >&2
		fail "sanitizer report in $(echo $files)"
	fi
	return 0
}

# gw_env: export what the Python parts need.
gw_env() {
	export GW_PORT GW_STARTTLS_PORT GW_PID GW_LOG GW_STATE CA T \
		DOVECOT_IMAP DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_LOG DOVECOT_PASS
}

# write_gwt: the Python helper module $T/gwt.py (imported by the test's
# Python parts; imapc.py is on PYTHONPATH through the harness).
write_gwt() {
	export PYTHONPATH="$T:$PYTHONPATH"
	cat >"$T/gwt.py" <<'PYEOF'
"""Helpers shared by the Python parts of the t_gw_*.sh tests."""
import os, re, sys, time, socket, base64, zlib, select
from imapc import Client, Closed, Timeout, Literal, IMAPError, deliver, make_message

E = os.environ
HOST = "127.0.0.1"
CA = E["CA"]
PASS = E["DOVECOT_PASS"]
LMTP = "127.0.0.1:" + E["DOVECOT_LMTP"]
_step = [""]


class StepFailed(Exception):
    """A check failed; the current step is abandoned, the next one runs."""


def _excepthook(t, v, tb):
    import traceback
    traceback.print_exception(t, v, tb)
    print("FAIL (%s): unexpected %s: %s" % (_step[0], t.__name__, v), file=sys.stderr)


sys.excepthook = _excepthook


def STEP(name):
    _step[0] = name
    print("---- %s" % name, file=sys.stderr)


def check(cond, what, quiet=False):
    """A check: print it (unless quiet and it passed); on failure abandon the step."""
    if not cond:
        print("FAIL (%s): %s" % (_step[0], what), file=sys.stderr)
        raise StepFailed(what)
    if not quiet:
        print("ok   (%s): %s" % (_step[0], what[:300]), file=sys.stderr)


STEPS = []


def step(name):
    """Decorator: register a step. run_steps() runs them in order; a failed
    step is reported and the next one still runs (later steps may then fail
    as a consequence); the script exits 1 if any step failed."""
    def deco(f):
        STEPS.append((name, f))
        return f
    return deco


def run_steps():
    import traceback
    failed = []
    for name, f in STEPS:
        STEP(name)
        try:
            f()
        except StepFailed:
            failed.append(name)
        except (IMAPError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, zlib.error) as e:
            traceback.print_exc()
            print("FAIL (%s): unexpected %s: %s" % (name, type(e).__name__, e), file=sys.stderr)
            failed.append(name)
    del STEPS[:]
    if failed:
        print("FAILED STEPS (%d of this part): %s" % (len(failed), "; ".join(failed)), file=sys.stderr)
        sys.exit(1)


def gw_port():
    return int(E["GW_PORT"])


def gw(port=None, tls=True, timeout=10):
    """A connection to the gateway (implicit TLS on GW_PORT by default), greeting read."""
    c = Client(HOST, port or gw_port(), tls=tls, cafile=CA, timeout=timeout)
    g = c.connect()
    check(g.status == "OK" and g.tag == "*", "gateway greeting %r" % g.first, quiet=True)
    return c


def store(user, pw=None, timeout=10):
    """A direct connection to Dovecot (plain port), logged in."""
    c = Client(HOST, int(E["DOVECOT_IMAP"]), timeout=timeout, tag_prefix="D")
    c.connect()
    c.login(user, pw or PASS)
    return c


def login(c, user, pw, how="login"):
    """LOGIN / AUTHENTICATE PLAIN with (ir) or without (noir) SASL-IR; all responses, tagged last."""
    if how == "login":
        return c.command('LOGIN "%s" "%s"' % (user, pw))[1]
    if how == "ir":
        return c.authenticate_plain(user, pw, initial_response=True)
    if how == "noir":
        return c.authenticate_plain(user, pw, initial_response=False)
    raise ValueError(how)


def firsts(resps):
    return [r.first for r in resps]


RX_SESSIONID = re.compile(r"^\* SESSIONID ([0-9A-Fa-f]+)$")


def session_lines(resps):
    """The P-IMAP session responses among resps (SESSIONID/SESSION/FOLDER/RESYNC), in order."""
    return [r.first for r in resps if r.tag == "*" and re.match(r"\* (SESSIONID|SESSION|FOLDER|RESYNC)\b", r.first, re.I)]


def session_id(resps):
    ids = [RX_SESSIONID.match(r.first).group(1) for r in resps if RX_SESSIONID.match(r.first)]
    return ids


def fresh_session(resps, what):
    """A successful P-IMAP login that opened a new session: exactly one
    '* SESSIONID <32 hex>' and no SESSION/FOLDER/RESYNC line. Returns the id."""
    t = resps[-1]
    check(t.status == "OK", "%s: tagged OK (%r)" % (what, t.first), quiet=True)
    sl = session_lines(resps)
    ids = session_id(resps)
    check(len(ids) == 1 and re.fullmatch(r"[0-9a-fA-F]{32}", ids[0]) and sl == ["* SESSIONID " + ids[0]],
          "%s: a new session, only '* SESSIONID <32 hex>' (got %r)" % (what, sl))
    return ids[0]


def exists_of(resps):
    for r in resps:
        m = re.match(r"^\* (\d+) EXISTS$", r.first)
        if m:
            return int(m.group(1))
    return None


def quiet(c, seconds):
    """Observe the connection for `seconds`: return every response that arrived (want none)."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        try:
            got.append(c.read_response(timeout=left))
        except Timeout:
            return got


# --- /proc/net/tcp -------------------------------------------------------------

def _hexaddr(port):
    return "0100007F:%04X" % port


def tcp_rows():
    rows = []
    for fn in ("/proc/net/tcp",):
        with open(fn) as f:
            next(f)
            for line in f:
                w = line.split()
                txq, rxq = w[4].split(":")
                rows.append({"local": w[1], "remote": w[2], "state": w[3],
                             "txq": int(txq, 16), "rxq": int(rxq, 16), "inode": w[9]})
    return rows


def wait_released(port, client_port, timeout=10):
    """Wait until the server side (127.0.0.1:port) of the connection from
    client_port is closed by the server (no ESTABLISHED/CLOSE_WAIT row left)."""
    deadline = time.monotonic() + timeout
    while True:
        live = [r for r in tcp_rows() if r["local"] == _hexaddr(port) and r["remote"] == _hexaddr(client_port)
                and r["state"] in ("01", "08")]
        if not live:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def close_detached(c, port=None):
    """Close c without LOGOUT and wait until the gateway has closed its side."""
    cp = c.sock.getsockname()[1]
    c.close()
    check(wait_released(port or gw_port(), cp), "the gateway closed its side of the connection (port %d)" % cp)


# --- the gateway's log -----------------------------------------------------------

def log_count(path, rx):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if re.search(rx, line))
    except FileNotFoundError:
        return 0


def wait_log_count(path, rx, n, timeout=15):
    """Wait until the log has at least n lines matching rx; return the count."""
    deadline = time.monotonic() + timeout
    while True:
        k = log_count(path, rx)
        if k >= n or time.monotonic() > deadline:
            return k
        time.sleep(0.05)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st.rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def gw_alive():
    return pid_alive(int(E["GW_PID"]))


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --- an IMAP value reader (for XGETPIMAPPREF answers) -------------------------

class Q(str):
    """A quoted string (as opposed to an atom)."""


def parse_values(s):
    """Parse a sequence of IMAP values: atoms (str; a fetch attribute such as
    BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10> is one atom), quoted strings (Q)
    and parenthesised lists (list). Raises ValueError on bad syntax."""
    pos = [0]

    def skip():
        while pos[0] < len(s) and s[pos[0]] == " ":
            pos[0] += 1

    def value():
        i = pos[0]
        ch = s[i]
        if ch == "(":
            pos[0] += 1
            out = []
            while True:
                skip()
                if pos[0] >= len(s):
                    raise ValueError("unbalanced ( in %r" % s)
                if s[pos[0]] == ")":
                    pos[0] += 1
                    return out
                out.append(value())
        if ch == '"':
            j = i + 1
            buf = []
            while j < len(s) and s[j] != '"':
                if s[j] == "\\" and j + 1 < len(s):
                    j += 1
                buf.append(s[j])
                j += 1
            if j >= len(s):
                raise ValueError("unterminated string in %r" % s)
            pos[0] = j + 1
            return Q("".join(buf))
        j = i
        depth = 0
        while j < len(s):
            c = s[j]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif depth == 0 and c in " )(":
                if c == "(" and j > i:
                    raise ValueError("( inside an atom in %r" % s)
                break
            j += 1
        if j == i:
            raise ValueError("empty value at %d in %r" % (i, s))
        pos[0] = j
        return s[i:j]

    out = []
    while True:
        skip()
        if pos[0] >= len(s):
            return out
        out.append(value())
PYEOF
}

# py_part NAME: run the Python script on stdin; a failure is remembered
# (gw_finish fails the test) and the test goes on with its next part.
GW_FAILED_PARTS=()
py_part() {
	if ! python3 -; then
		GW_FAILED_PARTS+=("$1")
		log "part '$1' FAILED (details above)"
	fi
	return 0
}

# gw_finish: pass, or fail naming the parts that failed.
gw_finish() {
	[ ${#GW_FAILED_PARTS[@]} -eq 0 ] || fail "failed parts: ${GW_FAILED_PARTS[*]}"
	pass
}

# gw_stop: stop the gateway (SIGTERM; the harness fails the test if it does
# not exit cleanly) and check for sanitizer reports; if it had died already,
# record that and go on, so that the test's other parts still run.
gw_stop() {
	if gateway_alive; then
		stop_gateway
	else
		local rc=0
		wait "$GW_PID" 2>/dev/null || rc=$?
		GW_FAILED_PARTS+=("gateway died (exit status $rc)")
		log "the gateway $GW_PID died (exit status $rc)"
		kill_gateway
	fi
	gw_check_reports
}

gen_certs
start_dovecot
deliver alice "bad input: first"
deliver alice "bad input: second"
write_gwt
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
