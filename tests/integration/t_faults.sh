#!/bin/bash
# t_faults.sh - the fault-injection matrix: kill or cut one part at a random
# (seeded, logged) point of a scripted workload, let everything recover on
# its own, then check that nothing was lost or leaked.
#
# The chain: stock IMAP and SMTP clients -> pimap-proxy (gateway mode) ->
# linkrelay (lib/linkrelay.py) -> pimap-gateway -> Dovecot, and for
# XDELIVER the gateway -> Dovecot's submission service -> lib/smtp2lmtp.py
# -> Dovecot's LMTP. Each round runs lib/faults.py: 2 users with 2 clients
# each doing random reads, flag changes, APPENDs, expunges and short IDLEs
# for 8 s while messages are delivered over LMTP, and one of them sending
# mail through the proxy's SMTP listener to a third user; somewhere in
# between one fault:
#   store-restart   Dovecot stopped and started again
#   gateway-kill    pimap-gateway SIGKILLed, then started again
#   proxy-kill      pimap-proxy SIGKILLed, then started again (clients see
#                   their connection close and reconnect, as real ones do)
#   link-cut        the proxy-gateway link closed, restored 0.5-3 s later
#   link-stall      the link stops forwarding without closing (a dead NAT),
#                   restored 1-4 s later
#   submission-restart  the submission server's relay host (smtp2lmtp)
#                   stopped, started again 0.5-2 s later
#   submission-hang the relay takes messages and never answers their final
#                   dot for 1-4 s (the gateway's submission.timeout is 2 s)
# After each round:
#   - every message the proxy accepted over SMTP (250) is in the
#     recipient's mailbox exactly once (the proxy's outbox retries), and no
#     message is there twice;
#   - every client's view (built only from what the proxy told it) equals
#     the store's real state, or the client was told to resynchronise (BYE
#     or a closed connection; it then logs in again and its new view must
#     equal the store at the end);
#   - the daemons came back on their own: clients could log in again within
#     a minute and every command got a reply (faults.py);
# and at the end:
#   - each daemon holds no more descriptors (/proc/PID/fd) than it did
#     after one session, less that session's connections (bounded wait:
#     the proxy keeps a connection for sending open for 30 s after its
#     last message);
#   - both daemons stop with SIGTERM, so that LeakSanitizer reports any
#     leak (the harness fails the test on any sanitizer report).
#
# Seed: PIMAP_FAULT_SEED (default: random, logged; set it to replay a run).
# Rounds: PIMAP_FAULT_ROUNDS (default 1: each fault once); PIMAP_FAULT_KINDS
# picks some of the faults (default: all).
#
# A new fault: a fault_<kind> function below and the kind in KINDS.
#
# By hand: tests/integration/t_faults.sh (after building)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$top_srcdir/tests/integration/lib/submission.sh"

require dovecot certtool
require_gateway
require_proxy

