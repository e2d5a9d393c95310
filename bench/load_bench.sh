#!/bin/bash
# load_bench.sh - bounded load on loopback (not a test): N concurrent
# sessions, each running a scripted workload at a steady rate (bench/load.py)
# for a fixed time, three ways side by side:
#   1. directly on Dovecot over TLS (the baseline: plain IMAP, same work);
#   2. through pimap-proxy in compatibility mode (clients on its loopback
#      listener, the proxy over TLS to Dovecot);
#   3. P-IMAP device sessions (user#Pload) on pimap-gateway over TLS, the
#      gateway over TLS (with COMPRESS) to Dovecot.
# Each session connects from its own loopback address (127.1.x.y), as
# devices would (the gateway throttles logins per address: more than
# limits.max_failed_logins logins under way from one address are refused).
# Records throughput, p50/p99/max latency, errors, and the daemon's peak RSS
# and open descriptors (sampled every 0.5 s; with the count before the run,
# and a check that it is back there afterwards: no leak), and writes the
# section between <!-- bench:load:start --> and <!-- bench:load:end --> of
# docs/PERFORMANCE.md (or --output FILE). Fails if any session has an error.
#
# Usage: bench/load_bench.sh [--sessions N] [--duration S] [--interval S]
#                            [--messages M] [--output FILE]
#   --sessions N   concurrent sessions per run (default 2000)
#   --duration S   seconds of steady load per run (default 60)
#   --interval S   seconds between one session's commands (default 2)
#   --messages M   messages in each user's INBOX (default 50)
#   --output FILE  where to write the section (default docs/PERFORMANCE.md);
#                  "-" prints it only
# Needs built daemons (top_builddir), preferably without sanitizers
# (./configure && make), dovecot, certtool and python3; runs as root. The
# descriptor limit is raised to the hard limit (about 6 per session needed).
# Every process it starts is stopped at exit.

ORIG_ARGS=("$@")
ENV_BUILDDIR=${top_builddir:-}
SESSIONS=2000
DURATION=60
INTERVAL=2
MESSAGES=50
OUTPUT=
while [ $# -gt 0 ]; do
	case $1 in
	--sessions) SESSIONS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--interval) INTERVAL=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "load_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
TEST_NAME=load_bench
. "$top_srcdir/tests/integration/lib/harness.sh"
LOAD=$top_srcdir/bench/load.py
[ -n "$OUTPUT" ] || OUTPUT=$top_srcdir/docs/PERFORMANCE.md
RAMP_BATCH=50

require dovecot certtool
require_proxy
require_gateway
SANITIZER=$(sanitizer_of "$GATEWAY_BIN")
[ "$SANITIZER" = none ] || log "warning: the daemons are built with AddressSanitizer; RSS is not representative"

# A session holds a client socket at the daemon and the load generator, an
# upstream socket at the daemon and at Dovecot, and Dovecot a few more.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((SESSIONS * 6 + 500)) ] ||
	hard_error "ulimit -n is $(ulimit -n); $((SESSIONS * 6 + 500)) descriptors needed for $SESSIONS sessions"

gen_certs
USERS=""
for ((i = 0; i < SESSIONS; i++)); do USERS+=" $(printf 'u%04d' "$i")"; done
DOVECOT_USERS=$USERS start_dovecot
dovecot_raise_limits "$SESSIONS"
add_log "$DOVECOT_LOG"

# Every INBOX a copy of one generated mailbox (hard links: Dovecot only
# renames and unlinks maildir files).
python3 "$top_srcdir/bench/workload.py" populate --maildir "$T/template" --count "$MESSAGES" ||
	hard_error "populate failed"
