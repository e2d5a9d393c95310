#!/bin/bash
# t_gw_prefs.sh - pimap-gateway: P-IMAP preferences, their effect on push,
# XPROVISION, XZIP and COMPRESS (docs/PROTOCOL.md sections 3 to 5).
#
# The gateway runs with limits.max_queued_events=777 (XPROVISION must show it)
# and allows webhooks under https://push.example.org/ (so WEBHOOK is offered;
# t_outband_policy tests the policy itself).
#  1. XGETPIMAPPREFS / XGETPIMAPPREF of a new device: every preference with
#     their defaults; a list of names, names without parentheses;
#  2. XSETPIMAPPREF of every preference with every kind of valid value, read
#     back with XGETPIMAPPREF (NEW_FORMAT compared by meaning: ALL/FAST/FULL
#     macros expanded, BODY[...] = BODY.PEEK[...]);
#  3. bad values, missing and extra arguments: tagged NO/BAD with a text that
#     says what is wrong, the old value kept, the connection goes on; an
#     unknown preference: NO; out-band addresses the gateway would not send
#     to (free text, another host's IP, a URL outside the allow list): NO;
#  4. XPROVISION (also with a device id): the allowed values of every
#     preference (every listed out-band channel is accepted by XSETPIMAPPREF)
#     and LIMIT MAX_QUEUED_EVENTS 777;
#  5. preferences persist across sessions (LOGOUT, new login), belong to the
#     device (another device has the defaults) and survive a gateway restart;
#  6. PIMAP_INBAND_NEW_FORMAT (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]): a
#     message delivered during IDLE arrives as "* n FETCH (UID u ... FLAGS
#     ... BODY[HEADER.FIELDS (SUBJECT)] {k}" with its subject, never as
#     EXISTS, and is still unseen on the store;
#  7. PIMAP_EVENT_FILTER NEW: during IDLE a flag change and an expunge made by
#     a direct Dovecot client are held (the gateway logs "held event") and
#     nothing reaches the client; DONE brings them, in order, before IDLE's
#     tagged OK; new mail is pushed, and held events go out before it;
#  8. PIMAP_EVENT_FILTER NONE: even new mail is held until the next command;
#  9. PIMAP_INBAND_PUSH ON: without IDLE or any command, a delivery shows up as
#     "* n EXISTS" and a flag change as FETCH; with OFF nothing comes unasked;
#     PIMAP_FOLDER_STATUS ON: the STATUS of every subscribed folder before the
#     tagged OK, then a STATUS push whenever another folder changes, never
#     for the selected one (its events keep waiting for a command); OFF ends
#     the pushes;
# 10. XZIP: "XZIP z1 FETCH 1:3 (FLAGS)" gives "* XZIP ~{n}" whose raw DEFLATE
#     payload (a complete stream) is exactly the inner responses through
#     "z1 OK", then the outer OK; wrapping IDLE, LOGOUT, XZIP, STARTTLS,
#     COMPRESS or AUTHENTICATE, or reusing the outer tag, is BAD; XZIP works in
#     a plain session;
# 11. COMPRESS DEFLATE after login, then commands, preferences, XZIP and IDLE
#     push over the compressed connection.
#
# By hand: tests/integration/t_gw_prefs.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"


