#!/bin/bash
# t_smtp_bad_input.sh - bad SMTP input at pimap-proxy's SMTP listener: each
# case gets the right reply code, the proxy never crashes, and no partial
# or refused message is ever sent (checked at the submission server's relay
# and in the recipient's mailbox). Gateway, Dovecot submission and LMTP are
# real (lib/submission.sh).
#  1. commands out of order: MAIL before EHLO (503), before AUTH (530),
#     RCPT before MAIL (503), DATA before RCPT (503), a second AUTH (503),
#     EHLO without a name (501), an unknown command (500), BDAT (502);
#  2. a 3000-byte command line: 500 5.5.2, the session goes on;
#  3. a command ending in a bare LF: 500 5.5.2, the session goes on;
#  4. size: MAIL with SIZE over smtp.max_message_size (552 5.3.4 at once),
#     and DATA over it without SIZE (552 5.3.4 at the end, nothing sent);
#  5. too many recipients: 452 4.5.3;
#  6. bad addresses and parameters: 501 5.1.7, 501 5.1.3, 555 5.5.4;
#  7. a bare LF inside DATA: 521 5.5.2 and the connection closes; nothing sent;
#  7b. a NUL byte inside DATA: 554 5.6.0 (mail cannot carry NUL, nor can the
#     XDELIVER literal), nothing sent or queued, the session goes on;
#  8. DATA cut by a disconnect: nothing sent;
#  9. everything pipelined in one write (RFC 2920): replies in order, sent once;
# 10. ten errors in a row: 421 and the connection closes;
# 11. with listen.plaintext_login=never: no AUTH in EHLO before STARTTLS,
#     AUTH is 538 5.7.11; after STARTTLS it is offered and works.
#
# By hand: tests/integration/t_smtp_bad_input.sh

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/submission.sh"

gen_certs
start_store_with_submission
start_gateway --set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA"
gw_env
export SMTP_CTL DOVECOT_IMAP
P=$(free_port)
SP=$(free_port)
PROXY_ARGS=(--listen "127.0.0.1:$P" --listen-tls none --smtp-listen "127.0.0.1:$SP" --smtp-listen-tls none
	--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id bad-dev -v
	--set smtp.max_message_size=64K --set smtp.max_recipients=3 --state-dir "$T/proxy-state")
start_proxy "${PROXY_ARGS[@]}"
export SP PROXY_CERT="$T/proxy-state/proxy-cert.pem" PROXY_STATE="$T/proxy-state"

py_part "bad input" <<'PY'
from gwt import *
from sendt import *
from smtpt import *
SP = int(E["SP"])
AUTH = "AUTH PLAIN AGFsaWNlAHNlY3JldA=="

def session(auth=True):
    r = Raw(SP)
    check(r.reply()[0] == 220, "greeting", quiet=True)
    check(r.cmd("EHLO client.test")[0] == 250, "EHLO", quiet=True)
    if auth:
        check(r.cmd(AUTH)[0] == 235, "AUTH", quiet=True)
    return r

def expect(r, line, code, what, enh=None):
    got, lines = r.cmd(line) if line is not None else r.reply()
    ok = got == code and (enh is None or lines[-1][4:].startswith(enh))
    check(ok, "%s: %s -> %s" % (what, (line or "")[:40], lines[-1] if lines else "closed"))

def still_works(r):
    expect(r, "NOOP", 250, "the session goes on")

def nothing_sent(mid):
    """Check that mid never arrives. Instead of sleeping a while, send a
    later message on a new session and wait for it: the proxy handled mid's
    session before this one, so by the time the later one is in bob's INBOX,
    a wrongly sent mid would be there too."""
    barrier = new_id("barrier")
    r = session()
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL (barrier)")
    expect(r, "RCPT TO:<bob@mail.test>", 250, "RCPT (barrier)")
    expect(r, "DATA", 354, "DATA (barrier)")
    r.send(message(barrier, "barrier") + b".\r\n")
    expect(r, None, 250, "a later message is accepted")
    r.close()
    expect_once("bob", barrier, "the later message")
    check(delivered_count(mid) == 0 and search_msgid("bob", mid) == [], "nothing was sent")

