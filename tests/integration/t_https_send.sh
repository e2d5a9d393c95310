#!/bin/bash
# t_https_send.sh - sending over the HTTPS binding, and the HTTPS binding
# through a web proxy (upstream.http_proxy, HTTP CONNECT): Dovecot's
# submission service behind the gateway (lib/submission.sh), Debian's
# tinyproxy as the web proxy (lib/webproxy.sh), swaks and Python's smtplib
# as mail clients.
#  A. persistent mode, direct: swaks sends through the proxy's SMTP
#     listener (XDELIVER on a plain session over the HTTPS binding); the
#     message arrives in rcpt's INBOX exactly once;
#  B. persistent mode through tinyproxy with Basic auth: an IMAP client
#     logs in and selects INBOX through the proxy; swaks sends, the message
#     arrives once; tinyproxy logged a CONNECT to the gateway for the link
#     and one for the delivery link; the proxy's only TCP connections go to
#     tinyproxy (none to the gateway); the password and its base64 appear
#     in no log of the proxy (which traces); --status names the web proxy;
#  C. in-response mode through tinyproxy: a message arrives; with tinyproxy
#     down a message of a user checked before is queued (250 Queued), and
#     once tinyproxy is back it arrives exactly once and the outbox empties;
#  D. pimap-proxy --smtp-stdio in in-response mode through tinyproxy, run
#     by swaks --pipe: the message arrives, the proxy ends its plain
#     session at the gateway with LOGOUT ("logged out") and exits 0;
#  E. CONNECT failures, each a clear error (in the IMAP client's BYE, in the
#     proxy's warning) and SMTP AUTH 454: a wrong password (401), none (407), a port
#     tinyproxy does not allow (403), a gateway tinyproxy cannot reach
#     (500), no web proxy listening, one that never answers (bounded by
#     upstream.connect_timeout); and TLS still verified through the
#     tunnel: a wrong upstream.server_name fails on the certificate;
#  F. configuration errors stop the proxy at startup with a message: a web
#     proxy for the TCP binding, a password file others can read, a user
#     without a password file, user info in the URL.
#
# By hand: tests/integration/t_https_send.sh (after building)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/submission.sh"
. "$HARNESS_LIB/webproxy.sh"
require swaks

gen_certs
DOVECOT_USERS="alice bob carol dave erin rcpt" start_store_with_submission
HTTPS_PORT=$(free_port)
GW_ARGS=(--set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA"
	--set "listen.https=127.0.0.1:$HTTPS_PORT" --trace)
start_gateway "${GW_ARGS[@]}"
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "the gateway has no HTTPS listener"
gw_env
export SMTP_CTL DOVECOT_IMAP
UPSTREAM="https://localhost:$HTTPS_PORT/pimap"

# The web proxy: Basic auth, CONNECT only to the gateway's HTTPS port.
WP=$(free_port)
WP_USER=webuser WP_PASS=Tr0ub4dor-3.secret_X9 # tinyproxy takes [-a-z0-9._] only
WP_B64=$(printf '%s:%s' "$WP_USER" "$WP_PASS" | base64)
start_webproxy wp "$WP" "$HTTPS_PORT" "$WP_USER" "$WP_PASS"
WP_PID=$WEBPROXY_PID
printf '%s\n' "$WP_PASS" >"$T/wp-pass"
chmod 600 "$T/wp-pass"
VIA_WP=(--set "upstream.http_proxy=http://127.0.0.1:$WP" --set "upstream.http_proxy_user=$WP_USER"
	--set "upstream.http_proxy_password_file=$T/wp-pass")

