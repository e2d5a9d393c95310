#!/bin/bash
# t_mbsync.sh - stock mbsync (Debian's isync) through pimap-proxy and
# pimap-gateway (issue 8):
#  (a) a 2,000-message account (three folders, one nested; realistic
#      messages with attachments; a mix of \Seen \Answered \Flagged \Draft
#      \Deleted) is synced twice into empty Maildirs: directly from Dovecot,
#      and through the chain (mbsync --TLS--> pimap-proxy --P-IMAP-->
#      pimap-gateway --> Dovecot). Both Maildirs must hold the same
#      messages, byte for byte, with the same flags, in the same folders
#      (file names differ: they carry mbsync's UIDs and times);
#  (b) then the store changes (new mail, flags changed, messages
#      expunged, a flag set in the chain's Maildir and pushed back) and
#      both sync again: still identical, and the store has the pushed flag;
#  (v) with a view set (filters/mobile.yaml: INBOX's last 14 days), the
#      Maildir synced through the proxy holds exactly the view.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mbsync
require_proxy
require_gateway
gen_certs
DOVECOT_USERS="alice carol" start_dovecot

MAILDIRS="$HARNESS_LIB/maildirs.py"
N=$(python3 "$MAILDIRS" populate "$DOVECOT_HOME/alice/Maildir" --folders INBOX=1700,Work=200,Archive.2024=100) ||
	hard_error "cannot write the test account"
chown -R mail:mail "$DOVECOT_HOME/alice"
[ "$N" = 2000 ] || hard_error "populate wrote $N messages, not 2000"
start_gateway

P=$(free_port)
PT=$(free_port)
# mbsync talks TLS to the proxy's implicit-TLS listener, with a certificate
# of the test CA (the proxy's generated one would need trusting first).
start_proxy --listen "127.0.0.1:$P" --listen-tls "127.0.0.1:$PT" --cert "$SERVER_CERT" --key "$SERVER_KEY" \
	--upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" --device-id mbsync1

# mbsync_conf NAME PORT USER: $T/NAME.mbsyncrc syncing USER's account at
# localhost:PORT (implicit TLS, verified with the test CA; mbsync checks
# DNS names only, not IP addresses) into $T/md-NAME,
# every folder, both ways, expunging nothing (so the messages marked
# \Deleted stay, and one deleted at the store is marked \Deleted here).
mbsync_conf() {
	local name=$1 port=$2 user=$3
	mkdir -p "$T/md-$name"
	cat >"$T/$name.mbsyncrc" <<-EOF
		IMAPAccount $name
		Host localhost
		Port $port
		User $user
		Pass $DOVECOT_PASS
		SSLType IMAPS
		CertificateFile $CA
		Timeout 60

		IMAPStore $name-far
		Account $name

		MaildirStore $name-near
		Path $T/md-$name/
		Inbox $T/md-$name/INBOX
		SubFolders Verbatim

		Channel $name
		Far :$name-far:
		Near :$name-near:
		Patterns *
		Create Near
		Sync All
		Expunge None
		SyncState *
	EOF
}

# run_mbsync NAME: one full sync, bounded; its output in $T/mbsync-NAME.N.log.
MBSYNC_RUNS=0
run_mbsync() {
	local name=$1 rc=0 t0=$EPOCHREALTIME
	MBSYNC_RUNS=$((MBSYNC_RUNS + 1))
	local out=$T/mbsync-$name.$MBSYNC_RUNS.log
	add_log "$out"
	timeout 300 mbsync -c "$T/$name.mbsyncrc" -a >"$out" 2>&1 || rc=$?
	[ "$rc" = 0 ] || { tail -n 20 "$out" >&2; fail "mbsync ($name) exited with status $rc"; }
	log "mbsync $name: synced in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"
}

compare_maildirs() {
	python3 "$MAILDIRS" compare "$T/md-direct" "$T/md-chain" >"$T/compare.out" 2>&1 || {
		cat "$T/compare.out" >&2
		fail "$1: the Maildir synced through pimap differs from the direct one"
	}
	sed 's/^/    /' "$T/compare.out" >&2
	log "ok: $1: both Maildirs hold the same messages with the same flags"
}

mbsync_conf direct "$DOVECOT_IMAPS" alice
mbsync_conf chain "$PT" alice

# --- (a) the first sync ----------------------------------------------------
run_mbsync direct
run_mbsync chain
compare_maildirs "first sync"
TOTAL=$(python3 "$MAILDIRS" summary "$T/md-chain" | awk '{n += $2} END {print n}')
[ "$TOTAL" = 2000 ] || fail "the chain's Maildir holds $TOTAL messages, not 2000"
FOLDERS=$(python3 "$MAILDIRS" summary "$T/md-chain" | wc -l)
[ "$FOLDERS" = 3 ] || fail "the chain's Maildir has $FOLDERS folders, not 3"
log "ok: 2000 messages in 3 folders through the chain"

