#!/bin/bash
# t_tls_upstream.sh - every upstream the proxy and the gateway talk to, in
# every mode that exists, against the attack classes of STARTTLS and TLS.
# The upstream is fake_imapd.py, scripted to misbehave one way per case,
# with real certificates made by certtool (a CA, a self-signed one, one for
# another name, an expired one).
#
# Upstreams: pimap-proxy's imap:// (STARTTLS) and imaps:// in compatibility
# mode, pimap:// (STARTTLS), pimaps:// and https:// in gateway mode;
# pimap-gateway's store over imap:// (STARTTLS) and imaps://, and its
# submission server over smtp:// (STARTTLS) and smtps://.
#
# STARTTLS upstreams, each case on each of the three:
#   injected   the tagged OK to STARTTLS comes with injected responses in
#              the same packet ("* CAPABILITY ... XINJECTED", a tagged OK
#              for the next command, "* BYE INJECTED"): they are discarded
#              (never in the trace, never in the client's capabilities),
#              and the session goes on with what the server says over TLS
#   preauth    "* PREAUTH" greeting (skipping TLS and login): refused
#   bye        "* BYE" greeting: refused
#   no-status  "* NO [CAPABILITY ... STARTTLS]" as greeting: refused
#   garbage    a greeting that is not IMAP: refused
#   no-starttls  a greeting whose capabilities lack STARTTLS: refused
#              (never a plaintext login), also with LOGINDISABLED
#   starttls-no / starttls-bad  STARTTLS answered NO / BAD: refused, no
#              fallback to plaintext
#   self-signed / wrong-name / expired  the STARTTLS certificate does not
#              verify: refused
#   logindisabled-after-tls (the gateway's store): LOGINDISABLED over TLS:
#              no LOGIN is sent
# Implicit-TLS upstreams: a good server works; PREAUTH and BYE greetings,
# self-signed, wrong-name and expired certificates are refused, and then
# the server receives no byte at all. The same certificates for the
# proxy's HTTPS binding (https://): no request is sent.
# In every refused case the server never receives a LOGIN, an
# AUTHENTICATE or the password, the client gets "* BYE" (proxy) or "NO"
# (gateway), and the daemon keeps running.
#
# R: the gateway link's reconnects (the proxy keeps the password to log in
# again) meet the same checks: a link cut after login, then answered by a
# server without STARTTLS, with PREAUTH, or with a self-signed certificate:
# no credentials; the real server again: the client's session goes on.
#
# Literals left over after an error:
#   L1 compatibility mode, an upstream without LITERAL+ that answers an
#      APPEND's literal with NO instead of "+": the literal (a message with
#      IMAP command lines in it) never reaches the server as commands, and
#      the session goes on
#   L2 the gateway, a store without LITERAL+: an APPEND is refused (NO
#      [CANNOT]) instead of being sent with a LITERAL+ literal the store
#      would run as commands; a login whose password needs a literal is
#      refused before the password is sent
#
# S: the gateway's submission link (XDELIVER to submission.url) against
# lib/fake_smtpd.py: replies injected behind "220 Ready to start TLS" are
# discarded and the message goes out; no STARTTLS, STARTTLS refused, a
# refusing greeting, self-signed, wrong-name and expired certificates
# (STARTTLS and smtps://): NO, and the server never sees AUTH.
#
# By hand: tests/integration/t_tls_upstream.sh (after building)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$top_srcdir/tests/integration/lib/tls_cases.sh"

require certtool
require_proxy
require_gateway
gen_certs
gen_expired_cert
# start_gateway wants a store port; every case gives its own --store.
DOVECOT_IMAPS=1

BEFORE_CAPS="IMAP4rev1 STARTTLS LITERAL+ XBEFORETLS"
AFTER_CAPS="IMAP4rev1 LITERAL+ AUTH=PLAIN ID IDLE XAFTERTLS"
INJECT='* CAPABILITY IMAP4rev1 AUTH=PLAIN XINJECTED\r\n{next} OK [CAPABILITY IMAP4rev1 XINJECTED] INJECTED\r\n* BYE INJECTED\r\n'

