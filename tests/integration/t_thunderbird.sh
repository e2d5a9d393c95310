#!/bin/bash
# t_thunderbird.sh - stock Thunderbird (Debian's) through pimap-proxy and
# pimap-gateway to Dovecot, headless under Xvfb (issue 8):
#  (a) a fresh profile (lib/tb_profile.py: one IMAP account and one SMTP
#      server on the proxy's loopback ports, first-run pages off, the
#      password stored in key4.db/logins.json, no prompt) syncs: the proxy's
#      trace shows Thunderbird log in, list the folders, select INBOX,
#      download every message whole and IDLE; its local store holds them;
#  (b) a message delivered over LMTP while it runs is pushed in IDLE and
#      fetched whole, and lands in the local store;
#  (s) a screenshot of its window showing the message list is kept in
#      $top_builddir/tests/integration/t_thunderbird.artifacts/ (checked not
#      blank, and changed when the new message arrived);
#  (c) the same profile kind through the proxy in compatibility mode, where
#      Thunderbird turns on COMPRESS on the client leg (it used to drop
#      every compressed connection, see zio.c);
#  (v) [issue 5] with filters/mobile.yaml on, the local store holds only
#      the view: ready below, runs once the proxy loads filter files;
#  (m) [issue 6] Thunderbird sends through the proxy's SMTP listener:
#      ready below, runs once the proxy has one.
# The whole test runs in a network namespace with loopback only
# (lib/thunderbird.sh), so nothing can reach the outside world whatever the
# prefs miss. Where Thunderbird cannot run (not installed, no Xvfb, it dies
# or opens no window) the test is skipped (77) and says why.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/thunderbird.sh"

tb_isolate_network "$@"
tb_require
require dovecot certtool
require_proxy
require_gateway

ART=$top_builddir/tests/integration/t_thunderbird.artifacts
rm -rf "$ART"
mkdir -p "$ART"

gen_certs
DOVECOT_USERS="alice bob carol" start_dovecot
for i in 1 2 3 4 5; do
	deliver alice "TB message $i" "Body of TB message $i."
	deliver bob "TB compat message $i" "Body of TB compat message $i."
done
export DOVECOT_IMAPS DOVECOT_LMTP CA DOVECOT_PASS
python3 - <<'PY' || hard_error "cannot create alice's folder Work"
import os
from pimapc import StoreClient
st = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAPS"]), "alice", os.environ["DOVECOT_PASS"],
                 cafile=os.environ["CA"])
st.create("Work")
st.ok("SUBSCRIBE Work")
st.append("Work", "TB work message")
st.logout()
PY
start_gateway

TRACE="$HARNESS_LIB/tb_trace.py"
# expect T WHAT CHECK...: poll tb_trace.py CHECK against the proxy's trace.
expect_trace() {
	local t=$1 what=$2
	shift 2
	tb_poll "$t" python3 "$TRACE" "$PROXY_LOG" "$@" -q || {
		python3 "$TRACE" "$PROXY_LOG" "$@" || true
		fail "$what"
	}
	log "ok: $what ($(python3 "$TRACE" "$PROXY_LOG" "$@" 2>&1))"
}
expect_store() {
	local t=$1 file=$2
	shift 2
	tb_poll "$t" python3 "$TRACE" "$file" store-has "$@" -q || {
		python3 "$TRACE" "$file" store-has "$@" || true
		fail "Thunderbird's local store lacks what it downloaded"
	}
	log "ok: Thunderbird's local store holds: $*"
}

# --- (a) sync through proxy and gateway ------------------------------------------
P=$(free_port)
SMTP_PORT=$(free_port) # the proxy's SMTP listener (issue 6); nothing listens yet
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id thunderbird1 \
	--trace --set "macros.dir=$top_srcdir/macros"
GW_PROXY_PID=$PROXY_PID
start_xvfb
PROFILE=$T/tb-gateway
tb_make_profile "$PROFILE" "$P" "$SMTP_PORT" alice "$DOVECOT_PASS"
start_thunderbird "$PROFILE"

