#!/bin/bash
# gw_selftest.sh - checks pimapc.py itself, without the gateway: the parser
# of the P-IMAP login responses on canned transcripts, the event-order rules,
# and the View / store_truth / drop / IDLE machinery against a real Dovecot
# (which must agree with itself). Not part of `make check`; run by hand when
# pimapc.py changes:
#
#     top_srcdir=$PWD top_builddir=/path/to/build tests/integration/lib/gw_selftest.sh

: "${top_srcdir:=$(cd "$(dirname "$0")/../../.." && pwd)}"
TEST_NAME=gw_selftest
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
gen_certs
start_dovecot
deliver alice "selftest 1"
deliver alice "selftest 2"
deliver alice "selftest 3"

export T CA DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS
python3 - <<'PYEOF' || fail "see above"
import imapc, pimapc
from imapc import Response
from pimapc import LoginResult, View, ViewError, check_event_order, parse_tokens, parse_fetch
from gw_common import Checker, store, truth, deliver_n, PASS, CA, DOVECOT_IMAPS
import gw_common

C = Checker("gw_selftest")

def resp(*lines, lits=()):
    r = Response()
    lits = list(lits)
    for l in lines:
        r.parts.append(("line", (l + "\r\n").encode()))
        if l.endswith("}"):
            r.parts.append(("lit", lits.pop(0)))
    return r

def login(*lines):
    return LoginResult([resp(l) for l in lines])

SID = "0123456789abcdef0123456789ABCDEF"

def parser():
    r = login("* SESSIONID " + SID, "a OK [CAPABILITY IMAP4rev1 XPIMAPv1] done")
    C.check(r.session_state is None and r.session_id == SID and not r.resync and not r.problems
            and r.capabilities == ["IMAP4rev1", "XPIMAPv1"], "new session: %r" % r)
    r = login("* RESYNC", "* SESSIONID " + SID, "a OK x")
    C.check(r.resync and r.session_state is None and not r.problems, "expired: %r" % r)
    r = login("* SESSION AUTHENTICATED", "* SESSIONID " + SID, "a OK x")
    C.check(r.session_state == "AUTHENTICATED" and not r.problems, "authenticated: %r" % r)
    r = login("* SESSION SELECTED", '* FOLDER "Work Stuff"', "* 3 EXPUNGE", "* 4 EXISTS",
              "* 1 FETCH (UID 7 FLAGS (\\Seen))", "* SESSIONID " + SID, "a OK x")
    C.check(r.session_state == "SELECTED" and r.folder == "Work Stuff" and not r.problems
            and r.event_kinds() == ["EXPUNGE", "EXISTS", "FETCH"] and r.exists_numbers() == [4],
            "selected with events: %r" % r)
    C.check(check_event_order(r.events, 4) == [], "their order is fine from 4 messages")
    C.check(check_event_order(r.events, 2) != [], "but not from 2 (EXPUNGE 3 invalid)")
    r = LoginResult([resp("* SESSION SELECTED"), resp("* FOLDER {5}", lits=[b"INBOX"]),
                     resp("* RESYNC"), resp("* SESSIONID " + SID), resp("a OK x")])
    C.check(r.folder == "INBOX" and r.resync and not r.events and not r.problems, "literal folder + resync: %r" % r)
    bad = [
        ("* SESSIONID xyz", "a OK x"),
        ("* SESSION SELECTED", "* SESSIONID " + SID, "a OK x"),
        ("* SESSION SELECTED", "* FOLDER INBOX", "* RESYNC", "* 3 EXISTS", "* SESSIONID " + SID, "a OK x"),
        ("* SESSION SELECTED", "* FOLDER INBOX", "* 3 RECENT", "* SESSIONID " + SID, "a OK x"),
        ("* SESSIONID " + SID, "* SESSION AUTHENTICATED", "a OK x"),
        ("* SESSION AUTHENTICATED", "a OK x"),
        ("* OK hello", "* SESSIONID " + SID, "a OK x"),
        ("a OK x",),
    ]
    for b in bad:
        r = login(*b)
        C.check(r.problems, "problems found in %r: %r" % (b, r.problems))
    r = login("a NO [AUTHENTICATIONFAILED] no")
    C.check(r.status == "NO" and not r.problems, "NO is a status, not a grammar problem")
    # event order
    ev = lambda *ls: [resp(l) for l in ls]
    C.check(check_event_order(ev("* 5 EXPUNGE", "* 2 EXPUNGE", "* 4 EXISTS", "* 5 EXISTS",
                                 "* 1 FETCH (UID 1 FLAGS ())"), 5) == [], "valid order")
    for seq, cnt in [(("* 2 EXPUNGE", "* 5 EXPUNGE"), 5), (("* 4 EXISTS", "* 1 EXPUNGE"), 3),
                     (("* 5 EXISTS",), 3), (("* 1 FETCH (FLAGS ())", "* 4 EXISTS"), 3),
                     (("* 4 EXPUNGE",), 3), (("* 4 EXISTS", "* 4 EXISTS"), 3)]:
        C.check(check_event_order(ev(*seq), cnt) != [], "invalid order caught: %r from %d" % (seq, cnt))
    # tokens
    t = parse_tokens(resp('* 3 FETCH (UID 9 FLAGS (\\Seen $X) BODY[HEADER.FIELDS (SUBJECT)] {4}', ")", lits=[b"ab\r\n"]))
    C.equal(t, ["*", "3", "FETCH", ["UID", "9", "FLAGS", ["\\Seen", "$X"], "BODY[HEADER.FIELDS (SUBJECT)]", b"ab\r\n"]],
            "tokens")
    C.equal(parse_fetch(resp("* 2 FETCH (FLAGS (\\Recent \\Seen) UID 5 MODSEQ (12))")),
            (2, {"FLAGS": ["\\Recent", "\\Seen"], "UID": 5, "MODSEQ": 12}), "parse_fetch")
    # view rules
    v = View("INBOX")
    for l in ("* 3 EXISTS", "* 1 FETCH (UID 4 FLAGS (\\Recent))", "* 2 FETCH (UID 6 FLAGS ())",
              "* 3 FETCH (FLAGS (\\Seen) UID 9)"):
        v.apply(resp(l))
    C.equal(v.snapshot(), [(4, ()), (6, ()), (9, ("\\Seen",))], "view from EXISTS + FETCH")
    for l, why in (("* 4 EXPUNGE", "EXPUNGE past the end"), ("* 0 EXPUNGE", "EXPUNGE 0"),
                   ("* 2 FETCH (UID 7)", "UID change"), ("* 2 EXISTS", "EXISTS going down"),
                   ("* 4 FETCH (FLAGS ())", "FETCH past the end"), ("* VANISHED 4", "VANISHED")):
        try:
            v.copy().apply(resp(l))
            C.check(False, "ViewError for %s" % why)
        except ViewError as e:
            C.check(True, "ViewError for %s (%s)" % (why, e))
    w = v.copy()
    w.apply(resp("* 4 EXISTS"))
    try:
        w.apply(resp("* 4 FETCH (UID 5)"))
        C.check(False, "ViewError for a UID out of order")
    except ViewError:
        C.check(True, "ViewError for a UID out of order")
    v.apply(resp("* 2 EXPUNGE"))
    C.equal(v.snapshot(), [(4, ()), (9, ("\\Seen",))], "EXPUNGE shifts")
    C.equal(View.from_json(v.to_json()).snapshot(), v.snapshot(), "JSON round trip")

