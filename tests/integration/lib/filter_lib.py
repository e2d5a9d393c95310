"""filter_lib - what the view-filter tests (t_filter_*.sh) share.

  populate(store, mailbox, count, days, seed)
      APPEND count messages with arrival dates spread over the last `days`
      days (noon, local time, so that no date sits near midnight), from a
      mix of senders (VIPS among them), of various sizes; returns
      [(uid, days_ago, sender, size)].
  dated_message(...), append_dated(...), imap_date(days_ago)
  reference(store, mailbox, keys) -> [uid]
      the view computed by the store itself: UID SEARCH <keys> directly on
      Dovecot (DAYSBEFORETODAY written by the test as SINCE imap_date(n)).
  gateway_client(device, user) -> a logged-in PimapClient at the gateway
  proxy_client(user) -> a logged-in PimapClient at pimap-proxy
  check_view(c, view, ref, what) -> list of problems
      the client's model equals the reference, and SEARCH ALL, UID SEARCH
      ALL, STATUS (MESSAGES) and FETCH 1:* (UID) through the connection
      agree with it.
  idle_vip_only(c, user, n, log, held_rx, who) -> the IDLE's tag
      with a notification rule FROM the boss, in IDLE: a non-VIP message is
      decided and held (a new log line matching held_rx), not pushed; a VIP
      one is pushed, and the held one with it (EXISTS n + 2).
"""

import datetime
import random
import re
import time

import os

import imapc
import pimapc
from imapc import Literal
from pimapc import StoreClient, untagged_kind, parse_fetch

VIPS = ["boss@example.com", "family@example.org"]
OTHERS = ["news@lists.example.net", "shop@example.com", "colleague@example.org", "friend@example.net",
          "alerts@example.com"]


def local_noon(days_ago):
    """A datetime (aware, local time) at noon, days_ago days before today."""
    today = datetime.date.today()
    d = today - datetime.timedelta(days=days_ago)
    return datetime.datetime(d.year, d.month, d.day, 12, 0, 0).astimezone()


def imap_datetime(dt):
    """RFC 3501 date-time: "24-Nov-2025 12:00:00 +0100"."""
    return dt.strftime("%d-%b-%Y %H:%M:%S %z")


def imap_date(days_ago):
    """RFC 3501 date of the local day days_ago before today: "3-Mar-2025"."""
    d = datetime.date.today() - datetime.timedelta(days=days_ago)
    return "%d-%s-%d" % (d.day, d.strftime("%b"), d.year)


