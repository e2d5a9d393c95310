#!/usr/bin/env python3
"""gw_regressions.py SECTION... - the protocol part of t_gw_regressions.sh.

One section per defect fixed in commit 02eb19a (each failed before it), each
with its own user so that a failure in one does not disturb the others:
  a  alice  SIGHUP (sent by the shell), then LOGIN: the store target must not
            point into the freed old configuration (plain and P-IMAP login)
  b  bob    resume with a parked connection, a live EXPUNGE, SELECT INBOX
            again: the store's plain state, no stale EXPUNGE (the saved view
            consumed by the resume was used a second time)
     carol  the same, then the store connection is lost: the next login must
            not repeat the EXPUNGE the client already had
  c  dave   PIMAP_EVENT_FILTER NEW, IDLE, an EXPUNGE held back, the
            connection drops: the next login reports it or says RESYNC
  d  erin   pipelined "SELECT Other" "SELECT INBOX" with a saved view of
            Other: each answer describes its own folder
  e  frank  PIMAP_INBAND_PUSH ON + EVENT_FILTER NEW, an EXPUNGE held in INBOX,
            then SELECT Other: the EXPUNGE comes before Other's SELECT data
  f  grace  PIMAP_INBAND_NEW_FORMAT (UID BINARY.PEEK[1]) and a message whose
            first part decodes to NUL bytes: the resume is complete
  g  -      limits.preauth_timeout=2s: NOOPs every 0.5 s do not keep an
            unauthenticated connection open
  h  heidi  limits.max_output_queue=16K: XZIP over a bigger mailbox is NO
            [TOOBIG], the connection goes on, RSS does not grow with the mailbox
  i  ivan   the parked store connection dies (its Dovecot imap process is
            killed) while the session is detached, in IDLE and while the
            parked connection takes the view: the gateway lives on, logs the
            loss, and the device resumes
  j  judy   resume into the parked connection that carried the session's
            NOTIFY watch: the client still gets its folder's new mail and
            expunges (found after 02eb19a: "NOTIFY NONE" silenced Dovecot)
  k  kim    the password changes at the store while the session is parked:
            the new password takes the parked connection back (events, no
            RESYNC), and the old one is refused from then on
  l  alice  ESEARCH's (TAG "...") names the client's command, not the tag
            the gateway gave it at the store (plain and P-IMAP sessions)

Environment (from the shell): GW_PORT, GW_PID, GW_LOG, CA, DOVECOT_IMAPS,
DOVECOT_LMTP, DOVECOT_PASS, DOVECOT_PID (Dovecot runs with
verbose_proctitle = yes, so each imap process names its user).
"""

import base64
import os
import re
import select
import signal
import sys
import time
import zlib

import imapc
from gw_common import Checker, gw, store, truth, deliver_n, wait_until, PASS, LMTP
from pimapc import ViewError, IMAPError, Closed, untagged_kind, check_event_order

C = Checker("t_gw_regressions")
ENV = os.environ
GW_LOG = ENV.get("GW_LOG", "")


# --- helpers ------------------------------------------------------------------------------

def log_text():
    try:
        with open(GW_LOG, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def log_count(text):
    return log_text().count(text)


def wait_log_count(text, n, timeout, what):
    """Wait until the gateway log holds text at least n times."""
    wait_until(lambda: log_count(text) >= n, timeout, what)


def conn_mark(c):
    """How the gateway's log names this client's connection: '127.0.0.1:PORT]'."""
    return "127.0.0.1:%d]" % c.sock.getsockname()[1]


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def gateway_alive():
    st = proc_state(int(ENV["GW_PID"]))
    return st is not None and st != "Z"


def parked_marks(user, device):
    """Log lines that end a detach with a NOTIFY watch: the parked connection
    has set up its watch of the other folders (or was refused it)."""
    t = log_text()
    return (t.count("session %s#P%s: watching the subscribed folders (NOTIFY)" % (user, device)) +
            t.count("session %s#P%s: store refused NOTIFY" % (user, device)))


def parked_idles(user, device):
    """IDLE commands of the parked connections of user#Pdevice (the trace of a
    gateway run with --trace): one is sent once the client's view is taken."""
    return len(re.findall(r"\[parked %s#P%s\] S> G\d+ IDLE\r?\n" % (re.escape(user), re.escape(device)),
                          log_text()))


def drop_and_settle(c, user, device, watch=True):
    """Drop the connection (no LOGOUT) and wait until the gateway has parked its
    store connection, taken (or skipped) the view and IDLEs there; with watch
    (the device has no other connection), also until it watches with NOTIFY."""
    n, w = parked_idles(user, device), parked_marks(user, device)
    c.drop()
    wait_until(lambda: parked_idles(user, device) > n, 15,
               "the parked connection of %s#P%s to take the view and IDLE" % (user, device))
    if watch:
        wait_until(lambda: parked_marks(user, device) > w, 15,
                   "the parked connection of %s#P%s to watch the other folders (NOTIFY)" % (user, device))


def imap_pids(user):
    """PIDs of the Dovecot imap processes (children of our Dovecot master) serving user."""
    master = ENV["DOVECOT_PID"]
    rx = re.compile(r"/imap \[%s " % re.escape(user))
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = f.read().rsplit(") ", 1)[1].split()[1]
            if ppid != master:
                continue
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError):
            continue
        if rx.search(cmd):
            out.append(int(name))
    return out