expect_trace 60 "Thunderbird logs in through the proxy" login
expect_trace 60 "Thunderbird lists the folders" listed INBOX Work
expect_trace 60 "Thunderbird selects INBOX" selected INBOX
expect_trace 90 "Thunderbird downloads every message whole" downloaded 1 2 3 4 5
expect_trace 60 "Thunderbird IDLEs" idled
# INBOX, or INBOX-1 when two of Thunderbird's folder discoveries raced.
LOCAL_INBOX="$PROFILE/ImapMail/127.0.0.1/INBOX*"
expect_store 60 "$LOCAL_INBOX" "Body of TB message 1." "Body of TB message 5."

tb_poll 30 sh -c 'tb_title=$(xdotool getwindowname "$1" 2>/dev/null); case $tb_title in Inbox*) exit 0;; esac; exit 1' _ "$(tb_window)" ||
	fail "Thunderbird's window does not show Inbox (title: $(tb_window_title))"
log "ok: window title '$(tb_window_title)'"
tb_screenshot "$ART/before-new-mail.png" || fail "screenshot failed (see $T/import.log)"

# --- (b) new mail while it runs ------------------------------------------------
deliver alice "TB pushed while running" "Body pushed while Thunderbird runs."
expect_trace 60 "the new message is pushed in IDLE and Thunderbird fetches it whole" pushed-and-fetched 6
expect_store 60 "$LOCAL_INBOX" "Body pushed while Thunderbird runs."

# --- (s) the screenshot ----------------------------------------------------------
# Thunderbird redraws the list a moment after storing the message: poll
# until the window's picture differs from the one before the delivery.
SHOT=$ART/thunderbird.png
shot_changed() {
	tb_screenshot "$SHOT" || return 1
	! tb_image_is_blank "$SHOT" &&
		[ "$(compare -metric AE "$ART/before-new-mail.png" "$SHOT" null: 2>&1 || true)" != 0 ]
}
tb_poll 30 shot_changed || fail "no screenshot of Thunderbird's window that is not blank and shows the new message ($SHOT)"
log "ok: screenshot $SHOT ($(identify -format '%wx%h, %k colours' "$SHOT")), differs from the one before the new mail"
tb_image_is_blank "$ART/before-new-mail.png" && fail "the first screenshot is blank"

# --- (v) [ISSUE 5] the view: Thunderbird's local store holds only it -----------------
# Ready to run once the proxy loads filter files (issue 5). What to finish:
#  - TB_VIEW_PROXY_ARGS: the flag or key that turns filters/mobile.yaml on
#    (below: a guess, marked ISSUE 5);
#  - carol's messages: some inside mobile.yaml's view and some outside (the
#    check insists on a strict, non-empty subset); adjust them to the file.
# The expected view is what any client of the same device sees through the
# proxy (filters belong to the device), so the check does not repeat the
# filter's logic: Thunderbird's local INBOX must hold exactly those
# messages, and it must never have fetched one outside the view.
tb_view_part() {
	local vp vprofile
	# ISSUE 5: carol's mailbox, a mix that mobile.yaml keeps and drops.
	python3 "$HARNESS_LIB/viewcheck.py" deliver-mix carol || hard_error "cannot deliver carol's messages"
	vp=$(free_port)
	PROXY_LOG=$T/proxy-view.log
	# ISSUE 5: replace --set filters.file=... by what issue 5 names it.
	start_proxy --listen "127.0.0.1:$vp" --listen-tls none --state-dir "$T/proxy-view-state" \
		--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id thunderbird-view \
		--trace --set "macros.dir=$top_srcdir/macros" \
		${TB_VIEW_PROXY_ARGS:---set "filters.file=$top_srcdir/filters/mobile.yaml"}
	vprofile=$T/tb-view
	tb_make_profile "$vprofile" "$vp" "$SMTP_PORT" carol "$DOVECOT_PASS"
	start_thunderbird "$vprofile"
	expect_trace 60 "(v) Thunderbird selects INBOX in the view" selected INBOX
	expect_trace 60 "(v) Thunderbird IDLEs" idled
	python3 "$HARNESS_LIB/viewcheck.py" compare carol "$vp" \
		--local "$vprofile/ImapMail/127.0.0.1/INBOX*" --trace "$PROXY_LOG" ||
		fail "(v) Thunderbird's local store is not exactly the view"
	log "ok: (v) with filters/mobile.yaml on, Thunderbird's local store holds exactly the view"
	stop_thunderbird
	stop_pid "$PROXY_PID"
}