def dovecot():
    def client(label):
        c = pimapc.PimapClient("127.0.0.1", DOVECOT_IMAPS, tls=True, cafile=CA)
        c.label = label
        C.watch(c)
        c.connect()
        c.login("alice", PASS)
        return c
    a = client("alice viewer")
    v = a.select_view("INBOX")
    C.equal(v.snapshot(), truth("alice"), "select_view equals store_truth")
    C.equal(v.uids(), [1, 2, 3], "uids")
    s = store("alice")
    C.watch(s)
    s.select("INBOX")
    # changes while the viewer idles: flags, an expunge, a delivery
    tag = a.idle_start()
    s.store_uid(1, "+FLAGS", ["\\Flagged"])
    s.store_uid(3, "+FLAGS", ["\\Seen", "$Label1"])
    s.expunge_uids([2])
    deliver_n("alice", 2, "selftest new")
    a.wait_exists(4, timeout=10)
    a.idle_done(tag)
    v.complete(a)
    C.equal(v.snapshot(), truth("alice"), "view after IDLE events equals store_truth")
    C.equal(v.uids(), [1, 3, 4, 5], "uids after the changes")
    # NOOP-driven updates
    s.expunge_uids([1, 4])
    s.store_uid(5, "+FLAGS", ["\\Answered"])
    a.ok("NOOP")
    C.equal(v.snapshot(), truth("alice"), "view after NOOP equals store_truth")
    # resync
    w = View("INBOX")
    a.view = w
    w.resync(a)
    C.equal(w.snapshot(), truth("alice"), "resync view equals store_truth")
    # reselect: a kept model of Work, updated by a plain SELECT
    s.create("Work")
    s.append("Work", "work 1")
    s.append("Work", "work 2", flags=["\\Seen"])
    work = a.select_view("Work")
    C.equal(len(work), 2, "Work has 2")
    a.select_view("INBOX")
    s.append("Work", "work 3")
    resps = a.reselect(work)
    C.check(work.unknown() == [3], "reselect applied EXISTS 3 to the kept model")
    work.complete(a)
    C.equal(work.snapshot(), truth("alice", "Work"), "reselected Work equals store_truth")
    # drop: Dovecot closes its side on EOF
    a.drop(timeout=5)
    C.check(a.sock is None, "drop returned after the server closed")
    s.logout()

C.run("parser", parser)
C.run("dovecot", dovecot)
C.finish()
PYEOF
pass
