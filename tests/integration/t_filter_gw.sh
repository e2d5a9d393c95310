#!/bin/bash
# t_filter_gw.sh - pimap-gateway: XFILTER view and notification filters
# (docs/PROTOCOL.md section 10) against a real Dovecot.
#
# bob's INBOX holds 120 messages spread over 90 days (APPENDed with their
# arrival dates), from VIP and other senders, of various sizes, some seen.
#  1. XFILTER: set, GET (one folder, ALL), B, the forms of the draft; a
#     mutable criterion (SEEN, KEYWORD), a negated DAYSBEFORETODAY and bad
#     syntax are refused with a clear NO / BAD; filters persist per device
#     (another device has none; a new session still has them);
#  2. a 7-day view: SELECT shows exactly the messages the store itself
#     finds with SINCE <7 days ago>; SEARCH ALL, UID SEARCH ALL, STATUS and
#     FETCH 1:* agree; hidden UIDs are not fetched, stored or copied; STATUS
#     of the filtered INBOX from another folder counts the view too, also
#     when the filter was first set after the login (no new login needed);
#  3. new mail: a matching message (today) is pushed in IDLE as EXISTS, a
#     non-matching one (APPENDed with an old date) never appears; expunging
#     a hidden message changes nothing for the client; expunging a visible
#     one gives the right EXPUNGE;
#  4. EXPUNGE and CLOSE in the view spare a hidden \Deleted message;
#     SEARCH with sequence sets, ESEARCH, SORT and THREAD in view numbers;
#  5. leaving and returning, dropping the connection and resuming, and a
#     gateway restart: the client's view is caught up with events in view
#     numbers (it equals the reference afterwards);
#  6. the notification filter (N FROM vip): in IDLE a new non-VIP message
#     is not pushed; a VIP one is, and with it everything before it; the
#     rest shows on the next NOOP or SELECT; with PIMAP_EVENT_FILTER NONE
#     even VIP mail waits;
#  7. a size view (NOT LARGER 1048576): 1.2 MB messages never appear.
#
# By hand: tests/integration/t_filter_gw.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"

gen_certs
start_dovecot
start_gateway
gw_env

py_part "populate" <<'PYEOF'
from gwt import *
from filter_lib import *
import json
s = store("bob")
s.ok("CREATE Archive")
msgs = populate(s, "INBOX", 120, 90, seed=5, big=(3, 117))
with open(E["T"] + "/msgs.json", "w") as f:
    json.dump(msgs, f)
s.ok("LOGOUT")
print("populated %d messages" % len(msgs), file=sys.stderr)
PYEOF

py_part "views" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient, View

GW = int(E["GW_PORT"])


pimap = gateway_client


def xf(c, args):
    tag, resps = c.command("XFILTER " + args)
    return resps


def ref7(s):
    return reference(s, "INBOX", "SINCE %s" % imap_date(7))


def expect_view(c, v, s, keys, what):
    ref = reference(s, "INBOX", keys)
    probs = check_view(c, v, ref, what)
    check(not probs, "%s: %d messages, SEARCH/STATUS/FETCH agree%s" % (what, len(ref), "; " + "; ".join(probs) if probs else ""))
    return ref


@step("1. XFILTER: set, GET, refusals, persistence")
def _():
    c = pimap("phone")
    r = xf(c, "INBOX V DAYSBEFORETODAY 7")
    check(r[-1].status == "OK", "XFILTER INBOX V DAYSBEFORETODAY 7 -> %r" % r[-1].first)
    r = xf(c, "INBOX V GET")
    check([x.first for x in r[:-1]] == ["* XFILTER INBOX V DAYSBEFORETODAY 7"], "GET: %r" % firsts(r))
    r = xf(c, "ALL V GET")
    check(firsts(r)[:-1] == ["* XFILTER ALL V ALL", "* XFILTER INBOX V DAYSBEFORETODAY 7"], "ALL V GET: %r" % firsts(r))
    r = xf(c, "INBOX N GET")
    check(firsts(r)[:-1] == ["* XFILTER INBOX N ALL"], "the notification filter's default is ALL: %r" % firsts(r))
    for bad, status, text in (("INBOX V SEEN", "NO", "SEEN depends on flags"),
                              ("INBOX V FROM x KEYWORD $Junk", "NO", "KEYWORD depends on flags"),
                              ("INBOX V NOT DAYSBEFORETODAY 3", "NO", "cannot be negated"),
                              ("INBOX V FROM", "BAD", "FROM needs"),
                              ("INBOX Q ALL", "BAD", "V (view), N (notification) or B")):
        r = xf(c, bad)
        check(r[-1].status == status and text in r[-1].first, "XFILTER %s -> %r" % (bad, r[-1].first))
    r = xf(c, "INBOX V GET")
    check(firsts(r)[:-1] == ["* XFILTER INBOX V DAYSBEFORETODAY 7"], "refusals changed nothing: %r" % firsts(r))
    c.logout()
    c = pimap("tablet")
    r = xf(c, "INBOX V GET")
    check(firsts(r)[:-1] == ["* XFILTER INBOX V ALL"], "another device has no filter: %r" % firsts(r))
    c.logout()
    c = pimap("phone")
    r = xf(c, "INBOX V GET")
    check(firsts(r)[:-1] == ["* XFILTER INBOX V DAYSBEFORETODAY 7"], "a new session of the device keeps it: %r" % firsts(r))
    caps = [x.first for x in c.ok("CAPABILITY") if x.first.startswith("* CAPABILITY")]
    check(caps and " XFILTER" in caps[0] and "LIST-STATUS" not in caps[0],
          "XFILTER advertised, LIST-STATUS not (the device has views): %r" % caps)
    c.logout()


