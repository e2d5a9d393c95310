#!/usr/bin/env python3
"""linkrelay - a TCP relay between pimap-proxy and pimap-gateway that a test
can cut, stall and restore, to play a link that drops or hangs.

    linkrelay.py LISTEN_PORT TARGET_PORT CONTROL_SOCKET

Control: connect to the UNIX socket CONTROL_SOCKET, send one line, read one
line back ("ok ..."):
    cut      close every relayed connection and refuse new ones (RST-free close)
    stall    keep connections open but forward nothing, either way (a link
             that hangs without closing, as behind a dead NAT)
    drop     forward towards the target, but read and throw away what comes
             back (responses lost on the way; the sender never knows)
    restore  forward again and accept new connections
    count    "ok N": connections accepted so far
    stats    "ok UP DOWN TURNS": bytes towards the target, bytes back, and
             how often the direction changed (round trips), since the last
    reset    zero those counters
Everything stays on 127.0.0.1.
"""

import os
import selectors
import socket
import sys

listen_port, target_port, control_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

sel = selectors.DefaultSelector()
lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", listen_port))
lsock.listen(64)
lsock.setblocking(False)
sel.register(lsock, selectors.EVENT_READ, "listen")

try:
    os.unlink(control_path)
except FileNotFoundError:
    pass
csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
csock.bind(control_path)
csock.listen(4)
csock.setblocking(False)
sel.register(csock, selectors.EVENT_READ, "control")

pairs = {}          # sock -> peer sock
towards = set()     # the client-side sockets (their data goes to the target)
TRACE = bool(os.environ.get("LINKRELAY_TRACE"))
stats = {"up": 0, "down": 0, "turns": 0, "last": None}
mode = "up"         # up | cut | stall | drop
accepted = 0


def close_pair(s):
    p = pairs.pop(s, None)
    for x in (s, p):
        if x is None:
            continue
        pairs.pop(x, None)
        towards.discard(x)
        try:
            sel.unregister(x)
        except (KeyError, ValueError):
            pass
        x.close()


def set_reading(on):
    for s in list(pairs):
        try:
            if on:
                sel.register(s, selectors.EVENT_READ, "data")
            else:
                sel.unregister(s)
        except (KeyError, ValueError):
            pass


def control(conn):
    global mode
    data = b""
    conn.settimeout(5)
    while not data.endswith(b"\n"):
        chunk = conn.recv(100)
        if not chunk:
            break
        data += chunk
    cmd = data.decode().strip()
    reply = "ok"
    if cmd == "cut":
        mode = "cut"
        for s in list(pairs):
            close_pair(s)
    elif cmd == "stall":
        mode = "stall"
        set_reading(False)
    elif cmd == "drop":
        if mode == "stall":
            set_reading(True)
        mode = "drop"
    elif cmd == "restore":
        if mode == "stall":
            set_reading(True)
        mode = "up"
    elif cmd == "count":
        reply = "ok %d" % accepted
    elif cmd == "stats":
        reply = "ok %d %d %d" % (stats["up"], stats["down"], stats["turns"])
    elif cmd == "reset":
        stats.update(up=0, down=0, turns=0, last=None)
    else:
        reply = "error unknown command %r" % cmd
    conn.sendall((reply + "\n").encode())
    conn.close()


while True:
    for key, _ in sel.select():
        s, what = key.fileobj, key.data
        if what == "listen":
            c, _ = lsock.accept()
            if mode == "cut":
                c.close()
                continue
            accepted += 1
            try:
                u = socket.create_connection(("127.0.0.1", target_port), timeout=5)
            except OSError:
                c.close()
                continue
            for x in (c, u):
                x.setblocking(False)
            pairs[c], pairs[u] = u, c
            towards.add(c)
            if mode != "stall":
                sel.register(c, selectors.EVENT_READ, "data")
                sel.register(u, selectors.EVENT_READ, "data")
        elif what == "control":
            conn, _ = csock.accept()
            control(conn)
        else:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                close_pair(s)
                continue
            peer = pairs.get(s)
            if peer is None:
                continue
            d = "up" if s in towards else "down"
            if mode == "drop" and d == "down":
                continue
            stats[d] += len(data)
            if stats["last"] is not None and stats["last"] != d:
                stats["turns"] += 1
            stats["last"] = d
            if TRACE:
                print("%s %d" % (d, len(data)), file=sys.stderr, flush=True)
            try:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
            except OSError:
                close_pair(s)
