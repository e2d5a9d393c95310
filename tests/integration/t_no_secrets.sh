#!/bin/bash
# t_no_secrets.sh - credentials never appear in a log, at any level. Every
# daemon runs at its most talkative (-v: debug, --trace: the protocol
# trace) while logins of every form go through it; then every log and
# stderr file is searched for the passwords, in clear and in base64 (the
# SASL PLAIN messages sent, and the password's own base64 at each of the
# three byte alignments it can have inside a longer base64 string).
#
# Logins, each with its own password (a wrong one too, which is refused):
#   LOGIN with a quoted password, a synchronising literal and a LITERAL+
#   literal; AUTHENTICATE PLAIN with SASL-IR and with a continuation.
# Through:
#   pimap-proxy in compatibility mode before Dovecot;
#   pimap-proxy in compatibility mode before a server without LITERAL+
#     (a LOGIN literal then goes a segment per "+");
#   pimap-proxy in gateway mode (the proxy logs in as user#P<device> with
#     AUTHENTICATE PLAIN), and its automatic re-login after the gateway
#     restarts;
#   pimap-gateway directly, with user#P<device> and plain logins (and its
#     own LOGIN to Dovecot);
#   SMTP AUTH PLAIN and AUTH LOGIN (right and wrong) at pimap-proxy's SMTP
#     listener in gateway mode, the message relayed by the gateway to a
#     submission server with its own AUTH PLAIN.
# A positive control checks the traces are really on (LOGIN and <secret>
# in them).
#
# By hand: tests/integration/t_no_secrets.sh (after building)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$top_srcdir/tests/integration/lib/tls_cases.sh"

# One password for Dovecot's users, distinctive enough to grep for.
DOVECOT_PASS="Pw7f3a9c1eSecret-$$"
# Refused logins are part of the test: no 2 s delay for each, and no
# growing penalty for the address (a listener Dovecot cannot open turns its
# auth penalty off).
DOVECOT_EXTRA_CONF="auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"
start_store_for_proxy
require_gateway
deliver alice "one"
SECRETS=$T/secrets    # every password and base64 form to look for, one per line
: >"$SECRETS"

# logins PORT USER PASS [--tls] [--cafile F]: every login form, each
# followed by a NOOP and LOGOUT; then a wrong password in each form (NO).
# Appends the passwords and their base64 forms to $SECRETS.
logins() {
	python3 - "$@" <<'PYEOF' || fail "logins through port $1"
import argparse, base64, sys
from imapc import Client, Literal
ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("user")
ap.add_argument("password")
ap.add_argument("--tls", action="store_true")
ap.add_argument("--cafile")
ap.add_argument("--secrets")
a = ap.parse_args()
secrets = set()

def note(user, pw):
    secrets.add(pw)
    plain = b"\0" + user.encode() + b"\0" + pw.encode()
    secrets.add(base64.b64encode(plain).decode())
    for k in range(3):
        s = base64.b64encode(b"\0" * k + pw.encode()).decode()
        core = s[4 if k else 0:len(s) - 4]
        if len(core) >= 8:
            secrets.add(core)

def session(form, pw, want):
    c = Client("127.0.0.1", a.port, tls=a.tls, cafile=a.cafile, verify=bool(a.cafile), timeout=30)
    c.connect()
    note(a.user, pw)
    if form == "quoted":
        tag, resps = c.command('LOGIN "%s" "%s"' % (a.user, pw))
    elif form == "sync":
        tag, resps = c.command('LOGIN "%s" ' % a.user, Literal(pw, sync=True))
    elif form == "nonsync":
        tag, resps = c.command('LOGIN "%s" ' % a.user, Literal(pw, sync=False))
    elif form == "sasl-ir":
        resps = c.authenticate_plain(a.user, pw, initial_response=True)
    else:
        resps = c.authenticate_plain(a.user, pw, initial_response=False)
    got = resps[-1].status
    if got != want:
        sys.exit("%s login of %s -> %r (want %s)" % (form, a.user, resps[-1].first, want))
    if got == "OK":
        c.ok("NOOP")
        c.ok("LOGOUT")
    c.close()

for form in ("quoted", "sync", "nonsync", "sasl-ir", "sasl"):
    session(form, a.password, "OK")
    # A wrong password, distinct per form so that a leak names its path.
    session(form, "Wrong%s-%sPw" % (form.title().replace("-", ""), a.port), "NO")
with open(a.secrets or "/dev/null", "a") as f:
    for s in sorted(secrets):
        f.write(s + "\n")
PYEOF
}

