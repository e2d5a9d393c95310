#!/bin/bash
# t_https_mutt.sh - stock mutt through pimap-proxy and pimap-gateway over the
# HTTPS binding, driven in tmux:
#
#  persistent mode (one chunked POST per link):
#   - mutt opens INBOX, reads a message, flags one; the store shows it;
#   - new mail appears by itself (mutt's IDLE, pushed in the open response);
#
#  in-response mode with UDP wake-ups (outband.listen):
#   - mutt opens INBOX; the proxy set PIMAP_OUTBAND_CHANNEL UDP, FORMAT
#     EXTENDED and its address at the gateway and got the device key;
#   - while mutt idles, the proxy holds no TCP connection to the gateway
#     (checked in /proc/PID/fd against /proc/net/tcp);
#   - new mail is delivered: the gateway sends a wake-up, the proxy polls and
#     mutt (in IDLE) shows the message within 2 s of the delivery;
#   - a forged datagram (wrong key), a garbage one and a replay of a captured
#     genuine one are ignored: logged as such, and no request follows them;
#   - mutt sends a message through the proxy's SMTP listener: XDELIVER on a
#     plain session in in-response mode (Dovecot's submission service
#     behind, lib/submission.sh; skipped without dovecot-submissiond); it
#     arrives, and no TCP connection to the gateway stays open afterwards;
#   - mutt quits cleanly; no error on its screen, it never reconnected.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
require_gateway
gen_certs
. "$HARNESS_LIB/mutt.sh"
start_store_for_mutt alice rcpt
HTTPS_PORT=$(free_port)
start_gateway --set "listen.https=127.0.0.1:$HTTPS_PORT" --set outband.min_interval=0 --trace "${GW_SEND_ARGS[@]}"
wait_port 127.0.0.1 "$HTTPS_PORT" 10 "$GW_PID" || fail "no HTTPS listener"
deliver alice "Https subject one"
deliver alice "Https subject two"

. "$HARNESS_LIB/https.sh"
CRYPTO_PY=$(crypto_python) || hard_error "no python3 with the cryptography module (Debian: python3-cryptography)"


# proxy_gateway_sockets: the proxy's TCP connections to the gateway's HTTPS port.
proxy_gateway_sockets() {
	local inodes port_hex
	port_hex=$(printf '%04X' "$HTTPS_PORT")
	inodes=$(ls -l /proc/"$PROXY_PID"/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\].*/\1/p' | sort -u)
	[ -n "$inodes" ] || { echo 0; return; }
	# column 3 is the remote address, column 10 the inode
	awk -v p=":$port_hex" -v ins=" $(echo $inodes) " 'NR > 1 && substr($3, length($3) - 4) == p && index(ins, " " $10 " ") { n++ } END { print n + 0 }' \
		/proc/net/tcp /proc/net/tcp6
}

# --- persistent mode --------------------------------------------------------------
P=$(free_port)
PROXY_LOG=$T/proxy-persistent.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "https://localhost:$HTTPS_PORT/pimap" --ca-file "$CA" --device-id https-persist -v
write_muttrc alice "$P" delete=yes resolve=no
start_mutt
expect_screen 30 "persistent: mutt shows INBOX over HTTPS" "[Https subject one]" "[Https subject two]"
grep -q "persistent mode" "$PROXY_LOG" || fail "the proxy does not say it uses persistent mode"
# The control for the in-response check below: a persistent link is a TCP connection the check sees.
[ "$(proxy_gateway_sockets)" -ge 1 ] || fail "persistent: no TCP connection to the gateway seen in /proc"
tmx send-keys -t mutt Enter
expect_screen 15 "persistent: mutt opens message one" "Subject: Https subject one"
tmx send-keys -t mutt i
tmx send-keys -t mutt j F '$'
wait_for 15 store_has "'\\\\Flagged' in dict(t)[2]" || fail "persistent: flag not at the store"
deliver alice "Https pushed persistent"
expect_screen 20 "persistent: new mail appears by itself (IDLE over the open response)" "[Https pushed persistent]"
grep -q "persistent session started" "$GW_LOG" || fail "the gateway saw no persistent session"
tmx send-keys -t mutt q
expect_screen 15 "persistent: mutt quit" "MUTT-EXITED"
screen_has "MUTT-EXITED 0" || { show_screen; fail "mutt exited with an error"; }
stop_mutt_tmux
kill -TERM "$PROXY_PID"; wait_gone "$PROXY_PID" 15 || fail "proxy did not stop"
untrack_pid "$PROXY_PID"
log "ok: persistent mode"

# --- in-response mode with UDP wake-ups -------------------------------------------------
P=$(free_port)
SP=$(free_port)
WAKE_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROXY_LOG=$T/proxy-inresponse.log
start_proxy --listen "127.0.0.1:$P" --listen-tls none \
	--upstream "https://localhost:$HTTPS_PORT/pimap" --ca-file "$CA" --device-id https-wake -v --trace \
	--set upstream.mode=in-response --set "outband.listen=127.0.0.1:$WAKE_PORT" \
	--set link.heartbeat=30s --smtp-listen "127.0.0.1:$SP" --smtp-listen-tls none
wait_log "$PROXY_LOG" "listening for wake-ups" 10 || fail "no wake-up listener"
rm -f "$T/muttrc"
mutt_smtp_settings alice "$SP"
write_muttrc alice "$P" delete=yes resolve=no "${MUTT_SMTP[@]}"
start_mutt
expect_screen 30 "in-response: mutt shows INBOX" "[Https subject one]" "[Https pushed persistent]"
wait_log "$PROXY_LOG" "got the device's out-band key" 10 || fail "the proxy did not get the key"
python3 - "$GW_STATE" <<'PY' || fail "the device's out-band preferences are not set at the gateway"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/gateway.db")
prefs = dict(db.execute("SELECT name, value FROM prefs WHERE device = 'https-wake'").fetchall())
ok = prefs.get("PIMAP_OUTBAND_CHANNEL") == "UDP" and prefs.get("PIMAP_OUTBAND_FORMAT") == "EXTENDED" \
    and prefs.get("PIMAP_OUTBAND_ADDRESS", "").startswith("127.0.0.1:")