def the_imap_pid(user, timeout=10):
    """The one imap process of user (the gateway's store connection), once every
    other connection of that user (direct clients that logged out) is gone."""
    got = []

    def one():
        got[:] = imap_pids(user)
        return len(got) == 1
    wait_until(one, timeout, "exactly one Dovecot imap process for %s (have %s)" % (user, got))
    return got[0]


def kill_wait(pid, sig=signal.SIGKILL, timeout=10):
    os.kill(pid, sig)
    wait_until(lambda: proc_state(pid) in (None, "Z"), timeout, "process %d to end after signal %d" % (pid, sig))


def login_ok(c, user, device, view=None, what="login", timeout=None):
    r = c.pimap_login(user, device, PASS, view=view, timeout=timeout)
    C.check(r.status == "OK", "%s of %s#P%s -> %s" % (what, user, device, r.tagged.first[:40]), r.describe())
    C.check(not r.problems, "%s: the responses follow PROTOCOL.md section 2" % what,
            "\n".join(["    problem: " + p for p in r.problems]) + "\n" + r.describe())
    return r


def apply_all(view, resps):
    """Apply responses to a View; the ViewError text, or None."""
    for r in resps:
        try:
            view.apply(r)
        except ViewError as e:
            return "%s (at %r)" % (e, r.first)
    return None


def exists_response(n):
    r = imapc.Response()
    r.parts.append(("line", b"* %d EXISTS\r\n" % n))
    return r


def firsts(resps):
    return [r.first for r in resps]


def expunge_lines(resps):
    return [r.first for r in resps if untagged_kind(r)[1] == "EXPUNGE"]


def settle_view(c, v, r):
    """After a resume: RESYNC -> state comparison, else learn the new messages."""
    if r.resync:
        v.resync(c)
    else:
        v.complete(c)


# --- (a) SIGHUP, then LOGIN ------------------------------------------------------------------

def sec_a():
    C.check("configuration reloaded" in log_text(), "the gateway reloaded its configuration (SIGHUP) before "
            "these logins")
    deliver_n("alice", 1, "regressions a")
    c = C.watch(gw("alice, plain login after SIGHUP"))
    resps = c.ok('LOGIN "alice" "%s"' % PASS)
    C.check(True, "plain LOGIN after SIGHUP -> %s" % resps[-1].first[:40])
    c.ok("SELECT INBOX")
    c.logout()
    c2 = C.watch(gw("alice#Pdev1 after SIGHUP"))
    r = login_ok(c2, "alice", "dev1", what="P-IMAP login after SIGHUP")
    v = c2.select_view("INBOX")
    C.equal(v.snapshot(), truth("alice"), "SELECT INBOX through the gateway: the view equals the store")
    c2.logout()
    C.check(gateway_alive(), "the gateway still runs")


# --- (b) a consumed saved view must not be used again -------------------------------------

def resume_parked(user, c_label):
    """deliver 3, log in, SELECT INBOX, drop, resume from the parked connection.

    A second connection of the device (AUTHENTICATED) stays attached while the
    first is away, so the parked connection does not become the session's
    NOTIFY watcher, so this section tests the saved view alone (section j
    covers the resume into the watcher). The second connection goes once the
    resume is done."""
    deliver_n(user, 3, "regressions b %s" % user)
    c = C.watch(gw("%s#Pdev1, first connection" % user))
    r = login_ok(c, user, "dev1", what="first login")
    sid = r.session_id
    anchor = C.watch(gw("%s#Pdev1, second connection (AUTHENTICATED)" % user))
    r = login_ok(anchor, user, "dev1", what="second connection")
    C.check(r.session_state == "AUTHENTICATED" and r.session_id == sid,
            "second connection: SESSION AUTHENTICATED, same SESSIONID", r.describe())
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2, 3], "SELECT INBOX: 3 messages")
    drop_and_settle(c, user, "dev1", watch=False)
    C.check(True, "dropped; the gateway parked the store connection and took the view")
    c2 = C.watch(gw(c_label))
    r = login_ok(c2, user, "dev1", view=v, what="resume")
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and not r.resync and r.session_id == sid,
            "resume (parked connection): SESSION SELECTED, FOLDER INBOX, no RESYNC, same SESSIONID", r.describe())
    C.equal(r.events, [], "resume: no events (nothing changed)")
    C.check("resuming session %s with a parked store connection" % sid in log_text(),
            "the gateway resumed with the parked store connection")
    anchor.drop()
    return c2, v