@step("2. a 7-day view: SELECT, SEARCH, STATUS, FETCH agree with the store")
def _():
    s = store_client()
    ref = ref7(s)
    check(0 < len(ref) < 30, "the store has %d messages of the last 7 days (of 120)" % len(ref))
    c = pimap("phone")
    v = c.select_view("INBOX")
    check(v.uids() == ref, "SELECT + UID FETCH 1:*: exactly the 7-day messages %r" % v.uids())
    check(not any(re.match(r"\* OK \[UNSEEN", x.first) for x in v.select_responses), "no store UNSEEN number")
    expect_view(c, v, s, "SINCE %s" % imap_date(7), "7-day view")
    allu = all_uids(s)
    hidden = [u for u in allu if u not in ref]
    resps = c.ok("UID FETCH %d,%d (FLAGS)" % (hidden[0], ref[0]))
    f = [x.first for x in resps if " FETCH " in x.first]
    check(len(f) == 1 and "UID %d" % ref[0] in f[0], "UID FETCH of a hidden and a visible UID: only the visible one: %r" % f)
    c.ok("UID STORE %d +FLAGS ($Hidden)" % hidden[0])
    c.ok("UID COPY %d Archive" % hidden[0])
    check(not any("$Hidden" in x.first for x in s.ok("UID FETCH %d (FLAGS)" % hidden[0])), "a hidden message is not stored")
    st = [x.first for x in s.ok("STATUS Archive (MESSAGES)") if "STATUS" in x.first]
    check(st and "MESSAGES 0" in st[0], "nor copied: %r" % st)
    c.logout()
    s.logout()


@step("2b. STATUS of a filtered folder that is not selected counts the view")
def _():
    s = store_client()
    c = pimap("phone")
    c.ok("SELECT Archive")
    ref = ref7(s)
    unseen = search_uids(s, "SINCE %s UNSEEN" % imap_date(7))
    got = [x.first for x in c.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT)") if x.first.startswith("* STATUS")]
    uidnext = [x.first for x in s.ok("STATUS INBOX (UIDNEXT)") if x.first.startswith("* STATUS")]
    want = "* STATUS INBOX (MESSAGES %d UNSEEN %d UIDNEXT %s)" % (len(ref), len(unseen),
                                                                  re.search(r"UIDNEXT (\d+)", uidnext[0]).group(1))
    check(got == [want], "STATUS INBOX from another folder: %r (want %r)" % (got, want))
    r = c.command("STATUS INBOX (SIZE)")[1]
    check(r[-1].status == "NO" and "not counted" in r[-1].first, "STATUS SIZE of a filtered folder: %r" % r[-1].first)
    c.logout()
    s.logout()


