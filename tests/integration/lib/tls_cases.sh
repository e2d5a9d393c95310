# shellcheck shell=bash
#
# tls_cases.sh - helpers for the STARTTLS/TLS/authentication tests
# (t_tls_upstream.sh, t_tls_client.sh). Sourced after harness.sh.

TLS_CHECKS="$HARNESS_LIB/tls_checks.py"

# tls_check ARGS...: run tls_checks.py (see its --help).
tls_check() { python3 "$TLS_CHECKS" "$@"; }

# gen_expired_cert: a certificate for localhost/127.0.0.1 signed by the test
# CA (gen_certs first) whose validity ended in 2020. Sets EXPIRED_CERT,
# EXPIRED_KEY.
gen_expired_cert() {
	local d=$CERTS
	cat >"$d/expired.tmpl" <<-EOF
		cn = "localhost"
		dns_name = "localhost"
		ip_address = "127.0.0.1"
		tls_www_server
		signing_key
		encryption_key
		activation_date = "2019-01-01 00:00:00 UTC"
		expiration_date = "2020-01-01 00:00:00 UTC"
	EOF
	{
		certtool --generate-privkey --key-type=ecdsa --outfile "$d/expired.key" &&
			certtool --generate-certificate --load-privkey "$d/expired.key" \
				--load-ca-certificate "$d/ca.pem" --load-ca-privkey "$d/ca.key" \
				--template "$d/expired.tmpl" --outfile "$d/expired.pem"
	} >>"$d/certtool.log" 2>&1 || { cat "$d/certtool.log" >&2; hard_error "certtool (expired certificate) failed"; }
	chmod 0644 "$d/expired.pem"
	EXPIRED_CERT=$d/expired.pem EXPIRED_KEY=$d/expired.key
}

# fake_start NAME [fake_imapd.py ARGS...]: a scripted IMAP server (see
# fake_imapd.py) on a free port. Sets FAKE_PORT, FAKE_PID, FAKE_REC (every
# byte it received) and FAKE_CMDS (every line it took as a command).
fake_start() {
	local name=$1; shift
	FAKE_PORT=$(free_port)
	FAKE_REC=$T/$name.record
	FAKE_CMDS=$T/$name.commands
	spawn "$T/$name.fake.log" python3 "$HARNESS_LIB/fake_imapd.py" --port "$FAKE_PORT" \
		--record "$FAKE_REC" --commands "$FAKE_CMDS" "$@"
	FAKE_PID=$SPAWNED_PID
	wait_port 127.0.0.1 "$FAKE_PORT" 10 "$FAKE_PID" || hard_error "fake server $name did not start"
}

# fake_smtp NAME [fake_smtpd.py ARGS...]: a scripted SMTP submission server
# (see fake_smtpd.py) on a free port. Sets FAKE_PORT, FAKE_PID and FAKE_REC.
fake_smtp() {
	local name=$1; shift
	FAKE_PORT=$(free_port)
	FAKE_REC=$T/$name.record
	spawn "$T/$name.fake.log" python3 "$HARNESS_LIB/fake_smtpd.py" --port "$FAKE_PORT" --record "$FAKE_REC" "$@"
	FAKE_PID=$SPAWNED_PID
	wait_port 127.0.0.1 "$FAKE_PORT" 10 "$FAKE_PID" || hard_error "fake SMTP server $name did not start"
}

# fake_stop: stop the last fake_start or fake_smtp.
fake_stop() { stop_pid "$FAKE_PID"; }

# no_credentials_at FILE WHAT: FILE (what a fake received) holds no login,
# no password and no SASL exchange.
no_credentials_at() {
	if grep -qiE 'LOGIN|AUTHENTICATE|secret|<sasl>' "$1"; then
		fail "$2: credentials reached the server: $(tr '\r\n' '  ' <"$1" | cut -c1-300)"
	fi
}
