#!/usr/bin/env python3
"""gw_multi.py SECTION... - the protocol part of t_gw_multi.sh (gateway run
with limits.max_connections_per_device=5).

  five       one device, five simultaneous connections (as Thunderbird
             opens), one folder each; FETCH, NOOP, IDLE on all; a delivery
             to INBOX is pushed to the INBOX connection only; shared
             preferences; a sixth connection is refused with NO naming the
             limit; after all five drop, logins take the parked connections
             back oldest first
  isolation  preferences and sessions do not leak between devices of one
             user (alice#Pdev1 / alice#Pdev2) or between users (bob#Pdev1)
  peruser    (gateway run with limits.max_sessions_per_user=2 and
             limits.max_devices_per_user=2) a third live session of a user
             is refused naming the session limit; once one ends, a third
             device is refused naming the device limit, while a device the
             gateway knows logs in
  evict      (limits.max_devices_per_user=2, session.lifetime=2s) a new device
             takes the place of the device unused for a whole lifetime, and
             never of one whose session can still be resumed
"""

import os
import re
import sys
import time

from gw_common import Checker, gw, store, truth, deliver_n, subject_of, PASS
from pimapc import parse_tokens, untagged_kind

C = Checker("t_gw_multi")
LIMIT = 5
FOLDERS = ["INBOX", "Multi1", "Multi2", "Multi3", "Multi4"]
SESSION = {}


def get_prefs(c, names=None, cmd="XGETPIMAPPREFS"):
    tag, resps = c.command(cmd + (" (%s)" % " ".join(names) if names else ""))
    C.check(resps[-1].status == "OK", "%s -> %s" % (cmd, resps[-1].first))
    data = [x for x in resps[:-1] if untagged_kind(x)[1] in ("XGETPIMAPPREFS", "XGETPIMAPPREF")]
    C.check(len(data) == 1, "%s: one untagged XGETPIMAPPREFS response" % cmd, [x.first for x in resps])
    toks = parse_tokens(data[0])
    C.check(len(toks) == 3 and isinstance(toks[2], list) and len(toks[2]) % 2 == 0,
            "%s: * XGETPIMAPPREFS (name value ...)" % cmd, data[0].first)
    lst = toks[2]
    return {str(k).upper(): (v if isinstance(v, list) else str(v)) for k, v in zip(lst[0::2], lst[1::2])}


def set_pref(c, name, value):
    tag, resps = c.command("XSETPIMAPPREF %s %s" % (name, value))
    C.check(resps[-1].status == "OK", "XSETPIMAPPREF %s %s -> %s" % (name, value, resps[-1].first))


def login(c, user, device, view=None):
    r = c.pimap_login(user, device, PASS, mech="PLAIN", view=view)
    C.check(r.status == "OK", "login of %s#P%s -> %s" % (user, device, r.tagged.first), r.describe())
    C.check(not r.problems, "login responses follow PROTOCOL.md section 2", r.problems)
    return r


