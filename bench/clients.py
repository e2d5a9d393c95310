#!/usr/bin/env python3
"""clients.py - the client side of bench/link_bench.sh (pimap's link benchmark).

  clients.py run --way N=MODE:HOST:PORT:RELAY_CONTROL ... [--skip N=REASON]...
                 --ca CA --password W --lmtp HOST:PORT --store HOST:PORT
                 --homes DIR --template DIR --users U1,U2,... [--runs N]
                 [--delay MS] [--workloads tb,mutt] --json OUT
        run the two scripted workloads over every way given, at 0 ms and at
        --delay ms per direction on the link, --runs times each, and write
        every sample to OUT
  clients.py report --json OUT [--output FILE] --command CMD [--extra K=V]...
        print the Markdown section (medians, ratios against the targets) and,
        with --output, write it between <!-- bench:link:start --> and
        <!-- bench:link:end --> of FILE (created if missing; the rest is kept)

MODE is how the client reaches the way's entry point: "tls" (implicit TLS,
verified against CA), "tls+compress" (the same, then COMPRESS=DEFLATE right
after authentication) or "plain" (plain IMAP on loopback: pimap-proxy).
RELAY_CONTROL is the control socket of the bench/delay_relay.py sitting on
that way's link; the sample's bytes and round trips are the difference of
its counters around the session.

The workloads (one IMAP connection each, on a fresh copy of the same
1,000-message INBOX; see docs in link_bench.sh and the report text):

  tb    Thunderbird-like: waits for every reply before the next command.
  mutt  mutt-2.2-like, aligned with a recording of the real mutt (see
        wl_mutt): IDLE whenever the user is idle, flags stored in batches
        when the mailbox is synced, queued commands sent in one write.

Both: open and sync the mailbox, read 20 messages (the newest, newest
first), flag 5 of them, move 2 others to "Archive", then IDLE while 10
messages are delivered over LMTP one at a time (each once the client has
fetched the previous one and is in IDLE again), then LOGOUT. Push wait is the
time from the start of an LMTP delivery to the client reading `* n EXISTS`;
active time is the session's wall time (connect to LOGOUT's tagged reply)
minus the push waits.
"""

import argparse
import hashlib
import json
import os
import pwd
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "lib"))
import imapc  # noqa: E402
import perfdoc  # noqa: E402
from delay_relay import Control  # noqa: E402
from pimapc import seqset  # noqa: E402

START = "<!-- bench:link:start -->"
END = "<!-- bench:link:end -->"

TB_HEADERS = ("From To Cc Bcc Subject Date Message-ID Priority X-Priority References "
              "Newsgroups In-Reply-To Content-Type Reply-To")
# mutt 2.2's header list as recorded (the issue's sketch also had X-ORIGINAL-TO)
MUTT_HEADERS = ("DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE "
                "CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL")
TB_HDR_CHUNK = 200      # mail.imap.hdr_chunk_size: Thunderbird fetches headers 200 UIDs at a time
MUTT_PIPELINE_DEPTH = 15
ARCHIVE = "Archive"
READS, FLAGS, MOVES, DELIVERIES = 20, 5, 2, 10
TIMEOUT = 120.0         # bound on any one reply (the 100 ms runs stay far below)

WAY_LABELS = {
    "1": "1. client → TLS → Dovecot",
    "2": "2. client → TLS + COMPRESS=DEFLATE → Dovecot",
    "3": "3. client → pimap-proxy → P-IMAP link → pimap-gateway → Dovecot",
    "4": "4. as 3, proxy macros off",
}
WORKLOAD_LABELS = {"tb": "Thunderbird-like", "mutt": "mutt-like"}

RX_EXISTS = re.compile(r"^\* (\d+) EXISTS", re.I)
RX_EXPUNGE = re.compile(r"^\* (\d+) EXPUNGE", re.I)
RX_FETCH = re.compile(r"^\* (\d+) FETCH ", re.I)
RX_UID = re.compile(r"\bUID (\d+)", re.I)
RX_CAPA = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.I)
RX_LIST = re.compile(r'^\* LIST \(([^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (.*)$', re.I)


class BenchError(Exception):
    pass


def uid_set(uids):
    """Sorted UIDs as an IMAP set with ranges (1:200,205)."""
    return seqset(uids)


def imap_quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def unquote(s):
    s = s.strip()
    if s.startswith('"') and s.endswith('"'):
        return re.sub(r"\\(.)", r"\1", s[1:-1])
    return s


