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

cat >"$T/muttrc" <<EOF2
# Non-interactive mutt for t_mutt.sh; everything lives in $T.
set folder="imap://alice@127.0.0.1:$P/"
set spoolfile="+INBOX"
set imap_user="alice"
set imap_pass="$DOVECOT_PASS"
set ssl_starttls=no
set ssl_force_tls=no
set imap_idle=yes
set imap_check_subscribed=no
set timeout=1
set mail_check=1
set header_cache=""
set message_cachedir=""
set certificate_file="$T/mutt-certificates"
set record=""
set postponed="$T/postponed"
set mbox="$T/mbox"
set move=no
set quit=yes
set confirmappend=no
set wait_key=no
set sleep_time=0
set beep=no
set sort=mailbox-order
set index_format="%4C %Z [%s]"
set editor="/bin/true"
EOF2

TMUX_SOCK=$T/tmux.sock
tmx() { tmux -S "$TMUX_SOCK" "$@"; }
tmx -f /dev/null new-session -d -s mutt -x 160 -y 40 \
	"env HOME='$HOME' TERM=xterm mutt -n -F '$T/muttrc' 2>'$T/mutt.stderr'; echo MUTT-EXITED \$?; exec sleep 60" ||
	hard_error "tmux did not start"
TMUX_PID=$(tmx display-message -p '#{pid}')
track_pid "$TMUX_PID"
add_log "$T/mutt.stderr"
log "tmux server pid $TMUX_PID"

screen() { tmx capture-pane -p -t mutt 2>/dev/null; }
# screen_has FIXED-STRING...: every string is on the screen now.
screen_has() {
	local s cur
	cur=$(screen) || return 1
	for s in "$@"; do
		case $cur in *"$s"*) ;; *) return 1 ;; esac
	done
}
show_screen() {
	printf '\n----- mutt screen -----\n%s\n-----------------------\n' "$(screen)" >&2
}

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
# The pane still runs the `sleep` that kept mutt's exit status on screen;
# stop the tmux server by its pid (TERM, bounded wait, then KILL).
stop_pid "$TMUX_PID"
running "$TMUX_PID" && fail "tmux server $TMUX_PID still running"

proxy_alive || fail "the proxy died"
pass
