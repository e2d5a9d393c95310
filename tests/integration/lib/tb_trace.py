"""tb_trace.py - what a stock client did, read from pimap-proxy's --trace.

    python3 tb_trace.py LOG login
    python3 tb_trace.py LOG listed FOLDER...
    python3 tb_trace.py LOG selected MAILBOX
    python3 tb_trace.py LOG downloaded UID...
    python3 tb_trace.py LOG idled
    python3 tb_trace.py LOG compressed
    python3 tb_trace.py LOG pushed-and-fetched UID
    python3 tb_trace.py 'GLOB' store-has TEXT...   (a client's local store files)

Each prints "ok: ..." and exits 0 when the client did it, or prints what is
missing and exits 1 (-q: print nothing; for polling with wait_for).

The trace has one line per protocol message and connection:
    ... DEBUG [c2 127.0.0.1:34044] C> 63 UID fetch 1:5 (UID RFC822.SIZE BODY.PEEK[])
    ... DEBUG [c2 127.0.0.1:34044] C< * 1 FETCH (UID 1 RFC822.SIZE 342 BODY[] {342}<342 bytes>)
"C>" is the client's command, "C<" what the proxy answered it; message
bodies and passwords are elided by the proxy, which is all the checks need.
"""

import glob
import os
import re
import sys

LINE = re.compile(r"\[(c\d+) [^\]]*\] (C[<>]) (.*)$")
TAGGED = re.compile(r"^(\S+) (OK|NO|BAD)\b", re.I)


class Trace:
    def __init__(self, path):
        self.events = []          # (conn, dir, text) in log order
        with open(path, errors="replace") as f:
            for line in f:
                m = LINE.search(line.rstrip("\n"))
                if m:
                    self.events.append(m.groups())

    def commands(self, verb_re):
        """(conn, index, tag, text) of client commands matching verb_re (after the tag)."""
        out = []
        rx = re.compile(r"^(\S+) " + verb_re, re.I)
        for i, (conn, d, text) in enumerate(self.events):
            if d == "C>":
                m = rx.match(text)
                if m:
                    out.append((conn, i, m.group(1), text))
        return out

    def completion(self, conn, start, tag):
        """(index, status) of the tagged reply to tag on conn after start, or None."""
        for i in range(start + 1, len(self.events)):
            c, d, text = self.events[i]
            if c == conn and d == "C<":
                m = TAGGED.match(text)
                if m and m.group(1) == tag:
                    return i, m.group(2).upper()
        return None

    def untagged_between(self, conn, start, end):
        return [t for (c, d, t) in self.events[start + 1:end] if c == conn and d == "C<" and t.startswith("* ")]

    def completed_ok(self, verb_re):
        """[(conn, start, end)] of commands matching verb_re answered OK."""
        out = []
        for conn, i, tag, _ in self.commands(verb_re):
            done = self.completion(conn, i, tag)
            if done and done[1] == "OK":
                out.append((conn, i, done[0]))
        return out


def check_login(t, args):
    ok = t.completed_ok(r"(LOGIN|AUTHENTICATE)\b")
    return bool(ok), "%d login(s) answered OK" % len(ok)


def check_listed(t, folders):
    seen = set()
    for conn, i, end in t.completed_ok(r"LIST\b"):
        for u in t.untagged_between(conn, i, end):
            m = re.match(r'^\* LIST \([^)]*\) (?:"[^"]*"|NIL) "?([^"]*)"?$', u, re.I)
            if m:
                seen.add(m.group(1))
    missing = [f for f in folders if f not in seen]
    if missing:
        return False, "LIST never showed %s (saw %s)" % (missing, sorted(seen))
    return True, "LIST showed %s" % ", ".join(folders)


def check_selected(t, args):
    box = args[0]
    ok = [x for x in t.completed_ok(r'(SELECT|EXAMINE) "?%s"?\s*$' % re.escape(box))]
    return bool(ok), "SELECT %s answered OK %d time(s)" % (box, len(ok))


