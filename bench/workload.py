#!/usr/bin/env python3
"""workload.py - the pieces of pimap's proxy benchmark (driven by bench.sh).

  workload.py populate --maildir DIR --count N [--seed S]
        write N realistic messages (a few KB each, some with attachments)
        into DIR/new, deterministically
  workload.py relay --port P --target HOST:PORT --stats FILE [--latency MS]
        a TCP relay that counts the bytes in each direction and appends one
        JSON line per finished connection to FILE; --latency holds every
        chunk for MS/2 in each direction (order kept), i.e. MS of round trip
  workload.py run --relay-port R --relay-stats FILE --proxy-port P
        --proxy-pid PID --ca CA --user U --password W --runs N --json OUT
        run the workload in modes a/b/c (see below), N times each,
        interleaved, after one discarded warm-up round; write every sample
  workload.py report --json OUT --output FILE --command CMD [--extra K=V]...
        write the medians as a Markdown section between
        <!-- bench:proxy:start --> and <!-- bench:proxy:end --> in FILE
        (created if missing; the rest of the file is kept)

The workload (one IMAP session): LOGIN, LIST "" "*", SELECT INBOX,
FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE
MESSAGE-ID)]), then 20 message bodies, one FETCH BODY.PEEK[] each (as a
client opening them one by one), LOGOUT.

Modes (the relay always sits on the upstream link, in front of Dovecot's
imaps port, and counts what crosses it):
  a  client --TLS--> relay --> Dovecot
  b  client --TLS, COMPRESS=DEFLATE after LOGIN--> relay --> Dovecot
  c  client --plain loopback--> pimap-proxy --TLS (+ its COMPRESS)--> relay --> Dovecot
"""

import argparse
import datetime
import hashlib
import json
import os
import queue
import random
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "lib"))
import imapc  # noqa: E402
import perfdoc  # noqa: E402

HEADER_FIELDS = "FROM TO SUBJECT DATE MESSAGE-ID"
BODIES = 20

# --- message generation -------------------------------------------------------

WORDS = ("the of and to in is that for it as with was on be by this are from at or have an "
         "they which you one were all we when there can been has more if will no would who so "
         "meeting report budget project deadline review draft update schedule invoice release "
         "server network backup migration ticket customer contract proposal agenda quarterly "
         "please thanks regards attached below following question issue change request team "
         "tomorrow monday friday office travel conference slides numbers figures results").split()
NAMES = ["Alice Adams", "Bob Brown", "Carol Clark", "Dan Davis", "Eve Evans", "Frank Fox",
         "Grace Green", "Hank Hill", "Ivy Irwin", "Jack Jones", "Kim Kelly", "Lee Lopez"]
DOMAINS = ["example.org", "example.net", "example.com", "mail.example.org", "lists.example.net"]
LISTS = ["dev", "announce", "users", "ops", "sales"]


def _addr(rnd):
    name = rnd.choice(NAMES)
    return name, "%s.%s@%s" % (name.split()[0].lower(), name.split()[1].lower(), rnd.choice(DOMAINS))