new_msgid() { printf '<%s.%s@pimap.test>' "$1" "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }

# swaks_send PORT USER MSGID SUBJECT [SWAKS-ARGS...]: one message to rcpt over
# plain SMTP with AUTH PLAIN (the proxy allows that on loopback); its output
# goes to $T/swaks.out.
swaks_send() {
	local port=$1 user=$2 msgid=$3 subject=$4
	shift 4
	swaks --server 127.0.0.1 --port "$port" --auth PLAIN --auth-user "$user" --auth-password "$DOVECOT_PASS" \
		--from "$user@mail.test" --to rcpt@mail.test --header "Subject: $subject" \
		--header "Message-Id: $msgid" --body "Sent over the HTTPS binding." --timeout 60 "$@" >"$T/swaks.out" 2>&1
}

# expect_arrived MSGID WHAT: in rcpt's INBOX exactly once, delivered once.
expect_arrived() {
	wait_for 30 sh -c "[ \$(grep -rlF -- '$1' '$DOVECOT_HOME/rcpt/Maildir/new' '$DOVECOT_HOME/rcpt/Maildir/cur' 2>/dev/null | wc -l) -ge 1 ]" ||
		fail "$2: $1 did not arrive in rcpt's INBOX"
	local n d
	n=$(mailbox_count rcpt "$1")
	d=$(delivered_count "$1")
	[ "$n" = 1 ] && [ "$d" = 1 ] || fail "$2: $1 is in rcpt's INBOX $n times, delivered $d times (want 1 and 1)"
	log "ok: $2: the message arrived in rcpt's INBOX exactly once"
}

# imap_session PORT USER: log in through the proxy, SELECT INBOX, LOGOUT; prints the greeting.
imap_session() {
	python3 - "$1" "$2" <<'PY'
import imaplib, os, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=30)
print(c.welcome.decode())
c.login(sys.argv[2], os.environ["DOVECOT_PASS"])
typ, data = c.select("INBOX")
assert typ == "OK", (typ, data)
c.logout()
PY
}

# greeting PORT: what the proxy says to a new IMAP client (its greeting or its BYE).
greeting() {
	python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
print(s.makefile("rb").readline().decode(errors="replace").strip())
PY
}

# proxy_tcp_peers PID: the remote ports of PID's TCP connections, one a line.
proxy_tcp_peers() {
	local inodes
	inodes=$(ls -l /proc/"$1"/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\].*/\1/p' | sort -u)
	[ -n "$inodes" ] || return 0
	local hex
	for hex in $(awk -v ins=" $(echo $inodes) " 'NR > 1 && $4 == "01" && index(ins, " " $10 " ") { n = split($3, a, ":"); print a[n] }' \
		/proc/net/tcp /proc/net/tcp6); do
		echo $((16#$hex))
	done
}

# --- A. persistent mode, direct -----------------------------------------------
log "=== A. persistent, direct"
PA=$(free_port) SA=$(free_port)
PROXY_LOG=$T/proxy-a.log
start_proxy --listen "127.0.0.1:$PA" --listen-tls none --smtp-listen "127.0.0.1:$SA" --smtp-listen-tls none \
	--upstream "$UPSTREAM" --ca-file "$CA" --device-id send-a --state-dir "$T/state-a" -v
grep -q "messages go to the gateway as XDELIVER (over the HTTPS binding)" "$PROXY_LOG" ||
	fail "A: the proxy did not start its SMTP listener for the HTTPS binding"
MID=$(new_msgid a)
swaks_send "$SA" alice "$MID" "A: persistent, direct" || { cat "$T/swaks.out" >&2; fail "A: swaks failed"; }
expect_arrived "$MID" "A"
grep -q 'XDELIVER N ENVELOPE' "$GW_LOG" || fail "A: no XDELIVER in the gateway's trace"
stop_pid "$PROXY_PID"

# --- B. persistent mode through the web proxy, Basic auth ----------------------
log "=== B. persistent, through tinyproxy with Basic auth"
PB=$(free_port) SB=$(free_port)
PROXY_LOG=$T/proxy-b.log
start_proxy --listen "127.0.0.1:$PB" --listen-tls none --smtp-listen "127.0.0.1:$SB" --smtp-listen-tls none \
	--upstream "$UPSTREAM" --ca-file "$CA" --device-id send-b --state-dir "$T/state-b" --trace -v "${VIA_WP[@]}"
grep -q "through HTTP proxy 127.0.0.1:$WP (with Proxy-Authorization)" "$PROXY_LOG" ||
	fail "B: the proxy does not say it goes through the web proxy"
"$PROXY_BIN" --status --state-dir "$T/state-b" >"$T/b-status.out" 2>&1
grep -qx "mode: gateway, upstream $UPSTREAM, through http://127.0.0.1:$WP, device send-b" "$T/b-status.out" ||
	{ cat "$T/b-status.out" >&2; fail "B: pimap-proxy --status does not name the web proxy"; }
imap_session "$PB" bob >"$T/b-imap.out" || fail "B: IMAP through the proxy and the web proxy failed"
grep -q "^\* OK" "$T/b-imap.out" || fail "B: no greeting: $(cat "$T/b-imap.out")"
log "ok: B: an IMAP client logged in and selected INBOX through the web proxy"
[ "$(webproxy_connects wp "localhost:$HTTPS_PORT")" -ge 1 ] || fail "B: tinyproxy saw no CONNECT for the link"
MID=$(new_msgid b)
# The delivery link stays open a while after the message: its TCP connections are checked then.
swaks_send "$SB" bob "$MID" "B: through the web proxy" || { cat "$T/swaks.out" >&2; fail "B: swaks failed"; }
expect_arrived "$MID" "B"
[ "$(webproxy_connects wp "localhost:$HTTPS_PORT")" -ge 2 ] || fail "B: tinyproxy saw no CONNECT for the delivery link"
peers=$(proxy_tcp_peers "$PROXY_PID" | sort -u | tr '\n' ' ')
case " $peers " in
*" $WP "*) ;;
*) fail "B: the proxy holds no connection to the web proxy (peers: $peers)" ;;
esac
for p in $peers; do
	[ "$p" = "$WP" ] || fail "B: the proxy has a TCP connection to port $p, not through the web proxy ($WP)"
