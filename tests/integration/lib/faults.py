#!/usr/bin/env python3
"""faults - the workload side of t_faults.sh (the fault-injection matrix).

  faults.py round --name NAME --users U1,U2 --clients N --duration S --seed S
                  --ready FILE --result FILE [--mail-to USER]

Clients of pimap-proxy (stock IMAP: they never see P-IMAP), N per user, each
logged in, INBOX selected and modelled (pimapc.View: built only from what
the proxy tells the client, checked as every response arrives). For
--duration seconds every client runs random operations (seeded), while a
deliverer sends LMTP messages to the users: FETCH of flags, STORE +FLAGS /
-FLAGS (not silent), UID FETCH of a message, a short IDLE, APPEND, a UID
EXPUNGE of a message it flagged \\Deleted, NOOP. --ready is created once
every client is in; the shell injects its fault meanwhile.

A client whose connection ends (BYE or a close) was told to resynchronise:
it logs in again (retrying for up to RECONNECT_FOR seconds: the daemons must
recover on their own), selects INBOX afresh and goes on; that is counted,
not a failure. A command refused with NO (a link that stayed down, numbers
that changed under a resume) has no effect on the model and is counted. A
failure is: a response that cannot apply to the client's model
(ViewError), a command without a reply in REPLY_TIMEOUT seconds, a login
that never works again, or, at the end, a model that differs from the
store's real state. At the end every client sends NOOP (until its model
equals the store, up to FINAL_WAIT seconds: events may still be on their
way) and LOGOUT.

With --mail-to (and PROXY_SMTP_PORT set), the first user also sends mail
to USER through pimap-proxy's SMTP listener (AUTH PLAIN, one message every
0.2-0.7 s, each with its own Message-ID). At the end every message the
proxy accepted with 250 must be in USER's mailbox exactly once, or (queued,
then failed for good) reported back to the sender in a delivery report in
the sender's INBOX (queued ones are retried: up to DELIVERY_WAIT seconds),
and no message may be in USER's mailbox twice. --result gets a JSON summary; exit 0 if nothing failed.
"""

import argparse
import json
import os
import random
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gw_common as g                                     # noqa: E402
import imapc                                              # noqa: E402
from pimapc import PimapClient, ViewError, store_truth    # noqa: E402

PROXY_PORT = int(os.environ["PROXY_PORT"])
SMTP_PORT = int(os.environ.get("PROXY_SMTP_PORT") or 0)
DOVECOT_HOME = os.environ.get("DOVECOT_HOME", "")
DELIVERY_WAIT = 90.0      # queued mail is retried with backoff until then
REPLY_TIMEOUT = 45.0      # above link.outage_wait: a command waits out an outage
RECONNECT_FOR = 60.0      # how long a daemon may take to come back
FINAL_WAIT = 15.0
FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "$Work")


class Failure(Exception):
    pass