print(prefs if not ok else "", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
log "ok: in-response: out-band preferences set, key received"

# mutt idles in INBOX: the proxy must have no connection to the gateway open.
wait_for 15 sh -c "grep -q 'C> [^ ]* IDLE' '$PROXY_LOG' 2>/dev/null || grep -Eq 'IDLE' '$PROXY_LOG'" || true
wait_for 15 test "$(proxy_gateway_sockets)" = 0 ||
	fail "in-response: the proxy keeps $(proxy_gateway_sockets) TCP connection(s) to the gateway while idle"
log "ok: in-response: no TCP connection to the gateway while mutt idles"

# New mail: wake-up, poll, IDLE push within 2 s.
WAKES=$(grep -c "wake-up from" "$PROXY_LOG" || true)
deliver alice "Https woken up"
t0=$EPOCHREALTIME # the message is in the store (LMTP said so)
expect_screen 5 "in-response: new mail appears via the UDP wake-up" "[Https woken up]"
t1=$EPOCHREALTIME
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
awk -v e="$elapsed" 'BEGIN{exit !(e < 2.0)}' || fail "in-response: mail took ${elapsed}s to reach mutt (want < 2 s)"
[ "$(grep -c "wake-up from .*: NEW_MESSAGE" "$PROXY_LOG")" -gt "$WAKES" ] || fail "no wake-up logged by the proxy"
log "ok: in-response: delivery to mutt's screen in ${elapsed}s through a UDP wake-up"
wait_for 15 test "$(proxy_gateway_sockets)" = 0 || fail "in-response: connection left open after the wake-up"

# Forged, garbage and replayed datagrams are ignored.
python3 - "$WAKE_PORT" "$T" <<'PY' || fail "cannot send test datagrams"
import base64, os, socket, sys
port, t = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
marker = b"_%$P-IMAP$%_"
# a well-formed datagram under a key that is not the device's
blob = bytes([1]) + (2**62).to_bytes(8, "big") + os.urandom(4) + os.urandom(40)
s.sendto(marker + b" " + base64.b64encode(blob), ("127.0.0.1", port))
s.sendto(b"hello, proxy", ("127.0.0.1", port))
PY
wait_log "$PROXY_LOG" "ignored: authentication failed" 5 || fail "forged datagram not reported as ignored"
wait_log "$PROXY_LOG" "ignored: not an EXTENDED notification" 5 || fail "garbage datagram not reported as ignored"
# A genuine datagram (the device's key from the gateway's database, a fresh sequence number) is
# accepted once; the same bytes again are a replay. (The age rule, which guards a restarted
# proxy, is in the unit tests: here any older datagram is already a replay.)
"$CRYPTO_PY" - "$WAKE_PORT" "$GW_STATE" "$T/genuine.dgram" <<'PY' || fail "cannot build a genuine datagram"
import base64, os, socket, sqlite3, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
port, state, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
db = sqlite3.connect(state + "/gateway.db")
(k,) = db.execute("SELECT value FROM prefs WHERE device = 'https-wake' AND name = 'x-pimap-outband-key'").fetchone()
key = base64.b64decode(k)
marker = b"_%$P-IMAP$%_"
def dgram(seq):
    hdr = bytes([1]) + seq.to_bytes(8, "big")
    salt = os.urandom(4)
    ct = AESGCM(key).encrypt(hdr[1:] + salt, b"%d alice#Phttps-wake SYNC" % seq, marker + hdr)
    return marker + b" " + base64.b64encode(hdr + salt + ct)
now = int(time.time() * 1e6)
d = dgram(now)
open(out, "wb").write(d)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(d, ("127.0.0.1", port))
time.sleep(0.3)
s.sendto(d, ("127.0.0.1", port))
PY
wait_log "$PROXY_LOG" ": SYNC" 5 || fail "a genuine datagram made with the device key was not accepted"
wait_log "$PROXY_LOG" "ignored: replayed" 5 || fail "a replayed datagram was not refused"
log "ok: forged and garbage datagrams ignored"

if [ $SEND = 1 ]; then
	mutt_send in-response rcpt@mail.test "Sent by mutt, in-response"
	sent_arrived() { grep -rqF "Subject: Sent by mutt, in-response" "$DOVECOT_HOME/rcpt/Maildir/new" "$DOVECOT_HOME/rcpt/Maildir/cur" 2>/dev/null; }
	wait_for 30 sent_arrived || { show_screen; fail "in-response: the message mutt sent did not arrive"; }
	grep -q "XDELIVER" "$PROXY_LOG" || fail "in-response: no XDELIVER in the proxy's trace"
	log "ok: in-response: mutt sent a message through the proxy's SMTP listener (XDELIVER in-response); it arrived"
	wait_for 15 test "$(proxy_gateway_sockets)" = 0 ||
		fail "in-response: $(proxy_gateway_sockets) TCP connection(s) to the gateway left open after sending"
	log "ok: in-response: no TCP connection to the gateway left open after sending"
fi

tmx send-keys -t mutt q
expect_screen 15 "in-response: mutt quit" "MUTT-EXITED"
screen_has "MUTT-EXITED 0" || { show_screen; fail "mutt exited with an error"; }
stop_mutt_tmux
proxy_alive || fail "the proxy died"
gateway_alive || fail "the gateway died"
pass
