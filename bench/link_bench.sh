#!/bin/bash
# link_bench.sh - pimap's link benchmark (not a test): bytes, round trips and
# time on the slow link, for a Thunderbird-like and a mutt-like client, with
# and without pimap-proxy + pimap-gateway.
#
# Starts a private Dovecot (one user per session, each given a fresh copy of
# the same generated 1,000-message INBOX and an empty Archive), one
# bench/delay_relay.py per way on "the link", and for ways 3-4 pimap-gateway
# and pimap-proxy. Then bench/clients.py runs each workload four ways:
#   1. client --TLS--> relay --> Dovecot imaps (no COMPRESS)
#   2. the same, with COMPRESS=DEFLATE after authentication
#   3. client --plain loopback--> pimap-proxy --pimaps--> relay --> pimap-gateway --> Dovecot
#   4. as 3, with the proxy's macros off (--set macros.enabled=false)
# first with no added delay (bytes, round trips), then with --delay ms added
# to each direction of the link (active time, push wait), --runs times each,
# ways interleaved. Prints a Markdown section (medians, the ratios against
# the targets) and, with --output, writes it between
# <!-- bench:link:start --> and <!-- bench:link:end --> of FILE.
#
# Usage: bench/link_bench.sh [--runs N] [--ways 1,2,3,4] [--delay MS]
#                            [--workloads tb,mutt] [--messages N] [--output FILE]
#                            [--serial] [--transcripts DIR]
#   --runs N        runs per way, workload and delay (default 3)
#   --ways LIST     which ways (default 1,2,3,4); a way the proxy cannot do
#                   yet is reported as not measured and the others still run
#   --delay MS      delay per direction on the link for the timed runs (default 100)
#   --workloads L   tb, mutt or both (default tb,mutt)
#   --messages N    INBOX size (default 1000)
#   --output FILE   also write the section into FILE (default: print only)
#   --transcripts DIR  write each measured session's client-side transcript
#                   into DIR (for debugging; a few hundred KB each)
#   --serial        run the 0 ms sessions one at a time too (by default the
#                   ways run concurrently there: only bytes and round trips
#                   are kept from them, and each way has its own relay)
# Needs built src/pimap-proxy and src/pimap-gateway (top_builddir, default the
# source tree; build without sanitizers), dovecot, certtool and python3. Runs
# as root (Dovecot's mail user). Every process it starts is stopped at exit,
# by PID (the integration-test harness's cleanup).

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
RUNS=3
WAYS=1,2,3,4
DELAY=100
WORKLOADS=tb,mutt
MESSAGES=1000
OUTPUT=
SERIAL=()
TRANSCRIPTS=()
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--ways) WAYS=$2; shift 2 ;;
	--delay) DELAY=$2; shift 2 ;;
	--workloads) WORKLOADS=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	--serial) SERIAL=(--serial); shift ;;
	--transcripts) TRANSCRIPTS=(--transcripts "$(mkdir -p "$2" && cd "$2" && pwd)"); shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "link_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
case ,$WAYS, in *[!0-9,]* | *,,*) echo "link_bench.sh: bad --ways $WAYS" >&2; exit 2 ;; esac
for w in ${WAYS//,/ }; do
	case $w in 1 | 2 | 3 | 4) ;; *) echo "link_bench.sh: no way $w (1-4)" >&2; exit 2 ;; esac
done
case ,$WORKLOADS, in
,tb, | ,mutt, | ,tb,mutt, | ,mutt,tb,) ;;
*) echo "link_bench.sh: bad --workloads $WORKLOADS (tb, mutt)" >&2; exit 2 ;;
esac

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
TEST_NAME=link_bench
. "$top_srcdir/tests/integration/lib/harness.sh"
BENCH=$top_srcdir/bench

require dovecot certtool
has_way() { case ,$WAYS, in *,$1,*) return 0 ;; esac; return 1; }
GW_WAYS=0
{ has_way 3 || has_way 4; } && GW_WAYS=1
if [ $GW_WAYS = 1 ]; then
	require_proxy
	require_gateway
fi