# proxy_case MODE NAME EXPECT [REGEX]: pimap-proxy with a MODE:// upstream
# (imap, imaps, pimap, pimaps) at the fake just started. EXPECT: "works"
# (a greeting with the capabilities the server sent over TLS, none of the
# injected ones) or "refused" (BYE matching REGEX, no credentials upstream).
proxy_case() {
	local mode=$1 name=$2 expect=$3 rx=${4:-.} extra=()
	case $mode in pimap* | https) extra=(--device-id dev1) ;; esac
	local p
	p=$(free_port)
	PROXY_LOG=$T/proxy-$mode-$name.log
	start_proxy --listen "127.0.0.1:$p" --listen-tls none --upstream "$mode://127.0.0.1:$FAKE_PORT" \
		--ca-file "$CA" --trace -v --set upstream.connect_timeout=5s "${extra[@]}"
	if [ "$expect" = refused ]; then
		tls_check refused "$p" "$rx" || fail "proxy $mode://, $name: not refused"
		no_credentials_at "$FAKE_REC" "proxy $mode://, $name"
	else
		tls_check greeting "$p" --want XAFTERTLS --deny XINJECTED --deny XBEFORETLS ||
			fail "proxy $mode://, $name: wrong greeting"
	fi
	if grep -q INJECTED "$PROXY_LOG"; then
		fail "proxy $mode://, $name: injected responses were parsed: $(grep INJECTED "$PROXY_LOG" | head -3)"
	fi
	proxy_alive || fail "proxy $mode://, $name: the proxy died"
	stop_pid "$PROXY_PID"
	log "ok: proxy $mode://: $name ($expect)"
}

# store_case MODE NAME EXPECT: pimap-gateway with a MODE:// store (imap,
# imaps) at the fake just started; a client logs in as alice. EXPECT: OK
# (then a NOOP goes through) or NO (and no credentials reach the store).
store_case() {
	local mode=$1 name=$2 expect=$3 then=()
	GW_LOG=$T/gateway-$mode-$name.log
	start_gateway --store "$mode://127.0.0.1:$FAKE_PORT" --trace --set limits.max_failed_logins=1000
	[ "$expect" = OK ] && then=(--then NOOP)
	tls_check login "$GW_PORT" alice secret "$expect" --tls --cafile "$CA" "${then[@]}" ||
		fail "gateway store $mode://, $name: LOGIN did not get $expect"
	[ "$expect" = OK ] || no_credentials_at "$FAKE_REC" "gateway store $mode://, $name"
	if grep -q INJECTED "$GW_LOG"; then
		fail "gateway store $mode://, $name: injected responses were parsed: $(grep INJECTED "$GW_LOG" | head -3)"
	fi
	gateway_alive || fail "gateway store $mode://, $name: the gateway died"
	stop_gateway
	log "ok: gateway store $mode://: $name ($expect)"
}

# starttls_case NAME EXPECT REGEX FAKE-ARGS...: one STARTTLS case on all three
# STARTTLS upstreams (a fresh fake for each, so each record is its own).
starttls_case() {
	local name=$1 expect=$2 rx=$3; shift 3
	local mode
	for mode in imap pimap; do
		fake_start "fake-$mode-$name" "$@"
		proxy_case "$mode" "$name" "$expect" "$rx"
		fake_stop
	done
	fake_start "fake-store-imap-$name" "$@"
	if [ "$expect" = works ]; then store_case imap "$name" OK; else store_case imap "$name" NO; fi
	fake_stop
}

