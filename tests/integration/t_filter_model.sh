#!/bin/bash
# t_filter_model.sh - pimap-gateway: a model-based test of a filtered view.
#
# The user's INBOX starts with 60 messages over 60 days. A client selects it
# with the view
#     OR FROM "boss@example.com" (DAYSBEFORETODAY 10 NOT LARGER 60000)
# and then a seeded random sequence of steps runs, each one of:
#   store side   a delivery (today, small: matches), an APPEND of an old or a
#                big message (does not match, unless from the boss), a flag
#                change or an expunge of any message (visible or hidden);
#   client side  STORE of flags, STORE \Deleted + EXPUNGE, FETCH of a random
#                set, SEARCH, a short IDLE while the store changes, leaving
#                the folder and coming back, dropping the connection and
#                resuming the session.
# The client applies every untagged response it reads to its model of the
# folder (pimapc.View: an impossible EXPUNGE, a UID out of order, ... fails
# at once). After every step and a NOOP, its model must equal the reference
# computed from the store itself (UID SEARCH with the same criteria, the
# store's flags), and FETCH 1:* (UID FLAGS) through the gateway must agree;
# a second connection of the same user (logged in before the view was set,
# with Archive selected) must count INBOX through the view with STATUS
# (MESSAGES UNSEEN) (the gateway's helper connection, or the proxy's).
#
# The same runs twice: through pimap-gateway (the view set with XFILTER,
# also leaving and returning to a saved view, dropping and resuming the
# session), and through pimap-proxy in compatibility mode straight to
# Dovecot (the view from a filter file; a dropped connection starts over).
#
# PIMAP_MODEL_SEED picks the sequence (default 20251207; the seed is printed,
# a failure reproduces with it); PIMAP_MODEL_STEPS its length per mode
# (default 100), bounded to stay well within CI time.
#
# By hand: PIMAP_MODEL_SEED=7 tests/integration/t_filter_model.sh

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"

gen_certs
start_dovecot
start_gateway
gw_env
export PIMAP_MODEL_SEED=${PIMAP_MODEL_SEED:-20251207}
export PIMAP_MODEL_STEPS=${PIMAP_MODEL_STEPS:-100}
log "seed $PIMAP_MODEL_SEED, $PIMAP_MODEL_STEPS steps"
# compatibility mode: the proxy straight to Dovecot with the same view in a filter file
printf '%s\n' 'folders:' '  INBOX:' '    view:' \
	"      search: 'OR FROM \"boss@example.com\" (DAYSBEFORETODAY 10 NOT LARGER 60000)'" >"$T/filters.yaml"
PROXY_PORT=$(free_port)
start_proxy --listen "127.0.0.1:$PROXY_PORT" --listen-tls none --upstream "imaps://127.0.0.1:$DOVECOT_IMAPS" \
	--ca-file "$CA" --filters "$T/filters.yaml"
export PROXY_PORT

cat >"$T/model.py" <<'PYEOF'
import random
from gwt import *
from filter_lib import *
from pimapc import PimapClient, View, ViewError, truth_of

SEED = int(E["PIMAP_MODEL_SEED"])
STEPS = int(E["PIMAP_MODEL_STEPS"])
MODE = E["PIMAP_MODEL_MODE"]
USER = "bob" if MODE == "gateway" else "carol"
GW = int(E["GW_PORT"])
BOSS = "boss@example.com"
VIEW = 'OR FROM "%s" (DAYSBEFORETODAY 10 NOT LARGER 60000)' % BOSS
rnd = random.Random(SEED)


def ref_keys():
    return 'OR FROM "%s" (SINCE %s NOT LARGER 60000)' % (BOSS, imap_date(10))


def pimap():
    if MODE == "compat":
        c = PimapClient(HOST, int(E["PROXY_PORT"]), tls=False, timeout=20)
        c.connect()
        c.ok('LOGIN %s "%s"' % (USER, PASS))
        return c
    return gateway_client("model", USER)


s = store_client(USER)
s.ok("CREATE Archive")
for i in range(60):
    sender = BOSS if i % 9 == 0 else rnd.choice(OTHERS)
    size = 80000 if i % 7 == 0 else 1500 + rnd.randrange(3000)
    append_dated(s, "INBOX", dated_message(i, sender, size, 59 - i), 59 - i, ("\\Seen",) if i % 2 else ())

other = pimap()  # logged in before the view exists: its STATUS must count the view all the same
other.ok("SELECT Archive")
c = pimap()
if MODE == "gateway":
    r = c.command("XFILTER INBOX V " + VIEW)[1]
    check(r[-1].status == "OK", "XFILTER INBOX V %s -> %r" % (VIEW, r[-1].first))
v = c.select_view("INBOX")
counter = [1000]
history = []