def _sentence(rnd, n):
    words = [rnd.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraphs(rnd, target):
    out, size = [], 0
    while size < target:
        line_words = []
        para = " ".join(_sentence(rnd, rnd.randint(6, 18)) for _ in range(rnd.randint(2, 6)))
        # wrap at 72 columns like a mail client
        line = ""
        for w in para.split():
            if len(line) + len(w) + 1 > 72:
                line_words.append(line)
                line = w
            else:
                line = (line + " " + w) if line else w
        line_words.append(line)
        p = "\r\n".join(line_words)
        out.append(p)
        size += len(p) + 4
    return "\r\n\r\n".join(out) + "\r\n"


def _b64_lines(data):
    import base64
    enc = base64.b64encode(data).decode()
    return "\r\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)) + "\r\n"


def make_message(i, rnd):
    """Message number i (bytes, CRLF), realistic headers, a few KB."""
    base = datetime.datetime(2025, 11, 1, 8, 0, 0, tzinfo=datetime.timezone.utc)
    date = base + datetime.timedelta(minutes=17 * i + rnd.randint(0, 16))
    fname, faddr = _addr(rnd)
    tname, taddr = "Alice Adams", "alice@example.org"
    subject = _sentence(rnd, rnd.randint(3, 9))[:-1]
    if rnd.random() < 0.3:
        subject = "Re: " + subject
    mid = "<%s@%s>" % (hashlib.sha1(b"msg%d" % i).hexdigest()[:24], rnd.choice(DOMAINS))
    dstr = date.strftime("%a, %d %b %Y %H:%M:%S +0000")
    h = []
    h.append("Return-Path: <%s>" % faddr)
    for hop in range(rnd.randint(2, 4)):
        h.append("Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\r\n\tby mail.example.org (Postfix) with ESMTPS id %s\r\n\tfor <%s>; %s"
                 % (hop, rnd.choice(DOMAINS), hop, rnd.choice(DOMAINS), rnd.randint(1, 254),
                    hashlib.md5(b"%d-%d" % (i, hop)).hexdigest()[:10].upper(), taddr, dstr))
    if rnd.random() < 0.7:
        sig = _b64_lines(hashlib.sha512(b"sig%d" % i).digest() * 4).replace("\r\n", "\r\n\t")
        h.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=sel1;\r\n\th=from:to:subject:date:message-id; bh=%s;\r\n\tb=%s"
                 % (rnd.choice(DOMAINS), hashlib.sha256(b"%d" % i).hexdigest()[:44], sig.rstrip("\r\n\t")))
    h.append("From: %s <%s>" % (fname, faddr))
    h.append("To: %s <%s>" % (tname, taddr))
    if rnd.random() < 0.3:
        h.append("Cc: %s <%s>" % _addr(rnd))
    h.append("Subject: %s" % subject)
    h.append("Date: %s" % dstr)
    h.append("Message-ID: %s" % mid)
    if subject.startswith("Re: ") and i > 0:
        h.append("In-Reply-To: <%s@example.org>" % hashlib.sha1(b"msg%d" % (i - 1)).hexdigest()[:24])
    if rnd.random() < 0.25:
        lst = rnd.choice(LISTS)
        h.append("List-Id: %s.lists.example.net" % lst)
        h.append("List-Unsubscribe: <mailto:%s-unsubscribe@lists.example.net>" % lst)
    h.append("MIME-Version: 1.0")
    text = _paragraphs(rnd, int(rnd.lognormvariate(7.3, 0.6)))   # median ~1.5 KB of text
    kind = rnd.random()
    if kind < 0.55:
        h.append("Content-Type: text/plain; charset=utf-8")
        h.append("Content-Transfer-Encoding: 8bit")
        body = text
    else:
        b = "b-%06d" % i
        html = "<html><body>" + "".join("<p>%s</p>\r\n" % p.replace("\r\n", " ")
                                        for p in text.split("\r\n\r\n")) + "</body></html>\r\n"
        parts = ["Content-Type: text/plain; charset=utf-8\r\n\r\n" + text,
                 "Content-Type: text/html; charset=utf-8\r\n\r\n" + html]
        if kind > 0.93:     # about 7 %: an attachment of 8-40 KB
            blob = random.Random(i).randbytes(rnd.randint(8000, 40000))
            parts.append("Content-Type: application/pdf; name=\"doc%d.pdf\"\r\n"
                         "Content-Disposition: attachment; filename=\"doc%d.pdf\"\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n" % (i, i) + _b64_lines(blob))
            h.append("Content-Type: multipart/mixed; boundary=\"%s\"" % b)
        else:
            h.append("Content-Type: multipart/alternative; boundary=\"%s\"" % b)
        body = "".join("--%s\r\n%s\r\n" % (b, p) for p in parts) + "--%s--\r\n" % b
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