def live_expunge(c, v, user, uid):
    """Another client expunges uid; the resumed client learns it with NOOP."""
    s = C.watch(store(user))
    s.select("INBOX")
    s.expunge_uids([uid])
    s.logout()
    seq = v.uids().index(uid) + 1
    resps = c.ok("NOOP")
    C.equal(expunge_lines(resps), ["* %d EXPUNGE" % seq], "NOOP: the live * %d EXPUNGE (UID %d)" % (seq, uid))
    C.equal(v.snapshot(), truth(user), "the client's view equals the store after the live EXPUNGE")


def sec_b():
    b_reselect()
    b_store_lost()


def b_reselect():
    # 1. SELECT INBOX again after the resume and the live EXPUNGE (UID 1, the
    #    lowest: a stale "* 3 EXISTS" + "* 1 EXPUNGE" would shift the view).
    c2, v = resume_parked("bob", "bob#Pdev1, resumed")
    live_expunge(c2, v, "bob", 1)
    want = truth("bob")
    c2.view = None
    tag, resps = c2.command("SELECT INBOX")
    C.check(resps[-1].status == "OK", "SELECT INBOX again -> %s" % resps[-1].first)
    C.log("SELECT INBOX again:\n" + "\n".join("    S: " + x for x in firsts(resps)))
    C.equal(expunge_lines(resps), [], "SELECT INBOX again: no EXPUNGE (the client had the one there was)")
    C.equal([untagged_kind(x)[0] for x in resps if untagged_kind(x)[1] == "EXISTS"], [len(want)],
            "SELECT INBOX again: exactly * %d EXISTS, the store's count" % len(want))
    C.check(not [x for x in resps if untagged_kind(x)[1] == "FETCH"], "SELECT INBOX again: no FETCH events",
            firsts(resps))
    err = apply_all(v, resps)
    C.check(err is None, "the SELECT answer applies to the client's view", err)
    c2.view = v
    v.complete(c2)
    C.equal(v.snapshot(), want, "the client's view equals the store")
    c2.logout()


def b_store_lost():
    # 2. The same, then the store connection is lost (its Dovecot imap process is
    #    killed): the next login must not repeat the EXPUNGE (UID 3, the highest:
    #    a repeated "* 3 EXPUNGE" cannot apply to the client's 2 messages).
    c2, v = resume_parked("carol", "carol#Pdev1, resumed")
    live_expunge(c2, v, "carol", 3)
    pid = the_imap_pid("carol")
    kill_wait(pid)
    C.log("killed Dovecot imap process %d (carol's store connection behind the gateway)" % pid)
    rest = c2.read_until_closed(timeout=10)
    C.check(any(x.first.startswith("* BYE") for x in rest), "the client gets * BYE and the connection closes",
            firsts(rest))
    C.check(gateway_alive(), "the gateway still runs")
    c3 = C.watch(gw("carol#Pdev1, after the store connection was lost"))
    r = c3.pimap_login("carol", "dev1", PASS, view=v)
    C.log("login after the loss:\n" + r.describe())
    C.check(r.status == "OK", "login after the loss -> %s" % r.tagged.first)
    C.check(r.view_error is None, "every event applies to the client's view (no EXPUNGE it already had)",
            r.view_error)
    C.check(not r.problems, "the responses follow PROTOCOL.md section 2", r.problems)
    C.equal([x.first for x in r.events if untagged_kind(x)[1] == "EXPUNGE"], [],
            "no EXPUNGE at the login (the store changed nothing since the client's live EXPUNGE)")
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX", "SESSION SELECTED, FOLDER INBOX", r.describe())
    settle_view(c3, v, r)
    C.equal(v.snapshot(), truth("carol"), "the client's view equals the store (%s)"
            % ("after RESYNC" if r.resync else "from the events"))
    c3.logout()


# --- (c) held events and a dropped connection ------------------------------------------------

