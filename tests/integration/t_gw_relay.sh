#!/bin/bash
# t_gw_relay.sh - pimap-gateway relays sessions faithfully (docs/PROTOCOL.md
# sections 1 and 2).
#
# The foundation's scripted session (lib/relay-session.imap: LOGIN,
# CAPABILITY, ID, NAMESPACE, LIST/LSUB, CREATE/DELETE, SELECT, STATUS, FETCH of
# every kind, SEARCH, STORE, APPEND with sync and LITERAL+ literals, COPY,
# EXPUNGE, pipelined commands, LOGOUT, then LOGIN with literals and
# AUTHENTICATE PLAIN with and without SASL-IR) runs
#   1. directly on Dovecot's plain port as alice,
#   2. through the gateway (implicit TLS) in a plain session as bob, whose
#      mailbox holds the same four messages,
#   3. through the gateway in a P-IMAP session as bob#Pdev9, on a fresh store
#      where bob again holds the same four messages.
# Transcripts are compared after the greeting with imapc's --normalize
# (tags numbered, UIDVALIDITY, INTERNALDATE, Dovecot's timings and the order
# of pipelined replies normalized) and the user names and credentials the
# client sent replaced by placeholders. The only differences allowed are the
# ones docs/PROTOCOL.md documents:
#  - every CAPABILITY list (the response and the [CAPABILITY] code) must be
#    the store's list minus STARTTLS, LOGINDISABLED, AUTH=*, SASL-IR,
#    LOGIN-REFERRALS, COMPRESS=* (and NOTIFY, QRESYNC in a P-IMAP session)
#    plus the gateway's own tokens (XPIMAPv1 XPIMAPPREF XFILTER XPROVISION
#    XZIP COMPRESS=DEFLATE; XPROVISION, XZIP and COMPRESS=DEFLATE required,
#    all six in a P-IMAP session), compared as sets;
#  - the tagged OK of LOGIN/AUTHENTICATE and of CAPABILITY: the gateway
#    answers these itself, so only their status is compared (a [CAPABILITY]
#    code, if any, follows the rule above);
#  - in the P-IMAP session, one "* SESSIONID <32 hex>" per login (4), right
#    before the login's tagged OK;
#  - in the P-IMAP session, what CONDSTORE adds (PROTOCOL.md section 1: the
#    gateway enables it on its store connection): "* OK [HIGHESTMODSEQ n]"
#    lines and "MODSEQ (n)" items in FETCH responses, including the FETCH
#    responses RFC 7162 sends for STORE .SILENT (which hold nothing else).
# Also: ENABLE QRESYNC in a P-IMAP session does not enable it.
#
# By hand: tests/integration/t_gw_relay.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

. "$HARNESS_LIB/gw_tests.sh"

SESSION=$HARNESS_LIB/relay-session.imap

# fill USER: the four messages of t_relay_compare.sh
fill() {
	deliver_file "$1" "$HARNESS_LIB/messages/01-plain.eml"
	deliver_file "$1" "$HARNESS_LIB/messages/02-multipart.eml"
	deliver "$1" "third: a big one" "$(python3 -c '
for i in range(500):
    print("line %05d of a long body, padded to make it a few tens of kilobytes ........" % i)')"
	deliver "$1" "fourth: short"
}

# session OUT USER IMAPC-CONNECTION-ARGS...: run the script, write the transcript.
session() {
	local out=$1 user=$2; shift 2
	add_log "$out"
	imapc run "$@" --var USER="$user" --var PASS="$DOVECOT_PASS" --normalize \
		--output "$out" "$SESSION" && return 0
	log "session as $user failed (transcript: $out, last lines below)"
	tail -n 15 "$out" >&2
	return 1
}

# compare DIRECT GATEWAY MODE(plain|pimap) DIRECT-USER GATEWAY-USER [partial]
compare() {
	DOVECOT_PASS=$DOVECOT_PASS python3 - "$@" <<'PYEOF' && return 0
import base64, difflib, re, sys

direct_path, gw_path, mode, duser, guser = sys.argv[1:6]
partial = len(sys.argv) > 6 and sys.argv[6] == "partial"
PASS = __import__("os").environ["DOVECOT_PASS"]
problems = []

def load(path, user):
    lines = [l.rstrip("\n") for l in open(path, encoding="utf-8", errors="replace")]
    lines = [l for l in lines if not l.startswith("S: greeting ")]
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + PASS.encode()).decode()
    out = []
    for l in lines:
        if l.startswith("C: ") or l.startswith("C| "):
            l = l.replace('"%s"' % user, '"<user>"').replace(cred, "<credentials>")
            if l.startswith("C| ") and l[3:].replace("\\<no-crlf>", "") == user:
                l = "C| <user>" + l[3 + len(user):]
            l = re.sub(r"^(C: \d+ LOGIN) \{\d+\}$", r"\1 {<n>}", l)
        out.append(l)
    return out