def cmd_populate(args):
    rnd = random.Random(args.seed)
    new = os.path.join(args.maildir, "new")
    for d in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(args.maildir, d), exist_ok=True)
    total = 0
    sizes = []
    t0 = 1764000000
    for i in range(args.count):
        msg = make_message(i, rnd)
        # Maildir stores LF line ends; Dovecot serves CRLF.
        data = msg.replace(b"\r\n", b"\n")
        name = "%d.M%dP%d.pimap-bench,S=%d" % (t0 + i, i, os.getpid(), len(data))
        with open(os.path.join(new, name), "wb") as f:
            f.write(data)
        os.utime(os.path.join(new, name), (t0 + i * 60, t0 + i * 60))
        total += len(msg)
        sizes.append(len(msg))
    sizes.sort()
    print(json.dumps({"messages": args.count, "total_bytes": total,
                      "median_bytes": sizes[len(sizes) // 2], "max_bytes": sizes[-1],
                      "min_bytes": sizes[0]}))


# --- counting relay -------------------------------------------------------------

class Pipe(threading.Thread):
    """One direction: read from src, (hold), write to dst, count bytes."""

    def __init__(self, src, dst, delay):
        super().__init__(daemon=True)
        self.src, self.dst, self.delay = src, dst, delay
        self.count = 0
        self.q = queue.Queue()

    def run(self):
        writer = threading.Thread(target=self._writer, daemon=True)
        writer.start()
        try:
            while True:
                data = self.src.recv(65536)
                if not data:
                    break
                self.count += len(data)
                self.q.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        self.q.put((0, None))
        writer.join()

    def _writer(self):
        try:
            while True:
                due, data = self.q.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)    # the emulated link delay, not synchronisation
                self.dst.sendall(data)
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def cmd_relay(args):
    host, _, port = args.target.rpartition(":")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(64)
    lock = threading.Lock()
    seq = [0]
    delay = args.latency / 2000.0

    def serve(cs, n):
        t0 = time.time()
        try:
            us = socket.create_connection((host, int(port)))
        except OSError as e:
            cs.close()
            print("relay: connect failed: %s" % e, file=sys.stderr, flush=True)
            return
        for s in (cs, us):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = Pipe(cs, us, delay)
        down = Pipe(us, cs, delay)
        up.start()
        down.start()
        up.join()
        down.join()
        cs.close()
        us.close()
        rec = {"conn": n, "c2s": up.count, "s2c": down.count, "start": t0, "end": time.time()}
        with lock:
            with open(args.stats, "a") as f:
                f.write(json.dumps(rec) + "\n")

    while True:
        cs, _ = ls.accept()
        seq[0] += 1
        threading.Thread(target=serve, args=(cs, seq[0]), daemon=True).start()


# --- the workload ---------------------------------------------------------------