def compare(what):
    """After a NOOP, the client's model equals the store's view; FETCH 1:* agrees."""
    c.ok("NOOP")
    c.view = v
    ref = reference(s, "INBOX", ref_keys())
    truth = dict(truth_of(s, "INBOX"))
    s.ok("SELECT INBOX")
    want = [(u, truth[u]) for u in ref]
    if v.unknown():
        v.complete(c)
    got = v.snapshot()
    if got != want:
        print("history (seed %d):\n  %s" % (SEED, "\n  ".join(history)), file=sys.stderr)
        check(False, "%s: the client's view %r != the store's %r" % (what, got, want))
    resps = c.ok("FETCH 1:* (UID FLAGS)") if want else []
    fetched = {}
    for r in resps:
        if untagged_kind(r)[1] == "FETCH":
            seq, items = parse_fetch(r)
            fetched[seq] = (items["UID"], pimapc.norm_flags(items["FLAGS"]))
    c.view = v
    check(sorted(fetched) == list(range(1, len(want) + 1)) and [fetched[k] for k in sorted(fetched)] == want,
          "%s: FETCH 1:* agrees" % what, quiet=True)
    check(v.snapshot() == want, "%s: nothing moved during the comparison" % what, quiet=True)
    st = [x.first for x in other.ok("STATUS INBOX (MESSAGES UNSEEN)") if x.first.startswith("* STATUS")]
    unseen = sum(1 for u, f in want if "\\Seen" not in f)
    check(st == ["* STATUS INBOX (MESSAGES %d UNSEEN %d)" % (len(want), unseen)],
          "%s: STATUS from another connection %r, the view has %d (%d unseen)" % (what, st, len(want), unseen),
          quiet=True)


def new_uid():
    counter[0] += 1
    return counter[0]


def step_store():
    """A change behind the client's back."""
    k = rnd.randrange(6)
    uids = all_uids(s)
    if k == 0:
        sender = BOSS if rnd.random() < 0.3 else rnd.choice(OTHERS)
        deliver(LMTP, USER, make_message("delivered %d" % new_uid(), sender=sender))
        return "deliver from %s" % sender
    if k == 1:
        days = rnd.choice([20, 40]) if rnd.random() < 0.7 else rnd.randrange(10)
        size = 90000 if days < 10 else 2000
        sender = BOSS if rnd.random() < 0.2 else rnd.choice(OTHERS)
        u = append_dated(s, "INBOX", dated_message(new_uid(), sender, size, days), days)
        return "append uid %s, %d days old, %d bytes, from %s" % (u, days, size, sender)
    if k in (2, 3) and uids:
        u = rnd.choice(uids)
        flag = rnd.choice(["\\Flagged", "\\Seen", "$Work"])
        op = rnd.choice(["+FLAGS.SILENT", "-FLAGS.SILENT"])
        s.store_uid(u, op, [flag])
        return "store %s %s on uid %d" % (op, flag, u)
    if uids:
        u = rnd.choice(uids)
        s.expunge_uids([u])
        return "store expunges uid %d" % u
    return "nothing"


def step_client():
    global c, v
    k = rnd.randrange(8)
    n = len(v)
    if k == 0 and n:
        a = rnd.randrange(1, n + 1)
        c.ok("STORE %d %sFLAGS ($Client)" % (a, rnd.choice("+-")))
        return "client STORE %d" % a
    if k == 1 and n:
        a = rnd.randrange(1, n + 1)
        c.ok("STORE %d +FLAGS.SILENT (\\Deleted)" % a)
        c.ok("EXPUNGE")
        return "client EXPUNGE of %d" % a
    if k == 2 and n:
        a, b = sorted(rnd.randrange(1, n + 1) for _ in range(2))
        c.ok("FETCH %d:%d (UID FLAGS RFC822.SIZE)" % (a, b))
        c.ok("UID FETCH 1:* (FLAGS)")
        return "client FETCH %d:%d" % (a, b)
    if k == 3:
        got = [x.first for x in c.ok("SEARCH ALL") if x.first.startswith("* SEARCH")]
        n = len(v)
        want = "* SEARCH" + "".join(" %d" % i for i in range(1, n + 1))
        check(got == [want], "SEARCH ALL while the client has %d: %r" % (n, got), quiet=True)
        return "client SEARCH ALL"
    if k == 4:
        tag = c.idle_start()
        what = step_store()
        quiet(c, 0.8)
        c.idle_done(tag)
        return "IDLE while: " + what
    if k == 5:
        c.view = None
        c.ok("SELECT Archive")
        what = step_store()
        if MODE == "compat":
            v = c.select_view("INBOX")  # no saved views without a gateway: a fresh view
        else:
            c.reselect(v)
        return "left and returned while: " + what
    if k == 6 and MODE == "compat":
        c.drop()
        what = step_store()
        c = pimap()
        v = c.select_view("INBOX")
        return "dropped, reconnected and selected again while: " + what
    if k == 6:
        c.drop()
        what = step_store()
        c = PimapClient(HOST, GW, tls=True, cafile=CA, timeout=20)
        c.connect()
        res = c.pimap_login(USER, "model", PASS, view=v)
        check(res.status == "OK" and not res.problems, "resume: %s" % res.describe(), quiet=True)
        if res.resync or res.session_state != "SELECTED":
            c.view = v
            if res.session_state != "SELECTED":
                c.ok("SELECT INBOX")
            v.resync(c)
            return "dropped, resumed with RESYNC while: " + what
        return "dropped and resumed while: " + what
    return "client NOOP"


@step("random steps against the store's own view")
def _():
    compare("start")
    for i in range(STEPS):
        what = step_store() if rnd.random() < 0.5 else step_client()
        history.append("%d: %s" % (i, what))
        compare("step %d (%s)" % (i, what))
    check(True, "%s: %d steps, seed %d: the view always matched" % (MODE, STEPS, SEED))


run_steps()
PYEOF
PIMAP_MODEL_MODE=gateway py_part "gateway" <"$T/model.py"
PIMAP_MODEL_MODE=compat py_part "compatibility mode" <"$T/model.py"
gw_stop
gw_finish
