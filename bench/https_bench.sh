#!/bin/bash
# https_bench.sh - push latency over pimap-gateway's HTTPS binding, next to
# the TCP binding and plain IMAP (not a test).
#
# Starts a private Dovecot, pimap-gateway (TCP and HTTPS listeners,
# outband.min_interval=0) and three pimap-proxy processes: one with a
# pimaps:// upstream (TCP binding), one with https:// in persistent mode, one
# with https:// in in-response mode and a UDP wake-up listener. Then
# bench/https_latency.py: a client IDLEs directly on Dovecot and one through
# each proxy (each a different user); --deliveries messages are delivered to
# each in turn; latency from the start of the LMTP transaction to "* n
# EXISTS" at the client.
# Writes the section between <!-- bench:https:start --> and
# <!-- bench:https:end --> of docs/PERFORMANCE.md (or --output FILE).
#
# Usage: bench/https_bench.sh [--deliveries N] [--output FILE]
#   --deliveries N  deliveries per path (default 100)
#   --output FILE   where to write the section (default docs/PERFORMANCE.md in
#                   the source tree); "-" prints it only
# Needs built src/pimap-gateway and src/pimap-proxy (top_builddir, default the
# source tree), preferably without sanitizers, dovecot, certtool, python3.
# Runs as root (Dovecot's mail user); stops everything it started at exit.

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
DELIVERIES=100
OUTPUT=
while [ $# -gt 0 ]; do
	case $1 in
	--deliveries) DELIVERIES=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "https_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
TEST_NAME=https_bench
. "$top_srcdir/tests/integration/lib/harness.sh"
LAT=$top_srcdir/bench/https_latency.py
[ -n "$OUTPUT" ] || OUTPUT=$top_srcdir/docs/PERFORMANCE.md

require dovecot certtool
require_gateway
require_proxy
SANITIZER=$(sanitizer_of "$GATEWAY_BIN")

gen_certs
start_dovecot
HTTPS_PORT=$(free_port)
start_gateway --set "listen.https=127.0.0.1:$HTTPS_PORT" --set outband.min_interval=0
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "no HTTPS listener"

# proxy NAME PORT ARGS...: one pimap-proxy with its own log and state.
proxy() {
	local name=$1 port=$2
	shift 2
	PROXY_LOG=$T/proxy-$name.log
	start_proxy --listen "127.0.0.1:$port" --listen-tls none --state-dir "$T/proxy-$name" \
		--ca-file "$CA" --device-id "bench-$name" "$@"
}
P_TCP=$(free_port)
P_PERSIST=$(free_port)
P_INRESP=$(free_port)
WAKE=$(free_port)
proxy tcp "$P_TCP" --upstream "pimaps://127.0.0.1:$GW_PORT" --set macros.enabled=false
proxy persistent "$P_PERSIST" --upstream "https://localhost:$HTTPS_PORT/pimap" --set macros.enabled=false
proxy in-response "$P_INRESP" --upstream "https://localhost:$HTTPS_PORT/pimap" --set macros.enabled=false \
	--set upstream.mode=in-response --set "outband.listen=127.0.0.1:$WAKE"

log "push latency: $DELIVERIES deliveries per path"
python3 "$LAT" run --ca "$CA" --lmtp "127.0.0.1:$DOVECOT_LMTP" --password "$DOVECOT_PASS" \
	--deliveries "$DELIVERIES" --json "$T/https.json" \
	--path "dovecot=$DOVECOT_IMAPS:alice:1" --path "tcp=$P_TCP:bob:0" \
	--path "persistent=$P_PERSIST:carol:0" --path "in-response=$P_INRESP:dave:0" || fail "latency run failed"
[ "$(grep -c 'wake-up from' "$T/proxy-in-response.log")" -ge "$DELIVERIES" ] ||
	fail "the in-response proxy did not get a wake-up per delivery"

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
CMDLINE="bench/https_bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$ENV_BUILDDIR $CMDLINE"
REPORT_OUT=$OUTPUT
[ "$OUTPUT" = - ] && REPORT_OUT=$T/PERFORMANCE.md
python3 "$LAT" report --json "$T/https.json" --output "$REPORT_OUT" --command "$CMDLINE" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--extra "nproc=$(nproc)" \
	--extra "cpu=$CPU_MODEL" \
	--extra "kernel=Linux $(uname -r)" \
	--extra "dovecot=$(dovecot --version | cut -d' ' -f1)" \
	--extra "gateway=$("$GATEWAY_BIN" --version 2>/dev/null | head -n 1)" \
	--extra "python=$(python3 -c 'import platform; print(platform.python_version())')" \
	--extra "sanitizer=$SANITIZER" || fail "report failed"
[ "$OUTPUT" = - ] && cat "$REPORT_OUT"
[ "$OUTPUT" = - ] || log "wrote the bench:https section of $OUTPUT"
pass
