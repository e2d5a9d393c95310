#!/bin/bash
# t_smtp.sh - pimap-proxy's SMTP listener in front of pimap-gateway's
# XDELIVER, sending through a real submission server (Dovecot's submission
# service relaying into Dovecot's LMTP, lib/submission.sh); the proxy
# reaches the gateway through lib/linkrelay.py, which the test cuts or
# makes lose the gateway's answers.
#  1. EHLO: SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS and
#     AUTH PLAIN LOGIN (loopback peer); after STARTTLS (certificate checked
#     against the proxy's own) no STARTTLS;
#  2. a message sent with STARTTLS, one over the implicit-TLS port, one with
#     AUTH LOGIN: each arrives in bob's INBOX exactly once; a message without
#     Message-ID gets one;
#  3. a recipient the server refuses: the client gets its 550 5.1.1 at DATA;
#     a wrong password: 535;
#  4. smtp.save_sent=carol=Sent: carol's copy is in her Sent (\Seen); alice
#     (not configured) gets none;
#  5. the gateway down: alice (checked before) is taken offline and her
#     message is queued (250 "Queued"), which pimap-proxy --status shows;
#     dave (never checked) gets 454; when the gateway is back the message
#     arrives exactly once, and --status shows the outbox empty;
#  6. a queued message that fails for good: a bounce (RFC 3464) in alice's
#     INBOX naming the recipient, Status 5.1.1 and the message's header;
#  7. the gateway's answer to XDELIVER is lost: after smtp.deliver_timeout
#     the message is queued; once answers flow again it is not sent twice;
#  8. kill -9 of the proxy right after a "queued" 250: nothing is sent until
#     alice logs in again (IMAP, through the proxy), then exactly once;
#  9. kill -9 between the gateway's OK and the outbox update (answers lost,
#     the gateway has sent it): after the restart and a login the gateway
#     says "Already sent" and the message is there exactly once.
#
# By hand: tests/integration/t_smtp.sh (after building src/pimap-proxy and src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/submission.sh"

gen_certs
start_store_with_submission
GW_ARGS=(--set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA")
start_gateway "${GW_ARGS[@]}"
gw_env
export SMTP_CTL DOVECOT_IMAP
python3 - <<'PY' || hard_error "cannot create the Sent folders"
import gwt
for u in ("alice", "carol"):
    s = gwt.store(u); s.ok("CREATE Sent"); s.ok("LOGOUT")
PY

RELAY_PORT=$(free_port)
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$T/relay.ctl"
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$SPAWNED_PID" || fail "link relay does not listen"
relay() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.recv(100).decode().strip())' "$T/relay.ctl" "$1" >/dev/null; }

P=$(free_port)
SP=$(free_port)
STP=$(free_port)
PROXY_ARGS=(--listen "127.0.0.1:$P" --listen-tls none --smtp-listen "127.0.0.1:$SP" --smtp-listen-tls "127.0.0.1:$STP"
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id smtp-dev --trace -v
	--set smtp.retry_min=300ms --set smtp.retry_max=1s --set smtp.deliver_timeout=3s
	--set "smtp.save_sent=carol=Sent" --state-dir "$T/proxy-state")
start_proxy "${PROXY_ARGS[@]}"
export P SP STP PROXY_CERT="$T/proxy-state/proxy-cert.pem" PROXY_STATE="$T/proxy-state"

outbox_size() { find "$T/proxy-state/outbox" -maxdepth 1 -type f -name '*-*-*' | wc -l; }

py_part "sending with the gateway up" <<'PY'
from gwt import *
from sendt import *
from smtpt import *
SP, STP = int(E["SP"]), int(E["STP"])
CAF = E["PROXY_CERT"]

