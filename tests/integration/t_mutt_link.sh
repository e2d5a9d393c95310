#!/bin/bash
# t_mutt_link.sh - stock mutt through pimap-proxy and pimap-gateway (issue 4),
# driven in tmux, with a relay on the proxy-gateway link:
#  - mutt opens INBOX, reads a message, flags one, deletes and expunges one,
#    changes folder and back; the store's real state shows each change;
#  - new mail appears by itself (imap_idle=yes);
#  - the link is cut while mutt sits in INBOX and mail arrives meanwhile:
#    mutt shows it once the link is back, shows no error, and never
#    reconnects (the proxy accepted one connection from it);
#  - the same across a gateway restart (SIGTERM);
#  - with the shipped mutt macro on, mutt's header FETCH after SELECT is
#    answered from the prefetch sent with the SELECT, and its FETCH of new
#    mail from the gateway's push (PIMAP_INBAND_NEW_FORMAT);
#  - mutt quits cleanly.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
require_gateway
gen_certs
start_dovecot
start_gateway
deliver alice "Mutt subject one"
deliver alice "Mutt subject two"
deliver alice "Mutt subject three"
python3 - <<PY || hard_error "cannot create folder Work"
import sys; sys.path.insert(0, "$HARNESS_LIB")
import os
os.environ.update(DOVECOT_IMAPS="$DOVECOT_IMAPS", CA="$CA", DOVECOT_PASS="$DOVECOT_PASS")
import gw_common as g
st = g.store("alice"); st.create("Work"); st.append("Work", "Work subject"); st.logout()
PY

RELAY_PORT=$(free_port)
spawn "$T/relay.stderr" python3 "$HARNESS_LIB/linkrelay.py" "$RELAY_PORT" "$GW_PORT" "$T/relay.ctl"
RELAY_PID=$SPAWNED_PID
wait_port 127.0.0.1 "$RELAY_PORT" 10 "$RELAY_PID" || fail "link relay does not listen"
relay() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode()); print(s.recv(100).decode().strip())' "$T/relay.ctl" "$1"; }

P=$(free_port)
# The shipped mutt macro, told that mutt connects to this listener (mutt sends no ID).
mkdir -p "$T/macros"
sed "s|listen: \[\"stdio\"\]|listen: [\"stdio\", \"127.0.0.1:$P\"]|" "$top_srcdir/macros/mutt.yaml" >"$T/macros/mutt.yaml"
grep -q "127.0.0.1:$P" "$T/macros/mutt.yaml" || hard_error "could not adapt macros/mutt.yaml"
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "pimaps://127.0.0.1:$RELAY_PORT" --ca-file "$CA" --device-id mutt-laptop --trace -v \
	--set link.heartbeat=5s --set link.dead_timeout=3s --set link.reconnect_min=200ms \
	--set link.reconnect_max=1s --set "macros.dir=$T/macros"

. "$HARNESS_LIB/mutt.sh"
write_muttrc "$P" delete=yes resolve=no
start_mutt

expect_store() { wait_for 15 store_has "$1" || fail "store: $2"; log "ok: store: $2"; }
mutt_connections() { grep -c "connected to 127.0.0.1:$P" "$PROXY_LOG" || true; }

expect_screen 30 "mutt shows INBOX through proxy and gateway" \
	"[Mutt subject one]" "[Mutt subject two]" "[Mutt subject three]"
CONNS=$(mutt_connections)

tmx send-keys -t mutt Enter
expect_screen 15 "mutt opens message one" "Subject: Mutt subject one"
tmx send-keys -t mutt i
expect_screen 10 "back in the index" "[Mutt subject two]"
tmx send-keys -t mutt j F j d
expect_screen 10 "message three marked deleted in the index" "D  [Mutt subject three]"
# mutt writes flags and expunges when it syncs the mailbox ("$").
tmx send-keys -t mutt '$'
expect_store "sorted(dict(t)) == [1, 2]" "message three deleted and expunged"
expect_store "'\\\\Seen' in dict(t)[1]" "message one (read) is \\Seen"
expect_store "'\\\\Flagged' in dict(t)[2]" "message two is \\Flagged"
wait_for 10 sh -c "! tmux -S '$TMUX_SOCK' capture-pane -p -t mutt | grep -qF '[Mutt subject three]'" ||
	{ show_screen; fail "message three still in mutt's index"; }

tmx send-keys -t mutt c
expect_screen 10 "mutt asks for a folder" "Open mailbox"
tmx send-keys -t mutt "=Work" Enter
expect_screen 15 "mutt changed to Work" "[Work subject]"
tmx send-keys -t mutt c
tmx send-keys -t mutt "=INBOX" Enter
expect_screen 15 "mutt is back in INBOX" "[Mutt subject one]" "[Mutt subject two]"

deliver alice "Mutt subject four, pushed"
expect_screen 20 "new mail appears by itself (IDLE)" "[Mutt subject four, pushed]"
grep -Eq 'C> [^ ]+ IDLE' "$PROXY_LOG" || fail "no IDLE from mutt in the proxy's trace"

LOST=$(grep -c "link to the gateway lost" "$PROXY_LOG" || true)
relay cut >/dev/null
wait_for 10 sh -c "[ \$(grep -c 'link to the gateway lost' '$PROXY_LOG') -gt $LOST ]" ||
	fail "the proxy did not notice the cut"
deliver alice "During the outage A"
deliver alice "During the outage B"
relay restore >/dev/null
expect_screen 30 "mail that came during the outage appears after the link returns" \
	"[During the outage A]" "[During the outage B]"

stop_gateway
deliver alice "While the gateway restarts"
start_gateway
expect_screen 30 "mail that came during a gateway restart appears" "[While the gateway restarts]"

if screen | grep -Eiq 'error|lost|closed|unavailable'; then
	show_screen
	fail "mutt shows an error"
fi
[ "$(mutt_connections)" = "$CONNS" ] || fail "mutt reconnected ($(mutt_connections) connections, was $CONNS)"
log "ok: no error on mutt's screen and no reconnect by mutt"
grep -q "from the prefetched FETCH 1:\*" "$PROXY_LOG" || fail "mutt's header FETCH was never answered from the macro's prefetch"
log "ok: mutt's header FETCH was answered from the macro's prefetch"
grep -q "from the proxy's cache" "$PROXY_LOG" ||
	fail "mutt's FETCH of new mail was never answered from the gateway's push (PIMAP_INBAND_NEW_FORMAT)"
log "ok: mutt's FETCH of new mail was answered from the gateway's push"

tmx send-keys -t mutt q
expect_screen 15 "mutt quit" "MUTT-EXITED"
screen_has "MUTT-EXITED 0" || { show_screen; fail "mutt exited with an error"; }
stop_mutt_tmux
proxy_alive || fail "the proxy died"
gateway_alive || fail "the gateway died"
pass
