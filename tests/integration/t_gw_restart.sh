#!/bin/bash
# t_gw_restart.sh - P-IMAP sessions across gateway restarts (docs/PROTOCOL.md
# section 2, RESYNC rules):
#  - alice and bob detach (connection dropped after SELECT INBOX); 3 messages
#    for alice before a SIGTERM restart, 3 for bob after it: both resume with
#    SESSION SELECTED, FOLDER INBOX, exactly 3 EXISTS, no RESYNC, same id;
#  - dave is attached in SELECTED state during a SIGTERM: he gets * BYE, the
#    gateway exits 0 at once, 2 deliveries, after the restart he resumes
#    without RESYNC with exactly 2 EXISTS;
#  - carol is attached during a SIGKILL: her next login gets * RESYNC, and a
#    resync fetch gives the store's view; alice, detached at that moment
#    (view saved), resumes without RESYNC with the 1 message delivered before
#    the crash.
# Each client keeps its view and SESSIONID in $T/client-USER.json across the
# restarts. The protocol logic is in lib/gw_restart.py.
#
# By hand: tests/integration/t_gw_restart.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob carol dave"
start_dovecot
for u in alice bob carol dave; do
	deliver "$u" "restart: $u 1"
	deliver "$u" "restart: $u 2"
done
export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS
GWR="$HARNESS_LIB/gw_restart.py"
status=0

# attached_client USER MODE: start `gw_restart.py attach` in the background
# and wait until it is attached (SELECTED). Sets ATTACHED_PID.
attached_client() {
	rm -f "$T/ready-$1"
	python3 "$GWR" attach "$1" "$2" &
	ATTACHED_PID=$!
	track_pid "$ATTACHED_PID"
	wait_for 30 attached_or_gone "$1" || fail "the attached client of $1 did not get ready in 30 s"
	[ -e "$T/ready-$1" ] || { wait "$ATTACHED_PID" || true; untrack_pid "$ATTACHED_PID"; fail "the attached client of $1 failed"; }
}
attached_or_gone() { [ -e "$T/ready-$1" ] || ! running "$ATTACHED_PID"; }
# attached_client_result: wait (bounded by the client's own deadlines) for its verdict.
attached_client_result() {
	local rc=0
	wait "$ATTACHED_PID" || rc=$?
	untrack_pid "$ATTACHED_PID"
	return "$rc"
}

# --- a normal restart with detached sessions -----------------------------------
start_gateway
python3 "$GWR" detach alice bob || status=1
deliver alice "restart: alice 3 (before the restart)"
deliver alice "restart: alice 4 (before the restart)"
deliver alice "restart: alice 5 (before the restart)"
stop_gateway
start_gateway
deliver bob "restart: bob 3 (after the restart)"
deliver bob "restart: bob 4 (after the restart)"
deliver bob "restart: bob 5 (after the restart)"
python3 "$GWR" resume alice bob --events 3 --redetach || status=1

# --- SIGTERM with a client attached in SELECTED state --------------------------
attached_client dave term
stop_gateway 15
attached_client_result || status=1
deliver dave "restart: dave 3 (while the gateway is down)"
deliver dave "restart: dave 4 (while the gateway is down)"
start_gateway
python3 "$GWR" resume dave --events 2 || status=1

# --- SIGKILL with a client attached -----------------------------------------
attached_client carol kill
deliver alice "restart: alice 6 (before the crash)"
kill_gateway
attached_client_result || status=1
deliver carol "restart: carol 3 (while the gateway is down)"
start_gateway
python3 "$GWR" resync carol || status=1
python3 "$GWR" resume alice --events 1 || status=1

gateway_alive || fail "the gateway died"
stop_gateway
[ "$status" = 0 ] || fail "failed checks: see the messages above"
pass