@step("2c. PIMAP_FOLDER_STATUS pushes a filtered folder's view counts, not the folder's")
def _():
    s = store_client()
    s.ok("SUBSCRIBE INBOX")
    c = pimap("phone")
    c.ok("SELECT Archive")
    n = len(ref7(s))
    rx = r"^\* STATUS INBOX \(MESSAGES (\d+) UIDNEXT (\d+) UIDVALIDITY \d+ UNSEEN \d+ HIGHESTMODSEQ \d+\)$"
    resps = c.ok("XSETPIMAPPREF PIMAP_FOLDER_STATUS ON")
    st = [x for x in resps if x.first.startswith("* STATUS INBOX")]
    check(not st, "the store's count of INBOX (the whole folder) is not passed on: %r" % firsts(st))
    r = c.wait_match(rx, timeout=10)
    m = re.match(rx, r.first)
    check(int(m.group(1)) == n, "the view's count is pushed instead: %r (want MESSAGES %d)" % (r.first, n))
    deliver(LMTP, "bob", make_message("new while another folder is selected"))
    r = c.wait_match(rx, timeout=10)
    check(int(re.match(rx, r.first).group(1)) == n + 1, "a matching new message: MESSAGES %d: %r" % (n + 1, r.first))
    s.ok("SELECT INBOX")
    append_dated(s, "INBOX", dated_message(901, "old@example.com", 1000, 40), 40)
    r = c.wait_match(rx, timeout=10)
    check(int(re.match(rx, r.first).group(1)) == n + 1, "an old message does not count: %r" % r.first)
    c.ok("XSETPIMAPPREF PIMAP_FOLDER_STATUS OFF")
    c.logout()
    s.ok("UNSUBSCRIBE INBOX")
    s.logout()


@step("2d. filters first set after login: STATUS counts the view without a new login")
def _():
    s = store_client()
    early = pimap("late")          # logged in while the device has no filter
    c = pimap("late")
    early.ok("SELECT Archive")
    ok_ = c.command("XFILTER INBOX V DAYSBEFORETODAY 7")[1]
    check(ok_[-1].status == "OK", "XFILTER after login: %r" % ok_[-1].first)
    c.ok("SELECT Archive")
    ref = ref7(s)
    unseen = search_uids(s, "SINCE %s UNSEEN" % imap_date(7))
    want = "* STATUS INBOX (MESSAGES %d UNSEEN %d)" % (len(ref), len(unseen))
    for who, conn in (("the connection that set it", c), ("one logged in before", early)):
        r = conn.command("STATUS INBOX (MESSAGES UNSEEN)")[1]
        got = [x.first for x in r if x.first.startswith("* STATUS")]
        check(r[-1].status == "OK" and got == [want], "%s: STATUS INBOX %r %r (want %r)" % (who, got, r[-1].first, want))
    c.logout()
    early.logout()
    s.logout()


@step("3. new mail: matching pushed, non-matching never seen; hidden expunges invisible")
def _():
    s = store_client()
    c = pimap("phone")
    v = c.select_view("INBOX")
    n = len(v)
    tag = c.idle_start()
    deliver(LMTP, "bob", make_message("new and matching"))
    r = c.wait_untagged(r"^\* \d+ EXISTS$", timeout=15)
    check(r.first == "* %d EXISTS" % (n + 1), "a new message is pushed: %r" % r.first)
    s.ok("SELECT INBOX")
    uid_old = append_dated(s, "INBOX", dated_message(900, "shop@example.com", 2000, 30), 30)
    got = quiet(c, 1.5)
    check(not any(re.match(r"\* \d+ (EXISTS|EXPUNGE)", x.first) for x in got),
          "an old message APPENDed now does not enter the view: %r" % firsts(got))
    c.idle_done(tag)
    v.complete(c)
    ref = expect_view(c, v, s, "SINCE %s" % imap_date(7), "after new mail")
    check(uid_old not in ref, "the old message is not in the view")
    hidden = [u for u in all_uids(s) if u not in ref]
    s.expunge_uids(hidden[:3])
    got = c.ok("NOOP")
    check(not any(re.match(r"\* \d+ (EXISTS|EXPUNGE|FETCH)", x.first) for x in got),
          "expunging hidden messages tells the client nothing: %r" % firsts(got))
    expect_view(c, v, s, "SINCE %s" % imap_date(7), "after hidden expunges")
    s.expunge_uids([ref[1]])
    got = c.ok("NOOP")
    check([x.first for x in got if "EXPUNGE" in x.first] == ["* 2 EXPUNGE"],
          "expunging the second visible message: '* 2 EXPUNGE': %r" % firsts(got))
    expect_view(c, v, s, "SINCE %s" % imap_date(7), "after a visible expunge")
    c.logout()
    s.logout()


