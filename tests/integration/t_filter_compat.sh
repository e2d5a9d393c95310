#!/bin/bash
# t_filter_compat.sh - pimap-proxy in compatibility mode (no gateway)
# applies the filter file's views itself (proxy_view.c, the gateway's view
# engine).
#
# alice's INBOX holds 80 messages over 90 days; the filter file gives INBOX
# a 7-day view and excludes Junk. Through the proxy, straight to Dovecot:
#  1. SELECT shows exactly the store's 7-day messages; SEARCH ALL, UID
#     SEARCH ALL, STATUS and FETCH 1:* agree; Junk is empty; a hidden UID
#     is neither fetched nor stored;
#  2. in IDLE (answered by the proxy) a matching new message is pushed, an
#     old one APPENDed now is not; a hidden expunge tells nothing, a visible
#     one the right EXPUNGE; DONE ends the IDLE with its tagged OK;
#  3. EXPUNGE and CLOSE spare a hidden \Deleted message; SEARCH and SORT
#     answer in view numbers; pipelined commands are answered in order;
#  4. leaving for an unfiltered folder and coming back gives a fresh view;
#  5. ENABLE QRESYNC is not passed on while views are in force;
#  6. STATUS of the filtered INBOX while another folder (or none) is
#     selected counts the view (MESSAGES, UNSEEN, RECENT; UIDNEXT and
#     UIDVALIDITY the store's), after LOGIN and after AUTHENTICATE PLAIN
#     without an initial response; Junk counts 0; SIZE is refused;
#  7. LIST "" "*" RETURN (STATUS ...) counts INBOX and Junk through their
#     views, each STATUS right after its LIST line, with INBOX selected or
#     not; Archive as the store has it;
#  8. a notification rule (from the boss): in the proxy's IDLE a non-VIP
#     message is not pushed (the proxy logs the decision), a VIP one is,
#     the held one with it; the next NOOP tells what was held;
#  9. event kinds (SIGHUP to events: new, then none): in the filtered INBOX
#     and in the unfiltered Archive (the server's IDLE) a flag change in
#     IDLE is held and told with the next reply, before any push; with
#     none even VIP mail waits for the end of the IDLE;
# 10. mutt through the proxy shows the 7-day messages only.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool mutt tmux
require_proxy
gen_certs
start_dovecot
. "$HARNESS_LIB/gw_tests.sh"
export DOVECOT_IMAP DOVECOT_IMAPS DOVECOT_LMTP DOVECOT_PASS CA T

python3 - <<'PY' || hard_error "cannot fill the mailboxes"
from filter_lib import *
s = store_client("alice")
populate(s, "INBOX", 80, 90, seed=3)
s.ok("CREATE Junk")
s.ok("CREATE Archive")
append_dated(s, "Junk", dated_message(700, "spam@example.net", 900, 1), 1)
s.ok("LOGOUT")
PY

FILTERS=$T/filters.yaml
printf 'exclude: [Junk]\nfolders:\n  INBOX:\n    view: {days: 7}\n' >"$FILTERS"
P=$(free_port)
start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" --ca-file "$CA" \
	-v --trace --filters "$FILTERS"
export PROXY_PORT=$P PROXY_LOG PROXY_PID FILTERS

py_part "compatibility mode" <<'PYEOF'
from gwt import *
from filter_lib import *
from pimapc import PimapClient, View



client = proxy_client


def expect_view(c, v, s, what):
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(7))
    probs = check_view(c, v, ref, what)
    check(not probs, "%s: %d messages, SEARCH/STATUS/FETCH agree %s" % (what, len(ref), probs))
    return ref


@step("1. the 7-day view; Junk empty; hidden UIDs untouched")
def _():
    s = store_client("alice")
    c = client()
    v = c.select_view("INBOX")
    ref = expect_view(c, v, s, "7-day view")
    check(0 < len(ref) < 15, "%d of 80 messages are from the last 7 days" % len(ref))
    hidden = [u for u in all_uids(s) if u not in ref]
    got = [x.first for x in c.ok("UID FETCH %d,%d (FLAGS)" % (hidden[0], ref[0])) if " FETCH " in x.first]
    check(len(got) == 1 and "UID %d" % ref[0] in got[0], "only the visible UID is fetched: %r" % got)
    c.ok("UID STORE %d +FLAGS ($Hidden)" % hidden[0])
    check(not any("$Hidden" in x.first for x in s.ok("UID FETCH %d (FLAGS)" % hidden[0])), "a hidden one is not stored")
    c.unselect_view()
    resps = c.ok("SELECT Junk")
    check(any(x.first == "* 0 EXISTS" for x in resps), "Junk is empty: %r" % firsts(resps))
    c.ok("LOGOUT")
    s.logout()