def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_sched_seconds(pid):
    """On-CPU time from /proc/PID/schedstat (nanoseconds, so finer than the
    clock ticks of utime/stime); None if the kernel does not provide it."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def stats_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def one_session(mode, args, nmsg_expected):
    """Run the workload once; return (wall seconds, digest of the data)."""
    if mode in ("a", "b"):
        c = imapc.Client("127.0.0.1", args.relay_port, tls=True, cafile=args.ca, timeout=60)
    else:
        c = imapc.Client("127.0.0.1", args.proxy_port, timeout=60)
    h = hashlib.sha256()
    t0 = time.monotonic()
    g = c.connect()
    if g.status != "OK":
        raise SystemExit("mode %s: greeting %r" % (mode, g.first))
    c.login(args.user, args.password)
    if mode == "b":
        r = c.compress()
        if r.status != "OK":
            raise SystemExit("COMPRESS refused: %r" % r.first)
    c.ok('LIST "" "*"')
    resps = c.ok("SELECT INBOX")
    exists = [r.first for r in resps if r.first.endswith(" EXISTS")]
    resps = c.ok("FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)])" % HEADER_FIELDS)
    fetched = [r for r in resps if r.first.startswith("* ") and " FETCH " in r.first]
    if len(fetched) != nmsg_expected:
        raise SystemExit("mode %s: %d FETCH responses, want %d (%s)" % (mode, len(fetched), nmsg_expected, exists))
    for r in fetched:
        for lit in r.literals:
            h.update(lit)
    step = max(1, nmsg_expected // BODIES)
    for k in range(BODIES):
        seq = 1 + k * step
        resps = c.ok("FETCH %d (BODY.PEEK[])" % seq)
        lits = [l for r in resps for l in r.literals]
        if not lits or not lits[0]:
            raise SystemExit("mode %s: empty body for message %d" % (mode, seq))
        h.update(lits[0])
    c.ok("LOGOUT")
    try:
        c.read_until_closed(timeout=10)
    except imapc.Timeout:
        raise SystemExit("mode %s: connection not closed after LOGOUT" % mode)
    wall = time.monotonic() - t0
    c.close()
    return wall, h.hexdigest()


def cmd_run(args):
    samples = []
    digests = {}
    rounds = [("warmup", m) for m in "abc"] + [(r, m) for r in range(args.runs) for m in "abc"]
    for rnd, mode in rounds:
        before_lines = len(stats_lines(args.relay_stats))
        cpu0 = proc_cpu_seconds(args.proxy_pid) if mode == "c" else None
        sched0 = proc_sched_seconds(args.proxy_pid) if mode == "c" else None
        wall, digest = one_session(mode, args, args.messages)
        # the relay writes its line once both directions are closed
        deadline = time.monotonic() + 10
        while len(stats_lines(args.relay_stats)) <= before_lines:
            if time.monotonic() > deadline:
                raise SystemExit("relay recorded no connection for mode %s" % mode)
            time.sleep(0.01)
        rec = stats_lines(args.relay_stats)[before_lines]
        s = {"round": rnd, "mode": mode, "wall": wall, "c2s": rec["c2s"], "s2c": rec["s2c"]}
        if mode == "c":
            s["cpu"] = proc_cpu_seconds(args.proxy_pid) - cpu0
            sched1 = proc_sched_seconds(args.proxy_pid)
            if sched0 is not None and sched1 is not None:
                s["sched"] = sched1 - sched0
            s["hwm_kb"] = proc_status_kb(args.proxy_pid, "VmHWM")
            s["rss_kb"] = proc_status_kb(args.proxy_pid, "VmRSS")
        digests.setdefault(mode, set()).add(digest)
        print("  %-6s %s: wall %.3f s, upstream c2s %d B, s2c %d B%s"
              % (rnd, mode, wall, rec["c2s"], rec["s2c"],
                 ", proxy cpu %.3f s, VmHWM %d kB, VmRSS %d kB" % (s["cpu"], s["hwm_kb"], s["rss_kb"]) if mode == "c" else ""),
              file=sys.stderr, flush=True)
        if rnd != "warmup":
            samples.append(s)
    # every mode must have seen exactly the same data
    all_digests = set().union(*digests.values())
    if len(all_digests) != 1:
        raise SystemExit("the modes fetched different data: %r" % digests)
    with open(args.json, "w") as f:
        json.dump({"samples": samples, "runs": args.runs, "messages": args.messages}, f, indent=1)


# --- the report -----------------------------------------------------------------

START = "<!-- bench:proxy:start -->"
END = "<!-- bench:proxy:end -->"


def _kb(n):
    return "{:,.1f} KiB".format(n / 1024.0)


def cmd_report(args):
    with open(args.json) as f:
        res = json.load(f)
    extra = dict(e.split("=", 1) for e in args.extra)
    by = {m: [s for s in res["samples"] if s["mode"] == m] for m in "abc"}
    med = {m: {k: statistics.median(s[k] for s in by[m]) for k in by[m][0]
               if k not in ("round", "mode")} for m in "abc"}
    a = med["a"]

    def pct(x, base):
        return "%+.0f %%" % (100.0 * (x - base) / base) if base else "n/a"

    rows = [
        ("(a) client → TLS → Dovecot", "a"),
        ("(b) client → TLS + COMPRESS → Dovecot", "b"),
        ("(c) client → pimap-proxy → TLS (+ proxy's COMPRESS) → Dovecot", "c"),
    ]
    start, end = START, END
    if args.section != "proxy":
        start, end = "<!-- bench:%s:start -->" % args.section, "<!-- bench:%s:end -->" % args.section
    title = "## pimap-proxy in compatibility mode (in front of Dovecot)"
    if extra.get("latency", "0") not in ("0", ""):
        title += ", %s ms round trip" % extra["latency"]
    lines = [start, title, ""]
    lines.append("Generated by `%s` on %s." % (args.command, extra.get("date", "?")))
    lines.append("")
    lines.append("Machine: %s CPUs, %s; %s. Dovecot %s; %s; Python %s."
                 % (extra.get("nproc", "?"), extra.get("cpu", "?"), extra.get("kernel", "?"),
                    extra.get("dovecot", "?"), extra.get("proxy", "?"), extra.get("python", "?")))
    lines.append("")
    lines.append("Mailbox: %s messages, %s in total, median %s per message (generated by "
                 "`bench/workload.py populate`, seed 1; realistic headers, text and HTML parts, "
                 "about 7 %% with an attachment)."
                 % (format(res["messages"], ","), extra.get("total", "?"), extra.get("median", "?")))
    lines.append("")
    lines.append("Workload, one session: LOGIN, `LIST \"\" \"*\"`, `SELECT INBOX`, "
                 "`FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)])`, "
                 "%d single-message `FETCH n (BODY.PEEK[])`, LOGOUT. A counting TCP relay sits on the "
                 "upstream link, in front of Dovecot's imaps port, and counts every byte crossing it "
                 "(TLS records, handshake included). In (c) the client talks plain IMAP to the proxy "
                 "on loopback and only the proxy's upstream connection crosses the relay."
                 % (HEADER_FIELDS, BODIES))
    if extra.get("sanitizer", "none") != "none":
        lines.append("")
        lines.append("**Warning: this pimap-proxy binary was built with %s. Its CPU time and "
                     "resident size below are not representative (the sanitizer's checks cost CPU "
                     "and its quarantine keeps freed memory).**" % extra["sanitizer"])
    if extra.get("latency", "0") not in ("0", ""):
        lines.append("")
        lines.append("The relay adds %s ms of round-trip delay (half each way)." % extra["latency"])
    lines.append("")
    lines.append("Medians of %d runs per mode (interleaved a, b, c; one warm-up round discarded):"
                 % res["runs"])
    lines.append("")
    lines.append("| mode | upstream bytes client→server | upstream bytes server→client | wall time | proxy CPU (user+sys) | proxy peak RSS (VmHWM) |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for label, m in rows:
        r = med[m]
        lines.append("| %s | %s (%s) | %s (%s) | %.0f ms | %s | %s |" % (
            label, format(int(r["c2s"]), ","), pct(r["c2s"], a["c2s"]),
            format(int(r["s2c"]), ","), pct(r["s2c"], a["s2c"]), r["wall"] * 1000,
            ("%.0f ms" % (r["cpu"] * 1000) + (" (%.1f ms)" % (r["sched"] * 1000) if "sched" in r else ""))
            if "cpu" in r else "–",
            "%s kB" % format(int(r["hwm_kb"]), ",") if "hwm_kb" in r else "–"))
    lines.append("")
    lines.append("Percentages are relative to (a). Proxy CPU is the utime+stime difference in "
                 "`/proc/PID/stat` across one session (clock-tick resolution, %g ms here); in "
                 % (1000.0 / os.sysconf("SC_CLK_TCK")) +
                 "parentheses the on-CPU time from `/proc/PID/schedstat` (nanosecond resolution). "
                 "VmHWM is the "
                 "proxy process's peak resident size since it started, read after each session. "
                 "Wall time is measured by the Python client (same client code in every mode), "
                 "from connect to the server's close after LOGOUT.")
    lines.append("")
    lines.append("Raw samples (upstream bytes c2s/s2c, wall ms, for (c) proxy CPU ms (schedstat ms)):")
    lines.append("")
    for label, m in rows:
        lines.append("- %s: %s" % (m, "; ".join(
            "%d/%d, %.0f%s" % (s["c2s"], s["s2c"], s["wall"] * 1000,
                               ", %.0f (%.1f)" % (s["cpu"] * 1000, s.get("sched", 0) * 1000)
                               if "cpu" in s else "")
            for s in by[m])))
    lines.append(end)
    section = "\n".join(lines) + "\n"

    perfdoc.write_section(args.output, start, end, section)
    sys.stdout.write(section)
    workload = "compat session, %s msgs%s" % (format(res["messages"], ","),
                                              ", %s ms RTT" % extra["latency"]
                                              if extra.get("latency", "0") not in ("0", "") else "")
    perfdoc.append_chart_rows(args.chart, workload, [
        (way, med[m]["c2s"] + med[m]["s2c"], med[m]["wall"])
        for way, m in (("plain", "a"), ("compress", "b"), ("pimap", "c"))])


def cmd_summary(args):
    """The populate output as "TOTAL MEDIAN" words for the scripts' reports."""
    d = json.load(open(args.json))
    print("%.1f_MiB" % (d["total_bytes"] / 1048576.0), "%.1f_KiB" % (d["median_bytes"] / 1024.0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("populate")
    p.add_argument("--maildir", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("summary")
    m.add_argument("--json", required=True, help="what populate printed")
    r = sub.add_parser("relay")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--stats", required=True)
    r.add_argument("--latency", type=float, default=0.0, help="round-trip delay in ms")
    w = sub.add_parser("run")
    w.add_argument("--relay-port", type=int, required=True)
    w.add_argument("--relay-stats", required=True)
    w.add_argument("--proxy-port", type=int, required=True)
    w.add_argument("--proxy-pid", type=int, required=True)
    w.add_argument("--ca", required=True)
    w.add_argument("--user", default="alice")
    w.add_argument("--password", required=True)
    w.add_argument("--runs", type=int, default=5)
    w.add_argument("--messages", type=int, default=1000)
    w.add_argument("--json", required=True)
    o = sub.add_parser("report")
    o.add_argument("--json", required=True)
    o.add_argument("--output", required=True)
    o.add_argument("--command", required=True)
    o.add_argument("--section", default="proxy", help="NAME of the <!-- bench:NAME:start --> markers")
    o.add_argument("--chart", help="append chart rows (perfdoc.append_chart_rows) to this file")
    o.add_argument("--extra", action="append", default=[], metavar="K=V")
    args = ap.parse_args()
    {"populate": cmd_populate, "summary": cmd_summary, "relay": cmd_relay, "run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
