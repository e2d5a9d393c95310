#!/bin/bash
# t_tls_client.sh - the client side of both daemons against the attack
# classes of STARTTLS and authentication: pimap-proxy's listeners (in
# compatibility mode before a real Dovecot) and pimap-gateway's listeners.
# The checks are tls_checks.py's (see its --help); each runs on the proxy
# and on the gateway:
#   no-preauth          every TCP listener greets "* OK", never PREAUTH
#   starttls-injection  commands pipelined behind STARTTLS in the same
#                       packet are discarded, not run after the handshake
#                       (also on the proxy's SMTP listener: an AUTH
#                       pipelined behind STARTTLS does not count)
#   downgrade           with logins before TLS refused (the gateway's
#                       default; listen.plaintext_login=never for the
#                       proxy): LOGINDISABLED, no AUTH=, LOGIN and both
#                       forms of AUTHENTICATE PLAIN get NO [PRIVACYREQUIRED]
#                       without asking for credentials; after STARTTLS the
#                       login works (the proxy's SMTP listener: no AUTH
#                       offered or accepted before STARTTLS)
#   starttls-misuse     STARTTLS twice, on the TLS listener, after login: BAD
#   leftover-literal    the literal of a line with a syntax error is skipped
#                       with it, before and after login, over plaintext and
#                       TLS; an oversized LITERAL+ literal ends the
#                       connection; neither is ever run as commands
# And, for the gateway: what a client says before STARTTLS (ID
# "x-pimap-resume") does not count after it: a login after STARTTLS takes
# the device's parked connection as a client that named none.
#
# By hand: tests/integration/t_tls_client.sh (after building)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$top_srcdir/tests/integration/lib/tls_cases.sh"

start_store_for_proxy
require_gateway
deliver alice "one"
deliver alice "two"

# --- pimap-proxy --------------------------------------------------------------
P=$(free_port) PT=$(free_port) PS=$(free_port)
PROXY_LOG=$T/proxy-default.log
start_proxy --listen "127.0.0.1:$P" --listen-tls "127.0.0.1:$PT" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--set "smtp.listen=127.0.0.1:$PS" --set smtp.listen_tls=none --set smtp.submission_url=smtp://127.0.0.1:9
tls_check no-preauth "$P" || fail "proxy: plain listener"
tls_check no-preauth "$PT" --tls || fail "proxy: TLS listener"
tls_check starttls-injection "$P" alice "$DOVECOT_PASS" || fail "proxy: STARTTLS injection"
tls_check starttls-misuse "$P" "$PT" alice "$DOVECOT_PASS" || fail "proxy: STARTTLS misuse"
tls_check leftover-literal "$P" alice "$DOVECOT_PASS" || fail "proxy: leftover literal before login"
tls_check leftover-literal "$PT" alice "$DOVECOT_PASS" --tls --after-login || fail "proxy: leftover literal after login"
wait_port 127.0.0.1 "$PS" 10 "$PROXY_PID" || fail "proxy: no SMTP listener"
tls_check smtp-starttls-injection "$PS" alice "$DOVECOT_PASS" || fail "proxy: SMTP STARTTLS injection"
proxy_alive || fail "the proxy died"
stop_pid "$PROXY_PID"
log "ok: proxy: no PREAUTH, STARTTLS injection (IMAP and SMTP), misuse, leftover literals"

P=$(free_port) PS=$(free_port)
PROXY_LOG=$T/proxy-never.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --set listen.plaintext_login=never \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--set "smtp.listen=127.0.0.1:$PS" --set smtp.listen_tls=none --set smtp.submission_url=smtp://127.0.0.1:9
tls_check downgrade "$P" alice "$DOVECOT_PASS" || fail "proxy: login before TLS"
wait_port 127.0.0.1 "$PS" 10 "$PROXY_PID" || fail "proxy: no SMTP listener"
tls_check smtp-downgrade "$PS" alice "$DOVECOT_PASS" || fail "proxy: SMTP AUTH before TLS"
stop_pid "$PROXY_PID"
log "ok: proxy: no login before TLS with listen.plaintext_login=never (IMAP and SMTP)"

# --- pimap-gateway --------------------------------------------------------------
start_gateway --trace
tls_check no-preauth "$GW_STARTTLS_PORT" || fail "gateway: STARTTLS listener"
tls_check no-preauth "$GW_PORT" --tls || fail "gateway: TLS listener"
tls_check starttls-injection "$GW_STARTTLS_PORT" alice "$DOVECOT_PASS" || fail "gateway: STARTTLS injection"
tls_check downgrade "$GW_STARTTLS_PORT" alice "$DOVECOT_PASS" || fail "gateway: login before TLS"
tls_check starttls-misuse "$GW_STARTTLS_PORT" "$GW_PORT" alice "$DOVECOT_PASS" || fail "gateway: STARTTLS misuse"
tls_check leftover-literal "$GW_STARTTLS_PORT" alice "$DOVECOT_PASS" || fail "gateway: leftover literal before login"
tls_check leftover-literal "$GW_PORT" alice "$DOVECOT_PASS" --tls --after-login ||
	fail "gateway: leftover literal after login"
log "ok: gateway: no PREAUTH, STARTTLS injection, downgrade, misuse, leftover literals"

# The device leaves a store connection parked under the name "tokA" (IDLE
# on INBOX). Another connection names "tokZ" before STARTTLS and logs in
# after it: a name that counted would find no parked connection of that
# name and log in to the store afresh; forgotten, the login takes the
# oldest parked one (the gateway logs which).
python3 - "$GW_PORT" "$CA" "$DOVECOT_PASS" <<'PYEOF' || fail "gateway: the parked connection"
import sys
from imapc import Client
c = Client("127.0.0.1", int(sys.argv[1]), tls=True, cafile=sys.argv[2], timeout=20)
c.connect()
c.ok('ID ("x-pimap-resume" "tokA")')
c.login("alice#Pdev", sys.argv[3])
c.ok("SELECT INBOX")
c.close()  # no LOGOUT: the gateway parks the store connection
PYEOF
wait_log "$GW_LOG" "[parked alice#Pdev] S<" 20 || fail "gateway: the connection was not parked"
resumed_before=$(grep -c 'with a parked store connection' "$GW_LOG" || true)
python3 - "$GW_STARTTLS_PORT" "$DOVECOT_PASS" <<'PYEOF' || fail "gateway: state from before STARTTLS counted after it"
import sys
from imapc import Client
c = Client("127.0.0.1", int(sys.argv[1]), verify=False, timeout=20)
c.connect()
c.ok('ID ("x-pimap-resume" "tokZ")')
c.starttls()
resps = c.login("alice#Pdev", sys.argv[2])
firsts = [r.first for r in resps]
print("login after STARTTLS: %r" % firsts, file=sys.stderr)
assert any(f.upper().startswith("* FOLDER INBOX") for f in firsts), \
    "the login did not take the parked connection: the pre-TLS resume token counted: %r" % firsts
c.ok("LOGOUT")
PYEOF
resumed_after=$(grep -c 'with a parked store connection' "$GW_LOG" || true)
[ "$resumed_after" -eq $((resumed_before + 1)) ] ||
	fail "gateway: the login after STARTTLS did not take the parked connection: the resume token sent before STARTTLS counted"
log "ok: gateway: what was said before STARTTLS does not count after it"

gateway_alive || fail "the gateway died"
stop_gateway
pass
