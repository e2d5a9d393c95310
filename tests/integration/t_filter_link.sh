#!/bin/bash
# t_filter_link.sh - pimap-proxy with a filter file (pimap-filters(5)) in
# front of pimap-gateway, and the file's errors.
#
#  1. filter files with an error (unknown key, wrong type, bad date, a
#     mutable criterion, YAML syntax) stop --check-config and the start with
#     "file:line:column: message" saying what is wrong;
#  2. alice's INBOX holds 60 messages over 90 days, Junk and Trash a few;
#     the file says: INBOX the last 7 days, Junk and Trash excluded, new
#     mail pushed only from a VIP. Through the proxy a scripted client sees
#     exactly the store's 7-day messages (SEARCH ALL, STATUS, FETCH 1:*
#     agree), Junk and Trash empty; the gateway holds the file's rules for
#     the proxy's device (XFILTER ... GET);
#  3. in IDLE through the proxy only VIP mail is pushed; the rest comes with
#     the next command;
#  4. mutt through the proxy shows the 7-day messages only;
#  5. SIGHUP with a changed file (30 days): the next session has the new
#     view; SIGHUP with a broken file: the error is logged and the 30-day
#     rules stay.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
require_gateway

# ---- 1. errors ------------------------------------------------------------
F=$T/bad.yaml
bad() {
	# bad WANT YAML: --check-config and a start both fail naming the place
	printf '%b' "$2" >"$F"
	local out rc=0
	out=$("$PROXY_BIN" --check-config --filters "$F" --upstream imaps://127.0.0.1:1 2>&1) || rc=$?
	[ "$rc" -ne 0 ] || fail "--check-config accepted: $2"
	case $out in *"$F:$1"*) ;; *) fail "--check-config: want '$F:$1' in: $out" ;; esac
	rc=0
	out=$(timeout 10 "$PROXY_BIN" --foreground --filters "$F" --upstream imaps://127.0.0.1:1 \
		--listen 127.0.0.1:0 --listen-tls none --state-dir "$T/ps" 2>&1) || rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "the proxy started with: $2"
	case $out in *"$F:$1"*) ;; *) fail "start: want '$F:$1' in: $out" ;; esac
	log "ok: $F:$1"
}
bad "1:1: unknown key 'colour' in the filter file" 'colour: blue\n'
bad "4:7: unknown key 'dayz' in folders.INBOX.view" 'folders:\n  INBOX:\n    view:\n      dayz: 7\n'
bad "3:18: folders.INBOX.view.days: expected a number of days (0 to 36500), got a sequence" 'folders:\n  INBOX:\n    view: {days: [7]}\n'
bad "3:19: folders.INBOX.view.since: '2024-13-01' is not a date (write 2024-03-01)" 'folders:\n  INBOX:\n    view: {since: 2024-13-01}\n'
bad "3:12: folders.INBOX.view: 'flagged' depends on flags, which change" 'folders:\n  INBOX:\n    view: {flagged: true}\n'
bad "3:13: folders.INBOX.notify: UNSEEN depends on flags" 'folders:\n  INBOX:\n    notify: {search: UNSEEN}\n'
bad "3:1: YAML syntax error" 'folders:\n  INBOX: [\n'
out=$("$PROXY_BIN" --check-config --filters "$top_srcdir/filters/mobile.yaml" --upstream imaps://127.0.0.1:1 2>&1) ||
	fail "the shipped mobile.yaml is refused: $out"
out=$("$PROXY_BIN" --check-config --filters "$top_srcdir/filters/metered.yaml" --upstream imaps://127.0.0.1:1 2>&1) ||
	fail "the shipped metered.yaml is refused: $out"
log "ok: the shipped filter files pass --check-config"

# ---- the rest: Dovecot, gateway, proxy ---------------------------------------
gen_certs
start_dovecot
start_gateway
. "$HARNESS_LIB/gw_tests.sh"
gw_env

python3 - <<'PY' || hard_error "cannot fill the mailboxes"
import json, os, sys
from filter_lib import *
s = store_client("alice")
populate(s, "INBOX", 60, 90, seed=11)
for box, n in (("Junk", 3), ("Trash", 2)):
    s.ok("CREATE %s" % box)
    for i in range(n):
        append_dated(s, box, dated_message(500 + i, "spam@example.net", 900, 1), 1)
s.ok("LOGOUT")
PY

FILTERS=$T/filters.yaml
cat >"$FILTERS" <<'EOF'
groups:
  vip: &vip [boss@example.com, family@example.org]
exclude: [Junk, Trash]
folders:
  INBOX:
    view: {days: 7}
    notify: {from: *vip}
EOF
P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" \
	--device-id filterdev -v --filters "$FILTERS"
export PROXY_PORT=$P PROXY_LOG PROXY_PID

py_part "through the proxy" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient, View
import time



client = proxy_client


@step("2. a 7-day view, Junk and Trash empty; the gateway holds the file's rules")
def _():
    s = store_client("alice")
    c = client()
    v = c.select_view("INBOX")
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(7))
    check(0 < len(ref) < 15, "the store has %d messages of the last 7 days" % len(ref))
    probs = check_view(c, v, ref, "7-day view through the proxy")
    check(not probs, "the client sees exactly them; SEARCH/STATUS/FETCH agree %s" % probs)
    for box in ("Junk", "Trash"):
        c.unselect_view()
        resps = c.ok("SELECT %s" % box)
        check(any(x.first == "* 0 EXISTS" for x in resps), "%s is empty for the client: %r" % (box, firsts(resps)))
    c.ok("LOGOUT")
    g = PimapClient(HOST, int(E["GW_PORT"]), tls=True, cafile=CA, timeout=20)
    g.connect()
    check(g.pimap_login("alice", "filterdev", PASS).status == "OK", "login to the gateway as the proxy's device")
    got = firsts(g.command("XFILTER ALL B GET")[1])
    for want in ("* XFILTER INBOX V DAYSBEFORETODAY 7", "* XFILTER Junk V NONE", "* XFILTER Trash V NONE",
                 '* XFILTER INBOX N (OR (FROM "boss@example.com") (FROM "family@example.org"))'):
        check(want in got, "the gateway holds %r: %r" % (want, got))
    g.ok("LOGOUT")
    s.logout()


@step("2b. STATUS of INBOX from another folder counts the view (the proxy's STATUS cache included)")
def _():
    s = store_client("alice")
    s.ok("SUBSCRIBE INBOX")
    c = client()
    c.ok("SELECT Junk")
    time.sleep(1.0)  # the gateway's STATUS pushes (PIMAP_FOLDER_STATUS) reach the proxy's cache
    n = len(reference(s, "INBOX", "SINCE %s" % imap_date(7)))
    for i in range(2):
        got = [x.first for x in c.ok("STATUS INBOX (MESSAGES)") if x.first.startswith("* STATUS")]
        check(got == ["* STATUS INBOX (MESSAGES %d)" % n], "STATUS INBOX (%d): %r (want MESSAGES %d)" % (i + 1, got, n))
    c.ok("LOGOUT")
    s.ok("UNSUBSCRIBE INBOX")
    s.logout()


@step("3. in IDLE only VIP mail is pushed")
def _():
    c = client()
    v = c.select_view("INBOX")
    n = len(v)
    tag = c.idle_start()
    deliver(LMTP, "alice", make_message("a newsletter", sender="news@lists.example.net"))
    got = quiet(c, 2.5)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in got), "non-VIP mail is not pushed: %r" % firsts(got))
    deliver(LMTP, "alice", make_message("from the boss", sender="boss@example.com"))
    r = c.wait_untagged(r"^\* \d+ EXISTS$", timeout=15)
    check(r.first == "* %d EXISTS" % (n + 2), "VIP mail is pushed (with the one before it): %r" % r.first)
    c.idle_done(tag)
    c.ok("LOGOUT")


