#!/bin/bash
# t_gw_multi.sh - several connections per device, and isolation between
# devices and users (docs/PROTOCOL.md sections 2 and 3), with
# limits.max_connections_per_device=5:
#  - five simultaneous connections of alice#Pdev1 (as Thunderbird opens),
#    one folder each, all working (FETCH, NOOP, IDLE); a delivery to INBOX
#    is pushed to the connection idling on INBOX only; preferences are
#    shared by the five; a sixth connection is refused with NO naming the
#    limit; after the five drop, logins take the parked connections back,
#    oldest first;
#  - a preference set on alice#Pdev1 is not seen on alice#Pdev2 nor on
#    bob#Pdev1, and bob#Pdev1 never sees alice's session;
#  - with limits.max_sessions_per_user=2 and limits.max_devices_per_user=2,
#    a third live session, then a third device, is refused naming its limit;
#  - with limits.max_devices_per_user=2 and session.lifetime=2s, a new device
#    takes the place of one unused for a lifetime, never of a live one.
# The protocol logic is in lib/gw_multi.py.
#
# By hand: tests/integration/t_gw_multi.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob carol dave"
start_dovecot
start_gateway --set limits.max_connections_per_device=5

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS GW_LOG
status=0
python3 "$HARNESS_LIB/gw_multi.py" five isolation || status=1
gateway_alive || fail "the gateway died"
stop_gateway

start_gateway --set limits.max_sessions_per_user=2 --set limits.max_devices_per_user=2
python3 "$HARNESS_LIB/gw_multi.py" peruser || status=1
gateway_alive || fail "the gateway died in section peruser"
stop_gateway

start_gateway --set limits.max_devices_per_user=2 --set session.lifetime=2s
python3 "$HARNESS_LIB/gw_multi.py" evict || status=1
gateway_alive || fail "the gateway died in section evict"
stop_gateway
[ "$status" = 0 ] || fail "failed sections: see the messages above"
pass