gen_certs
NWAYS=$(echo "${WAYS//,/ }" | wc -w)
NWL=$(echo "${WORKLOADS//,/ }" | wc -w)
NUSERS=$((NWAYS * (1 + 2 * RUNS * NWL)))
USERS=
USERS_CSV=
for ((i = 1; i <= NUSERS; i++)); do
	u=$(printf 'lb%04d' "$i")
	USERS+="$u "
	USERS_CSV+="${USERS_CSV:+,}$u"
done
DOVECOT_USERS=$USERS start_dovecot

log "generating the $MESSAGES-message template mailbox"
python3 "$BENCH/workload.py" populate --maildir "$T/template" --count "$MESSAGES" --seed 1 >"$T/mailbox.json" ||
	hard_error "populate failed"
chown -R mail:mail "$T/template"
read -r TOTAL MEDIAN < <(python3 "$BENCH/workload.py" summary --json "$T/mailbox.json")

# start_relay WAY TARGET_PORT: a delay_relay.py for WAY; sets RELAY_PORT, RELAY_CTL.
start_relay() {
	RELAY_PORT=$(free_port)
	RELAY_CTL=$T/relay$1.ctl
	spawn "$T/relay$1.log" python3 "$BENCH/delay_relay.py" --listen "127.0.0.1:$RELAY_PORT" \
		--target "127.0.0.1:$2" --control "$RELAY_CTL"
	add_log "$T/relay$1.log"
	wait_port 127.0.0.1 "$RELAY_PORT" 10 "$SPAWNED_PID" && wait_for 10 test -S "$RELAY_CTL" ||
		hard_error "relay for way $1 did not start"
}

# start_way_proxy WAY PORT ARGS...: pimap-proxy for way 3 or 4, like the
# harness's start_proxy, but a proxy that does not come up is reported, not
# fatal.
start_way_proxy() {
	local way=$1 port=$2 pid
	shift 2
	# No SMTP listener: its default port is fixed and two proxies run at once.
	spawn "$T/proxy$way.stderr" "$PROXY_BIN" --foreground --log-file "$T/proxy$way.log" \
		--smtp-listen none --smtp-listen-tls none "$@"
	pid=$SPAWNED_PID
	if wait_port 127.0.0.1 "$port" 15 "$pid"; then
		log "proxy for way $way up (pid $pid): $*"
		return 0
	fi
	stop_pid "$pid"
	return 1
}

# proxy_args WAY PORT RELAY_PORT: the options of the proxy of way 3 or 4 (the
# gateway-mode contract), in PROXY_ARGS.
# The shipped macros, with the mutt one told that mutt connects to this
# listener (mutt sends no ID; Thunderbird is recognised by its ID). Each way
# is its own device, so one way's preferences never reach the other.
proxy_args() {
	local dir=$T/macros$1
	mkdir -p "$dir"
	cp "$top_srcdir/macros/thunderbird.yaml" "$dir/"
	sed "s|listen: \[\"stdio\"\]|listen: [\"stdio\", \"127.0.0.1:$2\"]|" "$top_srcdir/macros/mutt.yaml" >"$dir/mutt.yaml"
	PROXY_ARGS=(--listen "127.0.0.1:$2" --listen-tls none
		--upstream "pimaps://127.0.0.1:$3" --ca-file "$CA"
		--device-id "bench$1" --state-dir "$T/proxy$1-state"
		--set "macros.dir=$dir")
	[ "$1" = 3 ] || PROXY_ARGS+=(--set macros.enabled=false)
}

