#!/bin/bash
# t_mutt.sh - the mutt suite (issue 8): stock mutt (Debian's) driven in tmux
# through pimap-proxy, the same scenario six ways:
#   compat/tcp     mutt --IMAP on loopback--> proxy --imaps--> Dovecot
#   compat/stdio   mutt's $tunnel runs pimap-proxy --stdio (--imaps--> Dovecot)
#   gateway/tcp    mutt --> proxy --pimaps--> relay --> pimap-gateway --> Dovecot
#   gateway/stdio  $tunnel pimap-proxy --stdio --pimaps--> relay --> gateway
#   https/tcp      mutt --> proxy --HTTPS binding, persistent--> relay --> gateway
#   https/stdio    $tunnel pimap-proxy --stdio --HTTPS binding--> relay --> gateway
# (t_https_mutt.sh has the HTTPS binding's in-response mode with UDP
# wake-ups and its own checks.)
# The scenario (earlier t_mutt.sh and t_mutt_link.sh):
#  - mutt opens INBOX: the index shows the 3 delivered messages;
#  - it reads message one, flags two, deletes three and expunges it ("$"):
#    the store's real state shows each change;
#  - it pipes message one raw to a file: byte for byte what the store holds
#    (after mutt's CRLF -> LF);
#  - it changes to folder Work and back;
#  - a delivered message appears by itself; the proxy's trace shows mutt's IDLE;
#  - gateway and https ways: the link is cut while mutt sits in INBOX and mail arrives
#    meanwhile, then the gateway restarts (SIGTERM) with mail arriving: mutt
#    shows all of it, shows no error, and never reconnects (tcp: the proxy
#    accepted one connection from it; stdio: one proxy process ran); with the
#    shipped mutt macro, mutt's header FETCH after SELECT is answered from
#    the prefetch, and its FETCH of new mail from the gateway's push;
#  - compat/tcp, gateway/tcp and https/tcp: mutt writes a message (m,
#    recipient, subject, y) and sends it through the proxy's SMTP listener
#    (XDELIVER at the gateway, over the way's binding, or the submission
#    server in compatibility mode; Dovecot's submission service behind,
#    lib/submission.sh): it arrives. (The stdio ways do not send: mutt has
#    no $tunnel for SMTP.) Not at all without dovecot-submissiond (and the
#    test says so);
#  - mutt quits cleanly;
#  - stdio ways: the greeting was not PREAUTH and mutt logged in; the proxy
#    exited with status 0 after mutt's LOGOUT; and, with mutt killed in the
#    middle of a session, the proxy sees its stdin close and exits.
# Part (p) (earlier t_stdio.sh) drives pimap-proxy --stdio through plain
# pipes with a scripted client (lib/stdio_pipes.py).
#
# By hand: tests/integration/t_mutt.sh [WAY...] (after building); a WAY is
# one of compat/tcp compat/stdio gateway/tcp gateway/stdio https/tcp
# https/stdio pipes.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
require_gateway
gen_certs
# One user per way, so each starts from the same mailbox.
# Sending (TCP ways): the proxy's SMTP listener, XDELIVER at the gateway
# (or the submission server itself in compatibility mode), Dovecot's
# submission service relaying into LMTP (lib/submission.sh); the mail goes
# to rcpt, whom no way reads.
. "$HARNESS_LIB/mutt.sh"
start_store_for_mutt alice bob carol dave erin frank grace rcpt
GW_ARGS=("${GW_SEND_ARGS[@]}")
export DOVECOT_IMAPS CA DOVECOT_PASS
for u in alice bob carol dave frank grace; do
	deliver $u "Mutt subject one"
	deliver $u "Mutt subject two"
	deliver $u "Mutt subject three"
done
deliver erin "stdio: first"
deliver erin "stdio: second" "A body to fetch through pipes."
python3 - <<'PY' || hard_error "cannot create the folders Work"
import os
from pimapc import StoreClient
for user in ("alice", "bob", "carol", "dave", "frank", "grace"):
    st = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAPS"]), user, os.environ["DOVECOT_PASS"],
                     cafile=os.environ["CA"])
    st.create("Work")
    st.append("Work", "Work subject")
    st.logout()
