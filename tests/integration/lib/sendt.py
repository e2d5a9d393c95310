"""sendt.py - helpers of the sending tests (t_gw_xdeliver.sh, t_smtp*.sh):
messages with a known Message-ID, XDELIVER commands, and looking into the
recipients' mailboxes at the store."""
import os
import re
import time
import uuid

from gwt import check, store, Literal

E = os.environ


def new_id(tag="t"):
    return "<%s.%s@pimap.test>" % (tag, uuid.uuid4().hex[:16])


def message(msgid, subject, frm="Alice <alice@mail.test>", to="bob@mail.test", body="Hello.\r\n", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
            "%s\r\n%s" % (frm, to, subject, msgid, extra, body)).encode()


def envelope(*rcpts):
    parts = []
    for r in rcpts:
        local, domain = r.rsplit("@", 1)
        parts.append('(NIL NIL "%s" "%s")' % (local, domain))
    return "(" + " ".join(parts) + ")"


def xdeliver(c, msg, rcpts, head="N", saveto=None, sync=False, timeout=60):
    """Send XDELIVER; return the tagged response (all responses in .all)."""
    cmd = "XDELIVER %s%s ENVELOPE %s " % (head, " SAVETO=%s" % saveto if saveto else "", envelope(*rcpts))
    tag, resps = c.command(cmd, Literal(msg, sync=sync), timeout=timeout)
    r = resps[-1]
    r.all = resps
    return r


def search_msgid(user, msgid, mailbox="INBOX"):
    """UIDs in user's mailbox (at the store) whose Message-ID is msgid."""
    s = store(user)
    try:
        s.ok('EXAMINE "%s"' % mailbox)
        resps = s.ok('UID SEARCH HEADER Message-ID "%s"' % msgid)
        uids = []
        for r in resps:
            m = re.match(r"\* SEARCH(.*)$", r.first)
            if m:
                uids += [int(x) for x in m.group(1).split()]
        s.ok("LOGOUT")
        return uids
    finally:
        s.close()


def fetch_uid(user, uid, items="BODY.PEEK[]", mailbox="INBOX"):
    s = store(user)
    try:
        s.ok('EXAMINE "%s"' % mailbox)
        resps = s.ok("UID FETCH %d (%s)" % (uid, items))
        for r in resps:
            if " FETCH " in r.first:
                return r
        return None
    finally:
        s.close()


def wait_count(user, msgid, want, timeout=30, mailbox="INBOX"):
    """Poll until user's mailbox holds want copies of msgid; return the count seen last."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(search_msgid(user, msgid, mailbox))
        if n >= want or time.monotonic() >= deadline:
            return n
        time.sleep(0.2)


def delivered_count(msgid):
    """How many times the relay behind the submission server handed msgid to LMTP."""
    p = os.path.join(E["SMTP_CTL"], "delivered.log")
    if not os.path.exists(p):
        return 0
    with open(p) as f:
        return sum(1 for line in f if line.split(" ")[0] == msgid)


def expect_once(user, msgid, what, timeout=30):
    n = wait_count(user, msgid, 1, timeout)
    check(n == 1, "%s: %s arrived in %s's INBOX exactly once (%d)" % (what, msgid, user, n))
    check(delivered_count(msgid) == 1, "%s: the submission server delivered it once (%d)" % (what, delivered_count(msgid)))
