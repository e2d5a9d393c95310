#!/bin/bash
# t_gw_session.sh - P-IMAP sessions of pimap-gateway (docs/PROTOCOL.md section 2):
#  (a) first login: only "* SESSIONID"; drop the connection in SELECTED state,
#      5 deliveries, login again: SESSION SELECTED, FOLDER INBOX, exactly
#      "* 4 EXISTS" .. "* 8 EXISTS", the same SESSIONID, no RESYNC; FETCH
#      works at once and the client's view equals the store;
#  (b) the same with flag changes, an expunge and deliveries by another
#      client during the outage: the events apply in order and leave the
#      view equal to the store;
#  (c) LOGOUT ends the session (next login: no SESSION, a new SESSIONID);
#  (d) resume in AUTHENTICATED state;
#  (e) a folder left by SELECT: selecting it again describes the saved view
#      (EXISTS, UIDNEXT) and its pending events follow before the tagged OK;
#  (f) more pending events than limits.max_queued_events: RESYNC, and a
#      resync fetch makes the view equal the store; exactly the limit: events;
#  (g) a session detached longer than session.lifetime: the next login gets
#      RESYNC and a new SESSIONID;
#  (h) while detached, the other subscribed folders are watched (NOTIFY):
#      events under the limit come when the folder is selected again, over
#      the limit the folder's view is dropped and SELECT gives the full state.
# The protocol logic is in lib/gw_session.py (one section per user).
#
# By hand: tests/integration/t_gw_session.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob carol dave erin frank"
start_dovecot
start_gateway

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS GW_LOG
status=0
python3 "$HARNESS_LIB/gw_session.py" a b c d e || status=1
gateway_alive || fail "the gateway died during sections a-e"
stop_gateway

start_gateway --set limits.max_queued_events=3
python3 "$HARNESS_LIB/gw_session.py" f h || status=1
gateway_alive || fail "the gateway died during sections f and h"
stop_gateway

start_gateway --set session.lifetime=2s
python3 "$HARNESS_LIB/gw_session.py" g || status=1
gateway_alive || fail "the gateway died during section g"
stop_gateway

[ "$status" = 0 ] || fail "failed sections: see the messages above"
pass
