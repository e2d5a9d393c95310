#!/bin/bash
# t_gw_auth.sh - pimap-gateway: login, sessions and who may resume them
# (docs/PROTOCOL.md sections 1 and 2).
#
# Users: alice (password "alicepw", 2 messages) and bob (password "secret",
# 3 messages), so that a login served from the wrong mailbox shows.
#  1. a wrong password gets a tagged NO and opens no session: the next
#     correct login of that device gets only "* SESSIONID" (no SESSION line);
#  2. LOGIN, AUTHENTICATE PLAIN with SASL-IR and without it all work for
#     alice#Pdev1, each opening a new session (LOGOUT ends the previous one)
#     and serving alice's mailbox;
#  3. a device of alice never resumes bob's session: bob#Pdev1 is left
#     detached in SELECTED state; alice#Pdev1 gets a fresh session of her own;
#     bob#Pdev1 with alice's password gets NO and no session lines; then
#     bob#Pdev1 with his own password does resume (SESSION SELECTED, FOLDER
#     INBOX, the same SESSIONID) - the positive control;
#  4. a plain session (login without #P) is plain IMAP: no SESSIONID, SELECT
#     and FETCH work, XSETPIMAPPREF / XGETPIMAPPREF(S) answer NO [CANNOT],
#     XPROVISION works;
#  5. the STARTTLS listener (listen.plaintext_login = never, the default):
#     STARTTLS and LOGINDISABLED in CAPABILITY, LOGIN before STARTTLS gets
#     NO [PRIVACYREQUIRED], AUTHENTICATE is refused too; after STARTTLS the
#     capabilities lose STARTTLS/LOGINDISABLED and LOGIN works; commands
#     pipelined behind STARTTLS in the same packet are discarded (carol's
#     pipelined LOGIN never reaches the store, the connection is still not
#     authenticated afterwards);
#  6. limits.preauth_timeout=2s: an idle unauthenticated connection gets
#     "* BYE" and is closed between 1.5 and 12 s, while a logged-in one
#     opened at the same time keeps working;
#  7. limits.max_failed_logins=3: after 3 failures from 127.0.0.1, the right
#     password gets NO within 5 s (LOGIN, AUTHENTICATE, plain and P-IMAP)
#     and Dovecot's log shows that the store was not asked.
# The gateway must be alive throughout; any sanitizer report fails the test.
# Dovecot delays a failed login (2 s) and more for each new user/password
# pair from the same address (its auth penalty); the test uses one wrong
# password throughout and long read deadlines for failing logins.
#
# By hand: tests/integration/t_gw_auth.sh (after building src/pimap-gateway)

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

# --- the store ------------------------------------------------------------------
gen_certs
start_dovecot
# alice gets her own password (Dovecot's passwd-file notices the change).
sed -i 's/^alice:{PLAIN}[^:]*:/alice:{PLAIN}alicepw:/' "$DOVECOT_DIR/users"
grep -q '^alice:{PLAIN}alicepw:' "$DOVECOT_DIR/users" || hard_error "could not set alice's password"
deliver alice "alice one"
deliver alice "alice two"
deliver bob "bob one"
deliver bob "bob two"
deliver bob "bob three"
write_gwt

# --- 1-5: the gateway with its default limits --------------------------------------
start_gateway
gw_env
py_part "logins, sessions, plain session, STARTTLS" <<'PYEOF'
import os, re, socket, time
from gwt import *

ALICE_PW = "alicepw"
st = {}


@step("setup: the store has alice (own password, 2 messages) and bob (3 messages)")
def _():
    s = store("alice", ALICE_PW)
    check(exists_of(s.ok("EXAMINE INBOX")) == 2, "alice has 2 messages on the store")
    s.ok("LOGOUT"); s.close()
    s = store("bob")
    check(exists_of(s.ok("EXAMINE INBOX")) == 3, "bob has 3 messages on the store")
    s.ok("LOGOUT"); s.close()