D = load(direct_path, duser)
G = load(gw_path, guser)
if partial:
    # the session through the gateway broke off: compare what there is up to
    # its last command (left out with its answers: that is where it went wrong)
    last = max(i for i, l in enumerate(G) if l.startswith("C: "))
    G = G[:last]

# the tags of the login commands (their tagged OK is the gateway's own)
def login_tags(lines):
    tags = set()
    for l in lines:
        m = re.match(r"^C: (\d+) (LOGIN|AUTHENTICATE)\b", l, re.I)
        if m:
            tags.add(m.group(1))
    return tags

LT = login_tags(D)
if partial:
    LT = {t for t in LT if t in login_tags(G)}
if LT != login_tags(G):
    problems.append("different login commands: %r vs %r" % (sorted(LT), sorted(login_tags(G))))

# P-IMAP: one SESSIONID right before each login's tagged OK
if mode == "pimap":
    kept = []
    sids = 0
    for i, l in enumerate(G):
        if re.match(r"^S: \* SESSIONID ", l):
            sids += 1
            if not re.match(r"^S: \* SESSIONID [0-9a-fA-F]{32}$", l):
                problems.append("malformed %r" % l)
            nxt = G[i + 1] if i + 1 < len(G) else ""
            m = re.match(r"^S: (\d+) OK\b", nxt)
            if not (m and m.group(1) in LT):
                problems.append("%r is not right before a login's tagged OK (next: %r)" % (l, nxt))
            continue
        if re.match(r"^S: \* (SESSION|FOLDER|RESYNC)\b", l):
            problems.append("unexpected %r (every login after LOGOUT must open a new session)" % l)
        kept.append(l)
    logins_ok = sum(1 for l in G if re.match(r"^S: (\d+) OK\b", l) and l.split()[1] in LT)
    if sids != logins_ok or (not partial and logins_ok != len(LT)):
        problems.append("%d SESSIONID lines, want one per successful login (%d of %d)" % (sids, logins_ok, len(LT)))
    G = kept

RX_RESP = re.compile(r"^S: \* CAPABILITY (.*)$", re.I)
RX_CODE = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.I)

def caps_of(line):
    m = RX_RESP.match(line)
    if m:
        return m.group(1).split()
    m = RX_CODE.search(line)
    return m.group(1).split() if m else None

store_lists = [caps_of(l) for l in D if caps_of(l) is not None]
store = set(c.upper() for c in (store_lists[0] if store_lists else []))
if not store or any(set(c.upper() for c in x) != store for x in store_lists):
    problems.append("the direct transcript has no single post-login capability list: %r" % store_lists)
for need in ("QRESYNC", "NOTIFY", "CONDSTORE"):
    if need not in store:
        problems.append("the store does not advertise %s (test setup)" % need)

def dropped(c):
    if c in ("STARTTLS", "LOGINDISABLED", "SASL-IR", "LOGIN-REFERRALS") or c.startswith("AUTH=") \
            or c.startswith("COMPRESS="):
        return True
    return mode == "pimap" and c in ("NOTIFY", "QRESYNC")

OWN = {"XPIMAPV1", "XPIMAPPREF", "XFILTER", "XPROVISION", "XZIP", "COMPRESS=DEFLATE"}
REQUIRED = {"XPROVISION", "XZIP", "COMPRESS=DEFLATE"} | ({"XPIMAPV1", "XPIMAPPREF", "XFILTER"} if mode == "pimap" else set())
expected_base = {c for c in store if not dropped(c)}

def check_caps(caps, where):
    g = set(c.upper() for c in caps)
    if len(g) != len(caps):
        problems.append("%s: a token twice: %r" % (where, caps))
    missing = expected_base - g
    extra = g - expected_base - OWN
    bad = {c for c in g if dropped(c) and c != "COMPRESS=DEFLATE"}
    if missing:
        problems.append("%s: store capabilities missing: %s" % (where, " ".join(sorted(missing))))
    if extra:
        problems.append("%s: tokens that are neither the store's nor the gateway's own: %s" % (where, " ".join(sorted(extra))))
    if bad:
        problems.append("%s: tokens that must be dropped: %s" % (where, " ".join(sorted(bad))))
    if REQUIRED - g:
        problems.append("%s: the gateway's own tokens missing: %s" % (where, " ".join(sorted(REQUIRED - g))))

# the CAPABILITY command: section 1 makes the gateway answer it itself, so
# the text of its tagged OK is the gateway's too (only the status compared)
CT = {re.match(r"^C: (\d+) ", l).group(1) for l in D if re.match(r"^C: \d+ CAPABILITY$", l, re.I)}


RX_MODSEQ_ITEM = re.compile(r" ?\bMODSEQ \(\d+\)")
condstore_lines = 0