@step("2. IDLE: new matching mail pushed, old mail not; expunges")
def _():
    s = store_client("alice")
    c = client()
    v = c.select_view("INBOX")
    n = len(v)
    tag = c.idle_start()
    deliver(LMTP, "alice", make_message("new in compat mode"))
    r = c.wait_untagged(r"^\* \d+ EXISTS$", timeout=15)
    check(r.first == "* %d EXISTS" % (n + 1), "pushed in IDLE: %r" % r.first)
    append_dated(s, "INBOX", dated_message(901, "shop@example.com", 2000, 30), 30)
    got = quiet(c, 2.0)
    check(not any(re.match(r"\* \d+ (EXISTS|EXPUNGE)", x.first) for x in got), "an old APPEND is not: %r" % firsts(got))
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(7))
    hidden = [u for u in all_uids(s) if u not in ref]
    s.expunge_uids(hidden[:2])
    got = quiet(c, 2.0)
    check(not any(re.match(r"\* \d+ (EXISTS|EXPUNGE)", x.first) for x in got), "hidden expunges tell nothing: %r" % firsts(got))
    s.expunge_uids([ref[0]])
    r = c.wait_untagged(r"^\* \d+ EXPUNGE$", timeout=15)
    check(r.first == "* 1 EXPUNGE", "a visible expunge in IDLE: %r" % r.first)
    rest = c.idle_done(tag)
    check(rest[-1].tag == tag and rest[-1].status == "OK", "DONE: %r" % firsts(rest))
    v.complete(c)
    expect_view(c, v, s, "after IDLE")
    c.ok("LOGOUT")
    s.logout()


@step("3. EXPUNGE, CLOSE, SEARCH, SORT, pipelining")
def _():
    s = store_client("alice")
    c = client()
    v = c.select_view("INBOX")
    ref = v.uids()
    hidden = [u for u in all_uids(s) if u not in ref]
    s.store_uid(hidden[-1], "+FLAGS.SILENT", ["\\Deleted"])
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    got = [x.first for x in c.ok("EXPUNGE") if "EXPUNGE" in x.first]
    check(got == ["* 1 EXPUNGE"], "EXPUNGE removes the view's message 1 only: %r" % got)
    check(hidden[-1] in all_uids(s), "the hidden \\Deleted message stays")
    ref = expect_view(c, v, s, "after EXPUNGE")
    got = [x.first for x in c.ok("SEARCH 2:3 ALL") if x.first.startswith("* SEARCH")]
    check(got == ["* SEARCH 2 3"], "SEARCH 2:3 ALL: %r" % got)
    got = [x.first for x in c.ok("SORT (REVERSE ARRIVAL) UTF-8 ALL") if x.first.startswith("* SORT")]
    check(got and sorted(int(x) for x in got[0].split()[2:]) == list(range(1, len(ref) + 1)), "SORT in view numbers: %r" % got)
    # pipelined: a command answered by the view itself and ones answered by the server
    tags = [c.next_tag() for _ in range(4)]
    c.send("%s FETCH 1 (UID)\r\n%s UID FETCH 1 (FLAGS)\r\n%s NOOP\r\n%s FETCH 2 (UID)\r\n" % tuple(tags))
    done = []
    while len(done) < 4:
        r = c.read_response(timeout=15)
        if r.tag in tags:
            done.append(r.tag)
    check(done == tags, "pipelined replies in order: %r" % done)
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("CLOSE")
    check(hidden[-1] in all_uids(s) and ref[0] not in all_uids(s), "CLOSE spared the hidden \\Deleted message")
    s.store_uid(hidden[-1], "-FLAGS.SILENT", ["\\Deleted"])
    c.ok("LOGOUT")
    s.logout()


@step("4. leave for an unfiltered folder and return")
def _():
    s = store_client("alice")
    c = client()
    v = c.select_view("INBOX")
    c.unselect_view()
    resps = c.ok("SELECT Archive")
    check(any(x.first == "* 0 EXISTS" for x in resps), "Archive as the server has it: %r" % firsts(resps))
    v = c.select_view("INBOX")
    expect_view(c, v, s, "back in INBOX")
    c.ok("LOGOUT")
    s.logout()


@step("5. ENABLE QRESYNC is not passed on")
def _():
    c = client()
    got = firsts(c.ok("ENABLE QRESYNC"))
    check(not any("QRESYNC" in x for x in got[:-1]), "nothing enabled: %r" % got)
    c.ok("LOGOUT")


run_steps()
PYEOF

py_part "counts and push rules" <<'PYEOF'
import signal
from gwt import *
from filter_lib import *
from pimapc import PimapClient, StoreClient, View

client = proxy_client
BOSS = "boss@example.com"
BASE = "exclude: [Junk]\nfolders:\n  INBOX:\n    view: {days: 7}\n"