STLS=(--caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS" --starttls-cert "$SERVER_CERT" --starttls-key "$SERVER_KEY")

# --- STARTTLS upstreams ------------------------------------------------------
starttls_case injected works . "${STLS[@]}" --greeting '* OK pimap test server' --inject "$INJECT"
starttls_case injected-greeting-caps works . "${STLS[@]}" \
	--greeting "* OK [CAPABILITY $BEFORE_CAPS] hi" --inject "$INJECT"
starttls_case preauth refused 'PREAUTH' "${STLS[@]}" --greeting "* PREAUTH [CAPABILITY $BEFORE_CAPS] welcome, root"
starttls_case bye refused 'go away' "${STLS[@]}" --greeting '* BYE [UNAVAILABLE] go away'
starttls_case no-status refused 'greeting' "${STLS[@]}" --greeting "* NO [CAPABILITY $BEFORE_CAPS] not today"
starttls_case garbage refused 'greeting|protocol error' "${STLS[@]}" --greeting 'HELLO THERE'
starttls_case no-starttls refused 'STARTTLS' --greeting '* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+] hi' \
	--caps 'IMAP4rev1 AUTH=PLAIN LITERAL+'
starttls_case no-starttls-logindisabled refused 'STARTTLS' --greeting '* OK hi' --caps 'IMAP4rev1 LOGINDISABLED'
starttls_case starttls-no refused 'STARTTLS' "${STLS[@]}" --starttls-reply 'NO [UNAVAILABLE] not now'
starttls_case starttls-bad refused 'STARTTLS' "${STLS[@]}" --starttls-reply 'BAD what is that'
starttls_case self-signed refused 'certificate' --caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS" \
	--starttls-cert "$UNTRUSTED_CERT" --starttls-key "$UNTRUSTED_KEY"
starttls_case wrong-name refused 'certificate' --caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS" \
	--starttls-cert "$WRONGNAME_CERT" --starttls-key "$WRONGNAME_KEY"
starttls_case expired refused 'certificate|expired' --caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS" \
	--starttls-cert "$EXPIRED_CERT" --starttls-key "$EXPIRED_KEY"
# The gateway logs in with LOGIN only: LOGINDISABLED over TLS means no login.
fake_start fake-store-imap-logindisabled --caps "$BEFORE_CAPS" --tls-caps 'IMAP4rev1 LOGINDISABLED AUTH=PLAIN' \
	--starttls-cert "$SERVER_CERT" --starttls-key "$SERVER_KEY"
store_case imap logindisabled-after-tls NO
fake_stop

# --- implicit-TLS upstreams --------------------------------------------------
# tls_case NAME EXPECT REGEX CERT KEY [GREETING]
tls_case() {
	local name=$1 expect=$2 rx=$3 cert=$4 key=$5 greeting=${6:-"* OK [CAPABILITY $AFTER_CAPS] hi"}
	local mode
	for mode in imaps pimaps; do
		fake_start "fake-$mode-$name" --tls-cert "$cert" --tls-key "$key" --caps "$AFTER_CAPS" --greeting "$greeting"
		proxy_case "$mode" "$name" "$expect" "$rx"
		fake_stop
		# A refused certificate: not one byte got through the handshake.
		if [ "$rx" = certificate ] && [ -s "$FAKE_REC" ]; then
			fail "proxy $mode://, $name: the server received data: $(head -c 200 "$FAKE_REC")"
		fi
	done
	fake_start "fake-store-imaps-$name" --tls-cert "$cert" --tls-key "$key" --caps "$AFTER_CAPS" --greeting "$greeting"
	if [ "$expect" = works ]; then store_case imaps "$name" OK; else store_case imaps "$name" NO; fi
	fake_stop
	if [ "$rx" = certificate ] && [ -s "$FAKE_REC" ]; then
		fail "gateway store imaps://, $name: the store received data: $(head -c 200 "$FAKE_REC")"
	fi
}
tls_case good works . "$SERVER_CERT" "$SERVER_KEY"
tls_case preauth refused 'PREAUTH' "$SERVER_CERT" "$SERVER_KEY" "* PREAUTH [CAPABILITY $AFTER_CAPS] welcome, root"
tls_case bye refused 'go away' "$SERVER_CERT" "$SERVER_KEY" '* BYE go away'
tls_case self-signed refused certificate "$UNTRUSTED_CERT" "$UNTRUSTED_KEY"
tls_case wrong-name refused certificate "$WRONGNAME_CERT" "$WRONGNAME_KEY"
tls_case expired refused certificate "$EXPIRED_CERT" "$EXPIRED_KEY"
# The HTTPS binding (https://): a certificate that does not verify gets no
# request at all (t_https.sh covers the binding against a real gateway).
for bad in self-signed:UNTRUSTED wrong-name:WRONGNAME expired:EXPIRED; do
	cert_var=${bad#*:}_CERT key_var=${bad#*:}_KEY
	fake_start "fake-https-${bad%%:*}" --tls-cert "${!cert_var}" --tls-key "${!key_var}"
	proxy_case https "${bad%%:*}" refused .
	fake_stop
	[ -s "$FAKE_REC" ] && fail "proxy https://, ${bad%%:*}: the server received data: $(head -c 200 "$FAKE_REC")"
done

# --- R: the gateway link's reconnects meet the same checks ---------------------
# The proxy keeps the client's password to log in again after a loss. A
# man in the middle who cuts the link and then answers the reconnect
# without STARTTLS, with PREAUTH or with another certificate must get
# nothing; a real server again gets the session back.
fake_on() { # fake_on PORT NAME ARGS...: fake_start on a given port
	local port=$1 name=$2; shift 2
	FAKE_REC=$T/$name.record FAKE_CMDS=$T/$name.commands
	spawn "$T/$name.fake.log" python3 "$HARNESS_LIB/fake_imapd.py" --port "$port" \
		--record "$FAKE_REC" --commands "$FAKE_CMDS" "$@"
	FAKE_PID=$SPAWNED_PID FAKE_PORT=$port
	wait_port 127.0.0.1 "$port" 10 "$FAKE_PID" || hard_error "fake server $name did not start"
}
# connections_seen NAME N: the fake NAME has ended at least N connections
connections_seen() { [ "$(grep -c 'connection ended' "$T/$1.fake.log" 2>/dev/null || true)" -ge "$2" ]; }
GOOD=(--caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS XPIMAPv1" --starttls-cert "$SERVER_CERT" --starttls-key "$SERVER_KEY")
LINK_PORT=$(free_port)
fake_on "$LINK_PORT" fake-link-good "${GOOD[@]}"
P=$(free_port)
PROXY_LOG=$T/proxy-link-reconnect.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "pimap://127.0.0.1:$LINK_PORT" --ca-file "$CA" \
	--device-id dev1 --trace -v --set link.reconnect_min=0.1s --set link.reconnect_max=0.3s \
	--set link.outage_wait=60s
tls_check held-session "$P" alice secret "$T/link-client.ready" "$T/link-client.go" &
LINK_CLIENT=$!
track_pid "$LINK_CLIENT"
wait_for 20 test -e "$T/link-client.ready" || fail "R: the client could not log in through the link"
grep -q 'AUTHENTICATE' "$FAKE_CMDS" || fail "R: the first link did not log in"
for bad in no-starttls preauth self-signed; do
	fake_stop
	case $bad in
	no-starttls) fake_on "$LINK_PORT" "fake-link-$bad" --caps 'IMAP4rev1 AUTH=PLAIN XPIMAPv1' ;;
	preauth) fake_on "$LINK_PORT" "fake-link-$bad" "${GOOD[@]}" --greeting '* PREAUTH welcome back' ;;
	self-signed) fake_on "$LINK_PORT" "fake-link-$bad" --caps "$BEFORE_CAPS" --tls-caps "$AFTER_CAPS" \
		--starttls-cert "$UNTRUSTED_CERT" --starttls-key "$UNTRUSTED_KEY" ;;
	esac
	wait_for 20 connections_seen "fake-link-$bad" 2 || fail "R: the proxy did not try to reconnect ($bad)"
	no_credentials_at "$FAKE_REC" "R: a reconnect to a server with $bad"
	log "ok: R the link's reconnect gives nothing to a server with $bad"
