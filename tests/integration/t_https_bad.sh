#!/bin/bash
# t_https_bad.sh - bad HTTP input at pimap-gateway's HTTPS binding; each gets
# the right status and the connection closes, while an in-response session
# opened first keeps working throughout (checked after each case):
#
#  - a body over http.max_body_size: 413 before the body is read;
#  - a header over http.max_header_size, and a flood of header lines over
#    http.max_headers: 431;
#  - malformed chunking (a bad chunk size, more data than announced), a bad
#    Content-Length, both lengths at once (request smuggling): 400;
#  - not HTTP at all: 400;
#  - slowloris: a head trickled a byte at a time gets 408 and is closed at
#    http.header_timeout; a body trickled likewise at http.body_timeout; a
#    connection that sends nothing is closed at http.header_timeout without a word;
#  - a second request on a session whose first is still in progress: 409;
#  - past http.max_requests_per_minute for a session: 429 with Retry-After;
#  - the gateway survives it all (no sanitizer report), and a persistent
#    session still works at the end.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/https.sh"

require curl
gen_certs
start_dovecot
deliver bob "bad input message"
HTTPS_PORT=$(free_port)
start_gateway --set "listen.https=127.0.0.1:$HTTPS_PORT" --set http.max_body_size=64K \
	--set http.max_header_size=4K --set http.max_headers=32 --set http.header_timeout=2s \
	--set http.body_timeout=2s --set http.keepalive_timeout=3s --set http.max_requests_per_minute=40
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "no HTTPS listener"
URL="https://localhost:$HTTPS_PORT/pimap"

# The bystander: an in-response session that must keep working.
ir_post b0 $'a LOGIN bob#Pbystander secret\r\nb SELECT INBOX\r\n'
body_has b0 '^b OK' || fail "bystander session did not start: $(cat "$T/b0.body")"
BYSTANDER=0
bystander_ok() {
	BYSTANDER=$((BYSTANDER + 1))
	ir_post "by$BYSTANDER" "n$BYSTANDER NOOP"$'\r\n'
	body_has "by$BYSTANDER" "^n$BYSTANDER OK" || fail "the bystander session broke after: $1 ($(cat "$T/by$BYSTANDER.body"))"
}

# raw_status NAME: status code of the raw answer in $T/NAME.out
raw_status() { head -1 "$T/$1.out" | tr -d '\r' | cut -d' ' -f2; }
raw_case() { # raw_case NAME WANT-STATUS WHAT (request on stdin)
	raw_https "$HTTPS_PORT" 5 >"$T/$1.out" || true
	[ "$(raw_status "$1")" = "$2" ] || fail "$3: want $2, got '$(head -1 "$T/$1.out")'"
	bystander_ok "$3"
	log "ok: $3 -> $2"
}

