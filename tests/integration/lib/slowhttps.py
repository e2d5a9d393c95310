#!/usr/bin/env python3
"""slowhttps.py CA PORT INTERVAL MAXTIME [PREFIX-FILE]: a slow HTTPS client.
Sends the bytes of PREFIX-FILE (default none) at once, then stdin one byte every INTERVAL
seconds (slowloris), until the server answers or closes or MAXTIME passes.
Prints "elapsed=<s> closed=<0|1>" on stderr and the server's answer on stdout."""
import select
import socket
import ssl
import sys
import time

ca, port, interval, maxtime = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
prefix = open(sys.argv[5], "rb").read() if len(sys.argv) > 5 else b""
data = sys.stdin.buffer.read()
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
s.setblocking(False)
t0 = time.monotonic()
out, closed, i = b"", False, 0
if prefix:
    s.setblocking(True)
    s.sendall(prefix)
    s.setblocking(False)
next_send = t0
while time.monotonic() - t0 < maxtime and not closed:
    now = time.monotonic()
    if i < len(data) and now >= next_send:
        try:
            s.setblocking(True)
            s.sendall(data[i:i + 1])
            s.setblocking(False)
        except OSError:
            closed = True
            break
        i += 1
        next_send = now + interval
    r, _, _ = select.select([s], [], [], 0.05)
    if r or s.pending():
        try:
            chunk = s.recv(65536)
        except ssl.SSLWantReadError:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        out += chunk
print("elapsed=%.2f closed=%d sent=%d" % (time.monotonic() - t0, int(closed), i), file=sys.stderr)
sys.stdout.buffer.write(out)
