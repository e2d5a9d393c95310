# filter_mutt.sh - mutt through pimap-proxy sees a 7-day INBOX (t_filter_link, t_filter_compat).
# Source after harness.sh; needs the store's alice and a proxy on port $1 whose
# filter file gives INBOX a 7-day view.

. "$HARNESS_LIB/mutt.sh"

# mutt_sees_7_days PORT: mutt shows exactly the store's messages of the last 7 days, none older; quits it.
mutt_sees_7_days() {
	local want
	want=$(python3 -c '
from filter_lib import *
s = store_client("alice")
print(len(reference(s, "INBOX", "SINCE %s" % imap_date(7))))') || fail "cannot ask the store for the 7-day view"
	write_muttrc alice "$1"
	start_mutt
	expect_screen 30 "mutt shows INBOX with the 7-day view ($want messages)" "Msgs:$want" "days old]"
	screen_has "40 days old" && { show_screen; fail "mutt shows a message older than 7 days"; }
	log "ok: mutt shows $want messages, none older than 7 days"
	tmx send-keys -t mutt q
	wait_for 10 sh -c "tmux -S '$TMUX_SOCK' capture-pane -p -t mutt | grep -q MUTT-EXITED" || true
}