def reload_filters(text):
    with open(E["FILTERS"], "w") as f:
        f.write(text)
    n = log_count(E["PROXY_LOG"], r"loaded \d+ filter rule")
    os.kill(int(E["PROXY_PID"]), signal.SIGHUP)
    check(wait_log_count(E["PROXY_LOG"], r"loaded \d+ filter rule", n + 1) > n, "SIGHUP: the proxy loaded the new rules")


def statuses(resps):
    """{mailbox: {item: value}} of the "* STATUS" lines."""
    out = {}
    for r in resps:
        m = re.match(r'^\* STATUS ("([^"]*)"|(\S+)) \((.*)\)$', r.first)
        if m:
            w = m.group(4).split()
            out[m.group(2) or m.group(3)] = {w[i].upper(): int(w[i + 1]) for i in range(0, len(w) - 1, 2)}
    return out


def plain_client():
    """Logged in through the proxy with AUTHENTICATE PLAIN, the credentials in the second line."""
    c = PimapClient("127.0.0.1", int(E["PROXY_PORT"]), tls=False, timeout=20)
    c.connect()
    r = c.authenticate_plain("alice", PASS, initial_response=False)
    check(r[-1].status == "OK", "AUTHENTICATE PLAIN through the proxy: %r" % r[-1].first, quiet=True)
    return c


def store_now():
    """alice's INBOX as the store counts it: the 7-day view's UIDs and unseen ones, UIDNEXT, UIDVALIDITY."""
    s = store_client("alice")
    ref = reference(s, "INBOX", "SINCE %s" % imap_date(7))
    unseen = search_uids(s, "SINCE %s UNSEEN" % imap_date(7))
    st = statuses(s.ok("STATUS INBOX (UIDNEXT UIDVALIDITY)"))["INBOX"]
    s.logout()
    return ref, unseen, st