@step("1. commands out of order")
def _():
    r = Raw(SP)
    r.reply()
    expect(r, "MAIL FROM:<alice@mail.test>", 503, "MAIL before EHLO", "5.5.1")
    expect(r, "EHLO", 501, "EHLO without a name", "5.5.4")
    expect(r, "EHLO client.test", 250, "EHLO")
    expect(r, "MAIL FROM:<alice@mail.test>", 530, "MAIL before AUTH", "5.7.0")
    expect(r, "RCPT TO:<bob@mail.test>", 503, "RCPT before MAIL", "5.5.1")
    expect(r, AUTH, 235, "AUTH")
    expect(r, AUTH, 503, "a second AUTH", "5.5.1")
    expect(r, "QUIT", 221, "QUIT")
    r.close()
    r = session()  # a new session: SMTP_SERVER_MAX_ERRORS counts per session
    expect(r, "DATA", 503, "DATA before MAIL", "5.5.1")
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    expect(r, "MAIL FROM:<alice@mail.test>", 503, "a nested MAIL", "5.5.1")
    expect(r, "DATA", 503, "DATA before RCPT", "5.5.1")
    expect(r, "FROBNICATE", 500, "an unknown command", "5.5.2")
    expect(r, "BDAT 10 LAST", 502, "BDAT (not offered)", "5.5.1")
    expect(r, "QUIT", 221, "QUIT")
    r.close()

@step("2. a command line too long")
def _():
    r = session()
    expect(r, "NOOP " + "x" * 3000, 500, "3000-byte line", "5.5.2")
    still_works(r)
    r.close()

@step("3. a bare LF at the end of a command")
def _():
    r = session()
    r.send("NOOP\n")
    expect(r, None, 500, "bare LF", "5.5.2")
    still_works(r)
    r.close()

@step("4. over the size limit: by SIZE and by counting; nothing sent")
def _():
    r = session()
    expect(r, "MAIL FROM:<alice@mail.test> SIZE=100000", 552, "SIZE over the limit", "5.3.4")
    mid = new_id("big")
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    expect(r, "RCPT TO:<bob@mail.test>", 250, "RCPT")
    expect(r, "DATA", 354, "DATA")
    r.send(message(mid, "too big", body=("x" * 76 + "\r\n") * 1500) + b".\r\n")
    expect(r, None, 552, "message over the limit", "5.3.4")
    still_works(r)
    r.close()
    nothing_sent(mid)

@step("5. too many recipients")
def _():
    r = session()
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    for i in range(3):
        expect(r, "RCPT TO:<bob+%d@mail.test>" % i, 250, "RCPT %d" % i)
    expect(r, "RCPT TO:<bob+9@mail.test>", 452, "a fourth recipient", "4.5.3")
    r.close()

@step("6. bad addresses and parameters")
def _():
    r = session()
    expect(r, "MAIL FROM:<alice smith@mail.test>", 501, "a sender with a space", "5.1.7")
    expect(r, "MAIL FROM:alice@mail.test", 501, "a sender without <>", "5.5.4")
    expect(r, "MAIL FROM:<alice@mail.test> FROB=1", 555, "an unknown parameter", "5.5.4")
    expect(r, "MAIL FROM:<alice@mail.test> BODY=8BITMIME", 250, "BODY=8BITMIME")
    expect(r, "RCPT TO:<nodomain>", 501, "a recipient without a domain", "5.1.3")
    expect(r, "RCPT TO:<>", 501, "an empty recipient", "5.1.3")
    expect(r, "RCPT TO:<bob@mail.test> NOTIFY=NEVER", 555, "a DSN parameter (not offered)", "5.5.4")
    r.close()