@step("1. wrong password: NO and no session")
def _():
    # Dovecot delays failed logins (2 s, and more for each new user/password
    # pair from the same address): the same wrong password is used throughout
    c = gw(timeout=30)
    resps = login(c, "alice#Pdev1", "wrong-password")
    check(resps[-1].status == "NO", "LOGIN alice#Pdev1 with a wrong password -> %r (want tagged NO)" % resps[-1].first)
    check(not session_lines(resps), "no session lines with the NO: %r" % session_lines(resps))
    r = c.command("SELECT INBOX")[1][-1]
    check(r.status in ("NO", "BAD"), "still not authenticated after the NO: SELECT -> %r" % r.first)
    resps = login(c, "alice#Pdev1", ALICE_PW)
    st["ids"] = [fresh_session(resps, "the correct login of alice#Pdev1 after the failure")]
    check(exists_of(c.ok("SELECT INBOX")) == 2, "alice#Pdev1 sees alice's 2 messages")
    resps = c.ok("LOGOUT")
    check(any(r.status == "BYE" for r in resps), "LOGOUT -> * BYE")
    c.close()


def login_method(how):
    c = gw()
    resps = login(c, "alice#Pdev1", ALICE_PW, how)
    if how == "noir":
        check(any(r.is_continuation for r in resps), "AUTHENTICATE PLAIN without SASL-IR got a '+' continuation")
    sid = fresh_session(resps, "%s of alice#Pdev1 after a LOGOUT" % how)
    ids = st.setdefault("ids", [])
    check(sid not in ids, "LOGOUT ended the previous session: a new id %s (earlier %r)" % (sid, ids))
    ids.append(sid)
    check(exists_of(c.ok("SELECT INBOX")) == 2, "%s: alice's mailbox (2 messages)" % how)
    resps = c.ok("FETCH 1:* (FLAGS)")
    check(sum(1 for r in resps if re.match(r"\* \d+ FETCH", r.first)) == 2, "%s: FETCH works" % how)
    c.ok("LOGOUT")
    c.close()


step("2a. LOGIN alice#Pdev1")(lambda: login_method("login"))
step("2b. AUTHENTICATE PLAIN with SASL-IR")(lambda: login_method("ir"))
step("2c. AUTHENTICATE PLAIN without SASL-IR")(lambda: login_method("noir"))


@step("3. alice's device never resumes bob's session")
def _():
    # start clean whatever the earlier steps did: alice#Pdev1 has no session
    c = gw()
    check(login(c, "alice#Pdev1", ALICE_PW)[-1].status == "OK", "alice#Pdev1 logs in (to end any session it has)")
    c.ok("LOGOUT")
    c.close()
    c = gw()
    bob_id = fresh_session(login(c, "bob#Pdev1", PASS), "bob#Pdev1")
    check(exists_of(c.ok("SELECT INBOX")) == 3, "bob#Pdev1 sees bob's 3 messages")
    close_detached(c)
    c = gw()
    resps = login(c, "alice#Pdev1", ALICE_PW)
    sid = fresh_session(resps, "alice#Pdev1 while bob#Pdev1 is detached")
    check(sid != bob_id, "alice#Pdev1 got her own session id (%s, bob's is %s)" % (sid, bob_id))
    check(not any(r.first.upper().startswith("* FOLDER") for r in resps), "no FOLDER line for alice")
    check(exists_of(c.ok("SELECT INBOX")) == 2, "alice#Pdev1 sees alice's 2 messages, not bob's")
    c.ok("LOGOUT")
    c.close()
    for how in ("login", "ir"):
        c = gw(timeout=30)
        resps = login(c, "bob#Pdev1", ALICE_PW, how)
        check(resps[-1].status == "NO", "%s as bob#Pdev1 with alice's password -> %r (want NO)" % (how, resps[-1].first))
        check(not session_lines(resps), "no session lines with that NO: %r" % session_lines(resps))
        r = c.command("SELECT INBOX")[1][-1]
        check(r.status in ("NO", "BAD"), "not authenticated afterwards: SELECT -> %r" % r.first)
        c.close()
    # the positive control: bob himself resumes
    c = gw()
    resps = login(c, "bob#Pdev1", PASS)
    check(resps[-1].status == "OK", "bob#Pdev1 logs in again: %r" % resps[-1].first)
    sl = session_lines(resps)
    check(sl == ["* SESSION SELECTED", "* FOLDER INBOX", "* SESSIONID " + bob_id],
          "bob#Pdev1 resumes his session in INBOX: %r" % sl)
    resps = c.ok("FETCH 1:* (UID)")
    check(sum(1 for r in resps if re.match(r"\* \d+ FETCH", r.first)) == 3, "bob's resumed view has 3 messages")
    c.ok("LOGOUT")
    c.close()