def body_uids(t):
    """UIDs whose whole message (BODY[] or RFC822) the client received."""
    got = set()
    for c, d, text in t.events:
        if d == "C<" and text.startswith("* ") and " FETCH " in text:
            if re.search(r"(BODY\[\]|RFC822) \{\d+\}", text, re.I):
                m = re.search(r"\bUID (\d+)", text, re.I)
                if m:
                    got.add(int(m.group(1)))
    return got


def check_downloaded(t, uids):
    want = {int(u) for u in uids}
    got = body_uids(t)
    missing = sorted(want - got)
    if missing:
        return False, "whole messages never fetched for UIDs %s (got %s)" % (missing, sorted(got))
    return True, "the client downloaded UIDs %s whole" % sorted(want)


def idle_starts(t):
    """(conn, index of the '+') for each client IDLE the proxy accepted."""
    out = []
    for conn, i, tag, _ in t.commands(r"IDLE\s*$"):
        for j in range(i + 1, len(t.events)):
            c, d, text = t.events[j]
            if c == conn and d == "C<":
                if text.startswith("+"):
                    out.append((conn, j))
                break
    return out


def check_idled(t, args):
    starts = idle_starts(t)
    return bool(starts), "%d IDLE(s) accepted with '+'" % len(starts)


def check_compressed(t, args):
    ok = t.completed_ok(r"COMPRESS DEFLATE\s*$")
    return bool(ok), "COMPRESS DEFLATE answered OK on %d connection(s)" % len(ok)


def check_pushed_and_fetched(t, args):
    """An EXISTS during an IDLE, then the whole message of UID fetched on that connection."""
    uid = int(args[0])
    for conn, plus in idle_starts(t):
        pushed = None
        for j in range(plus + 1, len(t.events)):
            c, d, text = t.events[j]
            if c != conn:
                continue
            if d == "C>":
                if pushed is None:
                    break  # the IDLE ended without new mail
                continue
            if pushed is None and re.match(r"^\* \d+ EXISTS$", text):
                pushed = j
            elif pushed is not None and text.startswith("* ") and re.search(r"\bUID %d\b" % uid, text) \
                    and re.search(r"(BODY\[\]|RFC822) \{\d+\}", text, re.I):
                return True, "'%s' pushed in IDLE on %s, then UID %d fetched whole" % (t.events[pushed][2], conn, uid)
    return False, "no EXISTS during an IDLE followed by a whole-message fetch of UID %d" % uid


def check_store_has(pattern, texts):
    """Every text is in one of the files matching pattern (*.msf indexes left out).

    A glob, because Thunderbird sometimes stores INBOX as INBOX-1: when two
    of its folder discoveries race at the first start, the second one finds
    INBOX.msf taken and picks a new name."""
    data = b""
    files = [f for f in sorted(glob.glob(pattern)) if not f.endswith(".msf")]
    for name in files:
        try:
            with open(name, "rb") as f:
                data += f.read() + b"\n"
        except OSError:
            pass
    if not files:
        return False, "no file matches %s" % pattern
    missing = [s for s in texts if s.encode() not in data]
    if missing:
        return False, "%s lack %s" % (" ".join(files), missing)
    return True, "%s hold %d expected text(s)" % (" ".join(os.path.basename(f) for f in files), len(texts))


CHECKS = {
    "login": check_login,
    "listed": check_listed,
    "selected": check_selected,
    "downloaded": check_downloaded,
    "idled": check_idled,
    "compressed": check_compressed,
    "pushed-and-fetched": check_pushed_and_fetched,
}


def main(argv):
    quiet = "-q" in argv
    argv = [a for a in argv if a != "-q"]
    if len(argv) < 2:
        sys.exit(__doc__)
    path, what, args = argv[0], argv[1], argv[2:]
    if what == "store-has":
        ok, msg = check_store_has(path, args)
    elif what in CHECKS:
        ok, msg = CHECKS[what](Trace(path), args)
    else:
        sys.exit("tb_trace.py: unknown check %s" % what)
    if not quiet:
        print(("ok: " if ok else "missing: ") + msg, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
