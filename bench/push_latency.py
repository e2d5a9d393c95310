#!/usr/bin/env python3
"""push_latency.py - the pieces of pimap-gateway's benchmark (driven by
bench/gateway_bench.sh).

  push_latency.py latency --gw-port P --store-port D --ca CA --lmtp HOST:PORT
        --password W --deliveries N --json OUT [--direct-user U] [--gw-user U#Pdev]
        push latency: one client IDLEs directly on Dovecot (implicit TLS), one
        IDLEs through the gateway in a P-IMAP session (implicit TLS); N
        messages are delivered over LMTP to each user in turn (the order
        alternates every round) and the time from the start of the LMTP
        transaction to the "* n EXISTS" line read on the client socket is
        recorded, one delivery at a time
  push_latency.py memory --gw-port P --gw-pid PID --store-port D --ca CA --password W
        --sessions N --user-format FMT --mode attached|detached --json OUT
        the gateway's VmRSS/VmHWM (/proc/PID/status) with no session, then
          attached: N P-IMAP sessions (one user each, device "mem"), every
                    one with a connection SELECTed on INBOX and in IDLE; then
                    all N connections closed without LOGOUT (N detached
                    sessions that went through the attached state)
          detached: N sessions created 50 at a time (login, SELECT, IDLE,
                    close without LOGOUT), so at most 50 are attached at once
  push_latency.py report --latency J --attached J --detached J --output FILE
        --command CMD [--extra K=V]...
        write the results as a Markdown section between
        <!-- bench:gateway:start --> and <!-- bench:gateway:end --> in FILE
        (appended if the markers are missing; the rest of the file is kept)
"""

import argparse
import concurrent.futures
import json
import math
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "lib"))
import imapc  # noqa: E402
import perfdoc  # noqa: E402

START = "<!-- bench:gateway:start -->"
END = "<!-- bench:gateway:end -->"


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit("no %s in /proc/%d/status" % (field, pid))


def connect(port, ca, timeout=30):
    c = imapc.Client("127.0.0.1", port, tls=True, cafile=ca, timeout=timeout)
    g = c.connect()
    if g.status != "OK":
        raise SystemExit("greeting from port %d: %r" % (port, g.first))
    return c


# --- latency ---------------------------------------------------------------------

def idle_client(port, ca, user, password):
    c = connect(port, ca)
    c.ok('LOGIN "%s" "%s"' % (user, password))
    resps = c.ok("SELECT INBOX")
    n = [int(m.group(1)) for m in (re.match(r"\* (\d+) EXISTS", r.first) for r in resps) if m][0]
    tag = c.idle_start()
    return c, n, tag


def cmd_latency(args):
    sides = {
        "dovecot": {"user": args.direct_user, "login": args.direct_user, "port": args.store_port},
        "gateway": {"user": args.gw_user.split("#P")[0], "login": args.gw_user, "port": args.gw_port},
    }
    for s in sides.values():
        s["client"], s["exists"], s["tag"] = idle_client(s["port"], args.ca, s["login"], args.password)
        s["total"], s["after_lmtp"] = [], []
    t_begin = time.monotonic()
    for i in range(args.deliveries):
        order = ["dovecot", "gateway"] if i % 2 == 0 else ["gateway", "dovecot"]
        for name in order:
            s = sides[name]
            msg = imapc.make_message("push latency %s %d" % (name, i))
            t0 = time.monotonic()
            imapc.deliver(args.lmtp, s["user"], msg)
            t1 = time.monotonic()
            s["exists"] += 1
            want = "* %d EXISTS" % s["exists"]
            r = s["client"].wait_match(r"^\* \d+ EXISTS$", timeout=15)
            t2 = time.monotonic()
            if r.first != want:
                raise SystemExit("%s: got %r, want %r" % (name, r.first, want))
            s["total"].append(t2 - t0)
            s["after_lmtp"].append(t2 - t1)
        if (i + 1) % 50 == 0:
            print("  %d/%d rounds, median so far: dovecot %.1f ms, gateway %.1f ms"
                  % (i + 1, args.deliveries, 1000 * statistics.median(sides["dovecot"]["total"]),
                     1000 * statistics.median(sides["gateway"]["total"])), file=sys.stderr, flush=True)
    for s in sides.values():
        s["client"].idle_done(s["tag"])
        s["client"].ok("LOGOUT")
        s["client"].close()
    out = {"deliveries": args.deliveries, "seconds": time.monotonic() - t_begin,
           "samples": {k: {"total": v["total"], "after_lmtp": v["after_lmtp"]} for k, v in sides.items()}}
    with open(args.json, "w") as f:
        json.dump(out, f)