class Session:
    """An imapc.Client plus what a client keeps: EXISTS, UIDs, capabilities,
    and everything fetched (for the digest that every way must agree on)."""

    def __init__(self, client):
        self.c = client
        self.exists = 0
        self.caps = set()
        self.headers = {}
        self.bodies = {}
        self.uids = set()
        self.last_fetch = []    # UIDs seen in FETCH responses of the last command

    def absorb(self, r):
        first = r.first
        m = RX_CAPA.search(r.text)
        if m:
            self.caps = set(m.group(1).upper().split())
        if first.upper().startswith("* CAPABILITY "):
            self.caps = set(first[13:].upper().split())
        m = RX_EXISTS.match(first)
        if m:
            self.exists = int(m.group(1))
            return
        m = RX_EXPUNGE.match(first)
        if m:
            self.exists -= 1
            return
        if RX_FETCH.match(first):
            m = RX_UID.search(r.text)
            if not m:
                return
            uid = int(m.group(1))
            self.uids.add(uid)
            self.last_fetch.append(uid)
            parts = r.parts
            for i, (kind, data) in enumerate(parts):
                if kind != "lit":
                    continue
                before = parts[i - 1][1][-400:].upper()
                if b"HEADER.FIELDS" in before:
                    self.headers[uid] = data
                elif b"BODY[]" in before:
                    self.bodies[uid] = data

    def _check(self, what, resps):
        for r in resps:
            self.absorb(r)
        if resps[-1].status != "OK":
            raise BenchError("%s: %s" % (what, resps[-1].first))
        return resps

    def cmd(self, text):
        self.last_fetch = []
        _, resps = self.c.command(text, timeout=TIMEOUT)
        return self._check(text, resps)

    def pipeline(self, texts):
        """Send every command in one write, then read every tagged reply."""
        self.last_fetch = []
        tags, wire = [], b""
        for t in texts:
            tag = self.c.next_tag()
            line = ("%s %s\r\n" % (tag, t)).encode()
            self.c.transcript.append(("C", "raw", line))
            tags.append(tag)
            wire += line
        self.c.send(wire, record=False)
        resps = self.c.wait_all_tagged(tags, timeout=TIMEOUT)
        for r in resps:
            self.absorb(r)
        bad = [r for r in resps if r.tag in tags and r.status != "OK"]
        if bad:
            raise BenchError("pipelined command failed: %s" % bad[0].first)
        return resps

    def idle_begin(self, word="IDLE"):
        tag = self.c.next_tag()
        self.c.send("%s %s\r\n" % (tag, word))
        deadline = time.monotonic() + TIMEOUT
        while True:
            r = self.c.read_response(timeout=max(0.0, deadline - time.monotonic()))
            if r.is_continuation:
                return tag
            if r.tag == tag:
                raise BenchError("IDLE refused: %s" % r.first)
            self.absorb(r)

    def wait_exists(self, n, timeout=60.0):
        deadline = time.monotonic() + timeout
        while self.exists < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("no * %d EXISTS within %.0f s" % (n, timeout))
            self.absorb(self.c.read_response(timeout=left))
        return time.monotonic()

    def idle_end(self, tag):
        return self._check("DONE", self.c.idle_done(tag, timeout=TIMEOUT))

    def logout(self, word="LOGOUT"):
        self.cmd(word)
        self.c.close()

    def digest(self):
        h = hashlib.sha256()
        for uid in sorted(self.headers):
            h.update(b"H%d:" % uid + self.headers[uid])
        for uid in sorted(self.bodies):
            h.update(b"B%d:" % uid + self.bodies[uid])
        return h.hexdigest()


def new_message(i):
    return imapc.make_message("link bench arrival %d" % i,
                              body="New message number %d of the link benchmark.\n" % i)


class Ctx:
    """What a workload needs besides the connection."""

    def __init__(self, user, password, compress, lmtp):
        self.user, self.password, self.compress, self.lmtp = user, password, compress, lmtp
        self.push = []

    def deliver_and_wait(self, s, i):
        want = s.exists + 1
        t0 = time.monotonic()
        imapc.deliver(self.lmtp, self.user, new_message(i))
        seen = s.wait_exists(want)
        self.push.append(seen - t0)


def choose(uids):
    """The messages a user works on: the 20 newest are read (newest first);
    5 of them are flagged, 2 others moved to Archive."""
    newest = sorted(uids)[-READS:][::-1]
    flagged = [newest[i] for i in range(0, 4 * FLAGS, 4)]
    moved = [u for u in newest if u not in flagged][:MOVES]
    return newest, flagged, moved