# --- (b) changes on both sides, a second sync ------------------------------
export DOVECOT_IMAPS DOVECOT_LMTP CA DOVECOT_PASS
for i in 1 2 3; do deliver alice "mbsync: new mail $i" "New since the first sync ($i)."; done
python3 - <<'PY' || hard_error "cannot change alice's mailbox at the store"
import os
from pimapc import StoreClient
st = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAPS"]), "alice", os.environ["DOVECOT_PASS"],
                 cafile=os.environ["CA"])
st.select("INBOX")
st.store_uid("10:20", "+FLAGS.SILENT", ["\\Flagged"])
st.store_uid("30:35", "-FLAGS.SILENT", ["\\Seen"])
st.expunge_uids([40, 41, 42])
st.select("Work")
st.store_uid("1:5", "+FLAGS.SILENT", ["\\Answered"])
st.logout()
PY
# A flag set by the user in the chain's Maildir goes back to the store: mark
# the first unflagged message of Work \Flagged there (Maildir letter F).
PUSHED=$(python3 - "$T/md-chain" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], "Work", "cur")
for name in sorted(os.listdir(d)):
    base, _, flags = name.partition(":2,")
    if "F" not in flags and "T" not in flags:
        new = base + ":2," + "".join(sorted(flags + "F"))
        os.rename(os.path.join(d, name), os.path.join(d, new))
        with open(os.path.join(d, new), "rb") as f:
            for line in f:
                if line.lower().startswith(b"message-id:"):
                    print(line.split(b":", 1)[1].strip().decode())
                    break
        break
PY
)
[ -n "$PUSHED" ] || hard_error "no message to flag in the chain's Work folder"
run_mbsync chain
run_mbsync direct
compare_maildirs "second sync"
python3 - "$PUSHED" <<'PY' || fail "the flag set in the chain's Maildir did not reach the store"
import os, sys
from pimapc import StoreClient
st = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAPS"]), "alice", os.environ["DOVECOT_PASS"],
                 cafile=os.environ["CA"])
st.ok("EXAMINE Work")
r = st.ok('SEARCH FLAGGED HEADER Message-ID "%s"' % sys.argv[1])
st.logout()
sys.exit(0 if any(x.first.startswith("* SEARCH ") and len(x.first.split()) > 2 for x in r) else 1)
PY
log "ok: the flag set in the chain's Maildir reached the store"
TOTAL=$(python3 "$MAILDIRS" summary "$T/md-chain" | awk '{n += $2} END {print n}')
[ "$TOTAL" = 2003 ] || fail "after the second sync the chain's Maildir holds $TOTAL messages, not 2003"
log "ok: 2003 messages after the second sync (3 expunged at the store are marked deleted, not removed)"

# --- (v) with a view set, the synced Maildir holds exactly the view ------------------
# carol's INBOX: two messages that arrived now, two 40 days ago
# (lib/viewcheck.py; the check insists on a strict, non-empty subset). The
# expected view is what another client
# of the same device reads through the proxy, so the check does not repeat
# the filter's logic.
mbsync_view_part() {
	local vp
	python3 "$HARNESS_LIB/viewcheck.py" deliver-mix carol ||
		hard_error "cannot deliver carol's messages"
	vp=$(free_port)
	PROXY_LOG=$T/proxy-view.log
	start_proxy --listen-tls "127.0.0.1:$vp" --listen none --cert "$SERVER_CERT" --key "$SERVER_KEY" \
		--state-dir "$T/proxy-view-state" --upstream "pimaps://127.0.0.1:$GW_PORT" --ca-file "$CA" \
		--device-id mbsync-view \
		$MBSYNC_VIEW_PROXY_ARGS
	mbsync_conf view "$vp" carol
	run_mbsync view
	python3 "$HARNESS_LIB/viewcheck.py" compare carol "$vp" --tls --wait 0 \
		--local "$T/md-view/INBOX/cur/*" --local "$T/md-view/INBOX/new/*" ||
		fail "(v) the Maildir synced through the proxy is not exactly the view"
	log "ok: (v) with a view set, the synced Maildir holds exactly the view"
}
# The option that turns the filter file on (pimap-proxy --check-config must
# take it: a proxy without filters reports the part as not run).
MBSYNC_VIEW_PROXY_ARGS=${MBSYNC_VIEW_PROXY_ARGS:---filters $top_srcdir/filters/mobile.yaml}
# shellcheck disable=SC2086
if [ -f "$top_srcdir/filters/mobile.yaml" ] && "$PROXY_BIN" --check-config $MBSYNC_VIEW_PROXY_ARGS >/dev/null 2>&1; then
	mbsync_view_part
else
	log "part (v) not run: needs filters/mobile.yaml and a proxy that takes: $MBSYNC_VIEW_PROXY_ARGS "
fi

proxy_alive || fail "the proxy died"
gateway_alive || fail "the gateway died"
pass
