#!/bin/bash
# t_https.sh - pimap-gateway's HTTPS binding driven by curl (docs/PROTOCOL.md
# section 7).
#
#  1. anything but POST gets 405 with "Allow: POST"; another path 404; another
#     media type 415; a body without a length 411;
#  2. in-response: a batch (LOGIN, SELECT) answered in one body, status 200,
#     a session cookie that is HttpOnly and Secure; a second request with the
#     cookie works in the same session (SELECTED state kept, no new login);
#  3. mail delivered while no request is open arrives as "* n EXISTS" in the
#     next response, even to an empty poll (the gateway watched the store);
#  4. a batch with a synchronising literal in the middle (APPEND) and a
#     command after it: both answered, no "+" in the body; a batch that ends
#     on a literal header gets the continuation ("+ ...", X-PIMAP-Continuation)
#     and the next request completes the command;
#  5. an unknown cookie gets 401; --compressed gets a gzip body that decodes
#     to the same protocol text;
#  6. persistent mode: one chunked POST streamed from a FIFO; LOGIN, SELECT,
#     IDLE, a delivery pushed as "* n EXISTS" while the request is still open,
#     DONE, LOGOUT; the response is chunked;
#  7. XPROVISION over HTTPS hands out the device key (PIMAP_ENC_KEY) and lists
#     the out-band channels UDP NONE (no outband.webhook_allow: no WEBHOOK);
#     COMPRESS is refused (HTTP
#     compresses) and STARTTLS is not offered.
#
# By hand: tests/integration/t_https.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/https.sh"

require curl

gen_certs
start_dovecot
deliver bob "https message 1"
deliver bob "https message 2"
HTTPS_PORT=$(free_port)
start_gateway --listen-https "127.0.0.1:$HTTPS_PORT"
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "no HTTPS listener on $HTTPS_PORT"
URL="https://localhost:$HTTPS_PORT/pimap"

