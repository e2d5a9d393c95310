#!/usr/bin/env python3
"""hookrecv.py CERT KEY PORTFILE LOGDIR: a local HTTPS webhook receiver for the
tests (ntfy/UnifiedPush stand-in). Binds 127.0.0.1 on a free port (written to
PORTFILE), answers every POST with 200, and stores each request as
LOGDIR/<n>.req (request line, headers, blank line, body). Stops on SIGTERM."""
import http.server
import os
import ssl
import sys

cert, key, portfile, logdir = sys.argv[1:5]
count = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        count[0] += 1
        with open(os.path.join(logdir, "%d.req.tmp" % count[0]), "wb") as f:
            f.write(("%s %s\n" % (self.command, self.path)).encode())
            f.write(str(self.headers).encode())
            f.write(b"\n")
            f.write(body)
        os.rename(os.path.join(logdir, "%d.req.tmp" % count[0]), os.path.join(logdir, "%d.req" % count[0]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("hookrecv: " + fmt % args + "\n")


srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