done
touch "$T/link-client.go"
fake_stop
fake_on "$LINK_PORT" fake-link-back "${GOOD[@]}"
wait "$LINK_CLIENT" || fail "R: the client's session did not survive the outage"
untrack_pid "$LINK_CLIENT"
grep -q 'AUTHENTICATE' "$FAKE_CMDS" || fail "R: the link did not log in again to the real server"
proxy_alive || fail "R: the proxy died"
stop_pid "$PROXY_PID"
fake_stop
log "ok: R the link came back with the real server"

# --- L1: a literal refused by an upstream without LITERAL+ ---------------------
# The message carries command lines; an upstream that reads them as commands
# would delete a mailbox. The proxy sends each literal only after the
# upstream's "+", and drops the rest when the command is answered instead.
fake_start fake-literal-refused --tls-cert "$SERVER_CERT" --tls-key "$SERVER_KEY" --caps 'IMAP4rev1 AUTH=PLAIN' \
	--literals refuse
P=$(free_port)
PROXY_LOG=$T/proxy-literal-refused.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "imaps://127.0.0.1:$FAKE_PORT" --ca-file "$CA"
python3 - "$P" <<'PYEOF' || fail "L1: APPEND with a refused literal"
import sys
from imapc import Client
c = Client("127.0.0.1", int(sys.argv[1]), timeout=15)
c.connect()
c.login("alice", "x")
body = b"Subject: hi\r\n\r\nx1 DELETE INBOX\r\nx2 LOGOUT\r\n"
tag = c.next_tag()
# The proxy answers the synchronising literal's "+" itself.
c.send(b"%s APPEND INBOX {%d}\r\n" % (tag.encode(), len(body)))
r = c.read_response()
assert r.is_continuation, r.first
c.send(body + b"\r\n")
resps = c.wait_tagged(tag)
assert resps[-1].status == "NO", "APPEND -> %r (want the upstream's NO)" % resps[-1].first
assert not any(x.tag in ("x1", "x2") for x in resps), [x.first for x in resps]
c.ok("NOOP")
c.ok("LOGOUT")
PYEOF
grep -q '^x1 DELETE\|^x2 LOGOUT' "$FAKE_CMDS" &&
	fail "L1: the message's lines reached the upstream as commands: $(cat "$FAKE_CMDS")"