def wl_thunderbird(s, ctx):
    """Thunderbird 153 on one connection (see docs: ENVIRONMENT-NOTES)."""
    c = s.c
    if not s.caps:
        s.cmd("capability")
    s._check("authenticate", c.authenticate_plain(ctx.user, ctx.password, initial_response=False,
                                                  timeout=TIMEOUT))
    if not RX_CAPA.search(c.responses[-1].text):
        s.cmd("capability")
    if ctx.compress:
        if "COMPRESS=DEFLATE" not in s.caps:
            raise BenchError("COMPRESS=DEFLATE not offered")
        r = c.compress()
        if r.status != "OK":
            raise BenchError("COMPRESS refused: %s" % r.first)
    if "ID" in s.caps:
        s.cmd('ID ("name" "Thunderbird" "version" "153.0")')
    if "NAMESPACE" in s.caps:
        s.cmd("NAMESPACE")
    folders = []
    for r in s.cmd('LIST (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)'):
        m = RX_LIST.match(r.first)
        if m and "\\noselect" not in m.group(1).lower() and "\\nonexistent" not in m.group(1).lower():
            folders.append(unquote(m.group(2)))
    for f in folders:
        if f.upper() != "INBOX":
            s.cmd("STATUS %s (UIDNEXT MESSAGES UNSEEN RECENT)" % imap_quote(f))
    s.cmd('select "INBOX"')
    s.cmd("UID fetch 1:* (FLAGS)")
    uids = sorted(s.uids)
    hdr = "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)])" % TB_HEADERS
    for i in range(0, len(uids), TB_HDR_CHUNK):
        s.cmd("UID fetch %s %s" % (uid_set(uids[i:i + TB_HDR_CHUNK]), hdr))
    read, flagged, moved = choose(uids)
    for u in read:
        s.cmd("UID fetch %d (UID RFC822.SIZE BODY.PEEK[])" % u)
        s.cmd("UID store %d +Flags (\\Seen)" % u)
    for u in flagged:
        s.cmd("UID store %d +Flags (\\Flagged)" % u)
    for u in moved:
        if "MOVE" in s.caps:
            s.cmd('UID move %d "%s"' % (u, ARCHIVE))
        else:
            s.cmd('UID copy %d "%s"' % (u, ARCHIVE))
            s.cmd("UID store %d +Flags (\\Deleted)" % u)
            s.cmd("UID expunge %d" % u if "UIDPLUS" in s.caps else "expunge")
    top = max(uids)
    for i in range(DELIVERIES):
        tag = s.idle_begin("IDLE")
        ctx.deliver_and_wait(s, i)
        s.idle_end(tag)
        s.cmd("noop")
        s.cmd("UID fetch %d:* (FLAGS)" % (top + 1))
        new = sorted(u for u in s.last_fetch if u > top)
        if not new:
            raise BenchError("UID fetch %d:* (FLAGS) found no new message" % (top + 1))
        s.cmd("UID fetch %s %s" % (uid_set(new), hdr))
        for u in new:
            s.cmd("UID fetch %d (UID RFC822.SIZE BODY.PEEK[])" % u)
        top = max(new)
    s.logout("logout")


