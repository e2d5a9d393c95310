"""viewcheck.py - does a client's local copy hold exactly the view?

    python3 viewcheck.py deliver-mix USER
        put a mix of messages in USER's INBOX that a view of the last days
        keeps in part (two that arrive now, two that arrived 40 days ago)
    python3 viewcheck.py compare USER PORT [--tls] --local GLOB [--local GLOB]...
                         [--wait SECONDS] [--trace PROXY_LOG]
        the view is what a client of the same device reads through the proxy
        at 127.0.0.1:PORT (filters belong to the device), so the check does
        not repeat the filter's logic; it must be a strict, non-empty subset
        of the store's INBOX. The Message-IDs in the files matching the
        globs (a Maildir's cur/ and new/, or a Thunderbird mbox) must be
        exactly the view's, within --wait seconds; with --trace, the client
        must never have fetched a message outside the view whole.

Used by the parts (v) of t_thunderbird.sh and t_mbsync.sh. Environment:
DOVECOT_IMAPS, DOVECOT_LMTP, DOVECOT_PASS, CA.
"""

import argparse
import glob
import os
import re
import sys
import time

import imapc
from imapc import Client
from pimapc import StoreClient

ENV = os.environ


def message_ids(client, box="INBOX"):
    """{Message-ID: UID} of box."""
    client.ok("EXAMINE %s" % box)
    ids = {}
    for r in client.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"):
        m = re.search(r"UID (\d+)", r.first)
        if m and r.literals:
            mid = re.search(rb"<[^>]+>", r.literals[0])
            if mid:
                ids[mid.group(0).decode()] = int(m.group(1))
    return ids


def local_ids(patterns):
    data = b""
    for pattern in patterns:
        for name in glob.glob(pattern):
            if os.path.isfile(name) and not name.endswith(".msf"):
                with open(name, "rb") as f:
                    data += f.read() + b"\n"
    return {m.decode() for m in re.findall(rb"(?im)^Message-ID:\s*(<[^>]+>)", data)}


def deliver_mix(user):
    """Two messages that arrive now (delivered over LMTP) and two that
    arrived 40 days ago (APPENDed with that internal date): a view of the
    last days (filters/mobile.yaml: 14 for INBOX) keeps the first two."""
    lmtp = "127.0.0.1:%s" % ENV["DOVECOT_LMTP"]
    imapc.deliver(lmtp, user, imapc.make_message("View: new and small", "Short."))
    imapc.deliver(lmtp, user, imapc.make_message("View: new and long", ("x" * 76 + "\n") * 3000))
    old = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(time.time() - 40 * 86400))
    st = StoreClient("127.0.0.1", int(ENV["DOVECOT_IMAPS"]), user, ENV["DOVECOT_PASS"], cafile=ENV["CA"])
    for subject in ("View: 40 days old", "View: 40 days old, too"):
        msg = imapc.make_message(subject, "From long ago.").replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
        st.ok('APPEND INBOX "%s" ' % old, imapc.Literal(msg, sync=False))
    st.logout()


def compare(a):
    st = StoreClient("127.0.0.1", int(ENV["DOVECOT_IMAPS"]), a.user, ENV["DOVECOT_PASS"], cafile=ENV["CA"])
    everything = message_ids(st)
    st.logout()
    c = Client("127.0.0.1", a.port, tls=a.tls, cafile=ENV["CA"] if a.tls else None)
    c.connect()
    c.login(a.user, ENV["DOVECOT_PASS"])
    view = message_ids(c)
    c.ok("LOGOUT")
    print("store: %d messages, view: %d" % (len(everything), len(view)), file=sys.stderr)
    if not view or set(view) >= set(everything):
        sys.exit("the view is not a strict, non-empty subset of the store: adjust the messages to the filter")
    deadline = time.time() + a.wait
    while time.time() < deadline and local_ids(a.local) != set(view):
        time.sleep(0.5)
    local = local_ids(a.local)
    if local != set(view):
        sys.exit("local copy %s, view %s" % (sorted(local), sorted(view)))
    if a.trace:
        import tb_trace
        outside = tb_trace.body_uids(tb_trace.Trace(a.trace)) - set(view.values())
        if outside:
            sys.exit("the client fetched UIDs outside the view: %s" % sorted(outside))
    print("ok: the local copy holds exactly the %d messages of the view" % len(view), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deliver-mix")
    d.add_argument("user")
    c = sub.add_parser("compare")
    c.add_argument("user")
    c.add_argument("port", type=int)
    c.add_argument("--tls", action="store_true")
    c.add_argument("--local", action="append", required=True)
    c.add_argument("--wait", type=float, default=60.0)
    c.add_argument("--trace")
    a = ap.parse_args()
    if a.cmd == "deliver-mix":
        deliver_mix(a.user)
    else:
        compare(a)


if __name__ == "__main__":
    main()