# --- pimap-gateway, directly ----------------------------------------------------
start_gateway --trace --set limits.max_failed_logins=1000
logins "$GW_PORT" "alice#Pphone" "$DOVECOT_PASS" --tls --cafile "$CA" --secrets "$SECRETS"
logins "$GW_PORT" bob "$DOVECOT_PASS" --tls --cafile "$CA" --secrets "$SECRETS"
log "ok: logins of every form at the gateway"

# --- pimap-proxy in compatibility mode --------------------------------------------------
P=$(free_port)
PROXY_LOG=$T/proxy-compat.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" \
	--ca-file "$CA" --trace -v
logins "$P" carol "$DOVECOT_PASS" --secrets "$SECRETS"
stop_pid "$PROXY_PID"
log "ok: logins of every form through the proxy in compatibility mode"

# ... before a server without LITERAL+: LOGIN literals go a segment per "+".
fake_start fake-noliteralplus --tls-cert "$SERVER_CERT" --tls-key "$SERVER_KEY" --caps 'IMAP4rev1 AUTH=PLAIN' \
	--login-reply 'OK Logged in'
P=$(free_port)
PROXY_LOG=$T/proxy-noliteralplus.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "imaps://127.0.0.1:$FAKE_PORT" \
	--ca-file "$CA" --trace -v
python3 - "$P" "$SECRETS" <<'PYEOF' || fail "LOGIN literals toward a server without LITERAL+"
import sys
from imapc import Client, Literal
port, secrets = int(sys.argv[1]), sys.argv[2]
pws = []
for sync in (True, False):
    pw = "LitPw%s-9d2b7e41Secret" % ("Sync" if sync else "Plus")
    pws.append(pw)
    c = Client("127.0.0.1", port, timeout=20)
    c.connect()
    tag, resps = c.command("LOGIN dave ", Literal(pw, sync=sync))
    assert resps[-1].status == "OK", resps[-1].first
    c.ok("NOOP")
    c.ok("LOGOUT")
    c.close()
with open(secrets, "a") as f:
    f.write("\n".join(pws) + "\n")
PYEOF
grep -q 'LitPwSync' "$FAKE_REC" || fail "the fake did not get the LOGIN (the check would prove nothing)"
stop_pid "$PROXY_PID"
fake_stop
log "ok: LOGIN literals through the proxy toward a server without LITERAL+"

# --- pimap-proxy in gateway mode, and its re-login after a gateway restart ----------
P=$(free_port)
PROXY_LOG=$T/proxy-gateway.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "pimaps://127.0.0.1:$GW_PORT" \
	--ca-file "$CA" --device-id laptop1 --trace -v --set link.reconnect_min=0.1s --set link.reconnect_max=0.5s
logins "$P" dave "$DOVECOT_PASS" --secrets "$SECRETS"
# A session that stays while the gateway restarts: the proxy logs in again
# with the password it kept.
tls_check held-session "$P" alice "$DOVECOT_PASS" "$T/relogin.ready" "$T/relogin.go" &
RELOGIN_CLIENT=$!
track_pid "$RELOGIN_CLIENT"
wait_for 20 test -e "$T/relogin.ready" || fail "the gateway-mode session did not start"
relogins_before=$(grep -c 'link to the gateway re-established' "$PROXY_LOG" || true)
stop_gateway
start_gateway --trace --set limits.max_failed_logins=1000
touch "$T/relogin.go"
wait "$RELOGIN_CLIENT" || fail "the session did not survive the gateway restart"
untrack_pid "$RELOGIN_CLIENT"
[ "$(grep -c 'link to the gateway re-established' "$PROXY_LOG")" -gt "$relogins_before" ] ||
	fail "the proxy did not log in again after the gateway restart (nothing to check)"