@step("4. a plain session")
def _():
    c = gw()
    resps = login(c, "alice", ALICE_PW)
    check(resps[-1].status == "OK", "LOGIN alice (no #P) -> %r" % resps[-1].first)
    check(not session_lines(resps), "no session lines in a plain session: %r" % session_lines(resps))
    check(exists_of(c.ok("SELECT INBOX")) == 2, "SELECT INBOX: alice's 2 messages")
    resps = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    check(b"alice one" in resps[0].raw, "FETCH of a header works")
    for cmd in ("XSETPIMAPPREF PIMAP_INBAND_PUSH ON", "XGETPIMAPPREFS", "XGETPIMAPPREF",
                "XGETPIMAPPREFS (PIMAP_EVENT_FILTER)"):
        r = c.command(cmd)[1][-1]
        check(r.status == "NO" and "[CANNOT]" in r.first.upper(), "%s in a plain session -> %r (want NO [CANNOT])" % (cmd, r.first))
    resps = c.ok("XPROVISION")
    prov = [r.first for r in resps if r.first.upper().startswith("* XPROVISION ")]
    check(len(prov) >= 6 and any("PIMAP_INBAND_PUSH" in p for p in prov), "XPROVISION works in a plain session (%d lines)" % len(prov))
    c.ok("NOOP")
    c.ok("LOGOUT")
    c.close()


def caps_of(resps):
    return set(" ".join(r.first for r in resps if r.first.upper().startswith("* CAPABILITY ")).upper().split()[2:])


@step("5a. STARTTLS listener: nothing before STARTTLS, everything after")
def _():
    c = gw(int(E["GW_STARTTLS_PORT"]), tls=False)
    caps = caps_of(c.ok("CAPABILITY"))
    check({"STARTTLS", "LOGINDISABLED"} <= caps, "CAPABILITY before STARTTLS has STARTTLS and LOGINDISABLED: %s" % sorted(caps))
    r = login(c, "alice#Pdev2", ALICE_PW)[-1]
    check(r.status == "NO" and "[PRIVACYREQUIRED]" in r.first.upper(), "LOGIN before STARTTLS -> %r (want NO [PRIVACYREQUIRED])" % r.first)
    r = login(c, "alice#Pdev2", ALICE_PW, "ir")[-1]
    check(r.status in ("NO", "BAD"), "AUTHENTICATE PLAIN before STARTTLS -> %r (want NO/BAD)" % r.first)
    r = c.command("SELECT INBOX")[1][-1]
    check(r.status in ("NO", "BAD"), "still not authenticated: SELECT -> %r" % r.first)
    c.starttls()
    caps = caps_of(c.ok("CAPABILITY"))
    check("STARTTLS" not in caps and "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps,
          "after STARTTLS: no STARTTLS, no LOGINDISABLED, AUTH=PLAIN: %s" % sorted(caps))
    fresh_session(login(c, "alice#Pdev2", ALICE_PW), "LOGIN alice#Pdev2 after STARTTLS")
    check(exists_of(c.ok("SELECT INBOX")) == 2, "alice's mailbox after STARTTLS")
    c.ok("LOGOUT")
    c.close()


@step("5b. STARTTLS listener: commands pipelined behind STARTTLS are discarded")
def _():
    c = gw(int(E["GW_STARTTLS_PORT"]), tls=False)
    c.send(b"p1 STARTTLS\r\np2 LOGIN \"carol#Ppipe\" \"%s\"\r\np3 CAPABILITY\r\np4 SELECT INBOX\r\n" % PASS.encode())
    got = c.wait_tagged("p1")
    check(got[-1].status == "OK", "STARTTLS -> %r" % got[-1].first)
    check(not c.rbuf and not any(r.tag in ("p2", "p3", "p4") for r in got),
          "nothing answered in plaintext after STARTTLS's OK (buffered %r)" % c.rbuf[:80])
    try:
        c._wrap_tls()
    except (OSError, ValueError) as e:
        check(False, "TLS handshake after pipelined STARTTLS: %s" % e)
    tag, resps = c.command("CAPABILITY")
    check(not any(r.tag in ("p2", "p3", "p4") for r in resps),
          "the pipelined commands were discarded, not run after the handshake: %r" % firsts(resps))
    caps = caps_of(resps)
    check("AUTH=PLAIN" in caps and "STARTTLS" not in caps, "still before login, over TLS: %s" % sorted(caps))
    r = c.command("SELECT INBOX")[1][-1]
    check(r.status in ("NO", "BAD"), "not logged in by the pipelined LOGIN: SELECT -> %r" % r.first)
    fresh_session(login(c, "alice#Pdev3", ALICE_PW), "LOGIN after the discarded pipeline")
    c.ok("LOGOUT")
    c.close()
    check(log_count(E["DOVECOT_LOG"], r"user=<carol>|passwd-file\(carol,") == 0,
          "the store never saw carol (the pipelined LOGIN was discarded)")