done
log "ok: B: the proxy's TCP connections all go to the web proxy ($peers)"
for f in "$PROXY_LOG" "${PROXY_LOG%.log}.stderr"; do
	if grep -qF -- "$WP_PASS" "$f" || grep -qF -- "$WP_B64" "$f"; then
		fail "B: the web proxy's password is in $f"
	fi
done
grep -qi "Proxy-Authorization:" "$PROXY_LOG" && fail "B: a Proxy-Authorization header is in the proxy's log"
log "ok: B: neither the web proxy's password nor its Proxy-Authorization is in the proxy's log (trace on)"
stop_pid "$PROXY_PID"

# --- C. in-response mode through the web proxy; the outbox --------------------
log "=== C. in-response, through tinyproxy; the web proxy down while sending"
PC=$(free_port) SC=$(free_port)
PROXY_LOG=$T/proxy-c.log
start_proxy --listen "127.0.0.1:$PC" --listen-tls none --smtp-listen "127.0.0.1:$SC" --smtp-listen-tls none \
	--upstream "$UPSTREAM" --ca-file "$CA" --device-id send-c --state-dir "$T/state-c" -v "${VIA_WP[@]}" \
	--set upstream.mode=in-response --set smtp.retry_min=300ms --set smtp.retry_max=1s --set smtp.deliver_timeout=5s
export SC STATE_C="$T/state-c" CA
MID=$(new_msgid c1)
swaks_send "$SC" carol "$MID" "C: in-response" || { cat "$T/swaks.out" >&2; fail "C: swaks failed"; }
expect_arrived "$MID" "C"
stop_pid "$WP_PID"
log "web proxy stopped"
MID2=$(new_msgid c2)
export MID2
python3 - <<'PY' || fail "C: the message was not queued while the web proxy was down"
import os
from smtpt import send
from sendt import message
r = send(int(os.environ["SC"]), "carol", message(os.environ["MID2"], "C: while the web proxy is down",
         frm="carol@mail.test", to="rcpt@mail.test"), ["rcpt@mail.test"], mode="plain")
print(r)
assert r.code == 250 and "Queued" in r.text, r
PY
grep -q "HTTP proxy 127.0.0.1:$WP: " "$PROXY_LOG" || fail "C: the proxy does not say the web proxy is unreachable"
[ "$(mailbox_count rcpt "$MID2")" = 0 ] || fail "C: delivered while the web proxy was down"
log "ok: C: queued while the web proxy was down"
start_webproxy wp "$WP" "$HTTPS_PORT" "$WP_USER" "$WP_PASS"
WP_PID=$WEBPROXY_PID
expect_arrived "$MID2" "C: after the web proxy came back"
wait_for 10 sh -c '[ -z "$(find "$1/outbox" -maxdepth 1 -type f -name "*-*-*")" ]' _ "$T/state-c" ||
	fail "C: the outbox did not empty"