grep -q 'S> <secret>' "$PROXY_LOG" || fail "the re-login is not in the trace, redacted"
stop_pid "$PROXY_PID"
stop_gateway
log "ok: logins through the proxy in gateway mode, and its re-login"

# --- SMTP: AUTH at the proxy's SMTP listener, the gateway's AUTH at the submission server ---
fake_smtp fake-submission --starttls-cert "$SERVER_CERT" --starttls-key "$SERVER_KEY"
GW_LOG=$T/gateway-smtp.log
start_gateway --trace --set limits.max_failed_logins=1000 --set "submission.url=smtp://127.0.0.1:$FAKE_PORT" \
	--set "submission.ca_file=$CA"
P=$(free_port) PS=$(free_port)
PROXY_LOG=$T/proxy-smtp.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "pimaps://127.0.0.1:$GW_PORT" \
	--ca-file "$CA" --device-id laptop2 --trace -v --set "smtp.listen=127.0.0.1:$PS" --set smtp.listen_tls=none
wait_port 127.0.0.1 "$PS" 10 "$PROXY_PID" || fail "no SMTP listener"
python3 - "$PS" dave "$DOVECOT_PASS" "$SECRETS" <<'PYEOF' || fail "SMTP AUTH and sending through the proxy"
import base64, smtplib, sys
port, user, pw, secrets = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
found = set()
msg = "From: dave@example.org\r\nTo: bob@example.org\r\nSubject: s\r\nMessage-ID: <%s@example.org>\r\n\r\nhi\r\n"
for mech, password, ok in (("PLAIN", pw, True), ("LOGIN", pw, True), ("PLAIN", "WrongSmtpPlain-7c1e", False),
                           ("LOGIN", "WrongSmtpLogin-7c1e", False)):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo()
    s.user, s.password = user, password
    found |= {password, base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode(),
              base64.b64encode(password.encode()).decode()}
    try:
        s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login, initial_response_ok=(mech == "PLAIN"))
        assert ok, "AUTH %s with a wrong password was accepted" % mech
        s.sendmail("dave@example.org", ["bob@example.org"], msg % mech)
    except smtplib.SMTPAuthenticationError:
        assert not ok, "AUTH %s with the right password was refused" % mech
    s.quit()
with open(secrets, "a") as f:
    f.write("\n".join(sorted(found)) + "\n")
PYEOF
grep -q '^AUTH PLAIN' "$FAKE_REC" || fail "the gateway did not relay with AUTH (nothing to check)"
stop_pid "$PROXY_PID"
stop_gateway
fake_stop
log "ok: SMTP AUTH PLAIN and LOGIN at the proxy, relayed by the gateway with its own AUTH"

# --- the search -----------------------------------------------------------------
# The traces were on and saw the logins (otherwise this proves nothing).
grep -q 'C> .* LOGIN ' "$T/proxy-compat.log" && grep -q '<secret>' "$T/proxy-compat.log" ||
	fail "the compatibility-mode trace shows no redacted LOGIN"
grep -q 'AUTHENTICATE PLAIN <secret>' "$T/proxy-gateway.log" || fail "the gateway-mode trace shows no redacted AUTHENTICATE"
grep -q '<secret>' "$GW_LOG" || fail "the gateway's trace shows no redacted login"
LOGS=("$T"/proxy*.log "$T"/proxy*.stderr "$T"/gateway*.log "$T"/gateway*.stderr)
log "searching ${#LOGS[@]} log files for $(wc -l <"$SECRETS") secrets"
leaks=$(grep -nFf "$SECRETS" "${LOGS[@]}" || true)
[ -z "$leaks" ] || fail "credentials in the logs:
$leaks"
pass
