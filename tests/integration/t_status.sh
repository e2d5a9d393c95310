#!/bin/bash
# t_status.sh - pimap-proxy --status (issue 8): the running proxy's
# accounts, link state and last error, read from its status socket.
#  (a) gateway mode, no client yet: version, pid, mode, device, listeners,
#      "clients: 0", "last error: none";
#  (b) a client logged in as alice, in IDLE on INBOX, and one not logged
#      in: one account line each, their connections, "link up";
#  (c) the link cut: the connection shows its link down or reconnecting and
#      the last error is the loss; restored: up again;
#  (d) compatibility mode: logins by LOGIN and by AUTHENTICATE PLAIN (with
#      and without an initial response) show as accounts, the upstream as
#      TLS and compressed; a failed login shows no name;
#  (e) the socket: mode 0600; another user is refused even when the file
#      is reachable; no proxy running: a clear error, exit 1; a stale
#      socket (SIGKILL) is replaced at the next start; a second proxy on
#      the same state directory runs without one and says why; --stdio
#      makes none unless status.socket is set (and then still exits when
#      its client leaves); status.socket: none makes none.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_proxy
require_gateway
gen_certs
DOVECOT_USERS="alice bob" start_dovecot
deliver alice "status: one"
start_gateway
RELAY_PORT=$(free_port)
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$T/relay.ctl"
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$SPAWNED_PID" || fail "link relay does not listen"
relay() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.recv(100).decode().strip())' "$T/relay.ctl" "$1"; }

# status STATE-DIR: the report of the proxy using that state directory.
status() { "$PROXY_BIN" --status --state-dir "$1" 2>&1; }
# expect_status T STATE-DIR WHAT REGEX...: poll until every REGEX matches a line.
expect_status() {
	local t=$1 dir=$2 what=$3 deadline
	shift 3
	deadline=$(deadline_in "$t")
	while :; do
		status "$dir" >"$T/status.out" || true
		local r ok=1
		for r in "$@"; do
			grep -Eq -- "$r" "$T/status.out" || { ok=0; break; }
		done
		[ $ok = 1 ] && break
		if past "$deadline"; then
			sed 's/^/    | /' "$T/status.out" >&2
			fail "status: $what (no line matches: $r)"
		fi
		sleep 0.2
	done
	log "ok: status: $what"
}

# background_clients NAME: run the Python on stdin (which sets up clients)
# in the background; its clients stay connected until end_clients NAME.
background_clients() {
	local name=$1
	{
		echo "import os, time"
		cat
		printf 'open(os.path.join(os.environ["T"], "%s.ready"), "w").close()\n' "$name"
		printf 'while not os.path.exists(os.path.join(os.environ["T"], "%s.done")):\n    time.sleep(0.1)\n' "$name"
	} >"$T/$name.py"
	python3 "$T/$name.py" &
	CLIENTS_PID=$!
	track_pid "$CLIENTS_PID"
	wait_for 20 test -e "$T/$name.ready" || fail "the clients of part $name did not start"
}
end_clients() {
	touch "$T/$1.done"
	wait "$CLIENTS_PID" || true
	untrack_pid "$CLIENTS_PID"
}

P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/ps" \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id laptop7 \
	--set link.heartbeat=2s --set link.dead_timeout=2s --set link.reconnect_min=200ms --set link.reconnect_max=1s
GW_PROXY_PID=$PROXY_PID

# --- (a) -------------------------------------------------------------------------
expect_status 10 "$T/ps" "a proxy with no client" \
	"^pimap-proxy: [0-9.]+, pid $GW_PROXY_PID, up [0-9]+s$" \
	"^mode: gateway, upstream pimaps://127.0.0.1:$RELAY_PORT, device laptop7$" \
	"^listen: 127.0.0.1:$P \(imap\)$" \
	"^clients: 0 connected, at most 256$" \
	"^last error: none$"