@step("7. a bare LF inside DATA: 521, closed, nothing sent")
def _():
    r = session()
    mid = new_id("barelf")
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    expect(r, "RCPT TO:<bob@mail.test>", 250, "RCPT")
    expect(r, "DATA", 354, "DATA")
    r.send(message(mid, "bare LF") + b"smuggled\n.\nMAIL FROM:<x@y>\r\n.\r\n")
    expect(r, None, 521, "bare LF in DATA", "5.5.2")
    check(r.closed(), "the connection is closed")
    nothing_sent(mid)

@step("7b. a NUL byte inside DATA: 554, nothing sent or queued, the session goes on")
def _():
    r = session()
    mid = new_id("nul")
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    expect(r, "RCPT TO:<bob@mail.test>", 250, "RCPT")
    expect(r, "DATA", 354, "DATA")
    r.send(message(mid, "a NUL", body="before \0 after\r\n") + b".\r\n")
    expect(r, None, 554, "NUL in DATA", "5.6.0")
    still_works(r)
    r.close()
    nothing_sent(mid)
    state = E["PROXY_STATE"]
    files = [os.path.join(d, f) for d, _, fs in os.walk(state) for f in fs]
    check(not any(mid.encode() in open(f, "rb").read() for f in files if os.path.isfile(f)),
          "nothing queued in the outbox")

@step("8. DATA cut by a disconnect: nothing sent")
def _():
    r = session()
    mid = new_id("cut")
    expect(r, "MAIL FROM:<alice@mail.test>", 250, "MAIL")
    expect(r, "RCPT TO:<bob@mail.test>", 250, "RCPT")
    expect(r, "DATA", 354, "DATA")
    r.send(message(mid, "cut short") + b"the rest never comes\r\n")
    r.close()
    nothing_sent(mid)

@step("9. pipelined in one write")
def _():
    r = Raw(SP)
    r.reply()
    mid = new_id("pipe")
    r.send("EHLO c\r\n" + AUTH + "\r\nMAIL FROM:<alice@mail.test>\r\nRCPT TO:<bob@mail.test>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(5)]
    check(codes == [250, 235, 250, 250, 354], "replies in order: %r" % codes)
    r.send(message(mid, "pipelined") + b".\r\nQUIT\r\n")
    check([r.reply()[0], r.reply()[0]] == [250, 221], "sent, then QUIT")
    r.close()
    expect_once("bob", mid, "pipelined")

@step("10. ten errors: 421, closed")
def _():
    r = Raw(SP)
    r.reply()
    for i in range(10):
        r.cmd("BOGUS %d" % i)
    code, lines = r.reply()
    check(code == 421, "421 after ten errors: %r" % lines)
    check(r.closed(), "the connection is closed")

@step("and the listener still works")
def _():
    mid = new_id("after")
    res = send(SP, "alice", message(mid, "after the bad input"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(res.code == 250, "%r" % res)
    expect_once("bob", mid, "after the bad input")

run_steps()
PY
proxy_alive || fail "the proxy died"
stop_pid "$PROXY_PID"

PROXY_LOG="$T/proxy2.log"
start_proxy "${PROXY_ARGS[@]}" --set listen.plaintext_login=never
py_part "AUTH needs TLS" <<'PY'
from gwt import *
from sendt import *
from smtpt import *
SP = int(E["SP"])

@step("11. listen.plaintext_login=never: AUTH only after STARTTLS")
def _():
    r = Raw(SP)
    r.reply()
    code, lines = r.cmd("EHLO c")
    check(not any("AUTH" in l for l in lines) and any("STARTTLS" in l for l in lines), "EHLO: STARTTLS, no AUTH")
    code, lines = r.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    check(code == 538 and lines[-1][4:].startswith("5.7.11"), "AUTH before TLS: %r" % lines)
    r.close()
    mid = new_id("tlsonly")
    res = send(SP, "alice", message(mid, "after STARTTLS"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(res.code == 250, "after STARTTLS: %r" % res)
    expect_once("bob", mid, "after STARTTLS")

run_steps()
PY
stop_pid "$PROXY_PID"
gw_stop
gw_finish
