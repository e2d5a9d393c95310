"""fake_base - what the scripted servers of the tests (fake_imapd.py,
fake_smtpd.py) share: a line-oriented connection that records every byte
it receives, a STARTTLS switch that can inject bytes before the handshake,
and the accept loop (loopback only, one thread per connection, implicit
TLS optional). Standard library only."""

import socket
import ssl
import sys
import threading

LOCK = threading.Lock()


def unescape(text):
    """"\\r\\n" in a command-line argument is CRLF."""
    return text.replace("\\r\\n", "\r\n") if text is not None else None


class LineConn:
    """A connection read line by line; every byte received (after TLS:
    decrypted) is appended to the record file."""

    def __init__(self, sock, args):
        self.sock = sock
        self.args = args
        self.buf = b""
        self.tls = False

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        with LOCK, open(self.args.record, "ab") as r:
            r.write(data)
        self.buf += data

    def line(self):
        """The next line, LF included."""
        while b"\n" not in self.buf:
            if len(self.buf) > 65536:
                raise EOFError
            self.fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def say(self, text):
        self.sock.sendall(text.encode("latin-1") + b"\r\n")

    def switch_to_tls(self, reply, inject, cert, key):
        """Send reply and inject in one write, drop what the client
        pipelined behind the command (as a server must), and do the server
        side of the handshake with cert."""
        self.sock.sendall((reply + (unescape(inject) or "")).encode("latin-1"))
        self.buf = b""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(30)
        self.tls = True

    def serve(self):
        raise NotImplementedError


def handle(sock, ctx, args, conn_class, name):
    try:
        sock.settimeout(30)
        c = conn_class(sock, args)
        if ctx is not None:
            sock.settimeout(10)
            c.sock = ctx.wrap_socket(sock, server_side=True)
            c.sock.settimeout(30)
            c.tls = True
        c.serve()
    except (OSError, ssl.SSLError, EOFError) as e:
        # A client that rejects our certificate lands here: expected.
        print("%s: connection ended: %s" % (name, e or "EOF"), file=sys.stderr, flush=True)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_forever(args, conn_class, name, extra_files=()):
    """Listen on 127.0.0.1:args.port (implicit TLS with args.tls_cert);
    create args.record, extra_files and args.ready_file; serve until killed."""
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", args.port))
    s.listen(16)
    for f in (args.record,) + tuple(f for f in extra_files if f):
        open(f, "ab").close()
    if args.ready_file:
        open(args.ready_file, "w").close()
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn, ctx, args, conn_class, name), daemon=True).start()