def sec_c():
    deliver_n("dave", 3, "regressions c")
    s = C.watch(store("dave"))
    s.select("INBOX")
    # \Deleted first, so that the EXPUNGE later is the only event the IDLE sees.
    s.store_uid(2, "+FLAGS.SILENT", ["\\Deleted"])
    c = C.watch(gw("dave#Pdev1, first connection"))
    r = login_ok(c, "dave", "dev1", what="first login")
    sid = r.session_id
    c.ok("XSETPIMAPPREF PIMAP_EVENT_FILTER NEW")
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2, 3], "SELECT INBOX: 3 messages")
    tag = c.idle_start()
    C.check(True, "IDLE (%s)" % tag)
    s.ok("UID EXPUNGE 2")
    s.logout()
    mark = conn_mark(c) + " held event (1 held)"
    wait_log_count(mark, 1, 15, "the gateway to hold the EXPUNGE (%r)" % mark)
    C.check(True, "the gateway held the EXPUNGE back (PIMAP_EVENT_FILTER NEW): %r" % mark)
    C.equal(len(v), 3, "the client saw nothing (its view still has 3 messages)")
    drop_and_settle(c, "dave", "dev1")
    C.check(True, "dropped in IDLE with the EXPUNGE held")
    want = truth("dave")
    C.equal([u for u, _ in want], [1, 3], "the store: UIDs 1 and 3")
    c2 = C.watch(gw("dave#Pdev1, second connection"))
    r = c2.pimap_login("dave", "dev1", PASS, view=v)
    C.log("resume:\n" + r.describe())
    C.check(r.status == "OK" and not r.problems and r.view_error is None,
            "resume -> OK, the responses follow PROTOCOL.md section 2", r.problems)
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and r.session_id == sid,
            "resume: SESSION SELECTED, FOLDER INBOX, same SESSIONID", r.describe())
    C.check(r.resync or expunge_lines(r.events) == ["* 2 EXPUNGE"],
            "resume: RESYNC or the held * 2 EXPUNGE (never a silent view)", r.describe())
    settle_view(c2, v, r)
    C.equal(v.snapshot(), want, "the client's view equals the store (%s)"
            % ("after RESYNC" if r.resync else "from the events"))
    c2.logout()


# --- (d) pipelined SELECTs ------------------------------------------------------------------

def sec_d():
    s = C.watch(store("erin"))
    s.create("Other")
    s.append("Other", "other 1")
    deliver_n("erin", 4, "regressions d")
    c = C.watch(gw("erin#Pdev1"))
    login_ok(c, "erin", "dev1", what="login")
    other = c.select_view("Other")
    C.equal(other.uids(), [1], "SELECT Other: 1 message")
    inbox = c.select_view("INBOX")
    C.equal(inbox.uids(), [1, 2, 3, 4], "SELECT INBOX: 4 messages (Other's view is saved)")
    s.append("Other", "other 2")
    s.logout()
    want_other, want_inbox = truth("erin", "Other"), truth("erin")
    C.equal(len(want_other), 2, "Other has 2 messages now (one pending event)")
    c.view = None
    c.send(b"D1 SELECT Other\r\nD2 SELECT INBOX\r\n")
    resps = c.wait_tagged("D2")
    tags = [x.tag for x in resps]
    C.check("D1" in tags, "D1 answered before D2", firsts(resps))
    i1 = tags.index("D1")
    r1, r2 = resps[:i1 + 1], resps[i1 + 1:]
    C.log("pipelined answers:\n" + "\n".join("    S: " + x for x in firsts(resps)))
    C.check(r1[-1].status == "OK" and r2[-1].status == "OK", "both SELECTs -> OK", [r1[-1].first, r2[-1].first])

    def uidvalidities(rs):
        return sorted({int(m.group(1)) for x in rs for m in [re.search(r"\[UIDVALIDITY (\d+)\]", x.first)] if m})
    C.check(other.uidvalidity != inbox.uidvalidity, "Other and INBOX have different UIDVALIDITY (%s, %s)"
            % (other.uidvalidity, inbox.uidvalidity))
    C.equal(uidvalidities(r1), [other.uidvalidity], "every [UIDVALIDITY] up to D1's OK is Other's")
    C.equal(uidvalidities(r2), [inbox.uidvalidity], "every [UIDVALIDITY] after D1's OK, up to D2's, is INBOX's")
    C.check(re.search(re.escape(conn_mark(c)) + r" return to Other: \d+ events", log_text()),
            "the gateway answered D1 from the saved view of Other (logged 'return to Other: n events')")
    err = apply_all(other, r1)
    C.check(err is None, "D1's responses apply to the client's view of Other", err)
    C.equal(len(other), len(want_other), "after D1 the client's view of Other has the store's count")
    C.equal([u for u in other.uids() if u is not None], [1], "after D1: Other's known message is UID 1")
    err = apply_all(inbox, r2)
    C.check(err is None, "D2's responses apply to the client's view of INBOX", err)
    c.view = inbox
    inbox.complete(c)
    C.equal(inbox.snapshot(), want_inbox, "after D2 the view of INBOX equals the store")
    c.reselect(other)
    other.complete(c)
    C.equal(other.snapshot(), want_other, "SELECT Other again, FETCH the new one: Other's view equals the store")
    c.logout()


