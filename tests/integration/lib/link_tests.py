"""link_tests - pimap-proxy in front of pimap-gateway (t_link.sh).

The shell part starts Dovecot, the gateway, a controllable relay on the
proxy-gateway link (linkrelay.py) and the proxy, and exports PROXY_PORT,
RELAY_CTL, GW_LOG, PROXY_LOG, T, CA, DOVECOT_*. Clients here are stock IMAP
clients of the proxy: they log in as the plain user and never see P-IMAP.
Each section uses its own user, and checks the client's view (built only from
what the proxy told it) against the store's real state after the fact.

    python3 link_tests.py SECTION...      (sections: see SECTIONS below)
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gw_common as g                                              # noqa: E402
from pimapc import PimapClient, View, IMAPError                   # noqa: E402,F401

PROXY_PORT = int(os.environ["PROXY_PORT"])
RELAY_CTL = os.environ["RELAY_CTL"]
PROXY_LOG = os.environ["PROXY_LOG"]
GW_LOG = os.environ["GW_LOG"]
CHK = g.Checker("t_link")


def relay(cmd):
    """Tell the link relay to cut, stall or restore the link."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(RELAY_CTL)
    s.sendall((cmd + "\n").encode())
    reply = s.recv(100).decode().strip()
    s.close()
    if not reply.startswith("ok"):
        raise IMAPError("relay %s: %s" % (cmd, reply))
    return reply


def log_count(path, text):
    try:
        with open(path, errors="replace") as f:
            return f.read().count(text)
    except FileNotFoundError:
        return 0


def wait_log(path, text, count, timeout, what):
    g.wait_until(lambda: log_count(path, text) >= count, timeout, what)


def client(label, user, mech="LOGIN"):
    """A stock client of the proxy, logged in as user (no #P: the proxy adds the device)."""
    c = PimapClient("127.0.0.1", PROXY_PORT, timeout=20)
    c.label = label
    CHK.watch(c)
    c.connect()
    if mech == "LOGIN":
        c.login(user, g.PASS)
    else:
        c.authenticate_plain(user, g.PASS, initial_response=False)
    return c


def idle_start(c):
    tag, _ = c.send_command("IDLE")
    r = c.read_response(timeout=5)
    CHK.check(r.is_continuation, "IDLE is answered with a continuation at once")
    return tag


def idle_stop(c, tag):
    c.send(b"DONE\r\n")
    resps = c.wait_tagged(tag, timeout=20)
    CHK.equal(resps[-1].status, "OK", "IDLE ends with OK after DONE")
    return resps


def check_view(c, user, mailbox="INBOX", what="the client's view equals the store"):
    # A final NOOP lets anything still queued reach the client first.
    c.ok("NOOP")
    CHK.equal(c.view.snapshot(), g.truth(user, mailbox), what)


def wait_count(c, n, timeout=30):
    """Read (in IDLE) until the client's view holds n messages."""
    c.collect_until(lambda r: len(c.view) == n, timeout=timeout)


def section_a():
    """Stock client through proxy and gateway: login, capabilities, select, push in IDLE."""
    g.deliver_n("alice", 3, "a")
    c = client("alice via proxy", "alice", mech="AUTHENTICATE")
    caps = c.ok("CAPABILITY")[0].first
    for hidden in ("XPIMAPv1", "XFILTER", "XPIMAPPREF", "XDELIVER", "NOTIFY"):
        CHK.check(hidden not in caps.split(), "CAPABILITY hides %s from a stock client" % hidden, caps)
    CHK.check("IDLE" in caps.split(), "CAPABILITY offers IDLE", caps)
    v = c.select_view("INBOX")
    CHK.equal(len(v), 3, "three messages in INBOX")
    tag = idle_start(c)
    g.deliver_n("alice", 1, "a-push")
    n = c.wait_exists(timeout=15)
    CHK.equal(n, 4, "a delivery is pushed as * 4 EXISTS during IDLE")
    idle_stop(c, tag)
    # Thunderbird's DONE, NOOP: right after an IDLE the proxy answers NOOP.
    local = log_count(PROXY_LOG, "NOOP answered by the proxy")
    c.ok("NOOP")
    CHK.equal(log_count(PROXY_LOG, "NOOP answered by the proxy"), local + 1,
              "a NOOP right after IDLE is answered without a round trip")
    c.view.complete(c)
    check_view(c, "alice")
    # IDLE, DONE and the next command in one write: all before the gateway's
    # "+" to the proxy's upstream IDLE (mutt does this); nothing may be lost.
    for i in range(5):
        c.send(("I%d IDLE\r\nDONE\r\nF%d UID FETCH 1:* (FLAGS)\r\n" % (i, i)).encode())
        resps = c.wait_tagged("F%d" % i, timeout=15)
        CHK.check(any(r.tag == "I%d" % i and r.status == "OK" for r in resps) and resps[-1].status == "OK",
                  "IDLE+DONE+FETCH in one write #%d: both answered OK" % i, [r.first for r in resps])
    lines = g.imapc.format_transcript(c)
    CHK.check(len(lines) > 10, "the transcript holds the session (%d lines)" % len(lines))
    for word in ("* SESSION", "* FOLDER", "* SESSIONID", "* RESYNC"):
        CHK.check(not any(word in l for l in lines), "the client never sees %s" % word)
    c.logout()


