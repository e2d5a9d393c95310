#!/bin/bash
# t_outband_policy.sh - where pimap-gateway may send out-band notifications
# (docs/PROTOCOL.md 6, "Where notifications may go"), and that looking up a
# webhook's host name never holds up the other sessions:
#
#  1. XSETPIMAPPREF refuses, with a NO saying why, a webhook URL outside
#     outband.webhook_allow (another path, a ".." escape, http://) and a UDP
#     address that is not the device's own; the old value stays. The device's
#     own address is accepted; from 127.0.0.2 the same address is refused.
#  2. a webhook under the allow list is POSTed to (the control);
#  3. a host name that resolves to loopback is not used, although its URL is
#     under the allow list (only an IP-literal entry opens loopback):
#     nothing is POSTed, the log says why;
#  4. a DNS server that does not answer (an LD_PRELOAD getaddrinfo that
#     waits until the test lets it go) holds up nothing: another session's
#     commands are answered while the lookup still hangs, and the lookup
#     ends at outband.webhook_resolve_timeout;
#  5. UDP: a datagram to the device's own address; once the device has come
#     back from 127.0.0.2, none to 127.0.0.1 any more (the log says why);
#  6. SIGHUP: outband.udp_allow 127.0.0.0/8 lets it through again; an empty
#     outband.webhook_allow takes WEBHOOK off XPROVISION, XSETPIMAPPREF
#     refuses it, and the device that had chosen it gets no POST.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"
. "$HARNESS_LIB/gw_tests.sh"
require cc

gen_certs
start_dovecot

# The hanging resolver. With AddressSanitizer the runtime must come first in the preload list.
DNS_DIR="$T/dns"
mkdir -p "$DNS_DIR"
cc -shared -fPIC -o "$T/slowdns.so" "$HARNESS_LIB/slowdns.c" -ldl || hard_error "cannot build slowdns.so"
ASAN_LIB=$(ldd "$GATEWAY_BIN" | awk '/libasan/ {print $3}')
PRELOAD="$T/slowdns.so"
[ -z "$ASAN_LIB" ] || PRELOAD="$ASAN_LIB:$PRELOAD"
export DNS_DIR

mkdir -p "$T/hook"
spawn "$T/hook.stderr" python3 "$HARNESS_LIB/hookrecv.py" "$SERVER_CERT" "$SERVER_KEY" "$T/hook.port" "$T/hook"
wait_for 10 test -s "$T/hook.port" || fail "webhook receiver did not start"
HOOK_PORT=$(cat "$T/hook.port")
export HOOK_PORT

GW_CONFIG="$T/gateway.yaml"
cat >"$GW_CONFIG" <<EOF
outband:
  min_interval: 1s
  webhook_ca_file: "$CA"
  webhook_resolve_timeout: 1s
  webhook_allow:
    - "https://127.0.0.1:$HOOK_PORT/ok/"
    - "https://localhost:$HOOK_PORT/named/"
    - "https://slow.pimap.test:$HOOK_PORT/"
EOF
export GW_CONFIG
PIMAP_GATEWAY_WRAPPER="env LD_PRELOAD=$PRELOAD SLOWDNS_HOST=slow.pimap.test SLOWDNS_DIR=$DNS_DIR" \
	start_gateway --config "$GW_CONFIG"
gw_env

py_part "out-band policy" <<'PYEOF'
import glob, os, re, signal, socket, time
from gwt import *

T = E["T"]
HOOK = os.path.join(T, "hook")
PORT = E["HOOK_PORT"]
DNS = E["DNS_DIR"]


def send_mail(subject):
    deliver(LMTP, "carol", make_message(subject))


def posts(path=""):
    """The POSTs the receiver got (to paths starting with path), oldest first."""
    files = sorted(glob.glob(os.path.join(HOOK, "*.req")), key=lambda p: int(os.path.basename(p).split(".")[0]))
    return [f for f in files if open(f, "rb").readline().startswith(("POST " + path).encode())]


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def refused(c, name, value, why):
    before = c.ok("XGETPIMAPPREF %s" % name)[0].first
    tag, resps = c.command("XSETPIMAPPREF %s %s" % (name, value))
    check(resps[-1].status == "NO" and why in resps[-1].first,
          "%s %s refused: %s" % (name, value, resps[-1].first))
    after = c.ok("XGETPIMAPPREF %s" % name)[0].first
    check(after == before, "and the old value stays (%s)" % after, quiet=True)