# --- (b) ---------------------------------------------------------------------------
export P T DOVECOT_PASS
background_clients b <<'PY'
from imapc import Client
c = Client("127.0.0.1", int(os.environ["P"]), tls=False, timeout=30)
c.connect()
c.authenticate_plain("alice", os.environ["DOVECOT_PASS"], initial_response=False)
c.ok("SELECT INBOX")
tag = c.idle_start()
idle = Client("127.0.0.1", int(os.environ["P"]), tls=False, timeout=30)
idle.connect()   # never logs in
PY
expect_status 10 "$T/ps" "a client in IDLE and one not logged in" \
	"^clients: 2 connected" \
	"^account alice: 1 connection, link up on 1 of 1$" \
	"^connection c[0-9]+ 127.0.0.1:[0-9]+: alice, INBOX, in IDLE, link up for [0-9]+s$" \
	"^account \(not logged in\): 1 connection" \
	"^connection c[0-9]+ 127.0.0.1:[0-9]+: not logged in"
grep -q "$DOVECOT_PASS" "$T/status.out" && fail "the password is in the status report"

# --- (c) -------------------------------------------------------------------------------
relay cut >/dev/null
expect_status 15 "$T/ps" "the link cut: not up, and the loss is the last error" \
	"^account alice: 1 connection, link up on 0 of 1$" \
	"^connection c[0-9]+ .*: alice, INBOX, in IDLE, link (down|reconnecting|resuming)" \
	"^last error: [0-9-]{10}T[0-9:]{8}Z \[c[0-9]+ 127.0.0.1:[0-9]+\] .*(lost|dead|failed|refused|closed)"
relay restore >/dev/null
expect_status 20 "$T/ps" "the link restored" "^account alice: 1 connection, link up on 1 of 1$"
end_clients b

# --- (d) compatibility mode ----------------------------------------------------------
PROXY_LOG=$T/proxy-compat.log
CP=$(free_port)
start_proxy --listen "127.0.0.1:$CP" --listen-tls none --state-dir "$T/pc" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
COMPAT_PID=$PROXY_PID
export CP
background_clients d <<'PY'
from imapc import Client
def conn():
    c = Client("127.0.0.1", int(os.environ["CP"]), tls=False, timeout=30)
    c.connect()
    return c
a = conn(); a.login("alice", os.environ["DOVECOT_PASS"])
b = conn(); b.authenticate_plain("bob", os.environ["DOVECOT_PASS"], initial_response=True)
c = conn(); c.authenticate_plain("alice", os.environ["DOVECOT_PASS"], initial_response=False)
d = conn(); d.command("LOGIN mallory wrongpassword")
PY
expect_status 10 "$T/pc" "compatibility mode: accounts by LOGIN and AUTHENTICATE, a failed login nameless" \
	"^mode: compatibility, upstream imaps://127.0.0.1:$DOVECOT_IMAPS$" \
	"^account alice: 2 connections$" \
	"^account bob: 1 connection$" \
	"^connection c[0-9]+ .*: bob, upstream connected \(TLS, compressed\)$" \
	"^account \(not logged in\): 1 connection$"
grep -q mallory "$T/status.out" && fail "a failed login's name is in the report"
end_clients d

# --- (e) the socket ----------------------------------------------------------------------
SOCK=$T/ps/status.sock
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "the status socket has mode $(stat -c %a "$SOCK"), not 600"
log "ok: the status socket is 0600"
# Even when another user can reach the file, the proxy checks who connects.
chmod 0755 "$T/ps"
chmod 0666 "$SOCK"
if runuser -u nobody -- "$PROXY_BIN" --status --set "status.socket=$SOCK" >"$T/nobody.out" 2>&1; then
	cat "$T/nobody.out" >&2
	fail "another user got the status report"
fi
grep -Eq "^(pimap-proxy: [0-9]|mode:|account)" "$T/nobody.out" && fail "another user got part of the report"
grep -q "sent no report (only its own user and root may read it)" "$T/nobody.out" ||
	{ cat "$T/nobody.out" >&2; fail "another user is not told why there is no report"; }
chmod 0700 "$T/ps"
chmod 0600 "$SOCK"
log "ok: another user gets no report"