def section_b():
    """Link cut during IDLE; new mail, a flag change and an expunge meanwhile."""
    g.deliver_n("bob", 5, "b")
    c = client("bob via proxy", "bob")
    c.select_view("INBOX")
    tag = idle_start(c)
    resumes = log_count(PROXY_LOG, "resumed in INBOX with the gateway's queued events")
    relay("cut")
    st = g.store("bob")
    st.select("INBOX")
    st.store_uid(2, "+FLAGS.SILENT", ["\\Flagged"])
    st.expunge_uids([4])
    st.logout()
    g.deliver_n("bob", 2, "b-outage")
    relay("restore")
    wait_log(PROXY_LOG, "resumed in INBOX with the gateway's queued events", resumes + 1, 20,
             "the proxy to resume with the gateway's events")
    wait_count(c, 6)
    idle_stop(c, tag)
    c.view.complete(c)
    check_view(c, "bob", what="after the outage the client's view equals the store (no reconnect by the client)")
    CHK.check(c.sock is not None, "the client's connection stayed open")
    c.logout()


def section_c():
    """A link that hangs without closing is detected by heartbeats and replaced."""
    g.deliver_n("carol", 2, "c")
    c = client("carol via proxy", "carol")
    c.select_view("INBOX")
    tag = idle_start(c)
    lost = log_count(PROXY_LOG, "no answer from the gateway")
    relay("stall")
    t0 = time.monotonic()
    wait_log(PROXY_LOG, "no answer from the gateway", lost + 1, 20, "the proxy to declare the stalled link dead")
    took = time.monotonic() - t0
    CHK.check(took < 12, "dead link detected in %.1f s (heartbeat 2 s + dead_timeout 2 s, plus slack)" % took)
    g.deliver_n("carol", 1, "c-stall")
    relay("restore")
    n = c.wait_exists(timeout=20)
    CHK.equal(n, 3, "the delivery during the stall reaches the client")
    idle_stop(c, tag)
    c.view.complete(c)
    check_view(c, "carol")
    c.logout()


def section_d():
    """Commands during an outage wait for link.outage_wait, then NO [UNAVAILABLE]; afterwards all works."""
    g.deliver_n("dave", 2, "d")
    c = client("dave via proxy", "dave")
    c.select_view("INBOX")
    relay("cut")
    t0 = time.monotonic()
    tag, resps = c.command("UID FETCH 1:* (FLAGS)", timeout=30)
    took = time.monotonic() - t0
    CHK.check(resps[-1].status == "NO" and "[UNAVAILABLE]" in resps[-1].first,
              "a command during the outage gets NO [UNAVAILABLE]", resps[-1].first)
    CHK.check(2.5 <= took + 0.5 and took < 15, "it waited about link.outage_wait (3 s): %.1f s" % took)
    relay("restore")
    # Held command that is answered once the link is back.
    tag, _ = c.send_command("UID FETCH 1:* (FLAGS)")
    resps = c.wait_tagged(tag, timeout=20)
    CHK.equal(resps[-1].status, "OK", "after the link returns, commands work on the same connection")
    check_view(c, "dave")
    c.logout()