def provision_channels(c):
    for r in c.ok("XPROVISION"):
        m = re.match(r"\* XPROVISION XPIMAPPREF PIMAP_OUTBAND_CHANNEL \((.*)\)", r.first)
        if m:
            return m.group(1)
    return None


@step("1. XSETPIMAPPREF refuses what the gateway would not send")
def _():
    c = pimap_device("carol", "pol1")
    check(provision_channels(c) == "UDP WEBHOOK NONE", "XPROVISION offers WEBHOOK (the allow list names URLs)")
    c.ok("XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL WEBHOOK")
    c.ok('XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "https://127.0.0.1:%s/ok/first"' % PORT)
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/other"' % PORT,
            "is not under a webhook URL this server allows (outband.webhook_allow)")
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/ok/../admin"' % PORT, '".." segments')
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"http://127.0.0.1:%s/ok/"' % PORT, "webhooks are https:// URLs")
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"https://10.1.2.3/ok/"', "not under a webhook URL")
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"192.0.2.1:9"',
            "UDP wake-ups go only to the address this device connects from (127.0.0.1)")
    refused(c, "PIMAP_OUTBAND_ADDRESS", "joe@example.org", "must be IP:port, [IPv6]:port or an https:// URL")
    c.ok('XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "127.0.0.1:9"')
    c.ok('XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS ""')
    c.ok("LOGOUT")
    c = pimap_device("carol", "pol1", source="127.0.0.2")
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"127.0.0.1:9"', "connects from (127.0.0.2)")
    c.ok('XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "127.0.0.2:9"')
    c.ok("XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL NONE")
    c.ok("LOGOUT")


