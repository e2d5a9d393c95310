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
#  3b. AUTHENTICATE PLAIN with alice's credentials and bob#Pdev1 (or bob)
#     as the authorization identity: NO, no session, not logged in;
#  3c. alice#Pshared attached and bob#Pshared logging in: two sessions,
#     each user's own mailbox;
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
#     and Dovecot's log shows that the store was not asked;
#  7b. 8 wrong passwords sent at once from another address (127.0.0.2):
#     logins under way count, so at most 3 reach the store.
# The gateway must be alive throughout; any sanitizer report fails the test.
# Dovecot delays a failed login (2 s) and more for each new user/password
# pair from the same address (its auth penalty); the test uses one wrong
# password throughout and long read deadlines for failing logins.
#
# By hand: tests/integration/t_gw_auth.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"

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

# --- 1-5: the gateway with its default limits --------------------------------------
# (with the protocol trace on, so that the last check below sees every line
# the gateway could have logged about a login)
start_gateway --trace
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


@step("3b. an authorization identity never takes another user's session")
def _():
    # SASL PLAIN carries "authzid NUL authcid NUL password": alice's own
    # password with bob's device as the identity to act as.
    for authzid, authcid in (("bob#Pdev1", "alice"), ("bob#Pdev1", "alice#Pdev1"), ("bob", "alice")):
        c = gw(timeout=30)
        cred = base64.b64encode(b"%s\0%s\0%s" % (authzid.encode(), authcid.encode(), ALICE_PW.encode())).decode()
        resps = c.command("AUTHENTICATE PLAIN " + cred)[1]
        check(resps[-1].status == "NO", "authzid %s, authcid %s -> %r (want NO)" % (authzid, authcid, resps[-1].first))
        check(not session_lines(resps), "no session lines: %r" % session_lines(resps))
        r = c.command("SELECT INBOX")[1][-1]
        check(r.status in ("NO", "BAD"), "not authenticated afterwards: SELECT -> %r" % r.first)
        c.close()


@step("3c. the same device id under another user is another session")
def _():
    a = gw()
    aid = fresh_session(login(a, "alice#Pshared", ALICE_PW), "alice#Pshared")
    check(exists_of(a.ok("SELECT INBOX")) == 2, "alice#Pshared sees alice's 2 messages")
    b = gw()
    resps = login(b, "bob#Pshared", PASS)
    bid = fresh_session(resps, "bob#Pshared while alice#Pshared is attached")
    check(bid != aid and not any(r.first.upper().startswith("* FOLDER") for r in resps),
          "bob#Pshared got a session of his own (%s; alice's %s), no FOLDER" % (bid, aid))
    check(exists_of(b.ok("SELECT INBOX")) == 3, "bob#Pshared sees bob's 3 messages")
    a.ok("NOOP")
    resps = a.ok("FETCH 1:* (UID)")
    check(sum(1 for r in resps if re.match(r"\* \d+ FETCH", r.first)) == 2, "alice#Pshared still sees her 2 messages")
    for c in (a, b):
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


CAROL_RX = r"passwd-file\(carol,"


@step("7b. parallel guesses count while the store decides them")
def _():
    # From another address (127.0.0.2, not yet throttled): 8 connections
    # send a wrong password at the same moment. Logins under way count, so
    # at most 3 reach the store; the rest get NO at once.
    start = log_count(DLOG, CAROL_RX)
    conns = [Client(HOST, gw_port(), tls=True, cafile=CA, timeout=30) for _ in range(8)]
    for c in conns:
        c.source = "127.0.0.2"
        c.connect()
    tags = [c.send_command('LOGIN "carol#Ppar" "wrong-password"')[0] for c in conns]
    finals = [c.wait_tagged(t)[-1] for c, t in zip(conns, tags)]
    check(all(r.status == "NO" for r in finals), "all 8 got NO: %r" % [r.first for r in finals])
    for c in conns:
        c.close()
    s = store("dave")
    s.ok("LOGOUT"); s.close()
    check(wait_log_count(DLOG, r"Login: user=<dave>", 2) >= 2, "Dovecot logged the second marker login")
    reached = log_count(DLOG, CAROL_RX) - start
    check(1 <= reached <= 3, "%d of the 8 parallel guesses reached the store (limit 3)" % reached)
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop

# --- credentials never reach the gateway's log, even with --trace -----------------
# alice's password and the base64 AUTHENTICATE PLAIN responses carrying it
# (with and without an authorization identity) must not appear anywhere.
for secret in alicepw "$(printf '\0alice#Pdev1\0alicepw' | base64)" "$(printf '\0alice\0alicepw' | base64)"; do
	if grep -qF -- "$secret" "$GW_LOG"; then
		grep -nF -- "$secret" "$GW_LOG" | head -3 >&2
		GW_FAILED_PARTS+=("credentials in the log")
		log "FAIL: a credential ($secret) is in the gateway's log"
	fi
done
grep -q 'LOGIN' "$GW_LOG" || { GW_FAILED_PARTS+=("trace"); log "FAIL: the trace shows no LOGIN at all (nothing was checked)"; }
gw_finish