def section_e():
    """More events than the gateway queues: RESYNC; the proxy compares and tells the client exactly."""
    g.deliver_n("erin", 4, "e")
    c = client("erin via proxy", "erin")
    c.select_view("INBOX")
    tag = idle_start(c)
    compares = log_count(PROXY_LOG, "state comparison:")
    relay("cut")
    st = g.store("erin")
    st.select("INBOX")
    st.expunge_uids([1, 3])
    st.store_uid(2, "+FLAGS.SILENT", ["\\Seen"])
    st.logout()
    g.deliver_n("erin", 6, "e-outage")      # over limits.max_queued_events (5)
    relay("restore")
    wait_log(PROXY_LOG, "state comparison:", compares + 1, 25, "the proxy's own state comparison")
    wait_count(c, 8)
    idle_stop(c, tag)
    c.view.complete(c)
    check_view(c, "erin", what="after RESYNC the client's view equals the store")
    c.logout()


def section_g():
    """Three clients of one device in three folders, through one outage."""
    st = g.store("frank")
    for f in ("Work", "Lists"):
        st.create(f)
    st.logout()
    g.deliver_n("frank", 2, "g")
    cs = []
    for i, folder in enumerate(("INBOX", "Work", "Lists")):
        c = client("frank #%d via proxy" % i, "frank")
        if folder != "INBOX":
            st = g.store("frank")
            st.append(folder, "%s first" % folder)
            st.logout()
        c.select_view(folder)
        cs.append((c, folder, idle_start(c)))
    relay("cut")
    st = g.store("frank")
    st.append("Work", "work during outage")
    st.append("Lists", "list during outage 1")
    st.append("Lists", "list during outage 2")
    st.logout()
    g.deliver_n("frank", 1, "g-outage")
    relay("restore")
    want = {"INBOX": 3, "Work": 2, "Lists": 3}
    for c, folder, tag in cs:
        wait_count(c, want[folder])
        idle_stop(c, tag)
        c.view.complete(c)
        check_view(c, "frank", folder, what="client in %s sees exactly its folder's changes" % folder)
    for c, _, _ in cs:
        c.logout()


def section_h():
    """A gateway restart (SIGTERM by the shell) while the client idles: mail arrives after it."""
    c = client("henry via proxy", "henry")
    c.select_view("INBOX")
    tag = idle_start(c)
    with open(os.path.join(g.T, "h.ready"), "w") as f:
        f.write("idling\n")
    g.wait_until(lambda: os.path.exists(os.path.join(g.T, "h.restarted")), 60, "the shell to restart the gateway")
    n = c.wait_exists(timeout=30)
    CHK.equal(n, 1, "mail delivered while the gateway was down (SIGTERM) reaches the idling client")
    idle_stop(c, tag)
    c.view.complete(c)
    check_view(c, "henry")
    # A crash: the gateway cannot save the view, says RESYNC, the proxy compares.
    st = g.store("henry")
    st.select("INBOX")
    st.store_uid(1, "+FLAGS.SILENT", ["\\Answered"])
    st.logout()
    tag = idle_start(c)
    with open(os.path.join(g.T, "h.ready2"), "w") as f:
        f.write("idling\n")
    g.wait_until(lambda: os.path.exists(os.path.join(g.T, "h.restarted2")), 60, "the shell to kill and restart")
    wait_count(c, 2)
    idle_stop(c, tag)
    c.view.complete(c)
    check_view(c, "henry", what="after a gateway crash the client's view equals the store")
    c.logout()


MUTT_ITEMS = ("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
              "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST "
              "X-LABEL)])")
_RX_TIMING = re.compile(r" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")


OPENS = 5


def mutt_session(port, user):
    """mutt 2.2's recorded command pattern (macros/mutt.yaml): returns its normalised transcript."""
    c = g.imapc.Client("127.0.0.1", port, timeout=20)
    c.label = "mutt-like client on port %d" % port
    CHK.watch(c)
    c.connect()
    c.ok("CAPABILITY")
    c.login(user, g.PASS)
    tags = [c.send_command(x)[0] for x in ("CAPABILITY", "ENABLE UTF8=ACCEPT", 'LIST "" ""')]
    c.wait_all_tagged(tags)
    for _ in range(OPENS):
        resps = c.ok('SELECT "INBOX"')
        n = max(int(m.group(1)) for r in resps for m in [re.match(r"\* (\d+) EXISTS", r.first)] if m)
        c.ok("FETCH 1:%d %s" % (n, MUTT_ITEMS))
    c.ok("UID FETCH 3 BODY.PEEK[]")
    c.ok("LOGOUT")
    c.close()
    # \Recent belongs to the first session that sees a message: the second
    # run cannot have it, with or without macros.
    out = []
    for l in g.imapc.format_transcript(c, normalize=True):
        l = _RX_TIMING.sub("", l)
        l = re.sub(r"^S: \* \d+ RECENT$", "S: * n RECENT", l)
        out.append(l.replace("FLAGS (\\Recent)", "FLAGS ()"))
    return out


