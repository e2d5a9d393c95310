#!/bin/bash
# filter_bench.sh - pimap's view-filter benchmark (not a test): what a view
# saves on the link, and what it costs the gateway.
#
# 1. A Thunderbird-like full sync (filter_bench.py sync: flags, headers,
#    then every body) of an INBOX of --messages messages spread over a
#    year, four ways, bytes counted on the link by bench/delay_relay.py:
#      plain      client --TLS--> relay --> Dovecot imaps (plain IMAP, no view)
#      gateway    client --> pimap-proxy --pimaps--> relay --> pimap-gateway --> Dovecot, no filters
#      gateway14  the same with a filter file: INBOX the last 14 days
#      compat14   client --> pimap-proxy (compatibility mode, the same file) --TLS--> relay --> Dovecot
#    --runs times each after one warm-up round.
# 2. The cost of a view (filter_bench.py cost): a second pimap-gateway whose
#    store connection goes through a counting relay; SELECT of INBOX with
#    and without a 14-day view (first visit, then again after leaving it,
#    and Dovecot's own time for the view's searches on a direct
#    connection), then --deliveries new messages in IDLE, for a
#    1,000-message and a --big-message folder (tiny messages over a year).
# Prints a Markdown section and, with --output FILE, writes it between
# <!-- bench:filters:start --> and <!-- bench:filters:end --> of FILE.
#
# Usage: bench/filter_bench.sh [--runs N] [--messages N] [--big N] [--deliveries N] [--output FILE]
#   defaults: --runs 3 --messages 5000 --big 100000 --deliveries 10
# Needs built src/pimap-proxy and src/pimap-gateway (top_builddir; build
# without sanitizers for meaningful times), dovecot, certtool, python3; runs
# as root (Dovecot's mail user). Every process it starts is stopped at exit.

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
RUNS=3
MESSAGES=5000
BIG=100000
DELIVERIES=10
OUTPUT=
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--big) BIG=$2; shift 2 ;;
	--deliveries) DELIVERIES=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "filter_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
TEST_NAME=filter_bench
. "$top_srcdir/tests/integration/lib/harness.sh"
BENCH=$top_srcdir/bench
FB="python3 $BENCH/filter_bench.py"

require dovecot certtool
require_proxy
require_gateway
gen_certs
DOVECOT_USERS="fb small big" start_dovecot

log "populating: $MESSAGES messages over 365 days for fb, 1000 and $BIG tiny ones for small and big"
$FB populate --maildir "$DOVECOT_HOME/fb/Maildir" --count "$MESSAGES" --days 365 >"$T/mailbox.json" ||
	hard_error "populate failed"
$FB populate --maildir "$DOVECOT_HOME/small/Maildir" --count 1000 --days 365 --tiny >/dev/null
$FB populate --maildir "$DOVECOT_HOME/big/Maildir" --count "$BIG" --days 365 --tiny >/dev/null
chown -R mail:mail "$DOVECOT_HOME"
export HARNESS_LIB DOVECOT_IMAP DOVECOT_PASS
MAILBOX_BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$T/mailbox.json")
# Dovecot indexes a maildir on first use: do it now, off the clock.
for u in fb small big; do
	python3 - "$u" <<'PY' || hard_error "warming Dovecot's index failed"
import os, sys
sys.path.insert(0, os.path.join(os.environ["HARNESS_LIB"]))
import imapc
c = imapc.Client("127.0.0.1", int(os.environ["DOVECOT_IMAP"]), timeout=600)
c.connect(); c.login(sys.argv[1], os.environ["DOVECOT_PASS"]); c.ok("SELECT INBOX")
c.ok("UID SEARCH RETURN (ALL) SINCE 1-Jan-2000")
c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO CC BCC SUBJECT DATE MESSAGE-ID PRIORITY X-PRIORITY REFERENCES NEWSGROUPS IN-REPLY-TO CONTENT-TYPE REPLY-TO)])")
c.ok("LOGOUT")
PY
done

start_relay() { # start_relay NAME TARGET_PORT: sets RELAY_PORT, RELAY_CTL
	RELAY_PORT=$(free_port)
	RELAY_CTL=$T/relay-$1.ctl
	spawn "$T/relay-$1.log" python3 "$BENCH/delay_relay.py" --listen "127.0.0.1:$RELAY_PORT" \
		--target "127.0.0.1:$2" --control "$RELAY_CTL"
	wait_port 127.0.0.1 "$RELAY_PORT" 10 "$SPAWNED_PID" && wait_for 10 test -S "$RELAY_CTL" ||
		hard_error "relay $1 did not start"
}

printf 'folders:\n  INBOX:\n    view: {days: 14}\n' >"$T/14days.yaml"
start_gateway
start_relay plain "$DOVECOT_IMAPS"; PLAIN_PORT=$RELAY_PORT; PLAIN_CTL=$RELAY_CTL
start_relay gw "$GW_PORT"; GWR_PORT=$RELAY_PORT; GWR_CTL=$RELAY_CTL
start_relay gw14 "$GW_PORT"; GW14R_PORT=$RELAY_PORT; GW14R_CTL=$RELAY_CTL
start_relay compat "$DOVECOT_IMAPS"; COMPATR_PORT=$RELAY_PORT; COMPATR_CTL=$RELAY_CTL
P_GW=$(free_port); P_GW14=$(free_port); P_COMPAT=$(free_port)
PROXY_LOG=$T/proxy-gw.log start_proxy --listen "127.0.0.1:$P_GW" --listen-tls none \
	--upstream "pimaps://127.0.0.1:$GWR_PORT" --ca-file "$CA" --device-id bench-noview --state-dir "$T/ps1"
