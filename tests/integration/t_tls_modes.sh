#!/bin/bash
# t_tls_modes.sh - pimap-proxy's upstream TLS policy.
#
#  1. imaps:// with --ca-file naming a CA that did not sign the server's
#     certificate: the client gets "* BYE ..." mentioning the certificate,
#     the connection closes, the proxy keeps running. Same with imap://
#     (the STARTTLS handshake must be verified too), and with the right CA
#     file but a Dovecot presenting a self-signed certificate.
#  2. imaps:// to a server whose certificate is signed by the trusted CA but
#     for another name (wrong.example.invalid): refused the same way (the
#     name is checked, not only the chain).
#  3. imap:// to a server that offers no STARTTLS (a fake on loopback):
#     "* BYE" refusing plaintext, and the client's LOGIN never reaches the
#     server; with --allow-plaintext-upstream the session works.
#
# By hand: tests/integration/t_tls_modes.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$top_srcdir/tests/integration/lib/tls_cases.sh"

start_store_for_proxy

# expect_bye PORT REGEX WHAT: the first line is "* BYE" matching REGEX, then
# the connection closes; a LOGIN is attempted anyway so that a proxy that
# went on would pass the password to the server (lib/tls_checks.py refused).
expect_bye() {
	tls_check refused "$1" "$2" || fail "$3"
	log "ok: $3"
}

# --- 1. a CA that did not sign the server's certificate ---------------------
P=$(free_port)
PROXY_LOG=$T/proxy-wrongca.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$UNTRUSTED_CERT"
expect_bye "$P" 'certificate' "imaps:// with the wrong CA is refused"
P2=$(free_port)
PROXY_LOG=$T/proxy-wrongca-starttls.log
start_proxy --listen "127.0.0.1:$P2" --listen-tls none \
	--upstream "imap://127.0.0.1:$DOVECOT_IMAP" --ca-file "$UNTRUSTED_CERT"
expect_bye "$P2" 'certificate' "imap:// (STARTTLS) with the wrong CA is refused"
grep -q 'Login: ' "$DOVECOT_LOG" && fail "Dovecot saw a login through an unverified connection"
proxy_alive || fail "proxy (STARTTLS, wrong CA) died"
stop_pid "$PROXY_PID"

# --- 1b. a server with a self-signed certificate (right CA file, wrong server) --
MAIN_IMAPS=$DOVECOT_IMAPS MAIN_LOG=$DOVECOT_LOG MAIN_CONF=$DOVECOT_CONF
DOVECOT_CERT=$UNTRUSTED_CERT DOVECOT_KEY=$UNTRUSTED_KEY start_dovecot dovecot-selfsigned
P1=$(free_port)
PROXY_LOG=$T/proxy-selfsigned.log
start_proxy --listen "127.0.0.1:$P1" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
expect_bye "$P1" 'certificate' "a server with a self-signed certificate is refused"
grep -q 'Login: ' "$DOVECOT_LOG" && fail "the self-signed Dovecot saw a login"
stop_pid "$PROXY_PID"
stop_dovecot
DOVECOT_IMAPS=$MAIN_IMAPS DOVECOT_LOG=$MAIN_LOG DOVECOT_CONF=$MAIN_CONF

# --- 2. trusted CA, wrong name ------------------------------------------------
FAKE_TLS=$(free_port)
spawn "$T/fake-tls.log" python3 "$HARNESS_LIB/fake_imapd.py" --port "$FAKE_TLS" \
	--record "$T/fake-tls.record" --tls-cert "$WRONGNAME_CERT" --tls-key "$WRONGNAME_KEY"
add_log "$T/fake-tls.log"
wait_port 127.0.0.1 "$FAKE_TLS" 10 "$SPAWNED_PID" || hard_error "fake TLS server did not start"
P3=$(free_port)
PROXY_LOG=$T/proxy-wrongname.log
start_proxy --listen "127.0.0.1:$P3" --listen-tls none \
	--upstream "imaps://127.0.0.1:$FAKE_TLS" --ca-file "$CA"
expect_bye "$P3" 'certificate' "a certificate for another name is refused"
[ -s "$T/fake-tls.record" ] && fail "the proxy sent data to a server with the wrong name: $(cat "$T/fake-tls.record")"
# positive control: the same proxy setup against the real server works
P4=$(free_port)
PROXY_LOG=$T/proxy-goodca.log
start_proxy --listen "127.0.0.1:$P4" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA"
imapc_ok() {
	python3 - "$@" <<-'PYEOF' || fail "session through port $1 failed"
		import sys
		from imapc import Client
		c = Client("127.0.0.1", int(sys.argv[1]))
		g = c.connect()
		assert g.status == "OK", g.first
		c.login(sys.argv[2], sys.argv[3])
		c.ok("NOOP")
		resps = c.ok("LOGOUT")
		assert any(r.status == "BYE" for r in resps), resps
	PYEOF
}
imapc_ok "$P4" alice "$DOVECOT_PASS"
log "ok: the correct CA works"

# --- 3. imap:// to a server without STARTTLS ----------------------------------
FAKE=$(free_port)
spawn "$T/fake-plain.log" python3 "$HARNESS_LIB/fake_imapd.py" --port "$FAKE" \
	--record "$T/fake-plain.record" --greeting '* OK [CAPABILITY IMAP4rev1] hi'
add_log "$T/fake-plain.log"
wait_port 127.0.0.1 "$FAKE" 10 "$SPAWNED_PID" || hard_error "fake server did not start"
P5=$(free_port)
PROXY_LOG=$T/proxy-nostarttls.log
start_proxy --listen "127.0.0.1:$P5" --listen-tls none --upstream "imap://127.0.0.1:$FAKE"
expect_bye "$P5" 'plaintext|plain text|cleartext|STARTTLS|TLS' "imap:// without STARTTLS is refused"
NOSTARTTLS_PID=$PROXY_PID
if grep -qi 'LOGIN\|secret' "$T/fake-plain.record"; then
	fail "the proxy passed the client's LOGIN to a plaintext server: $(cat "$T/fake-plain.record")"
fi
log "ok: the fake saw no LOGIN (it got: $(tr '\r\n' '  ' <"$T/fake-plain.record"))"
proxy_alive || fail "proxy died"

P6=$(free_port)
PROXY_LOG=$T/proxy-plaintext-allowed.log
start_proxy --listen "127.0.0.1:$P6" --listen-tls none --upstream "imap://127.0.0.1:$FAKE" \
	--allow-plaintext-upstream
imapc_ok "$P6" alice plaintext-ok
grep -q 'LOGIN .*plaintext-ok' "$T/fake-plain.record" ||
	fail "with --allow-plaintext-upstream the LOGIN should reach the server"
log "ok: --allow-plaintext-upstream works"

running "$NOSTARTTLS_PID" || fail "a proxy died"
proxy_alive || fail "proxy died"
pass
