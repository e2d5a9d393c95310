#!/bin/bash
# t_mutt.sh - stock mutt (Debian's) through pimap-proxy, driven in tmux:
#  - mutt opens INBOX through the proxy's plain listener; the index shows
#    the subjects of the 3 delivered messages;
#  - a 4th message delivered over LMTP appears in the index by itself (mutt
#    IDLEs through the proxy; the proxy's trace must show the IDLE);
#  - mutt quits cleanly ("q"), and the tmux server is gone afterwards.
# The screen is read with `tmux capture-pane -p`, polled with deadlines.
#
# By hand: tests/integration/t_mutt.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
gen_certs
start_dovecot
deliver alice "Mutt subject one"
deliver alice "Mutt subject two"
deliver alice "Mutt subject three"

P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --trace

. "$HARNESS_LIB/mutt.sh"
write_muttrc "$P"
start_mutt

if ! wait_for 20 screen_has "[Mutt subject one]" "[Mutt subject two]" "[Mutt subject three]"; then
	show_screen
	fail "mutt's index does not show the 3 subjects"
fi
log "ok: mutt shows the 3 messages"

deliver alice "Mutt subject four, pushed"
if ! wait_for 20 screen_has "[Mutt subject four, pushed]"; then
	show_screen
	fail "the 4th message did not appear in mutt's index"
fi
log "ok: the 4th message appeared"
grep -Eq 'C> .*IDLE' "$PROXY_LOG" || fail "no IDLE from mutt in the proxy's trace"
log "ok: mutt used IDLE through the proxy"

# quit: with quit=yes, "q" leaves without a question
tmx send-keys -t mutt q
if ! wait_for 10 screen_has "MUTT-EXITED"; then
	show_screen
	fail "mutt did not quit"
fi
screen_has "MUTT-EXITED 0" || { show_screen; fail "mutt exited with an error"; }
log "ok: mutt quit cleanly"
stop_mutt_tmux

proxy_alive || fail "the proxy died"
pass