def section_m():
    """Macros: a mutt session needs fewer round trips on the link, and gets the same responses."""
    g.deliver_n("mia", 20, "m")
    macro_port = int(os.environ["MACRO_PORT"])
    relay("reset")
    plain = mutt_session(PROXY_PORT, "mia")
    up0, down0, turns0 = map(int, relay("stats").split()[1:])
    relay("reset")
    fast = mutt_session(macro_port, "mia")
    up1, down1, turns1 = map(int, relay("stats").split()[1:])
    CHK.log("link without macros: %d round trips, %d bytes up, %d down; with: %d, %d, %d"
            % (turns0, up0, down0, turns1, up1, down1))
    # Each folder open saves the FETCH's round trip (2 direction changes);
    # the timing of pipelined commands varies the rest by one or two.
    CHK.check(turns1 <= turns0 - OPENS, "fewer round trips on the link with macros (%d, without %d, %d folder "
              "opens)" % (turns1, turns0, OPENS))
    CHK.equal(fast, plain, "every response the client receives is the same with and without macros")
    CHK.check(log_count(PROXY_LOG, "from the prefetched FETCH 1:*") >= 1,
              "the proxy answered mutt's FETCH from the prefetch")

    # New mail in IDLE: the gateway pushes it with mutt's items
    # (PIMAP_INBAND_NEW_FORMAT); mutt hears "* n EXISTS" and its FETCH of
    # the new message is answered from the push.
    c = g.imapc.Client("127.0.0.1", macro_port, timeout=20)
    c.label = "mutt-like client, new mail"
    CHK.watch(c)
    c.connect()
    c.login("mia", g.PASS)
    resps = c.ok('SELECT "INBOX"')
    n = max(int(m.group(1)) for r in resps for m in [re.match(r"\* (\d+) EXISTS", r.first)] if m)
    c.ok("FETCH 1:%d %s" % (n, MUTT_ITEMS))
    # IDLE, DONE and a trigger in one write: the macro's prefetch must wait
    # behind the trigger for the IDLE's end, not go into the IDLE.
    for i in range(3):
        c.send(("I%d IDLE\r\nDONE\r\nS%d SELECT \"INBOX\"\r\n" % (i, i)).encode())
        resps = c.wait_tagged("S%d" % i, timeout=15)
        CHK.equal(resps[-1].status, "OK", "IDLE+DONE+SELECT (a trigger) in one write #%d: SELECT OK" % i)
        resps = c.ok("FETCH 1:%d %s" % (n, MUTT_ITEMS), timeout=15)
        CHK.equal(sum(1 for r in resps if " FETCH " in r.first), n, "and the header FETCH after it has all %d" % n)
    answered = log_count(PROXY_LOG, "from the proxy's cache")
    tag, _ = c.send_command("IDLE")
    c.read_response(timeout=5)
    g.deliver_n("mia", 1, "m-new")
    r = c.read_response(timeout=15)
    CHK.equal(r.first, "* %d EXISTS" % (n + 1), "new mail reaches the idling client as EXISTS")
    c.send(b"DONE\r\n")
    c.wait_tagged(tag, timeout=10)
    pushed = c.ok("FETCH %d:%d %s" % (n + 1, n + 1, MUTT_ITEMS))
    CHK.check(log_count(PROXY_LOG, "from the proxy's cache") > answered,
              "the FETCH of the new message was answered from the push")
    # What Dovecot itself says about the message (a session of its own:
    # \Recent belongs to the gateway's session, which saw the message first).
    d = g.store("mia")
    d.ok("EXAMINE INBOX")
    real = d.ok("FETCH %d:%d %s" % (n + 1, n + 1, MUTT_ITEMS))
    d.ok("LOGOUT")
    strip = lambda rs: [(r.first.replace(" \\Recent", "").replace("\\Recent", ""), r.literals) for r in rs[:-1]]
    CHK.equal(strip(pushed), strip(real), "the data answered from the push equals Dovecot's own FETCH of the message")
    c.ok("LOGOUT")


