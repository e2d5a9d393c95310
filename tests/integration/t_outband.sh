#!/bin/bash
# t_outband.sh - pimap-gateway's out-band notifications (docs/PROTOCOL.md 6):
#
#  1. WEBHOOK: a device sets channel WEBHOOK, an https:// address on a local
#     receiver this test starts (certificate from the test CA; the receiver
#     is on 127.0.0.1, named in outband.webhook_allow), format EMN,
#     selects INBOX and goes away without LOGOUT; a delivery makes the gateway
#     POST an EMN document naming the device's account;
#  2. nothing is sent while the device has a live connection (in IDLE);
#  3. rate limit: three deliveries within outband.min_interval give one POST
#     at once and one more at the end of the interval, not three;
#  4. PIMAP_EVENT_FILTER NEW: a flag change sends nothing; NONE: not even new
#     mail;
#  5. the receiver's certificate is verified: one the gateway cannot trust
#     gets no POST (the failure is logged);
#  6. UDP with EMN: the datagram is the EMN document; EXTENDED: it opens with
#     the device key from XPROVISION and names NEW_MESSAGE in INBOX;
#  7. XFILTER INBOX N NONE: new mail wakes nobody; N ALL again: it does;
#     N FROM the boss: a newsletter wakes nobody, the boss's mail does.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
. "$HARNESS_LIB/https.sh"
CRYPTO_PY=$(crypto_python) || hard_error "no python3 with the cryptography module (Debian: python3-cryptography)"

gen_certs
start_dovecot
deliver carol "outband message 1"

start_receiver() { # start_receiver NAME CERT KEY: sets RECV_PORT
	mkdir -p "$T/$1"
	spawn "$T/$1.stderr" python3 "$HARNESS_LIB/hookrecv.py" "$2" "$3" "$T/$1.port" "$T/$1"
	wait_for 10 test -s "$T/$1.port" || fail "webhook receiver $1 did not start"
	RECV_PORT=$(cat "$T/$1.port")
}
start_receiver hook "$SERVER_CERT" "$SERVER_KEY"
HOOK_PORT=$RECV_PORT
start_receiver bad "$UNTRUSTED_CERT" "$UNTRUSTED_KEY"
BAD_PORT=$RECV_PORT
export HOOK_PORT BAD_PORT
# What outband_policy allows is t_outband_policy's subject; here both receivers are allowed.
start_gateway --set outband.min_interval=3s --set "outband.webhook_ca_file=$CA" \
	--set "outband.webhook_allow=https://127.0.0.1:$HOOK_PORT/up/,https://127.0.0.1:$BAD_PORT/"
gw_env

# (py_part with the python3 that can open EXTENDED datagrams)
"$CRYPTO_PY" - <<'PYEOF' || GW_FAILED_PARTS+=("out-band")
import base64, glob, os, re, socket, time
from gwt import *
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

T = E["T"]
HOOK = os.path.join(T, "hook")
BAD = os.path.join(T, "bad")


def send_mail(subject):
    deliver(LMTP, "carol", make_message(subject))


def posts(d=HOOK):
    return sorted(glob.glob(os.path.join(d, "*.req")), key=lambda p: int(os.path.basename(p).split(".")[0]))


def wait_posts(n, timeout, d=HOOK):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(posts(d)) >= n:
            return True
        time.sleep(0.05)
    return len(posts(d)) >= n


