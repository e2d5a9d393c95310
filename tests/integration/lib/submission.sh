# shellcheck shell=bash
# submission.sh - a real SMTP submission server for the sending tests
# (sourced after harness.sh).
#
#   start_store_with_submission   the private Dovecot of start_dovecot with
#       its submission service on 127.0.0.1:$SUBMISSION_PORT as well
#       (STARTTLS with the test certificate, AUTH PLAIN/LOGIN against the
#       test users, PIPELINING, ENHANCEDSTATUSCODES), relaying every
#       transaction through lib/smtp2lmtp.py into Dovecot's own LMTP: a
#       recipient Dovecot does not know is refused at RCPT time (550 5.1.1),
#       an accepted message lands in the recipient's Maildir. Faults are
#       switched with files in $SMTP_CTL (see smtp2lmtp.py). Sets
#       SUBMISSION_PORT, SMTP_CTL, SMTP_RELAY_PID.
#   smtp_fault NAME [TEXT] / smtp_fault_clear NAME
#   mailbox_count USER MSGID    messages in USER's INBOX (new/ and cur/ of
#                               the Maildir) whose header names MSGID
#   delivered_count MSGID       times the relay handed MSGID to LMTP

require dovecot
[ -x /usr/lib/dovecot/submission ] || skip "dovecot-submissiond is not installed"

start_store_with_submission() {
	SUBMISSION_PORT=$(free_port)
	SMTP_RELAY_PORT=$(free_port)
	while [ "$SMTP_RELAY_PORT" = "$SUBMISSION_PORT" ]; do SMTP_RELAY_PORT=$(free_port); done
	SMTP_CTL=$T/smtp-ctl
	mkdir -p "$SMTP_CTL"
	DOVECOT_EXTRA_CONF="${DOVECOT_EXTRA_CONF:+$DOVECOT_EXTRA_CONF
}protocols = imap lmtp submission
hostname = mail.test
submission_relay_host = 127.0.0.1
submission_relay_port = $SMTP_RELAY_PORT
submission_relay_ssl = no
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = $SUBMISSION_PORT
  }
}"
	start_dovecot
	spawn "$T/smtp2lmtp.log" python3 "$HARNESS_LIB/smtp2lmtp.py" "$SMTP_RELAY_PORT" "$DOVECOT_LMTP" "$SMTP_CTL"
	SMTP_RELAY_PID=$SPAWNED_PID
	add_log "$T/smtp2lmtp.log"
	wait_port 127.0.0.1 "$SMTP_RELAY_PORT" 10 "$SMTP_RELAY_PID" || hard_error "smtp2lmtp does not listen"
	wait_port 127.0.0.1 "$SUBMISSION_PORT" 10 "$DOVECOT_PID" || hard_error "Dovecot submission does not listen"
	export SUBMISSION_PORT SMTP_CTL
	log "submission server up: 127.0.0.1:$SUBMISSION_PORT (Dovecot submission -> smtp2lmtp $SMTP_RELAY_PORT -> LMTP)"
}

smtp_fault() { printf '%s\n' "${2:-test fault}" >"$SMTP_CTL/$1"; }
smtp_fault_clear() { rm -f "$SMTP_CTL/$1"; }

mailbox_count() {
	local dir="$DOVECOT_HOME/$1/Maildir"
	[ -d "$dir" ] || { echo 0; return 0; }
	grep -rlF -- "$2" "$dir/new" "$dir/cur" 2>/dev/null | wc -l
}

delivered_count() {
	[ -f "$SMTP_CTL/delivered.log" ] || { echo 0; return 0; }
	grep -cF -- "$1 " "$SMTP_CTL/delivered.log" || true
}
