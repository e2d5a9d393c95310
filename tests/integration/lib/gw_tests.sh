# shellcheck shell=bash
# gw_tests.sh - shell helpers shared by t_gw_auth, t_gw_prefs, t_gw_relay and
# t_gw_bad_input (sourced after harness.sh); their Python helpers are in
# gwt.py, which the harness puts on PYTHONPATH.

require dovecot certtool
require_gateway

# gw_check_reports: fail now on any sanitizer report the gateway wrote so far
# (the harness checks again at exit; leak reports are written at exit, so
# this runs after each stop_gateway).
gw_check_reports() {
	local files
	if files=$(gateway_sanitizer_reports); then
		grep -h -E -A5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $files | head -40 >&2
		fail "sanitizer report in $(echo $files)"
	fi
	return 0
}

# gw_env: export what the Python parts need.
gw_env() {
	export GW_PORT GW_STARTTLS_PORT GW_PID GW_LOG GW_STATE CA T \
		DOVECOT_IMAP DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_LOG DOVECOT_PASS
}


# py_part NAME: run the Python script on stdin; a failure is remembered
# (gw_finish fails the test) and the test goes on with its next part.
GW_FAILED_PARTS=()
py_part() {
	if ! python3 -; then
		GW_FAILED_PARTS+=("$1")
		log "part '$1' FAILED (details above)"
	fi
	return 0
}

# gw_finish: pass, or fail naming the parts that failed.
gw_finish() {
	[ ${#GW_FAILED_PARTS[@]} -eq 0 ] || fail "failed parts: ${GW_FAILED_PARTS[*]}"
	pass
}

# gw_stop: stop the gateway (SIGTERM; the harness fails the test if it does
# not exit cleanly) and check for sanitizer reports; if it had died already,
# record that and go on, so that the test's other parts still run.
gw_stop() {
	if gateway_alive; then
		stop_gateway
	else
		local rc=0
		wait "$GW_PID" 2>/dev/null || rc=$?
		GW_FAILED_PARTS+=("gateway died (exit status $rc)")
		log "the gateway $GW_PID died (exit status $rc)"
		kill_gateway
	fi
	gw_check_reports
}
