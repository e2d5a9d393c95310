# shellcheck shell=bash
# thunderbird.sh - stock Thunderbird under Xvfb for the integration tests
# (sourced after harness.sh). Everything Thunderbird writes lives in $T.
#
#   tb_isolate_network "$@"  first thing in a test: re-run the test in a new
#                            network namespace that has only loopback, so
#                            nothing the test starts can reach another host
#                            (falls back to the host's namespace, with a
#                            log line, where namespaces cannot be made)
#   tb_require               skip (77) unless Thunderbird, Xvfb, xdotool and
#                            ImageMagick are installed
#   start_xvfb               a private X server; sets DISPLAY, XVFB_PID
#   tb_make_profile DIR PORT SMTP-PORT USER PASS
#                            a fresh profile (lib/tb_profile.py): one IMAP
#                            account, one SMTP server, password stored
#   start_thunderbird DIR    Thunderbird on that profile; sets TB_PID; skips
#                            the test if Thunderbird cannot run here (it
#                            exits or shows no window within TB_START_TIMEOUT)
#   tb_window                the id of Thunderbird's main window
#   tb_window_title          its title ("Inbox - ... - Mozilla Thunderbird")
#   tb_screenshot FILE       PNG of Thunderbird's main window (of the
#                            screen if it has none)
#   tb_image_is_blank FILE   true when the image is (nearly) one flat colour
#   tb_compose_and_send TO SUBJECT BODY
#                            write a message in its compose window with
#                            xdotool (thunderbird -compose needs D-Bus) and
#                            send it (Ctrl+Return); the caller checks
#                            where it arrives
#   tb_poll T CMD...         like wait_for, polling every 0.5 s (the checks
#                            start Python; Thunderbird needs the CPU)
#   stop_thunderbird         close it (SIGTERM, bounded), by pid
#
# Thunderbird is heavy for a 2-core machine: every wait has a deadline,
# TB_START_TIMEOUT (default 90 s) for the first window.

# The binary itself, not Debian's wrapper script: its pid owns the window.
if [ -z "${TB_BIN:-}" ]; then
	TB_BIN=thunderbird
	[ -x /usr/lib/thunderbird/thunderbird ] && TB_BIN=/usr/lib/thunderbird/thunderbird
fi
# Its bundled NSS: key4.db must be made with the library that will read it.
TB_NSS_DIR=${TB_NSS_DIR:-/usr/lib/thunderbird}
TB_START_TIMEOUT=${TB_START_TIMEOUT:-90}

tb_isolate_network() {
	if [ -z "${PIMAP_TB_NETNS:-}" ] && command -v unshare >/dev/null 2>&1 &&
		command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
		# exec runs no trap: remove this run's (empty) $T here; the
		# re-run makes its own.
		rm -rf "$T"
		PIMAP_TB_NETNS=1 exec unshare -n -- bash "$0" "$@"
	fi
	if [ "${PIMAP_TB_NETNS:-}" = 1 ]; then
		ip link set lo up 2>/dev/null || hard_error "cannot bring up lo in the test's network namespace"
		log "running in a network namespace with loopback only"
	else
		log "no network namespace here (unshare -n or ip missing or refused): relying on the profile's prefs alone"
	fi
}

tb_require() {
	local p
	for p in "$TB_BIN" Xvfb xdotool import identify; do
		command -v "$p" >/dev/null 2>&1 || skip "$p is not installed (Thunderbird test)"
	done
	[ -e "$TB_NSS_DIR/libnss3.so" ] || skip "no $TB_NSS_DIR/libnss3.so (Thunderbird's bundled NSS)"
}

start_xvfb() {
	local fifo=$T/xvfb.display n
	mkfifo "$fifo"
	# -displayfd: Xvfb picks a free display number and writes it to fd 3.
	Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp \
		3>"$fifo" >"$T/xvfb.log" 2>&1 </dev/null &
	XVFB_PID=$!
	track_pid "$XVFB_PID"
	add_log "$T/xvfb.log"
	n=$(timeout 20 head -n 1 "$fifo" || true)
	[ -n "$n" ] || skip "Xvfb did not start (see $T/xvfb.log)"
	export DISPLAY=":$n"
	wait_for 10 xdpyinfo_ok || skip "Xvfb on $DISPLAY does not answer"
	log "Xvfb up on $DISPLAY (pid $XVFB_PID)"
}

xdpyinfo_ok() { xdotool getdisplaygeometry >/dev/null 2>&1; }

tb_make_profile() {
	local dir=$1
	LD_LIBRARY_PATH=$TB_NSS_DIR python3 "$HARNESS_LIB/tb_profile.py" "$dir" \
		--imap-port "$2" --smtp-port "$3" --user "$4" --password "$5" --nss-dir "$TB_NSS_DIR" \
		>"$T/tb_profile.log" 2>&1 || {
		cat "$T/tb_profile.log" >&2
		skip "cannot store a password with Thunderbird's NSS (tb_profile.py)"
	}
}

