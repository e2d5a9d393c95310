# shellcheck shell=bash
#
# harness.sh - shared helper for pimap's integration tests (test tier b).
#
# Sourced by every tests/integration/t_*.sh:
#
#     : "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
#     . "$top_srcdir/tests/integration/lib/harness.sh"
#
# It gives the test `set -eu`, a private temp dir ($T) removed at exit, and a
# trap that stops every process the test started (by PID; Dovecot through its
# master.pid) and, when the test did not pass, dumps the logs to stderr.
#
# Exit codes follow automake: 0 pass, 1 fail, 77 skip (a required program is
# not installed), 99 hard error (the harness itself could not set things up).
#
# Every wait is a bounded poll on a condition; nothing sleeps "long enough".
#
# Environment knobs (all optional):
#   top_srcdir, top_builddir  set by `make check`; derived from this file otherwise
#   PIMAP_TEST_KEEP=1         keep $T after the run (its path is printed)
#   PIMAP_PROXY_WRAPPER       prefix for the proxy command, e.g. "valgrind -q --error-exitcode=1"
#   PIMAP_TEST_VERBOSE=1      dump the logs even when the test passes

set -eu

# --- locations --------------------------------------------------------------

HARNESS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$HARNESS_LIB/../../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
PROXY_BIN="$top_builddir/src/pimap-proxy"
IMAPC="$HARNESS_LIB/imapc.py"
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
export PYTHONPATH="$HARNESS_LIB${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

# --- reporting and exit codes ----------------------------------------------

HARNESS_PIDS=()       # every background process we started, in start order
HARNESS_DOVECOTS=()   # config files of the Dovecot instances we started
HARNESS_LOGS=()       # extra log files to dump on failure
HARNESS_T0=$EPOCHREALTIME

