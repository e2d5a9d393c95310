"""stdio_pipes.py - pimap-proxy --stdio driven through real pipe(2)s, the way
mutt's $tunnel runs it (part (p) of t_mutt.sh; formerly t_stdio.sh):
 - the greeting is "* OK" and never PREAUTH (no credentials are configured,
   so the client must log in);
 - LOGIN, SELECT, FETCH (a body, byte-exact), LOGOUT work;
 - after LOGOUT the proxy exits by itself with status 0, and writes nothing
   more;
 - a second run: closing stdin in the middle of a session makes the proxy
   exit too (no process left waiting on a dead pipe).
Environment: PROXY_BIN, PIMAP_PROXY_WRAPPER, DOVECOT_IMAPS, CA,
DOVECOT_PASS, T, and STDIO_USER (whose INBOX holds "stdio: first" and
"stdio: second" with the body "A body to fetch through pipes.").
"""
import os, shlex, subprocess, sys, time
from imapc import Client, PipeTransport, make_message, Closed, Timeout

T = os.environ["T"]
step = ""
def check(cond, what):
    if not cond:
        print("FAIL (%s): %s" % (step, what), file=sys.stderr)
        sys.exit(1)
    print("ok   (%s): %s" % (step, what), file=sys.stderr)

def start(n):
    cmd = shlex.split(os.environ["PIMAP_PROXY_WRAPPER"]) + [
        os.environ["PROXY_BIN"], "--stdio",
        "--upstream", "imaps://127.0.0.1:%s" % os.environ["DOVECOT_IMAPS"],
        "--ca-file", os.environ["CA"],
        "--state-dir", os.path.join(T, "proxy-state"),
        "--log-file", os.path.join(T, "proxy-stdio%d.log" % n)]
    err = open(os.path.join(T, "proxy-stdio%d.stderr" % n), "ab")
    # plain pipe(2)s, as mutt's $tunnel uses: not sockets
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    p = subprocess.Popen(cmd, stdin=in_r, stdout=out_w, stderr=err)
    os.close(in_r)
    os.close(out_w)
    c = Client(timeout=15)
    g = c.attach(PipeTransport(in_w, out_r))
    return p, c, g

def wait_exit(p, timeout):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None

# --- a whole session ------------------------------------------------------------
step = "session"
p, c, g = start(1)
try:
    check(g.status == "OK", "greeting %r" % g.first)
    check("PREAUTH" not in g.first.upper(), "no PREAUTH without configured credentials")
    c.login(os.environ["STDIO_USER"], os.environ["DOVECOT_PASS"])
    resps = c.ok("SELECT INBOX")
    check(any(r.first == "* 2 EXISTS" for r in resps), "SELECT INBOX shows 2 messages")
    resps = c.ok("FETCH 2 (BODY.PEEK[] FLAGS)")
    # LMTP delivery adds the Return-Path line, nothing else (see harness.sh)
    want = (b"Return-Path: <sender@example.org>\r\n" +
            make_message("stdio: second", "A body to fetch through pipes."))
    check(resps[0].literals == [want], "FETCH returns the delivered message byte for byte")
    resps = c.ok("LOGOUT")
    check(any(r.status == "BYE" for r in resps), "LOGOUT: * BYE then OK")
    try:
        rest = c.read_until_closed(timeout=10)
        check(not rest, "nothing after LOGOUT")
    except Timeout:
        check(False, "stdout closed after LOGOUT")
    rc = wait_exit(p, 10)
    check(rc == 0, "the proxy exits with 0 after LOGOUT (got %r)" % rc)
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
    c.close()

# --- stdin closed in the middle -------------------------------------------------------
step = "stdin closed"
p, c, g = start(2)
try:
    check(g.status == "OK", "greeting %r" % g.first)
    c.login(os.environ["STDIO_USER"], os.environ["DOVECOT_PASS"])
    c.ok("SELECT INBOX")
    c.sock.close_write()
    rc = wait_exit(p, 10)
    check(rc is not None, "the proxy exits within 10 s once stdin is closed (status %r)" % rc)
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
    c.close()
