#!/bin/bash
# t_smtp_clients.sh - real mail clients through pimap-proxy's SMTP listener,
# and compatibility mode (no gateway), against Dovecot's submission service
# relaying into Dovecot's LMTP (lib/submission.sh).
#  1. mutt (batch mode, smtp_url, STARTTLS with the proxy's certificate
#     accepted in its certificate_file) sends through the proxy and the
#     gateway: the message arrives in bob's INBOX exactly once;
#  2. mutt to a recipient the server refuses: mutt fails with the 550 5.1.1;
#  3. swaks over --pipe to "pimap-proxy --smtp-stdio" (SMTP on stdin/stdout,
#     no TLS on the pipe, AUTH allowed): the message arrives once, and the
#     process exits when the session is over;
#  4. compatibility mode (imaps:// upstream, --submission smtp://...): mutt
#     sends, the message arrives once and its copy is in Sent
#     (smtp.save_sent=*=Sent);
#  5. compatibility mode, the submission server cut off: the message is
#     queued and arrives once when it is back;
#  6. compatibility mode, kill -9 with a queued message: after the restart
#     an IMAP AUTHENTICATE PLAIN without SASL-IR (Thunderbird's way) through
#     the proxy sends it, exactly once.
#
# By hand: tests/integration/t_smtp_clients.sh

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/submission.sh"
require mutt swaks

gen_certs
start_store_with_submission
start_gateway --set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA"
gw_env
export SMTP_CTL DOVECOT_IMAP
python3 - <<'PY' || hard_error "cannot create Sent"
import gwt
s = gwt.store("alice"); s.ok("CREATE Sent"); s.ok("LOGOUT")
PY

P=$(free_port)
SP=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none --smtp-listen "127.0.0.1:$SP" --smtp-listen-tls none \
	--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id clients-dev --trace -v
PROXY_CERT=$T/proxy-state/proxy-cert.pem

# mutt_send PORT SUBJECT RECIPIENT [STARTTLS yes|no]: mutt in batch mode; its exit status, stderr in $T/mutt.err
mutt_send() {
	cat >"$T/muttrc.send" <<EOF
set smtp_url="smtp://alice@127.0.0.1:$1/"
set smtp_pass="$DOVECOT_PASS"
set ssl_starttls=${4:-yes}
set ssl_force_tls=${4:-yes}
set certificate_file="$T/mutt-certs"
set from="Alice <alice@mail.test>"
set use_from=yes
set record=""
set copy=no
set charset="utf-8"
set send_charset="us-ascii:utf-8"
EOF
	printf 'Hello from mutt.\n' >"$T/mutt.body"
	env HOME="$HOME" timeout 60 mutt -n -F "$T/muttrc.send" -s "$2" -- "$3" <"$T/mutt.body" >"$T/mutt.out" 2>"$T/mutt.err"
}
cp "$PROXY_CERT" "$T/mutt-certs"
add_log "$T/mutt.err"

# subject_count USER SUBJECT [MAILBOX]: messages with that exact subject
subject_count() {
	python3 - "$@" <<'PY'
import sys, gwt
user, subj = sys.argv[1], sys.argv[2]
box = sys.argv[3] if len(sys.argv) > 3 else "INBOX"
s = gwt.store(user)
s.ok('EXAMINE "%s"' % box)
n = sum(len(r.first.split()) - 2 for r in s.ok('UID SEARCH HEADER Subject "%s"' % subj) if r.first.startswith("* SEARCH"))
s.ok("LOGOUT")
print(n)
PY
}
count_ge() { [ "$(subject_count "$1" "$2" "$4")" -ge "$3" ]; }
expect_count() { # USER SUBJECT WANT WHAT [MAILBOX]
	wait_for 20 count_ge "$1" "$2" "$3" "${5:-INBOX}" || true
	local n
	n=$(subject_count "$1" "$2" "${5:-INBOX}")
	[ "$n" = "$3" ] || fail "$4: $n copies of '$2' in $1's ${5:-INBOX}, want $3"
	log "ok: $4 ($n in $1's ${5:-INBOX})"
}

# --- 1, 2: mutt through the gateway ------------------------------------------------
mutt_send "$SP" "mutt via gateway" bob@mail.test || { cat "$T/mutt.err" >&2; fail "mutt could not send (status $?)"; }
expect_count bob "mutt via gateway" 1 "mutt's message arrived (STARTTLS)"
grep -q "C< 220 2.0.0 Ready to start TLS" "$PROXY_LOG" || fail "mutt did not use STARTTLS"