@step("6. STATUS of the filtered INBOX, not selected, counts the view")
def _():
    ref, unseen, st = store_now()
    want = {"MESSAGES": len(ref), "UNSEEN": len(unseen), "UIDNEXT": st["UIDNEXT"], "UIDVALIDITY": st["UIDVALIDITY"]}
    for how, make in (("LOGIN", client), ("AUTHENTICATE PLAIN", plain_client)):
        c = make()
        for where in ("nothing selected", "Archive selected"):
            if where == "Archive selected":
                c.ok("SELECT Archive")
            got = statuses(c.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")).get("INBOX")
            check(got == want, "%s, %s: STATUS INBOX %r (the view: %r)" % (how, where, got, want))
        got = statuses(c.ok("STATUS Junk (MESSAGES UNSEEN)")).get("Junk")
        check(got == {"MESSAGES": 0, "UNSEEN": 0}, "%s: the excluded Junk counts 0: %r" % (how, got))
        r = c.command("STATUS INBOX (SIZE)")[1]
        check(r[-1].status == "NO" and "not counted" in r[-1].first, "%s: STATUS SIZE is refused: %r" % (how, r[-1].first))
        c.ok("LOGOUT")


@step("6b. RECENT: the view's recent messages, not the folder's")
def _():
    deliver(LMTP, "alice", make_message("recent and in the view"))
    st = StoreClient("127.0.0.1", int(E["DOVECOT_IMAP"]), "alice", PASS, tls=False, tag_prefix="D")
    append_dated(st, "INBOX", dated_message(950, "shop@example.com", 1500, 40), 40)
    st.ok("EXAMINE INBOX")  # read-only: claims no \Recent
    recent_all = search_uids(st, "RECENT")
    recent_view = search_uids(st, "RECENT SINCE %s" % imap_date(7))
    st.logout()
    check(len(recent_all) == 2 and len(recent_view) == 1, "the store has %r recent, %r of them in the view"
          % (recent_all, recent_view))
    c = client()
    c.ok("SELECT Archive")
    got = statuses(c.ok("STATUS INBOX (RECENT MESSAGES)")).get("INBOX")
    ref, _, _ = store_now()
    check(got == {"RECENT": 1, "MESSAGES": len(ref)}, "STATUS INBOX (RECENT MESSAGES): %r" % got)
    c.ok("LOGOUT")


@step("7. LIST RETURN (STATUS ...) counts filtered folders through their views")
def _():
    ref, unseen, _ = store_now()
    s = store_client("alice")
    archive = statuses(s.ok("STATUS Archive (MESSAGES UNSEEN)"))["Archive"]
    s.logout()
    c = client()
    for where in ("nothing selected", "INBOX selected"):
        if where == "INBOX selected":
            c.select_view("INBOX")
        resps = c.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
        lines = [x.first for x in resps[:-1]]
        st = statuses(resps)
        check(st.get("INBOX") == {"MESSAGES": len(ref), "UNSEEN": len(unseen)} and
              st.get("Junk") == {"MESSAGES": 0, "UNSEEN": 0} and st.get("Archive") == archive,
              "%s: INBOX %r (the view: %d, %d unseen), Junk %r, Archive %r (the store: %r)"
              % (where, st.get("INBOX"), len(ref), len(unseen), st.get("Junk"), st.get("Archive"), archive))
        order = []
        for i, l in enumerate(lines):
            if l.startswith("* STATUS"):
                name = list(statuses([x for x in resps if x.first == l]))[0]
                prev = lines[i - 1] if i else ""
                order.append(prev.startswith("* LIST") and prev.rstrip('"').endswith(name))
        check(order and all(order), "%s: each STATUS right after its LIST line: %r" % (where, lines))
    c.ok("LOGOUT")


@step("8. a notification rule: only VIP mail is pushed in IDLE; the rest with the next command")
def _():
    reload_filters(BASE + "    notify: {from: %s}\n" % BOSS)
    c = client()
    v = c.select_view("INBOX")
    n = len(v)
    tag = idle_vip_only(c, "alice", n, E["PROXY_LOG"], "new mail not pushed: none passes the notification rule",
                        "the proxy")
    c.idle_done(tag)
    deliver(LMTP, "alice", make_message("non-VIP, not idling", sender="shop@example.com"))
    got = c.ok("NOOP")
    check(any(x.first == "* %d EXISTS" % (n + 3) for x in got), "a NOOP tells it: %r" % firsts(got))
    v.complete(c)
    c.ok("LOGOUT")


@step("9. event kinds: what an IDLE is not told waits for the next reply")
def _():
    reload_filters("events: new\n" + BASE)
    s = store_client("alice")
    s.ok("SELECT Archive")
    for i in range(2):
        append_dated(s, "Archive", dated_message(960 + i, "shop@example.com", 1200, 3), 3)
    aref = search_uids(s, "ALL")
    s.ok("SELECT INBOX")
    vis = reference(s, "INBOX", "SINCE %s" % imap_date(7))
    c = client()
    v = c.select_view("INBOX")
    n = len(v)
    for folder, uid in (("INBOX", vis[0]), ("Archive", aref[0])):
        if folder == "Archive":
            c.unselect_view()
            c.ok("SELECT Archive")
            s.ok("SELECT Archive")
        tag = c.idle_start()
        held = log_count(E["PROXY_LOG"], "event held for the client's next command")
        s.store_uid(uid, "+FLAGS", ["\\Flagged"])
        check(wait_log_count(E["PROXY_LOG"], "event held for the client's next command", held + 1) > held,
              "%s: the flag change is held (events: new)" % folder)
        got = quiet(c, 0.5)
        check(not any(" FETCH " in x.first for x in got), "%s: not pushed in IDLE: %r" % (folder, firsts(got)))
        if folder == "INBOX":
            deliver(LMTP, "alice", make_message("new mail is pushed", sender="shop@example.com"))
            got = c.collect_until(lambda x: bool(re.match(r"\* \d+ EXISTS$", x.first)), timeout=15)
            kinds = [("FETCH" if " FETCH " in x.first else "EXISTS") for x in got if re.match(r"\* \d+ (FETCH|EXISTS)", x.first)]
            check(kinds == ["FETCH", "EXISTS"], "INBOX: new mail is pushed, the held flag change first: %r" % firsts(got))
            c.idle_done(tag)
        else:
            got = c.idle_done(tag)
            f = [x.first for x in got if " FETCH " in x.first]
            check(len(f) == 1 and "\\Flagged" in f[0] and got[-1].status == "OK",
                  "Archive: the end of IDLE tells the held flag change: %r" % firsts(got))
    c.ok("UNSELECT")
    reload_filters("events: none\n" + BASE)
    v = c.select_view("INBOX")
    n = len(v)
    tag = c.idle_start()
    held = log_count(E["PROXY_LOG"], "new mail not pushed: the filter file's events")
    deliver(LMTP, "alice", make_message("VIP, but events are none", sender=BOSS), sender=BOSS)
    check(wait_log_count(E["PROXY_LOG"], "new mail not pushed: the filter file's events", held + 1) > held,
          "events: none: the proxy held the new message")
    got = quiet(c, 0.5)
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in got), "events: none: nothing pushed: %r" % firsts(got))
    got = c.idle_done(tag)
    check(any(x.first == "* %d EXISTS" % (n + 1) for x in got), "the end of IDLE tells it: %r" % firsts(got))
    v.complete(c)
    c.ok("LOGOUT")
    s.logout()
    reload_filters(BASE)


run_steps()
PYEOF

. "$HARNESS_LIB/filter_mutt.sh"
mutt_sees_7_days "$P"
proxy_alive || fail "the proxy died"
gw_finish
