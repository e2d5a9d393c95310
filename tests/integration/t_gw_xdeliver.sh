#!/bin/bash
# t_gw_xdeliver.sh - pimap-gateway's XDELIVER (docs/PROTOCOL.md section 6)
# against a real submission server: Dovecot's submission service (STARTTLS,
# AUTH with the user's own password) relaying into Dovecot's LMTP
# (lib/submission.sh).
#  1. XDELIVER is advertised before and after login, in plain and P-IMAP
#     sessions; a message sent with N arrives in bob's INBOX once, with the
#     sender taken from From (Return-Path);
#  2. a recipient the server refuses: NO [SMTP 550 5.1.1] with the server's
#     text, and all or nothing: the valid recipient in the same XDELIVER gets
#     nothing;
#  3. the response is lost (the client drops the connection right after
#     sending): the retry on a new connection says "Already sent" and the
#     message is there once;
#  4. SAVETO: OK [APPENDUID v u], the copy is in Sent at that UID with \Seen;
#     a retry gives the same APPENDUID;
#  5. R ... Y: the original's attachments (from the store, not from the
#     client) are in the message bob gets; a wrong UIDVALIDITY is NO;
#  6. a temporary refusal (451) is NO [SMTP 451 4.3.0]; once the server
#     takes mail again, the same message is sent (a refusal is not
#     remembered as sent);
#  7. the server never answers the final dot: NO [DELIVERYUNKNOWN], and the
#     retry is not sent again;
#  8. in a P-IMAP session with INBOX selected, sending to oneself gives no
#     unsolicited EXISTS in XDELIVER's response;
#  9. bad syntax is BAD and the connection goes on;
# 10. the memory of sent messages survives a gateway restart.
#
# By hand: tests/integration/t_gw_xdeliver.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/submission.sh"

gen_certs
start_store_with_submission
GW_ARGS=(--set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA"
	--set submission.timeout=3s --trace)
start_gateway "${GW_ARGS[@]}"
gw_env
export SMTP_CTL DOVECOT_IMAP

python3 - <<'PY' || hard_error "cannot prepare alice's mailboxes"
import gwt
s = gwt.store("alice")
s.ok("CREATE Sent")
msg = (b"From: Carol <carol@mail.test>\r\nTo: alice@mail.test\r\nSubject: with attachments\r\n"
       b"Message-ID: <orig.1@pimap.test>\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
       b"--XX\r\nContent-Type: text/plain\r\n\r\nSee the two files.\r\n"
       b"--XX\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
       b"Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\nUERGLXJlcG9ydC1ieXRlcw==\r\n"
       b"--XX\r\nContent-Type: text/csv; name=\"data.csv\"\r\n\r\na,b\r\n1,2\r\n"
       b"--XX--\r\n")
s.ok("APPEND INBOX ", gwt.Literal(msg, sync=False))
s.ok("LOGOUT")
PY

py_part "XDELIVER" <<'PY'
import re, socket, ssl
from gwt import *
from sendt import *

def logged_in(user="alice", device=None):
    c = gw()
    r = c.command('LOGIN "%s%s" "%s"' % (user, "#P" + device if device else "", PASS))[1][-1]
    check(r.status == "OK", "login %s%s: %s" % (user, " device " + device if device else "", r.first), quiet=True)
    c.caps_after = r.first
    return c

SENT = {}

@step("1. advertised; N arrives once with the sender from From")
def _():
    c = gw()
    _, resps = c.command("CAPABILITY")
    check(any(" XDELIVER" in r.first for r in resps if r.first.startswith("* CAPABILITY")), "XDELIVER before login")
    c.close()
    c = logged_in()
    check(" XDELIVER" in c.caps_after, "XDELIVER in the login's capabilities (plain session)")
    p = logged_in(device="dev1")
    check(" XDELIVER" in p.caps_after, "XDELIVER in a P-IMAP session's capabilities")
    p.close()
    mid = new_id("n")
    r = xdeliver(c, message(mid, "plain new"), ["bob@mail.test"])
    check(r.status == "OK" and re.search(r"\[SMTP 250 2\.\d\.\d\]", r.first), "XDELIVER N: %s" % r.first)
    expect_once("bob", mid, "N")
    uid = search_msgid("bob", mid)[0]
    f = fetch_uid("bob", uid, "BODY.PEEK[HEADER.FIELDS (RETURN-PATH)]")
    check(b"alice@mail.test" in f.literals[0], "envelope sender from From: %r" % f.literals[0])
    SENT["n"] = mid
    c.close()