def strip_condstore(l):
    """The line without what CONDSTORE adds, or None if nothing else is left."""
    global condstore_lines
    if re.match(r"^S: \* OK \[HIGHESTMODSEQ \d+\]", l):
        condstore_lines += 1
        return None
    m = re.match(r"^(S: \* \d+ FETCH \()(.*)$", l)
    if m and "MODSEQ (" in m.group(2):
        condstore_lines += 1
        rest = RX_MODSEQ_ITEM.sub("", m.group(2)).lstrip()
        if rest == ")":
            return None
        return m.group(1) + rest
    return l


def norm(lines, is_gw):
    out = []
    ncaps = 0
    for l in lines:
        if is_gw and mode == "pimap" and l.startswith("S: "):
            l = strip_condstore(l)
            if l is None:
                continue
        if l.startswith("S: "):
            m = re.match(r"^S: (\d+) (OK|NO|BAD)\b", l)
            if m and m.group(1) in CT:
                out.append("S: %s %s <capability reply text>" % (m.group(1), m.group(2)))
                continue
            if m and m.group(1) in LT:
                caps = caps_of(l)
                if is_gw and caps is not None:
                    check_caps(caps, "tagged reply %r" % l[:60])
                    ncaps += 1
                out.append("S: %s %s <login reply text>" % (m.group(1), m.group(2)))
                continue
            caps = caps_of(l)
            if caps is not None:
                if is_gw:
                    check_caps(caps, "line %r" % l[:60])
                    ncaps += 1
                l = RX_RESP.sub("S: * CAPABILITY <capabilities>", l)
                l = RX_CODE.sub("[CAPABILITY <capabilities>]", l)
        out.append(l)
    return out, ncaps

Dn, _ = norm(D, False)
Gn, ncaps = norm(G, True)
if partial:
    Dn = Dn[:len(Gn)]
    print("     (partial comparison: the first %d lines, up to the command that failed)" % len(Gn), file=sys.stderr)
if ncaps == 0:
    problems.append("no capability list in the gateway transcript")
if Dn != Gn:
    diff = list(difflib.unified_diff(Dn, Gn, "direct", mode, lineterm="", n=2))
    print("\n".join(diff[:200]), file=sys.stderr)
    problems.append("%d differing lines beyond the allowed ones (diff above)" % sum(1 for d in diff if d[:1] in "+-" and d[:3] not in ("+++", "---")))
for p in problems:
    print("FAIL (%s): %s" % (mode, p), file=sys.stderr)
if problems:
    sys.exit(1)
print("ok   (%s): %d lines equal to the direct transcript apart from the allowed differences; %d capability lists follow section 1"
      % (mode, len(Gn), ncaps), file=sys.stderr)
if mode == "pimap":
    print("     (%d lines carried CONDSTORE data, as PROTOCOL.md section 1 says)" % condstore_lines, file=sys.stderr)
PYEOF
	GW_FAILED_PARTS+=("$3 transcript")
	log "transcript $3 differs from the direct one beyond what docs/PROTOCOL.md allows (see above)"
}

gen_certs

# 1. direct, and 2. through the gateway in a plain session, on the same store
start_dovecot store1
fill alice
fill bob
session "$T/direct.txt" alice --port "$DOVECOT_IMAP" || hard_error "the direct session failed"
start_gateway
gw_env
if session "$T/plain.txt" bob --port "$GW_PORT" --tls --cafile "$CA"; then
	compare "$T/direct.txt" "$T/plain.txt" plain alice bob
else
	GW_FAILED_PARTS+=("plain session")
	compare "$T/direct.txt" "$T/plain.txt" plain alice bob partial
fi
gw_stop
stop_dovecot

# 3. a P-IMAP session, on a fresh store where bob has the same four messages
start_dovecot store2
fill bob
start_gateway
gw_env
if session "$T/pimap.txt" 'bob#Pdev9' --port "$GW_PORT" --tls --cafile "$CA"; then
	compare "$T/direct.txt" "$T/pimap.txt" pimap alice 'bob#Pdev9'
else
	GW_FAILED_PARTS+=("P-IMAP session")
	compare "$T/direct.txt" "$T/pimap.txt" pimap alice 'bob#Pdev9' partial
fi

py_part "ENABLE QRESYNC" <<'PYEOF'
from gwt import *


@step("ENABLE QRESYNC in a P-IMAP session does not enable it")
def _():
    c = gw()
    fresh_session(login(c, "bob#Pdev10", PASS), "bob#Pdev10")
    tag, resps = c.command("ENABLE QRESYNC")
    enabled = [r.first for r in resps if r.first.upper().startswith("* ENABLED")]
    check(not any("QRESYNC" in e.upper() for e in enabled), "ENABLE QRESYNC does not enable it: %r" % firsts(resps))
    resps = c.ok("SELECT INBOX")
    check(exists_of(resps) is not None, "SELECT still works: %r" % firsts(resps)[-1])
    c.ok("LOGOUT")
    c.close()


run_steps()
PYEOF
gw_stop
gw_finish