log "ok: C: the outbox is empty"
stop_pid "$PROXY_PID"

# --- D. --smtp-stdio, in-response, through the web proxy ----------------------
log "=== D. swaks --pipe 'pimap-proxy --smtp-stdio', in-response, through tinyproxy"
MID=$(new_msgid d)
DLOG=$T/proxy-d.log
{
	echo '#!/bin/sh'
	printf '%q ' ${PIMAP_PROXY_WRAPPER:-} "$PROXY_BIN" --smtp-stdio --upstream "$UPSTREAM" --ca-file "$CA" \
		--state-dir "$T/state-d" --device-id send-d --log-file "$DLOG" -v --set upstream.mode=in-response "${VIA_WP[@]}"
	printf '2>>%q\n' "$T/proxy-d.stderr"
	printf 'echo $? >%q\n' "$T/proxy-d.status"
} >"$T/smtp-stdio.sh"
chmod +x "$T/smtp-stdio.sh"
swaks --pipe "$T/smtp-stdio.sh" --auth PLAIN --auth-user dave \
	--auth-password "$DOVECOT_PASS" --from dave@mail.test --to rcpt@mail.test --header "Subject: D: smtp-stdio" \
	--header "Message-Id: $MID" --body "Through a pipe." --timeout 60 >"$T/swaks.out" 2>&1 ||
	{ cat "$T/swaks.out" >&2; fail "D: swaks failed"; }
expect_arrived "$MID" "D"
wait_for 15 test -s "$T/proxy-d.status" || fail "D: pimap-proxy --smtp-stdio did not exit after the session"
[ "$(cat "$T/proxy-d.status")" = 0 ] || fail "D: pimap-proxy --smtp-stdio exited with status $(cat "$T/proxy-d.status")"
grep -q "HTTPS link closed: logged out" "$DLOG" || fail "D: the proxy did not end its plain session at the gateway"
grep -Eq 'C> pimapwake[0-9]+ LOGOUT' "$GW_LOG" || fail "D: the gateway saw no LOGOUT of the plain session"
log "ok: D: sent, the plain session logged out at the gateway, and the proxy exited 0"

# --- E. CONNECT failures -----------------------------------------------------
log "=== E. CONNECT failures"
# e_case NAME EXPECT PROXY-ARGS...: a proxy whose web proxy refuses; its IMAP
# client's BYE and its log say EXPECT; SMTP AUTH of a user it never checked gets 454.
e_case() {
	local name=$1 expect=$2 p s
	shift 2
	p=$(free_port) s=$(free_port)
	PROXY_LOG=$T/proxy-e-$name.log
	start_proxy --listen "127.0.0.1:$p" --listen-tls none --smtp-listen "127.0.0.1:$s" --smtp-listen-tls none \
		--ca-file "$CA" --device-id "send-e-$name" --state-dir "$T/state-e-$name" -v "$@"
	greeting "$p" >"$T/e-$name.greeting"
	grep -Eq "^\* BYE \[UNAVAILABLE\] .*$expect" "$T/e-$name.greeting" ||
		fail "E $name: the client got '$(cat "$T/e-$name.greeting")', not a BYE saying '$expect'"
	grep -E "WARN.*$expect" "$PROXY_LOG" >/dev/null || fail "E $name: no warning saying '$expect' in the proxy's log"
	swaks --server 127.0.0.1 --port "$s" --auth PLAIN --auth-user erin --auth-password "$DOVECOT_PASS" \
		--from erin@mail.test --to rcpt@mail.test --quit-after AUTH --timeout 30 >"$T/swaks.out" 2>&1 || true
	grep -q "^<\*\* 454" "$T/swaks.out" || { cat "$T/swaks.out" >&2; fail "E $name: SMTP AUTH did not get 454"; }
	log "ok: E $name: $(sed 's/^\* BYE \[UNAVAILABLE\] //' "$T/e-$name.greeting")"
	stop_pid "$PROXY_PID"
}
printf 'wrong\n' >"$T/wp-wrong"
chmod 600 "$T/wp-wrong"
# (tinyproxy answers a wrong password with 401, none with 407.)
e_case 401 "401 Unauthorized \(it did not accept upstream.http_proxy_user" --upstream "$UPSTREAM" \
	--set "upstream.http_proxy=http://127.0.0.1:$WP" --set "upstream.http_proxy_user=$WP_USER" \
	--set "upstream.http_proxy_password_file=$T/wp-wrong"