tb_window() {
	xdotool search --all --onlyvisible --pid "$TB_PID" --name 'Thunderbird' 2>/dev/null | head -n 1
}

tb_window_title() {
	local w
	w=$(tb_window) && [ -n "$w" ] && xdotool getwindowname "$w" 2>/dev/null
}

start_thunderbird() {
	local profile=$1
	# MOZ_REMOTE_SETTINGS_DEVTOOLS lets services.settings.server point at
	# loopback; no D-Bus session (Thunderbird runs without one); no crash
	# reporter dialog.
	spawn "$T/thunderbird.log" env HOME="$HOME" DISPLAY="$DISPLAY" \
		MOZ_REMOTE_SETTINGS_DEVTOOLS=1 MOZ_CRASHREPORTER_DISABLE=1 MOZ_DISABLE_AUTO_SAFE_MODE=1 \
		DBUS_SESSION_BUS_ADDRESS=disabled: NO_AT_BRIDGE=1 \
		MOZ_LOG="${TB_MOZ_LOG:-}" MOZ_LOG_FILE="$T/thunderbird-moz.log" \
		"$TB_BIN" --profile "$profile" --no-remote
	TB_PID=$SPAWNED_PID
	[ "${TB_STARTS:-0}" -gt 0 ] || add_log "$T/thunderbird.log"
	TB_STARTS=$((${TB_STARTS:-0} + 1))
	local deadline
	deadline=$(deadline_in "$TB_START_TIMEOUT")
	until [ -n "$(tb_window)" ]; do
		if ! running "$TB_PID"; then
			tail -n 30 "$T/thunderbird.log" >&2
			skip "Thunderbird exited before it opened a window: it cannot run on this machine"
		fi
		if past "$deadline"; then
			tail -n 30 "$T/thunderbird.log" >&2
			skip "Thunderbird opened no window within $TB_START_TIMEOUT s: it cannot run on this machine"
		fi
		sleep 0.2
	done
	log "Thunderbird up (pid $TB_PID), window $(tb_window): $(tb_window_title)"
}

tb_screenshot() {
	local w
	w=$(tb_window)
	import -display "$DISPLAY" -window "${w:-root}" "$1" 2>>"$T/import.log"
}

# A blank capture is a single colour (stddev 0) or nearly so.
tb_image_is_blank() {
	local colours
	colours=$(identify -format '%k' "$1" 2>/dev/null) || return 0
	[ "${colours:-0}" -lt 64 ]
}

tb_poll() {
	local timeout=$1 deadline
	shift
	deadline=$(deadline_in "$timeout")
	until "$@"; do
		past "$deadline" && return 1
		sleep 0.5
	done
	return 0
}

# tb_focus_in WINDOW: the keyboard focus is WINDOW or one of its children.
tb_focus_in() {
	local f
	f=$(xdotool getwindowfocus 2>/dev/null) || return 1
	[ "$f" = "$1" ] || xdotool search --all --pid "$TB_PID" --name '' 2>/dev/null | grep -qx "$f" && [ "$f" = "$1" ]
}

tb_has_window() { [ -n "$(tb_find_window "$1")" ]; }

tb_find_window() { xdotool search --all --onlyvisible --pid "$TB_PID" --name "$1" 2>/dev/null | head -n 1; }

tb_compose_and_send() {
	local to=$1 subject=$2 body=$3 main compose
	main=$(tb_window)
	[ -n "$main" ] || fail "no Thunderbird window to compose from"
	# Ctrl+N is lost while Thunderbird is still busy with its start; ask
	# again, a bounded number of times.
	local try
	for try in 1 2 3 4 5 6; do
		xdotool windowfocus --sync "$main" 2>/dev/null || true
		xdotool key --clearmodifiers ctrl+n
		tb_poll 10 tb_has_window '^Write: ' && break
	done
	compose=$(tb_find_window '^Write: ')
	if [ -z "$compose" ]; then
		tb_screenshot "$T/no-compose.png" || true
		fail "Thunderbird opened no compose window (screen in $T/no-compose.png)"
	fi
	xdotool windowfocus --sync "$compose" 2>/dev/null || true
	# The To field has the focus; Tab twice passes the address pill and
	# the Cc/Bcc buttons to the subject, one more to the body.
	tb_poll 10 tb_focus_in "$compose" || log "warning: the compose window does not report the focus"
	xdotool type --delay 20 "$to"
	xdotool key Return
	xdotool key --clearmodifiers alt+s
	xdotool type --delay 20 "$subject"
	xdotool key Tab
	xdotool type --delay 20 "$body"
	xdotool key --clearmodifiers ctrl+Return
	# Whether it was sent, the caller checks where the message must arrive
	# (Thunderbird 153 may keep the compose window mapped for a while).
}

stop_thunderbird() {
	[ -n "${TB_PID:-}" ] || return 0
	stop_pid "$TB_PID"
	TB_PID=""
}
