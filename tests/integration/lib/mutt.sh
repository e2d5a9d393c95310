# mutt.sh - stock mutt in tmux for the integration tests (sourced after
# harness.sh). Everything mutt writes lives in $T.
#
#   write_muttrc USER TARGET [SETTING...]
#                                   $T/muttrc for USER (password
#                                   $DOVECOT_PASS, IMAP IDLE on, no caches);
#                                   TARGET is a port on 127.0.0.1 (plain
#                                   IMAP) or "tunnel=COMMAND" (mutt's
#                                   $tunnel: COMMAND speaks IMAP on its
#                                   stdin/stdout); each SETTING is one more
#                                   "set ..." line
#   start_mutt                      mutt -F $T/muttrc in a detached tmux
#                                   session; sets TMUX_PID (tracked)
#   mutt_pid                        the pid of mutt itself (in the pane)
#   screen / screen_has STR...      read mutt's screen / all STRs are on it
#   show_screen                     print it to stderr (before a failure)
#   expect_screen T WHAT STR...     wait up to T s for STRs, else fail WHAT
#   stop_mutt_tmux                  stop the tmux server by its pid
#   store_has PYTHON-EXPR           true if the expression holds, with t =
#                                   [(uid, flags)] of $MUTT_USER's INBOX at
#                                   Dovecot
#
# Sending (the proxy's SMTP listener; Dovecot's submission service behind):
#   start_store_for_mutt USER...    start_store_with_submission
#                                   (lib/submission.sh) for the users when
#                                   dovecot-submissiond is installed, else
#                                   start_dovecot (and say so); sets SEND
#                                   (1 or 0) and GW_SEND_ARGS (the gateway's
#                                   submission.* flags, or none)
#   mutt_smtp_settings USER PORT    write_muttrc SETTINGs that send through
#                                   the SMTP listener on 127.0.0.1:PORT
#                                   (plain SMTP with AUTH, as the proxy
#                                   allows on loopback)
#   mutt_send WHAT RCPT SUBJECT     from the index: m, the recipient, the
#                                   subject (the editor leaves the body
#                                   empty), y in the compose menu

TMUX_SOCK=$T/tmux.sock
tmx() { tmux -S "$TMUX_SOCK" "$@"; }

MUTT_USER=alice
write_muttrc() {
	local user=$1 target=$2 extra folder tunnel=""
	shift 2
	MUTT_USER=$user
	case $target in
	tunnel=*)
		# The host name is only a label: mutt runs the tunnel instead of connecting.
		folder="imap://$user@pimap-tunnel/"
		tunnel=${target#tunnel=}
		;;
	*) folder="imap://$user@127.0.0.1:$target/" ;;
	esac
	cat >"$T/muttrc" <<EOF2
# Non-interactive mutt for the tests; everything lives in $T.
set folder="$folder"
set spoolfile="+INBOX"
set imap_user="$user"
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
	[ -z "$tunnel" ] || printf 'set tunnel="%s"\n' "$tunnel" >>"$T/muttrc"
	for extra in "$@"; do
		echo "set $extra" >>"$T/muttrc"
	done
}

start_mutt() {
	tmx -f /dev/null new-session -d -s mutt -x 160 -y 40 \
		"env HOME='$HOME' TERM=xterm mutt -n -F '$T/muttrc' 2>>'$T/mutt.stderr'; echo MUTT-EXITED \$?; exec sleep 60" ||
		hard_error "tmux did not start"
	TMUX_PID=$(tmx display-message -p '#{pid}')
	track_pid "$TMUX_PID"
	case " ${HARNESS_LOGS[*]} " in *" $T/mutt.stderr "*) ;; *) add_log "$T/mutt.stderr" ;; esac
	log "tmux server pid $TMUX_PID"
}

mutt_pid() {
	local pane
	pane=$(tmx display-message -p -t mutt '#{pane_pid}' 2>/dev/null) || return 1
	pgrep -P "$pane" -x mutt | head -n 1
}

screen() { tmx capture-pane -p -t mutt 2>/dev/null; }

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

expect_screen() {
	local t=$1 what=$2
	shift 2
	wait_for "$t" screen_has "$@" || { show_screen; fail "$what"; }
	log "ok: $what"
}

# The pane still runs the `sleep` that kept mutt's exit status on screen.
stop_mutt_tmux() {
	stop_pid "$TMUX_PID"
	running "$TMUX_PID" && fail "tmux server $TMUX_PID still running"
	return 0
}

# store_has PYTHON-EXPR: evaluated with t = [(uid, flags)] of the INBOX at the
# store of $MUTT_USER (the user of the last write_muttrc).
store_has() {
	DOVECOT_IMAPS=$DOVECOT_IMAPS CA=$CA DOVECOT_PASS=$DOVECOT_PASS python3 - "$MUTT_USER" "$1" <<'PY'
import sys
import gw_common as g
t = g.truth(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

start_store_for_mutt() {
	GW_SEND_ARGS=()
	SEND=0
	if [ -x /usr/lib/dovecot/submission ]; then
		SEND=1
		. "$HARNESS_LIB/submission.sh"
		DOVECOT_USERS="$*" start_store_with_submission
		GW_SEND_ARGS=(--set "submission.url=smtp://127.0.0.1:$SUBMISSION_PORT" --set "submission.ca_file=$CA")
	else
		log "no dovecot-submissiond: mutt does not send"
		DOVECOT_USERS="$*" start_dovecot
	fi
}

mutt_smtp_settings() {
	MUTT_SMTP=("smtp_url=\"smtp://$1@127.0.0.1:$2/\"" "smtp_pass=\"$DOVECOT_PASS\"" "from=\"$1@mail.test\""
		"use_from=yes" "abort_unmodified=no" "askcc=no" "edit_headers=no" "copy=no")
}

mutt_send() {
	local what=$1
	tmx send-keys -t mutt m
	expect_screen 10 "$what: mutt asks for the recipient" "To:"
	tmx send-keys -t mutt "$2" Enter
	expect_screen 10 "$what: mutt asks for the subject" "Subject:"
	tmx send-keys -t mutt "$3" Enter
	expect_screen 15 "$what: mutt's compose menu" "y:Send"
	tmx send-keys -t mutt y
}