@step("1. WEBHOOK: a POST of the EMN document when mail arrives for a parked session")
def _():
    c = pimap_device("carol", "hook1", [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"), ("PIMAP_OUTBAND_FORMAT", "EMN"),
                         ("PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/up/topic1"' % E["HOOK_PORT"])])
    park(c)
    send_mail("webhook one")
    check(wait_posts(1, 10), "the receiver got a POST")
    req = open(posts()[0], "rb").read().decode()
    check(req.startswith("POST /up/topic1\n"), "POST to the configured path: %r" % req[:40])
    check('<emn mailbox="mailat:carol#Phook1"' in req, "EMN body names the account: %r" % req[-120:])
    check("application/vnd.oma.emn+xml" in req, "EMN content type")


@step("2. nothing out-band while a connection is live")
def _():
    n = len(posts())
    c = pimap_device("carol", "hook1", [])
    c.ok("SELECT INBOX")
    tag = c.idle_start()
    time.sleep(4)  # past outband.min_interval, so the rate limit cannot be what stops it
    send_mail("while live")
    got = quiet(c, 2)
    check(any("EXISTS" in r.first for r in got), "the live connection got the new mail in IDLE")
    check(len(posts()) == n, "no POST while the device was connected (%d, was %d)" % (len(posts()), n))
    c.idle_done(tag)
    close_detached(c)


@step("3. rate limit: three deliveries in outband.min_interval -> two POSTs")
def _():
    time.sleep(3.2)  # a fresh interval
    n = len(posts())
    send_mail("burst 0")
    check(wait_posts(n + 1, 5), "the first of the burst is posted at once")
    t_first = time.monotonic()
    for i in (1, 2):
        # Spaced by more than Dovecot's 0.5 s IDLE delay, so that the store reports
        # separate events (it folds deliveries closer together into one EXISTS).
        time.sleep(0.7)
        send_mail("burst %d" % i)
    check(len(posts()) == n + 1, "nothing more within the interval")
    check(wait_posts(n + 2, 6), "one more at the end of the interval")
    check(time.monotonic() - t_first >= 2.5, "not before the interval (%.1f s after the first)" % (time.monotonic() - t_first))
    time.sleep(4)
    check(len(posts()) == n + 2, "and no third (%d POSTs for 3 deliveries)" % (len(posts()) - n))


@step("4. PIMAP_EVENT_FILTER NEW ignores flag changes; NONE ignores everything")
def _():
    c = pimap_device("carol", "hook1", [("PIMAP_EVENT_FILTER", "NEW")])
    park(c)
    time.sleep(3.2)
    n = len(posts())
    s = store("carol")
    s.ok("SELECT INBOX")
    s.ok("STORE 1 +FLAGS (\\Flagged)")
    time.sleep(2)
    check(len(posts()) == n, "a flag change sends nothing under NEW")
    send_mail("new under NEW")
    check(wait_posts(n + 1, 10), "new mail is sent under NEW")
    c = pimap_device("carol", "hook1", [("PIMAP_EVENT_FILTER", "NONE")])
    park(c)
    time.sleep(3.2)
    n = len(posts())
    send_mail("new under NONE")
    time.sleep(2.5)
    check(len(posts()) == n, "nothing under NONE")
    c = pimap_device("carol", "hook1", [("PIMAP_EVENT_FILTER", "ALL"), ("PIMAP_OUTBAND_CHANNEL", "NONE")])
    park(c)
    s.close()


@step("5. the receiver's certificate is verified")
def _():
    c = pimap_device("carol", "hook2", [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"),
                         ("PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/x"' % E["BAD_PORT"])])
    park(c)
    send_mail("to an untrusted receiver")
    check(wait_log_count(E["GW_LOG"], r"out-band webhook carol#Phook2 .* failed: .*certificate", 1, 10),
          "the gateway refused the untrusted certificate")
    check(len(posts(BAD)) == 0, "the untrusted receiver got nothing")
    c = pimap_device("carol", "hook2", [("PIMAP_OUTBAND_CHANNEL", "NONE")])
    park(c)


@step("6. UDP: EMN as it is, EXTENDED sealed with the XPROVISION key")
def _():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(10)
    addr = '"127.0.0.1:%d"' % u.getsockname()[1]
    c = pimap_device("carol", "udp1", [("PIMAP_OUTBAND_CHANNEL", "UDP"), ("PIMAP_OUTBAND_FORMAT", "EMN"),
                        ("PIMAP_OUTBAND_ADDRESS", addr)])
    park(c)
    time.sleep(3.2)
    send_mail("udp emn")
    data, _ = u.recvfrom(2000)
    check(b'<emn mailbox="mailat:carol#Pudp1"' in data, "UDP datagram is EMN: %r" % data[:80])
    c = pimap_device("carol", "udp1", [("PIMAP_OUTBAND_FORMAT", "EXTENDED")])
    resps = c.ok("XPROVISION")
    keys = [re.match(r"\* XPROVISION PIMAP_ENC_KEY \((\S+)\)", r.first) for r in resps]
    keys = [m.group(1) for m in keys if m]
    check(len(keys) == 1, "XPROVISION gives one key over TLS")
    park(c)
    time.sleep(3.2)
    send_mail("udp extended")
    data, _ = u.recvfrom(2000)
    marker = b"_%$P-IMAP$%_ "
    check(data.startswith(marker), "EXTENDED datagram starts with the marker")
    blob = base64.b64decode(data[len(marker):])
    hdr, salt, ct = blob[:9], blob[9:13], blob[13:]
    plain = AESGCM(base64.b64decode(keys[0])).decrypt(hdr[1:] + salt, ct, marker[:-1] + hdr).decode()
    seq = int.from_bytes(hdr[1:], "big")
    check(plain == "%d carol#Pudp1 NEW_MESSAGE INBOX" % seq, "it opens with the key: %r" % plain)
    check(abs(seq / 1e6 - time.time()) < 60, "its sequence number is the time in microseconds")
    c = pimap_device("carol", "udp1", [("PIMAP_OUTBAND_CHANNEL", "NONE")])
    c.ok("LOGOUT")



@step("7. XFILTER: new mail the notification filter refuses (N NONE, N criteria) wakes nobody")
def _():
    hook = [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"), ("PIMAP_OUTBAND_FORMAT", "EMN"),
            ("PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/up/filtered"' % E["HOOK_PORT"])]
    c = pimap_device("carol", "hook3", hook)
    c.ok("XFILTER INBOX N NONE")
    park(c)
    time.sleep(3.2)
    n = len(posts())
    send_mail("under N NONE")
    time.sleep(2.5)
    check(len(posts()) == n, "no POST for new mail under XFILTER INBOX N NONE")
    c = pimap_device("carol", "hook3", [])
    c.ok("XFILTER INBOX N ALL")
    park(c)
    send_mail("under N ALL")
    check(wait_posts(n + 1, 10), "N ALL again: new mail is posted")
    c = pimap_device("carol", "hook3", [])
    c.ok('XFILTER INBOX N FROM "boss@example.com"')
    park(c)
    time.sleep(3.2)
    n = len(posts())
    deliver(LMTP, "carol", make_message("a newsletter", sender="news@lists.example.net"))
    time.sleep(2.5)
    check(len(posts()) == n, "a parked folder searches new mail: not from the boss, no POST")
    deliver(LMTP, "carol", make_message("from the boss", sender="boss@example.com"))
    check(wait_posts(n + 1, 10), "from the boss: a POST")
    c = pimap_device("carol", "hook3", [("PIMAP_OUTBAND_CHANNEL", "NONE")])
    c.ok("XFILTER INBOX N ALL")
    c.ok("LOGOUT")


run_steps()
PYEOF
gw_stop
gw_finish