log() { printf '[%s %6.2fs] %s\n' "$TEST_NAME" "$(awk -v a="$HARNESS_T0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
hard_error() { log "HARNESS ERROR: $*"; exit 99; }
skip() { log "SKIP: $*"; exit 77; }
pass() { log "PASS${1:+: $*}"; exit 0; }

# require PROGRAM...: skip (77) unless every program is installed.
require() {
	local p
	for p in "$@"; do
		command -v "$p" >/dev/null 2>&1 || skip "$p is not installed"
	done
}

# require_proxy: the daemon under test must have been built. A missing binary
# is a build problem, not a missing system package, hence 99 and not 77.
require_proxy() {
	[ -x "$PROXY_BIN" ] || hard_error "$PROXY_BIN not built (run ./configure && make first)"
}

# add_log FILE: dump FILE too when the test fails.
add_log() { HARNESS_LOGS+=("$1"); }

require python3

# --- temp dir and cleanup --------------------------------------------------

T=$(mktemp -d "${TMPDIR:-/tmp}/pimap-$TEST_NAME.XXXXXX") || { echo "mktemp failed" >&2; exit 99; }
# Dovecot's mail processes run as `mail` and must reach the homes under $T.
chmod 0755 "$T"
# Nothing the test starts may write to the real home directory (the proxy's
# default state dir is under $HOME, mutt writes ~/.muttdebug0, ...).
export HOME="$T/home-test"
mkdir -p "$HOME"
PROXY_LOG="$T/proxy.log"

dump_file() {
	local f=$1
	[ -s "$f" ] || return 0
	printf '\n===== %s (last 300 lines) =====\n' "$f" >&2
	tail -n 300 "$f" >&2 || true
}

harness_cleanup() {
	local rc=$? i pid conf
	trap - EXIT INT TERM HUP
	set +e
	# Newest first: clients before the proxy, the proxy before Dovecot.
	for ((i = ${#HARNESS_PIDS[@]} - 1; i >= 0; i--)); do
		pid=${HARNESS_PIDS[i]}
		[ -n "$pid" ] && stop_pid "$pid" >/dev/null 2>&1
	done
	for conf in "${HARNESS_DOVECOTS[@]}"; do
		stop_dovecot "$conf" >/dev/null 2>&1
	done
	# A sanitizer or valgrind report from any proxy run fails the test, even
	# when the proxy was stopped by us and its exit status was not looked at.
	if [ "$rc" -eq 0 ] && grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|ERROR SUMMARY: [1-9]' \
		"$T"/proxy*.stderr >/dev/null 2>&1; then
		log "FAIL: sanitizer/valgrind report in $(grep -lE 'Sanitizer|runtime error:|ERROR SUMMARY' "$T"/proxy*.stderr | tr '\n' ' ')"
		rc=1
	fi
	# The same for every gateway run (stderr of each start, and its log file).
	if [ "$rc" -eq 0 ] && gateway_sanitizer_reports >/dev/null; then
		log "FAIL: sanitizer/valgrind report in $(gateway_sanitizer_reports | tr '\n' ' ')"
		rc=1
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] || [ "${PIMAP_TEST_VERBOSE:-0}" = 1 ]; then
		local f
		for f in "$T"/proxy*.log "$T"/proxy*.stderr "$T"/gateway*.log "$T"/gateway*.stderr \
			"$T"/dovecot*.log "${HARNESS_LOGS[@]}"; do
			[ -e "$f" ] && dump_file "$f"
		done
	fi
	if [ "${PIMAP_TEST_KEEP:-0}" = 1 ]; then
		echo "[$TEST_NAME] kept $T" >&2
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap harness_cleanup EXIT
trap 'log "interrupted"; exit 99' INT TERM HUP

# --- processes ---------------------------------------------------------------

# track_pid PID: stop PID at exit.
track_pid() { HARNESS_PIDS+=("$1"); }

untrack_pid() {
	local i
	for i in "${!HARNESS_PIDS[@]}"; do
		[ "${HARNESS_PIDS[i]}" = "$1" ] && HARNESS_PIDS[i]=""
	done
	return 0
}

alive() { kill -0 "$1" 2>/dev/null; }

# running PID: PID exists and is not a zombie.
running() { alive "$1" && [ "$(proc_state "$1")" != Z ]; }

# proc_state PID: the state letter from /proc/PID/stat (R, S, Z, ...), or
# nothing. The command name in field 2 may contain spaces: cut after ") ".
proc_state() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	st=${st##*) }
	printf '%s' "${st%% *}"
}

# wait_gone PID TIMEOUT: poll until PID no longer exists. Returns 1 on timeout.
# A zombie child counts as gone (its status is collected by `wait` later).
wait_gone() {
	local pid=$1 deadline
	deadline=$(deadline_in "$2")
	while alive "$pid"; do
		[ "$(proc_state "$pid")" = Z ] && return 0
		past "$deadline" && return 1
		sleep 0.02
	done
	return 0
}

# stop_pid PID [SIGNAL]: SIGTERM (or SIGNAL), wait up to 5 s, then SIGKILL.
# Reaps PID if it is our child. Returns 0.
stop_pid() {
	local pid=$1 sig=${2:-TERM}
	untrack_pid "$pid"
	if alive "$pid"; then
		kill -"$sig" "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" 5; then
			log "pid $pid ignored SIG$sig for 5 s; killing"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	return 0
}

# spawn LOGFILE CMD...: start CMD in the background with stdout+stderr to
# LOGFILE, track it, and set SPAWNED_PID.
spawn() {
	local out=$1; shift
	"$@" >>"$out" 2>&1 </dev/null &
	SPAWNED_PID=$!
	track_pid "$SPAWNED_PID"
}

# --- time and waiting --------------------------------------------------------

# deadline_in SECONDS -> absolute time (float seconds) SECONDS from now.
deadline_in() { awk -v n="$EPOCHREALTIME" -v d="$1" 'BEGIN{printf "%.6f", n+d}'; }
# past DEADLINE: true once the deadline has passed.
past() { awk -v n="$EPOCHREALTIME" -v d="$1" 'BEGIN{exit !(n>=d)}'; }

# wait_for TIMEOUT CMD...: poll CMD until it succeeds. Returns 1 on timeout.
wait_for() {
	local timeout=$1 deadline; shift
	deadline=$(deadline_in "$timeout")
	until "$@"; do
		past "$deadline" && return 1
		sleep 0.05
	done
	return 0
}

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_listening HOST PORT: something listens on HOST:PORT (TCP, v4 or v6).
# Reads /proc/net/tcp* instead of connecting, so the daemon under test does
# not see probe connections.
port_listening() {
	local host=$1 port=$2 hexport want
	hexport=$(printf '%04X' "$port")
	case $host in
	127.0.0.1) want="0100007F:$hexport" ;;
	0.0.0.0 | '*') want="00000000:$hexport" ;;
	*) want=":$hexport" ;;
	esac
	awk -v w="$want" 'NR > 1 && $4 == "0A" && index($2, w) { found = 1 } END { exit !found }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_port HOST PORT TIMEOUT [PID]: poll until HOST:PORT listens; with PID,
# give up early if that process died. Returns 1 on timeout or death.
wait_port() {
	local host=$1 port=$2 timeout=$3 pid=${4:-} deadline
	deadline=$(deadline_in "$timeout")
	until port_listening "$host" "$port"; do
		if [ -n "$pid" ] && ! alive "$pid"; then
			log "process $pid exited before listening on $host:$port"
			return 1
		fi
		past "$deadline" && return 1
		sleep 0.02
	done
	return 0
}

# log_has FILE FIXED-STRING: FILE contains the string.
log_has() { [ -e "$1" ] && grep -qF -- "$2" "$1"; }

# wait_log FILE FIXED-STRING TIMEOUT: poll until FILE contains the string.
wait_log() { wait_for "$3" log_has "$1" "$2"; }

# --- certificates ------------------------------------------------------------

# gen_certs [DIR]: a test CA, a server certificate signed by it with
# DNS:localhost and IP:127.0.0.1, a second certificate signed by the CA for a
# different name (wrong.example.invalid), and a self-signed "untrusted" one
# with the same names as the server's. ECDSA keys: fast to generate.
# Sets CERTS, CA, SERVER_CERT, SERVER_KEY, UNTRUSTED_CERT, UNTRUSTED_KEY,
# WRONGNAME_CERT, WRONGNAME_KEY.
gen_certs() {
	require certtool
	CERTS=${1:-$T/certs}
	mkdir -p "$CERTS"
	local d=$CERTS
	cat >"$d/ca.tmpl" <<-EOF
		cn = "pimap test CA"
		organization = "pimap tests"
		ca
		cert_signing_key
		crl_signing_key
		expiration_days = 30
	EOF
	cat >"$d/server.tmpl" <<-EOF
		cn = "localhost"
		organization = "pimap tests"
		dns_name = "localhost"
		ip_address = "127.0.0.1"
		ip_address = "::1"
		tls_www_server
		signing_key
		encryption_key
		expiration_days = 30
	EOF
	cat >"$d/wrongname.tmpl" <<-EOF
		cn = "wrong.example.invalid"
		dns_name = "wrong.example.invalid"
		tls_www_server
		signing_key
		encryption_key
		expiration_days = 30
	EOF
	{
		certtool --generate-privkey --key-type=ecdsa --outfile "$d/ca.key" &&
			certtool --generate-self-signed --load-privkey "$d/ca.key" \
				--template "$d/ca.tmpl" --outfile "$d/ca.pem" &&
			certtool --generate-privkey --key-type=ecdsa --outfile "$d/server.key" &&
			certtool --generate-certificate --load-privkey "$d/server.key" \
				--load-ca-certificate "$d/ca.pem" --load-ca-privkey "$d/ca.key" \
				--template "$d/server.tmpl" --outfile "$d/server.pem" &&
			certtool --generate-privkey --key-type=ecdsa --outfile "$d/wrongname.key" &&
			certtool --generate-certificate --load-privkey "$d/wrongname.key" \
				--load-ca-certificate "$d/ca.pem" --load-ca-privkey "$d/ca.key" \
				--template "$d/wrongname.tmpl" --outfile "$d/wrongname.pem" &&
			certtool --generate-privkey --key-type=ecdsa --outfile "$d/untrusted.key" &&
			certtool --generate-self-signed --load-privkey "$d/untrusted.key" \
				--template "$d/server.tmpl" --outfile "$d/untrusted.pem"
	} >"$d/certtool.log" 2>&1 || { cat "$d/certtool.log" >&2; hard_error "certtool failed"; }
	chmod 0644 "$d"/*.pem
	chmod 0600 "$d"/*.key
	CA=$d/ca.pem
	SERVER_CERT=$d/server.pem SERVER_KEY=$d/server.key
	UNTRUSTED_CERT=$d/untrusted.pem UNTRUSTED_KEY=$d/untrusted.key
	WRONGNAME_CERT=$d/wrongname.pem WRONGNAME_KEY=$d/wrongname.key
}

# --- Dovecot -----------------------------------------------------------------

DOVECOT_USERS_DEFAULT="alice bob carol dave"
DOVECOT_PASS=secret

# start_dovecot [NAME]: a private Dovecot in $T/NAME (default "dovecot") with
# users from $DOVECOT_USERS (default alice bob carol dave), all with password
# $DOVECOT_PASS. Needs gen_certs first (uses $SERVER_CERT unless
# DOVECOT_CERT/DOVECOT_KEY are set). Sets DOVECOT_IMAP, DOVECOT_IMAPS,
# DOVECOT_LMTP (ports), DOVECOT_CONF, DOVECOT_LOG, DOVECOT_DIR, DOVECOT_HOME
# (parent of the users' homes). Waits until every port listens.
start_dovecot() {
	require dovecot
	# Dovecot must switch to the mail user for the mailboxes.
	[ "$(id -u)" = 0 ] || hard_error "start_dovecot needs root (Dovecot runs mail as the mail user)"
	local name=${1:-dovecot} u
	local d="$T/$name"
	[ -n "${SERVER_CERT:-}" ] || gen_certs
	DOVECOT_DIR=$d
	DOVECOT_CONF=$d/dovecot.conf
	DOVECOT_LOG=$T/$name.log
	DOVECOT_HOME=$d/home
	DOVECOT_IMAP=$(free_port)
	DOVECOT_IMAPS=$(free_port)
	DOVECOT_LMTP=$(free_port)
	mkdir -p "$d/run" "$d/state" "$DOVECOT_HOME"
	: >"$d/users"
	for u in ${DOVECOT_USERS:-$DOVECOT_USERS_DEFAULT}; do
		printf '%s:{PLAIN}%s::::::\n' "$u" "$DOVECOT_PASS" >>"$d/users"
		mkdir -p "$DOVECOT_HOME/$u"
	done
	chown -R mail:mail "$DOVECOT_HOME"
	chmod 0644 "$d/users"
	cat >"$DOVECOT_CONF" <<-EOF
		# Private Dovecot for pimap test $TEST_NAME; everything lives in $d.
		base_dir = $d/run
		state_dir = $d/state
		instance_name = pimap-$TEST_NAME-$$
		log_path = $DOVECOT_LOG
		log_timestamp = "%Y-%m-%d %H:%M:%S "
		listen = 127.0.0.1
		protocols = imap lmtp
		ssl = yes
		ssl_cert = <${DOVECOT_CERT:-$SERVER_CERT}
		ssl_key = <${DOVECOT_KEY:-$SERVER_KEY}
		disable_plaintext_auth = no
		auth_mechanisms = plain login
		auth_username_format = %Ln
		auth_verbose = yes
		first_valid_uid = $(id -u mail)
		first_valid_gid = $(id -g mail)
		mail_location = maildir:~/Maildir
		mailbox_list_index = yes
		mail_plugins = \$mail_plugins zlib
		# Delivered messages must be byte-identical for every user so that
		# two mailboxes give the same transcript: no Received: with a
		# session id and a time, no Delivered-To: with the user's name.
		lmtp_add_received_header = no
		lmtp_hdr_delivery_address = none
		passdb {
		  driver = passwd-file
		  args = scheme=PLAIN $d/users
		}
		userdb {
		  driver = passwd-file
		  args = $d/users
		  default_fields = uid=mail gid=mail home=$DOVECOT_HOME/%u
		}
		service imap-login {
		  inet_listener imap {
		    address = 127.0.0.1
		    port = $DOVECOT_IMAP
		  }
		  inet_listener imaps {
		    address = 127.0.0.1
		    port = $DOVECOT_IMAPS
		    ssl = yes
		  }
		}
		service lmtp {
		  inet_listener lmtp {
		    address = 127.0.0.1
		    port = $DOVECOT_LMTP
		  }
		}
		protocol imap {
		  mail_plugins = \$mail_plugins imap_zlib
		  mail_max_userip_connections = 200
		}
	EOF
	# DOVECOT_EXTRA_CONF: more settings for this instance (e.g. a reduced imap_capability).
	[ -z "${DOVECOT_EXTRA_CONF:-}" ] || printf '%s\n' "$DOVECOT_EXTRA_CONF" >>"$DOVECOT_CONF"
	HARNESS_DOVECOTS+=("$DOVECOT_CONF")
	# -F: the master stays our child, so we reap it and it leaves no zombie
	# behind; it still writes master.pid, which stop_dovecot uses.
	dovecot -F -c "$DOVECOT_CONF" >>"$DOVECOT_LOG" 2>&1 </dev/null &
	local fpid=$!
	if ! wait_for 10 test -s "$d/run/master.pid"; then
		stop_pid "$fpid"
		hard_error "dovecot wrote no master.pid (see $DOVECOT_LOG)"
	fi
	DOVECOT_PID=$(cat "$d/run/master.pid")
	[ "$DOVECOT_PID" = "$fpid" ] || hard_error "dovecot master.pid $DOVECOT_PID is not the process started ($fpid)"
	wait_port 127.0.0.1 "$DOVECOT_IMAP" 10 "$DOVECOT_PID" &&
		wait_port 127.0.0.1 "$DOVECOT_IMAPS" 10 "$DOVECOT_PID" &&
		wait_port 127.0.0.1 "$DOVECOT_LMTP" 10 "$DOVECOT_PID" ||
		hard_error "dovecot does not listen"
	log "dovecot up: imap $DOVECOT_IMAP, imaps $DOVECOT_IMAPS, lmtp $DOVECOT_LMTP"
}

# stop_dovecot [CONF]: stop the Dovecot of CONF (default $DOVECOT_CONF) by the
# PID in its master.pid, then make sure every child it had is gone too.
stop_dovecot() {
	local conf=${1:-$DOVECOT_CONF} d pidf pid kids k
	d=$(dirname "$conf")
	pidf=$d/run/master.pid
	[ -s "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if alive "$pid"; then
		kids=$(pgrep -P "$pid" || true)
		# The master alone takes about a second to shut its children
		# down; signalling them too makes it a tenth of that.
		# shellcheck disable=SC2086
		kill -TERM "$pid" $kids 2>/dev/null || true
		if ! wait_gone "$pid" 10; then
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
		for k in $kids; do
			if ! wait_gone "$k" 5; then
				kill -KILL "$k" 2>/dev/null || true
			fi
		done
	fi
	wait "$pid" 2>/dev/null || true
	rm -f "$pidf"
	return 0
}

# dovecot_raise_limits SESSIONS: restart the Dovecot of start_dovecot with
# limits for SESSIONS concurrent sessions (benchmarks). Its defaults cap
# them far below: 100 processes per service (imap-login proxies every TLS
# connection in its own process by default), 1000 clients per service, 10
# connections per user and address. Sets DOVECOT_LIMITS (a description for
# reports) and DOVECOT_PID.
dovecot_raise_limits() {
	local sessions=$1 clients=$(($1 * 2 + 500))
	DOVECOT_LIMITS="default_process_limit = 1000, default_client_limit = $clients, imap-login in high-performance mode (service_count = 0, client_limit = $clients, process_min_avail = 2: a few processes serve every TLS connection instead of one process each), imap process_limit = $((sessions + 100)) (one imap process per store connection, as by default), mail_max_userip_connections = $clients"
	cat >>"$DOVECOT_CONF" <<-EOF

		# --- dovecot_raise_limits: $sessions concurrent sessions ---
		default_process_limit = 1000
		default_client_limit = $clients
		service imap-login {
		  service_count = 0
		  client_limit = $clients
		  process_min_avail = 2
		}
		service imap {
		  process_limit = $((sessions + 100))
		}
		protocol imap {
		  mail_max_userip_connections = $clients
		}
	EOF
	log "restarting Dovecot with limits for $sessions sessions"
	restart_dovecot
}

# restart_dovecot: stop the Dovecot of start_dovecot and start it again with
# the same configuration (and ports); waits until it listens. Sets DOVECOT_PID.
restart_dovecot() {
	stop_dovecot "$DOVECOT_CONF"
	dovecot -F -c "$DOVECOT_CONF" >>"$DOVECOT_LOG" 2>&1 </dev/null &
	DOVECOT_PID=$!
	wait_for 10 test -s "$DOVECOT_DIR/run/master.pid" || hard_error "dovecot did not restart (see $DOVECOT_LOG)"
	[ "$(cat "$DOVECOT_DIR/run/master.pid")" = "$DOVECOT_PID" ] || hard_error "dovecot master.pid is not the process started"
	wait_port 127.0.0.1 "$DOVECOT_IMAPS" 10 "$DOVECOT_PID" && wait_port 127.0.0.1 "$DOVECOT_LMTP" 10 "$DOVECOT_PID" ||
		hard_error "dovecot does not listen after the restart"
}

# deliver USER SUBJECT [BODY]: deliver a small text message over LMTP.
# The message is deterministic (fixed Date, Message-ID derived from the
# content) so two users given the same deliveries hold identical messages.
deliver() {
	python3 "$IMAPC" deliver --lmtp "127.0.0.1:$DOVECOT_LMTP" --to "$1" \
		--subject "$2" ${3+--body "$3"} ||
		hard_error "LMTP delivery to $1 failed"
}

# deliver_file USER FILE: deliver FILE (an RFC 5322 message, LF or CRLF) over LMTP.
deliver_file() {
	python3 "$IMAPC" deliver --lmtp "127.0.0.1:$DOVECOT_LMTP" --to "$1" --file "$2" ||
		hard_error "LMTP delivery of $2 to $1 failed"
}

# start_store_for_proxy: what most proxy tests start with: skip unless Dovecot,
# certtool and the built proxy are there, then test certificates and a private
# Dovecot (see start_dovecot).
start_store_for_proxy() {
	require dovecot certtool
	require_proxy
	gen_certs
	start_dovecot
}

# --- the proxy -------------------------------------------------------------

# start_proxy ARGS...: run the proxy in the foreground with logging to
# $PROXY_LOG (default $T/proxy.log) and its stderr to ${PROXY_LOG%.log}.stderr.
# Adds --state-dir $T/proxy-state unless ARGS has one, and turns the SMTP
# listeners off (their default ports are fixed) unless ARGS name one.
# Waits until every --listen/--listen-tls/--smtp-listen/--smtp-listen-tls
# port listens (fails fast if the proxy exits). Sets PROXY_PID.
start_proxy() {
	require_proxy
	local a prev="" ports=() has_state=0 has_smtp=0
	for a in "$@"; do
		case $prev in
		--listen | --listen-tls | --smtp-listen | --smtp-listen-tls)
			[ "$a" != none ] && ports+=("$a")
			;;
		esac
		case $a in --state-dir | --state-dir=*) has_state=1 ;; esac
		case $a in --smtp-listen* | smtp.listen*) has_smtp=1 ;; esac
		prev=$a
	done
	local extra=()
	[ $has_state = 1 ] || extra=(--state-dir "$T/proxy-state")
	[ $has_smtp = 1 ] || extra+=(--smtp-listen none --smtp-listen-tls none)
	# shellcheck disable=SC2086
	spawn "${PROXY_LOG%.log}.stderr" ${PIMAP_PROXY_WRAPPER:-} "$PROXY_BIN" --foreground \
		--log-file "$PROXY_LOG" "${extra[@]}" "$@"
	PROXY_PID=$SPAWNED_PID
	local hp
	for hp in "${ports[@]}"; do
		wait_port "${hp%:*}" "${hp##*:}" 15 "$PROXY_PID" ||
			fail "proxy does not listen on $hp (args: $*)"
	done
	log "proxy up (pid $PROXY_PID): $*"
}

# proxy_alive: the proxy we started is still running.
proxy_alive() { running "$PROXY_PID"; }

# imapc ARGS...: run the scripted IMAP client (see imapc.py --help).
imapc() { python3 "$IMAPC" "$@"; }

# sanitizer_of BIN: "AddressSanitizer" if BIN was built with it, else "none"
# (a benchmark's memory and CPU figures mean nothing under ASan).
sanitizer_of() {
	if grep -q '__asan_init' "$1" 2>/dev/null; then echo AddressSanitizer; else echo none; fi
}

# assert_contains FILE FIXED-STRING [WHAT]
assert_contains() {
	grep -qF -- "$2" "$1" || fail "${3:-$1} does not contain '$2'"
}

# --- the gateway -------------------------------------------------------------

GATEWAY_BIN="$top_builddir/src/pimap-gateway"
GW_LOG="$T/gateway.log"
GW_STATE="$T/gw-state"
GW_STARTS=0         # how many times start_gateway ran (numbers the stderr files)
GW_PID=""

# require_gateway: the gateway must have been built (99 otherwise, like require_proxy).
require_gateway() {
	[ -x "$GATEWAY_BIN" ] || hard_error "$GATEWAY_BIN not built (run ./configure && make first)"
}

# gateway_sanitizer_reports: print the gateway stderr/log files holding an
# AddressSanitizer, LeakSanitizer, UBSan or valgrind report; false if none.
gateway_sanitizer_reports() {
	local f files=()
	for f in "$T"/gateway*.stderr "$T"/gateway*.log; do
		[ -f "$f" ] && files+=("$f")
	done
	[ ${#files[@]} -gt 0 ] || return 1
	grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|ERROR SUMMARY: [1-9]' "${files[@]}"
}

# start_gateway [ARGS...]: run pimap-gateway in the foreground in front of the
# Dovecot of start_dovecot (over imaps, verified with $CA), with an
# implicit-TLS listener on 127.0.0.1:$GW_PORT and a STARTTLS one on
# 127.0.0.1:$GW_STARTTLS_PORT, state in $GW_STATE ($T/gw-state), log in
# $GW_LOG ($T/gateway.log) and stderr in $T/gateway.N.stderr (N counts the
# starts). ARGS are appended (e.g. --set limits.max_queued_events=3). The
# ports are chosen the first time only, so a restart reuses them. Waits until
# both ports listen (fails fast if the gateway exits). Sets GW_PID.
# PIMAP_GATEWAY_WRAPPER prefixes the command (e.g. valgrind).
start_gateway() {
	require_gateway
	[ -n "${DOVECOT_IMAPS:-}" ] || hard_error "start_gateway needs start_dovecot first"
	[ -z "$GW_PID" ] || ! running "$GW_PID" || hard_error "start_gateway: gateway $GW_PID still runs"
	: "${GW_PORT:=$(free_port)}"
	: "${GW_STARTTLS_PORT:=$(free_port)}"
	while [ "$GW_STARTTLS_PORT" = "$GW_PORT" ]; do GW_STARTTLS_PORT=$(free_port); done
	mkdir -p "$GW_STATE"
	GW_STARTS=$((GW_STARTS + 1))
	GW_STDERR="$T/gateway.$GW_STARTS.stderr"
	# shellcheck disable=SC2086
	spawn "$GW_STDERR" ${PIMAP_GATEWAY_WRAPPER:-} "$GATEWAY_BIN" -f \
		--listen "127.0.0.1:$GW_PORT" --listen-starttls "127.0.0.1:$GW_STARTTLS_PORT" \
		--cert "$SERVER_CERT" --key "$SERVER_KEY" \
		--store "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
		--state-dir "$GW_STATE" --log-file "$GW_LOG" -v "$@"
	GW_PID=$SPAWNED_PID
	export GW_PORT GW_STARTTLS_PORT GW_PID GW_STATE GW_LOG
	if ! wait_port 127.0.0.1 "$GW_PORT" 15 "$GW_PID" ||
		! wait_port 127.0.0.1 "$GW_STARTTLS_PORT" 15 "$GW_PID"; then
		dump_file "$GW_STDERR"
		fail "gateway does not listen on 127.0.0.1:$GW_PORT and 127.0.0.1:$GW_STARTTLS_PORT (args: $*)"
	fi
	log "gateway up (pid $GW_PID): tls $GW_PORT, starttls $GW_STARTTLS_PORT${*:+, $*}"
}

# gateway_alive: the gateway we started last is still running.
gateway_alive() { [ -n "$GW_PID" ] && running "$GW_PID"; }

# stop_gateway [TIMEOUT]: SIGTERM, wait (default 20 s) until it exits; fail
# the test if it does not, or if it exits with a status other than 0.
stop_gateway() {
	local timeout=${1:-20} pid=$GW_PID rc=0
	[ -n "$pid" ] || hard_error "stop_gateway: no gateway started"
	running "$pid" || { wait "$pid" 2>/dev/null || rc=$?; fail "gateway $pid was not running at stop_gateway (exit status $rc)"; }
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" "$timeout"; then
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || true
		untrack_pid "$pid"
		wait "$pid" 2>/dev/null || true
		fail "gateway $pid did not exit within ${timeout} s of SIGTERM"
	fi
	untrack_pid "$pid"
	wait "$pid" 2>/dev/null || rc=$?
	GW_PID=""
	[ "$rc" -eq 0 ] || fail "gateway $pid exited with status $rc after SIGTERM"
	log "gateway $pid stopped (SIGTERM)"
}

# kill_gateway: SIGKILL the gateway (a crash); waits until it is gone.
kill_gateway() {
	local pid=$GW_PID
	[ -n "$pid" ] || hard_error "kill_gateway: no gateway started"
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$pid" 10 || hard_error "gateway $pid survived SIGKILL"
	untrack_pid "$pid"
	wait "$pid" 2>/dev/null || true
	GW_PID=""
	log "gateway $pid killed (SIGKILL)"
}
