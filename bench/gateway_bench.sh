#!/bin/bash
# gateway_bench.sh - pimap-gateway benchmark: push latency and memory per
# session (not a test).
#
# Starts a private Dovecot (users alice, bob and u0000...u(N-1), limits raised
# so that it can hold N concurrent sessions, see dovecot_raise_limits in
# tests/integration/lib/harness.sh) and
# pimap-gateway in front of it, then
#  1. push latency (bench/push_latency.py latency): a client IDLEs directly on
#     Dovecot and one IDLEs through the gateway in a P-IMAP session; --deliveries
#     messages are delivered over LMTP to each, one at a time; median, p90 and
#     p99 from the start of the LMTP transaction to "* n EXISTS" on the client
#     socket, and the difference;
#  2. memory (bench/push_latency.py memory): the gateway's VmRSS/VmHWM with no
#     session, with --sessions attached P-IMAP sessions (each a connection in
#     IDLE), and with as many detached ones (all closed without LOGOUT); then,
#     in a fresh gateway process with a fresh state dir, the same number of
#     detached sessions made 50 at a time; and the attached run once more
#     with store.compress=false (what COMPRESS towards the store costs);
#     per-session figures are (RSS - baseline) / N.
# Writes the section between <!-- bench:gateway:start --> and
# <!-- bench:gateway:end --> of docs/PERFORMANCE.md (or --output FILE).
#
# Usage: bench/gateway_bench.sh [--deliveries N] [--sessions N] [--output FILE]
#   --deliveries N  LMTP deliveries per path for the latency (default 200)
#   --sessions N    sessions for the memory figures (default 1000)
#   --output FILE   where to write the section (default docs/PERFORMANCE.md in
#                   the source tree); "-" prints it only
# Also reachable as `bench/bench.sh --gateway [these options]`.
# Needs a built src/pimap-gateway (top_builddir, default the source tree),
# preferably without sanitizers (./configure && make), dovecot, certtool and
# python3. Runs as root (Dovecot's mail user). Every process it starts is
# stopped at exit (the integration-test harness's cleanup).

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
DELIVERIES=200
SESSIONS=1000
OUTPUT=
while [ $# -gt 0 ]; do
	case $1 in
	--deliveries) DELIVERIES=$2; shift 2 ;;
	--sessions) SESSIONS=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "gateway_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
TEST_NAME=gateway_bench
. "$top_srcdir/tests/integration/lib/harness.sh"
PUSH=$top_srcdir/bench/push_latency.py
[ -n "$OUTPUT" ] || OUTPUT=$top_srcdir/docs/PERFORMANCE.md

require dovecot certtool
require_gateway
SANITIZER=$(sanitizer_of "$GATEWAY_BIN")
[ "$SANITIZER" = none ] ||
	log "warning: $GATEWAY_BIN is built with AddressSanitizer; memory numbers are not representative"

# Every session holds a client socket, a store socket, and Dovecot a few
# more: raise the descriptor limit (inherited by Dovecot and the gateway).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((SESSIONS * 4 + 200)) ] ||
	hard_error "ulimit -n is $(ulimit -n); $((SESSIONS * 4 + 200)) descriptors needed for $SESSIONS sessions"

gen_certs
USERS="alice bob"
for ((i = 0; i < SESSIONS; i++)); do USERS+=" $(printf 'u%04d' "$i")"; done
DOVECOT_USERS=$USERS start_dovecot

dovecot_raise_limits "$SESSIONS"
add_log "$DOVECOT_LOG"

# Every session logs in from 127.0.0.1, 16 at a time: the gateway's
# per-address login throttle (limits.max_failed_logins counts logins in
# flight too) would refuse most of them.
GW_BENCH_ARGS=(--set limits.max_failed_logins=100000)
start_gateway "${GW_BENCH_ARGS[@]}"
log "push latency: $DELIVERIES deliveries per path"
python3 "$PUSH" latency --gw-port "$GW_PORT" --store-port "$DOVECOT_IMAPS" --ca "$CA" \
	--lmtp "127.0.0.1:$DOVECOT_LMTP" --password "$DOVECOT_PASS" --deliveries "$DELIVERIES" \
	--json "$T/latency.json" || fail "latency run failed"

log "memory: $SESSIONS attached sessions, then detached"
python3 "$PUSH" memory --gw-port "$GW_PORT" --gw-pid "$GW_PID" --store-port "$DOVECOT_IMAPS" --ca "$CA" --password "$DOVECOT_PASS" \
	--sessions "$SESSIONS" --mode attached --json "$T/attached.json" || fail "memory run (attached) failed"
stop_gateway 60

log "memory: $SESSIONS detached sessions made 50 at a time, fresh gateway process and state"
GW_STATE=$T/gw-state-2
start_gateway "${GW_BENCH_ARGS[@]}"
python3 "$PUSH" memory --gw-port "$GW_PORT" --gw-pid "$GW_PID" --store-port "$DOVECOT_IMAPS" --ca "$CA" --password "$DOVECOT_PASS" \
	--sessions "$SESSIONS" --mode detached --json "$T/detached.json" || fail "memory run (detached) failed"
stop_gateway 60

log "memory: $SESSIONS attached sessions without COMPRESS towards the store (store.compress=false)"
GW_STATE=$T/gw-state-3
start_gateway "${GW_BENCH_ARGS[@]}" --set store.compress=false
python3 "$PUSH" memory --gw-port "$GW_PORT" --gw-pid "$GW_PID" --store-port "$DOVECOT_IMAPS" --ca "$CA" --password "$DOVECOT_PASS" \
	--sessions "$SESSIONS" --mode attached --json "$T/attached-nocompress.json" || fail "memory run (store.compress=false) failed"
stop_gateway 60

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
CMDLINE="bench/gateway_bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$ENV_BUILDDIR $CMDLINE"
REPORT_OUT=$OUTPUT
[ "$OUTPUT" = - ] && REPORT_OUT=$T/PERFORMANCE.md
python3 "$PUSH" report --latency "$T/latency.json" --attached "$T/attached.json" \
	--detached "$T/detached.json" --attached-nocompress "$T/attached-nocompress.json" \
	--output "$REPORT_OUT" --command "$CMDLINE" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--extra "nproc=$(nproc)" \
	--extra "cpu=$CPU_MODEL" \
	--extra "kernel=Linux $(uname -r)" \
	--extra "dovecot=$(dovecot --version | cut -d' ' -f1)" \
	--extra "gateway=$("$GATEWAY_BIN" --version 2>/dev/null | head -n 1)" \
	--extra "python=$(python3 -c 'import platform; print(platform.python_version())')" \
	--extra "sanitizer=$SANITIZER" \
	--extra "dovecot_limits=$DOVECOT_LIMITS" ||
	fail "report failed"
[ "$OUTPUT" = - ] || log "wrote the bench:gateway section of $OUTPUT"
pass
