#!/bin/bash
# t_gw_nocondstore.sh - pimap-gateway in front of a store without CONDSTORE
# or ESEARCH (docs/PROTOCOL.md section 2: the saved views then keep every
# message's flags, and resume compares them, a UID/FLAGS comparison):
#  - Dovecot is told to advertise a capability list without CONDSTORE,
#    QRESYNC and ESEARCH (checked through the gateway);
#  - the session scenarios of t_gw_session.sh (a) resume with new mail,
#    (b) flag changes, expunges and new mail during the outage, and (e) a
#    return to another folder give the same events as with CONDSTORE;
#  - a detached session resumes after a SIGTERM restart without RESYNC.
#
# By hand: tests/integration/t_gw_nocondstore.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob carol dave erin frank"
DOVECOT_EXTRA_CONF="imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 LITERAL+ MOVE SPECIAL-USE"
start_dovecot
start_gateway

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS GW_LOG GW_PORT
python3 - <<'PYEOF' || fail "the store still advertises CONDSTORE or ESEARCH through the gateway"
import os, imapc
c = imapc.Client(port=int(os.environ["GW_PORT"]), tls=True, cafile=os.environ["CA"])
c.connect()
caps = " ".join(r.first for r in c.ok('LOGIN "carol#Pcaps" ' + os.environ["DOVECOT_PASS"])).upper()
print("capabilities after login:", caps)
assert "CONDSTORE" not in caps and "ESEARCH" not in caps and "QRESYNC" not in caps
c.ok("LOGOUT")
PYEOF
log "ok: no CONDSTORE, QRESYNC or ESEARCH after login"

status=0
python3 "$HARNESS_LIB/gw_session.py" a b e || status=1
gateway_alive || fail "the gateway died during sections a, b and e"

# A detached session across a SIGTERM restart: the saved flags are the reference.
GWR="$HARNESS_LIB/gw_restart.py"
deliver dave "nocondstore: dave 1"
python3 "$GWR" detach dave || status=1
deliver dave "nocondstore: dave 2"
deliver dave "nocondstore: dave 3"
stop_gateway
start_gateway
python3 "$GWR" resume dave --events 2 || status=1
grep -q 'RESYNC' "$GW_LOG" && { grep 'RESYNC' "$GW_LOG" >&2; status=1; log "FAIL: the gateway logged a RESYNC"; }
stop_gateway

[ "$status" = 0 ] || fail "failed parts: see the messages above"
pass