@step("1. EHLO")
def _():
    r = Raw(SP)
    check(r.reply()[0] == 220, "greeting")
    code, lines = r.cmd("EHLO client.test")
    caps = " ".join(l[4:] for l in lines)
    for want in ("SIZE 33554432", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH PLAIN LOGIN"):
        check(want in caps, "EHLO offers %s" % want)
    r.close()
    s = connect(SP, "starttls", CAF)
    check("starttls" not in s.esmtp_features and "auth" in s.esmtp_features,
          "after STARTTLS (certificate checked against the proxy's): AUTH, no STARTTLS")
    s.quit()

@step("2. messages arrive exactly once (STARTTLS, TLS port, AUTH LOGIN, no Message-ID)")
def _():
    mid = new_id("st")
    r = send(SP, "alice", message(mid, "via STARTTLS"), ["bob@mail.test"], cafile=CAF)
    check(r.code == 250 and r.text.startswith("2.0.0"), "DATA: %r" % r)
    expect_once("bob", mid, "STARTTLS")
    mid = new_id("tls")
    r = send(STP, "alice", message(mid, "via the TLS port"), ["bob@mail.test"], mode="tls", cafile=CAF)
    check(r.code == 250, "implicit TLS: %r" % r)
    expect_once("bob", mid, "TLS port")
    mid = new_id("login")
    raw = Raw(SP)
    raw.reply()
    raw.cmd("EHLO c")
    check(raw.cmd("AUTH LOGIN")[0] == 334 and raw.cmd("YWxpY2U=")[0] == 334, "AUTH LOGIN asks for user and password")
    check(raw.cmd("c2VjcmV0")[0] == 235, "AUTH LOGIN accepted")
    raw.cmd("MAIL FROM:<alice@mail.test>")
    raw.cmd("RCPT TO:<bob@mail.test>")
    check(raw.cmd("DATA")[0] == 354, "DATA")
    raw.send(message(mid, "via AUTH LOGIN") + b".\r\n")
    check(raw.reply()[0] == 250, "sent")
    raw.cmd("QUIT")
    expect_once("bob", mid, "AUTH LOGIN")
    r = send(SP, "alice", b"From: alice@mail.test\r\nTo: bob@mail.test\r\nSubject: no id here\r\n\r\nx\r\n",
             ["bob@mail.test"], cafile=CAF)
    check(r.code == 250, "no Message-ID: %r" % r)
    s = store("bob")
    s.ok("EXAMINE INBOX")
    uids = [int(x) for x in [r for r in s.ok('UID SEARCH SUBJECT "no id here"') if r.first.startswith("* SEARCH")][0].first.split()[2:]]
    check(len(uids) == 1, "arrived once")
    f = [r for r in s.ok("UID FETCH %d (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])" % uids[0]) if " FETCH " in r.first][0]
    check(re.search(rb"Message-ID: <\d+\.[0-9a-f]+@", f.literals[0]) is not None, "the proxy gave it a Message-ID: %r" % f.literals[0])
    s.close()

@step("3. a refused recipient: 550 5.1.1 at DATA; a wrong password: 535")
def _():
    mid = new_id("rej")
    r = send(SP, "alice", message(mid, "to nobody"), ["nosuch@mail.test"], cafile=CAF)
    check(r.stage == "DATA" and r.code == 550 and r.text.startswith("5.1.1") and "nosuch" in r.text, "%r" % r)
    r = send(SP, "alice", message(new_id("pw"), "wrong password"), ["bob@mail.test"], password="wrong", cafile=CAF)
    check(r.stage == "AUTH" and r.code == 535, "%r" % r)

@step("4. smtp.save_sent: carol's copy in Sent, none for alice")
def _():
    mid = new_id("carol")
    r = send(SP, "carol", message(mid, "carol saves", frm="carol@mail.test"), ["bob@mail.test"], cafile=CAF)
    check(r.code == 250, "%r" % r)
    expect_once("bob", mid, "carol")
    uids = search_msgid("carol", mid, "Sent")
    check(len(uids) == 1, "the copy is in carol's Sent")
    check("\\Seen" in fetch_uid("carol", uids[0], "FLAGS", "Sent").first, "and \\Seen")
    check(search_msgid("alice", mid, "Sent") == [] and len(search_msgid("alice", "@", "Sent")) == 0,
          "alice's Sent is empty (save_sent is off by default)")

run_steps()
PY

# --- 5. the gateway down during the send --------------------------------------
stop_gateway
py_part "gateway down" <<'PY'
from gwt import *
from sendt import *
from smtpt import *
SP = int(E["SP"])

@step("5a. the gateway down: queued for a user checked before, 454 for one never checked")
def _():
    mid = new_id("down")
    r = send(SP, "alice", message(mid, "gateway down"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(r.code == 250 and "Queued" in r.text, "queued: %r" % r)
    open(os.path.join(E["T"], "down.id"), "w").write(mid)
    r = send(SP, "dave", message(new_id("dave"), "dave"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(r.stage == "AUTH" and r.code == 454, "never checked: %r" % r)
    check(search_msgid("bob", mid) == [], "not delivered yet")

run_steps()
PY
[ "$(outbox_size)" = 1 ] || fail "the outbox holds $(outbox_size) entries, not 1"
# pimap-proxy --status shows the queue (and empties with it, after 5b).
status_outbox() { "$PROXY_BIN" --status --state-dir "$T/proxy-state" 2>&1 | grep '^outbox'; }
status_outbox >"$T/status.out"
grep -Eq '^outbox: 1 queued \([0-9]+ bytes\), oldest [0-9]+s$' "$T/status.out" &&
	grep -Eq '^outbox alice: 1 queued(, next try in [0-9]+s|, sending)$' "$T/status.out" ||
	{ cat "$T/status.out" >&2; fail "pimap-proxy --status does not show the queued message"; }
log "ok: pimap-proxy --status shows the queued message"
start_gateway "${GW_ARGS[@]}"
py_part "gateway back" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("5b. the gateway back: the queued message arrives exactly once")
def _():
    mid = open(os.path.join(E["T"], "down.id")).read()
    expect_once("bob", mid, "after the gateway came back")
    wait_until(lambda: not [f for f in os.listdir(E["PROXY_STATE"] + "/outbox") if "-" in f], 10, "an empty outbox")

run_steps()
PY
wait_for 10 sh -c '"$1" --status --state-dir "$2" | grep -qx "outbox: empty"' _ "$PROXY_BIN" "$T/proxy-state" ||
	fail "pimap-proxy --status does not show the empty outbox"

# --- 6. a queued message fails for good: a bounce in INBOX ----------------------
stop_gateway
py_part "bounce, queued" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("6a. queued while the gateway is down, to a recipient that does not exist")
def _():
    mid = new_id("bounce")
    r = send(int(E["SP"]), "alice", message(mid, "Lunch on Friday?", to="nosuch@mail.test"), ["nosuch@mail.test"],
             cafile=E["PROXY_CERT"])
    check(r.code == 250 and "Queued" in r.text, "queued: %r" % r)
    open(os.path.join(E["T"], "bounce.id"), "w").write(mid)

run_steps()
PY
start_gateway "${GW_ARGS[@]}"
py_part "bounce" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("6b. the bounce in alice's INBOX")
def _():
    mid = open(os.path.join(E["T"], "bounce.id")).read()
    def bounces():
        s = store("alice")
        try:
            s.ok("EXAMINE INBOX")
            r = [x for x in s.ok('UID SEARCH SUBJECT "Undelivered Mail Returned to Sender"') if x.first.startswith("* SEARCH")]
            return [int(u) for u in r[0].first.split()[2:]] if r else []
        finally:
            s.close()
    wait_until(lambda: bounces(), 20, "a bounce in INBOX")
    uids = bounces()
    check(len(uids) == 1, "exactly one bounce")
    body = fetch_uid("alice", uids[0]).literals[0]
    for want in (b"multipart/report; report-type=delivery-status", b"Final-Recipient: rfc822; nosuch@mail.test",
                 b"Action: failed", b"Status: 5.1.1", b"Diagnostic-Code: smtp; 550 5.1.1",
                 b"Content-Type: text/rfc822-headers", mid.encode(), b"Subject: Undelivered Mail Returned to Sender: Lunch on Friday?"):
        check(want in body, "the bounce has %r" % want)
    check(delivered_count(mid) == 0, "nothing was delivered")
    wait_until(lambda: not [f for f in os.listdir(E["PROXY_STATE"] + "/outbox") if "-" in f], 10, "an empty outbox")

run_steps()
PY

# --- 7. the gateway's answer to XDELIVER is lost ----------------------------------
relay drop
py_part "lost answer" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("7a. no answer from the gateway: queued after smtp.deliver_timeout")
def _():
    mid = new_id("lostans")
    t0 = time.monotonic()
    r = send(int(E["SP"]), "alice", message(mid, "answer lost"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(r.code == 250 and "Queued" in r.text and time.monotonic() - t0 >= 2.5, "queued after the timeout: %r" % r)
    check(wait_count("bob", mid, 1) == 1, "the gateway sent it meanwhile")
    open(os.path.join(E["T"], "lost.id"), "w").write(mid)

run_steps()
PY
relay restore
py_part "lost answer, link back" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("7b. answers flow again: the retry is recognised, nothing twice")
def _():
    mid = open(os.path.join(E["T"], "lost.id")).read()
    wait_until(lambda: not [f for f in os.listdir(E["PROXY_STATE"] + "/outbox") if "-" in f], 20, "an empty outbox")
    check(len(search_msgid("bob", mid)) == 1 and delivered_count(mid) == 1, "exactly once")

run_steps()
PY
grep -q "Already sent" "$PROXY_LOG" || fail "the proxy never got the gateway's 'Already sent'"

# --- 8. kill -9 right after a queued 250 ----------------------------------------------
relay cut
py_part "queued before the crash" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("8a. queued (link down)")
def _():
    mid = new_id("kill")
    r = send(int(E["SP"]), "alice", message(mid, "before kill -9"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(r.code == 250 and "Queued" in r.text, "queued: %r" % r)
    open(os.path.join(E["T"], "kill.id"), "w").write(mid)

run_steps()
PY
stop_pid "$PROXY_PID" KILL
relay restore
PROXY_LOG="$T/proxy2.log"
start_proxy "${PROXY_ARGS[@]}"
wait_log "$PROXY_LOG" "sent at that user's next login" 10 || fail "the restarted proxy does not see the queued message"
py_part "after the crash" <<'PY'
from gwt import *
from sendt import *
from smtpt import *
import imapc

@step("8b. nothing before alice logs in; exactly once after an IMAP login through the proxy")
def _():
    mid = open(os.path.join(E["T"], "kill.id")).read()
    time.sleep(1.5)  # several smtp.retry_min periods: a drain without credentials would show now
    check(search_msgid("bob", mid) == [], "not sent without the user's credentials")
    c = imapc.Client("127.0.0.1", int(E["P"]))
    c.connect()
    c.login("alice", PASS)
    expect_once("bob", mid, "after kill -9 and a login")
    c.close()

run_steps()
PY

# --- 9. kill -9 between the gateway's OK and the outbox update -----------------
relay drop
py_part "answers lost, then a crash" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("9a. queued; the gateway sent it, the proxy never heard")
def _():
    mid = new_id("window")
    r = send(int(E["SP"]), "alice", message(mid, "crash window"), ["bob@mail.test"], cafile=E["PROXY_CERT"])
    check(r.code == 250 and "Queued" in r.text, "queued: %r" % r)
    check(wait_count("bob", mid, 1) == 1, "delivered by the gateway")
    open(os.path.join(E["T"], "window.id"), "w").write(mid)

run_steps()
PY
stop_pid "$PROXY_PID" KILL
[ "$(outbox_size)" = 1 ] || fail "the outbox holds $(outbox_size) entries after the crash, not 1"
relay restore
PROXY_LOG="$T/proxy3.log"
start_proxy "${PROXY_ARGS[@]}"
py_part "after the second crash" <<'PY'
from gwt import *
from sendt import *
from smtpt import *

@step("9b. SMTP AUTH after the restart sends the queue: the gateway says Already sent")
def _():
    mid = open(os.path.join(E["T"], "window.id")).read()
    s = connect(int(E["SP"]), "starttls", E["PROXY_CERT"])
    s.login("alice", PASS)
    wait_until(lambda: not [f for f in os.listdir(E["PROXY_STATE"] + "/outbox") if "-" in f], 20, "an empty outbox")
    s.quit()
    check(len(search_msgid("bob", mid)) == 1 and delivered_count(mid) == 1, "exactly once")

run_steps()
PY
grep -q "Already sent" "$PROXY_LOG" || fail "the restarted proxy never got the gateway's 'Already sent'"
stop_pid "$PROXY_PID"
gw_stop
gw_finish
