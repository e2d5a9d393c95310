"""gw_prefs.py - preference helpers of t_gw_prefs.sh."""
import re
from gwt import *

NAMES = ["PIMAP_INBAND_NEW_FORMAT", "PIMAP_INBAND_PUSH", "PIMAP_EVENT_FILTER",
         "PIMAP_OUTBAND_CHANNEL", "PIMAP_OUTBAND_FORMAT", "PIMAP_OUTBAND_ADDRESS", "PIMAP_FOLDER_STATUS"]
DEFAULTS = {"PIMAP_INBAND_NEW_FORMAT": "NONE", "PIMAP_INBAND_PUSH": "OFF", "PIMAP_EVENT_FILTER": "ALL",
            "PIMAP_OUTBAND_CHANNEL": "NONE", "PIMAP_OUTBAND_FORMAT": "EMN", "PIMAP_OUTBAND_ADDRESS": "",
            "PIMAP_FOLDER_STATUS": "OFF"}
MACROS = {"ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
          "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
          "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]}
PERSIST = [("PIMAP_INBAND_PUSH", "ON"), ("PIMAP_EVENT_FILTER", "NEW"), ("PIMAP_OUTBAND_CHANNEL", "NONE"),
           ("PIMAP_OUTBAND_FORMAT", "EXTENDED"), ("PIMAP_OUTBAND_ADDRESS", '"127.0.0.1:4143"'),
           ("PIMAP_INBAND_NEW_FORMAT", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")]


def get_prefs(c, args="", verb="XGETPIMAPPREFS"):
    """Run XGETPIMAPPREF(S) [args]; check the answer's form; return {NAME: value} in order."""
    cmd = verb + ((" " + args) if args else "")
    tag, resps = c.command(cmd)
    check(resps[-1].status == "OK", "%s -> %r" % (cmd, resps[-1].first), quiet=True)
    un = [r for r in resps[:-1] if re.match(r"\* XGETPIMAPPREFS? ", r.first, re.I)]
    check(len(un) == 1, "%s: exactly one untagged XGETPIMAPPREF(S) answer (%r)" % (cmd, firsts(resps)), quiet=True)
    check(not un[0].literals, "%s: no literal in the answer" % cmd, quiet=True)
    rest = un[0].first.split(" ", 2)[2]
    try:
        vals = parse_values(rest)
    except ValueError as e:
        check(False, "%s: unparsable answer %r (%s)" % (cmd, un[0].first, e))
    check(len(vals) == 1 and isinstance(vals[0], list) and len(vals[0]) % 2 == 0,
          "%s: the answer is one list of NAME value pairs: %r" % (cmd, un[0].first), quiet=True)
    items = vals[0]
    out = {}
    for i in range(0, len(items), 2):
        check(isinstance(items[i], str) and not isinstance(items[i], Q), "%s: %r is a name" % (cmd, items[i]), quiet=True)
        out[items[i].upper()] = items[i + 1]
    check(len(out) == len(items) // 2, "%s: no name twice" % cmd, quiet=True)
    return out


def canon_att(a):
    a = a.upper()
    return a.replace("BODY[", "BODY.PEEK[", 1) if a.startswith("BODY[") else a


def new_format_meaning(v):
    """The set of fetch attributes a NEW_FORMAT value means (None for NONE)."""
    if isinstance(v, list):
        atts = []
        for x in v:
            atts += MACROS.get(str(x).upper(), [str(x)])
    else:
        if str(v).upper() == "NONE":
            return None
        atts = MACROS.get(str(v).upper(), [str(v)])
    return frozenset(canon_att(a) for a in atts)


def same_value(name, got, want_text):
    """got: a parsed value from XGETPIMAPPREF; want_text: the value as sent to XSETPIMAPPREF."""
    want = parse_values(want_text)[0]
    if name == "PIMAP_INBAND_NEW_FORMAT":
        return new_format_meaning(got) == new_format_meaning(want)
    if name == "PIMAP_OUTBAND_ADDRESS":
        return isinstance(got, str) and str(got) == str(want)
    return isinstance(got, str) and not isinstance(got, Q) and got.upper() == str(want).upper()


def set_pref(c, name, value):
    tag, resps = c.command("XSETPIMAPPREF %s %s" % (name, value))
    return resps[-1]


def set_ok(c, name, value):
    r = set_pref(c, name, value)
    check(r.status == "OK", "XSETPIMAPPREF %s %s -> %r" % (name, value, r.first))


def pimap_login(device, user="bob", pw=None):
    c = gw()
    resps = login(c, "%s#P%s" % (user, device), pw or PASS)
    check(resps[-1].status == "OK", "login %s#P%s: %r" % (user, device, resps[-1].first), quiet=True)
    return c, resps


def session_with(device, **prefs):
    """A P-IMAP connection of bob#P<device> with the given preferences set,
    INBOX selected. Returns (client, EXISTS, UIDNEXT)."""
    c, _ = pimap_login(device)
    for k, v in prefs.items():
        set_ok(c, "PIMAP_" + k, v)
    resps = c.ok("SELECT INBOX")
    return c, exists_of(resps), uidnext_of(resps)


def bob_store():
    s = store("bob")
    s.ok("SELECT INBOX")
    return s


def uidnext_of(resps):
    for r in resps:
        m = re.search(r"\[UIDNEXT (\d+)\]", r.first)
        if m:
            return int(m.group(1))
    return None


HELD_RX = r"held event"


def held_count():
    return log_count(E["GW_LOG"], HELD_RX)


def wait_held(n, what):
    k = wait_log_count(E["GW_LOG"], HELD_RX, n, timeout=15)
    check(k >= n, "the gateway logged 'held event' for %s (%d lines, want >= %d)" % (what, k, n))


EVENT_RX = r"^\* \d+ (EXISTS|FETCH|EXPUNGE)"