# --- memory -----------------------------------------------------------------------

def attach(args, i):
    """Session i: login, SELECT INBOX, IDLE. Returns the client."""
    user = args.user_format % i
    for attempt in range(3):
        try:
            c = connect(args.gw_port, args.ca)
            tag, resps = c.command('LOGIN "%s#Pmem" "%s"' % (user, args.password))
            if resps[-1].status != "OK":
                raise SystemExit("login of %s#Pmem: %r" % (user, resps[-1].first))
            if not any(r.first.startswith("* SESSIONID ") or r.first.startswith("* SESSION ") for r in resps):
                raise SystemExit("login of %s#Pmem opened no P-IMAP session: %r" % (user, [r.first for r in resps]))
            c.ok("SELECT INBOX")
            c.idle_start()
            return c
        except (imapc.IMAPError, OSError) as e:
            if attempt == 2:
                raise SystemExit("session %s: %s" % (user, e))
            print("  session %s: %s (retrying)" % (user, e), file=sys.stderr, flush=True)
    return None


def gw_client_sockets(port):
    """Server-side rows of the gateway's listener port that are still open."""
    hexport = ":%04X" % port
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            w = line.split()
            if w[1].endswith(hexport) and w[3] in ("01", "08"):     # ESTABLISHED, CLOSE_WAIT
                n += 1
    return n