PROXY_LOG=$T/proxy-gw14.log start_proxy --listen "127.0.0.1:$P_GW14" --listen-tls none \
	--upstream "pimaps://127.0.0.1:$GW14R_PORT" --ca-file "$CA" --device-id bench-14days --state-dir "$T/ps2" \
	--filters "$T/14days.yaml"
PROXY_LOG=$T/proxy-compat.log start_proxy --listen "127.0.0.1:$P_COMPAT" --listen-tls none \
	--upstream "imaps://127.0.0.1:$COMPATR_PORT" --ca-file "$CA" --state-dir "$T/ps3" --filters "$T/14days.yaml"

sync_way() { # sync_way NAME: one sync, one JSON line to $T/sync-NAME.jsonl
	case $1 in
	plain) $FB sync --port "$PLAIN_PORT" --tls --ca "$CA" --user fb --password "$DOVECOT_PASS" --stats "$PLAIN_CTL" ;;
	gateway) $FB sync --port "$P_GW" --user fb --password "$DOVECOT_PASS" --stats "$GWR_CTL" ;;
	gateway14) $FB sync --port "$P_GW14" --user fb --password "$DOVECOT_PASS" --stats "$GW14R_CTL" ;;
	compat14) $FB sync --port "$P_COMPAT" --user fb --password "$DOVECOT_PASS" --stats "$COMPATR_CTL" ;;
	esac
}
WAYS="plain gateway gateway14 compat14"
for w in $WAYS; do sync_way "$w" >/dev/null || fail "warm-up sync $w failed"; done
for ((r = 1; r <= RUNS; r++)); do
	for w in $WAYS; do
		sync_way "$w" >>"$T/sync-$w.jsonl" || fail "sync $w failed"
		log "sync $w run $r: $(tail -n 1 "$T/sync-$w.jsonl")"
	done
done

# The cost of a view: a second gateway whose store link is counted.
start_relay store "$DOVECOT_IMAPS"; STORE_PORT=$RELAY_PORT; STORE_CTL=$RELAY_CTL
GW2_PORT=$(free_port)
spawn "$T/gateway2.stderr" "$GATEWAY_BIN" -f --listen "127.0.0.1:$GW2_PORT" --listen-starttls none \
	--cert "$SERVER_CERT" --key "$SERVER_KEY" --store "imaps://127.0.0.1:$STORE_PORT" --ca-file "$CA" \
	--state-dir "$T/gw2-state" --log-file "$T/gateway2.log"
GW2_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$GW2_PORT" 15 "$GW2_PID" || fail "the second gateway did not start"
: >"$T/cost.jsonl"
for u in small big; do
	for view in ALL "DAYSBEFORETODAY 14"; do
		$FB cost --port "$GW2_PORT" --ca "$CA" --user "$u" --password "$DOVECOT_PASS" --device "cost$RANDOM" \
			--stats "$STORE_CTL" --lmtp "127.0.0.1:$DOVECOT_LMTP" --view "$view" --deliveries "$DELIVERIES" \
			--gw-pid "$GW2_PID" --store-port "$DOVECOT_IMAP" |
			python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["folder"]=sys.argv[1]; print(json.dumps(d))' \
				"$([ $u = big ] && echo "$BIG" || echo 1000)" >>"$T/cost.jsonl" || fail "cost $u $view failed"
		log "cost $u $view: $(tail -n 1 "$T/cost.jsonl")"
	done
done

python3 - "$T" "$WAYS" >"$T/results.json" <<'PY'
import json, sys
t, ways = sys.argv[1], sys.argv[2].split()
names = {"plain": "plain IMAP (TLS, no view)", "gateway": "pimap-proxy + pimap-gateway, no view",
         "gateway14": "pimap-proxy + pimap-gateway, INBOX 14 days",
         "compat14": "pimap-proxy alone (compatibility mode), INBOX 14 days"}
out = {"sync": [{"name": names[w], "runs": [json.loads(l) for l in open("%s/sync-%s.jsonl" % (t, w))]} for w in ways],
       "cost": [json.loads(l) for l in open(t + "/cost.jsonl")]}
print(json.dumps(out))
PY
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
CMDLINE="bench/filter_bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$ENV_BUILDDIR $CMDLINE"
OUT_ARGS=()
[ -z "$OUTPUT" ] || OUT_ARGS=(--output "$OUTPUT")
$FB report --json "$T/results.json" "${OUT_ARGS[@]}" --command "$CMDLINE" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" --extra "nproc=$(nproc)" --extra "cpu=${CPU_MODEL:-$(uname -m)}" \
	--extra "kernel=Linux $(uname -r)" --extra "dovecot=$(dovecot --version | cut -d' ' -f1)" \
	--extra "sanitizer=$(sanitizer_of "$GATEWAY_BIN")" --extra "messages=$MESSAGES" \
	--extra "mailbox_bytes=$MAILBOX_BYTES bytes" --extra "runs=$RUNS" --extra "big_messages=$BIG" \
	--extra "deliveries=$DELIVERIES" || fail "report failed"
[ -z "$OUTPUT" ] || log "wrote the bench:filters section of $OUTPUT"
pass