rc=0
mutt_send "$SP" "mutt to nobody" nosuch@mail.test || rc=$?
[ "$rc" != 0 ] || fail "mutt reported success for a refused recipient"
grep -q "550" "$T/mutt.err" || { cat "$T/mutt.err" >&2; fail "mutt's error does not show the 550"; }
log "ok: mutt fails with: $(tr '\n' ' ' <"$T/mutt.err" | head -c 200)"

# --- 3: swaks over a pipe to --smtp-stdio ----------------------------------------
mkdir -p "$T/stdio-state"
swaks --pipe "$PROXY_BIN --smtp-stdio --upstream pimaps://127.0.0.1:$GW_PORT --ca-file $CA --state-dir $T/stdio-state --log-file $T/proxy-stdio.log -v" \
	--auth PLAIN --auth-user alice --auth-password "$DOVECOT_PASS" --from alice@mail.test --to bob@mail.test \
	--header "Subject: swaks over stdio" --body "Hello through a pipe." --timeout 60 >"$T/swaks.out" 2>&1 ||
	{ cat "$T/swaks.out" >&2; fail "swaks --pipe failed"; }
add_log "$T/proxy-stdio.log"
grep -q "<-  250 2.0.0" "$T/swaks.out" || { cat "$T/swaks.out" >&2; fail "no 250 for swaks' message"; }
expect_count bob "swaks over stdio" 1 "swaks' message arrived (--smtp-stdio)"
grep -q "pimap-proxy stopped" "$T/proxy-stdio.log" || fail "the --smtp-stdio process did not end cleanly"
stop_pid "$PROXY_PID"

# --- 4-6: compatibility mode ------------------------------------------------------
SUB_RELAY=$(free_port)
spawn "$T/subrelay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$SUB_RELAY" "$SUBMISSION_PORT" "$T/subrelay.ctl"
wait_port 127.0.0.1 "$SUB_RELAY" 10 "$SPAWNED_PID" || fail "the submission relay does not listen"
subrelay() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.recv(100).decode().strip())' "$T/subrelay.ctl" "$1" >/dev/null; }
COMPAT_ARGS=(--listen "127.0.0.1:$P" --listen-tls none --smtp-listen "127.0.0.1:$SP" --smtp-listen-tls none
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --submission "smtp://127.0.0.1:$SUB_RELAY"
	--set "smtp.submission_ca_file=$CA" --set "smtp.save_sent=*=Sent" --set smtp.retry_min=300ms
	--set smtp.retry_max=1s --state-dir "$T/compat-state" --trace -v)
PROXY_LOG="$T/proxy-compat.log"
start_proxy "${COMPAT_ARGS[@]}"
cp "$T/compat-state/proxy-cert.pem" "$T/mutt-certs"

mutt_send "$SP" "mutt compat" bob@mail.test || { cat "$T/mutt.err" >&2; fail "mutt could not send in compatibility mode"; }
expect_count bob "mutt compat" 1 "compatibility mode: mutt's message arrived"
expect_count alice "mutt compat" 1 "compatibility mode: the copy is in Sent" Sent

subrelay cut
mutt_send "$SP" "compat queued" bob@mail.test || { cat "$T/mutt.err" >&2; fail "mutt got an error while the server was cut off"; }
grep -q "queued <" "$PROXY_LOG" || fail "the proxy did not queue the message"
[ "$(subject_count bob "compat queued")" = 0 ] || fail "sent while the submission server was cut off"
subrelay restore
expect_count bob "compat queued" 1 "compatibility mode: the queued message arrived once"

subrelay cut
mutt_send "$SP" "compat after kill" bob@mail.test || { cat "$T/mutt.err" >&2; fail "mutt got an error (cut off)"; }
stop_pid "$PROXY_PID" KILL
subrelay restore
PROXY_LOG="$T/proxy-compat2.log"
start_proxy "${COMPAT_ARGS[@]}"
wait_log "$PROXY_LOG" "sent at that user's next login" 10 || fail "the restarted proxy does not see the queue"
sleep 1 # a few retry periods: nothing may go without the user's credentials
[ "$(subject_count bob "compat after kill")" = 0 ] || fail "sent without a login"
P=$P python3 - <<'PY' || fail "IMAP AUTHENTICATE through the proxy failed"
import os, imapc
c = imapc.Client("127.0.0.1", int(os.environ["P"]))
c.connect()
r = c.authenticate_plain("alice", os.environ["DOVECOT_PASS"], initial_response=False)
assert r[-1].status == "OK", r[-1].first
c.close()
PY
expect_count bob "compat after kill" 1 "compatibility mode: queued before kill -9, sent once after an IMAP login"
stop_pid "$PROXY_PID"
gw_stop
pass