SEED=${PIMAP_FAULT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
ROUNDS=${PIMAP_FAULT_ROUNDS:-1}
KINDS=${PIMAP_FAULT_KINDS:-store-restart gateway-kill proxy-kill link-cut link-stall submission-restart submission-hang}
RANDOM=$SEED
log "seed $SEED (PIMAP_FAULT_SEED=$SEED replays this run), $ROUNDS round(s) of: $KINDS"

USERS="warmup"
for ((r = 1; r <= ROUNDS; r++)); do
	for k in $KINDS; do USERS+=" ${k//-/}${r}a ${k//-/}${r}b ${k//-/}${r}mail"; done
done
gen_certs
DOVECOT_USERS=$USERS start_store_with_submission
add_log "$DOVECOT_LOG"

GW_ARGS=(--set limits.max_failed_logins=1000 --set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT"
	--set "submission.ca_file=$CA" --set submission.timeout=2s)
start_gateway "${GW_ARGS[@]}"
RELAY_PORT=$(free_port)
RELAY_CTL=$T/relay.ctl
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$RELAY_CTL"
RELAY_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$RELAY_PID" || hard_error "link relay does not listen"
PROXY_PORT=$(free_port)
PROXY_SMTP_PORT=$(free_port)
PROXY_ARGS=(--listen "127.0.0.1:$PROXY_PORT" --listen-tls none --upstream "pimaps://127.0.0.1:$RELAY_PORT"
	--ca-file "$CA" --device-id faults --no-macros
	--set link.heartbeat=1s --set link.dead_timeout=2s --set link.reconnect_min=100ms
	--set link.reconnect_max=1s --set link.outage_wait=20s
	--set "smtp.listen=127.0.0.1:$PROXY_SMTP_PORT" --set smtp.listen_tls=none
	--set smtp.deliver_timeout=3s --set smtp.retry_min=200ms --set smtp.retry_max=1s)
start_proxy "${PROXY_ARGS[@]}"
wait_port 127.0.0.1 "$PROXY_SMTP_PORT" 10 "$PROXY_PID" || hard_error "the proxy's SMTP listener does not listen"
export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS DOVECOT_HOME PROXY_PORT PROXY_SMTP_PORT

# warm_up: one session and one message through the chain, so that what
# the daemons open once and keep (the gateway's SQLite WAL files, its
# sent.db) is open before descriptors are counted.
warm_up() {
	python3 - "$PROXY_PORT" "$DOVECOT_PASS" <<-'PYEOF' || fail "the warm-up session failed"
		import sys
		from imapc import Client
		c = Client("127.0.0.1", int(sys.argv[1]), timeout=30)
		c.connect()
		c.login("warmup", sys.argv[2])
		c.ok("SELECT INBOX")
		c.ok("LOGOUT")
	PYEOF
	python3 - "$PROXY_SMTP_PORT" "$DOVECOT_PASS" <<-'PYEOF' || fail "the warm-up message failed"
		import smtplib, sys
		s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
		s.login("warmup", sys.argv[2])
		s.sendmail("warmup@mail.test", ["warmup@mail.test"],
		           "From: warmup@mail.test\r\nTo: warmup@mail.test\r\nSubject: warm-up\r\n\r\nx\r\n")
		s.quit()
	PYEOF
}

relay_ctl() {
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
r = s.recv(100).decode(); sys.exit(0 if r.startswith("ok") else 1)' "$RELAY_CTL" "$1" ||
		hard_error "link relay: $1 failed"
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
fd_list() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | sort | uniq -c | tr '\n' ';'
	echo " TCP:"
	ss -tanp 2>/dev/null | grep "pid=$1," || true
}
workload_done() { ! running "$1"; }
# established PID: the process's established TCP connections.
established() { ss -tanp state established 2>/dev/null | grep -c "pid=$1," || true; }
# fds_at_most PID N: the process holds at most N descriptors.
fds_at_most() { [ "$(fd_count "$1")" -le "$2" ]; }

# rand_ms LOW HIGH: a seeded random number of milliseconds.
rand_ms() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

fault_store_restart() {
	restart_dovecot
}
fault_gateway_kill() {
	kill_gateway
	start_gateway "${GW_ARGS[@]}"
}
fault_proxy_kill() {
	local pid=$PROXY_PID
	kill -KILL "$pid"
	wait_gone "$pid" 10 || hard_error "proxy $pid survived SIGKILL"
	untrack_pid "$pid"
	wait "$pid" 2>/dev/null || true
	log "proxy $pid killed (SIGKILL)"
	start_proxy "${PROXY_ARGS[@]}"
}
fault_submission_restart() {
	local ms
	ms=$(rand_ms 500 2000)
	stop_pid "$SMTP_RELAY_PID"
	log "submission relay stopped for $(secs "$ms") s"
	sleep "$(secs "$ms")"   # how long the relay stays down (seeded)
	spawn "$T/smtp2lmtp.log" python3 "$HARNESS_LIB/smtp2lmtp.py" "$SMTP_RELAY_PORT" "$DOVECOT_LMTP" "$SMTP_CTL"
	SMTP_RELAY_PID=$SPAWNED_PID
	wait_port 127.0.0.1 "$SMTP_RELAY_PORT" 10 "$SMTP_RELAY_PID" || hard_error "smtp2lmtp did not restart"
}
fault_submission_hang() {
	local ms
	ms=$(rand_ms 1000 4000)
	smtp_fault hang
	log "submission relay hangs at the final dot for $(secs "$ms") s"
	sleep "$(secs "$ms")"   # how long messages hang (seeded)
	smtp_fault_clear hang
}
fault_link_cut() {
	local ms
	ms=$(rand_ms 500 3000)
	relay_ctl cut
	log "link cut for $(secs "$ms") s"
	sleep "$(secs "$ms")"   # how long the link stays down (seeded): part of the fault, not a wait
	relay_ctl restore
}
fault_link_stall() {
	local ms
	ms=$(rand_ms 1000 4000)
	relay_ctl stall
	log "link stalled for $(secs "$ms") s"
	sleep "$(secs "$ms")"   # how long the link hangs (seeded)
	relay_ctl restore
}

DURATION=8
warm_up
# What a daemon holds with no connection: its descriptors after the
# warm-up (files it keeps, listeners) without the connections still open.
BASE_GW_FDS=$(($(fd_count "$GW_PID") - $(established "$GW_PID")))
BASE_PROXY_FDS=$(($(fd_count "$PROXY_PID") - $(established "$PROXY_PID")))
for ((r = 1; r <= ROUNDS; r++)); do
	for kind in $KINDS; do
		name="$kind#$r"

		at=$(rand_ms 1000 $((DURATION * 1000 - 2000)))
		wseed=$RANDOM
		rm -f "$T/ready"
		python3 "$HARNESS_LIB/faults.py" round --name "$name" --users "${kind//-/}${r}a,${kind//-/}${r}b" \
			--clients 2 --duration "$DURATION" --seed "$wseed" --ready "$T/ready" \
			--result "$T/result-$kind-$r.json" --mail-to "${kind//-/}${r}mail" &
		wpid=$!
		track_pid "$wpid"
		wait_for 60 test -e "$T/ready" || fail "$name: the clients could not start"
		log "$name: fault in $(secs "$at") s (workload seed $wseed)"
		sleep "$(secs "$at")"   # the random point of the workload where the fault hits (seeded)
		"fault_${kind//-/_}"
		log "$name: fault injected; waiting for the workload to finish"
		wait_for 240 workload_done "$wpid" || fail "$name: the workload did not finish within 240 s"
		status=0
		wait "$wpid" || status=$?
		untrack_pid "$wpid"
		[ "$status" -eq 0 ] || fail "$name: the workload failed (see above; PIMAP_FAULT_SEED=$SEED replays it)"
		proxy_alive || fail "$name: the proxy died"
		gateway_alive || fail "$name: the gateway died"
		log "ok: $name: $(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
c = d["clients"].values()
m = d["smtp"] or {"accepted": 0, "not_accepted": 0, "reported_back": 0}
print("%d operations, %d NO, %d resynchronisations, %d deliveries; SMTP: %d accepted (%d of them failed for good "
      "and reported back, the rest delivered once), %d not accepted"
      % (sum(x["ops"] for x in c), sum(x["no"] for x in c), sum(x["resyncs"] for x in c),
         d["deliveries"]["ok"], m["accepted"], m["reported_back"], m["not_accepted"]))' "$T/result-$kind-$r.json")"
	done
done

# Descriptors: once every client has logged out and the connections the
# proxy keeps for sending have timed out (SENDER_CONN_IDLE, 30 s), each
# daemon holds no more than a fresh one after the warm-up did. A daemon
# restarted by a fault has the same files and listeners, so the same count.
wait_for 90 fds_at_most "$GW_PID" "$BASE_GW_FDS" ||
	fail "the gateway holds $(fd_count "$GW_PID") descriptors, $BASE_GW_FDS with no connection: $(fd_list "$GW_PID")"
wait_for 30 fds_at_most "$PROXY_PID" "$BASE_PROXY_FDS" ||
	fail "the proxy holds $(fd_count "$PROXY_PID") descriptors, $BASE_PROXY_FDS with no connection: $(fd_list "$PROXY_PID")"
log "ok: descriptors back to $(fd_count "$GW_PID") (gateway) and $(fd_count "$PROXY_PID") (proxy)"

# SIGTERM: the daemons exit cleanly and LeakSanitizer checks their memory.
stop_pid "$PROXY_PID"
stop_gateway
pass