def section_n():
    """One more mutt session on the macro proxy (after a bad reload: the old macros still work)."""
    mutt_session(int(os.environ["MACRO_PORT"]), "mia")


def section_s():
    """A client that reads slowly: the proxy stops reading the gateway, and must not call the link dead."""
    st = g.store("sam")
    body = ("x" * 75 + "\r\n") * 13000          # about 1 MB a message
    for i in range(8):
        st.append("INBOX", ("From: a@example.org\r\nSubject: big %d\r\n\r\n%s" % (i, body)).encode())
    st.logout()
    lost = log_count(PROXY_LOG, "link to the gateway lost")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", PROXY_PORT))
    c = g.imapc.Client("127.0.0.1", PROXY_PORT, timeout=30)
    c.label = "slow reader"
    CHK.watch(c)
    c.sock = sock
    c.read_response(timeout=10)                 # greeting
    c.login("sam", g.PASS)
    c.ok("SELECT INBOX")
    tag, _ = c.send_command("FETCH 1:* BODY.PEEK[]")
    # The scenario itself: a client that does not read for longer than
    # link.heartbeat + link.dead_timeout (2 s + 2 s).
    time.sleep(6)
    resps = c.wait_tagged(tag, timeout=60)
    CHK.equal(resps[-1].status, "OK", "the big FETCH completes for the slow reader")
    CHK.equal(sum(1 for r in resps if " FETCH " in r.first), 8, "all eight messages arrived once")
    CHK.equal(log_count(PROXY_LOG, "link to the gateway lost"), lost, "the link was never declared lost")
    c.ok("LOGOUT")


def section_o():
    """LOGOUT during an outage waits behind the commands sent before it."""
    c = client("olga via proxy", "olga")
    c.select_view("INBOX")
    relay("cut")
    c.send(b"x1 NOOP\r\nx2 LOGOUT\r\n")
    resps = c.wait_tagged("x2", timeout=20)
    firsts = [r.first for r in resps]
    CHK.check(resps[0].tag == "x1" and resps[0].status == "NO" and "[UNAVAILABLE]" in resps[0].first,
              "the NOOP sent before LOGOUT is answered first, NO [UNAVAILABLE]", firsts)
    CHK.check(any(f.startswith("* BYE") for f in firsts) and resps[-1].status == "OK",
              "then BYE and LOGOUT's OK", firsts)
    relay("restore")