def wl_mutt(s, ctx):
    """mutt 2.2 with imap_idle set, other settings at their defaults, as
    recorded (/tmp/mutt-trace.txt: mutt -> pimap-proxy --trace -> Dovecot):
    AUTHENTICATE PLAIN with SASL-IR, CAPABILITY, ENABLE UTF8=ACCEPT,
    LIST "" "", SELECT, one header FETCH 1:N, IDLE whenever the user is idle
    (DONE before the next command), on new mail DONE and FETCH n:m (no NOOP);
    a read is UID FETCH u BODY.PEEK[] and its \\Seen is only stored when the
    mailbox is synced (on close, one UID STORE per flag for all messages,
    with "Old" on the unread ones), then CLOSE and LOGOUT. A message saved
    elsewhere has its changed flags stored first (mutt's
    imap_sync_message_for_copy), queued and sent in one write with the UID MOVE;
    queued commands are flushed in one write (up to 15)."""
    queue = []

    def flush_with(text=None):
        batch = queue[:] + ([text] if text else [])
        del queue[:]
        if batch:
            s.pipeline(batch)

    def enqueue(text):
        queue.append(text)
        if len(queue) >= MUTT_PIPELINE_DEPTH:
            flush_with()

    if not s.caps:
        s.cmd("CAPABILITY")
    s._check("AUTHENTICATE", s.c.authenticate_plain(ctx.user, ctx.password, initial_response=True,
                                                    timeout=TIMEOUT))
    s.cmd("CAPABILITY")
    if ctx.compress:
        if "COMPRESS=DEFLATE" not in s.caps:
            raise BenchError("COMPRESS=DEFLATE not offered")
        r = s.c.compress()
        if r.status != "OK":
            raise BenchError("COMPRESS refused: %s" % r.first)
    if "ENABLE" in s.caps:
        s.cmd("ENABLE UTF8=ACCEPT")
    s.cmd('LIST "" ""')
    s.cmd('SELECT "INBOX"')
    hdr = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)])" % MUTT_HEADERS
    s.cmd("FETCH 1:%d %s" % (s.exists, hdr))
    all_uids = set(s.uids)
    read, flagged, moved = choose(all_uids)
    # The index is shown; mutt idles until the user's first key.
    s.idle_end(s.idle_begin("IDLE"))
    seen = []
    for u in read:
        s.cmd("UID FETCH %d BODY.PEEK[]" % u)
        seen.append(u)
    deleted = []
    for u in moved:
        flags = "\\Seen \\Flagged" if u in flagged else "\\Seen"
        enqueue("UID STORE %d FLAGS.SILENT (%s)" % (u, flags))
        if "MOVE" in s.caps:
            flush_with('UID MOVE %d "%s"' % (u, ARCHIVE))
        else:
            flush_with('UID COPY %d "%s"' % (u, ARCHIVE))
            deleted.append(u)
    gone = set(moved) - set(deleted)
    for i in range(DELIVERIES):
        tag = s.idle_begin("IDLE")
        old = s.exists
        ctx.deliver_and_wait(s, i)
        s.idle_end(tag)
        s.cmd("FETCH %d:%d %s" % (old + 1, s.exists, hdr))
    all_uids |= set(s.uids)
    # Quit: leave IDLE, sync the flags changed locally, CLOSE, LOGOUT.
    s.idle_end(s.idle_begin("IDLE"))
    if deleted:
        enqueue("UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid_set(deleted))
    fl = [u for u in flagged if u not in gone]
    if fl:
        enqueue("UID STORE %s +FLAGS.SILENT (\\Flagged)" % uid_set(fl))
    unread = sorted(all_uids - set(seen) - set(moved))
    if unread:
        enqueue("UID STORE %s +FLAGS.SILENT (Old)" % uid_set(unread))
    rd = [u for u in seen if u not in gone]
    if rd:
        enqueue("UID STORE %s +FLAGS.SILENT (\\Seen)" % uid_set(rd))
    flush_with()
    s.cmd("CLOSE")
    s.logout("LOGOUT")


WORKLOADS = {"tb": wl_thunderbird, "mutt": wl_mutt}


# --- the mailbox of one session ---------------------------------------------------

def prepare_user(args, user, with_mail=True):
    """A fresh copy of the template mailbox (hard links: Dovecot only renames
    and unlinks maildir files), an empty Archive, INBOX and Archive
    subscribed, and Dovecot's index and cache warmed with both workloads'
    header fields, over a direct connection that is not on any link."""
    home = os.path.join(args.homes, user)
    md = os.path.join(home, "Maildir")
    if os.path.exists(os.path.join(md, "cur")):
        raise BenchError("user %s was used already" % user)
    mail = pwd.getpwnam("mail")
    for d in ("", "cur", "new", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
        os.chown(os.path.join(md, d), mail.pw_uid, mail.pw_gid)
    if with_mail:
        src = os.path.join(args.template, "new")
        for name in os.listdir(src):
            os.link(os.path.join(src, name), os.path.join(md, "new", name))
    host, _, port = args.store.rpartition(":")
    c = imapc.Client(host, int(port), timeout=TIMEOUT)
    c.connect()
    c.login(user, args.password)
    c.ok('CREATE "%s"' % ARCHIVE)
    c.ok("SUBSCRIBE INBOX")
    c.ok('SUBSCRIBE "%s"' % ARCHIVE)
    c.ok("SELECT INBOX")
    if with_mail:
        c.ok("FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)] "
             "BODY.PEEK[HEADER.FIELDS (%s)])" % (TB_HEADERS, MUTT_HEADERS), timeout=TIMEOUT)
    c.ok("LOGOUT")
    c.close()


def verify_user(args, user, nmsg):
    """What the session did, as the store sees it (direct connection)."""
    host, _, port = args.store.rpartition(":")
    c = imapc.Client(host, int(port), timeout=TIMEOUT)
    c.connect()
    c.login(user, args.password)

    def status(box):
        for r in c.ok("STATUS %s (MESSAGES)" % imap_quote(box)):
            m = re.search(r"MESSAGES (\d+)", r.first)
            if m and r.first.startswith("* STATUS"):
                return int(m.group(1))
        return None

    def count(crit):
        for r in c.ok("SEARCH %s" % crit):
            if r.first.startswith("* SEARCH"):
                return len(r.first.split()) - 2
        return None

    got = {"inbox": status("INBOX"), "archive": status(ARCHIVE)}
    c.ok("EXAMINE INBOX")
    got["flagged"] = count("FLAGGED")
    got["seen"] = count("SEEN")
    c.ok("LOGOUT")
    c.close()
    want = {"inbox": nmsg + DELIVERIES - MOVES, "archive": MOVES, "flagged": FLAGS,
            "seen": READS - MOVES}
    if got != want:
        raise BenchError("store state after the session: %r, expected %r" % (got, want))


# --- running --------------------------------------------------------------------------

class Way:
    def __init__(self, spec):
        num, _, rest = spec.partition("=")
        mode, host, port, ctl = rest.split(":", 3)
        if mode not in ("tls", "tls+compress", "plain"):
            raise SystemExit("bad mode %r in --way %s" % (mode, spec))
        self.num, self.mode, self.host, self.port = num, mode, host, int(port)
        self.relay = Control(ctl)


def settle(relay, base_open, timeout=15.0):
    """Wait until the link is quiet after a session: the relay has no more
    connections open than before it, or (a proxy may keep its connection)
    its counters stopped moving for a second. Returns the final stats."""
    deadline = time.monotonic() + timeout
    last = relay.stats()
    still_since = time.monotonic()
    while True:
        time.sleep(0.05)
        cur = relay.stats()
        moved = (cur["up"], cur["down"], cur["changes"]) != (last["up"], last["down"], last["changes"])
        if moved:
            still_since = time.monotonic()
        if cur["open"] <= base_open and not moved:
            return cur, "closed"
        if time.monotonic() - still_since >= 1.0:
            return cur, "quiet"
        if time.monotonic() > deadline:
            return cur, "timeout"
        last = cur


def content_floor(c):
    """What any link must carry at least for this session: the bytes the
    client sent and received (plain IMAP, as in way 1), each direction
    compressed with xz -9e (LZMA over the whole session, far stronger than
    any stream compression a link can use)."""
    import lzma
    sent, got = [], []
    for direction, kind, item in c.transcript:
        if direction == "S":
            got.append(item.raw)
        elif direction == "C" and isinstance(item, bytes):
            sent.append(item)
    pack = lambda parts: len(lzma.compress(b"".join(parts), preset=9 | lzma.PRESET_EXTREME))
    return pack(sent) + pack(got)


def one_session(args, way, workload, user, delay):
    prepare_user(args, user)
    before = way.relay.stats()
    tls = way.mode.startswith("tls")
    c = imapc.Client(way.host, way.port, tls=tls, cafile=args.ca if tls else None, timeout=TIMEOUT)
    s = Session(c)
    ctx = Ctx(user, args.password, way.mode == "tls+compress", args.lmtp)
    t0 = time.monotonic()
    try:
        g = c.connect()
        if g.status not in ("OK", "PREAUTH"):
            raise BenchError("greeting: %s" % g.first)
        s.absorb(g)
        WORKLOADS[workload](s, ctx)
    except (imapc.IMAPError, OSError) as e:
        raise BenchError("%s: %s" % (type(e).__name__, e))
    finally:
        c.close()
        if args.transcripts:
            os.makedirs(args.transcripts, exist_ok=True)
            name = "%gms-%s-way%s-%s.txt" % (delay, workload, way.num, user)
            with open(os.path.join(args.transcripts, name), "w") as f:
                f.write("\n".join(imapc.format_transcript(c)) + "\n")
    total = time.monotonic() - t0
    after, how = settle(way.relay, before["open"])
    verify_user(args, user, args.messages)
    return {"way": way.num, "workload": workload, "delay_ms": delay, "user": user,
            "total": total, "active": total - sum(ctx.push), "push": ctx.push,
            "up": after["up"] - before["up"], "down": after["down"] - before["down"],
            "round_trips": after["changes"] - before["changes"],
            "connections": after["connections"] - before["connections"],
            "settled": how, "digest": s.digest(), "floor": content_floor(c) if way.num == "1" else None}


def warm_session(args, way, user):
    """Start every process on the way (TLS, Dovecot's login and auth
    processes, the proxy's and gateway's first session); not measured."""
    prepare_user(args, user, with_mail=False)
    tls = way.mode.startswith("tls")
    c = imapc.Client(way.host, way.port, tls=tls, cafile=args.ca if tls else None, timeout=TIMEOUT)
    try:
        c.connect()
        c.login(user, args.password)
        c.ok("SELECT INBOX")
        c.ok("LOGOUT")
    except (imapc.IMAPError, OSError) as e:
        raise BenchError("%s: %s" % (type(e).__name__, e))
    finally:
        c.close()
    settle(way.relay, 0)


def log(msg):
    print("[clients] %s" % msg, file=sys.stderr, flush=True)


def run_concurrently(jobs):
    """Run (way, function) pairs at the same time, one thread each; return
    {way number: ("ok", result) or ("err", BenchError)}."""
    import threading
    results = {}

    def target(way, fn):
        try:
            results[way.num] = ("ok", fn())
        except BenchError as e:
            results[way.num] = ("err", e)
        except Exception as e:      # a bug must not hang the other threads' join
            results[way.num] = ("err", BenchError("%s: %s" % (type(e).__name__, e)))

    threads = [threading.Thread(target=target, args=j, daemon=True) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cmd_run(args):
    ways = [Way(w) for w in args.way]
    skipped = dict(s.split("=", 1) for s in args.skip)
    workloads = args.workloads.split(",")
    users = args.users.split(",")
    need = len(ways) * (1 + 2 * args.runs * len(workloads))
    if len(users) < need:
        raise SystemExit("%d users given, %d needed" % (len(users), need))
    users.reverse()
    failed = {}
    samples = []
    t_start = time.monotonic()

    def record(w, wl, delay, run, outcome):
        status, val = outcome
        if status == "err":
            if w.num in ("1", "2"):
                raise SystemExit("way %s, %s, %g ms: %s" % (w.num, wl, delay, val))
            failed[w.num] = "session failed|%s workload, %g ms: %s" % (wl, delay, val)
            log("way %s: session failed (%s, %g ms): %s; skipping this way from now on"
                % (w.num, wl, delay, val))
            return
        val["run"] = run
        samples.append(val)
        log("%g ms run %d %-4s way %s: up %d B, down %d B, %d direction changes, "
            "active %.2f s, push median %.0f ms (%s)"
            % (delay, run, wl, w.num, val["up"], val["down"], val["round_trips"], val["active"],
               1000 * statistics.median(val["push"]), val["settled"]))

    def session_job(w, wl, user, delay):
        return lambda: one_session(args, w, wl, user, delay)

    for w in ways:
        try:
            warm_session(args, w, users.pop())
        except BenchError as e:
            if w.num in ("1", "2"):
                raise SystemExit("way %s: warm-up failed: %s" % (w.num, e))
            failed[w.num] = "warm-up session failed|%s" % e
            log("way %s: warm-up session failed: %s" % (w.num, e))
    for delay in (0.0, args.delay):
        for w in ways:
            w.relay.set_delay(delay)
        # Without delay only bytes and round trips are kept: each way has its
        # own relay, user and connections, so the ways run at the same time
        # (unless --serial). With the delay, one session at a time.
        concurrent = delay == 0.0 and not args.serial
        for run in range(args.runs):
            for wl in workloads:
                jobs = []
                for w in ways:
                    user = users.pop()
                    if w.num not in failed:
                        jobs.append((w, session_job(w, wl, user, delay)))
                if concurrent:
                    results = run_concurrently(jobs)
                    for w, _ in jobs:
                        record(w, wl, delay, run, results[w.num])
                else:
                    for w, job in jobs:
                        if w.num in failed:
                            continue
                        record(w, wl, delay, run, run_concurrently([(w, job)])[w.num])
    # every way must have fetched exactly the same data for a workload
    mismatch = []
    for wl in workloads:
        ds = {}
        for s in samples:
            if s["workload"] == wl:
                ds.setdefault(s["digest"], []).append("%s/%g" % (s["way"], s["delay_ms"]))
        if len(ds) > 1:
            mismatch.append("%s: %r" % (wl, ds))
    for w in ways:
        if w.num not in failed and not any(s["way"] == w.num for s in samples):
            failed[w.num] = "no sample|every session of this way failed"
    out = {"samples": samples, "runs": args.runs, "delay_ms": args.delay,
           "messages": args.messages, "workloads": workloads,
           "ways": [w.num for w in ways] + sorted(skipped),
           "failed": failed, "skipped": skipped, "mismatch": mismatch,
           "serial": bool(args.serial), "elapsed": time.monotonic() - t_start}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    if mismatch:
        raise SystemExit("the ways fetched different data: %s" % "; ".join(mismatch))


# --- the report -------------------------------------------------------------------------

def _med(xs):
    return statistics.median(xs) if xs else None


def cmd_report(args):
    with open(args.json) as f:
        res = json.load(f)
    extra = dict(e.split("=", 1) for e in args.extra)
    delay = res["delay_ms"]
    samples = res["samples"]
    unavailable = {}        # way -> (short reason, detail)
    for way, why in list(res.get("skipped", {}).items()) + list(res.get("failed", {}).items()):
        short, _, detail = why.partition("|")
        unavailable[way] = (short, detail)

    def missing(*ways):
        for w in ways:
            if w in unavailable:
                return "not measured: way %s: %s" % (w, unavailable[w][0])
        for w in ways:
            if not any(s["way"] == w for s in samples):
                return "not measured: way %s was not run (see --ways)" % w
        return "not measured"

    def pick(way, wl, d):
        return [s for s in samples if s["way"] == way and s["workload"] == wl and s["delay_ms"] == d]

    med = {}
    for wl in res["workloads"]:
        for way in sorted(WAY_LABELS):
            z, dd = pick(way, wl, 0.0), pick(way, wl, delay)
            if not z and not dd:
                continue
            m = {}
            if z:
                m["up"] = _med([s["up"] for s in z])
                m["down"] = _med([s["down"] for s in z])
                m["total"] = _med([s["up"] + s["down"] for s in z])
                m["rt"] = _med([s["round_trips"] for s in z])
                m["active0"] = _med([s["active"] for s in z])
                floors = [s["floor"] for s in z if s.get("floor")]
                if floors:
                    m["floor"] = _med(floors)
            if dd:
                m["active"] = _med([s["active"] for s in dd])
                m["push"] = _med([statistics.median(s["push"]) for s in dd])
            med[(wl, way)] = m

    def n(x):
        return "–" if x is None else format(int(round(x)), ",")

    def secs(x):
        return "–" if x is None else "%.2f s" % x

    L = [START, "## The link: pimap-proxy and pimap-gateway against direct IMAP", ""]
    L.append("Generated by `%s` on %s." % (args.command, extra.get("date", "?")))
    L.append("")
    L.append("Machine: %s CPUs, %s; %s. Dovecot %s; %s; %s; Python %s."
             % (extra.get("nproc", "?"), extra.get("cpu", "?"), extra.get("kernel", "?"),
                extra.get("dovecot", "?"), extra.get("proxy", "?"), extra.get("gateway", "?"),
                extra.get("python", "?")))
    L.append("")
    L.append("Mailbox: a fresh copy for every session of the same %s-message INBOX (%s, median %s "
             "per message; `bench/workload.py populate`, seed 1) and an empty, subscribed "
             "`Archive`; Dovecot's index and cache are warmed beforehand with both workloads' "
             "header fields, over a connection that is not on the link."
             % (format(res["messages"], ","), extra.get("total", "?"), extra.get("median", "?")))
    L.append("")
    L.append("Each workload is one scripted IMAP session, identical in every run "
             "(`bench/clients.py`): it opens INBOX, syncs flags and headers, reads the %d newest "
             "messages, flags %d of them, moves %d others to `Archive`, then IDLEs while %d "
             "messages are delivered over LMTP, one at a time, each once the client has fetched "
             "the previous one and is in IDLE again; then LOGOUT." % (READS, FLAGS, MOVES, DELIVERIES))
    L.append("")
    L.append("- **Thunderbird-like** (its observed command pattern; waits for every reply): "
             "AUTHENTICATE PLAIN without SASL-IR, ID, NAMESPACE, "
             "`LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)`, STATUS of every other folder, "
             "SELECT, `UID fetch 1:* (FLAGS)`, the header fetch "
             "`UID fetch <set> (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)])` %d UIDs at a "
             "time, a read is `UID fetch u (UID RFC822.SIZE BODY.PEEK[])` then "
             "`UID store u +Flags (\\Seen)`, a flag `UID store u +Flags (\\Flagged)`, a move "
             "`UID move u \"Archive\"`; on `* n EXISTS` in IDLE: DONE, NOOP, `UID fetch n:* (FLAGS)`, "
             "the header fetch and the body fetch of the new message, IDLE again."
             % (TB_HEADERS, TB_HDR_CHUNK))
    L.append("- **mutt-like** (mutt 2.2 with `imap_idle`, as recorded from the real mutt): "
             "AUTHENTICATE PLAIN with SASL-IR, CAPABILITY, `ENABLE UTF8=ACCEPT`, `LIST \"\" \"\"`, "
             "SELECT, `FETCH 1:N (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)])`, "
             "IDLE while the user is idle (DONE before the next command); a read is "
             "`UID FETCH u BODY.PEEK[]`, its `\\Seen` stored only when the mailbox is synced; a move "
             "is `UID STORE u FLAGS.SILENT (\\Seen)` and `UID MOVE u \"Archive\"` in one write; on new "
             "mail in IDLE: DONE, `FETCH n:m` of the same items, IDLE again; on quit: DONE, one "
             "`UID STORE <set> +FLAGS.SILENT (...)` each for `\\Flagged`, `Old` (the unread messages) "
             "and `\\Seen`, pipelined in one write (mutt queues up to %d commands), then CLOSE and "
             "LOGOUT." % (MUTT_HEADERS, MUTT_PIPELINE_DEPTH))
    L.append("")
    L.append("Ways: (1) the client speaks implicit TLS to Dovecot's imaps port, without COMPRESS; "
             "(2) the same with COMPRESS=DEFLATE right after authentication; (3) the client speaks "
             "plain IMAP on loopback to pimap-proxy, whose upstream is pimap-gateway "
             "(`pimaps://`, device `bench1`), which is in front of the same Dovecot; (4) as (3) "
             "with the proxy's macros off (`--set macros.enabled=false`). **The link** is "
             "client↔Dovecot in ways 1–2 and proxy↔gateway in ways 3–4: "
             "`bench/delay_relay.py` sits there and counts every byte crossing it (TLS records and "
             "handshake included; *up* is towards the server) and the round trips, i.e. the "
             "direction changes: a chunk read from one side after a chunk from the other side "
             "counts one (so a command waited for and its reply count about two). Bytes and round trips come from the runs with no added delay; the times "
             "from runs where the relay holds each chunk %g ms in each direction (order kept; "
             "netem is not available on these machines). Active time is the session's wall time "
             "(connect to LOGOUT's reply) without the push waits; push wait is the time from the "
             "start of an LMTP delivery to the client reading `* n EXISTS` (Dovecot itself waits "
             "about 0.5 s before it notifies an IDLE client)." % delay)
    L.append("")
    if extra.get("sanitizer", "none") != "none":
        L.append("**Warning: built with %s; times are not representative.**" % extra["sanitizer"])
        L.append("")
    L.append("%s per way and delay, one unmeasured warm-up session per way first. The runs "
             "without delay %s; the runs with the delay go one session at a time, ways interleaved."
             % ("Medians of %d runs" % res["runs"] if res["runs"] > 1 else "One run",
                "also went one session at a time" if res.get("serial") else
                "ran the ways at the same time (each way has its own relay, user and "
                "connections; bytes and round trips do not depend on timing)"))
    for wl in res["workloads"]:
        L.append("")
        L.append("### %s workload" % WORKLOAD_LABELS[wl])
        L.append("")
        L.append("| way | bytes up | bytes down | total | round trips (direction changes) | active time at %g ms | "
                 "push wait at %g ms (median per message) |" % (delay, delay))
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for way in sorted(WAY_LABELS):
            m = med.get((wl, way))
            if m is None:
                if way in unavailable:
                    L.append("| %s | not measured: %s | | | | | |" % (WAY_LABELS[way], unavailable[way][0]))
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                WAY_LABELS[way], n(m.get("up")), n(m.get("down")), n(m.get("total")),
                n(m.get("rt")), secs(m.get("active")),
                "–" if m.get("push") is None else "%.0f ms" % (1000 * m["push"])))
    L.append("")
    L.append("### Targets")
    L.append("")

    def ratio_line(what, num, den, target, cmp_le=True):
        if num is None or den is None:
            return None
        r = num / den
        ok = r <= target
        return "%.2f× (target ≤ %s: %s)" % (r, "%.2f×" % target if target != 1 / 3.0 else "1/3",
                                             "met" if ok else "**not met**")

    for wl in res["workloads"]:
        m2, m3 = med.get((wl, "2"), {}), med.get((wl, "3"), {})
        r = ratio_line("bytes", m3.get("total"), m2.get("total"), 0.7)
        L.append("- %s, bytes on the link, way 3 / way 2: %s" % (WORKLOAD_LABELS[wl], r or missing("3", "2")))
        fl = med.get((wl, "1"), {}).get("floor")
        if fl and m2.get("total"):
            L.append("  - floor: what the client sends and receives in this session, each direction compressed "
                     "as a whole with xz -9e, is %s bytes, %.2f× of way 2, before any TLS or framing: a link "
                     "that carries all of it losslessly cannot get much below that"
                     % (format(int(fl), ","), fl / m2["total"]))
    m1, m3 = med.get(("tb", "1"), {}), med.get(("tb", "3"), {})
    r = ratio_line("time", m3.get("active"), m1.get("active"), 1 / 3.0)
    if "tb" in res["workloads"]:
        L.append("- Thunderbird-like, active time at %g ms, way 3 / way 1: %s" % (delay, r or missing("3", "1")))
    for wl in res["workloads"]:
        m1, m2, m4 = med.get((wl, "1"), {}), med.get((wl, "2"), {}), med.get((wl, "4"), {})
        info = []
        if m1.get("total") and m2.get("total"):
            info.append("bytes way 2 / way 1 %.2f×" % (m2["total"] / m1["total"]))
        if m1.get("active") and m2.get("active"):
            info.append("active time way 2 / way 1 %.2f×" % (m2["active"] / m1["active"]))
        if m4.get("total") and m2.get("total"):
            info.append("bytes way 4 / way 2 %.2f×" % (m4["total"] / m2["total"]))
        if m4.get("active") and m1.get("active"):
            info.append("active time way 4 / way 1 %.2f×" % (m4["active"] / m1["active"]))
        if info:
            L.append("- For reference, %s: %s." % (WORKLOAD_LABELS[wl], "; ".join(info)))
    if unavailable:
        L.append("")
        L.append("Not measured:")
        L.append("")
        for way in sorted(unavailable):
            short, detail = unavailable[way]
            L.append("- way %s: %s%s" % (way, short, " (%s)" % detail if detail else ""))
    L.append("")
    L.append("Raw samples: at 0 ms bytes up/down and round trips; at %g ms active time and "
             "the sum of the %d push waits (bytes up/down in parentheses):" % (delay, DELIVERIES))
    L.append("")
    for wl in res["workloads"]:
        for way in sorted(WAY_LABELS):
            z, dd = pick(way, wl, 0.0), pick(way, wl, delay)
            if not z and not dd:
                continue
            L.append("- %s, way %s: 0 ms: %s; %g ms: %s" % (
                wl, way, "; ".join("%d/%d, %d" % (s["up"], s["down"], s["round_trips"]) for s in z) or "–",
                delay, "; ".join("%.2f s, %.2f s (%d/%d)" % (s["active"], sum(s["push"]), s["up"], s["down"])
                                 for s in dd) or "–"))
    L.append("")
    L.append("The whole run took %.0f s." % res.get("elapsed", 0))
    L.append(END)
    section = "\n".join(L) + "\n"
    if args.output:
        perfdoc.write_section(args.output, START, END, section)
    sys.stdout.write(section)
    # Bytes from the runs without delay, time: the active time at the delay.
    chart_ways = {"1": "plain", "2": "compress", "3": "pimap", "4": "pimap-nomacros"}
    for wl in res["workloads"]:
        rows = [(chart_ways[way], med[(wl, way)].get("total"), med[(wl, way)].get("active"))
                for way in sorted(WAY_LABELS) if (wl, way) in med and way in chart_ways]
        perfdoc.append_chart_rows(args.chart, "%s, link at %g ms" % (WORKLOAD_LABELS[wl], delay), rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--way", action="append", default=[], required=True,
                   metavar="N=MODE:HOST:PORT:RELAY_CONTROL")
    r.add_argument("--skip", action="append", default=[], metavar="N=REASON")
    r.add_argument("--ca", required=True)
    r.add_argument("--password", required=True)
    r.add_argument("--lmtp", required=True)
    r.add_argument("--store", required=True, help="Dovecot's plain IMAP port, HOST:PORT (setup, checks)")
    r.add_argument("--homes", required=True)
    r.add_argument("--template", required=True)
    r.add_argument("--users", required=True)
    r.add_argument("--messages", type=int, default=1000)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--delay", type=float, default=100.0)
    r.add_argument("--workloads", default="tb,mutt")
    r.add_argument("--transcripts", metavar="DIR",
                   help="write every measured session's protocol transcript (client side) here")
    r.add_argument("--serial", action="store_true",
                   help="run the 0 ms sessions one at a time too (slower)")
    r.add_argument("--json", required=True)
    o = sub.add_parser("report")
    o.add_argument("--json", required=True)
    o.add_argument("--output")
    o.add_argument("--command", required=True)
    o.add_argument("--chart", help="append chart rows (perfdoc.append_chart_rows) to this file")
    o.add_argument("--extra", action="append", default=[], metavar="K=V")
    args = ap.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
