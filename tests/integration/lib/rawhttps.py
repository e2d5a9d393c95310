#!/usr/bin/env python3
"""rawhttps.py CA PORT TIMEOUT: stdin as raw bytes over TLS to 127.0.0.1:PORT,
the answer to stdout until the server closes or TIMEOUT seconds pass.
For HTTP input curl refuses to send (bad chunking, floods, no length)."""
import socket
import ssl
import sys
import time

ca, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
s = ctx.wrap_socket(raw, server_hostname="localhost")
data = sys.stdin.buffer.read()
try:
    s.sendall(data)
except OSError as e:
    print("send failed: %s" % e, file=sys.stderr)
deadline = time.monotonic() + timeout
out = b""
while time.monotonic() < deadline:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        chunk = s.recv(65536)
    except (socket.timeout, ssl.SSLError, OSError):
        break
    if not chunk:
        break
    out += chunk
sys.stdout.buffer.write(out)