def section_t():
    """mutt's $tunnel: pimap-proxy --stdio with a gateway upstream, over plain pipes."""
    import subprocess
    g.deliver_n("tina", 2, "t")
    cmd = [os.environ["PROXY_BIN"], "--stdio", "--upstream", "pimaps://127.0.0.1:%s" % os.environ["RELAY_PORT"],
           "--ca-file", g.CA, "--device-id", "tunnel1", "--state-dir", os.path.join(g.T, "stdio-state"),
           "--no-macros", "--log-file", os.path.join(g.T, "proxy-stdio.log")]
    err = open(os.path.join(g.T, "proxy-stdio.stderr"), "ab")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    p = subprocess.Popen(cmd, stdin=in_r, stdout=out_w, stderr=err)
    os.close(in_r)
    os.close(out_w)
    try:
        c = PimapClient(timeout=20)
        c.label = "stdio tunnel"
        CHK.watch(c)
        greeting = c.attach(g.imapc.PipeTransport(in_w, out_r))
        CHK.check(greeting.status == "OK" and "PREAUTH" not in greeting.first, "greeting OK, not PREAUTH")
        c.login("tina", g.PASS)
        v = c.select_view("INBOX")
        CHK.equal(len(v), 2, "two messages through the tunnel")
        c.logout()
        CHK.equal(p.wait(timeout=15), 0, "the --stdio proxy exits 0 after LOGOUT")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def section_f():
    """STATUS of another folder answered from the STATUS the gateway pushes,
    while it is known to be current; everything else goes upstream."""
    s = g.store("fred")
    s.ok('CREATE "Archive"')
    s.ok('SUBSCRIBE "Archive"')
    s.ok("SUBSCRIBE INBOX")
    c = client("fred via proxy", "fred")
    c.select_view("INBOX")

    def direct(cmd):
        d = g.store("fred")
        r = d.ok(cmd)
        d.ok("LOGOUT")
        return [x.first for x in r[:-1]]

    def local_count():
        return log_count(PROXY_LOG, "from the folder status the gateway pushes")

    n0 = local_count()
    got = [x.first for x in c.ok("STATUS Archive (UIDNEXT MESSAGES UNSEEN RECENT)")[:-1]]
    CHK.equal(got, direct("STATUS Archive (UIDNEXT MESSAGES UNSEEN RECENT)"),
              "STATUS of an empty subscribed folder equals Dovecot's")
    CHK.equal(local_count(), n0 + 1, "and was answered by the proxy (RECENT of an empty folder is 0)")
    pushes = log_count(PROXY_LOG, "S< * STATUS Archive (MESSAGES 1 ")
    s.ok('APPEND "Archive"', g.imapc.Literal(g.imapc.make_message("archived while watched"), sync=False))
    wait_log(PROXY_LOG, "S< * STATUS Archive (MESSAGES 1 ", pushes + 1, 10, "the gateway to push Archive's STATUS")
    got = [x.first for x in c.ok("STATUS Archive (MESSAGES UIDNEXT UNSEEN)")[:-1]]
    CHK.equal(got, direct("STATUS Archive (MESSAGES UIDNEXT UNSEEN)"), "after an APPEND elsewhere the answer is current")
    CHK.equal(local_count(), n0 + 2, "and still answered by the proxy")
    # RECENT of a folder with new mail is not known; SIZE never is
    for cmd in ("STATUS Archive (MESSAGES RECENT)", "STATUS Archive (SIZE)"):
        got = [x.first for x in c.ok(cmd)[:-1]]
        CHK.equal(got, direct(cmd), "%s goes to the server and equals Dovecot's" % cmd)
    CHK.equal(local_count(), n0 + 2, "RECENT of a folder with new mail and SIZE are not answered locally")
    # a folder this link has selected is no longer watched through it
    c.select_view("Archive")
    c.select_view("INBOX")
    got = [x.first for x in c.ok("STATUS Archive (MESSAGES UIDNEXT)")[:-1]]
    CHK.equal(got, direct("STATUS Archive (MESSAGES UIDNEXT)"), "STATUS after selecting the folder equals Dovecot's")
    CHK.equal(local_count(), n0 + 2, "and went upstream: the link stopped covering the folder when it selected it")
    # a pushed STATUS never reaches the client unasked
    lines = g.imapc.format_transcript(c)
    CHK.check(not any(l.startswith("S: * STATUS") and "SIZE" not in l and "RECENT" not in l and "MESSAGES" not in l
                      for l in lines), "no stray STATUS")
    unasked = [l for l in lines if l.startswith("S: * STATUS")]
    CHK.equal(len(unasked), 5, "the client got exactly one STATUS per STATUS command it sent")
    s.ok("LOGOUT")
    c.logout()


def _replies(resps):
    """A command's responses, comparable across servers: untagged lines and
    the tagged status (the tagged text carries timings)."""
    return [r.first for r in resps[:-1]] + [resps[-1].status]


FLAG_STEPS = ("UID STORE 2 +FLAGS (\\Seen)", "STORE 3 +FLAGS (\\Flagged \\Seen)", "STORE 1:2 -FLAGS (\\Seen)",
              "UID STORE 4 FLAGS (\\Answered \\Draft)", "STORE 5 +FLAGS.SILENT (\\Deleted)",
              "UID STORE 2:4 +FLAGS (\\Flagged)", "STORE 6 -FLAGS (\\Seen)")


