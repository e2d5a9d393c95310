#!/bin/bash
# t_logging.sh - where both daemons log (issue 8): stderr by default, a file
# with log.file, the syslog daemon with log.syslog / --syslog.
#  - pimap-proxy --syslog sends its lines as datagrams to log.syslog_socket
#    (a receiver of the test's own stands in for /dev/log): RFC 3164 form
#    "<PRI>Mmm dd hh:mm:ss pimap-proxy[PID]: message", facility mail by
#    default, the severity from the level; nothing of it on stderr;
#  - pimap-gateway with log.syslog and log.syslog_facility: local3 in its
#    configuration file does the same;
#  - log.file and log.syslog together: a configuration error (exit 2);
#  - a syslog socket that is not there: the daemon still starts, says so
#    once on stderr and writes its lines there;
#  - SIGHUP with the file changed from syslog to a log file moves the log.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_proxy
require_gateway
gen_certs
DOVECOT_USERS=alice start_dovecot

SYSLOG_SOCK=$T/syslog.sock
SYSLOG_OUT=$T/syslog.out
spawn "$T/syslogd.stderr" python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\n")
' "$SYSLOG_SOCK" "$SYSLOG_OUT"
wait_for 10 test -S "$SYSLOG_SOCK" || hard_error "the test's syslog receiver did not start"
add_log "$SYSLOG_OUT"

syslog_has() { grep -Eq -- "$1" "$SYSLOG_OUT" 2>/dev/null; }

# --- the proxy, --syslog ------------------------------------------------------------
P=$(free_port)
spawn "$T/proxy-syslog.stderr" "$PROXY_BIN" -f --syslog --set "log.syslog_socket=$SYSLOG_SOCK" \
	--listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/proxy-state" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
PROXY_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$P" 15 "$PROXY_PID" || fail "the proxy does not listen"
# mail.info = 2 * 8 + 6 = 22
wait_for 10 syslog_has "^<22>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} pimap-proxy\\[$PROXY_PID\\]: pimap-proxy [0-9.]+ started" ||
	fail "no 'started' line from the proxy in syslog form"
log "ok: the proxy's start is in syslog form, facility mail, severity info"
python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.recv(4096)
s.sendall(b"a LOGOUT\r\n")
while s.recv(4096):
    pass
' "$P" || fail "cannot talk to the proxy"
wait_for 10 syslog_has "^<22>.* pimap-proxy\\[$PROXY_PID\\]: \\[c1 127\\.0\\.0\\.1:[0-9]+\\] connected" ||
	fail "no per-connection line (with its prefix) in syslog"
log "ok: per-connection lines keep their prefix"
[ ! -s "$T/proxy-syslog.stderr" ] || { cat "$T/proxy-syslog.stderr" >&2; fail "the proxy wrote to stderr while logging to syslog"; }
log "ok: nothing on the proxy's stderr"

# A configuration file with log.syslog, then SIGHUP after it names a log file.
printf 'log:\n  syslog: true\n  syslog_socket: "%s"\n' "$SYSLOG_SOCK" >"$T/proxy.yaml"
stop_pid "$PROXY_PID"
spawn "$T/proxy-hup.stderr" "$PROXY_BIN" -f --config "$T/proxy.yaml" \
	--listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/proxy-state" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
PROXY_PID=$SPAWNED_PID
wait_for 10 syslog_has "pimap-proxy\\[$PROXY_PID\\]: pimap-proxy [0-9.]+ started" ||
	fail "log.syslog in the configuration file does not log to syslog"
printf 'log:\n  file: "%s"\n' "$T/proxy-after-hup.log" >"$T/proxy.yaml"
kill -HUP "$PROXY_PID"
wait_for 10 log_has "$T/proxy-after-hup.log" "configuration reloaded" ||
	fail "after SIGHUP the proxy does not log to the file the configuration now names"
log "ok: log.syslog from the configuration file; SIGHUP moves the log to log.file"
stop_pid "$PROXY_PID"

# --- the gateway, from its configuration file -------------------------------------
cat >"$T/gateway.yaml" <<EOF
log:
  syslog: true
  syslog_facility: local3
  syslog_socket: "$SYSLOG_SOCK"
EOF
GP=$(free_port)
spawn "$T/gateway-syslog.stderr" "$GATEWAY_BIN" -f --config "$T/gateway.yaml" --listen "127.0.0.1:$GP" \
	--listen-starttls none --cert "$SERVER_CERT" --key "$SERVER_KEY" \
	--store "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --state-dir "$T/gw-state"
G_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$GP" 15 "$G_PID" || fail "the gateway does not listen"
# local3.info = 19 * 8 + 6 = 158
wait_for 10 syslog_has "^<158>.* pimap-gateway\\[$G_PID\\]: " || fail "no line from the gateway with facility local3"
[ ! -s "$T/gateway-syslog.stderr" ] || { cat "$T/gateway-syslog.stderr" >&2; fail "the gateway wrote to stderr while logging to syslog"; }
log "ok: the gateway logs to syslog with facility local3, nothing on stderr"
stop_pid "$G_PID"

# --- errors and fallback -------------------------------------------------------------
both_refused() {
	local name=$1 rc=0
	shift
	"$@" -f --syslog --log-file "$T/x.log" >"$T/both.out" 2>&1 </dev/null || rc=$?
	[ "$rc" = 2 ] || { cat "$T/both.out" >&2; fail "$name with log.file and log.syslog: exit $rc, not 2"; }
	grep -q "log.file and log.syslog exclude each other" "$T/both.out" ||
		{ cat "$T/both.out" >&2; fail "$name: no clear error for log.file with log.syslog"; }
}
both_refused pimap-proxy "$PROXY_BIN" --listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/proxy-state" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
both_refused pimap-gateway "$GATEWAY_BIN" --listen "127.0.0.1:$GP" --listen-starttls none \
	--cert "$SERVER_CERT" --key "$SERVER_KEY" --store "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--state-dir "$T/gw-state"
log "ok: log.file with log.syslog is a configuration error for both daemons"

spawn "$T/proxy-nosyslog.stderr" "$PROXY_BIN" -f --syslog --set "log.syslog_socket=$T/no-such.sock" \
	--listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/proxy-state" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
PROXY_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$P" 15 "$PROXY_PID" || fail "the proxy does not start without its syslog socket"
wait_for 10 grep -Eq "INFO pimap-proxy [0-9.]+ started" "$T/proxy-nosyslog.stderr" ||
	fail "with no syslog socket the lines do not go to stderr"
[ "$(grep -c "syslog socket $T/no-such.sock" "$T/proxy-nosyslog.stderr")" = 1 ] ||
	fail "the missing syslog socket is not reported exactly once"
log "ok: without a syslog socket the proxy starts, says so once, and logs to stderr"
stop_pid "$PROXY_PID"
pass
