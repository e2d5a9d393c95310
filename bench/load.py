#!/usr/bin/env python3
"""load.py - the client side of bench/load_bench.sh: many concurrent IMAP
sessions, each running a scripted workload at a steady rate.

  load.py run --port P [--tls --ca CA] --user-format FMT --sessions N
              --password W [--device D] --duration S --interval S [--spread]
              --pid PID [--pid PID]... --json OUT
        open N sessions (at most --ramp-batch connecting at a time), log in
        as FMT % i (with "#P<D>" appended when --device is given: a P-IMAP
        device session), SELECT INBOX; then, for --duration seconds, each
        session sends one command every --interval seconds (its own phase,
        spread evenly) and waits for its reply; then LOGOUT everywhere.
        With --spread, session i connects from its own loopback address
        (127.1.x.y), as separate devices would.
        Meanwhile the processes given by --pid are sampled every 0.5 s for
        their resident size and open descriptors.
  load.py report --json OUT... --output FILE --command CMD [--extra K=V]...
        write the Markdown section between <!-- bench:load:start --> and
        <!-- bench:load:end --> of FILE

The workload cycles, per session, through: NOOP; UID FETCH 1:* (FLAGS);
FETCH of one message's header fields (FROM SUBJECT DATE); STATUS INBOX
(MESSAGES UNSEEN); UID SEARCH UNSEEN; FETCH of one message's body
(BODY.PEEK[]). The latency of a command is from its write to its tagged
reply. An error is anything but a tagged OK (NO, BAD, BYE, a timeout, a
closed connection, a failed login or SELECT). Standard library only
(asyncio, ssl).
"""

import argparse
import asyncio
import json
import os
import re
import ssl
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import perfdoc  # noqa: E402

START = "<!-- bench:load:start -->"
END = "<!-- bench:load:end -->"
REPLY_TIMEOUT = 60.0   # one command: far beyond any sane latency, short of a hang
WORKLOAD = (
    "NOOP",
    "UID FETCH 1:* (FLAGS)",
    "FETCH {n} (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
    "STATUS INBOX (MESSAGES UNSEEN)",
    "UID SEARCH UNSEEN",
    "FETCH {n} (BODY.PEEK[])",
)
RX_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
RX_EXISTS = re.compile(rb"^\* (\d+) EXISTS", re.I)


class SessionError(Exception):
    pass


class Session:
    def __init__(self, i, reader, writer):
        self.i = i
        self.r = reader
        self.w = writer
        self.ntag = 0
        self.exists = 0

    async def response(self):
        """One response (a line plus any literals), raw bytes."""
        out = b""
        while True:
            line = await self.r.readline()
            if not line:
                raise SessionError("connection closed")
            out += line
            m = RX_LITERAL.search(line)
            if not m:
                return out
            out += await self.r.readexactly(int(m.group(1)))

    async def command(self, text):
        """Send text with a fresh tag; return (status, seconds, responses)."""
        self.ntag += 1
        tag = b"L%d" % self.ntag
        t0 = time.monotonic()
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        await self.w.drain()
        resps = []
        while True:
            resp = await asyncio.wait_for(self.response(), REPLY_TIMEOUT)
            resps.append(resp)
            m = RX_EXISTS.match(resp)
            if m:
                self.exists = int(m.group(1))
            if resp.startswith(tag + b" "):
                status = resp[len(tag) + 1:].split(b" ", 1)[0].decode("latin-1").upper()
                return status, time.monotonic() - t0, resps


async def open_session(args, i, ctx):
    user = args.user_format % i
    if args.device:
        user += "#P" + args.device
    # Each session from its own loopback address (127.1.x.y), as devices
    # are: the gateway throttles logins per client address.
    local = ("127.1.%d.%d" % (i >> 8, (i & 255) + 1 if (i & 255) < 255 else 1), 0) if args.spread else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname="localhost" if ctx else None,
                                limit=1 << 22, local_addr=local),
        REPLY_TIMEOUT)
    s = Session(i, reader, writer)
    greeting = await asyncio.wait_for(s.response(), REPLY_TIMEOUT)
    if not greeting.startswith(b"* OK"):
        raise SessionError("greeting %r" % greeting[:80])
    status, _, resps = await s.command('LOGIN "%s" "%s"' % (user, args.password))
    if status != "OK":
        raise SessionError("LOGIN %s: %r" % (user, resps[-1][:100]))
    status, _, resps = await s.command("SELECT INBOX")
    if status != "OK" or s.exists < 1:
        raise SessionError("SELECT INBOX of %s: %r (%d messages)" % (user, resps[-1][:100], s.exists))
    if args.warm:
        # Read everything once, so that the measured runs find the store's
        # indexes and caches built whichever way goes first.
        status, _, resps = await s.command("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)] BODY.PEEK[])")
        if status != "OK":
            raise SessionError("warm-up FETCH of %s: %r" % (user, resps[-1][:100]))
    return s