# --- (m) [ISSUE 6] sending through the proxy's SMTP listener -------------------------
# Ready to run once the proxy has an SMTP listener (issue 6). Thunderbird's
# compose window is driven with xdotool (thunderbird -compose needs D-Bus).
# What to finish: the listener flag (marked ISSUE 6) and, once the harness
# has an SMTP receiver behind the gateway, the check that it got the
# message (marked ISSUE 6 too). Thunderbird files its copy in Sent over
# IMAP only after the server accepted the message, so the Sent copy is
# already proof that the SMTP listener said 250.
tb_send_part() {
	local subject="Sent by Thunderbird through pimap" w
	tb_compose_and_send "bob@example.org" "$subject" "Hello from Thunderbird, through pimap-proxy's SMTP listener."
	python3 - "$subject" <<'PY' || fail "(m) the message Thunderbird sent is not in alice's Sent folder"
import os, sys, time
from pimapc import StoreClient
deadline = time.time() + 60
while True:
    st = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAPS"]), "alice", os.environ["DOVECOT_PASS"],
                     cafile=os.environ["CA"])
    try:
        st.ok("EXAMINE Sent")
        found = any("SEARCH" in r.first and len(r.first.split()) > 2
                    for r in st.ok('SEARCH SUBJECT "%s"' % sys.argv[1]))
    except Exception:
        found = False
    st.logout()
    if found or time.time() > deadline:
        break
    time.sleep(0.5)
sys.exit(0 if found else 1)
PY
	# ISSUE 6: check that the SMTP receiver behind the gateway got it.
	log "ok: (m) Thunderbird sent a message through the proxy's SMTP listener"
}

if [ -f "$top_srcdir/filters/mobile.yaml" ] && "$PROXY_BIN" --dump-config 2>/dev/null | grep -q '^filters\.'; then
	stop_thunderbird
	SAVED_PROXY_LOG=$PROXY_LOG
	tb_view_part
	PROXY_LOG=$SAVED_PROXY_LOG
else
	log "part (v) not run: needs filters/mobile.yaml and the proxy's filter keys (issue 5)"
fi
if "$PROXY_BIN" --dump-config 2>/dev/null | grep -q '^listen\.smtp'; then
	# ISSUE 6: the proxy above must then be started with its SMTP listener on
	# 127.0.0.1:$SMTP_PORT (e.g. --set listen.smtp=127.0.0.1:$SMTP_PORT).
	[ -n "${TB_PID:-}" ] || start_thunderbird "$PROFILE"
	tb_send_part
else
	log "part (m) not run: the proxy has no SMTP listener yet (issue 6)"
fi
stop_thunderbird
stop_pid "$GW_PROXY_PID"

# --- (c) compatibility mode: COMPRESS on the client leg --------------------------------
PROXY_LOG=$T/proxy-compat.log
CP=$(free_port)
start_proxy --listen "127.0.0.1:$CP" --listen-tls none --state-dir "$T/proxy-compat-state" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" --trace
CPROFILE=$T/tb-compat
tb_make_profile "$CPROFILE" "$CP" "$SMTP_PORT" bob "$DOVECOT_PASS"
start_thunderbird "$CPROFILE"
expect_trace 60 "(c) Thunderbird turns on COMPRESS with the proxy" compressed
expect_trace 90 "(c) Thunderbird downloads every message whole through the compressed leg" downloaded 1 2 3 4 5
expect_trace 60 "(c) Thunderbird IDLEs" idled
expect_store 60 "$CPROFILE/ImapMail/127.0.0.1/INBOX*" "Body of TB compat message 1." "Body of TB compat message 5."
stop_thunderbird

proxy_alive || fail "the proxy died"
gateway_alive || fail "the gateway died"
if grep -E 'C> [^ ]+ (LOGIN|AUTHENTICATE PLAIN [A-Za-z0-9+/=]{8,})|C> [A-Za-z0-9+/=]{16,}$' "$T"/proxy*.log; then
	fail "a password reached a proxy trace"
fi
pass