# --- (e) held events go out before leaving the folder ------------------------------------

def sec_e():
    s = C.watch(store("frank"))
    s.create("Other")
    s.append("Other", "other 1")
    deliver_n("frank", 3, "regressions e")
    s.select("INBOX")
    s.store_uid(2, "+FLAGS.SILENT", ["\\Deleted"])
    c = C.watch(gw("frank#Pdev1"))
    login_ok(c, "frank", "dev1", what="login")
    c.ok("XSETPIMAPPREF PIMAP_INBAND_PUSH ON")
    c.ok("XSETPIMAPPREF PIMAP_EVENT_FILTER NEW")
    other = c.select_view("Other")
    inbox = c.select_view("INBOX")
    C.equal(inbox.uids(), [1, 2, 3], "SELECT INBOX: 3 messages (Other's view is saved)")
    s.ok("UID EXPUNGE 2")
    s.logout()
    mark = conn_mark(c) + " held event (1 held)"
    wait_log_count(mark, 1, 15, "the gateway to hold the EXPUNGE (%r)" % mark)
    C.check(True, "the gateway held the EXPUNGE of INBOX back (EVENT_FILTER NEW): %r" % mark)
    want_inbox, want_other = truth("frank"), truth("frank", "Other")
    c.view = None
    tag, resps = c.command("SELECT Other")
    C.log("SELECT Other:\n" + "\n".join("    S: " + x for x in firsts(resps)))
    C.check(resps[-1].status == "OK", "SELECT Other -> %s" % resps[-1].first)
    C.check(re.search(re.escape(conn_mark(c)) + r" return to Other: \d+ events", log_text()),
            "the gateway answered from the saved view of Other (logged 'return to Other: n events')")
    exp = [i for i, x in enumerate(resps) if untagged_kind(x)[1] == "EXPUNGE"]
    data = [i for i, x in enumerate(resps[:-1]) if untagged_kind(x)[1] != "EXPUNGE"]
    C.equal([resps[i].first for i in exp], ["* 2 EXPUNGE"], "the held * 2 EXPUNGE is delivered once")
    C.check(data and exp[0] < data[0], "the held EXPUNGE comes before Other's SELECT data "
            "(the client applies it to the folder it is in, INBOX)", firsts(resps))
    err = apply_all(inbox, resps[:data[0]])
    C.check(err is None, "the EXPUNGE applies to the client's view of INBOX", err)
    C.equal(inbox.snapshot(), want_inbox, "the client's view of INBOX equals the store")
    err = apply_all(other, resps[data[0]:])
    C.check(err is None, "the rest applies to the client's view of Other", err)
    C.equal(other.snapshot(), want_other, "the client's view of Other equals the store")
    c.view = other
    c.ok("NOOP")
    c.logout()


# --- (f) NUL bytes in the resume output -----------------------------------------------------

NUL_MESSAGE = (b"From: Test Sender <sender@example.org>\r\n"
               b"To: Test Recipient <recipient@example.org>\r\n"
               b"Subject: regressions f: NUL bytes in part 1\r\n"
               b"Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"
               b"Message-ID: <regressions-f-nul@pimap.test>\r\n"
               b"MIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=\"b-f\"\r\n"
               b"\r\n"
               b"--b-f\r\n"
               b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n"
               b"\r\n"
               b"AAEC\r\n"
               b"--b-f\r\n"
               b"Content-Type: text/plain\r\n"
               b"\r\n"
               b"the second part\r\n"
               b"--b-f--\r\n")


