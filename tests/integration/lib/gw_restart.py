#!/usr/bin/env python3
"""gw_restart.py PHASE USER... - the protocol part of t_gw_restart.sh.

The shell restarts the gateway between phases; what the client knows (its
view of INBOX and the SESSIONID) is kept in $T/client-USER.json, as a real
client keeps it across a gateway restart.

  detach USER...         first login of USER#Pdev1, SELECT INBOX, save, drop
  resume USER... [--events N] [--redetach]
                         login with the saved view: SESSION SELECTED, FOLDER
                         INBOX, exactly N EXISTS (default 3), no RESYNC, same
                         SESSIONID; the view equals the store. --redetach:
                         save the view and drop again (else LOGOUT)
  attach USER MODE       (run in the background) first login, SELECT INBOX,
                         save, create $T/ready-USER, then stay attached until
                         the gateway goes away. MODE term: a "* BYE" must come
                         before the connection closes; MODE kill: any close
  resync USER            login after a crash of the gateway while USER was
                         attached: RESYNC; a resync fetch gives the store's view
"""

import json
import os
import sys

from gw_common import Checker, gw, truth, PASS, T
from pimapc import View, check_event_order, untagged_kind, Closed, Timeout, IMAPError

C = Checker("t_gw_restart")


def state_path(user):
    return os.path.join(T, "client-%s.json" % user)


def save(user, view, sid):
    with open(state_path(user) + ".tmp", "w") as f:
        json.dump({"view": view.to_json(), "sid": sid}, f)
    os.rename(state_path(user) + ".tmp", state_path(user))


def load(user):
    with open(state_path(user)) as f:
        d = json.load(f)
    return View.from_json(d["view"]), d["sid"]


def first_login_and_select(user, label):
    c = C.watch(gw(label))
    r = c.pimap_login(user, "dev1", PASS)
    C.check(r.status == "OK" and not r.problems, "first login of %s#Pdev1 -> %s" % (user, r.tagged.first),
            r.problems or r.describe())
    C.check(r.session_state is None and not r.resync and r.session_id,
            "first login: only * SESSIONID %s" % r.session_id, r.describe())
    v = c.select_view("INBOX")
    C.equal(v.snapshot(), truth(user), "SELECT INBOX: the view equals the store")
    save(user, v, r.session_id)
    return c, v, r.session_id


def detach(user):
    c, v, sid = first_login_and_select(user, "%s#Pdev1 before the restart" % user)
    c.drop()
    C.log("%s: %d messages in the view, connection dropped" % (user, len(v)))


def resume(user, events, redetach):
    v, sid = load(user)
    n0 = len(v)
    c = C.watch(gw("%s#Pdev1 after the restart" % user))
    r = c.pimap_login(user, "dev1", PASS, view=v)
    C.log("%s: resume responses:\n%s" % (user, r.describe()))
    C.check(r.status == "OK", "resume -> %s" % r.tagged.first)
    C.check(not r.problems, "resume: responses follow PROTOCOL.md section 2", r.problems)
    C.check(r.session_state == "SELECTED" and r.folder == "INBOX",
            "resume: * SESSION SELECTED, * FOLDER INBOX", r.describe())
    C.check(not r.resync, "resume: no RESYNC", r.describe())
    C.check(r.session_id == sid, "resume: the same SESSIONID %s" % sid, r.describe())
    C.equal(r.event_kinds(), ["EXISTS"] * events, "resume: exactly %d events, all EXISTS" % events)
    C.equal(r.exists_numbers(), list(range(n0 + 1, n0 + events + 1)), "resume: EXISTS numbers")
    C.equal(check_event_order(r.events, n0), [], "resume: event order rules")
    v.complete(c)
    C.equal(v.snapshot(), truth(user), "the view equals the store")
    if redetach:
        save(user, v, sid)
        c.drop()
        C.log("%s: view saved, dropped again" % user)
    else:
        c.logout()


def attach(user, mode):
    c, v, sid = first_login_and_select(user, "%s#Pdev1 attached while the gateway stops" % user)
    open(os.path.join(T, "ready-%s" % user), "w").close()
    C.log("%s: attached in SELECTED state, waiting for the gateway to go away" % user)
    seen = []
    try:
        while True:
            seen.append(c.read_response(timeout=60))
    except Closed:
        pass
    except Timeout:
        C.check(False, "the connection stayed open 60 s after the gateway was told to stop")
    except (OSError, IMAPError) as e:
        C.log("%s: connection ended with %s" % (user, e))
    C.log("%s: read before the close: %r" % (user, [x.first for x in seen]))
    if mode == "term":
        C.check(any(x.first.startswith("* BYE") for x in seen),
                "SIGTERM: the attached client got * BYE before the close", [x.first for x in seen])
        C.check(not [x for x in seen if untagged_kind(x)[1] in ("EXPUNGE",)],
                "no EXPUNGE on the way out")
    else:
        C.check(True, "SIGKILL: the connection closed")


def resync(user):
    v, sid = load(user)
    c = C.watch(gw("%s#Pdev1 after the crash" % user))
    r = c.pimap_login(user, "dev1", PASS, view=v)
    C.log("%s: login after the crash:\n%s" % (user, r.describe()))
    C.check(r.status == "OK", "login -> %s" % r.tagged.first)
    C.check(not r.problems, "login: responses follow PROTOCOL.md section 2", r.problems)
    C.check(r.resync, "* RESYNC: the gateway died while the device was attached", r.describe())
    C.check(not r.events, "no events with RESYNC", r.describe())
    if r.session_state == "SELECTED":
        C.check(r.folder == "INBOX", "the session resumes on INBOX", r.describe())
        v.resync(c)
    else:
        v = c.select_view("INBOX")
    C.equal(v.snapshot(), truth(user), "after the resync fetch the view equals the store")
    c.logout()


if __name__ == "__main__":
    args = sys.argv[1:]
    phase = args.pop(0)
    redetach = "--redetach" in args
    events = 3
    if "--events" in args:
        i = args.index("--events")
        events = int(args[i + 1])
        del args[i:i + 2]
    users = [a for a in args if not a.startswith("--")]
    if phase == "detach":
        for u in users:
            C.run("detach " + u, detach, u)
    elif phase == "resume":
        for u in users:
            C.run("resume " + u, resume, u, events, redetach)
    elif phase == "attach":
        C.run("attach %s (%s)" % (users[0], users[1]), attach, users[0], users[1])
    elif phase == "resync":
        for u in users:
            C.run("resync " + u, resync, u)
    else:
        sys.exit("unknown phase " + phase)
    C.finish()