@step("4. EXPUNGE and CLOSE spare hidden messages; SEARCH, SORT, THREAD")
def _():
    s = store_client()
    c = pimap("phone")
    v = c.select_view("INBOX")
    ref = v.uids()
    hidden = [u for u in all_uids(s) if u not in ref]
    s.ok("SELECT INBOX")
    s.store_uid(hidden[-1], "+FLAGS.SILENT", ["\\Deleted"])
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    got = c.ok("EXPUNGE")
    check([x.first for x in got if "EXPUNGE" in x.first] == ["* 1 EXPUNGE"], "EXPUNGE removes message 1 only: %r" % firsts(got))
    check(hidden[-1] in all_uids(s), "the hidden \\Deleted message is still in the store")
    ref = expect_view(c, v, s, "SINCE %s" % imap_date(7), "after EXPUNGE")
    got = [x.first for x in c.ok("SEARCH 2:3 ALL") if x.first.startswith("* SEARCH")]
    check(got == ["* SEARCH 2 3"], "SEARCH 2:3 ALL: %r" % got)
    got = [x.first for x in c.ok("SEARCH RETURN (MIN MAX COUNT) ALL") if x.first.startswith("* ESEARCH")]
    check(len(got) == 1 and "MIN 1 MAX %d COUNT %d" % (len(ref), len(ref)) in got[0], "ESEARCH in view numbers: %r" % got)
    got = [x.first for x in c.ok("SORT (REVERSE ARRIVAL) UTF-8 ALL") if x.first.startswith("* SORT")]
    direct = [x.first for x in s.ok("UID SORT (REVERSE ARRIVAL) UTF-8 UID %s" % ",".join(map(str, ref)))
              if x.first.startswith("* SORT")]
    want = "* SORT " + " ".join(str(ref.index(int(u)) + 1) for u in direct[0].split()[2:])
    check(got == [want], "SORT in view numbers: %r (the store's order, renumbered: %r)" % (got, want))
    got = [x.first for x in c.ok("UID THREAD ORDEREDSUBJECT UTF-8 ALL") if x.first.startswith("* THREAD")]
    nums = [int(x) for x in re.findall(r"\d+", got[0])] if got else []
    check(sorted(nums) == ref, "THREAD holds exactly the view's UIDs: %r" % got)
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("CLOSE")
    check(hidden[-1] in all_uids(s) and ref[0] not in all_uids(s),
          "CLOSE expunged the view's \\Deleted message and spared the hidden one")
    s.store_uid(hidden[-1], "-FLAGS.SILENT", ["\\Deleted"])
    c.logout()
    s.logout()


@step("5a. leave and return: the saved view is caught up in view numbers")
def _():
    s = store_client()
    c = pimap("phone")
    v = c.select_view("INBOX")
    c.unselect_view()
    c.ok("SELECT Archive")
    s.ok("SELECT INBOX")
    ref = v.uids()
    s.expunge_uids([ref[0]])
    deliver(LMTP, "bob", make_message("while away"))
    append_dated(s, "INBOX", dated_message(901, "shop@example.com", 2000, 40), 40)
    resps = c.reselect(v)
    v.complete(c)
    expect_view(c, v, s, "SINCE %s" % imap_date(7), "after returning")
    ev = [x.first for x in resps if re.match(r"\* \d+ (EXPUNGE|EXISTS)", x.first)]
    check(ev and ev[0] == "* %d EXISTS" % len(ref) and "* 1 EXPUNGE" in ev, "the saved view then its events: %r" % ev)
    c.logout()
    s.logout()


@step("5b. drop the connection, change the store, resume: events in view numbers")
def _():
    s = store_client()
    c = pimap("phone")
    v = c.select_view("INBOX")
    c.drop()
    s.ok("SELECT INBOX")
    s.expunge_uids([v.uids()[-1]])
    deliver(LMTP, "bob", make_message("while dropped"))
    s.store_uid(v.uids()[0], "+FLAGS", ["\\Flagged"])
    c = PimapClient(HOST, GW, tls=True, cafile=CA, timeout=20)
    c.connect()
    res = c.pimap_login("bob", "phone", PASS, view=v)
    check(res.status == "OK" and res.session_state == "SELECTED" and not res.resync and not res.problems,
          "resumed SELECTED without RESYNC: %s" % res.describe())
    v.complete(c)
    expect_view(c, v, s, "SINCE %s" % imap_date(7), "after resume")
    check(v.flags()[v.uids()[0]] and "\\Flagged" in v.flags()[v.uids()[0]], "the flag change came with the events")
    c.drop()
    s.logout()


run_steps()
PYEOF
gw_stop
start_gateway
gw_env
py_part "after a restart" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient, View

GW = int(E["GW_PORT"])


pimap = gateway_client


def ok(c, cmd):
    r = c.command(cmd)[1]
    check(r[-1].status == "OK", "%s -> %r" % (cmd, r[-1].first), quiet=True)
    return r


