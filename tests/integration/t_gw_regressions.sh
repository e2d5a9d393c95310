#!/bin/bash
# t_gw_regressions.sh - pimap-gateway defects found in review and fixed in
# 02eb19a; every section failed against the commit before it (6710bb0):
#  (a) SIGHUP, then LOGIN: the store target pointed into the freed old
#      configuration (an AddressSanitizer report, the gateway gone);
#  (b) resume with a parked connection, a live EXPUNGE, SELECT INBOX again:
#      the store's plain state, not the saved view the resume had consumed;
#      and after the store connection is lost, the next login does not
#      repeat the EXPUNGE the client already had;
#  (c) PIMAP_EVENT_FILTER NEW, IDLE, an EXPUNGE held back, the connection
#      drops: the next login reports the EXPUNGE or says RESYNC;
#  (d) pipelined SELECT Other / SELECT INBOX with a saved view of Other:
#      Other's answer is computed from Other, not from INBOX;
#  (e) PIMAP_INBAND_PUSH ON + EVENT_FILTER NEW: an EXPUNGE held in INBOX
#      comes before the SELECT data of the folder selected next;
#  (f) PIMAP_INBAND_NEW_FORMAT (UID BINARY.PEEK[1]) and a message whose first
#      part decodes to NUL bytes: the resume is complete and in step;
#  (g) limits.preauth_timeout=2s: NOOPs every 0.5 s before login do not keep
#      the connection open;
#  (h) limits.max_output_queue=16K: XZIP over a bigger mailbox is NO
#      [TOOBIG], the connection goes on, the RSS does not grow with the mailbox;
#  (i) the parked store connection dies (Dovecot imap process killed) in IDLE
#      and while it takes the client's view: the gateway lives on, logs the
#      loss, and the device resumes;
#  (j) a resume into the parked connection that carried the NOTIFY watch:
#      the client still gets its folder's new mail and expunges (found after
#      02eb19a: "NOTIFY NONE" made Dovecot report nothing at all);
#  (k) a password change while the session is parked: the new password takes
#      the parked connection back, the old one is refused from then on.
# The protocol logic is in lib/gw_regressions.py (one section per defect, each
# with its own user). Each section runs in its own python3 process; a gateway
# that dies in a section fails the test and is started again for the next.
#
# By hand: tests/integration/t_gw_regressions.sh (after building src/pimap-gateway
# with --enable-sanitizers: section a needs AddressSanitizer to see its defect)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob carol dave erin frank grace heidi ivan judy kim"
# The title of each imap process then names its user: sections b and i find
# (and kill) the one behind the gateway's store connection by it.
DOVECOT_EXTRA_CONF="verbose_proctitle = yes"
start_dovecot

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS DOVECOT_PID DOVECOT_DIR
GWR="$HARNESS_LIB/gw_regressions.py"
# The protocol trace shows when a parked connection IDLEs (its view taken).
GW_ARGS=(--trace)
status=0
failed=""

# section NAME: run one section against the gateway started with "${GW_ARGS[@]}".
# If the gateway died on the way, that fails the section, and a new gateway
# (same arguments) serves the next one.
section() {
	local rc=0 pid
	python3 "$GWR" "$1" || rc=1
	if ! gateway_alive; then
		pid=$GW_PID
		wait "$pid" 2>/dev/null || log "the gateway (pid $pid) exited with status $?"
		untrack_pid "$pid"
		GW_PID=""
		log "FAIL: the gateway died during section $1"
		rc=1
		start_gateway "${GW_ARGS[@]}"
	fi
	if [ "$rc" != 0 ]; then
		status=1
		failed="$failed $1"
	fi
}

start_gateway "${GW_ARGS[@]}"
for s in b c d e f i j k l; do
	section "$s"
done

# (a) SIGHUP frees the old configuration; the logins after it must not read it.
kill -HUP "$GW_PID"
wait_log "$GW_LOG" "configuration reloaded" 10 || fail "no 'configuration reloaded' in $GW_LOG 10 s after SIGHUP"
log "SIGHUP: configuration reloaded"
section a
stop_gateway

# (g) and (h): a short pre-login timeout and the smallest output queue. With
# ASan's default quarantine (256 MiB of freed memory kept unused) the RSS grows
# with every byte that passes through, some 100 MiB over (h) even when nothing
# is kept; a small one lets freed memory be reused, so the RSS measures what
# the gateway holds.
GW_ARGS=(--set limits.preauth_timeout=2s --set limits.max_output_queue=16K)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1"
start_gateway "${GW_ARGS[@]}"
section g
section h
stop_gateway

[ "$status" = 0 ] || fail "failed sections:$failed (see the messages above)"
pass