def five():
    s = C.watch(store("alice"))
    for i, f in enumerate(FOLDERS[1:], 1):
        s.create(f)
        for j in range(1, i + 2):
            s.append(f, "multi %s %d" % (f, j))
    s.logout()
    deliver_n("alice", 2, "multi INBOX")

    conns = []
    for i in range(LIMIT):
        c = C.watch(gw("alice#Pdev1 connection %d (%s)" % (i + 1, FOLDERS[i])))
        r = login(c, "alice", "dev1")
        if i == 0:
            C.check(r.session_state is None and r.session_id, "connection 1: a new session", r.describe())
            SESSION["alice"] = r.session_id
        else:
            C.check(r.session_state == "AUTHENTICATED" and r.session_id == SESSION["alice"] and not r.resync,
                    "connection %d: * SESSION AUTHENTICATED with the session's id (the session exists, "
                    "nothing parked, nothing selected)" % (i + 1), r.describe())
        conns.append(c)

    sixth = C.watch(gw("alice#Pdev1 connection 6 (over the limit)"))
    r = sixth.pimap_login("alice", "dev1", PASS, mech="PLAIN")
    C.check(r.status == "NO", "connection 6 of alice#Pdev1 refused with NO (limit %d): %s" % (LIMIT, r.tagged.first),
            r.describe())
    C.check(re.search(r"\b%d\b|max_connections_per_device" % LIMIT, r.tagged.first),
            "the refusal names the limit: %s" % r.tagged.first)
    C.check(not r.untagged or all(untagged_kind(x)[1] not in ("SESSION", "SESSIONID") for x in r.untagged),
            "the refused login got no session responses", r.describe())
    sixth.close()
    # The limit is told only to someone who knows the password: a stranger learns nothing about the device.
    stranger = C.watch(gw("alice#Pdev1 connection 6 with a wrong password"))
    r = stranger.pimap_login("alice", "dev1", "not-" + PASS, mech="PLAIN")
    C.check(r.status == "NO" and "LIMIT" not in r.tagged.first.upper() and "AUTHENTICATIONFAILED" in r.tagged.first.upper(),
            "a wrong password over the limit gets AUTHENTICATIONFAILED, not the limit: %s" % r.tagged.first,
            r.describe())
    stranger.close()

    views = []
    for c, f in zip(conns, FOLDERS):
        v = c.select_view(f)
        C.equal(v.snapshot(), truth("alice", f), "%s: SELECT %s, the view equals the store" % (c.label, f))
        C.equal(subject_of(c, 1), "multi %s 1" % f, "%s: FETCH 1 shows the first message of %s" % (c.label, f))
        c.ok("NOOP")
        views.append(v)
    C.check(True, "five connections of one device, each on its own folder, FETCH and NOOP work")

    tags = [c.idle_start() for c in conns]
    C.check(True, "all five in IDLE")
    deliver_n("alice", 1, "multi INBOX pushed")
    n = conns[0].wait_exists(timeout=15)
    C.equal(n, 3, "the INBOX connection got * 3 EXISTS in IDLE")
    for c, t, f in zip(conns, tags, FOLDERS):
        resps = c.idle_done(t)
        C.check(resps[-1].status == "OK", "%s: DONE -> %s" % (c.label, resps[-1].first))
        if f != "INBOX":
            C.check(not [x for x in resps if untagged_kind(x)[1] in ("EXISTS", "EXPUNGE")],
                    "%s (on %s): no event for the INBOX delivery" % (c.label, f), [x.first for x in resps])
    views[0].complete(conns[0])
    C.equal(views[0].snapshot(), truth("alice"), "INBOX connection: the view equals the store")
    for c, v, f in zip(conns[1:], views[1:], FOLDERS[1:]):
        c.ok("NOOP")
        C.equal(v.snapshot(), truth("alice", f), "%s: still on %s, view unchanged" % (c.label, f))

    set_pref(conns[1], "PIMAP_OUTBAND_FORMAT", "EXTENDED")
    p = get_prefs(conns[3], ["PIMAP_OUTBAND_FORMAT"])
    C.equal(p.get("PIMAP_OUTBAND_FORMAT"), "EXTENDED",
            "a preference set on connection 2 is seen on connection 4 (one session)")

    # Drop all five, oldest (INBOX) first: they are parked in that order.
    for c in conns:
        c.drop()
    C.log("dropped the five connections in order %s" % FOLDERS)
    deliver_n("alice", 1, "multi INBOX while parked")
    r1c = C.watch(gw("alice#Pdev1 resume 1"))
    r = login(r1c, "alice", "dev1", view=views[0])
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX" and not r.resync,
            "first login after the drops takes back the oldest parked connection: FOLDER INBOX", r.describe())
    C.equal(r.exists_numbers(), [4], "with the delivery made while parked: * 4 EXISTS")
    C.equal(r.session_id, SESSION["alice"], "same SESSIONID")
    views[0].complete(r1c)
    C.equal(views[0].snapshot(), truth("alice"), "resumed INBOX view equals the store")
    r2c = C.watch(gw("alice#Pdev1 resume 2"))
    r = login(r2c, "alice", "dev1", view=views[1])
    C.check(r.session_state == "SELECTED" and r.folder == "Multi1" and not r.resync and not r.events,
            "the second login takes back the next parked one: FOLDER Multi1, no events", r.describe())
    C.equal(subject_of(r2c, 1), "multi Multi1 1", "and it is on Multi1")