gen_certs
start_dovecot
for i in 1 2 3 4 5 6; do deliver bob "prefs message $i"; done
GW_ARGS=(--set limits.max_queued_events=777 --set outband.webhook_allow=https://push.example.org/)

start_gateway "${GW_ARGS[@]}"
gw_env
py_part "preference commands" <<'PYEOF'
from gw_prefs import *


@step("1. defaults, and the forms of XGETPIMAPPREF")
def _():
    c, resps = pimap_login("p1")
    fresh_session(resps, "first login of bob#Pp1")
    got = get_prefs(c)
    check(list(got) and set(got) == set(NAMES), "XGETPIMAPPREFS lists every preference: %r" % list(got))
    for n in NAMES:
        check(str(got[n]).upper() == DEFAULTS[n] and (n != "PIMAP_OUTBAND_ADDRESS" or isinstance(got[n], Q)),
              "default %s = %r (want %r)" % (n, got[n], DEFAULTS[n] or '""'))
    got = get_prefs(c, verb="XGETPIMAPPREF")
    check(set(got) == set(NAMES), "XGETPIMAPPREF (singular) without arguments lists all six")
    got = get_prefs(c, "(PIMAP_EVENT_FILTER PIMAP_INBAND_PUSH)")
    check(list(got) == ["PIMAP_EVENT_FILTER", "PIMAP_INBAND_PUSH"] and got["PIMAP_EVENT_FILTER"] == "ALL"
          and got["PIMAP_INBAND_PUSH"] == "OFF", "a list of two names: exactly those, in order: %r" % got)
    got = get_prefs(c, "PIMAP_OUTBAND_FORMAT PIMAP_INBAND_NEW_FORMAT", verb="XGETPIMAPPREF")
    check(list(got) == ["PIMAP_OUTBAND_FORMAT", "PIMAP_INBAND_NEW_FORMAT"], "names without parentheses: %r" % got)
    c.ok("SELECT INBOX")
    got = get_prefs(c, "(PIMAP_OUTBAND_ADDRESS)")
    check(list(got) == ["PIMAP_OUTBAND_ADDRESS"] and got["PIMAP_OUTBAND_ADDRESS"] == "", "works in SELECTED state: %r" % got)
    c.ok("LOGOUT")
    c.close()


@step("2. every kind of valid value")
def _():
    VALID = [
        ("PIMAP_INBAND_PUSH", ["ON", "OFF"]),
        ("PIMAP_EVENT_FILTER", ["NEW", "NONE", "ALL"]),
        ("PIMAP_OUTBAND_CHANNEL", ["UDP", "WEBHOOK", "NONE"]),
        ("PIMAP_OUTBAND_FORMAT", ["EXTENDED", "EMN"]),
        ("PIMAP_OUTBAND_ADDRESS", ['"127.0.0.1:4143"', '"[::ffff:127.0.0.1]:9"', '"https://push.example.org/up/bob"',
                                   '"https://PUSH.example.org:443/x?y=1"', '""']),
        ("PIMAP_INBAND_NEW_FORMAT", ["ALL", "FAST", "FULL", "FLAGS", "(FLAGS UID)", "ENVELOPE",
                                     "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                                     "(RFC822.SIZE INTERNALDATE BODYSTRUCTURE)", "(BODY[TEXT]<0.100>)", "NONE"]),
    ]
    c, _ = pimap_login("p2")
    c.ok("SELECT INBOX")
    for name, values in VALID:
        for v in values:
            set_ok(c, name, v)
            got = get_prefs(c, "(%s)" % name)
            check(same_value(name, got.get(name), v), "%s set to %s reads back as %r" % (name, v, got.get(name)))
    c.ok("LOGOUT")
    c.close()


@step("3. bad values: NO/BAD with a clear text, nothing changed, the connection goes on")
def _():
    c, _ = pimap_login("p3")
    set_ok(c, "PIMAP_INBAND_PUSH", "ON")
    set_ok(c, "PIMAP_EVENT_FILTER", "NEW")
    set_ok(c, "PIMAP_OUTBAND_FORMAT", "EXTENDED")
    set_ok(c, "PIMAP_INBAND_NEW_FORMAT", "(FLAGS UID)")
    before = get_prefs(c)
    CLEAR = re.compile(r"PIMAP_|value|valid|expect|allow|unknown|argument|syntax|missing|must|only|bad|not", re.I)
    BAD = [
        "XSETPIMAPPREF PIMAP_INBAND_PUSH MAYBE",
        "XSETPIMAPPREF PIMAP_INBAND_PUSH",
        "XSETPIMAPPREF",
        "XSETPIMAPPREF PIMAP_INBAND_PUSH ON OFF",
        "XSETPIMAPPREF PIMAP_INBAND_PUSH (ON)",
        "XSETPIMAPPREF PIMAP_EVENT_FILTER SOME",
        "XSETPIMAPPREF PIMAP_EVENT_FILTER (NEW ALL)",
        "XSETPIMAPPREF PIMAP_OUTBAND_FORMAT XML",
        "XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL CARRIER-PIGEON",
        "XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL SMS",
        'XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "sms:+15551234567"',
        "XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS mailto:bob@example.org",
        'XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "192.0.2.1:4143"',
        'XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "https://evil.example/push.example.org/"',
        'XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS "http://push.example.org/x"',
        "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT NOTANATTRIBUTE",
        "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (FLAGS BOGUS)",
        "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (FLAGS",
        "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY[HEADER",
        "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (FLAGS (UID))",
        "XGETPIMAPPREFS (PIMAP_INBAND_PUSH",
    ]
    bad = []
    for cmd in BAD:
        tag, resps = c.command(cmd)
        r = resps[-1]
        text = r.first.split(" ", 2)[2] if len(r.first.split(" ", 2)) > 2 else ""
        ok = r.status in ("NO", "BAD") and len(text) >= 8 and CLEAR.search(text)
        print("%s   %s -> %r" % ("ok " if ok else "BAD", cmd, r.first), file=sys.stderr)
        if not ok:
            bad.append((cmd, r.first))
        c.ok("NOOP")
    check(not bad, "every bad value got NO/BAD with a clear text and the connection went on (wrong: %r)" % bad)
    for cmd in ("XSETPIMAPPREF PIMAP_BOGUS ON", "XGETPIMAPPREFS (PIMAP_BOGUS)",
                "XGETPIMAPPREF PIMAP_INBAND_PUSH PIMAP_BOGUS"):
        r = c.command(cmd)[1][-1]
        check(r.status == "NO" and re.search(r"PIMAP_BOGUS|unknown|preference", r.first, re.I),
              "%s -> %r (want NO about the unknown preference)" % (cmd, r.first))
        c.ok("NOOP")
    after = get_prefs(c)
    check(after == before, "the refused commands changed nothing: %r" % after)
    c.ok("LOGOUT")
    c.close()


@step("4. XPROVISION")
def _():
    c, _ = pimap_login("p4")
    channels = set()
    for cmd in ("XPROVISION", "XPROVISION p4"):
        resps = c.ok(cmd)
        prov = {}
        limits = {}
        for r in resps[:-1]:
            if not r.first.upper().startswith("* XPROVISION "):
                continue
            try:
                v = parse_values(r.first.split(" ", 2)[2])
            except ValueError as e:
                check(False, "%s: unparsable line %r (%s)" % (cmd, r.first, e))
            if v and str(v[0]).upper() == "XPIMAPPREF":
                check(len(v) == 3, "%s: XPIMAPPREF line with a name and one value list: %r" % (cmd, r.first), quiet=True)
                prov[str(v[1]).upper()] = v[2]
            elif v and str(v[0]).upper() == "LIMIT":
                check(len(v) == 3, "%s: LIMIT line with a name and a value: %r" % (cmd, r.first), quiet=True)
                limits[str(v[1]).upper()] = str(v[2])
        print("     %s: %r" % (cmd, firsts(resps)), file=sys.stderr)
        check(set(prov) == set(NAMES), "%s lists every preference: %r" % (cmd, sorted(prov)))
        flat = {n: {str(x).upper() for x in (prov[n] if isinstance(prov[n], list) else [prov[n]])} for n in prov}
        check(flat["PIMAP_INBAND_PUSH"] == {"ON", "OFF"}, "PIMAP_INBAND_PUSH (ON OFF): %r" % prov["PIMAP_INBAND_PUSH"])
        check(flat["PIMAP_EVENT_FILTER"] == {"ALL", "NEW", "NONE"}, "PIMAP_EVENT_FILTER (ALL NEW NONE): %r" % prov["PIMAP_EVENT_FILTER"])
        check(flat["PIMAP_OUTBAND_FORMAT"] == {"EMN", "EXTENDED"}, "PIMAP_OUTBAND_FORMAT (EMN EXTENDED): %r" % prov["PIMAP_OUTBAND_FORMAT"])
        check(flat["PIMAP_OUTBAND_CHANNEL"] == {"UDP", "WEBHOOK", "NONE"},
              "PIMAP_OUTBAND_CHANNEL lists exactly UDP WEBHOOK NONE: %r" % prov["PIMAP_OUTBAND_CHANNEL"])
        check(len(flat["PIMAP_OUTBAND_ADDRESS"]) >= 1, "PIMAP_OUTBAND_ADDRESS has a listing: %r" % prov["PIMAP_OUTBAND_ADDRESS"])
        check(limits.get("MAX_QUEUED_EVENTS") == "777", "LIMIT MAX_QUEUED_EVENTS 777 (as configured): %r" % limits)
        channels = flat["PIMAP_OUTBAND_CHANNEL"]
        check({"NONE", "ALL", "FAST", "FULL"} <= flat["PIMAP_INBAND_NEW_FORMAT"],
              "PIMAP_INBAND_NEW_FORMAT lists its allowed values NONE ALL FAST FULL (and attributes): %r" % prov["PIMAP_INBAND_NEW_FORMAT"])
    for ch in sorted(channels):
        set_ok(c, "PIMAP_OUTBAND_CHANNEL", ch)
    set_ok(c, "PIMAP_OUTBAND_CHANNEL", "NONE")
    c.ok("LOGOUT")
    c.close()


@step("5a. preferences persist across sessions and belong to the device")
def _():
    c, _ = pimap_login("keep")
    for n, v in PERSIST:
        set_ok(c, n, v)
    c.ok("LOGOUT")
    c.close()
    c, resps = pimap_login("keep")
    fresh_session(resps, "login after LOGOUT")
    got = get_prefs(c)
    for n, v in PERSIST:
        check(same_value(n, got[n], v), "%s survived LOGOUT: %r" % (n, got[n]))
    c.close()       # detached this time: the restart below must keep the preferences either way
    c, resps = pimap_login("other")
    got = get_prefs(c)
    check(all(str(got[n]).upper() == DEFAULTS[n] for n in NAMES), "another device of bob has the defaults: %r" % got)
    c.ok("LOGOUT")
    c.close()
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF

log "restarting the gateway"
gw_stop
start_gateway "${GW_ARGS[@]}"
gw_env
py_part "preferences and push" <<'PYEOF'
from gw_prefs import *
import time


@step("5b. preferences persist across a gateway restart")
def _():
    c, resps = pimap_login("keep")
    got = get_prefs(c)
    for n, v in PERSIST:
        check(same_value(n, got[n], v), "%s survived the restart: %r" % (n, got[n]))
    c.ok("LOGOUT")
    c.close()


@step("setup: a Trash folder for MOVE")
def _():
    s = store("bob")
    s.ok("CREATE Trash")
    s.ok("LOGOUT")
    s.close()


@step("6. PIMAP_INBAND_NEW_FORMAT (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
def _():
    c, n0, u0 = session_with("nf", INBAND_NEW_FORMAT="(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    check(n0 is not None and u0 is not None, "SELECT gives EXISTS %r and UIDNEXT %r" % (n0, u0))
    tag = c.idle_start()
    subject = "pushed as a FETCH %d" % os.getpid()
    deliver(LMTP, "bob", make_message(subject))
    r = c.wait_match(r"^\* \d+ (FETCH|EXISTS)", timeout=15)
    check(re.match(r"^\* %d FETCH \(UID %d " % (n0 + 1, u0), r.text),
          "the new message arrives as '* %d FETCH (UID %d ...': %r" % (n0 + 1, u0, r.text[:200]))
    m = re.search(r"FLAGS \(([^)]*)\)", r.text)
    check(m is not None and "\\SEEN" not in m.group(1).upper(), "with its FLAGS, not \\Seen: %r" % (m and m.group(0)))
    check("BODY[HEADER.FIELDS (SUBJECT)] {" in r.text.upper() and len(r.literals) == 1,
          "with BODY[HEADER.FIELDS (SUBJECT)] as a literal: %r" % r.text[:200])
    check(r.literals[0].replace(b"\r\n", b"\n").strip() == ("Subject: " + subject).encode(),
          "the literal is the subject header: %r" % r.literals[0])
    rest = c.idle_done(tag)
    after = c.ok("NOOP")
    check(not any(re.match(r"\* \d+ EXISTS", x.first) for x in rest + after),
          "no EXISTS for it, in IDLE or after: %r" % firsts(rest + after))
    check(rest[-1].status == "OK", "DONE -> %r" % rest[-1].first)
    s = bob_store()
    resps = s.ok("UID FETCH %d (FLAGS)" % u0)
    check(any(re.search(r"UID %d\b" % u0, x.first) and "\\SEEN" not in x.first.upper() for x in resps),
          "the message is still unseen on the store: %r" % firsts(resps))
    s.close()
    c.ok("LOGOUT")
    c.close()


@step("7a. PIMAP_EVENT_FILTER NEW: a flag change and an expunge are held until DONE")
def _():
    c, n, _ = session_with("flt1", EVENT_FILTER="NEW")
    s = bob_store()
    tag = c.idle_start()
    h0 = held_count()
    s.ok("STORE 1 +FLAGS (\\Flagged)")
    wait_held(h0 + 1, "the flag change")
    h1 = held_count()
    s.ok("MOVE 2 Trash")
    wait_held(h1 + 1, "the expunge")
    got = quiet(c, 1.0)
    check(not got, "nothing pushed under NEW for a flag change and an expunge: %r" % firsts(got))
    rest = c.idle_done(tag)
    f = [i for i, x in enumerate(rest) if re.match(r"\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", x.first, re.I)]
    e = [i for i, x in enumerate(rest) if x.first == "* 2 EXPUNGE"]
    check(f and e and f[0] < e[0] and rest[-1].tag == tag and rest[-1].status == "OK",
          "DONE brings '* 1 FETCH (... \\Flagged ...)' then '* 2 EXPUNGE' before IDLE's OK: %r" % firsts(rest))
    s.ok("STORE 1 -FLAGS (\\Flagged)")
    s.close()
    c.ok("LOGOUT")
    c.close()


@step("7b. PIMAP_EVENT_FILTER NEW: new mail is pushed")
def _():
    c, n, _ = session_with("flt2", EVENT_FILTER="NEW")
    tag = c.idle_start()
    deliver(LMTP, "bob", make_message("pushed under NEW"))
    r = c.wait_match(EVENT_RX, timeout=15)
    check(r.first == "* %d EXISTS" % (n + 1), "new mail is pushed under NEW: %r (want * %d EXISTS)" % (r.first, n + 1))
    rest = c.idle_done(tag)
    check(rest[-1].status == "OK", "DONE -> %r" % rest[-1].first)
    c.ok("LOGOUT")
    c.close()


@step("7c. PIMAP_EVENT_FILTER NEW: held events go out before a pushed one")
def _():
    c, n, _ = session_with("flt3", EVENT_FILTER="NEW")
    s = bob_store()
    tag = c.idle_start()
    h0 = held_count()
    s.ok("STORE 1 +FLAGS (\\Answered)")
    wait_held(h0 + 1, "the flag change")
    deliver(LMTP, "bob", make_message("pushed after a held flag change"))
    got = [c.wait_match(EVENT_RX, timeout=15)]
    if not re.match(r"\* \d+ EXISTS", got[0].first):
        got.append(c.wait_match(r"^\* \d+ EXISTS", timeout=15))
    check(len(got) == 2 and re.match(r"\* 1 FETCH \(.*FLAGS \([^)]*\\Answered", got[0].first, re.I)
          and got[1].first == "* %d EXISTS" % (n + 1),
          "the held '* 1 FETCH (FLAGS (\\Answered ...))' comes first, then '* %d EXISTS': %r" % (n + 1, firsts(got)))
    rest = c.idle_done(tag)
    check(rest[-1].status == "OK", "DONE -> %r" % rest[-1].first)
    s.ok("STORE 1 -FLAGS (\\Answered)")
    s.close()
    c.ok("LOGOUT")
    c.close()


@step("8. PIMAP_EVENT_FILTER NONE: even new mail waits for the next command")
def _():
    c, n, _ = session_with("flt4", EVENT_FILTER="NONE")
    tag = c.idle_start()
    h0 = held_count()
    deliver(LMTP, "bob", make_message("held under NONE"))
    wait_held(h0 + 1, "the new message")
    got = quiet(c, 1.0)
    check(not got, "nothing pushed under NONE, not even new mail: %r" % firsts(got))
    rest = c.idle_done(tag)
    rest += c.ok("NOOP")
    check(any(x.first == "* %d EXISTS" % (n + 1) for x in rest),
          "the held '* %d EXISTS' comes with the next command: %r" % (n + 1, firsts(rest)))
    c.ok("LOGOUT")
    c.close()


@step("9a. PIMAP_INBAND_PUSH ON: events pushed without IDLE")
def _():
    c, n, _ = session_with("push1", INBAND_PUSH="ON")
    t0 = time.monotonic()
    deliver(LMTP, "bob", make_message("pushed without IDLE"))
    r = c.wait_match(EVENT_RX, timeout=10)
    check(r.first == "* %d EXISTS" % (n + 1),
          "without IDLE or a command, '* %d EXISTS' arrives: %r after %.2f s" % (n + 1, r.first, time.monotonic() - t0))
    s = bob_store()
    s.ok("STORE 1 +FLAGS ($PushTest)")
    r = c.wait_match(EVENT_RX, timeout=10)
    check(re.match(r"\* 1 FETCH \(.*\$PushTest", r.first, re.I), "a flag change is pushed too: %r" % r.first)
    s.ok("STORE 1 -FLAGS ($PushTest)")
    s.close()
    c.ok("LOGOUT")
    c.close()


@step("9b. PIMAP_INBAND_PUSH OFF: nothing unasked without IDLE")
def _():
    c, n, _ = session_with("push2", INBAND_PUSH="OFF")
    deliver(LMTP, "bob", make_message("not pushed with OFF"))
    got = quiet(c, 1.5)
    check(not got, "with OFF and no IDLE nothing arrives unasked: %r" % firsts(got))
    resps = c.ok("NOOP")
    check(any(x.first == "* %d EXISTS" % (n + 1) for x in resps), "the next command brings '* %d EXISTS': %r" % (n + 1, firsts(resps)))
    c.ok("LOGOUT")
    c.close()


@step("9c. PIMAP_FOLDER_STATUS: the other subscribed folders' STATUS pushed")
def _():
    s = bob_store()
    s.ok('CREATE "fs box"')
    s.ok('SUBSCRIBE "fs box"')
    c, n, _ = session_with("fstat1")
    resps = c.ok("XSETPIMAPPREF PIMAP_FOLDER_STATUS ON")
    st = [x.first for x in resps if x.first.upper().startswith("* STATUS ")]
    check(any(re.match(r'\* STATUS "fs box" \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0 HIGHESTMODSEQ \d+\)$', x)
              for x in st), "ON: the STATUS of every subscribed folder before the tagged OK: %r" % st)
    s.ok('APPEND "fs box"', Literal(make_message("into the watched folder"), sync=False))
    r = c.wait_match(r"^\* STATUS ", timeout=10)
    check(re.match(r'\* STATUS "fs box" \(MESSAGES 1 UIDNEXT 2 (UIDVALIDITY \d+ )?UNSEEN 1 HIGHESTMODSEQ \d+\)$', r.first),
          "a message appended there is pushed as STATUS, without IDLE or a command: %r" % r.first)
    deliver(LMTP, "bob", make_message("into the selected folder while folder status is on"))
    got = quiet(c, 1.0)
    check(not [x for x in got if re.match(EVENT_RX, x.first) or "INBOX" in x.first.upper()],
          "the selected folder is not reported as STATUS, and its events wait for a command: %r" % firsts(got))
    resps = c.ok("NOOP")
    check(any(x.first == "* %d EXISTS" % (n + 1) for x in resps), "the next command brings '* %d EXISTS': %r" % (n + 1, firsts(resps)))
    c.ok("XSETPIMAPPREF PIMAP_FOLDER_STATUS OFF")
    s.ok('APPEND "fs box"', Literal(make_message("after OFF"), sync=False))
    got = quiet(c, 1.5)
    check(not [x for x in got if x.first.upper().startswith("* STATUS")], "OFF: no more STATUS pushes: %r" % firsts(got))
    s.ok('UNSUBSCRIBE "fs box"')
    s.close()
    c.ok("LOGOUT")
    c.close()


@step("10a. XZIP")
def _():
    c, n, _ = session_with("zip1")
    plain = c.ok("FETCH 1:3 (FLAGS)")
    expect = [x.first for x in plain[:-1]]
    tag, resps = c.command("XZIP z1 FETCH 1:3 (FLAGS)")
    check(resps[-1].tag == tag and resps[-1].status == "OK", "XZIP -> %r" % resps[-1].first)
    zs = [x for x in resps[:-1] if x.first.upper().startswith("* XZIP ")]
    check(len(zs) == 1 and re.match(r"\* XZIP ~\{\d+\}$", zs[0].first) and len(zs[0].literals) == 1,
          "one '* XZIP ~{n}' response with a literal8: %r" % firsts(resps))
    check(len(resps) == 2, "nothing else around it: %r" % firsts(resps))
    d = zlib.decompressobj(-15)
    try:
        payload = d.decompress(zs[0].literals[0])
    except zlib.error as e:
        check(False, "the payload is raw DEFLATE: %s" % e)
    check(d.eof and not d.unused_data, "the DEFLATE stream is complete (final block) and nothing follows it")
    lines = payload.split(b"\r\n")
    check(lines[-1] == b"", "the payload ends with CRLF")
    lines = [l.decode() for l in lines[:-1]]
    check(lines[:-1] == expect and re.match(r"z1 OK\b", lines[-1]),
          "the payload is the inner responses through 'z1 OK': %r (want %r + z1 OK)" % (lines, expect))
    # "z[ IDLE ]" is one atom to a parser of the outer command but the tag
    # "z[" and IDLE to one of the inner command: the checks must be those
    # of what runs (a fuzz_pimap_cmd find).
    for inner in ("z2 IDLE", "z2 LOGOUT", "z2 XZIP z9 NOOP", "z2 STARTTLS", "z2 COMPRESS DEFLATE",
                  "z2 AUTHENTICATE PLAIN", "z[ IDLE ] NOOP", "z[ LOGOUT ] NOOP", "z[ XZIP z9 ] NOOP"):
        tag, resps = c.command("XZIP " + inner)
        check(resps[-1].tag == tag and resps[-1].status == "BAD" and not any(x.literals for x in resps),
              "XZIP %s -> %r (want BAD, nothing run)" % (inner, firsts(resps)))
        c.ok("NOOP")
    tag = c.next_tag()
    c.send("%s XZIP %s NOOP\r\n" % (tag, tag))
    resps = c.wait_tagged(tag)
    check(resps[-1].status == "BAD" and not any(x.literals for x in resps), "the inner tag equal to the outer one -> %r" % firsts(resps))
    c.ok("NOOP")
    c.ok("LOGOUT")
    c.close()


@step("10b. XZIP in a plain session")
def _():
    c = gw()
    check(login(c, "bob", PASS)[-1].status == "OK", "plain login")
    c.ok("SELECT INBOX")
    tag, resps = c.command("XZIP y1 NOOP")
    zs = [x for x in resps if x.literals]
    check(resps[-1].status == "OK" and len(zs) == 1, "XZIP works in a plain session: %r" % firsts(resps))
    payload = zlib.decompressobj(-15).decompress(zs[0].literals[0])
    check(re.search(rb"(^|\r\n)y1 OK[^\r\n]*\r\n$", payload), "its payload ends with 'y1 OK': %r" % payload[-80:])
    c.ok("LOGOUT")
    c.close()


@step("11. COMPRESS DEFLATE after login")
def _():
    c, _ = pimap_login("zip2")
    r = c.compress()
    check(r.status == "OK", "COMPRESS DEFLATE -> %r" % r.first)
    n = exists_of(c.ok("SELECT INBOX"))
    resps = c.ok("FETCH 1:3 (FLAGS)")
    check(sum(1 for x in resps if re.match(r"\* \d FETCH", x.first)) == 3, "FETCH over the compressed connection")
    got = get_prefs(c, "(PIMAP_INBAND_PUSH)")
    check(got == {"PIMAP_INBAND_PUSH": "OFF"}, "XGETPIMAPPREFS over the compressed connection: %r" % got)
    tag, resps = c.command("XZIP x1 NOOP")
    check(resps[-1].status == "OK" and any(x.literals for x in resps), "XZIP inside COMPRESS: %r" % firsts(resps))
    tag = c.idle_start()
    deliver(LMTP, "bob", make_message("pushed over COMPRESS"))
    r = c.wait_match(EVENT_RX, timeout=15)
    check(r.first == "* %d EXISTS" % (n + 1), "IDLE push over the compressed connection: %r" % r.first)
    rest = c.idle_done(tag)
    check(rest[-1].status == "OK", "DONE -> %r" % rest[-1].first)
    c.ok("LOGOUT")
    c.close()


@step("the gateway is alive")
def _():
    check(gw_alive(), "the gateway is alive")


run_steps()
PYEOF
gw_stop
gw_finish