WAY_ARGS=()
SKIP_ARGS=()
for w in ${WAYS//,/ }; do
	case $w in
	1 | 2)
		start_relay "$w" "$DOVECOT_IMAPS"
		mode=tls
		[ "$w" = 2 ] && mode=tls+compress
		WAY_ARGS+=(--way "$w=$mode:127.0.0.1:$RELAY_PORT:$RELAY_CTL")
		;;
	3 | 4)
		P=$(free_port)
		# The relay's port is not known before the relay starts; the
		# configuration check only needs some port.
		proxy_args "$w" "$P" "$(free_port)"
		if ! "$PROXY_BIN" --check-config "${PROXY_ARGS[@]}" >"$T/proxy$w.check" 2>&1; then
			why=$(grep -v '^ ' "$T/proxy$w.check" | head -n 1)
			why=${why#"$PROXY_BIN: "}
			log "way $w: proxy has no gateway mode yet (pimap-proxy --check-config: $why)"
			SKIP_ARGS+=(--skip "$w=proxy has no gateway mode yet|pimap-proxy --check-config with this way's options: ${why//|//}")
			continue
		fi
		[ -n "$GW_PID" ] || start_gateway
		start_relay "$w" "$GW_PORT"
		proxy_args "$w" "$P" "$RELAY_PORT"
		if ! start_way_proxy "$w" "$P" "${PROXY_ARGS[@]}"; then
			why=$(tail -n 1 "$T/proxy$w.stderr" 2>/dev/null)
			log "way $w: proxy has no gateway mode yet (it did not start: $why)"
			SKIP_ARGS+=(--skip "$w=proxy has no gateway mode yet|it did not start with these options: ${why//|//}")
			continue
		fi
		WAY_ARGS+=(--way "$w=plain:127.0.0.1:$P:$RELAY_CTL")
		;;
	esac
done
[ ${#WAY_ARGS[@]} -gt 0 ] || fail "no way can run"

log "running: ${WORKLOADS} x ways ${WAYS} x $RUNS runs, at 0 ms and at $DELAY ms per direction"
python3 "$BENCH/clients.py" run "${WAY_ARGS[@]}" "${SKIP_ARGS[@]}" \
	--ca "$CA" --password "$DOVECOT_PASS" --lmtp "127.0.0.1:$DOVECOT_LMTP" \
	--store "127.0.0.1:$DOVECOT_IMAP" --homes "$DOVECOT_HOME" --template "$T/template" \
	--users "$USERS_CSV" --messages "$MESSAGES" --runs "$RUNS" \
	--delay "$DELAY" --workloads "$WORKLOADS" "${SERIAL[@]}" "${TRANSCRIPTS[@]}" --json "$T/results.json" ||
	fail "the workloads failed"

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
CMDLINE="bench/link_bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$ENV_BUILDDIR $CMDLINE"
SANITIZER=none
VERSIONS=()
if [ $GW_WAYS = 1 ]; then
	SANITIZER=$(sanitizer_of "$PROXY_BIN")
	[ "$SANITIZER" != none ] || SANITIZER=$(sanitizer_of "$GATEWAY_BIN")
	VERSIONS+=(--extra "proxy=$("$PROXY_BIN" --version 2>/dev/null | head -n 1)")
	VERSIONS+=(--extra "gateway=$("$GATEWAY_BIN" --version 2>/dev/null | head -n 1)")
else
	VERSIONS+=(--extra "proxy=pimap-proxy not used" --extra "gateway=pimap-gateway not used")
fi
OUT_ARGS=()
[ -z "$OUTPUT" ] || OUT_ARGS=(--output "$OUTPUT")
# bench/run-all collects chart rows in $PIMAP_BENCH_CHART (bench/perfdoc.py).
[ -z "${PIMAP_BENCH_CHART:-}" ] || OUT_ARGS+=(--chart "$PIMAP_BENCH_CHART")
python3 "$BENCH/clients.py" report --json "$T/results.json" "${OUT_ARGS[@]}" \
	--command "$CMDLINE" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--extra "nproc=$(nproc)" \
	--extra "cpu=$CPU_MODEL" \
	--extra "kernel=Linux $(uname -r)" \
	--extra "dovecot=$(dovecot --version | cut -d' ' -f1)" \
	"${VERSIONS[@]}" \
	--extra "python=$(python3 -c 'import platform; print(platform.python_version())')" \
	--extra "total=${TOTAL//_/ }" \
	--extra "median=${MEDIAN//_/ }" \
	--extra "sanitizer=$SANITIZER" ||
	fail "report failed"
[ -z "$OUTPUT" ] || log "wrote the bench:link section of $OUTPUT"
pass