@step("2. a webhook under the allow list gets its POST")
def _():
    n = len(posts())
    park(pimap_device("carol", "hook", [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"),
                         ("PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/ok/topic"' % PORT)]))
    send_mail("to the allowed webhook")
    check(wait_for(lambda: len(posts()) > n, 10), "the receiver got a POST")
    check(open(posts()[-1], "rb").read().startswith(b"POST /ok/topic\n"), "at the device's path")


@step("3. a host name is used for its public addresses only")
def _():
    n = len(posts("/named/"))
    park(pimap_device("carol", "named", [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"),
                          ("PIMAP_OUTBAND_ADDRESS", '"https://localhost:%s/named/t"' % PORT)]))
    send_mail("to a name that is loopback")
    check(wait_log_count(E["GW_LOG"], r"out-band webhook carol#Pnamed -> localhost failed: "
                                      r"localhost has only loopback addresses", 1, 10),
          "the gateway would not follow localhost to 127.0.0.1 (logged)")
    check(len(posts("/named/")) == n, "nothing was POSTed to it")
    park(pimap_device("carol", "named", [("PIMAP_OUTBAND_CHANNEL", "NONE")]))


@step("4. a DNS server that does not answer holds up no session")
def _():
    live = pimap_device("carol", "busy")
    live.ok("SELECT INBOX")
    park(pimap_device("carol", "slow", [("PIMAP_OUTBAND_CHANNEL", "WEBHOOK"),
                         ("PIMAP_OUTBAND_ADDRESS", '"https://slow.pimap.test:%s/s"' % PORT)]))
    send_mail("to a host whose DNS hangs")
    check(wait_for(lambda: os.path.exists(os.path.join(DNS, "entered")), 10), "the gateway is looking up slow.pimap.test")
    t0 = time.monotonic()
    for i in range(5):
        live.ok("NOOP")
    live.ok("STATUS INBOX (MESSAGES)")
    took = time.monotonic() - t0
    check(not os.path.exists(os.path.join(DNS, "left")),
          "another session's 6 commands were answered (%.2f s) while the lookup still hung" % took)
    check(wait_log_count(E["GW_LOG"], r"out-band webhook carol#Pslow -> slow.pimap.test failed: "
                                      r"looking up slow.pimap.test: timed out after 1.0 s", 1, 10),
          "the lookup ended at outband.webhook_resolve_timeout (1 s)")
    check(not os.path.exists(os.path.join(DNS, "left")), "(the helper thread was still waiting then)")
    open(os.path.join(DNS, "release"), "w").close()
    check(wait_for(lambda: os.path.exists(os.path.join(DNS, "left")), 10), "the hung lookup returned once let go")
    live.ok("NOOP")
    live.ok("LOGOUT")
    park(pimap_device("carol", "slow", [("PIMAP_OUTBAND_CHANNEL", "NONE")]))


UDP = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
UDP.bind(("127.0.0.1", 0))
UDP_ADDR = '"127.0.0.1:%d"' % UDP.getsockname()[1]


def datagram(timeout):
    UDP.settimeout(timeout)
    try:
        return UDP.recvfrom(4000)[0]
    except socket.timeout:
        return None


@step("5. UDP goes to the device's own address, and stops when the device moves")
def _():
    park(pimap_device("carol", "udp", [("PIMAP_OUTBAND_CHANNEL", "UDP"), ("PIMAP_OUTBAND_ADDRESS", UDP_ADDR)]))
    send_mail("udp to where the device is")
    d = datagram(10)
    check(d is not None and b'mailat:carol#Pudp"' in d, "a datagram to 127.0.0.1, where the device came from")
    time.sleep(1.1)  # past outband.min_interval
    park(pimap_device("carol", "udp", source="127.0.0.2"))  # the device is now at 127.0.0.2; its address setting still says .1
    send_mail("udp after the device moved")
    check(wait_log_count(E["GW_LOG"], r"out-band UDP for carol#Pudp not sent: UDP wake-ups go only to the address "
                                      r"this device connects from \(127\.0\.0\.2\)", 1, 10),
          "the gateway refused to send to the old address (logged)")
    check(datagram(0.5) is None, "and no datagram came")


def reload():
    n = log_count(E["GW_LOG"], r"configuration reloaded")
    os.kill(int(E["GW_PID"]), signal.SIGHUP)
    check(wait_log_count(E["GW_LOG"], r"configuration reloaded", n + 1, 10) > n, "SIGHUP: configuration reloaded")


@step("6. SIGHUP: outband.udp_allow widens UDP, an empty outband.webhook_allow ends WEBHOOK")
def _():
    time.sleep(1.1)  # past outband.min_interval
    text = open(E["GW_CONFIG"]).read()
    text = re.sub(r"  webhook_allow:\n(    - .*\n)+", "  webhook_allow: []\n  udp_allow: [127.0.0.0/8]\n", text)
    open(E["GW_CONFIG"], "w").write(text)
    reload()
    send_mail("udp with udp_allow")
    d = datagram(10)
    check(d is not None and b'mailat:carol#Pudp"' in d, "outband.udp_allow 127.0.0.0/8: the datagram goes to 127.0.0.1")

    c = pimap_device("carol", "pol2")
    check(provision_channels(c) == "UDP NONE", "XPROVISION no longer offers WEBHOOK")
    refused(c, "PIMAP_OUTBAND_CHANNEL", "WEBHOOK", "channel WEBHOOK is not offered by this server")
    refused(c, "PIMAP_OUTBAND_ADDRESS", '"https://127.0.0.1:%s/ok/x"' % PORT, "WEBHOOK is not offered")
    c.ok("LOGOUT")
    n = len(posts())
    k = log_count(E["GW_LOG"], r"out-band webhook for carol#Phook not sent: WEBHOOK is not offered")
    send_mail("to a webhook no longer allowed")
    check(wait_log_count(E["GW_LOG"], r"out-band webhook for carol#Phook not sent: WEBHOOK is not offered",
                         k + 1, 10) > k, "the device that chose WEBHOOK earlier is not POSTed to (logged)")
    check(len(posts()) == n, "and the receiver got nothing")


run_steps()
PYEOF
gw_stop
gw_finish