rc=0
"$PROXY_BIN" --status --state-dir "$T/nothing-here" >"$T/none.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--status without a proxy: exit $rc, not 1"
grep -q "no daemon answers on $T/nothing-here/status.sock" "$T/none.out" || { cat "$T/none.out" >&2; fail "--status without a proxy: no clear error"; }
log "ok: --status without a running proxy: exit 1 with the reason"

# A second proxy on the same state directory runs, without a status socket.
PROXY_LOG=$T/proxy-second.log
P2=$(free_port)
start_proxy --listen "127.0.0.1:$P2" --listen-tls none --state-dir "$T/ps" \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id laptop8
wait_log "$PROXY_LOG" "no status report: status socket $SOCK: another daemon answers there" 10 ||
	fail "the second proxy does not say why it has no status socket"
expect_status 5 "$T/ps" "the first proxy still answers" "^pimap-proxy: [0-9.]+, pid $GW_PROXY_PID,"
stop_pid "$PROXY_PID"
log "ok: a second proxy on the same state directory runs without a status socket"

# SIGKILL leaves the socket file; the next start replaces it.
kill -KILL "$GW_PROXY_PID"
wait_gone "$GW_PROXY_PID" 5 || fail "the proxy survived SIGKILL"
untrack_pid "$GW_PROXY_PID"
[ -S "$SOCK" ] || fail "no stale socket after SIGKILL (the test needs one)"
PROXY_LOG=$T/proxy-restart.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/ps" \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id laptop7
expect_status 10 "$T/ps" "a restart after SIGKILL replaces the stale socket" "^pimap-proxy: [0-9.]+, pid $PROXY_PID,"
# SIGTERM removes the socket.
stop_pid "$PROXY_PID"
[ ! -e "$SOCK" ] || fail "the status socket is left behind after SIGTERM"
log "ok: the socket is removed at exit"

# --stdio makes no status socket (proxies of one user share a state dir);
# status.socket: none makes none either.
# stdio_session STATE-DIR [OPTION...]: one session over the proxy's stdio; it must
# answer LOGOUT and exit by itself within 10 s.
stdio_session() {
	python3 - "$PROXY_BIN" "$T" "$DOVECOT_IMAPS" "$CA" "$@" <<'PY'
import subprocess, sys
proxy, t, port, ca, state = sys.argv[1:6]
p = subprocess.Popen([proxy, "--stdio", "--state-dir", state, "--upstream", "imaps://127.0.0.1:" + port,
                      "--ca-file", ca] + sys.argv[6:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=open(t + "/proxy-stdio.stderr", "ab"))
p.stdin.write(b"a LOGOUT\r\n")
p.stdin.flush()
out = b""
while b"a OK" not in out:
    line = p.stdout.readline()
    if not line:
        break
    out += line
p.stdin.close()
try:
    rc = p.wait(timeout=10)
except subprocess.TimeoutExpired:
    p.kill()
    sys.exit("the --stdio proxy did not exit after its client left")
sys.exit(0 if b"a OK" in out and rc == 0 else 1)
PY
}
stdio_session "$T/pstdio" || fail "the --stdio proxy did not answer and exit"
[ ! -e "$T/pstdio/status.sock" ] || fail "--stdio made a status socket"
# With a status socket set, --stdio has one, and it does not keep the
# proxy alive once its client has left.
stdio_session "$T/pstdio2" --set "status.socket=$T/stdio-status.sock" ||
	fail "--stdio with status.socket set did not exit after its client left"
[ ! -e "$T/stdio-status.sock" ] || fail "the --stdio proxy left its status socket behind"
PROXY_LOG=$T/proxy-nostatus.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --state-dir "$T/pn" --set status.socket=none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
[ ! -e "$T/pn/status.sock" ] || fail "status.socket: none made a socket"
rc=0
"$PROXY_BIN" --status --state-dir "$T/pn" --set status.socket=none >"$T/none.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'status.socket is "none"' "$T/none.out" || fail "--status with status.socket: none: no clear error"
log "ok: --stdio and status.socket: none make no status socket"

running "$COMPAT_PID" || fail "the compatibility-mode proxy died"
pass