# --- sizes ---------------------------------------------------------------------------
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 70000\r\n\r\n' |
	raw_case big 413 "a body over http.max_body_size"
{ printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nX-Big: '; head -c 5000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } |
	raw_case bighdr 431 "a header over http.max_header_size"
{ printf 'POST /pimap HTTP/1.1\r\n'; for i in $(seq 1 40); do printf 'X-H%d: 1\r\n' "$i"; done; printf '\r\n'; } |
	raw_case flood 431 "a flood of header lines"

# --- framing ---------------------------------------------------------------------------
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n' |
	raw_case badchunk 400 "a malformed chunk size"
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXYZ\r\n' |
	raw_case longchunk 400 "chunk data longer than announced"
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 1x\r\n\r\n' |
	raw_case badlen 400 "a malformed Content-Length"
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' |
	raw_case smuggle 400 "Content-Length and Transfer-Encoding together"
printf 'a LOGIN bob secret\r\n' | raw_case nothttp 400 "IMAP instead of HTTP"

# --- slowloris ---------------------------------------------------------------------------
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 10\r\n\r\n' |
	python3 "$HARNESS_LIB/slowhttps.py" "$CA" "$HTTPS_PORT" 0.3 10 >"$T/slowhead.out" 2>"$T/slowhead.err"
grep -q 'closed=1' "$T/slowhead.err" || fail "slow head: connection not closed: $(cat "$T/slowhead.err")"
[ "$(raw_status slowhead)" = 408 ] || fail "slow head: want 408, got $(head -1 "$T/slowhead.out")"
awk '{for(i=1;i<=NF;i++) if ($i ~ /^elapsed=/) {split($i,a,"="); exit !(a[2] >= 1.9 && a[2] < 5)}}' "$T/slowhead.err" ||
	fail "slow head not cut at http.header_timeout (2s): $(cat "$T/slowhead.err")"
bystander_ok "a slowloris head"
log "ok: slow head -> 408 at http.header_timeout ($(cat "$T/slowhead.err"))"

printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 40\r\n\r\n' >"$T/slowbody.prefix"
printf 'a LOGIN bob#Pslow secret\r\nb NOOP\r\n12345' |
	python3 "$HARNESS_LIB/slowhttps.py" "$CA" "$HTTPS_PORT" 0.3 10 "$T/slowbody.prefix" >"$T/slowbody.out" 2>"$T/slowbody.err"
grep -q 'closed=1' "$T/slowbody.err" || fail "slow body: connection not closed: $(cat "$T/slowbody.err")"
[ "$(raw_status slowbody)" = 408 ] || fail "slow body: want 408, got $(head -1 "$T/slowbody.out")"
bystander_ok "a slowloris body"
log "ok: slow body -> 408 at http.body_timeout ($(cat "$T/slowbody.err"))"

: | python3 "$HARNESS_LIB/slowhttps.py" "$CA" "$HTTPS_PORT" 1 10 >"$T/idle.out" 2>"$T/idle.err"
grep -q 'closed=1' "$T/idle.err" || fail "idle connection not closed: $(cat "$T/idle.err")"
[ ! -s "$T/idle.out" ] || fail "idle connection got an answer: $(head -1 "$T/idle.out")"
log "ok: a connection that sends nothing is closed at http.header_timeout ($(cat "$T/idle.err"))"

# --- one request at a time per session; requests per minute ---------------------------------
COOKIE=$(awk '$6 == "PIMAPSESSION" {print $7}' "$T/jar")
[ -n "$COOKIE" ] || fail "no session cookie in the jar"
printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\nCookie: PIMAPSESSION=%s\r\nContent-Length: 30\r\n\r\n' "$COOKIE" >"$T/hold.prefix"
HEADS=$(grep -c "in-response request" "$GW_LOG" || true)
printf 'x NOOP\r\n' | python3 "$HARNESS_LIB/slowhttps.py" "$CA" "$HTTPS_PORT" 0.4 3 "$T/hold.prefix" >"$T/hold.out" 2>"$T/hold.err" &
HOLD_PID=$!
track_pid "$HOLD_PID"
# the held request's head is in (its body stays incomplete for seconds more)
wait_for 5 sh -c "[ \$(grep -c 'in-response request' '$GW_LOG') -gt $HEADS ]" || fail "the held request never arrived"
code=$(hcurl -o "$T/conflict.body" -w '%{http_code}' -H 'Content-Type: application/vnd.pimap' \
	-b "PIMAPSESSION=$COOKIE" --data-binary $'y NOOP\r\n' "$URL")
[ "$code" = 409 ] || fail "a second request of a busy session: want 409, got $code"
wait_gone "$HOLD_PID" 10 || true
untrack_pid "$HOLD_PID"
log "ok: a second concurrent request of a session -> 409"
bystander_ok "a 409"

got429=""
for i in $(seq 1 45); do
	code=$(hcurl -o /dev/null -D "$T/rate.head" -w '%{http_code}' -H 'Content-Type: application/vnd.pimap' \
		-b "PIMAPSESSION=$COOKIE" --data-binary "r$i NOOP"$'\r\n' "$URL")
	if [ "$code" = 429 ]; then got429=$i; break; fi
	[ "$code" = 200 ] || fail "request $i: $code"
done
[ -n "$got429" ] || fail "no 429 within 45 requests (limit 40 per minute)"
grep -qi '^Retry-After:' "$T/rate.head" || fail "429 without Retry-After"
log "ok: request $got429 of this loop -> 429 (http.max_requests_per_minute=40, counting the session's earlier ones)"

# --- still serving ------------------------------------------------------------------------------
printf 'a LOGIN bob#Pafter secret\r\nb LOGOUT\r\n' >"$T/final.req"
hcurl -X POST -T "$T/final.req" -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/vnd.pimap' \
	-o "$T/final.out" "$URL" || fail "persistent request after the bad input failed"
tr -d '\r' <"$T/final.out" | grep -q '^b OK' || fail "persistent session after the bad input: $(cat "$T/final.out")"
log "ok: a persistent session still works"
gateway_alive || fail "the gateway died"
gw_stop
pass