def sec_f():
    deliver_n("grace", 2, "regressions f")
    c = C.watch(gw("grace#Pdev1, first connection"))
    r = login_ok(c, "grace", "dev1", what="first login")
    sid = r.session_id
    c.ok("XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (BINARY.PEEK[1])")
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2], "SELECT INBOX: 2 messages")
    drop_and_settle(c, "grace", "dev1")
    imapc.deliver(LMTP, "grace", NUL_MESSAGE)
    C.log("delivered a message whose part 1 is base64 \"AAEC\" (bytes 00 01 02) while detached")
    c2 = C.watch(gw("grace#Pdev1, resume"))
    r = login_ok(c2, "grace", "dev1", what="resume", timeout=6)
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and not r.resync and r.session_id == sid,
            "resume: SESSION SELECTED, FOLDER INBOX, no RESYNC, the same SESSIONID", r.describe())
    C.equal([x.first for x in r.events], ["* 3 FETCH (UID 3 BINARY[1] ~{3}"],
            "resume: one event, * 3 FETCH (UID 3 BINARY[1] ~{3} (a literal8) instead of * 3 EXISTS")
    C.equal(check_event_order(r.events, 2), [], "resume: event order rules (NEW_FORMAT)")
    ev = r.events[0]
    C.equal(ev.literals, [b"\x00\x01\x02"], "the literal8 holds the decoded bytes 00 01 02")
    C.check(ev.raw.endswith(b")\r\n"), "the FETCH response ends after the literal", ev.raw)
    C.check(r.untagged[-1].first.startswith("* SESSIONID ") and r.tagged.first.startswith(r.tag + " OK"),
            "then * SESSIONID and the tagged OK", r.describe())
    # The NEW_FORMAT FETCH stands for "* 3 EXISTS": the client's view grows by it.
    err = apply_all(v, [exists_response(3), ev])
    C.check(err is None, "the event applies to the client's view", err)
    c2.view = v
    tag, resps = c2.command("NOOP")
    C.check(resps[-1].status == "OK", "NOOP after the resume -> %s (the connection is in step)" % resps[-1].first)
    v.complete(c2)
    C.equal(v.snapshot(), truth("grace"), "the client's view equals the store")
    c2.logout()


# --- (g) the pre-login timeout ------------------------------------------------------------

def sec_g():
    t0 = time.monotonic()
    c = C.watch(gw("no login, NOOP every 0.5 s"))
    answered = 0
    closed_at = None
    # Time is what is tested here: a client keeps sending NOOP every 0.5 s; the
    # gateway (limits.preauth_timeout=2s) must say BYE and close within 5 s.
    while time.monotonic() - t0 < 8 and closed_at is None:
        try:
            readable = bool(c.rbuf) or bool(select.select([c.sock], [], [], 0)[0])
            if readable:
                c.read_until_closed(timeout=2)
                closed_at = time.monotonic()
                break
            tag, resps = c.command("NOOP", timeout=2)
            if resps[-1].tag == tag and resps[-1].status == "OK":
                answered += 1
        except (Closed, OSError):
            closed_at = time.monotonic()
            break
        time.sleep(0.5)
    byes = [x.first for x in c.responses if x.first.startswith("* BYE")]
    C.check(answered >= 2, "the gateway answered %d NOOPs before login" % answered)
    C.check(closed_at is not None, "the gateway closed the connection (within 8 s of NOOPs)",
            "still open after %.1f s and %d NOOPs" % (time.monotonic() - t0, answered))
    took = closed_at - t0
    C.check(1.0 <= took <= 5.0, "closed %.2f s after connecting (preauth_timeout 2 s; allowed up to 5 s)" % took)
    C.check(byes, "* BYE before the close: %r" % byes)


# --- (h) XZIP output bounded by limits.max_output_queue ----------------------------------------

def vm_rss_kib():
    with open("/proc/%s/status" % ENV["GW_PID"]) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise IMAPError("no VmRSS for the gateway")