class Worker:
    def __init__(self, user, idx, rng, stop, log):
        self.user = user
        self.name = "%s/%d" % (user, idx)
        self.rng = rng
        self.stop = stop
        self.log = log
        self.c = None
        self.stats = {"ops": 0, "no": 0, "resyncs": 0, "reasons": []}
        self.failures = []

    def say(self, msg):
        self.log("%s: %s" % (self.name, msg))

    def connect(self):
        """Log in (retrying while the daemons come back) and model INBOX afresh."""
        deadline = time.monotonic() + RECONNECT_FOR
        last = None
        while time.monotonic() < deadline:
            c = PimapClient("127.0.0.1", PROXY_PORT, timeout=REPLY_TIMEOUT)
            try:
                c.connect()
                if c.greeting.status != "OK":
                    raise imapc.Closed("greeting %s" % c.greeting.first)
                c.login(self.user, g.PASS)
                c.select_view("INBOX")
                self.c = c
                return
            except (imapc.IMAPError, OSError) as e:
                last = e
                c.close()
                time.sleep(0.2)   # retry pacing while a daemon restarts, not a wait for a condition
        raise Failure("%s: no session for %.0f s: %s" % (self.name, RECONNECT_FOR, last))

    def resync(self, why):
        self.stats["resyncs"] += 1
        self.stats["reasons"].append(why[:120])
        self.say("told to resynchronise (%s); reconnecting" % why[:160])
        if self.c:
            self.c.close()
        self.c = None
        self.connect()

    def check_untagged(self, r):
        """What a stock client that never enabled CONDSTORE must not get."""
        if r.tag == "*" and " FETCH " in r.first.upper() and "MODSEQ" in r.first.upper():
            self.stats.setdefault("modseq", []).append(r.first[:100])

    def ok_or_no(self, cmd):
        """A command: OK, or NO (counted); BYE/close -> resync; anything else fails."""
        tag, resps = self.c.command(cmd, timeout=REPLY_TIMEOUT)
        for r in resps:
            self.check_untagged(r)
        if any(r.status == "BYE" for r in resps):
            raise imapc.Closed("BYE: %s" % [r.first for r in resps if r.status == "BYE"][0])
        st = resps[-1].status
        if st == "NO":
            self.stats["no"] += 1
            return None
        if st != "OK":
            raise Failure("%s: %s -> %r" % (self.name, cmd, resps[-1].first))
        return resps

    def one_op(self):
        v = self.c.view
        n = len(v)
        op = self.rng.choice(("fetch", "store", "store", "uidfetch", "idle", "append", "expunge", "noop"))
        if op == "fetch" and n:
            self.ok_or_no("FETCH 1:* (FLAGS)")
        elif op == "store" and n:
            seq = self.rng.randint(1, n)
            self.ok_or_no("STORE %d %sFLAGS (%s)" % (seq, self.rng.choice("+-"), self.rng.choice(FLAGS)))
        elif op == "uidfetch" and n:
            uid = v.entries[self.rng.randint(0, n - 1)].uid
            if uid:
                self.ok_or_no("UID FETCH %d (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % uid)
        elif op == "idle":
            tag, _ = self.c.send_command("IDLE")
            while True:
                # Untagged data may come before the continuation (it is
                # applied to the view as it is read).
                r = self.c.read_response(timeout=REPLY_TIMEOUT)
                if r.is_continuation:
                    break
                if r.status == "BYE":
                    raise imapc.Closed("BYE: %s" % r.first)
                if r.tag != "*":
                    raise Failure("%s: IDLE -> %r" % (self.name, r.first))
                self.check_untagged(r)
            end = time.monotonic() + self.rng.uniform(0.2, 1.0)
            while time.monotonic() < end:
                try:
                    r = self.c.read_response(timeout=max(0.01, end - time.monotonic()))
                    if r.status == "BYE":
                        raise imapc.Closed("BYE in IDLE: %s" % r.first)
                except imapc.Timeout:
                    break
            self.c.send(b"DONE\r\n")
            resps = self.c.wait_tagged(tag, timeout=REPLY_TIMEOUT)
            if any(r.status == "BYE" for r in resps):
                raise imapc.Closed("BYE after IDLE")
            if resps[-1].status not in ("OK", "NO"):
                raise Failure("%s: IDLE ended with %r" % (self.name, resps[-1].first))
        elif op == "append":
            msg = imapc.make_message("append by %s %d" % (self.name, self.stats["ops"]))
            tag, resps = self.c.command("APPEND INBOX () ", imapc.Literal(msg, sync=False), timeout=REPLY_TIMEOUT)
            if any(r.status == "BYE" for r in resps):
                raise imapc.Closed("BYE after APPEND")
            if resps[-1].status == "NO":
                self.stats["no"] += 1
            elif resps[-1].status != "OK":
                raise Failure("%s: APPEND -> %r" % (self.name, resps[-1].first))
        elif op == "expunge" and n > 3:
            e = v.entries[self.rng.randint(0, n - 1)]
            if e.uid:
                if self.ok_or_no("UID STORE %d +FLAGS (\\Deleted)" % e.uid) is not None:
                    self.ok_or_no("UID EXPUNGE %d" % e.uid)
        else:
            self.ok_or_no("NOOP")
        self.stats["ops"] += 1

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    self.one_op()
                except (imapc.Closed, ConnectionError, BrokenPipeError) as e:
                    self.resync("%s: %s" % (type(e).__name__, e))
                except imapc.Timeout as e:
                    raise Failure("%s: no reply in %.0f s: %s" % (self.name, REPLY_TIMEOUT, e))
                except ViewError as e:
                    raise Failure("%s: the proxy told the client something impossible: %s" % (self.name, e))
                except imapc.IMAPError as e:
                    if self.c.eof:
                        self.resync("%s: %s" % (type(e).__name__, e))
                    else:
                        raise Failure("%s: %s: %s" % (self.name, type(e).__name__, e))
        except Failure as e:
            self.failures.append(str(e))
            self.say("FAILED: %s" % e)

    def complete_view(self):
        """Learn the UIDs and flags of messages the client was told exist
        (EXISTS) but has not fetched; new ones may arrive meanwhile."""
        for _ in range(10):
            todo = self.c.view.unknown()
            if not todo:
                return
            resps = self.ok_or_no("FETCH %s (UID FLAGS)" % ",".join(str(n) for n in todo))
            if resps is None:
                raise Failure("%s: FETCH of the new messages refused" % self.name)
        raise Failure("%s: messages stay unknown: %s" % (self.name, self.c.view.unknown()))

    def final_check(self):
        """NOOP until the model equals the store (bounded), then LOGOUT."""
        if self.failures:
            return
        deadline = time.monotonic() + FINAL_WAIT
        while True:
            try:
                if self.c is None:
                    self.connect()
                self.ok_or_no("NOOP")
                self.complete_view()
                mine = self.c.view.snapshot()
                truth = store_truth("127.0.0.1", g.DOVECOT_IMAPS, self.user, g.PASS, cafile=g.CA)
            except (imapc.Closed, ConnectionError) as e:
                self.resync("at the end: %s" % e)
                continue
            except (ViewError, Failure, imapc.IMAPError, OSError) as e:
                self.failures.append("%s: at the end: %s: %s" % (self.name, type(e).__name__, e))
                return
            if mine == truth:
                break
            if time.monotonic() > deadline:
                diff = sorted(set(mine) ^ set(truth))[:10]
                self.failures.append("%s: the client's view differs from the store: %d against %d messages, "
                                     "differing (uid, flags): %r" % (self.name, len(mine), len(truth), diff))
                return
            time.sleep(0.2)   # pacing between NOOPs while events are on their way
        try:
            self.c.logout(timeout=REPLY_TIMEOUT)
        except (imapc.IMAPError, OSError) as e:
            self.failures.append("%s: LOGOUT: %s" % (self.name, e))


# --- mail sent through pimap-proxy's SMTP listener ------------------------------

def copies_in_mailbox(user, msgid, anywhere=False):
    """How many messages in user's Maildir carry this Message-ID (with
    anywhere: mention it anywhere, as a delivery report does)."""
    n = 0
    for sub in ("new", "cur"):
        d = os.path.join(DOVECOT_HOME, user, "Maildir", sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for name in names:
            try:
                with open(os.path.join(d, name), "rb") as f:
                    head = f.read() if anywhere else f.read(8192)
            except FileNotFoundError:
                continue   # moved from new/ to cur/ meanwhile: counted there
            if (msgid if anywhere else "Message-ID: " + msgid).encode() in head:
                n += 1
    return n


class Sender:
    """Sends mail as sender to rcpt through the proxy's SMTP listener; keeps
    the Message-IDs the proxy accepted (250) and the ones it did not."""

    def __init__(self, name, sender, rcpt, rng, log):
        self.name, self.sender, self.rcpt, self.rng, self.log = name, sender, rcpt, rng, log
        self.accepted, self.refused = [], []

    def run(self, stop):
        i = 0
        while not stop.wait(self.rng.uniform(0.2, 0.7)):
            mid = "<%s.%d.%d@faults.test>" % (self.name.replace("#", "-"), os.getpid(), i)
            i += 1
            msg = ("From: %s@mail.test\r\nTo: %s@mail.test\r\nSubject: fault %s %d\r\nMessage-ID: %s\r\n\r\n"
                   "sent while faults happen\r\n" % (self.sender, self.rcpt, self.name, i, mid))
            try:
                s = smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=60)
                try:
                    s.ehlo()
                    s.login(self.sender, g.PASS)
                    s.sendmail("%s@mail.test" % self.sender, ["%s@mail.test" % self.rcpt], msg)
                    self.accepted.append(mid)
                finally:
                    try:
                        s.quit()
                    except (smtplib.SMTPException, OSError):
                        pass
            except (smtplib.SMTPException, OSError) as e:
                # Not accepted: the client knows (a real one retries later).
                if mid not in self.accepted:
                    self.refused.append(mid)
                self.log("SMTP %s not accepted: %s" % (mid, str(e)[:120]))

    def returned(self, msgid):
        """A delivery report about msgid in the sender's own INBOX (what the
        proxy does with queued mail that then fails for good)."""
        return copies_in_mailbox(self.sender, msgid, anywhere=True) > 0

    def check(self):
        """Every accepted message delivered exactly once or, if it failed
        for good after it was queued, reported back to the sender (waiting
        for the outbox's retries); none delivered twice. Returns failures."""
        deadline = time.monotonic() + DELIVERY_WAIT
        while True:
            missing = [m for m in self.accepted if copies_in_mailbox(self.rcpt, m) == 0 and not self.returned(m)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)   # pacing while queued mail is retried
        self.bounced = [m for m in self.accepted if copies_in_mailbox(self.rcpt, m) == 0 and self.returned(m)]
        if self.bounced:
            self.log("SMTP: %d accepted messages failed for good and were reported to the sender: %s"
                     % (len(self.bounced), " ".join(self.bounced)))
        out = ["accepted by SMTP, never delivered and never reported back: %s" % m for m in missing]
        for m in self.accepted + self.refused:
            n = copies_in_mailbox(self.rcpt, m)
            if n > 1:
                out.append("delivered %d times: %s" % (n, m))
        return out


def cmd_round(a):
    rng = random.Random(a.seed)
    lock = threading.Lock()

    def log(msg):
        with lock:
            print("[faults %s] %s" % (a.name, msg), file=sys.stderr, flush=True)

    stop = threading.Event()
    users = a.users.split(",")
    workers = [Worker(u, k, random.Random(rng.random()), stop, log) for u in users for k in range(a.clients)]
    for w in workers:
        w.connect()
    open(a.ready, "w").close()
    log("%d clients in; running %.1f s (seed %d)" % (len(workers), a.duration, a.seed))
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()

    deliveries = {"ok": 0, "failed": 0}

    def deliverer():
        drng = random.Random(rng.random())
        while not stop.wait(drng.uniform(0.3, 1.0)):
            u = drng.choice(users)
            try:
                imapc.deliver(g.LMTP, u, imapc.make_message("delivered %d" % (deliveries["ok"] + deliveries["failed"])))
                deliveries["ok"] += 1
            except (OSError, Exception) as e:  # noqa: BLE001 - the store may be restarting: LMTP refuses then
                deliveries["failed"] += 1
                log("delivery to %s failed (the store may be down): %s" % (u, e))

    dt = threading.Thread(target=deliverer)
    dt.start()
    sender = None
    if SMTP_PORT and a.mail_to:
        sender = Sender(a.name, users[0], a.mail_to, random.Random(rng.random()), log)
        st = threading.Thread(target=sender.run, args=(stop,))
        st.start()
    time.sleep(a.duration)   # the workload's length: the fault is injected meanwhile
    stop.set()
    dt.join()
    if sender:
        st.join()
    for t in threads:
        t.join(timeout=REPLY_TIMEOUT + RECONNECT_FOR + 10)
    for w in workers:
        w.final_check()
    failures = [f for w in workers for f in w.failures]
    mail = None
    if sender:
        failures += ["SMTP: " + f for f in sender.check()]
        mail = {"accepted": len(sender.accepted), "not_accepted": len(sender.refused),
                "reported_back": len(sender.bounced)}
        log("SMTP: %d messages accepted (each delivered once), %d not accepted" % (len(sender.accepted),
                                                                                 len(sender.refused)))
    out = {"name": a.name, "seed": a.seed, "deliveries": deliveries, "smtp": mail,
           "clients": {w.name: w.stats for w in workers}, "failures": failures}
    with open(a.result, "w") as f:
        json.dump(out, f, indent=1)
    total = {k: sum(w.stats[k] for w in workers) for k in ("ops", "no", "resyncs")}
    modseq = [m for w in workers for m in w.stats.get("modseq", [])]
    if modseq:
        log("MODSEQ sent to clients that never enabled CONDSTORE (%d times), e.g. %s" % (len(modseq), modseq[0]))
    log("%d operations, %d refused with NO, %d resynchronisations, %d deliveries (%d refused); %s"
        % (total["ops"], total["no"], total["resyncs"], deliveries["ok"], deliveries["failed"],
           "every view equals the store" if not failures else "%d FAILURES" % len(failures)))
    for f in failures:
        log("FAIL: " + f)
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("round")
    p.add_argument("--name", required=True)
    p.add_argument("--users", required=True)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--mail-to", help="also send mail to this user through the proxy's SMTP listener")
    p.set_defaults(fn=cmd_round)
    a = ap.parse_args()
    sys.exit(a.fn(a))


if __name__ == "__main__":
    main()