python3 - "$T/template/new" "$DOVECOT_HOME" "$SESSIONS" <<'PYEOF' || hard_error "could not fill the mailboxes"
import os, pwd, sys
src, homes, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mail = pwd.getpwnam("mail")
names = os.listdir(src)
for i in range(n):
    md = os.path.join(homes, "u%04d" % i, "Maildir")
    for d in ("", "cur", "new", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
        os.chown(os.path.join(md, d), mail.pw_uid, mail.pw_gid)
    for name in names:
        os.link(os.path.join(src, name), os.path.join(md, "new", name))
PYEOF
log "$SESSIONS mailboxes of $MESSAGES messages"

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# load LABEL PORT PID NAME [load.py ARGS...]: one run; the daemon's
# descriptors must be back to their count before the run once every session
# has logged out.
# With PID "-" (Dovecot: its sessions live in many processes) nothing is sampled.
load() {
	local label=$1 port=$2 pid=$3 name=$4; shift 4
	local json=$T/load-$name.json before sample=()
	[ "$pid" = - ] || sample=(--pid "$pid" --pid-name "$name")
	# One session first: what a daemon opens once and keeps (the gateway's
	# SQLite WAL files) is not a leak.
	python3 "$LOAD" run --port "$port" --user-format u%04d --sessions 1 --password "$DOVECOT_PASS" \
		--duration 0 --label warm-up --json "$T/warm-$name.json" "$@" >/dev/null 2>&1 || fail "$label: warm-up failed"
	[ "$pid" = - ] || before=$(fd_count "$pid")
	python3 "$LOAD" run --port "$port" --user-format u%04d --sessions "$SESSIONS" --password "$DOVECOT_PASS" \
		--duration "$DURATION" --interval "$INTERVAL" --ramp-batch "$RAMP_BATCH" --spread "${sample[@]}" \
		--label "$label" --json "$json" "$@" || fail "$label: the run had errors (see above)"
	[ "$pid" != - ] || return 0
	wait_for 60 test "$(fd_count "$pid")" -le "$before" ||
		fail "$label: $name holds $(fd_count "$pid") descriptors after the run, $before before"
	log "$label: $name back to $(fd_count "$pid") descriptors"
}

# Every mailbox read once first: the first run must not pay for building
# Dovecot's indexes and caches.
log "warm-up: every mailbox read once"
python3 "$LOAD" run --port "$DOVECOT_IMAP" --user-format u%04d --sessions "$SESSIONS" --password "$DOVECOT_PASS" \
	--duration 0 --ramp-batch "$RAMP_BATCH" --spread --warm --label warm-up --json "$T/warm.json" ||
	fail "the warm-up pass failed"

load "Dovecot directly (TLS)" "$DOVECOT_IMAPS" - dovecot --tls --ca "$CA"

P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--set limits.max_clients=$((SESSIONS + 100))
load "pimap-proxy, compatibility mode" "$P" "$PROXY_PID" pimap-proxy
stop_pid "$PROXY_PID"

start_gateway --set limits.max_clients=$((SESSIONS + 100))
load "pimap-gateway, P-IMAP device sessions" "$GW_PORT" "$GW_PID" pimap-gateway --tls --ca "$CA" --device load
stop_gateway 120

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
CMDLINE="bench/load_bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
# the build directory as the document shows it: relative inside the source tree
SHOWN_BUILDDIR=${ENV_BUILDDIR#"$top_srcdir"/}
[ -z "$ENV_BUILDDIR" ] || CMDLINE="top_builddir=$SHOWN_BUILDDIR $CMDLINE"
REPORT_OUT=$OUTPUT
[ "$OUTPUT" = - ] && REPORT_OUT=$T/PERFORMANCE.md
python3 "$LOAD" report --json "$T/load-dovecot.json" --json "$T/load-pimap-proxy.json" \
	--json "$T/load-pimap-gateway.json" --output "$REPORT_OUT" --command "$CMDLINE" \
	--extra "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--extra "nproc=$(nproc)" \
	--extra "cpu=$CPU_MODEL" \
	--extra "kernel=Linux $(uname -r)" \
	--extra "dovecot=Dovecot $(dovecot --version | cut -d' ' -f1)" \
	--extra "pimap=$("$PROXY_BIN" --version 2>/dev/null | head -n 1)" \
	--extra "python=$(python3 -c 'import platform; print(platform.python_version())')" \
	--extra "sanitizer=$SANITIZER" \
	--extra "messages=$MESSAGES" \
	--extra "ramp_batch=$RAMP_BATCH" \
	--extra "dovecot_limits=$DOVECOT_LIMITS" ||
	fail "report failed"
[ "$OUTPUT" = - ] || log "wrote the bench:load section of $OUTPUT"
pass