def big_message(i, size):
    raw = os.urandom(size * 3 // 4)
    b64 = base64.encodebytes(raw).decode()
    return imapc.make_message("regressions h %d" % i, b64)


def xzip_fetch_all(c, what):
    tag, resps = c.command("XZIP b FETCH 1:* BODY.PEEK[]", timeout=60)
    C.log("%s: %s" % (what, [x.first[:80] for x in resps]))
    C.check(resps[-1].status == "NO" and "[TOOBIG]" in resps[-1].first,
            "%s: XZIP b FETCH 1:* BODY.PEEK[] -> %s (want NO [TOOBIG])" % (what, resps[-1].first[:100]))
    C.check(not [x for x in resps if x.first.upper().startswith("* XZIP")], "%s: no * XZIP literal" % what)
    resps = c.ok("NOOP")
    C.check(True, "%s: NOOP after it -> %s (the connection goes on)" % (what, resps[-1].first))


def sec_h():
    size = 256 * 1024
    s = C.watch(store("heidi"))
    for i in range(8):
        s.append("INBOX", big_message(i, size))
    c = C.watch(gw("heidi (plain session), max_output_queue 16K"))
    c.ok('LOGIN "heidi" "%s"' % PASS)
    c.ok("SELECT INBOX")
    # A small XZIP still works.
    tag, resps = c.command("XZIP z FETCH 1 (FLAGS)")
    lit = [x for x in resps if x.first.upper().startswith("* XZIP")]
    C.check(resps[-1].status == "OK" and lit and lit[0].literals, "a small XZIP -> * XZIP ~{n} and OK",
            firsts(resps))
    inner = zlib.decompressobj(-15).decompress(lit[0].literals[0])
    C.check(re.search(rb"\r\nz OK", inner) is not None, "its DEFLATE data holds the inner tagged OK", inner[-200:])
    xzip_fetch_all(c, "2 MiB mailbox")
    rss1 = vm_rss_kib()
    for i in range(8, 32):
        s.append("INBOX", big_message(i, size))
    s.logout()
    c.ok("NOOP")
    xzip_fetch_all(c, "8 MiB mailbox")
    rss2 = vm_rss_kib()
    grew = rss2 - rss1
    C.log("gateway VmRSS: %d KiB after the XZIP over 2 MiB, %d KiB after the one over 8 MiB" % (rss1, rss2))
    C.check(grew < 3 * 1024, "the gateway's RSS grew by %d KiB while the mailbox grew by 6144 KiB (want < 3072)"
            % grew)
    c.logout()


# --- (i) the parked store connection dies -----------------------------------------------------

def parked_lost(user, device):
    return log_count("session %s#P%s: parked store connection lost" % (user, device))


def sec_i():
    c2, v, sid = i_loss_in_idle()
    i_loss_while_taking_view(c2, v, sid)


def i_loss_in_idle():
    deliver_n("ivan", 3, "regressions i before")
    c = C.watch(gw("ivan#Pdev1, first connection"))
    r = login_ok(c, "ivan", "dev1", what="first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2, 3], "SELECT INBOX: 3 messages")
    drop_and_settle(c, "ivan", "dev1")
    deliver_n("ivan", 2, "regressions i while detached")

    # 1. In IDLE (the view saved): kill the Dovecot imap process of the parked connection.
    lost = parked_lost("ivan", "dev1")
    pid = the_imap_pid("ivan")
    kill_wait(pid)
    C.log("killed Dovecot imap process %d (ivan's parked store connection, in IDLE)" % pid)
    wait_until(lambda: parked_lost("ivan", "dev1") > lost, 15, "the gateway to log the parked connection's loss")
    C.check(True, "the gateway logged: session ivan#Pdev1: parked store connection lost")
    C.check(gateway_alive(), "the gateway still runs")
    c2 = C.watch(gw("ivan#Pdev1, after the loss in IDLE"))
    r = login_ok(c2, "ivan", "dev1", view=v, what="resume from the saved view")
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and not r.resync and r.session_id == sid,
            "resume: SESSION SELECTED, FOLDER INBOX, no RESYNC (the view was saved), same SESSIONID",
            r.describe())
    C.equal(r.exists_numbers(), [4, 5], "resume: * 4 EXISTS, * 5 EXISTS")
    v.complete(c2)
    C.equal(v.snapshot(), truth("ivan"), "the client's view equals the store")
    return c2, v, sid


def i_loss_while_taking_view(c2, v, sid):
    # 2. While the parked connection takes the view: the imap process is stopped
    #    before the client goes, so the view's UID SEARCH stays unanswered, then killed.
    pid = the_imap_pid("ivan")
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: proc_state(pid) == "T", 10, "Dovecot imap process %d to stop" % pid)
        lost = parked_lost("ivan", "dev1")
        c2.drop()
        C.log("dropped with Dovecot imap process %d stopped; killing it" % pid)
    finally:
        kill_wait(pid)
    wait_until(lambda: parked_lost("ivan", "dev1") > lost, 15, "the gateway to log the parked connection's loss")
    C.check(True, "the gateway logged the loss of the parked connection that was taking the view")
    C.check(gateway_alive(), "the gateway still runs")
    deliver_n("ivan", 1, "regressions i after the second loss")
    c3 = C.watch(gw("ivan#Pdev1, after the loss during the view"))
    r = c3.pimap_login("ivan", "dev1", PASS, view=v)
    C.log("login:\n" + r.describe())
    C.check(r.status == "OK" and not r.problems and r.view_error is None,
            "login -> OK, the responses follow PROTOCOL.md section 2", r.problems)
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and r.session_id == sid,
            "resume: SESSION SELECTED, FOLDER INBOX, same SESSIONID", r.describe())
    settle_view(c3, v, r)
    C.equal(v.snapshot(), truth("ivan"), "the client's view equals the store (%s)"
            % ("after RESYNC" if r.resync else "from the events"))
    c3.logout()
    C.check(gateway_alive(), "the gateway still runs")


# --- (j) the resumed watcher still reports its folder ------------------------------------