def section_w():
    """Write-behind STOREs answer as Dovecot would; DONE is answered at once;
    pushed data answers a FETCH while the link hangs; a command with sequence
    numbers waits for the gateway's end of IDLE, and gets NO if an EXPUNGE
    came first."""
    port = int(os.environ["MACRO_PORT"])
    for u in ("walt", "wanda"):
        g.deliver_n(u, 6, "w")
    # (1) the same flag changes directly on Dovecot (wanda) and through the
    # proxy (walt): every reply the same, every STORE answered by the proxy
    d = g.store("wanda")
    d.ok('SELECT "INBOX"')
    d.ok("UID FETCH 1:* (FLAGS)")
    direct = [_replies(d.ok(x)) for x in FLAG_STEPS] + [_replies(d.ok("UID FETCH 1:* (FLAGS)"))]
    d.ok("LOGOUT")
    c = PimapClient("127.0.0.1", port, timeout=20)
    c.label = "write-behind client"
    CHK.watch(c)
    c.connect()
    c.login("walt", g.PASS)
    c.select_view("INBOX")
    c.ok("UID FETCH 1:* (FLAGS)")
    before = log_count(PROXY_LOG, "its STORE follows on the link")
    proxied = [_replies(c.ok(x)) for x in FLAG_STEPS] + [_replies(c.ok("UID FETCH 1:* (FLAGS)"))]
    CHK.equal(proxied, direct, "flag STOREs answered by the proxy equal Dovecot's own replies")
    CHK.equal(log_count(PROXY_LOG, "its STORE follows on the link") - before, len(FLAG_STEPS),
              "every STORE was answered at once and sent behind its answer")
    c.ok("NOOP")
    CHK.equal(g.truth("walt"), g.truth("wanda"), "the store holds the same flags as after the direct session")

    # (2) new mail pushed with mutt's items; the link then hangs: DONE is
    # answered at once, and the pushed message's FETCH from the push
    n = 6
    tag, _ = c.send_command("IDLE")
    c.read_response(timeout=5)
    g.deliver_n("walt", 1, "w-new")
    r = c.read_response(timeout=15)
    CHK.equal(r.first, "* %d EXISTS" % (n + 1), "new mail reaches the idling client")
    relay("stall")
    try:
        c.send(b"DONE\r\n")
        resps = c.wait_tagged(tag, timeout=3)
        CHK.equal(resps[-1].status, "OK", "DONE is answered while the link hangs (no round trip)")
        resps = c.ok("UID FETCH 7 %s" % MUTT_ITEMS, timeout=3)
        CHK.check(any(" FETCH " in x.first for x in resps), "the new message's FETCH is answered from the push "
                  "while the link hangs")
        # a command with sequence numbers waits for the gateway's end of IDLE
        ftag, _ = c.send_command("FETCH 1 (RFC822.SIZE)")
        try:
            got = c.wait_tagged(ftag, timeout=1.0)
            CHK.check(False, "a FETCH with sequence numbers waits for the end of the upstream IDLE", got[-1].first)
        except Exception:
            CHK.check(True, "a FETCH with sequence numbers waits for the end of the upstream IDLE")
    finally:
        relay("restore")
    resps = c.wait_tagged(ftag, timeout=10)
    CHK.equal(resps[-1].status, "OK", "and is answered once the link moves again")

    # (3) an EXPUNGE the gateway pushed before it saw DONE: the waiting
    # sequence-number command gets NO, the client sees the EXPUNGE
    tag, _ = c.send_command("IDLE")
    c.read_response(timeout=5)
    pushed = log_count(GW_LOG, "pushed * 1 EXPUNGE")
    relay("stall")
    try:
        s = g.store("walt")
        s.ok('SELECT "INBOX"')
        s.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        s.ok("EXPUNGE")
        s.ok("LOGOUT")
        wait_log(GW_LOG, "pushed * 1 EXPUNGE", pushed + 1, 10, "the gateway to push the EXPUNGE into the hung link")
        c.send(b"DONE\r\n")
        resps = c.wait_tagged(tag, timeout=3)
        CHK.equal(resps[-1].status, "OK", "DONE answered at once again")
        ftag, _ = c.send_command("FETCH 2 (RFC822.SIZE)")
    finally:
        relay("restore")
    resps = c.wait_tagged(ftag, timeout=10)
    CHK.check(any(x.first == "* 1 EXPUNGE" for x in resps), "the client hears the EXPUNGE",
              [x.first for x in resps])
    CHK.equal(resps[-1].status, "NO", "the FETCH whose numbers crossed the EXPUNGE gets NO")
    resps = c.ok("FETCH 1:* (UID FLAGS)")
    c.view.complete(c)
    check_view(c, "walt", what="after the early DONE, the cache and the crossed EXPUNGE the view equals the store")
    c.ok("LOGOUT")


SECTIONS = {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e,
            "g": section_g, "h": section_h, "m": section_m, "n": section_n,
            "s": section_s, "o": section_o, "t": section_t, "w": section_w, "f": section_f}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        CHK.run(name, SECTIONS[name])
    CHK.finish()