def store_sockets(pid, store_port):
    """The gateway's established TCP connections to the store's port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            w = line.split()
            if w[9] in inodes and w[2].endswith(":%04X" % store_port) and w[3] == "01":
                n += 1
    return n


def wait_released(port, timeout=120):
    """Wait until the gateway closed every client connection (a condition, bounded)."""
    deadline = time.monotonic() + timeout
    while gw_client_sockets(port) > 0:
        if time.monotonic() > deadline:
            raise SystemExit("the gateway still holds %d client connections after %d s" % (gw_client_sockets(port), timeout))
        time.sleep(0.1)


def settle(pid, seconds=2.0):
    """Read VmRSS until it stops changing for `seconds` (bounded at 30 s)."""
    deadline = time.monotonic() + 30
    last, since = proc_kb(pid, "VmRSS"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = proc_kb(pid, "VmRSS")
        if abs(now - last) > 64:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            break
    return proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM")


def cmd_memory(args):
    pid = args.gw_pid
    # warm-up: a few sessions that end with LOGOUT (TLS, SQLite, store code paths touched)
    for i in range(3):
        c = connect(args.gw_port, args.ca)
        c.ok('LOGIN "%s#Pwarm" "%s"' % (args.user_format % i, args.password))
        c.ok("SELECT INBOX")
        c.ok("LOGOUT")
        c.close()
    wait_released(args.gw_port)
    base_rss, base_hwm = settle(pid)
    print("  no session: VmRSS %d kB, VmHWM %d kB" % (base_rss, base_hwm), file=sys.stderr, flush=True)
    out = {"mode": args.mode, "sessions": args.sessions, "base_rss": base_rss, "base_hwm": base_hwm}
    t0 = time.monotonic()
    if args.mode == "attached":
        clients = [None] * args.sessions
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            for i, c in zip(range(args.sessions), pool.map(lambda i: attach(args, i), range(args.sessions))):
                clients[i] = c
        out["attach_seconds"] = time.monotonic() - t0
        out["client_connections"] = gw_client_sockets(args.gw_port)
        out["attached_rss"], out["attached_hwm"] = settle(pid)
        out["attached_store_connections"] = store_sockets(pid, args.store_port)
        print("  %d attached sessions in IDLE (%.1f s): VmRSS %d kB, VmHWM %d kB"
              % (args.sessions, out["attach_seconds"], out["attached_rss"], out["attached_hwm"]), file=sys.stderr, flush=True)
        for c in clients:
            c.close()
        wait_released(args.gw_port)
        out["detached_rss"], out["detached_hwm"] = settle(pid)
        out["detached_store_connections"] = store_sockets(pid, args.store_port)
        print("  all %d detached: VmRSS %d kB, VmHWM %d kB" % (args.sessions, out["detached_rss"], out["detached_hwm"]),
              file=sys.stderr, flush=True)
    else:
        batch = 50
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            for start in range(0, args.sessions, batch):
                ids = range(start, min(args.sessions, start + batch))
                clients = list(pool.map(lambda i: attach(args, i), ids))
                for c in clients:
                    c.close()
                wait_released(args.gw_port)
        out["attach_seconds"] = time.monotonic() - t0
        out["detached_rss"], out["detached_hwm"] = settle(pid)
        out["detached_store_connections"] = store_sockets(pid, args.store_port)
        print("  %d detached sessions, made %d at a time (%.1f s): VmRSS %d kB, VmHWM %d kB"
              % (args.sessions, batch, out["attach_seconds"], out["detached_rss"], out["detached_hwm"]),
              file=sys.stderr, flush=True)
    with open(args.json, "w") as f:
        json.dump(out, f)


# --- report -------------------------------------------------------------------------

def pctl(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))]


def cmd_report(args):
    extra = dict(e.split("=", 1) for e in args.extra)
    lat = json.load(open(args.latency)) if args.latency else None
    att = json.load(open(args.attached)) if args.attached else None
    det = json.load(open(args.detached)) if args.detached else None
    nz = json.load(open(args.attached_nocompress)) if args.attached_nocompress else None
    L = [START, "## pimap-gateway: push latency and memory per session", ""]
    L.append("Generated by `%s` on %s." % (args.command, extra.get("date", "?")))
    L.append("")
    L.append("Machine: %s CPUs, %s; %s. Dovecot %s; %s; Python %s."
             % (extra.get("nproc", "?"), extra.get("cpu", "?"), extra.get("kernel", "?"),
                extra.get("dovecot", "?"), extra.get("gateway", "?"), extra.get("python", "?")))
    if extra.get("sanitizer", "none") != "none":
        L.append("")
        L.append("**Warning: this pimap-gateway binary was built with %s; its memory figures below are "
                 "not representative.**" % extra["sanitizer"])
    L.append("")
    L.append("The private Dovecot of this benchmark runs with raised limits so that it can serve "
             "every session: %s. pimap-gateway runs with `limits.max_failed_logins=100000`: all "
             "sessions log in from 127.0.0.1, 16 at a time, and its per-address login throttle "
             "counts logins in flight." % extra.get("dovecot_limits", "?"))
    if lat:
        L.append("")
        L.append("### Push latency")
        L.append("")
        L.append("One client IDLEs on INBOX directly on Dovecot (implicit TLS), one IDLEs on INBOX "
                 "through pimap-gateway in a P-IMAP session (implicit TLS to the gateway, the "
                 "gateway's own TLS connection to Dovecot). %d messages are delivered over LMTP to "
                 "each, one at a time, alternating which side goes first; latency is the time from "
                 "the start of the LMTP transaction to the moment the client has read `* n EXISTS` "
                 "from its socket. Dovecot waits about 0.5 s on purpose before it tells an IDLE "
                 "client about new mail, so both columns include that wait; the gateway's own cost "
                 "is the difference." % lat["deliveries"])
        L.append("")
        L.append("| path | median | p90 | p99 | min | max |")
        L.append("|---|---:|---:|---:|---:|---:|")
        rows = {}
        for key, label in (("dovecot", "client IDLE on Dovecot"), ("gateway", "client IDLE through pimap-gateway")):
            xs = [1000 * x for x in lat["samples"][key]["total"]]
            rows[key] = xs
            L.append("| %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms |"
                     % (label, statistics.median(xs), pctl(xs, 90), pctl(xs, 99), min(xs), max(xs)))
        L.append("| difference (gateway − Dovecot) | %+.1f ms | %+.1f ms | %+.1f ms | | |"
                 % (statistics.median(rows["gateway"]) - statistics.median(rows["dovecot"]),
                    pctl(rows["gateway"], 90) - pctl(rows["dovecot"], 90),
                    pctl(rows["gateway"], 99) - pctl(rows["dovecot"], 99)))
        L.append("")
        L.append("%d deliveries per path (p99 is the nearest-rank 99th percentile); the run took %.0f s. "
                 "LMTP itself (until the server's final reply) took a median of %.1f ms (Dovecot side) "
                 "and %.1f ms (gateway side) of those totals."
                 % (lat["deliveries"], lat["seconds"],
                    1000 * statistics.median([a - b for a, b in zip(lat["samples"]["dovecot"]["total"], lat["samples"]["dovecot"]["after_lmtp"])]),
                    1000 * statistics.median([a - b for a, b in zip(lat["samples"]["gateway"]["total"], lat["samples"]["gateway"]["after_lmtp"])])))
    if att or det:
        L.append("")
        L.append("### Memory per session")
        L.append("")
        L.append("pimap-gateway's resident size from `/proc/PID/status` (VmRSS, and VmHWM, the peak "
                 "since start), read once it has been stable for 2 s. The baseline is the gateway "
                 "after three warm-up sessions that ended with LOGOUT (no session left). Each "
                 "session is a different user (device `mem`) with INBOX selected; each keeps one "
                 "store connection (attached: serving the client's IDLE; detached: parked, in IDLE "
                 "at the store, as docs/PROTOCOL.md describes).")
        L.append("")
        L.append("| state | sessions | gateway→store connections | VmRSS | VmRSS − baseline | per session | VmHWM |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        if att:
            n = att["sessions"]
            L.append("| no session (baseline) | 0 | | %s kB | | | %s kB |" % (format(att["base_rss"], ","), format(att["base_hwm"], ",")))
            L.append("| attached, every connection in IDLE | %d | %d | %s kB | %s kB | %.1f kB | %s kB |"
                     % (n, att["attached_store_connections"], format(att["attached_rss"], ","),
                        format(att["attached_rss"] - att["base_rss"], ","),
                        (att["attached_rss"] - att["base_rss"]) / n, format(att["attached_hwm"], ",")))
            L.append("| detached after being attached together (all connections closed, no LOGOUT) | %d | %d | %s kB | %s kB | %.1f kB | %s kB |"
                     % (n, att["detached_store_connections"], format(att["detached_rss"], ","),
                        format(att["detached_rss"] - att["base_rss"], ","),
                        (att["detached_rss"] - att["base_rss"]) / n, format(att["detached_hwm"], ",")))
        if det:
            n = det["sessions"]
            L.append("| no session (baseline, second gateway process) | 0 | | %s kB | | | %s kB |"
                     % (format(det["base_rss"], ","), format(det["base_hwm"], ",")))
            L.append("| detached, made 50 at a time (at most 50 attached at once) | %d | %d | %s kB | %s kB | %.1f kB | %s kB |"
                     % (n, det["detached_store_connections"], format(det["detached_rss"], ","),
                        format(det["detached_rss"] - det["base_rss"], ","),
                        (det["detached_rss"] - det["base_rss"]) / n, format(det["detached_hwm"], ",")))
        if nz:
            n = nz["sessions"]
            L.append("| no session (baseline, third gateway process, `store.compress=false`) | 0 | | %s kB | | | %s kB |"
                     % (format(nz["base_rss"], ","), format(nz["base_hwm"], ",")))
            L.append("| attached, every connection in IDLE, `store.compress=false` | %d | %d | %s kB | %s kB | %.1f kB | %s kB |"
                     % (n, nz["attached_store_connections"], format(nz["attached_rss"], ","),
                        format(nz["attached_rss"] - nz["base_rss"], ","),
                        (nz["attached_rss"] - nz["base_rss"]) / n, format(nz["attached_hwm"], ",")))
        L.append("")
        L.append("Attaching %s sessions took %.1f s (16 client threads). A process rarely gives freed heap "
                 "back to the system, so the row \"detached after being attached together\" shows "
                 "what stays resident after the peak; the row \"detached, made 50 at a time\", from a "
                 "fresh gateway process, is the better estimate of what a detached session costs."
                 % (format(att["sessions"], ",") if att else "?", att["attach_seconds"] if att else 0))
        if nz:
            L.append("")
            L.append("The last row repeats the attached run in a gateway started with "
                     "`--set store.compress=false`: the difference per session is what COMPRESS=DEFLATE "
                     "towards the store costs (a zlib deflate and inflate state per store connection).")
    L.append(END)
    section = "\n".join(L) + "\n"
    perfdoc.write_section(args.output, START, END, section)
    sys.stdout.write(section)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--gw-port", type=int, required=True)
    p.add_argument("--store-port", type=int, required=True, help="Dovecot's imaps port")
    p.add_argument("--ca", required=True)
    p.add_argument("--lmtp", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--deliveries", type=int, default=200)
    p.add_argument("--direct-user", default="alice")
    p.add_argument("--gw-user", default="bob#Pbench")
    p.add_argument("--json", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--gw-port", type=int, required=True)
    m.add_argument("--gw-pid", type=int, required=True)
    m.add_argument("--store-port", type=int, required=True, help="Dovecot's imaps port (to count store connections)")
    m.add_argument("--ca", required=True)
    m.add_argument("--password", required=True)
    m.add_argument("--sessions", type=int, default=1000)
    m.add_argument("--user-format", default="u%04d")
    m.add_argument("--mode", choices=("attached", "detached"), required=True)
    m.add_argument("--json", required=True)
    r = sub.add_parser("report")
    r.add_argument("--latency")
    r.add_argument("--attached")
    r.add_argument("--detached")
    r.add_argument("--attached-nocompress", help="an attached run with store.compress=false")
    r.add_argument("--output", required=True)
    r.add_argument("--command", required=True)
    r.add_argument("--extra", action="append", default=[], metavar="K=V")
    args = ap.parse_args()
    {"latency": cmd_latency, "memory": cmd_memory, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