PY
HTTPS_PORT=$(free_port)
GW_ARGS+=(--set "listen.https=127.0.0.1:$HTTPS_PORT")
start_gateway "${GW_ARGS[@]}"
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "the gateway has no HTTPS listener"
# One relay on the link of each binding; a test cuts it to lose the link.
RELAY_PORT=$(free_port)
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$T/relay.ctl"
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$SPAWNED_PID" || fail "link relay does not listen"
HTTPS_RELAY_PORT=$(free_port)
spawn "$T/relay-https.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$HTTPS_RELAY_PORT" "$HTTPS_PORT" "$T/relay-https.ctl"
wait_port 127.0.0.1 "$HTTPS_RELAY_PORT" 10 "$SPAWNED_PID" || fail "HTTPS link relay does not listen"
# relay cut|restore: on the link of the way running.
relay() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.recv(100).decode().strip())' "$WAY_RELAY_CTL" "$1"; }

expect_store() { wait_for 15 store_has "$1" || fail "$WAY: store: $2"; log "ok: $WAY: store: $2"; }

# The proxy's log for the way: its trace, connections, macro use.
way_log_count() { grep -c -- "$1" "$WAY_LOG" 2>/dev/null || true; }

# mutt's connections: TCP ways count the proxy's accepted connections, stdio
# ways the proxy processes mutt's $tunnel started.
mutt_connections() {
	case $WAY in
	*/tcp) way_log_count "connected to 127.0.0.1:$WAY_PORT" ;;
	*/stdio) find "$T" -maxdepth 1 -name "stdio-$WAY_TAG.*.pid" | wc -l ;;
	esac
}

# setup_way WAY USER: the proxy (tcp) or the $tunnel wrapper (stdio), and the muttrc.
setup_way() {
	WAY=$1 WAY_USER=$2 WAY_TAG=${1//\//-}
	local mode=${WAY%/*} transport=${WAY#*/} upstream macros=()
	WAY_LOG=$T/proxy-$WAY_TAG.log
	WAY_RELAY_CTL=$T/relay.ctl
	case $mode in
	compat) upstream="imaps://127.0.0.1:$DOVECOT_IMAPS" ;;
	gateway) upstream="pimaps://127.0.0.1:$RELAY_PORT" ;;
	https)
		upstream="https://localhost:$HTTPS_RELAY_PORT/pimap"
		WAY_RELAY_CTL=$T/relay-https.ctl
		;;
	esac
	local link=(--set link.heartbeat=5s --set link.dead_timeout=3s --set link.reconnect_min=200ms
		--set link.reconnect_max=1s)
	if [ "$transport" = tcp ]; then
		WAY_PORT=$(free_port)
		if [ "$mode" != compat ]; then
			# The shipped mutt macro, told that mutt connects to this
			# listener (mutt sends no ID).
			mkdir -p "$T/macros-$WAY_TAG"
			sed "s|listen: \[\"stdio\"\]|listen: [\"stdio\", \"127.0.0.1:$WAY_PORT\"]|" \
				"$top_srcdir/macros/mutt.yaml" >"$T/macros-$WAY_TAG/mutt.yaml"
			grep -q "127.0.0.1:$WAY_PORT" "$T/macros-$WAY_TAG/mutt.yaml" || hard_error "could not adapt macros/mutt.yaml"
			macros=(--set "macros.dir=$T/macros-$WAY_TAG" --device-id "mutt-$WAY_TAG" "${link[@]}")
		fi
		local smtp=()
		MUTT_SMTP=()
		WAY_SENDS=0
		if [ $SEND = 1 ]; then
			WAY_SENDS=1
			WAY_SMTP_PORT=$(free_port)
			smtp=(--smtp-listen "127.0.0.1:$WAY_SMTP_PORT" --smtp-listen-tls none)
			[ "$mode" = compat ] && smtp+=(--submission "smtp://127.0.0.1:$SUBMISSION_PORT"
				--set "smtp.submission_ca_file=$CA")
			mutt_smtp_settings "$WAY_USER" "$WAY_SMTP_PORT"
		fi
		PROXY_LOG=$WAY_LOG
		start_proxy --listen "127.0.0.1:$WAY_PORT" --listen-tls none --state-dir "$T/state-$WAY_TAG" \
			--upstream "$upstream" --ca-file "$CA" --trace -v "${macros[@]}" "${smtp[@]}"
		WAY_PROXY_PID=$PROXY_PID
		write_muttrc "$WAY_USER" "$WAY_PORT" delete=yes resolve=no "${MUTT_SMTP[@]}"
	else
		# The shipped macros as installed: mutt.yaml names the stdio listener.
		[ "$mode" != compat ] && macros=(--set "macros.dir=$top_srcdir/macros" --device-id "mutt-$WAY_TAG" "${link[@]}")
		# Each run of the tunnel leaves its pid file and, when the
		# proxy ends, its exit status; its stderr goes to a file the
		# harness checks for sanitizer reports, not to mutt's screen.
		local wrapper=$T/tunnel-$WAY_TAG.sh q
		{
			echo '#!/bin/sh'
			echo 'n=$$'
			printf '%q ' ${PIMAP_PROXY_WRAPPER:-} "$PROXY_BIN" --stdio --upstream "$upstream" --ca-file "$CA" \
				--state-dir "$T/state-$WAY_TAG" --log-file "$WAY_LOG" --trace -v "${macros[@]}"
			printf -- '--pid-file %q.$n.pid 2>>%q\n' "$T/stdio-$WAY_TAG" "$T/proxy-$WAY_TAG.stderr"
			printf 'echo $? >%q.$n.status\n' "$T/stdio-$WAY_TAG"
		} >"$wrapper"
		chmod +x "$wrapper"
		write_muttrc "$WAY_USER" "tunnel=$wrapper" delete=yes resolve=no
	fi
}

