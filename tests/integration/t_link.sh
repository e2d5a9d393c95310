#!/bin/bash
# t_link.sh - pimap-proxy speaking P-IMAP to pimap-gateway (issue 4), with a
# relay on the link that the test cuts, stalls and restores:
#  (a) a stock client logs in (AUTHENTICATE PLAIN without SASL-IR), sees no
#      P-IMAP capability, selects, and gets pushes in IDLE;
#  (b) link cut during IDLE, a delivery, a flag change and an expunge during
#      the outage: the client's view equals the store afterwards, with no
#      reconnect by the client;
#  (c) a link that hangs without closing is declared dead by heartbeats;
#  (d) a command during an outage waits link.outage_wait, then NO [UNAVAILABLE];
#  (e) more events than the gateway queues: RESYNC, and the proxy's own
#      state comparison tells the client exactly what changed;
#  (g) three clients of one device in three folders through one outage;
#  (s) a client that reads slowly does not make the link look dead;
#  (o) LOGOUT during an outage is answered after the commands before it;
#  (t) pimap-proxy --stdio (mutt's $tunnel) with the gateway upstream;
#  (h) a gateway restart (SIGTERM) while a client idles; then one by SIGKILL;
#  (m) macros: fewer round trips for a recorded mutt session, the same
#      responses, new mail answered from the gateway's push; a bad macro
#      file is refused with its line, and SIGHUP keeps the old macros.
# Every client view is checked against Dovecot's real state.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
require_proxy
gen_certs
DOVECOT_USERS="alice bob carol dave erin frank henry mia sam olga tina walt wanda fred"
start_dovecot
start_gateway --set limits.max_queued_events=5

RELAY_PORT=$(free_port)
RELAY_CTL=$T/relay.ctl
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$RELAY_CTL"
RELAY_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$RELAY_PID" || fail "link relay does not listen"
PROXY_PORT=$(free_port)
start_proxy --listen "127.0.0.1:$PROXY_PORT" --listen-tls none \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id laptop1 --trace \
	--set link.heartbeat=2s --set link.dead_timeout=2s --set link.reconnect_min=200ms \
	--set link.reconnect_max=1s --set link.outage_wait=3s --no-macros

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS GW_PORT GW_LOG PROXY_LOG PROXY_PORT RELAY_CTL RELAY_PORT PROXY_BIN
status=0
python3 "$HARNESS_LIB/link_tests.py" a b c d e g s o t f || status=1

# (m) macros: a second proxy with the shipped mutt macro, told that its
# listener is where mutt connects (mutt sends no ID).
MACRO_PORT=$(free_port)
mkdir -p "$T/macros"
sed "s|listen: \[\"stdio\"\]|listen: [\"stdio\", \"127.0.0.1:$MACRO_PORT\"]|" "$top_srcdir/macros/mutt.yaml" >"$T/macros/mutt.yaml"
grep -q "127.0.0.1:$MACRO_PORT" "$T/macros/mutt.yaml" || hard_error "could not adapt macros/mutt.yaml"
PLAIN_PROXY_PID=$PROXY_PID
PLAIN_PROXY_LOG=$PROXY_LOG
PROXY_LOG=$T/proxy-macros.log
start_proxy --listen "127.0.0.1:$MACRO_PORT" --listen-tls none --state-dir "$T/proxy2-state" \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id laptop2 --trace -v \
	--set "macros.dir=$T/macros"
MACRO_PROXY_PID=$PROXY_PID
assert_contains "$PROXY_LOG" "loaded 1 macro(s)"
MACRO_PORT=$MACRO_PORT PROXY_LOG=$PROXY_LOG python3 "$HARNESS_LIB/link_tests.py" m w || status=1
running "$MACRO_PROXY_PID" || fail "the macro proxy died"
# A macro file with an error: refused with file:line:column by
# --check-config and at start; on SIGHUP the previous macros stay.
cp "$T/macros/mutt.yaml" "$T/macros/mutt.good"
printf 'client:\n  name: mutt\n  listen: ["stdio"]\nmacros:\n  - name: bad\n    trigger: "SELECT {mailbox}"\n    send:\n      - "STORE 1 +FLAGS (\\\\Seen)"\n' >"$T/macros/mutt.yaml"
if "$PROXY_BIN" --check-config --set "macros.dir=$T/macros" >"$T/check.out" 2>&1; then
	fail "--check-config accepted a macro that STOREs"
fi
grep -q "mutt.yaml:8:" "$T/check.out" || { cat "$T/check.out"; fail "--check-config did not name mutt.yaml:8"; }
kill -HUP "$MACRO_PROXY_PID"
wait_log "$T/proxy-macros.log" "keeping the previous macros" 10 || fail "a bad macro file on SIGHUP was not reported"
grep -q "mutt.yaml:8:" "$T/proxy-macros.log" || fail "the reload error does not name mutt.yaml:8"
BEFORE=$(grep -c "from the prefetched FETCH 1:\*" "$T/proxy-macros.log" || true)
MACRO_PORT=$MACRO_PORT PROXY_LOG=$T/proxy-macros.log python3 "$HARNESS_LIB/link_tests.py" n || status=1
AFTER=$(grep -c "from the prefetched FETCH 1:\*" "$T/proxy-macros.log" || true)
[ "$AFTER" -gt "$BEFORE" ] || fail "after a bad reload the previous macros are no longer used"
log "ok: a bad macro file is refused with its line; SIGHUP keeps the previous macros"
PROXY_PID=$PLAIN_PROXY_PID
PROXY_LOG=$PLAIN_PROXY_LOG

# (h) gateway restarts under an idling client: SIGTERM (views saved), SIGKILL (RESYNC).
python3 "$HARNESS_LIB/link_tests.py" h &
H_PID=$!
track_pid $H_PID
wait_for 30 test -e "$T/h.ready" || fail "section h did not start idling"
stop_gateway
deliver henry "while the gateway is down"
start_gateway --set limits.max_queued_events=5
touch "$T/h.restarted"
wait_for 30 test -e "$T/h.ready2" || fail "section h did not idle again"
kill_gateway
deliver henry "while the gateway is dead"
start_gateway --set limits.max_queued_events=5
touch "$T/h.restarted2"
wait "$H_PID" || status=1
untrack_pid $H_PID

proxy_alive || fail "the proxy died"
gateway_alive || fail "the gateway died"
assert_contains "$PROXY_LOG" "device id laptop1"
if grep -E 'S> [^ ]+ (LOGIN|AUTHENTICATE PLAIN [A-Za-z0-9+/=]{8,})' "$PROXY_LOG"; then
	fail "a password reached the proxy's trace"
fi
[ "$status" = 0 ] || fail "failed sections: see the messages above"
pass