@step("2. a refused recipient: the server's 5xx, and nothing for the others")
def _():
    c = logged_in()
    mid = new_id("rej")
    r = xdeliver(c, message(mid, "to nobody"), ["nosuch@mail.test"], sync=True)
    check(r.status == "NO" and "[SMTP 550 5.1.1]" in r.first and "nosuch" in r.first, "NO with the 550: %s" % r.first)
    mid2 = new_id("rej2")
    r = xdeliver(c, message(mid2, "to bob and nobody"), ["bob@mail.test", "nosuch@mail.test"])
    check(r.status == "NO" and "[SMTP 550 5.1.1]" in r.first, "one refused recipient refuses all: %s" % r.first)
    time.sleep(1)
    check(search_msgid("bob", mid2) == [] and delivered_count(mid2) == 0, "bob got nothing")
    r = c.command("NOOP")[1][-1]
    check(r.status == "OK", "the connection goes on")
    c.close()

@step("3. lost response: the retry is not sent again")
def _():
    mid = new_id("lost")
    msg = message(mid, "lost answer")
    c = logged_in()
    env = envelope("bob@mail.test")
    c.send(b"L1 XDELIVER N ENVELOPE " + env.encode() + b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
    c.close()  # gone before any answer
    c = logged_in()
    r = xdeliver(c, msg, ["bob@mail.test"])
    check(r.status == "OK" and "250" in r.first, "retry answered OK: %s" % r.first)
    expect_once("bob", mid, "lost response")
    r = xdeliver(c, msg, ["bob@mail.test"])
    check(r.status == "OK" and "Already sent" in r.first, "a later retry: %s" % r.first)
    check(len(search_msgid("bob", mid)) == 1, "still once")
    c.close()

@step("4. SAVETO: APPENDUID, the copy in Sent, the same APPENDUID on retry")
def _():
    c = logged_in()
    mid = new_id("save")
    r = xdeliver(c, message(mid, "saved copy"), ["bob@mail.test"], saveto="Sent")
    m = re.search(r"\[APPENDUID (\d+) (\d+)\] 250", r.first)
    check(r.status == "OK" and m, "OK [APPENDUID v u] 250 ...: %s" % r.first)
    uid = int(m.group(2))
    check(search_msgid("alice", mid, "Sent") == [uid], "the copy is in Sent at UID %d" % uid)
    f = fetch_uid("alice", uid, "FLAGS", "Sent")
    check("\\Seen" in f.first, "saved copy is \\Seen: %s" % f.first)
    expect_once("bob", mid, "SAVETO")
    r2 = xdeliver(c, message(mid, "saved copy"), ["bob@mail.test"], saveto="Sent")
    check(r2.status == "OK" and "[APPENDUID %s %s]" % (m.group(1), m.group(2)) in r2.first,
          "retry gives the same APPENDUID: %s" % r2.first)
    check(len(search_msgid("alice", mid, "Sent")) == 1, "and saves no second copy")
    c.close()

@step("5. R ... Y: the original's attachments come from the store")
def _():
    s = store("alice")
    resps = s.ok("EXAMINE INBOX")
    uv = int(re.search(r"UIDVALIDITY (\d+)", " ".join(r.first for r in resps)).group(1))
    uid = int(re.search(r"SEARCH (\d+)", " ".join(r.first for r in s.ok('UID SEARCH HEADER Message-ID "<orig.1@pimap.test>"'))).group(1))
    s.close()
    c = logged_in()
    mid = new_id("fwd")
    msg = message(mid, "Fwd: with attachments", body="Here they are.\r\n",
                  extra="Content-Type: text/plain; charset=us-ascii\r\n")
    r = xdeliver(c, msg, ["bob@mail.test"], head="F INBOX %d %d Y" % (uv, uid))
    check(r.status == "OK", "XDELIVER F ... Y: %s" % r.first)
    expect_once("bob", mid, "forward")
    got = fetch_uid("bob", search_msgid("bob", mid)[0]).literals[0]
    check(b"multipart/mixed" in got and b"Here they are." in got, "a multipart with the client's text")
    check(b"UERGLXJlcG9ydC1ieXRlcw==" in got and b"report.pdf" in got, "the PDF attachment, as the store has it")
    check(b"a,b\r\n1,2" in got, "the CSV attachment")
    check(b"See the two files." not in got, "not the original's body")
    r = xdeliver(c, message(new_id("fwd2"), "Fwd: gone"), ["bob@mail.test"], head="F INBOX %d %d Y" % (uv + 1, uid))
    check(r.status == "NO" and "[NONEXISTENT]" in r.first, "wrong UIDVALIDITY: %s" % r.first)
    r = xdeliver(c, message(new_id("re"), "Re: no attachments"), ["bob@mail.test"], head="R INBOX %d %d N" % (uv, uid))
    check(r.status == "OK", "R ... N sends the message as it is: %s" % r.first)
    c.close()

@step("6. a temporary refusal is passed on, and not remembered as sent")
def _():
    c = logged_in()
    mid = new_id("temp")
    with open(os.path.join(E["SMTP_CTL"], "tempfail"), "w") as f:
        f.write("try again later (test)")
    try:
        r = xdeliver(c, message(mid, "tempfail"), ["bob@mail.test"])
    finally:
        os.unlink(os.path.join(E["SMTP_CTL"], "tempfail"))
    check(r.status == "NO" and "[SMTP 451 4.3.0]" in r.first and "try again later" in r.first, "451 passed on: %s" % r.first)
    r = xdeliver(c, message(mid, "tempfail"), ["bob@mail.test"])
    check(r.status == "OK" and "Already" not in r.first, "the same message is sent once the server takes it: %s" % r.first)
    expect_once("bob", mid, "after a 451")
    c.close()

@step("7. no answer to the final dot: DELIVERYUNKNOWN, never sent again")
def _():
    c = logged_in()
    mid = new_id("hang")
    with open(os.path.join(E["SMTP_CTL"], "hang"), "w") as f:
        f.write("hang")
    try:
        r = xdeliver(c, message(mid, "hang"), ["bob@mail.test"], timeout=30)
    finally:
        os.unlink(os.path.join(E["SMTP_CTL"], "hang"))
    check(r.status == "NO" and "[DELIVERYUNKNOWN]" in r.first, "NO [DELIVERYUNKNOWN]: %s" % r.first)
    r = xdeliver(c, message(mid, "hang"), ["bob@mail.test"])
    check(r.status == "NO" and "[DELIVERYUNKNOWN]" in r.first, "the retry is not sent: %s" % r.first)
    check(delivered_count(mid) == 0, "nothing went out")
    c.close()

@step("8. P-IMAP session, INBOX selected, sending to oneself: no unsolicited EXISTS")
def _():
    c = logged_in(device="dev8")
    c.ok("SELECT INBOX")
    mid = new_id("self")
    r = xdeliver(c, message(mid, "to myself", to="alice@mail.test"), ["alice@mail.test"])
    check(r.status == "OK", "XDELIVER in a P-IMAP session: %s" % r.first)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in r.all), "no EXISTS with XDELIVER's answer: %r" % firsts(r.all))
    wait_count("alice", mid, 1)
    resps = c.ok("NOOP")
    check(any(re.match(r"\* \d+ EXISTS", x.first) for x in resps), "the new message shows up at the next command")
    c.ok("LOGOUT")
    c.close()