@step("the gateway is alive")
def _():
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop

# --- 6: limits.preauth_timeout=2s --------------------------------------------------
start_gateway --set limits.preauth_timeout=2s
gw_env
py_part "preauth timeout" <<'PYEOF'
import time
from gwt import *


@step("6. limits.preauth_timeout=2s")
def _():
    idle = gw()
    t0 = time.monotonic()
    busy = gw()
    fresh_session(login(busy, "alice#Pdev4", "alicepw"), "a login right away")
    busy.ok("SELECT INBOX")
    # opened after busy: once it is timed out, busy is past its own deadline too
    later = gw()
    try:
        resps = idle.read_until_closed(timeout=15)
    except Timeout:
        check(False, "the unauthenticated connection is still open after 15 s")
    dt = time.monotonic() - t0
    check(any(r.tag == "*" and r.status == "BYE" for r in resps), "the idle unauthenticated connection got * BYE: %r" % firsts(resps))
    check(1.5 <= dt <= 12, "... and was closed after %.2f s (preauth_timeout 2 s)" % dt)
    try:
        resps = later.read_until_closed(timeout=15)
    except Timeout:
        check(False, "the second unauthenticated connection is still open after 15 s")
    check(any(r.status == "BYE" for r in resps), "a second one, opened after the login, timed out too: %r" % firsts(resps))
    busy.ok("NOOP")
    check(True, "the logged-in connection still works, %.2f s after it opened" % (time.monotonic() - t0))
    busy.ok("LOGOUT")
    busy.close()
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop

# --- 7: limits.max_failed_logins=3 ---------------------------------------------------
start_gateway --set limits.max_failed_logins=3
gw_env
py_part "failed-login throttle" <<'PYEOF'
import time
from gwt import *
DLOG = E["DOVECOT_LOG"]
# one line per attempt that reached the store: a password mismatch (auth
# process) or a successful login (imap-login)
ALICE_RX = r"passwd-file\(alice,|Login: user=<alice>"


@step("7. limits.max_failed_logins=3")
def _():
    start = log_count(DLOG, ALICE_RX)
    for i in range(3):
        c = gw(timeout=30)  # Dovecot delays failed logins (auth penalty, up to 15 s)
        r = login(c, "alice#Pthr", "wrong-password")[-1]
        check(r.status == "NO", "failure %d: %r" % (i + 1, r.first))
        c.close()
    before = wait_log_count(DLOG, ALICE_RX, start + 3)
    check(before == start + 3, "Dovecot saw the 3 failed attempts (%d new alice lines)" % (before - start))
    def throttled(how, user):
        c = gw(timeout=30)
        t0 = time.monotonic()
        resps = login(c, user, "alicepw", how)
        dt = time.monotonic() - t0
        r = resps[-1]
        check(r.status == "NO", "right password as %s (%s) after 3 failures -> %r (want NO)" % (user, how, r.first))
        check(dt < 5, "... answered after %.2f s" % dt)
        check(not session_lines(resps), "... and no session lines: %r" % session_lines(resps))
        c.close()
    for how, user in (("login", "alice#Pthr"), ("ir", "alice#Pthr"), ("login", "alice")):
        throttled(how, user)
    # a marker: a direct login to the store; once Dovecot logged it, any store
    # attempt made by the gateway for the throttled logins would be logged too
    s = store("dave")
    s.ok("LOGOUT"); s.close()
    check(wait_log_count(DLOG, r"Login: user=<dave>", 1) >= 1, "Dovecot logged the marker login")
    after = log_count(DLOG, ALICE_RX)
    check(after == before, "the store was not asked for the throttled logins (alice lines in Dovecot's log: %d before, %d after)" % (before, after))
    throttled("noir", "alice#Pthr2")
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop
gw_finish
