"""maildirs.py - make a big mail account on disk, and compare synced Maildirs.

    python3 maildirs.py populate MAILDIR --folders INBOX=1700,Work=200,Archive.2024=100 [--seed N]
        write a Dovecot Maildir++ account (INBOX in MAILDIR itself, other
        folders in MAILDIR/.Name) of realistic messages (bench/workload.py's
        generator: headers of real mail, text and HTML parts, some base64
        attachments), each folder subscribed, with a deterministic mix of
        flags (\\Seen, \\Answered, \\Flagged, \\Draft, \\Deleted) in the file
        names, and print the number of messages;
    python3 maildirs.py compare A B
        compare two Maildirs written by mbsync (any folder layout): for each
        folder, the multiset of (message bytes, flags) must be the same in
        both; file names (mbsync's UIDs, times, host names) and the X-TUID
        header line mbsync adds (a random id of its own) do not matter.
        Prints one line per folder; exits 1 with the differences otherwise;
    python3 maildirs.py summary A
        folders and message counts of one Maildir, one line per folder.
"""

import argparse
import hashlib
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "bench"))

# Maildir info letters (sorted, as the spec wants them) <-> IMAP flags.
FLAG_PATTERN = [  # (every n-th message, offset, letter)
    (3, 0, "S"),   # \Seen
    (7, 1, "F"),   # \Flagged
    (11, 2, "R"),  # \Answered
    (29, 3, "D"),  # \Draft
    (37, 4, "T"),  # \Deleted (not expunged)
]


def flags_for(i):
    return "".join(sorted(letter for n, off, letter in FLAG_PATTERN if i % n == off))


def populate(root, folders, seed):
    import workload  # bench/workload.py: the benchmark's realistic messages
    rnd = random.Random(seed)
    t0 = 1764000000
    n = 0
    subscribed = []
    for name, count in folders:
        d = root if name == "INBOX" else os.path.join(root, "." + name)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if name != "INBOX":
            open(os.path.join(d, "maildirfolder"), "w").close()
            subscribed.append(name)
        for _ in range(count):
            data = workload.make_message(n, rnd).replace(b"\r\n", b"\n")
            base = "%d.M%dP%d.pimap-test,S=%d" % (t0 + n, n, os.getpid(), len(data))
            path = os.path.join(d, "cur", "%s:2,%s" % (base, flags_for(n)))
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (t0 + n * 60, t0 + n * 60))
            n += 1
    with open(os.path.join(root, "subscriptions"), "w") as f:
        f.write("V\t2\n\n" + "".join("%s\n" % s for s in ["INBOX"] + subscribed))
    return n


def is_maildir(d):
    return all(os.path.isdir(os.path.join(d, s)) for s in ("cur", "new"))


def without_tuid(data):
    """The message without the X-TUID line mbsync writes into the header."""
    head, sep, body = data.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.startswith(b"X-TUID: ")]
    return b"\n".join(lines) + sep + body


def scan(root):
    """{folder (path relative to root, '' for the top): sorted [(sha256, flags)]}"""
    out = {}
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [x for x in dirnames if x not in ("cur", "new", "tmp")]
        if not is_maildir(dirpath):
            continue
        rel = os.path.relpath(dirpath, root)
        msgs = []
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(dirpath, sub)):
                with open(os.path.join(dirpath, sub, name), "rb") as f:
                    digest = hashlib.sha256(without_tuid(f.read())).hexdigest()
                flags = name.split(":2,", 1)[1] if ":2," in name else ""
                msgs.append((digest, "".join(sorted(c for c in flags if c.isupper()))))
        out["" if rel == "." else rel] = sorted(msgs)
    return out


def compare(a, b):
    sa, sb = scan(a), scan(b)
    ok = True
    for folder in sorted(set(sa) | set(sb)):
        ma, mb = sa.get(folder), sb.get(folder)
        label = folder or "(top)"
        if ma is None or mb is None:
            print("DIFF %s: only in %s" % (label, a if mb is None else b))
            ok = False
            continue
        if ma == mb:
            flagged = sum(1 for _, f in ma if f)
            print("same %s: %d messages (%d with flags)" % (label, len(ma), flagged))
            continue
        ok = False
        only_a = sorted(set(ma) - set(mb))
        only_b = sorted(set(mb) - set(ma))
        print("DIFF %s: %d vs %d messages; %d (content, flags) only in the first, %d only in the second"
              % (label, len(ma), len(mb), len(only_a), len(only_b)))
        for x in only_a[:5]:
            print("   first only:  %s flags %r" % x)
        for x in only_b[:5]:
            print("   second only: %s flags %r" % x)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("populate")
    p.add_argument("maildir")
    p.add_argument("--folders", required=True, help="NAME=COUNT,...")
    p.add_argument("--seed", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    s = sub.add_parser("summary")
    s.add_argument("a")
    args = ap.parse_args()
    if args.cmd == "populate":
        folders = [(f.split("=")[0], int(f.split("=")[1])) for f in args.folders.split(",")]
        print(populate(args.maildir, folders, args.seed))
    elif args.cmd == "compare":
        sys.exit(0 if compare(args.a, args.b) else 1)
    else:
        for folder, msgs in sorted(scan(args.a).items()):
            print("%s %d" % (folder or "(top)", len(msgs)))


if __name__ == "__main__":
    main()