async def run_session(args, s, t_start, stats):
    """Commands at a steady rate until the end of the run."""
    phase = (s.i / args.sessions) * args.interval
    k = s.i
    next_at = t_start + phase
    while True:
        now = time.monotonic()
        if next_at >= t_start + args.duration:
            return
        if next_at > now:
            await asyncio.sleep(next_at - now)
        cmd = WORKLOAD[k % len(WORKLOAD)].format(n=(k * 7919) % s.exists + 1)
        k += 1
        try:
            status, dt, resps = await s.command(cmd)
        except (SessionError, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            stats["errors"].append("session %d, %s: %s" % (s.i, cmd, e or type(e).__name__))
            return
        if status != "OK":
            stats["errors"].append("session %d, %s: %r" % (s.i, cmd, resps[-1][:100]))
        else:
            stats["latencies"].append(dt)
        # A late command shifts its successors: the rate is steady, not bursty.
        next_at = max(next_at + args.interval, time.monotonic())


def proc_sample(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            st = f.read()
        rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1))
        hwm = int(re.search(r"VmHWM:\s+(\d+)", st).group(1))
        fds = len(os.listdir("/proc/%d/fd" % pid))
        return rss, hwm, fds
    except (OSError, AttributeError):
        return None


async def sampler(pids, peaks, stop):
    while not stop.is_set():
        for pid in pids:
            got = proc_sample(pid)
            if got:
                p = peaks.setdefault(str(pid), {"rss_kb": 0, "hwm_kb": 0, "fds": 0, "fds_before": None})
                p["rss_kb"] = max(p["rss_kb"], got[0])
                p["hwm_kb"] = max(p["hwm_kb"], got[1])
                p["fds"] = max(p["fds"], got[2])
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass


async def cmd_run_async(args):
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.ca)
    stats = {"latencies": [], "errors": []}
    peaks = {}
    for pid in args.pid:
        got = proc_sample(pid)
        peaks[str(pid)] = {"rss_kb": got[0], "hwm_kb": got[1], "fds": got[2], "fds_before": got[2],
                           "rss_before_kb": got[0]}
    stop = asyncio.Event()
    sampling = asyncio.ensure_future(sampler(args.pid, peaks, stop))

    # Ramp up: a bounded number connecting at once.
    t0 = time.monotonic()
    sem = asyncio.Semaphore(args.ramp_batch)
    login_times = []

    async def opener(i):
        async with sem:
            t = time.monotonic()
            try:
                s = await open_session(args, i, ctx)
            except (SessionError, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
                stats["errors"].append("session %d: open: %s" % (i, e or type(e).__name__))
                return None
            login_times.append(time.monotonic() - t)
            return s

    sessions = await asyncio.gather(*(opener(i) for i in range(args.sessions)))
    ramp = time.monotonic() - t0
    live = [s for s in sessions if s]
    print("load: %d of %d sessions open in %.1f s" % (len(live), args.sessions, ramp), file=sys.stderr, flush=True)

    t_start = time.monotonic()
    await asyncio.gather(*(run_session(args, s, t_start, stats) for s in live))
    run_seconds = time.monotonic() - t_start
    at_end = {str(pid): proc_sample(pid) for pid in args.pid}

    async def logout(s):
        try:
            status, _, resps = await s.command("LOGOUT")
            if status != "OK":
                stats["errors"].append("session %d: LOGOUT %r" % (s.i, resps[-1][:80]))
        except (SessionError, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            stats["errors"].append("session %d: LOGOUT: %s" % (s.i, e or type(e).__name__))
        s.w.close()

    await asyncio.gather(*(logout(s) for s in live))
    stop.set()
    await sampling
    lat = sorted(stats["latencies"])

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))] if lat else None

    out = {
        "label": args.label, "sessions": args.sessions, "open": len(live), "duration": args.duration,
        "interval": args.interval, "ramp_seconds": ramp, "run_seconds": run_seconds,
        "commands": len(lat), "throughput": len(lat) / run_seconds if run_seconds else 0,
        "p50_ms": pct(50) * 1000 if lat else None, "p99_ms": pct(99) * 1000 if lat else None,
        "max_ms": lat[-1] * 1000 if lat else None,
        "login_p99_ms": sorted(login_times)[int(0.99 * (len(login_times) - 1))] * 1000 if login_times else None,
        "errors": len(stats["errors"]), "error_samples": stats["errors"][:20],
        "processes": {name: peaks.get(str(pid), {}) for name, pid in zip(args.pid_name, args.pid)},
        "at_end": {name: at_end.get(str(pid)) for name, pid in zip(args.pid_name, args.pid)},
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print("load: %s: %d commands in %.1f s (%.0f/s), p50 %.1f ms, p99 %.1f ms, %d errors"
          % (args.label, out["commands"], run_seconds, out["throughput"], out["p50_ms"] or 0, out["p99_ms"] or 0,
             out["errors"]), file=sys.stderr, flush=True)
    for e in out["error_samples"]:
        print("  error: " + e, file=sys.stderr)
    return 0 if out["errors"] == 0 and len(live) == args.sessions else 1


def cmd_run(args):
    if len(args.pid_name) != len(args.pid):
        raise SystemExit("one --pid-name per --pid")
    return asyncio.run(cmd_run_async(args))


def _kb(n):
    return "{:,} kB".format(n) if n is not None else "–"


def cmd_report(args):
    runs = []
    for path in args.json:
        with open(path) as f:
            runs.append(json.load(f))
    extra = dict(kv.split("=", 1) for kv in args.extra)
    lines = [START, "## Load: {:,} concurrent sessions".format(runs[0]["sessions"]), ""]
    lines.append("Generated by `%s` on %s." % (args.command, extra.get("date", "?")))
    lines.append("")
    lines.append("Machine: %s CPUs, %s; %s. %s; %s; Python %s. Sanitizers: %s."
                 % (extra.get("nproc", "?"), extra.get("cpu", "?"), extra.get("kernel", "?"),
                    extra.get("dovecot", "Dovecot"), extra.get("pimap", "pimap"), extra.get("python", "?"),
                    extra.get("sanitizer", "?")))
    lines.append("")
    lines.append("Each session logs in, selects its own INBOX (%s messages), then sends one command every "
                 "%.1f s for %d s, cycling through NOOP, `UID FETCH 1:* (FLAGS)`, a header fetch, "
                 "`STATUS INBOX (MESSAGES UNSEEN)`, `UID SEARCH UNSEEN` and a body fetch, and waits for "
                 "each reply; then LOGOUT. Each session connects from its own loopback address. The load "
                 "generator (`bench/load.py`, asyncio, one process) runs on the same machine. Latency is from a command's write to its tagged reply. "
                 "RSS and descriptors are sampled every 0.5 s."
                 % (extra.get("messages", "?"), runs[0]["interval"], runs[0]["duration"]))
    lines.append("")
    lines.append("| run | sessions | commands | throughput | p50 | p99 | max | errors | peak RSS | peak descriptors (before) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        procs = r["processes"]
        p = next(iter(procs.values())) if procs else {}
        fds = "{:,} ({:,})".format(p["fds"], p["fds_before"]) if p else "–"
        lines.append("| %s | %d | %s | %.0f/s | %.1f ms | %.1f ms | %.0f ms | %d | %s | %s |"
                     % (r["label"], r["open"], "{:,}".format(r["commands"]), r["throughput"], r["p50_ms"] or 0,
                        r["p99_ms"] or 0, r["max_ms"] or 0, r["errors"], _kb(p.get("rss_kb")), fds))
    lines.append("")
    for r in runs:
        p = next(iter(r["processes"].values())) if r["processes"] else {}
        mem = ""
        if p:
            mem = "; RSS %s before the run, so about %.0f kB per session at the peak" % (
                _kb(p.get("rss_before_kb")), (p["rss_kb"] - p["rss_before_kb"]) / max(1, r["open"]))
        lines.append("- %s: %d sessions open in %.1f s (connect, login and SELECT: p99 %.0f ms; at most %s "
                     "connecting at once)%s." % (r["label"], r["open"], r["ramp_seconds"], r["login_p99_ms"] or 0,
                                                 extra.get("ramp_batch", "?"), mem))
    if "dovecot_limits" in extra:
        lines.append("")
        lines.append("Dovecot limits raised for the run: %s." % extra["dovecot_limits"])
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if args.output and args.output != "-":
        perfdoc.write_section(args.output, START, END, section)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--user-format", required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--device")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--ramp-batch", type=int, default=50)
    p.add_argument("--spread", action="store_true", help="connect session i from its own address 127.1.x.y")
    p.add_argument("--warm", action="store_true", help="read every message once after SELECT (with --duration 0)")
    p.add_argument("--pid", type=int, action="append", default=[])
    p.add_argument("--pid-name", action="append", default=[])
    p.add_argument("--label", required=True)
    p.add_argument("--json", required=True)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("report")
    p.add_argument("--json", action="append", required=True)
    p.add_argument("--output")
    p.add_argument("--command", required=True)
    p.add_argument("--extra", action="append", default=[])
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    sys.exit(a.fn(a))


if __name__ == "__main__":
    main()
