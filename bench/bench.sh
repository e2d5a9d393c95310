#!/bin/bash
# bench.sh - pimap-proxy benchmark in compatibility mode (not a test).
#
# Starts a private Dovecot holding a generated 1,000-message mailbox, a
# counting TCP relay in front of Dovecot's imaps port, and pimap-proxy
# (upstream = the relay). Then runs one IMAP workload (see bench/workload.py)
# (a) directly over TLS through the relay, (b) the same with COMPRESS, and
# (c) through pimap-proxy (client on plain loopback). Reports upstream bytes
# per direction, wall time, and for (c) the proxy's CPU time and peak RSS;
# medians of --runs runs. Writes the section between
# <!-- bench:proxy:start --> and <!-- bench:proxy:end --> of
# docs/PERFORMANCE.md (or --output FILE), creating the file if needed.
#
# Usage: bench/bench.sh [--runs N] [--messages N] [--latency MS] [--output FILE]
#                       [--section NAME]
#   --runs N       runs per mode (default 5)
#   --messages N   mailbox size (default 1000)
#   --latency MS   round-trip delay added by the relay (default 0)
#   --section NAME the section's markers: <!-- bench:NAME:start --> (default
#                  proxy; bench/run-all keeps the 100 ms run in proxy-100ms)
#   --output FILE  where to write the section (default docs/PERFORMANCE.md
#                  in the source tree); "-" prints it only
#   --gateway ...  run bench/gateway_bench.sh (push latency and memory per
#                  session of pimap-gateway) with the options that follow
# Needs a built src/pimap-proxy (top_builddir, default the source tree),
# dovecot, certtool and python3. Runs as root (Dovecot's mail user).

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
RUNS=5
MESSAGES=1000
LATENCY=0
OUTPUT=
SECTION=proxy
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--latency) LATENCY=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	--section) SECTION=$2; shift 2 ;;
	--gateway) shift; exec "$(cd "$(dirname "$0")" && pwd)/gateway_bench.sh" "$@" ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
# The integration-test harness gives us the temp dir, the cleanup trap (every
# process started here is stopped at exit), certificates, Dovecot and the proxy.
. "$top_srcdir/tests/integration/lib/harness.sh"
WORKLOAD=$top_srcdir/bench/workload.py
[ -n "$OUTPUT" ] || OUTPUT=$top_srcdir/docs/PERFORMANCE.md

require dovecot certtool
require_proxy
# ASan's quarantine holds freed memory (up to 256 MB) and its checks cost
# CPU: the proxy's RSS and CPU numbers would mean nothing.
SANITIZER=$(sanitizer_of "$PROXY_BIN")
[ "$SANITIZER" = none ] ||
	log "warning: $PROXY_BIN is built with AddressSanitizer; CPU and memory numbers are not representative"
gen_certs
DOVECOT_USERS=alice start_dovecot

log "generating $MESSAGES messages"
MAILDIR=$DOVECOT_HOME/alice/Maildir
python3 "$WORKLOAD" populate --maildir "$MAILDIR" --count "$MESSAGES" --seed 1 >"$T/mailbox.json" ||
	hard_error "populate failed"
chown -R mail:mail "$DOVECOT_HOME/alice"
read -r TOTAL MEDIAN < <(python3 "$WORKLOAD" summary --json "$T/mailbox.json")
log "mailbox: $(cat "$T/mailbox.json")"

RELAY=$(free_port)
spawn "$T/relay.log" python3 "$WORKLOAD" relay --port "$RELAY" \
	--target "127.0.0.1:$DOVECOT_IMAPS" --stats "$T/relay.jsonl" --latency "$LATENCY"
add_log "$T/relay.log"
wait_port 127.0.0.1 "$RELAY" 10 "$SPAWNED_PID" || hard_error "relay did not start"

P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "imaps://127.0.0.1:$RELAY" --ca-file "$CA"

log "running: $RUNS runs x 3 modes (+1 warm-up round)"
python3 "$WORKLOAD" run --relay-port "$RELAY" --relay-stats "$T/relay.jsonl" \
	--proxy-port "$P" --proxy-pid "$PROXY_PID" --ca "$CA" --password "$DOVECOT_PASS" \
	--runs "$RUNS" --messages "$MESSAGES" --json "$T/results.json" ||
	fail "workload failed"
log_has "$PROXY_LOG" 'upstream COMPRESS=DEFLATE active' ||
	log "warning: the proxy did not log 'upstream COMPRESS=DEFLATE active'"

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
CMDLINE="bench/bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$ENV_BUILDDIR $CMDLINE"
REPORT_OUT=$OUTPUT
[ "$OUTPUT" = - ] && REPORT_OUT=$T/PERFORMANCE.md
# bench/run-all collects chart rows in $PIMAP_BENCH_CHART (bench/perfdoc.py).
CHART_ARGS=()
[ -z "${PIMAP_BENCH_CHART:-}" ] || CHART_ARGS=(--chart "$PIMAP_BENCH_CHART")
python3 "$WORKLOAD" report --json "$T/results.json" --output "$REPORT_OUT" \
	--command "$CMDLINE" --section "$SECTION" "${CHART_ARGS[@]}" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--extra "nproc=$(nproc)" \
	--extra "cpu=$CPU_MODEL" \
	--extra "kernel=Linux $(uname -r)" \
	--extra "dovecot=$(dovecot --version | cut -d' ' -f1)" \
	--extra "proxy=$("$PROXY_BIN" --version 2>/dev/null | head -n 1)" \
	--extra "python=$(python3 -c 'import platform; print(platform.python_version())')" \
	--extra "total=${TOTAL//_/ }" \
	--extra "median=${MEDIAN//_/ }" \
	--extra "latency=$LATENCY" \
	--extra "sanitizer=$SANITIZER" ||
	fail "report failed"
[ "$OUTPUT" = - ] || log "wrote the bench:$SECTION section of $OUTPUT"
pass