def dated_message(i, sender, size, days_ago, subject=None):
    """A message of about `size` bytes (CRLF), Date: header days_ago days back."""
    dt = local_noon(days_ago)
    subject = subject or "message %d from %s, %d days old" % (i, sender.split("@")[0], days_ago)
    head = ("From: %s\r\nTo: bob@example.org\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <filter-%d-%d@pimap.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (sender, subject, dt.strftime("%a, %d %b %Y %H:%M:%S %z"), i, days_ago))
    line = ("line %d of message %d: the quick brown fox jumps over the lazy dog.\r\n")
    body = []
    n = 0
    while len(head) + sum(len(b) for b in body) < size:
        body.append(line % (n, i))
        n += 1
    return (head + "".join(body)).encode()


def append_dated(store, mailbox, msg, days_ago, flags=()):
    """APPEND msg with the arrival date of days_ago days back; returns its UID."""
    fl = "(%s) " % " ".join(flags) if flags else ""
    resps = store.ok("APPEND %s %s\"%s\" " % (pimapc._quote(mailbox), fl, imap_datetime(local_noon(days_ago))),
                     Literal(msg, sync=False))
    m = re.search(r"\[APPENDUID \d+ (\d+)\]", resps[-1].first, re.I)
    return int(m.group(1)) if m else None


def populate(store, mailbox, count, days, seed, big=()):
    """count messages over `days` days (oldest first), senders and sizes mixed.
    big: indexes that get a message of 1.2 MB. Returns [(uid, days_ago, sender, size)]."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        days_ago = days - 1 - (i * days) // count
        sender = rnd.choice(VIPS) if rnd.random() < 0.2 else rnd.choice(OTHERS)
        size = 1200 * 1024 if i in big else int(rnd.lognormvariate(7.5, 1.0)) + 300
        flags = ("\\Seen",) if rnd.random() < 0.6 else ()
        uid = append_dated(store, mailbox, dated_message(i, sender, size, days_ago), days_ago, flags)
        out.append((uid, days_ago, sender, size))
    return out


def store_client(user="bob"):
    """A direct, logged-in connection to Dovecot's plain port (INBOX selected read-write)."""
    s = StoreClient("127.0.0.1", int(os.environ["DOVECOT_IMAP"]), user, os.environ.get("DOVECOT_PASS", "secret"),
                    tls=False, tag_prefix="D")
    s.ok("SELECT INBOX")
    return s


def gateway_client(device, user="bob"):
    """A P-IMAP session at the test's gateway (GW_PORT, TLS, the test CA) as user#P<device>."""
    c = pimapc.PimapClient("127.0.0.1", int(os.environ["GW_PORT"]), tls=True, cafile=os.environ["CA"], timeout=20)
    c.connect()
    res = c.pimap_login(user, device, os.environ.get("DOVECOT_PASS", "secret"))
    if res.status != "OK":
        raise AssertionError("login %s#P%s: %r" % (user, device, res.first))
    return c


def proxy_client(user="alice"):
    """A logged-in plain IMAP connection to the test's pimap-proxy (PROXY_PORT)."""
    c = pimapc.PimapClient("127.0.0.1", int(os.environ["PROXY_PORT"]), tls=False, timeout=20)
    c.connect()
    r = c.command('LOGIN %s "%s"' % (user, os.environ.get("DOVECOT_PASS", "secret")))[1]
    if r[-1].status != "OK":
        raise AssertionError("LOGIN through the proxy: %r" % r[-1].first)
    return c


def all_uids(store, mailbox="INBOX"):
    """Every UID of the (selected) mailbox."""
    return search_uids(store, "ALL")


def search_uids(client, keys):
    """UID SEARCH <keys> on a selected connection: the UIDs, ascending."""
    resps = client.ok("UID SEARCH %s" % keys)
    uids = []
    for r in resps:
        m = re.match(r"^\* SEARCH(.*)$", r.first)
        if m:
            uids += [int(x) for x in m.group(1).split()]
    return sorted(uids)


def reference(store, mailbox, keys):
    """The view as the store computes it (SELECT, UID SEARCH keys)."""
    store.ok("SELECT %s" % pimapc._quote(mailbox))
    return search_uids(store, keys)


def idle_vip_only(c, user, n, log, held_rx, who):
    from gwt import LMTP, check, quiet, log_count, wait_log_count, firsts, deliver, make_message
    tag = c.idle_start()
    held = log_count(log, held_rx)
    deliver(LMTP, user, make_message("not from a VIP", sender="shop@example.com"))
    check(wait_log_count(log, held_rx, held + 1) > held, "%s decided the non-VIP message and held it" % who)
    got = quiet(c, 0.5)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in got), "not pushed during IDLE: %r" % firsts(got))
    deliver(LMTP, user, make_message("from the boss", sender=VIPS[0]), sender=VIPS[0])
    r = c.wait_untagged(r"^\* \d+ EXISTS$", timeout=15)
    check(r.first == "* %d EXISTS" % (n + 2), "a VIP message is pushed, and the held one with it: %r" % r.first)
    return tag


def check_view(c, view, ref, what):
    """Compare the client's view of its selected folder with ref; problems as text."""
    probs = []
    if view.uids() != ref:
        probs.append("%s: the client's view %r is not the reference %r" % (what, view.uids(), ref))
    try:
        resps = c.ok("SEARCH ALL")
        seqs = []
        for r in resps:
            m = re.match(r"^\* SEARCH(.*)$", r.first)
            if m:
                seqs += [int(x) for x in m.group(1).split()]
        if seqs != list(range(1, len(ref) + 1)):
            probs.append("%s: SEARCH ALL gave %r for %d messages" % (what, seqs[:20], len(ref)))
        uids = search_uids(c, "ALL")
        if uids != ref:
            probs.append("%s: UID SEARCH ALL gave %r, want %r" % (what, uids, ref))
        resps = c.ok("STATUS %s (MESSAGES)" % pimapc._quote(view.mailbox))
        st = [r.first for r in resps if r.first.upper().startswith("* STATUS")]
        m = re.search(r"MESSAGES (\d+)", st[0]) if st else None
        if not m or int(m.group(1)) != len(ref):
            probs.append("%s: STATUS says %r, the view has %d" % (what, st, len(ref)))
        if ref:
            resps = c.ok("FETCH 1:* (UID)")
            got = {}
            for r in resps:
                if untagged_kind(r)[1] == "FETCH":
                    seq, items = parse_fetch(r)
                    got[seq] = items.get("UID")
            want = {i + 1: u for i, u in enumerate(ref)}
            if got != want:
                probs.append("%s: FETCH 1:* (UID) gave %r, want %r" % (what, got, want))
    finally:
        pass
    return probs