grep -q 'APPEND INBOX {' "$FAKE_CMDS" || fail "L1: the APPEND never reached the upstream: $(cat "$FAKE_CMDS")"
stop_pid "$PROXY_PID"
fake_stop
log "ok: L1 a refused literal is never sent (proxy, upstream without LITERAL+)"

# --- L2: the gateway and a store without LITERAL+ ---------------------------------
fake_start fake-store-noliteralplus --tls-cert "$SERVER_CERT" --tls-key "$SERVER_KEY" --caps 'IMAP4rev1 ID IDLE'
GW_LOG=$T/gateway-noliteralplus.log
start_gateway --store "imaps://127.0.0.1:$FAKE_PORT" --set limits.max_failed_logins=1000
python3 - "$GW_PORT" "$CA" <<'PYEOF' || fail "L2: the gateway with a store without LITERAL+"
import sys
from imapc import Client
port, ca = int(sys.argv[1]), sys.argv[2]
c = Client("127.0.0.1", port, tls=True, cafile=ca, timeout=15)
c.connect()
c.login("alice", "x")
body = b"Subject: hi\r\n\r\nx1 DELETE INBOX\r\nx2 LOGOUT\r\n"
tag = c.next_tag()
c.send(b"%s APPEND INBOX {%d+}\r\n" % (tag.encode(), len(body)) + body + b"\r\n")
resps = c.wait_tagged(tag)
assert resps[-1].status == "NO" and "CANNOT" in resps[-1].first, "APPEND -> %r" % resps[-1].first
c.ok("NOOP")
c.ok("LOGOUT")
c.close()
# A password with 8-bit bytes would go as a literal: refused before it is sent.
c = Client("127.0.0.1", port, tls=True, cafile=ca, timeout=15)
c.connect()
pw = "s\u00e4cret99".encode()
tag = c.next_tag()
c.send(b"%s LOGIN bob {%d+}\r\n" % (tag.encode(), len(pw)) + pw + b"\r\n")
resps = c.wait_tagged(tag)
assert resps[-1].status == "NO", "LOGIN with an 8-bit password -> %r" % resps[-1].first
c.close()
PYEOF
grep -q '^x1 DELETE\|^x2 LOGOUT\|APPEND' "$FAKE_CMDS" &&
	fail "L2: the APPEND or its message's lines reached the store: $(cat "$FAKE_CMDS")"