run_steps()
PYEOF

# ---- 4. mutt -----------------------------------------------------------------
. "$HARNESS_LIB/filter_mutt.sh"
mutt_sees_7_days "$P"

# ---- 5. reload ---------------------------------------------------------------
sed -i 's/days: 7/days: 30/' "$FILTERS"
kill -HUP "$PROXY_PID"
wait_log "$PROXY_LOG" "from $FILTERS" 10 || true
py_part "after a reload" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient


@step("5a. SIGHUP with a 30-day file: the next session has the 30-day view")
def _():
    s = store_client("alice")
    c = proxy_client()
    v = c.select_view("INBOX")
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(30))
    probs = check_view(c, v, ref, "30-day view")
    check(not probs, "%d messages, SEARCH/STATUS/FETCH agree %s" % (len(ref), probs))
    c.ok("LOGOUT")
    s.logout()


run_steps()
PYEOF
printf 'folders:\n  INBOX:\n    view: {days: soon}\n' >"$FILTERS"
kill -HUP "$PROXY_PID"
wait_log "$PROXY_LOG" "keeping the previous filters" 10 || fail "a broken file on SIGHUP is not reported"
assert_contains "$PROXY_LOG" "$FILTERS:3:18: folders.INBOX.view.days: expected a number of days (0 to 36500), got soon"
py_part "after a broken reload" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient


@step("5b. SIGHUP with a broken file: the 30-day rules stay")
def _():
    s = store_client("alice")
    c = proxy_client()
    v = c.select_view("INBOX")
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(30))
    check(v.uids() == ref, "still the 30-day view: %d messages" % len(v))
    c.ok("LOGOUT")
    s.logout()


run_steps()
PYEOF
proxy_alive || fail "the proxy died"
gw_stop
gw_finish
