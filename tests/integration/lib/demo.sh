#!/usr/bin/env bash
# demo.sh - the main job: a private Dovecot with sample mail and its
# submission service, pimap-gateway and pimap-proxy in front of it (IMAP and
# SMTP on loopback), running until Ctrl-C. Started by scripts/demo.sh, which
# builds first. Uses the integration-test harness, so it cleans up the same
# way: every process it started is stopped by PID and the temp dir removed.
TEST_NAME=demo
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
. "$HARNESS_LIB/submission.sh"

pick_port() { # preferred port if free, else any free one
	if python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null; then
		echo "$1"
	else
		free_port
	fi
}

DOVECOT_USERS="alice bob" start_store_with_submission
for i in 1 2 3 4 5; do
	deliver alice "Welcome to the pimap demo ($i of 5)" \
		"This message sits in a private Dovecot and reaches you through pimap-proxy."
done

IMAP_PORT=$(pick_port 1143)
IMAPS_PORT=$(pick_port 1993)
SMTP_PORT=$(pick_port 1587)
SMTPS_PORT=$(pick_port 1465)
start_gateway --set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA"
# The mutt macro applies to clients of the plain listener (mutt sends no ID).
mkdir -p "$T/macros"
cp "$top_srcdir/macros/thunderbird.yaml" "$T/macros/"
sed "s|listen: \[\"stdio\"\]|listen: [\"stdio\", \"127.0.0.1:$IMAP_PORT\"]|" "$top_srcdir/macros/mutt.yaml" >"$T/macros/mutt.yaml"
start_proxy --listen "127.0.0.1:$IMAP_PORT" --listen-tls "127.0.0.1:$IMAPS_PORT" \
	--smtp-listen "127.0.0.1:$SMTP_PORT" --smtp-listen-tls "127.0.0.1:$SMTPS_PORT" \
	--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id demo-laptop \
	--set "macros.dir=$T/macros" ${PIMAP_DEMO_FILTERS:+--filters "$PIMAP_DEMO_FILTERS"}

cat <<EOT

pimap demo is running.
  Mail store:   private Dovecot (IMAP over TLS on 127.0.0.1:$DOVECOT_IMAPS), users alice and bob, password '$DOVECOT_PASS'
  pimap-gateway: 127.0.0.1:$GW_PORT (P-IMAP over TLS)   127.0.0.1:$GW_STARTTLS_PORT (P-IMAP, STARTTLS); log $GW_LOG
  Submission:   Dovecot's submission service on 127.0.0.1:$SUBMISSION_PORT (the gateway sends XDELIVER through it)
  pimap-proxy:  127.0.0.1:$IMAP_PORT (IMAP, STARTTLS offered)   127.0.0.1:$IMAPS_PORT (IMAP over TLS, self-signed)
                127.0.0.1:$SMTP_PORT (SMTP submission, STARTTLS)   127.0.0.1:$SMTPS_PORT (SMTP over TLS): mail goes out
                over the same P-IMAP link (XDELIVER), or waits in the proxy's outbox while the link is down
                speaking P-IMAP to the gateway as device demo-laptop (one compressed, resumable link
                per client connection; macros from $T/macros); log $PROXY_LOG

mutt:
  mutt -f imap://alice@127.0.0.1:$IMAP_PORT/INBOX -e 'set imap_pass=$DOVECOT_PASS ssl_starttls=no ssl_force_tls=no imap_idle=yes smtp_url=smtp://alice@127.0.0.1:$SMTP_PORT smtp_pass=$DOVECOT_PASS from=alice@localhost'
  (or through a tunnel:  mutt -e 'set tunnel="$PROXY_BIN --stdio --upstream pimaps://127.0.0.1:$GW_PORT --ca-file $CA --device-id demo-tunnel --set macros.dir=$T/macros"' -f imap://alice@localhost/INBOX)

Thunderbird:
  Account settings -> Server: 127.0.0.1, port $IMAP_PORT, connection security: none
  (or port $IMAPS_PORT with SSL/TLS and accept the proxy's certificate), user alice, password '$DOVECOT_PASS', normal password.
  Outgoing (SMTP) server: 127.0.0.1, port $SMTP_PORT, connection security: none (or STARTTLS), same user and password.
  Send to bob@localhost to see it arrive in bob's INBOX.

View filters: restart with PIMAP_DEMO_FILTERS=$top_srcdir/filters/mobile.yaml ./scripts/demo.sh
  to see only what filters/mobile.yaml lets through (pimap-filters(5)).

P-IMAP by hand (a session that survives the connection):
  gnutls-cli --x509cafile $CA --port $GW_PORT 127.0.0.1
  a LOGIN alice#Plaptop1 $DOVECOT_PASS      b SELECT INBOX      then close it, deliver mail, log in again:
  the gateway answers * SESSION SELECTED, * FOLDER INBOX and one * n EXISTS per new message.

New mail for the running demo:  python3 $IMAPC deliver --lmtp 127.0.0.1:$DOVECOT_LMTP --to alice --subject hello
Press Ctrl-C to stop.
EOT
trap 'log "stopping"; exit 0' INT TERM
while proxy_alive && gateway_alive; do
	sleep 1 # a demo waiting for Ctrl-C, not a test waiting on a condition
done
fail "pimap-proxy or pimap-gateway exited unexpectedly"