def isolation():
    a1 = C.watch(gw("alice#Pdev1"))
    r = login(a1, "alice", "dev1")
    C.check(r.session_state is not None and not r.resync, "alice#Pdev1 resumes its session", r.describe())
    if "alice" in SESSION:
        C.equal(r.session_id, SESSION["alice"], "alice#Pdev1: same SESSIONID")
    sid_a1 = r.session_id
    set_pref(a1, "PIMAP_INBAND_PUSH", "ON")
    C.equal(get_prefs(a1, ["PIMAP_INBAND_PUSH"]).get("PIMAP_INBAND_PUSH"), "ON",
            "alice#Pdev1 reads back PIMAP_INBAND_PUSH ON")

    a2 = C.watch(gw("alice#Pdev2"))
    r = login(a2, "alice", "dev2")
    C.check(r.session_state is None and not r.resync and r.session_id,
            "alice#Pdev2: a new session of its own (no SESSION line)", r.describe())
    C.check(r.session_id != sid_a1, "alice#Pdev2 has another SESSIONID than alice#Pdev1")
    p = get_prefs(a2, ["PIMAP_INBAND_PUSH"])
    C.equal(p.get("PIMAP_INBAND_PUSH"), "OFF", "alice#Pdev2 sees PIMAP_INBAND_PUSH OFF")
    p = get_prefs(a2)
    C.equal((p.get("PIMAP_INBAND_PUSH"), p.get("PIMAP_OUTBAND_FORMAT")), ("OFF", "EMN"),
            "alice#Pdev2, all preferences: the defaults, none of alice#Pdev1's")

    b1 = C.watch(gw("bob#Pdev1"))
    r = login(b1, "bob", "dev1")
    C.check(r.session_state is None and not r.resync and r.session_id,
            "bob#Pdev1 (same device id as alice's): a new session, no SESSION line", r.describe())
    C.check(r.session_id not in (sid_a1, a2.login_result.session_id), "bob's SESSIONID is his own")
    sid_b1 = r.session_id
    C.equal(get_prefs(b1, ["PIMAP_INBAND_PUSH"], cmd="XGETPIMAPPREF").get("PIMAP_INBAND_PUSH"), "OFF",
            "bob#Pdev1 sees PIMAP_INBAND_PUSH OFF (XGETPIMAPPREF spelling)")
    tag, resps = b1.command("SELECT Multi1")
    C.check(resps[-1].status == "NO", "bob cannot see alice's folder Multi1: %s" % resps[-1].first)
    b1.drop()
    b2 = C.watch(gw("bob#Pdev1 again"))
    r = login(b2, "bob", "dev1")
    C.check(r.session_state == "AUTHENTICATED" and r.session_id == sid_b1,
            "bob#Pdev1 resumes his own session (AUTHENTICATED, his id)", r.describe())
    C.equal(get_prefs(a1, ["PIMAP_INBAND_PUSH"]).get("PIMAP_INBAND_PUSH"), "ON",
            "alice#Pdev1 still has PIMAP_INBAND_PUSH ON")


def refused(user, device, limit_name):
    c = C.watch(gw("%s#P%s (over a limit)" % (user, device)))
    r = c.pimap_login(user, device, PASS, mech="PLAIN")
    C.check(r.status == "NO" and "[LIMIT]" in r.tagged.first and limit_name in r.tagged.first,
            "%s#P%s refused with NO [LIMIT] naming %s: %s" % (user, device, limit_name, r.tagged.first),
            r.describe())
    C.check(all(untagged_kind(x)[1] not in ("SESSION", "SESSIONID") for x in r.untagged),
            "the refused login got no session responses", r.describe())
    c.close()


def peruser():
    d1 = C.watch(gw("carol#Pd1"))
    login(d1, "carol", "d1")
    d2 = C.watch(gw("carol#Pd2"))
    login(d2, "carol", "d2")
    refused("carol", "d3", "limits.max_sessions_per_user")
    d1.ok("LOGOUT")  # ends d1's session; the device stays known
    d1.close()
    refused("carol", "d3", "limits.max_devices_per_user")
    again = C.watch(gw("carol#Pd1 again"))
    r = login(again, "carol", "d1")
    C.check(r.session_state is None, "a known device logs in again (a new session)", r.describe())
    again.ok("LOGOUT")
    d2.ok("LOGOUT")


def gateway_log():
    try:
        with open(os.environ["GW_LOG"], errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def evict():
    a = C.watch(gw("dave#Pa"))
    login(a, "dave", "a")
    set_pref(a, "PIMAP_INBAND_PUSH", "ON")
    # Gone without LOGOUT and with no folder selected: the session is only a
    # record in the database, detached; once it has timed out it holds nothing.
    a.drop()
    used = time.monotonic()
    b = C.watch(gw("dave#Pb"))
    login(b, "dave", "b")
    refused("dave", "c", "limits.max_devices_per_user")  # a was used just now
    # The lifetime is the condition here: device a must stay unused for 2 s.
    while time.monotonic() - used < 2.5:
        time.sleep(0.1)
    c = C.watch(gw("dave#Pc"))
    login(c, "dave", "c")
    C.check("device a of dave forgotten" in gateway_log(),
            "the gateway forgot device a (unused longest) to make room for c")
    refused("dave", "a", "limits.max_devices_per_user")  # b and c are live: neither may go
    c.ok("LOGOUT")
    b.ok("LOGOUT")


SECTIONS = {"five": five, "isolation": isolation, "peruser": peruser, "evict": evict}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        C.run(name, SECTIONS[name])
    C.finish()
