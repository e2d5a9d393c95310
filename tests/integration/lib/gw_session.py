#!/usr/bin/env python3
"""gw_session.py SECTION... - the protocol part of t_gw_session.sh.

Sections (PROTOCOL.md section 2), each with its own user so that a failure
in one does not disturb the others:
  a  alice  resume SELECTED after a dropped connection: only new mail
  b  bob    resume with flag changes, an expunge and new mail by another client
  c  carol  LOGOUT ends the session
  d  dave   resume AUTHENTICATED
  e  erin   other folders: the saved view of a folder left by SELECT
  f  frank  queue overflow (gateway run with limits.max_queued_events=3)
  g  erin   session expiry (gateway run with session.lifetime=2s)
  h  carol  other subscribed folders watched while detached (NOTIFY), with
            limits.max_queued_events=3: under the limit the events come on
            SELECT, over it the folder's view is dropped (full state)
"""

import os
import sys
import time

from gw_common import Checker, gw, store, truth, deliver_n, subject_of, wait_until, PASS
from pimapc import check_event_order, untagged_kind, parse_fetch

C = Checker("t_gw_session")


def login_ok(c, user, device, mech="LOGIN", view=None, what="login"):
    r = c.pimap_login(user, device, PASS, mech=mech, view=view)
    C.check(r.status == "OK", "%s of %s#P%s (%s) -> %s" % (what, user, device, mech, r.tagged.first),
            r.describe())
    C.check(not r.problems, "%s: the responses follow PROTOCOL.md section 2" % what,
            "\n".join(["    problem: " + p for p in r.problems]) + "\n" + r.describe())
    return r


def expect_new_session(r, what):
    C.check(r.session_state is None and not r.resync and r.session_id,
            "%s: a new session: only * SESSIONID (%s), no SESSION, no RESYNC" % (what, r.session_id),
            r.describe())


def expect_resume_selected(r, folder, sid, what):
    C.check(r.session_state == "SELECTED", "%s: * SESSION SELECTED" % what, r.describe())
    C.check(r.folder == folder, "%s: * FOLDER %s" % (what, folder), r.describe())
    C.check(not r.resync, "%s: no RESYNC" % what, r.describe())
    C.check(r.session_id == sid, "%s: the same SESSIONID %s" % (what, sid), r.describe())


# --- (a) --------------------------------------------------------------------------------

def sec_a():
    deliver_n("alice", 3, "session a before")
    c = C.watch(gw("alice#Pdev1, first connection"))
    r = login_ok(c, "alice", "dev1", what="first login")
    expect_new_session(r, "first login")
    C.equal([x.first.split()[1] for x in r.untagged if untagged_kind(x)[1] != "CAPABILITY"], ["SESSIONID"],
            "first login: the untagged responses before the tagged OK (CAPABILITY aside)")
    sid = r.session_id
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2, 3], "SELECT INBOX through the gateway: 3 messages")
    C.equal(v.snapshot(), truth("alice"), "the view equals the store")
    c.drop()
    C.log("dropped the connection (no LOGOUT)")
    new = deliver_n("alice", 5, "session a during the outage")
    want = truth("alice")
    C.equal(len(want), 8, "the store has 8 messages")

    c2 = C.watch(gw("alice#Pdev1, second connection"))
    r = login_ok(c2, "alice", "dev1", view=v, what="resume")
    expect_resume_selected(r, "INBOX", sid, "resume")
    C.equal(r.event_kinds(), ["EXISTS"] * 5, "resume: exactly 5 events, all EXISTS")
    C.equal(r.exists_numbers(), [4, 5, 6, 7, 8], "resume: * n EXISTS with n = 4..8 in order")
    C.equal(check_event_order(r.events, 3), [], "resume: event order rules")
    # SELECTED at once: FETCH without SELECT
    v.complete(c2)
    C.check(True, "FETCH 4:8 (UID FLAGS) works right after the resume, without SELECT")
    C.equal(subject_of(c2, 8), new[-1], "FETCH 8 body header: the last delivered message")
    C.equal(v.snapshot(), want, "the client's view equals the store")
    tag, resps = c2.command("NOOP")
    C.check(resps[-1].status == "OK" and not [x for x in resps[:-1] if untagged_kind(x)[1] in ("EXISTS", "EXPUNGE")],
            "NOOP after the resume reports nothing more (the events were all given at login)",
            [x.first for x in resps])
    c2.logout()