def sec_j():
    deliver_n("judy", 2, "regressions j")
    c = C.watch(gw("judy#Pdev1, first connection"))
    r = login_ok(c, "judy", "dev1", what="first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    drop_and_settle(c, "judy", "dev1", watch=True)
    C.check(True, "dropped; the parked connection watches the subscribed folders (NOTIFY)")
    c2 = C.watch(gw("judy#Pdev1, resumed"))
    r = login_ok(c2, "judy", "dev1", view=v, what="resume")
    C.check(r.session_state == "SELECTED" and not r.resync and r.session_id == sid,
            "resume into the watcher: SESSION SELECTED, no RESYNC, same SESSIONID", r.describe())
    c2.view = v
    deliver_n("judy", 1, "regressions j after the resume")
    got = []
    deadline = time.monotonic() + 10
    while not any(untagged_kind(x)[1] == "EXISTS" for x in got) and time.monotonic() < deadline:
        got += c2.ok("NOOP")[:-1]
    C.check(any(untagged_kind(x) == (3, "EXISTS") for x in got),
            "NOOP after a delivery: * 3 EXISTS (the watch did not silence the folder)", firsts(got))
    v.complete(c2)
    live_expunge(c2, v, "judy", 1)
    c2.logout()


# --- (k) a password change while parked --------------------------------------------------

def set_store_password(user, password):
    path = os.path.join(ENV["DOVECOT_DIR"], "users")
    with open(path) as f:
        lines = f.read().splitlines()
    out = [re.sub(r"^(%s:\{PLAIN\})[^:]*:" % re.escape(user), r"\g<1>%s:" % password, l) for l in lines]
    with open(path + ".new", "w") as f:
        f.write("\n".join(out) + "\n")
    os.chmod(path + ".new", 0o644)
    os.replace(path + ".new", path)


def store_accepts(user, password):
    c = imapc.Client(port=int(ENV["DOVECOT_IMAPS"]), tls=True, cafile=ENV["CA"])
    try:
        c.connect()
        ok = c.command('LOGIN "%s" "%s"' % (user, password))[1][-1].status == "OK"
    finally:
        c.close()
    return ok


def sec_k():
    deliver_n("kim", 2, "regressions k")
    c = C.watch(gw("kim#Pdev1, first connection"))
    r = login_ok(c, "kim", "dev1", what="first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    drop_and_settle(c, "kim", "dev1", watch=True)
    set_store_password("kim", "newpw")
    # Dovecot looks at its passwd-file at most once a second: wait until it takes the new password.
    wait_until(lambda: store_accepts("kim", "newpw"), 10, "Dovecot to take kim's new password")
    deliver_n("kim", 1, "regressions k while parked")
    c2 = C.watch(gw("kim#Pdev1, new password"))
    r = c2.pimap_login("kim", "dev1", "newpw", view=v)
    C.check(r.status == "OK", "the new password logs in -> %s" % r.tagged.first, r.describe())
    C.check(r.session_state == "SELECTED" and not r.resync and r.session_id == sid,
            "the new password takes the parked connection back: SESSION SELECTED, no RESYNC, same SESSIONID",
            r.describe())
    C.equal(r.exists_numbers(), [3], "the event of the outage: * 3 EXISTS")
    C.check("password verified" in log_text(), "the gateway asked the store, then resumed the parked connection")
    drop_and_settle(c2, "kim", "dev1", watch=True)
    c3 = C.watch(gw("kim#Pdev1, old password"))
    r = c3.pimap_login("kim", "dev1", PASS)
    C.check(r.status == "NO" and not r.session_state, "the old password is refused now: %s" % r.tagged.first,
            r.describe())
    c3.close()
    set_store_password("kim", PASS)


def sec_l():
    deliver_n("alice", 3, "l")
    for device in (None, "esearch1"):
        c = gw("alice %s" % (device or "plain"))
        if device:
            r = c.pimap_login("alice", device, PASS)
            C.check(r.status == "OK", "P-IMAP login: %s" % r.tagged.first)
        else:
            c.login("alice", PASS)
        c.ok("SELECT INBOX")
        tag, resps = c.command("UID SEARCH RETURN (ALL COUNT) ALL")
        es = [r.first for r in resps if r.first.upper().startswith("* ESEARCH")]
        C.check(len(es) == 1 and es[0].startswith('* ESEARCH (TAG "%s") UID ' % tag),
                "%s session: ESEARCH carries the client's tag %s: %r" % ("P-IMAP" if device else "plain", tag, es))
        c.ok("LOGOUT")
        c.close()


SECTIONS = {"a": sec_a, "b": sec_b, "c": sec_c, "d": sec_d, "e": sec_e, "f": sec_f, "g": sec_g, "h": sec_h,
            "i": sec_i, "j": sec_j, "k": sec_k, "l": sec_l}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        C.run(name, SECTIONS[name])
    C.finish()