# rcpt_has SUBJECT: a message with that subject is in rcpt's INBOX at the store.
rcpt_has() {
	python3 - "$1" <<'PY'
import sys
import gw_common as g
st = g.store("rcpt")
st.ok("EXAMINE INBOX")
r = st.ok('SEARCH SUBJECT "%s"' % sys.argv[1])
st.logout()
sys.exit(0 if any(x.first.startswith("* SEARCH ") and len(x.first.split()) > 2 for x in r) else 1)
PY
}

# The proxies a stdio way started: stop any still running at exit (by pid).
track_stdio_proxies() {
	local f
	for f in "$T"/stdio-"$WAY_TAG".*.pid; do
		[ -s "$f" ] && track_pid "$(cat "$f")"
	done
	return 0
}

run_way() {
	setup_way "$1" "$2"
	log "=== way $WAY (user $WAY_USER)"
	start_mutt
	expect_screen 30 "$WAY: mutt shows INBOX" "[Mutt subject one]" "[Mutt subject two]" "[Mutt subject three]"
	track_stdio_proxies
	local conns
	conns=$(mutt_connections)

	# read, flag, delete and expunge
	tmx send-keys -t mutt Enter
	expect_screen 15 "$WAY: mutt opens message one" "Subject: Mutt subject one"
	tmx send-keys -t mutt i
	expect_screen 10 "$WAY: back in the index" "[Mutt subject two]"
	tmx send-keys -t mutt j F j d
	expect_screen 10 "$WAY: message three marked deleted in the index" "D  [Mutt subject three]"
	# mutt writes flags and expunges when it syncs the mailbox ("$").
	tmx send-keys -t mutt '$'
	expect_store "sorted(dict(t)) == [1, 2]" "message three deleted and expunged"
	expect_store "'\\\\Seen' in dict(t)[1]" "message one (read) is \\Seen"
	expect_store "'\\\\Flagged' in dict(t)[2]" "message two is \\Flagged"
	wait_for 10 sh -c "! tmux -S '$TMUX_SOCK' capture-pane -p -t mutt | grep -qF '[Mutt subject three]'" ||
		{ show_screen; fail "$WAY: message three still in mutt's index"; }

	# the raw message, piped out of mutt, is what the store holds
	tmx send-keys -t mutt k k '|'
	expect_screen 10 "$WAY: mutt asks where to pipe" "Pipe to command"
	tmx send-keys -t mutt "cat > $T/piped-$WAY_TAG.eml" Enter
	wait_for 10 test -s "$T/piped-$WAY_TAG.eml" || { show_screen; fail "$WAY: mutt piped nothing"; }
	python3 - "$WAY_USER" "$T/piped-$WAY_TAG.eml" <<'PY' || fail "$WAY: the message mutt piped is not the one in the store"
import sys, time
import gw_common as g
st = g.store(sys.argv[1])
st.ok("EXAMINE INBOX")
want = [r.literals[0] for r in st.ok("UID FETCH 1 (BODY.PEEK[])") if r.literals][0]
st.logout()
deadline = time.time() + 5
while True:  # mutt may still be writing through cat
    got = open(sys.argv[2], "rb").read()
    if got == want.replace(b"\r\n", b"\n") or time.time() > deadline:
        break
    time.sleep(0.1)
sys.exit(0 if got == want.replace(b"\r\n", b"\n") else 1)
PY
	log "ok: $WAY: the message piped out of mutt is byte for byte the store's"

	# folders
	tmx send-keys -t mutt c
	expect_screen 10 "$WAY: mutt asks for a folder" "Open mailbox"
	tmx send-keys -t mutt "=Work" Enter
	expect_screen 15 "$WAY: mutt changed to Work" "[Work subject]"
	tmx send-keys -t mutt c
	tmx send-keys -t mutt "=INBOX" Enter
	expect_screen 15 "$WAY: mutt is back in INBOX" "[Mutt subject one]" "[Mutt subject two]"

	# push
	deliver "$WAY_USER" "Mutt subject four, pushed"
	expect_screen 20 "$WAY: new mail appears by itself (IDLE)" "[Mutt subject four, pushed]"
	grep -Eq 'C> [^ ]+ IDLE' "$WAY_LOG" || fail "$WAY: no IDLE from mutt in the proxy's trace"

	if [ "${WAY%/*}" != compat ]; then
		local lost
		lost=$(way_log_count "link to the gateway lost")
		relay cut >/dev/null
		wait_for 10 sh -c "[ \$(grep -c 'link to the gateway lost' '$WAY_LOG') -gt $lost ]" ||
			fail "$WAY: the proxy did not notice the cut"
		deliver "$WAY_USER" "During the outage A"
		deliver "$WAY_USER" "During the outage B"
		relay restore >/dev/null
		expect_screen 30 "$WAY: mail that came during the outage appears after the link returns" \
			"[During the outage A]" "[During the outage B]"

		stop_gateway
		deliver "$WAY_USER" "While the gateway restarts"
		start_gateway "${GW_ARGS[@]}"
		expect_screen 30 "$WAY: mail that came during a gateway restart appears" "[While the gateway restarts]"

		if screen | grep -Eiq 'error|lost|closed|unavailable'; then
			show_screen
			fail "$WAY: mutt shows an error"
		fi
		[ "$(mutt_connections)" = "$conns" ] || fail "$WAY: mutt reconnected ($(mutt_connections) connections, was $conns)"
		log "ok: $WAY: no error on mutt's screen and no reconnect by mutt"
		grep -q "from the prefetched FETCH 1:\*" "$WAY_LOG" ||
			fail "$WAY: mutt's header FETCH was never answered from the macro's prefetch"
		log "ok: $WAY: mutt's header FETCH was answered from the macro's prefetch"
		grep -q "from the proxy's cache" "$WAY_LOG" ||
			fail "$WAY: mutt's FETCH of new mail was never answered from the gateway's push (PIMAP_INBAND_NEW_FORMAT)"
		log "ok: $WAY: mutt's FETCH of new mail was answered from the gateway's push"
	fi

	if [ "${WAY#*/}" = tcp ] && [ "$WAY_SENDS" = 1 ]; then
		local subject="Sent by mutt, $WAY_TAG"
		mutt_send "$WAY" rcpt@mail.test "$subject"
		wait_for 30 rcpt_has "$subject" || { show_screen; fail "$WAY: the message mutt sent did not arrive in rcpt's INBOX"; }
		if [ "${WAY%/*}" = https ]; then
			grep -q "messages go to the gateway as XDELIVER (over the HTTPS binding)" "$WAY_LOG" ||
				fail "$WAY: the proxy does not say it sends over the HTTPS binding"
		fi
		log "ok: $WAY: mutt sent a message through the proxy's SMTP listener; it arrived"
	fi

	tmx send-keys -t mutt q
	expect_screen 15 "$WAY: mutt quit" "MUTT-EXITED"
	screen_has "MUTT-EXITED 0" || { show_screen; fail "$WAY: mutt exited with an error"; }
	stop_mutt_tmux

	case $WAY in
	*/tcp)
		running "$WAY_PROXY_PID" || fail "$WAY: the proxy died"
		stop_pid "$WAY_PROXY_PID"
		;;
	*/stdio)
		# Greeting, login and exit of the one proxy mutt's $tunnel ran.
		grep -Eq 'C< \* OK ' "$WAY_LOG" || fail "$WAY: no '* OK' greeting in the trace"
		grep -q 'C< \* PREAUTH' "$WAY_LOG" && fail "$WAY: the proxy greeted with PREAUTH"
		grep -Eq 'C> [^ ]+ (LOGIN|AUTHENTICATE)' "$WAY_LOG" || fail "$WAY: mutt did not log in"
		log "ok: $WAY: '* OK' greeting (no PREAUTH), mutt logged in"
		local status
		wait_for 10 sh -c "ls '$T'/stdio-'$WAY_TAG'.*.status >/dev/null 2>&1" || fail "$WAY: the proxy did not exit after mutt quit"
		status=$(cat "$T"/stdio-"$WAY_TAG".*.status)
		[ "$status" = 0 ] || fail "$WAY: the proxy exited with status $status after mutt's LOGOUT"
		log "ok: $WAY: the proxy exited with status 0 after mutt's LOGOUT"

		# mutt killed in the middle of a session: the proxy's stdin closes.
		rm -f "$T"/stdio-"$WAY_TAG".*.pid "$T"/stdio-"$WAY_TAG".*.status
		start_mutt
		expect_screen 30 "$WAY: mutt shows INBOX again" "[Mutt subject one]"
		track_stdio_proxies
		local mp
		mp=$(mutt_pid) || true
		[ -n "$mp" ] || fail "$WAY: cannot find mutt's pid"
		kill -KILL "$mp"
		wait_for 10 sh -c "ls '$T'/stdio-'$WAY_TAG'.*.status >/dev/null 2>&1" ||
			fail "$WAY: the proxy did not exit within 10 s of its stdin closing"
		log "ok: $WAY: with mutt killed, the proxy exited (status $(cat "$T"/stdio-"$WAY_TAG".*.status))"
		stop_mutt_tmux
		;;
	esac
}

WAYS=${*:-compat/tcp compat/stdio gateway/tcp gateway/stdio https/tcp https/stdio pipes}
for w in $WAYS; do
	case $w in
	compat/tcp) run_way compat/tcp alice ;;
	compat/stdio) run_way compat/stdio bob ;;
	gateway/tcp) run_way gateway/tcp carol ;;
	gateway/stdio) run_way gateway/stdio dave ;;
	https/tcp) run_way https/tcp frank ;;
	https/stdio) run_way https/stdio grace ;;
	pipes)
		log "=== (p) pimap-proxy --stdio through plain pipes"
		STDIO_USER=erin PROXY_BIN=$PROXY_BIN T=$T PIMAP_PROXY_WRAPPER=${PIMAP_PROXY_WRAPPER:-} \
			python3 "$HARNESS_LIB/stdio_pipes.py" || fail "(p): see the messages above"
		;;
	*) hard_error "unknown way $w" ;;
	esac
done

gateway_alive || fail "the gateway died"
pass