# --- 1. methods, paths, media types -------------------------------------------
code=$(hcurl -o "$T/get.body" -D "$T/get.head" -w '%{http_code}' "$URL")
[ "$code" = 405 ] || fail "GET: want 405, got $code"
grep -qi '^Allow: POST' "$T/get.head" || fail "405 without Allow: POST: $(cat "$T/get.head")"
code=$(hcurl -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/vnd.pimap' --data-binary 'a NOOP' \
	"https://localhost:$HTTPS_PORT/elsewhere")
[ "$code" = 404 ] || fail "other path: want 404, got $code"
code=$(hcurl -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary $'a NOOP\r\n' "$URL")
[ "$code" = 415 ] || fail "text/plain: want 415, got $code"
code=$(printf 'POST /pimap HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.pimap\r\n\r\n' |
	raw_https "$HTTPS_PORT" | head -1 | cut -d' ' -f2)
[ "$code" = 411 ] || fail "no length: want 411, got $code"
log "1. GET 405 (Allow: POST), 404, 415, 411"

# --- 2. in-response batch, cookie session ---------------------------------------
ir_post r1 $'a LOGIN bob#Pcurl1 secret\r\nb SELECT INBOX\r\n'
[ "$(http_code r1)" = 200 ] || fail "batch: status $(http_code r1)"
body_has r1 '^a OK' && body_has r1 '^b OK \[READ-WRITE\]' && body_has r1 '^\* 2 EXISTS' ||
	fail "batch replies missing: $(cat "$T/r1.body")"
grep -i '^Set-Cookie: PIMAPSESSION=' "$T/r1.head" | grep -qi 'HttpOnly' || fail "cookie not HttpOnly: $(cat "$T/r1.head")"
grep -i '^Set-Cookie: PIMAPSESSION=' "$T/r1.head" | grep -qi 'Secure' || fail "cookie not Secure"
ir_post r2 $'c FETCH 1 (FLAGS)\r\n'
body_has r2 '^\* 1 FETCH' && body_has r2 '^c OK' || fail "second request in the same session: $(cat "$T/r2.body")"
log "2. batch answered, cookie HttpOnly+Secure, the session survives across requests"

# --- 3. events gathered between requests ------------------------------------------
deliver bob "https message 3"
# The store reports the delivery within a second (Dovecot's IDLE delay); poll until it is there.
got=""
for i in $(seq 1 40); do
	ir_post r3 ''
	if body_has r3 '^\* 3 EXISTS'; then got=1; break; fi
	sleep 0.1
done
[ -n "$got" ] || fail "new mail not in an empty poll: $(cat "$T/r3.body")"
log "3. mail delivered between requests came with an empty poll"

# --- 4. literals -----------------------------------------------------------------
msg=$'From: a@example.org\r\nSubject: lit\r\n\r\nliteral body\r\n'
ir_post r4 "d APPEND INBOX {${#msg}}"$'\r\n'"$msg"$'\r\ne NOOP\r\n'
body_has r4 '^d OK' && body_has r4 '^e OK' || fail "batch with a literal: $(cat "$T/r4.body")"
! body_has r4 '^\+' || fail "a literal inside the batch produced a continuation in the body"
ir_post r5 $'f APPEND INBOX {'"${#msg}"$'}\r\n'
body_has r5 '^\+' || fail "batch ending on a literal header: no continuation: $(cat "$T/r5.body")"
grep -qi '^X-PIMAP-Continuation: 1' "$T/r5.head" || fail "no X-PIMAP-Continuation header"
ir_post r6 "$msg"$'\r\n'
body_has r6 '^f OK' || fail "literal completed in the next request: $(cat "$T/r6.body")"
log "4. literal inside a batch, and a continuation across two requests"

# --- 5. unknown cookie, compression ------------------------------------------------
code=$(hcurl -o /dev/null -w '%{http_code}' -H 'Content-Type: application/vnd.pimap' \
	-b 'PIMAPSESSION=00000000000000000000000000000000' --data-binary $'x NOOP\r\n' "$URL")
[ "$code" = 401 ] || fail "unknown cookie: want 401, got $code"
ir_post r7 $'g FETCH 1:* (FLAGS)\r\n' --compressed
grep -qi '^Content-Encoding: gzip' "$T/r7.head" || fail "no gzip with --compressed: $(cat "$T/r7.head")"
body_has r7 '^g OK' || fail "compressed body did not decode: $(head -c 300 "$T/r7.body")"
log "5. unknown cookie 401; gzip response decodes"

# --- 7. XPROVISION, COMPRESS, capabilities --------------------------------------------
ir_post r8 $'h XPROVISION\r\ni COMPRESS DEFLATE\r\nj CAPABILITY\r\n'
body_has r8 '^\* XPROVISION PIMAP_ENC_KEY \(' || fail "no key over HTTPS: $(cat "$T/r8.body")"
body_has r8 'PIMAP_OUTBAND_CHANNEL \(UDP NONE\)' || fail "channels: $(cat "$T/r8.body")"
body_has r8 '^i NO \[CANNOT\]' || fail "COMPRESS not refused: $(cat "$T/r8.body")"
! body_has r8 'STARTTLS' || fail "STARTTLS offered over HTTPS"
ir_post r9 $'k LOGOUT\r\n'
body_has r9 '^k OK' || fail "LOGOUT: $(cat "$T/r9.body")"
log "7. XPROVISION key and channels, COMPRESS refused, no STARTTLS"

# --- 6. persistent mode -----------------------------------------------------------------
mkfifo "$T/p.in"
# "-T ." reads stdin without blocking (curl(1)), so each line goes out as it is written.
# Opened read-write first, so that neither side blocks on the FIFO's open.
exec 7<>"$T/p.in"
spawn "$T/p.curl.err" bash -c 'exec curl -sS --cacert "$1" -N -X POST -T . -H "Content-Type: application/vnd.lemonade" \
	-H "Transfer-Encoding: chunked" -D "$2" -o "$3" "$4" <"$5"' _ "$CA" "$T/p.head" "$T/p.out" "$URL" "$T/p.in"
CURL_PID=$SPAWNED_PID
printf 'a LOGIN bob#Pcurl2 secret\r\nb SELECT INBOX\r\n' >&7
wait_for 10 grep -q "^b OK" "$T/p.out" || fail "persistent: no SELECT reply: $(cat "$T/p.out"; cat "$T/p.head" "$T/p.curl.err")"
printf 'c IDLE\r\n' >&7
wait_for 10 grep -q '^+ idling' "$T/p.out" || fail "persistent: no IDLE continuation"
deliver bob "pushed over persistent https"
wait_for 10 grep -q '^\* 5 EXISTS' "$T/p.out" || fail "persistent: delivery not pushed: $(cat "$T/p.out")"
printf 'DONE\r\nd LOGOUT\r\n' >&7
wait_for 10 grep -q '^d OK' "$T/p.out" || fail "persistent: no LOGOUT reply"
exec 7>&-
wait_gone "$CURL_PID" 10 || fail "curl did not finish after LOGOUT"
grep -qi '^Transfer-Encoding: chunked' "$T/p.head" || fail "persistent response not chunked"
grep -qi '^Content-Type: application/vnd.lemonade' "$T/p.head" || fail "media type not echoed"
log "6. persistent chunked POST: commands in, IDLE push out, while the request stays open"

gw_stop
pass