e_case 407-none "407 Proxy Authentication Required \(set upstream.http_proxy_user" --upstream "$UPSTREAM" \
	--set "upstream.http_proxy=http://127.0.0.1:$WP"
# tinyproxy allows CONNECT to the gateway's HTTPS port only.
e_case 403 "refused CONNECT to localhost:$GW_PORT: 403 " --upstream "https://localhost:$GW_PORT/pimap" "${VIA_WP[@]}"
# A port tinyproxy may connect to, where nothing listens.
DEAD=$(free_port)
start_webproxy wp2 "$(free_port)" "$DEAD"
WP2_PORT=$(sed -n 's/^Port //p' "$T/wp2.conf")
e_case 500 "refused CONNECT to localhost:$DEAD: 500 .*could not reach the gateway" --upstream "https://localhost:$DEAD/pimap" \
	--set "upstream.http_proxy=http://127.0.0.1:$WP2_PORT"
e_case refused "HTTP proxy 127.0.0.1:$DEAD: .*(refused|failed)" --upstream "$UPSTREAM" \
	--set "upstream.http_proxy=http://127.0.0.1:$DEAD"
# A web proxy that accepts and never answers: upstream.connect_timeout ends the wait.
SILENT=$(free_port)
spawn "$T/silent.log" python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); s.settimeout(1)
held, end = [], time.time() + 120
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$SILENT"
wait_port 127.0.0.1 "$SILENT" 10 "$SPAWNED_PID" || hard_error "the silent listener does not listen"
e_case silent "HTTP proxy 127.0.0.1:$SILENT: .*timed out" --upstream "$UPSTREAM" \
	--set "upstream.http_proxy=http://127.0.0.1:$SILENT" --set upstream.connect_timeout=2s
stop_pid "$SPAWNED_PID"
# The tunnel opens, but the gateway's certificate is not for this name: TLS stays verified end to end.
e_case tls "certificate|verif" --upstream "$UPSTREAM" "${VIA_WP[@]}" --set upstream.server_name=wrong.example

# --- F. configuration errors ---------------------------------------------------
log "=== F. configuration errors"
f_case() {
	local name=$1 expect=$2 rc=0
	shift 2
	"$PROXY_BIN" --foreground --listen "127.0.0.1:$(free_port)" --listen-tls none --smtp-listen none \
		--smtp-listen-tls none --ca-file "$CA" --state-dir "$T/state-f" "$@" >"$T/f-$name.out" 2>&1 &
	local pid=$!
	track_pid "$pid"
	wait_gone "$pid" 15 || fail "F $name: the proxy did not stop"
	wait "$pid" || rc=$?
	untrack_pid "$pid"
	[ "$rc" != 0 ] || fail "F $name: the proxy started"
	grep -qE -- "$expect" "$T/f-$name.out" || { cat "$T/f-$name.out" >&2; fail "F $name: no message saying '$expect'"; }
	grep -qF -- "$WP_PASS" "$T/f-$name.out" && fail "F $name: the password is in the message"
	log "ok: F $name: $(grep -E -- "$expect" "$T/f-$name.out" | head -1)"
}
f_case tcp "upstream.http_proxy is for the HTTPS binding" --upstream "pimaps://127.0.0.1:$GW_PORT" "${VIA_WP[@]}"
cp "$T/wp-pass" "$T/wp-open"
chmod 644 "$T/wp-open"
f_case readable "readable by group or others" --upstream "$UPSTREAM" --set "upstream.http_proxy=http://127.0.0.1:$WP" \
	--set "upstream.http_proxy_user=$WP_USER" --set "upstream.http_proxy_password_file=$T/wp-open"
f_case nofile "go together" --upstream "$UPSTREAM" --set "upstream.http_proxy=http://127.0.0.1:$WP" \
	--set "upstream.http_proxy_user=$WP_USER"
f_case userinfo "upstream.http_proxy_user and upstream.http_proxy_password_file" --upstream "$UPSTREAM" \
	--set "upstream.http_proxy=http://$WP_USER:x@127.0.0.1:$WP"

gateway_alive || fail "the gateway died"
pass