@step("9. bad syntax")
def _():
    c = logged_in()
    for cmd in ["XDELIVER", "XDELIVER X ENVELOPE ((NIL NIL a b)) {1+}\r\nz", "XDELIVER N ENVELOPE NIL {1+}\r\nz",
                "XDELIVER N ENVELOPE ((NIL NIL a b)) \"x\""]:
        tag, resps = c.command(cmd)
        check(resps[-1].status == "BAD", "%r -> %s" % (cmd, resps[-1].first))
    mid = new_id("nofrom")
    r = xdeliver(c, b"To: bob@mail.test\r\nMessage-ID: " + mid.encode() + b"\r\n\r\nno From\r\n", ["bob@mail.test"])
    check(r.status == "NO", "a message without From: %s" % r.first)
    check(c.command("NOOP")[1][-1].status == "OK", "the connection goes on")
    c.close()

run_steps()
PY

stop_gateway
start_gateway "${GW_ARGS[@]}"
py_part "after a restart" <<'PY'
from gwt import *
from sendt import *

@step("10. the memory of sent messages survives a restart")
def _():
    import glob
    c = gw()
    check(c.command('LOGIN alice "%s"' % PASS)[1][-1].status == "OK", "login", quiet=True)
    # step 3's message: find its id in bob's mailbox
    s = store("bob")
    s.ok("EXAMINE INBOX")
    resps = s.ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])")
    mid = None
    for r in resps:
        if r.literals and b"lost answer" in r.literals[0]:
            mid = re.search(rb"Message-ID: (\S+)", r.literals[0], re.I).group(1).decode()
    s.close()
    check(mid is not None, "the message of step 3 is in bob's INBOX")
    r = xdeliver(c, message(mid, "lost answer"), ["bob@mail.test"])
    check(r.status == "OK" and "Already sent" in r.first, "after the restart: %s" % r.first)
    check(len(search_msgid("bob", mid)) == 1, "still once")
    c.close()

run_steps()
PY
gw_stop
gw_finish
