"""gw_common - what the t_gw_*.sh tests share on the Python side.

The shell part (harness.sh) starts Dovecot and the gateway and exports
GW_PORT, CA, DOVECOT_IMAPS, DOVECOT_LMTP, DOVECOT_PASS, T; this module reads
them and gives:

  Checker     sections and checks: a failed check ends its section (with the
              protocol transcript of the clients involved), the other
              sections still run, and finish() exits 1 if any failed.
  gw()        a PimapClient connected to the gateway's implicit-TLS port
  store()     a StoreClient (direct to Dovecot, logged in)
  truth()     store_truth() of a user's mailbox
  deliver_n() LMTP deliveries
"""

import os
import re
import sys
import time
import traceback

import imapc
import pimapc
from pimapc import PimapClient, StoreClient, View, ViewError, IMAPError  # noqa: F401

ENV = os.environ
PASS = ENV.get("DOVECOT_PASS", "secret")
CA = ENV.get("CA")
T = ENV.get("T", "/tmp")


def _int_env(name):
    v = ENV.get(name)
    return int(v) if v else None


GW_PORT = _int_env("GW_PORT")
GW_STARTTLS_PORT = _int_env("GW_STARTTLS_PORT")
DOVECOT_IMAPS = _int_env("DOVECOT_IMAPS")
LMTP = "127.0.0.1:%s" % ENV.get("DOVECOT_LMTP", "0")


class CheckFailed(Exception):
    pass


class Checker:
    def __init__(self, test):
        self.test = test
        self.section = ""
        self.failed = []
        self.passed = []
        self.clients = []      # clients whose transcript is shown on failure

    def log(self, msg):
        print("[%s] %s" % (self.test, msg), file=sys.stderr, flush=True)

    def watch(self, *clients):
        """Show these clients' transcripts if the current section fails."""
        self.clients.extend(clients)
        return clients[0] if len(clients) == 1 else clients

    def check(self, cond, what, detail=None):
        if not cond:
            msg = "FAIL (%s): %s" % (self.section, what)
            if detail:
                msg += "\n" + str(detail)
            raise CheckFailed(msg)
        self.log("ok   (%s): %s" % (self.section, what))

    def equal(self, got, want, what):
        self.check(got == want, "%s: %r" % (what, got) if got == want
                   else "%s:\n      got  %r\n      want %r" % (what, got, want))

    def transcripts(self, tail=60):
        out = []
        for c in self.clients:
            lines = imapc.format_transcript(c)
            name = getattr(c, "label", "%s:%d" % (c.host, c.port))
            out.append("  --- transcript of %s (last %d of %d lines) ---" % (name, min(tail, len(lines)),
                                                                           len(lines)))
            out.extend("    " + l for l in lines[-tail:])
        return "\n".join(out)

    def run(self, name, fn, *args):
        """Run one section; a failure is recorded and the next section runs."""
        self.section = name
        self.clients = []
        self.log("--- section %s" % name)
        try:
            fn(*args)
            self.passed.append(name)
        except CheckFailed as e:
            self.failed.append(name)
            self.log(str(e))
            self.log(self.transcripts())
        except (IMAPError, OSError, ValueError, KeyError, IndexError, AssertionError) as e:
            self.failed.append(name)
            self.log("FAIL (%s): %s: %s" % (name, type(e).__name__, e))
            self.log("".join(traceback.format_exc(limit=6)))
            self.log(self.transcripts())
        finally:
            for c in self.clients:
                try:
                    c.close()
                except Exception:
                    pass
            self.clients = []

    def finish(self):
        self.log("sections passed: %s" % (" ".join(self.passed) or "none"))
        if self.failed:
            self.log("sections FAILED: %s" % " ".join(self.failed))
            sys.exit(1)
        sys.exit(0)


def gw(label=None, timeout=10.0, port=None):
    """A PimapClient connected (implicit TLS, verified against $CA) to the gateway."""
    c = PimapClient("127.0.0.1", port or GW_PORT, tls=True, cafile=CA, timeout=timeout)
    c.label = label or "gateway client"
    g = c.connect()
    if g.status != "OK":
        raise IMAPError("gateway greeting: %r" % g.first)
    return c


def store(user, label=None):
    """A direct StoreClient to Dovecot (imaps), logged in as user."""
    c = StoreClient("127.0.0.1", DOVECOT_IMAPS, user, PASS, tls=True, cafile=CA)
    c.label = label or "direct to Dovecot as %s" % user
    return c


def truth(user, mailbox="INBOX"):
    return pimapc.store_truth("127.0.0.1", DOVECOT_IMAPS, user, PASS, mailbox, tls=True, cafile=CA)


def deliver_n(user, n, prefix):
    subjects = []
    for i in range(1, n + 1):
        s = "%s %d" % (prefix, i)
        imapc.deliver(LMTP, user, imapc.make_message(s))
        subjects.append(s)
    return subjects


def subject_of(client, seq):
    """The Subject of message seq (BODY.PEEK, so no \\Seen)."""
    resps = client.ok("FETCH %d (BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % seq)
    for r in resps:
        if r.first.startswith("* %d FETCH" % seq) and r.literals:
            m = re.search(rb"Subject: ([^\r\n]*)", r.literals[0])
            if m:
                return m.group(1).decode()
    return None


def wait_until(pred, timeout, what):
    """Poll pred() (a cheap check, e.g. a file) until true; IMAPError on timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise IMAPError("timed out waiting for %s" % what)
        time.sleep(0.05)