grep -q 'cret99' "$FAKE_REC" && fail "L2: the 8-bit password reached the store"
grep -q 'LITERAL+' "$GW_LOG" || fail "L2: the gateway's log does not say why the login failed"
stop_gateway
fake_stop
log "ok: L2 the gateway sends no LITERAL+ literal to a store without LITERAL+"

# --- S: the gateway's submission link (XDELIVER) --------------------------------
# The gateway relays XDELIVER to submission.url with the user's own
# password: the same attack classes as the IMAP upstreams, against
# lib/fake_smtpd.py. A refused case answers NO (UNAVAILABLE) and the server
# has received no AUTH; the injected case sends the message, and the
# trace never shows the injected replies.
start_dovecot
submission_case() { # submission_case NAME SCHEME EXPECT FAKE-ARGS...
	local name=$1 scheme=$2 expect=$3; shift 3
	fake_smtp "fake-submission-$scheme-$name" "$@"
	GW_LOG=$T/gateway-submission-$scheme-$name.log
	start_gateway --set "submission.url=$scheme://127.0.0.1:$FAKE_PORT" --set "submission.ca_file=$CA" \
		--set submission.connect_timeout=5s --trace --set limits.max_failed_logins=1000
	tls_check xdeliver "$GW_PORT" alice "$DOVECOT_PASS" "$expect" --cafile "$CA" ||
		fail "submission $scheme://, $name: XDELIVER did not get $expect"
	if [ "$expect" = NO ] && grep -qiE '^AUTH|secret|AGFsaWNl' "$FAKE_REC"; then
		fail "submission $scheme://, $name: credentials reached the server: $(head -c 300 "$FAKE_REC")"
	fi
	if [ "$expect" = OK ] && ! grep -q '^AUTH PLAIN' "$FAKE_REC"; then
		fail "submission $scheme://, $name: the message went without AUTH? $(head -c 300 "$FAKE_REC")"
	fi
	grep -q INJECTED "$GW_LOG" && fail "submission $scheme://, $name: injected replies were parsed"
	gateway_alive || fail "submission $scheme://, $name: the gateway died"
	stop_gateway
	fake_stop
	log "ok: gateway submission $scheme://: $name ($expect)"
}
SMTP_TLS=(--starttls-cert "$SERVER_CERT" --starttls-key "$SERVER_KEY")
submission_case injected smtp OK "${SMTP_TLS[@]}" \
	--inject '250-INJECTED\r\n250 AUTH PLAIN\r\n235 2.7.0 INJECTED\r\n'
submission_case no-starttls smtp NO --ehlo 'PIPELINING AUTH=PLAIN'
submission_case starttls-refused smtp NO "${SMTP_TLS[@]}" --starttls-reply '454 4.7.0 TLS not available'
submission_case greeting-refused smtp NO --greeting '554 5.3.2 go away'
submission_case self-signed smtp NO --starttls-cert "$UNTRUSTED_CERT" --starttls-key "$UNTRUSTED_KEY"
submission_case wrong-name smtp NO --starttls-cert "$WRONGNAME_CERT" --starttls-key "$WRONGNAME_KEY"
submission_case expired smtp NO --starttls-cert "$EXPIRED_CERT" --starttls-key "$EXPIRED_KEY"
submission_case good smtps OK --tls-cert "$SERVER_CERT" --tls-key "$SERVER_KEY" --ehlo 'PIPELINING AUTH=PLAIN'
submission_case self-signed smtps NO --tls-cert "$UNTRUSTED_CERT" --tls-key "$UNTRUSTED_KEY"
[ -s "$FAKE_REC" ] && fail "submission smtps://, self-signed: the server received data: $(head -c 200 "$FAKE_REC")"
submission_case expired smtps NO --tls-cert "$EXPIRED_CERT" --tls-key "$EXPIRED_KEY"

pass
