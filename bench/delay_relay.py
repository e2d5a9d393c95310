#!/usr/bin/env python3
"""delay_relay.py - the measured link of bench/link_bench.sh.

  delay_relay.py --listen 127.0.0.1:PORT --target HOST:PORT --control PATH
                 [--delay MS]

A TCP relay (it does not look into the bytes: TLS, COMPRESS and P-IMAP pass
through untouched) that

  - counts the bytes in each direction: "up" is what the connecting side
    (the mail client, or pimap-proxy) sends towards the target, "down" the
    other way;
  - counts round trips as direction changes: every chunk read from one side
    whose direction differs from the previous chunk of the same connection
    counts one change (the first chunk of a connection counts none);
  - holds every chunk for the delay before writing it on (per direction, so
    --delay 100 adds 100 ms each way, 200 ms to a round trip), keeping the
    order of the chunks of each direction. This replaces netem, which the
    benchmark machines' kernels lack. The delay applies to chunks read
    after it was set.

Control: a UNIX stream socket at PATH, one line per request, one JSON line
per answer:

  stats        {"up": B, "down": B, "changes": N, "chunks": N,
                "open": N, "connections": N, "delay_ms": MS}
               (totals since the relay started, over every connection;
               a benchmark takes the difference around one session)
  delay MS     set the delay of each direction; answers {"delay_ms": MS}

The relay runs until it is killed (SIGTERM); link_bench.sh stops it by PID.
"""

import argparse
import collections
import json
import os
import socket
import sys
import threading
import time


class Totals:
    def __init__(self, delay_ms):
        self.lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.changes = 0
        self.chunks = 0
        self.open = 0
        self.connections = 0
        self.delay = delay_ms / 1000.0

    def snapshot(self):
        with self.lock:
            return {"up": self.up, "down": self.down, "changes": self.changes,
                    "chunks": self.chunks, "open": self.open,
                    "connections": self.connections, "delay_ms": self.delay * 1000.0}


class Conn:
    """One relayed connection: the direction of its last chunk."""

    def __init__(self):
        self.last = None


class Held:
    """The chunks of one direction, each with the time it may be written."""

    def __init__(self):
        self.cv = threading.Condition()
        self.q = collections.deque()

    def put(self, item):
        with self.cv:
            self.q.append(item)
            self.cv.notify()

    def get(self):
        with self.cv:
            while not self.q:
                self.cv.wait()
            return self.q.popleft()


def reader(totals, conn, direction, src, held):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            now = time.monotonic()
            with totals.lock:
                if direction == "up":
                    totals.up += len(data)
                else:
                    totals.down += len(data)
                totals.chunks += 1
                if conn.last is not None and conn.last != direction:
                    totals.changes += 1
                conn.last = direction
                due = now + totals.delay
            held.put((due, data))
    except OSError:
        pass
    held.put((0.0, None))


def writer(held, dst):
    ok = True
    while True:
        due, data = held.get()
        if data is None:
            break
        if not ok:
            continue
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)    # the emulated link delay, not a synchronisation
        try:
            dst.sendall(data)
        except OSError:
            ok = False          # keep draining so that the reader never blocks
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(totals, cs, target):
    try:
        us = socket.create_connection(target, timeout=10)
        us.settimeout(None)
    except OSError as e:
        print("delay_relay: connect to %s:%d failed: %s" % (target[0], target[1], e),
              file=sys.stderr, flush=True)
        cs.close()
        with totals.lock:
            totals.open -= 1
        return
    for s in (cs, us):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn()
    threads = []
    for direction, src, dst in (("up", cs, us), ("down", us, cs)):
        held = Held()
        threads.append(threading.Thread(target=reader, args=(totals, conn, direction, src, held),
                                        daemon=True))
        threads.append(threading.Thread(target=writer, args=(held, dst), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cs.close()
    us.close()
    with totals.lock:
        totals.open -= 1


def control(totals, path):
    if os.path.exists(path):
        os.unlink(path)
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(8)

    def handle(c):
        f = c.makefile("rwb")
        try:
            for line in f:
                words = line.decode().split()
                if not words:
                    continue
                if words[0] == "stats":
                    ans = totals.snapshot()
                elif words[0] == "delay" and len(words) == 2:
                    with totals.lock:
                        totals.delay = float(words[1]) / 1000.0
                    ans = {"delay_ms": float(words[1])}
                else:
                    ans = {"error": "unknown request %r" % line.decode().strip()}
                f.write(json.dumps(ans).encode() + b"\n")
                f.flush()
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


# --- the client side of the control socket (used by clients.py) ---------------

class Control:
    """Talk to a running relay's control socket."""

    def __init__(self, path):
        self.path = path

    def _ask(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.path)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(4096)
                if not d:
                    break
                buf += d
        return json.loads(buf)

    def stats(self):
        return self._ask("stats")

    def set_delay(self, ms):
        return self._ask("delay %g" % ms)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--listen", required=True, help="127.0.0.1:PORT")
    ap.add_argument("--target", required=True, help="HOST:PORT")
    ap.add_argument("--control", required=True, help="path of the control UNIX socket")
    ap.add_argument("--delay", type=float, default=0.0, help="ms added to each direction")
    args = ap.parse_args()
    totals = Totals(args.delay)
    target = parse_hostport(args.target)
    host, port = parse_hostport(args.listen)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(64)
    threading.Thread(target=control, args=(totals, args.control), daemon=True).start()
    while True:
        cs, _ = ls.accept()
        with totals.lock:
            totals.open += 1
            totals.connections += 1
        threading.Thread(target=serve, args=(totals, cs, target), daemon=True).start()


if __name__ == "__main__":
    main()