# --- (b) --------------------------------------------------------------------------------

def sec_b():
    deliver_n("bob", 4, "session b before")
    c = C.watch(gw("bob#Pdev1, first connection"))
    r = login_ok(c, "bob", "dev1", mech="PLAIN", what="first login (AUTHENTICATE PLAIN)")
    expect_new_session(r, "first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    C.equal(v.uids(), [1, 2, 3, 4], "SELECT INBOX: 4 messages")
    c.drop()
    s = C.watch(store("bob"))
    s.select("INBOX")
    s.store_uid(1, "+FLAGS", ["\\Flagged"])
    s.store_uid(3, "+FLAGS", ["\\Seen", "$Label1"])
    s.expunge_uids([2])
    s.logout()
    deliver_n("bob", 2, "session b during the outage")
    want = truth("bob")
    C.equal([u for u, _ in want], [1, 3, 4, 5, 6], "the store after the outage (UIDs)")

    c2 = C.watch(gw("bob#Pdev1, second connection"))
    r = c2.pimap_login("bob", "dev1", PASS, mech="PLAIN", view=v)
    C.log("resume responses:\n" + r.describe())
    C.check(r.status == "OK", "resume -> %s" % r.tagged.first)
    C.check(r.view_error is None, "every event applies to the client's view at the moment it is read "
            "(EXPUNGE numbers valid)", r.view_error)
    C.check(not r.problems, "resume: the responses follow PROTOCOL.md section 2", r.problems)
    expect_resume_selected(r, "INBOX", sid, "resume")
    C.equal(check_event_order(r.events, 4), [], "resume: event order rules (EXPUNGE, EXISTS, FETCH)")
    first_events = r.events
    kinds = r.event_kinds()
    C.equal(kinds.count("EXPUNGE"), 1, "one EXPUNGE")
    C.equal(r.exists_numbers(), [4, 5], "two EXISTS, 4 and 5")
    fetches = [parse_fetch(x) for x in r.events if untagged_kind(x)[1] == "FETCH"]
    C.check(all("UID" in it and "FLAGS" in it for _, it in fetches),
            "every FETCH event carries UID and FLAGS", [x.first for x in r.events])
    C.check({1, 3} <= {it["UID"] for _, it in fetches},
            "FETCH events for the two messages whose flags changed (UIDs 1 and 3)")
    # Before learning anything else: the messages the client knew are exact.
    known = [(u, f) for u, f in v.snapshot() if u is not None]
    C.equal(known, [(u, f) for u, f in want if u in (1, 3, 4)],
            "after the events alone, the messages the client knew are exactly the store's")
    C.equal(v.unknown(), [4, 5], "only the two new messages are unknown")
    v.complete(c2)
    C.equal(v.snapshot(), want, "after FETCH 4:5 (UID FLAGS) the view equals the store exactly")

    # Second outage: two expunges (messages 2 and 4 of 5) and a flag cleared.
    c2.drop()
    s = C.watch(store("bob"))
    s.select("INBOX")
    s.expunge_uids([3, 5])
    s.store_uid(1, "-FLAGS", ["\\Flagged"])
    s.logout()
    want = truth("bob")
    C.equal(want, [(1, ()), (4, ()), (6, ())], "the store after the second outage")
    c3 = C.watch(gw("bob#Pdev1, third connection"))
    r = c3.pimap_login("bob", "dev1", PASS, mech="PLAIN", view=v)
    C.log("second resume responses:\n" + r.describe())
    C.check(r.status == "OK" and r.view_error is None and not r.problems,
            "second resume: OK, every event applies at the moment it is read", r.problems)
    expect_resume_selected(r, "INBOX", sid, "second resume")
    C.equal([x.first for x in r.events if untagged_kind(x)[1] == "EXPUNGE"], ["* 4 EXPUNGE", "* 2 EXPUNGE"],
            "second resume: * 4 EXPUNGE then * 2 EXPUNGE (highest number first)")
    C.equal(check_event_order(r.events, 5), [], "second resume: event order rules")
    C.equal(v.snapshot(), want, "second resume: the events alone make the view equal the store")
    c3.logout()
    fetches = [x.first for x in first_events + r.events if untagged_kind(x)[1] == "FETCH"]
    C.check(not [f for f in fetches if "MODSEQ" in f.upper()],
            "FETCH events have the profile's form * n FETCH (UID u FLAGS (...)): no MODSEQ "
            "(this client never enabled CONDSTORE)", fetches)


# --- (c) --------------------------------------------------------------------------------

def sec_c():
    deliver_n("carol", 1, "session c")
    c = C.watch(gw("carol#Pdev1, first connection"))
    r = login_ok(c, "carol", "dev1", mech="PLAIN-IR", what="first login (AUTHENTICATE PLAIN with SASL-IR)")
    expect_new_session(r, "first login")
    sid1 = r.session_id
    c.select_view("INBOX")
    resps = c.logout()
    C.check(any(x.first.startswith("* BYE") for x in resps), "LOGOUT: * BYE then OK")
    c2 = C.watch(gw("carol#Pdev1, after LOGOUT"))
    r = login_ok(c2, "carol", "dev1", mech="PLAIN-IR", what="login after LOGOUT")
    expect_new_session(r, "login after LOGOUT")
    C.check(r.session_id != sid1, "a new SESSIONID (%s, was %s)" % (r.session_id, sid1))
    # and no trace of the old session: AUTHENTICATED, nothing selected
    tag, resps = c2.command("FETCH 1 (FLAGS)")
    C.check(resps[-1].status in ("NO", "BAD"), "not SELECTED after the new login: FETCH -> %s" % resps[-1].first)
    c2.drop()
    c3 = C.watch(gw("carol#Pdev1, after a drop"))
    r = login_ok(c3, "carol", "dev1", what="login after dropping the new session")
    C.check(r.session_state == "AUTHENTICATED" and r.session_id == c2.login_result.session_id,
            "the new session resumes (SESSION AUTHENTICATED, same id)", r.describe())
    c3.logout()


# --- (d) --------------------------------------------------------------------------------

def sec_d():
    deliver_n("dave", 1, "session d")
    c = C.watch(gw("dave#Pdev1, first connection"))
    r = login_ok(c, "dave", "dev1", mech="PLAIN", what="first login")
    expect_new_session(r, "first login")
    sid = r.session_id
    c.ok("NOOP")
    c.drop()
    c2 = C.watch(gw("dave#Pdev1, second connection"))
    r = login_ok(c2, "dave", "dev1", mech="PLAIN", what="resume")
    C.check(r.session_state == "AUTHENTICATED", "resume: * SESSION AUTHENTICATED", r.describe())
    C.check(r.folder is None and not r.events and not r.resync, "resume: no FOLDER, no events, no RESYNC",
            r.describe())
    C.check(r.session_id == sid, "resume: the same SESSIONID %s" % sid, r.describe())
    tag, resps = c2.command("FETCH 1 (FLAGS)")
    C.check(resps[-1].status in ("NO", "BAD"), "AUTHENTICATED state: FETCH -> %s" % resps[-1].first)
    v = c2.select_view("INBOX")
    C.equal(v.snapshot(), truth("dave"), "SELECT INBOX then works and the view equals the store")
    c2.logout()


# --- (e) --------------------------------------------------------------------------------

def sec_e():
    s = C.watch(store("erin"))
    s.create("Work")
    s.append("Work", "work 1")
    s.append("Work", "work 2", flags=["\\Flagged"])
    deliver_n("erin", 2, "session e inbox")
    c = C.watch(gw("erin#Pdev1"))
    r = login_ok(c, "erin", "dev1", what="first login")
    expect_new_session(r, "first login")
    work = c.select_view("Work")
    C.equal(work.snapshot(), truth("erin", "Work"), "SELECT Work: the view equals the store")
    saved_uidnext, saved_hms = work.uidnext, work.highestmodseq
    C.check(saved_uidnext == 3, "SELECT Work gave [UIDNEXT 3] (got %r)" % saved_uidnext)
    inbox = c.select_view("INBOX")
    C.equal(inbox.snapshot(), truth("erin"), "SELECT INBOX: the view equals the store")
    s.append("Work", "work 3")
    s.append("Work", "work 4", flags=["\\Seen"])
    s.logout()
    resps = c.reselect(work)
    C.log("SELECT Work again:\n" + "\n".join("    S: " + x.first for x in resps))
    exists = [(i, untagged_kind(x)[0]) for i, x in enumerate(resps) if untagged_kind(x)[1] == "EXISTS"]
    C.equal([n for _, n in exists], [2, 3, 4],
            "SELECT Work: * 2 EXISTS (the count the client had), then * 3 EXISTS, * 4 EXISTS")
    first_event = exists[1][0]
    C.check(all(untagged_kind(x)[1] in ("EXISTS", "EXPUNGE", "FETCH") for x in resps[first_event:-1]),
            "the events follow the SELECT data, before the tagged OK",
            [x.first for x in resps[first_event:]])
    C.check(work.uidnext == saved_uidnext, "SELECT Work: [UIDNEXT %s] as it was (got %s)"
            % (saved_uidnext, work.uidnext))
    if saved_hms is not None:
        codes = [x.first for x in resps if "HIGHESTMODSEQ" in x.first.upper()]
        C.check(any("HIGHESTMODSEQ %d]" % saved_hms in x for x in codes),
                "SELECT Work: [HIGHESTMODSEQ %d] as it was" % saved_hms, codes)
    C.equal(work.unknown(), [3, 4], "the two new messages are unknown to the client")
    work.complete(c)
    C.equal(work.snapshot(), truth("erin", "Work"), "Work: the view equals the store after FETCH 3:4")
    resps = c.reselect(inbox)
    C.equal([untagged_kind(x)[0] for x in resps if untagged_kind(x)[1] == "EXISTS"], [2],
            "SELECT INBOX again (unchanged): only * 2 EXISTS")
    C.equal(inbox.snapshot(), truth("erin"), "INBOX: the view still equals the store")
    c.logout()


# --- (f) --------------------------------------------------------------------------------

def sec_f():
    deliver_n("frank", 1, "session f before")
    c = C.watch(gw("frank#Pdev1, first connection"))
    r = login_ok(c, "frank", "dev1", what="first login")
    expect_new_session(r, "first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    C.equal(len(v), 1, "SELECT INBOX: 1 message")
    c.drop()
    deliver_n("frank", 5, "session f overflow")
    c2 = C.watch(gw("frank#Pdev1, second connection"))
    r = login_ok(c2, "frank", "dev1", view=v, what="resume after 5 events (limit 3)")
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX",
            "resume: * SESSION SELECTED, * FOLDER INBOX", r.describe())
    C.check(r.resync, "resume: * RESYNC (5 events > limits.max_queued_events=3)", r.describe())
    C.check(not r.events, "resume: no events with RESYNC", r.describe())
    C.check(r.session_id == sid, "resume: the same SESSIONID", r.describe())
    v.resync(c2)
    C.equal(v.snapshot(), truth("frank"), "after UID FETCH 1:* (FLAGS) the view equals the store")
    # at the limit exactly: 3 events are not more than 3
    c2.drop()
    deliver_n("frank", 3, "session f at the limit")
    c3 = C.watch(gw("frank#Pdev1, third connection"))
    r = login_ok(c3, "frank", "dev1", view=v, what="resume after 3 events (limit 3)")
    expect_resume_selected(r, "INBOX", sid, "resume at the limit")
    C.equal(r.exists_numbers(), [7, 8, 9], "resume at the limit: * 7, 8, 9 EXISTS")
    v.complete(c3)
    C.equal(v.snapshot(), truth("frank"), "the view equals the store")
    c3.logout()


# --- (g) --------------------------------------------------------------------------------

def sec_g():
    c = C.watch(gw("erin#Pdev7, first connection"))
    r = login_ok(c, "erin", "dev7", what="first login")
    expect_new_session(r, "first login")
    sid = r.session_id
    v = c.select_view("INBOX")
    c.drop()
    # The lifetime is the condition: the session must outlive 2 s without a connection.
    detached = time.monotonic()
    deliver_n("erin", 1, "session g during the outage")
    while time.monotonic() - detached < 2.5:
        time.sleep(0.1)
    c2 = C.watch(gw("erin#Pdev7, after expiry"))
    r = login_ok(c2, "erin", "dev7", view=None, what="login after session.lifetime")
    C.check(r.resync, "login after expiry: * RESYNC (the queued events are gone)", r.describe())
    C.check(r.session_state is None, "login after expiry: no * SESSION (nothing to resume)", r.describe())
    C.check(r.session_id and r.session_id != sid, "login after expiry: a new SESSIONID", r.describe())
    v = c2.select_view("INBOX")
    C.equal(v.snapshot(), truth("erin"), "after the state comparison the view equals the store")
    c2.drop()
    c3 = C.watch(gw("erin#Pdev7, right after"))
    r = login_ok(c3, "erin", "dev7", what="resume within the lifetime")
    C.check(not r.resync and r.session_state == "SELECTED", "a resume within the lifetime has no RESYNC",
            r.describe())
    c3.logout()


# --- (h) --------------------------------------------------------------------------------

def gateway_log_has(text):
    try:
        with open(os.environ["GW_LOG"], errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


def sec_h():
    s = C.watch(store("carol"))
    for box in ("WatchA", "WatchB"):
        s.create(box)
        s.ok("SUBSCRIBE %s" % box)
        s.append(box, "%s 1" % box)
    s.ok("SUBSCRIBE INBOX")
    c = C.watch(gw("carol#Pdev8, first connection"))
    r = login_ok(c, "carol", "dev8", what="first login")
    wa = c.select_view("WatchA")
    wb = c.select_view("WatchB")
    c.select_view("INBOX")
    c.drop()
    wait_until(lambda: gateway_log_has("session carol#Pdev8: watching the subscribed folders (NOTIFY)"), 10,
               "the detached session to watch its subscribed folders")
    C.check(True, "detached: the gateway watches the subscribed folders with NOTIFY")
    s.append("WatchA", "WatchA 2")
    s.append("WatchA", "WatchA 3")
    for i in range(5):
        s.append("WatchB", "WatchB %d" % (i + 2))
    wait_until(lambda: gateway_log_has("session carol#Pdev8: 2 events pending in WatchA"), 10,
               "the gateway to count 2 events in WatchA")
    C.check(True, "the gateway counted the 2 events of WatchA from NOTIFY")
    wait_until(lambda: gateway_log_has("session carol#Pdev8: more than 3 events pending in WatchB"), 10,
               "the gateway to see WatchB overflow")
    C.check(True, "the gateway saw more than limits.max_queued_events=3 events in WatchB")
    c2 = C.watch(gw("carol#Pdev8, resume"))
    r = login_ok(c2, "carol", "dev8", what="resume")
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and not r.resync and not r.events,
            "resume: SESSION SELECTED, FOLDER INBOX, no events there", r.describe())
    resps = c2.reselect(wa)
    C.equal([untagged_kind(x)[0] for x in resps if untagged_kind(x)[1] == "EXISTS"], [1, 2, 3],
            "SELECT WatchA: * 1 EXISTS (the saved view), then * 2 and * 3 EXISTS")
    wa.complete(c2)
    C.equal(wa.snapshot(), truth("carol", "WatchA"), "WatchA: the view equals the store")
    tag, resps = c2.command("SELECT WatchB")
    C.equal([untagged_kind(x)[0] for x in resps if untagged_kind(x)[1] == "EXISTS"], [6],
            "SELECT WatchB after the overflow: the store's full state, * 6 EXISTS, no events")
    s.append("WatchA", "WatchA 4")  # a change in a folder that is not selected
    tag, resps = c2.command("NOOP")
    C.check(not any(untagged_kind(x)[1] == "STATUS" for x in resps),
            "the resumed connection gets no NOTIFY STATUS (the watch was the gateway's)",
            [x.first for x in resps])
    s.logout()
    c2.logout()


SECTIONS = {"a": sec_a, "b": sec_b, "c": sec_c, "d": sec_d, "e": sec_e, "f": sec_f, "g": sec_g, "h": sec_h}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        C.run(name, SECTIONS[name])
    C.finish()