@step("5c. a gateway restart: the session resumes from the saved view")
def _():
    c = PimapClient(HOST, GW, tls=True, cafile=CA, timeout=20)
    c.connect()
    res = c.pimap_login("bob", "phone", PASS)
    check(res.status == "OK" and res.session_state == "SELECTED" and not res.resync,
          "resumed SELECTED after a restart without RESYNC: %s" % res.describe())
    c.logout()


@step("5d. a view change: the next SELECT says NOMODSEQ (compare everything), the one after HIGHESTMODSEQ")
def _():
    def modseq(resps):
        return [x.first for x in resps if "MODSEQ" in x.first and x.first.startswith("* OK")]
    c = pimap("phone")
    c.ok("SELECT INBOX")
    c.ok("UNSELECT")  # saves the view the client has
    got = modseq(c.ok("SELECT INBOX"))
    check(len(got) == 1 and "[HIGHESTMODSEQ " in got[0], "a view the client knows: %r" % got)
    c.ok("XFILTER INBOX V DAYSBEFORETODAY 8")
    c.ok("UNSELECT")
    got = modseq(c.ok("SELECT INBOX"))
    check(len(got) == 1 and "[NOMODSEQ]" in got[0], "the first SELECT of the changed view: %r" % got)
    c.ok("UNSELECT")
    got = modseq(c.ok("SELECT INBOX"))
    check(len(got) == 1 and "[HIGHESTMODSEQ " in got[0], "the next one, from the saved view: %r" % got)
    c.ok("XFILTER INBOX V DAYSBEFORETODAY 7")
    c.logout()


@step("6. the notification filter decides what is pushed; the rest is polled")
def _():
    s = store_client()
    c = pimap("phone")
    ok(c, 'XFILTER INBOX N FROM "boss@example.com"')
    v = c.select_view("INBOX")
    n = len(v)
    tag = idle_vip_only(c, "bob", n, E["GW_LOG"], "new mail not pushed", "the gateway")
    held = log_count(E["GW_LOG"], "new mail not pushed")
    deliver(LMTP, "bob", make_message("another non-VIP", sender="news@lists.example.net"))
    wait_log_count(E["GW_LOG"], "new mail not pushed", held + 1)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in quiet(c, 0.5)), "the next non-VIP one waits")
    got = c.idle_done(tag)
    check(any(x.first == "* %d EXISTS" % (n + 3) for x in got), "the end of IDLE tells it: %r" % firsts(got))
    deliver(LMTP, "bob", make_message("non-VIP, not idling", sender="shop@example.com"))
    got = c.ok("NOOP")
    check(any(x.first == "* %d EXISTS" % (n + 4) for x in got), "a NOOP tells it: %r" % firsts(got))
    ok(c, "XSETPIMAPPREF PIMAP_EVENT_FILTER NONE")
    tag = c.idle_start()
    deliver(LMTP, "bob", make_message("VIP but events are off", sender="boss@example.com"))
    got = quiet(c, 2.0)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in got), "PIMAP_EVENT_FILTER NONE: even VIP mail waits")
    c.idle_done(tag)
    c.unselect_view()
    resps = c.reselect(View("INBOX"))
    check(any(x.first == "* %d EXISTS" % (n + 5) for x in resps), "the next SELECT shows it: %r" % firsts(resps))
    ok(c, "XSETPIMAPPREF PIMAP_EVENT_FILTER ALL")
    ok(c, "XFILTER INBOX N ALL")
    c.logout()
    s.logout()


@step("7. a size view: messages over 1 MB never appear")
def _():
    s = store_client()
    c = pimap("phone")
    ok(c, "XFILTER ALL V NOT LARGER 1048576")
    r = c.command("XFILTER INBOX V GET")[1]
    check(firsts(r)[:-1] == ["* XFILTER INBOX V NOT LARGER 1048576"], "XFILTER ALL replaced INBOX's own view: %r" % firsts(r))
    v = c.select_view("INBOX")
    ref = reference(s, "INBOX", "NOT LARGER 1048576")
    big = search_uids(s, "LARGER 1048576")
    check(len(big) == 2 and v.uids() == ref and not set(big) & set(v.uids()),
          "the view has %d messages, without the two 1.2 MB ones %r" % (len(v), big))
    probs = check_view(c, v, ref, "size view")
    check(not probs, "SEARCH/STATUS/FETCH agree: %s" % probs)
    c.logout()
    s.logout()

run_steps()
PYEOF
gw_stop
gw_finish
