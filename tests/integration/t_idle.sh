#!/bin/bash
# t_idle.sh - push and the client-leg transports of pimap-proxy.
#
#  - IDLE through the proxy: a message delivered over LMTP shows up as
#    "* n EXISTS" within 10 s, and DONE gets IDLE's tagged OK;
#  - client-side COMPRESS=DEFLATE (handled by the proxy itself): OK, then
#    FETCH and IDLE push work over the compressed client leg;
#  - STARTTLS on the plain listener with the certificate the proxy generated
#    in --state-dir (the client does not verify it, but it must be the one in
#    the state dir), and no STARTTLS advertised once TLS is on;
#  - the implicit-TLS listener (--listen-tls).
#
# By hand: tests/integration/t_idle.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

start_store_for_proxy
deliver alice "idle test: first"
deliver alice "idle test: second"

P=$(free_port)
Q=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls "127.0.0.1:$Q" \
	--upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	--state-dir "$T/proxy-state"

export P Q T DOVECOT_LMTP DOVECOT_PASS
python3 - <<'PYEOF' || fail "see the messages above"
import glob, os, re, ssl, sys, time
from imapc import Client, Closed, deliver, make_message, IMAPError

P, Q = int(os.environ["P"]), int(os.environ["Q"])
LMTP = "127.0.0.1:" + os.environ["DOVECOT_LMTP"]
PASS = os.environ["DOVECOT_PASS"]
T = os.environ["T"]
step = ""
def check(cond, what):
    if not cond:
        print("FAIL (%s): %s" % (step, what), file=sys.stderr)
        sys.exit(1)
    print("ok   (%s): %s" % (step, what), file=sys.stderr)

def idle_push(c, subject, expect_exists):
    """IDLE, deliver a message, expect '* n EXISTS' within 10 s, DONE -> OK."""
    tag = c.idle_start()
    t0 = time.monotonic()
    deliver(LMTP, "alice", make_message(subject))
    r = c.wait_match(r"^\* \d+ EXISTS", timeout=10)
    dt = time.monotonic() - t0
    check(r.first == "* %d EXISTS" % expect_exists,
          "IDLE pushed %r after %.2f s (want * %d EXISTS)" % (r.first, dt, expect_exists))
    done = c.idle_done(tag)
    check(done[-1].tag == tag and done[-1].status == "OK", "DONE -> %r" % done[-1].first)

# --- IDLE over the plain listener --------------------------------------------
step = "idle"
c = Client("127.0.0.1", P)
g = c.connect()
check(g.status == "OK" and "PREAUTH" not in g.first, "greeting %r" % g.first)
c.login("alice", PASS)
resps = c.ok("SELECT INBOX")
check(any(r.first == "* 2 EXISTS" for r in resps), "SELECT shows 2 messages")
idle_push(c, "idle test: pushed while idling", 3)
resps = c.ok("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
check(b"idle test: pushed while idling" in resps[0].raw, "the pushed message can be fetched")
c.ok("LOGOUT")
c.close()

# --- client-side COMPRESS=DEFLATE ---------------------------------------------
step = "compress"
c = Client("127.0.0.1", P)
c.connect()
c.login("alice", PASS)
tag, resps = c.command("CAPABILITY")
capline = " ".join(r.first for r in resps)
check("COMPRESS=DEFLATE" in capline, "COMPRESS=DEFLATE offered to the client")
r = c.compress()
check(r.status == "OK", "COMPRESS DEFLATE -> %r" % r.first)
resps = c.ok("SELECT INBOX")
check(any(x.first == "* 3 EXISTS" for x in resps), "SELECT over the compressed leg")
resps = c.ok("FETCH 1:3 (BODY.PEEK[] FLAGS)")
bodies = [l for x in resps for l in x.literals]
want = make_message("idle test: first")
check(len(bodies) == 3 and want in bodies[0], "FETCH of 3 bodies over the compressed leg (%d bytes)"
      % sum(map(len, bodies)))
# a second COMPRESS must be refused (RFC 4978: COMPRESSIONACTIVE)
tag, resps = c.command("COMPRESS DEFLATE")
check(resps[-1].status in ("NO", "BAD"), "second COMPRESS refused: %r" % resps[-1].first)
idle_push(c, "idle test: pushed over compression", 4)
c.ok("LOGOUT")
c.close()

# --- STARTTLS on the plain listener ---------------------------------------------
step = "starttls"
c = Client("127.0.0.1", P, verify=False)
g = c.connect()
check("STARTTLS" in g.first, "greeting advertises STARTTLS: %r" % g.first)
c.starttls()
check(c.tls_version is not None, "TLS %s after STARTTLS" % c.tls_version)
der = c.peer_cert
pems = []
for path in glob.glob(os.path.join(T, "proxy-state", "**", "*"), recursive=True):
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
        for m in re.finditer(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", data, re.S):
            pems.append((path, ssl.PEM_cert_to_DER_cert(m.group(0).decode())))
check(pems, "the proxy wrote a certificate under --state-dir")
check(any(d == der for _, d in pems), "the STARTTLS certificate is the one in %s" % [p for p, _ in pems])
tag, resps = c.command("CAPABILITY")
capline = " ".join(r.first for r in resps)
check(resps[-1].status == "OK" and "STARTTLS" not in capline.split(),
      "no STARTTLS in CAPABILITY once TLS is on")
c.login("alice", PASS)
resps = c.ok("EXAMINE INBOX")
check(any(x.first == "* 4 EXISTS" for x in resps), "EXAMINE after STARTTLS")
c.ok("LOGOUT")
c.close()

# plaintext pipelined behind STARTTLS must not be executed inside TLS (the
# STARTTLS command-injection class of bugs): either the proxy drops it, or it
# closes the connection, as Dovecot does
step = "starttls injection"
c = Client("127.0.0.1", P, verify=False)
c.connect()
c.send(b"s1 STARTTLS\r\ns2 LOGIN alice %s\r\n" % PASS.encode())
r = c.read_response()
check(r.tag == "s1" and r.status == "OK", "STARTTLS with a command pipelined behind it -> %r" % r.first)
try:
    c.rbuf = b""
    c._wrap_tls()
    c.send(b"s3 NOOP\r\n")
    resps = c.wait_tagged("s3")
    check(not any(x.tag == "s2" for x in resps),
          "the injected LOGIN was not executed: %r" % [x.first[:50] for x in resps])
    tag, resps = c.command("SELECT INBOX")
    check(resps[-1].status != "OK", "still not logged in after the injection: %r" % resps[-1].first[:60])
except (Closed, OSError) as e:
    check(True, "the proxy closed the connection instead (%s)" % type(e).__name__)
c.close()

# --- implicit TLS listener ---------------------------------------------------------
step = "imaps"
c = Client("127.0.0.1", Q, tls=True, verify=False)
g = c.connect()
check(g.status == "OK" and "PREAUTH" not in g.first, "greeting over implicit TLS: %r" % g.first)
check(c.peer_cert == der, "the implicit-TLS listener presents the same generated certificate")
c.login("alice", PASS)
c.ok("SELECT INBOX")
resps = c.ok("UID FETCH 1:* (UID RFC822.SIZE)")
check(sum(1 for x in resps if x.first.startswith("* ")) == 4, "4 messages over implicit TLS")
idle_push(c, "idle test: pushed over implicit TLS", 5)
c.ok("LOGOUT")
c.close()
PYEOF

proxy_alive || fail "proxy died"
pass
