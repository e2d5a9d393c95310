#!/usr/bin/env python3
"""imapc - a small scripted IMAP client for pimap's integration tests.

Standard library only (socket, ssl, zlib). Usable as a module
(``import imapc``; the harness puts this directory on PYTHONPATH) and as a
command line tool:

  imapc.py run    [connection options] [--var K=V]... [--normalize] SCRIPT
        run a script file and print the transcript (see SCRIPT FORMAT)
  imapc.py deliver --lmtp HOST:PORT --to USER (--subject S [--body B] | --file F)
        deliver one message over LMTP (smtplib.LMTP)

Connection options: --host H --port P [--tls | --starttls] [--cafile F |
--insecure] [--server-name N] [--timeout SECONDS]. COMPRESS is a script
directive (@compress), since it is only valid after login.

Every read has a deadline (default 10 s): a peer that stops talking raises
Timeout instead of hanging the test.

SCRIPT FORMAT (one directive per line; blank lines and lines starting with
'#' are ignored; ${NAME} is replaced by --var NAME=VALUE):

  COMMAND TEXT           send "<tag> COMMAND TEXT", read until its tagged reply.
                         {{sync:NAME}} / {{nonsync:NAME}} insert the literal
                         block NAME as a synchronizing literal {n} (waits for
                         the server's "+") or a LITERAL+ literal {n+}.
  @pipeline ... @end     send every command in between before reading any
                         reply (no sync literals inside), then read all replies
  @idle                  send IDLE, wait for the "+" continuation
  @wait REGEX [SECONDS]  read responses until one matches REGEX (default 10 s)
  @done                  send DONE, read until IDLE's tagged reply
  @deliver USER SUBJECT  deliver a message over LMTP (needs --lmtp)
  @starttls / @compress  STARTTLS / COMPRESS DEFLATE on this connection
  @reconnect             close and connect again (same options; new greeting)
  @authenticate-plain USER PASS [ir]
                         AUTHENTICATE PLAIN, with SASL-IR when "ir" is given
  @raw TEXT              send TEXT (Python escapes: \\r\\n, \\x00) as is
  @closed [SECONDS]      read until the server closes the connection
  @literal NAME [noeol] ... @endliteral
                         a literal block: the lines in between joined with
                         CRLF, with a final CRLF unless "noeol" is given

TRANSCRIPT FORMAT: "C: " lines the client sent, "S: " lines the server sent
(the greeting is printed as "S: greeting ..." and is not normalized), literal
contents as "S| " / "C| " lines; bytes that are not printable ASCII are
escaped (\\xNN; a backslash is printed as is), a literal piece without a final CRLF ends in "\\<no-crlf>".
Tags are printed as their sequence number. CAPABILITY lists (the untagged
response and the [CAPABILITY ...] code) are always printed sorted, so they
compare as sets. --normalize also replaces the values that legitimately
differ between two identical mailboxes: UIDVALIDITY (also inside APPENDUID
and COPYUID), INTERNALDATE, and Dovecot's "(0.001 + 0.000 secs)" timings,
and prints the replies to an @pipeline block sorted (a server may run
pipelined commands concurrently, so their order varies between runs).
"""

import argparse
import base64
import hashlib
import os
import re
import select
import smtplib
import socket
import ssl
import sys
import time
import zlib

DEFAULT_TIMEOUT = 10.0

__all__ = ["Client", "PipeTransport", "Response", "Literal", "IMAPError", "Timeout", "Closed",
           "run_script", "format_transcript", "deliver", "make_message"]


class IMAPError(Exception):
    """A protocol-level surprise (bad reply, unexpected tag...)."""


class Timeout(IMAPError):
    """The server did not send what we waited for before the deadline."""


class Closed(IMAPError):
    """The server closed the connection."""


class Literal:
    """A literal argument of a command: sync ({n}, wait for "+") or LITERAL+ ({n+})."""

    def __init__(self, data, sync=True):
        self.data = data if isinstance(data, bytes) else data.encode()
        self.sync = sync

    def marker(self):
        return b"{%d%s}" % (len(self.data), b"" if self.sync else b"+")


_LIT_AT_END = re.compile(rb"~?\{(\d+)\+?\}\r\n\Z")


class Response:
    """One server response, exactly as received.

    parts: list of ("line", bytes) and ("lit", bytes) in arrival order; every
    "line" part ends with CRLF (a line that announces a literal ends with
    {n}CRLF and is followed by a "lit" part).
    """

    def __init__(self):
        self.parts = []

    @property
    def raw(self):
        return b"".join(p for _, p in self.parts)

    @property
    def first(self):
        """The first line without CRLF, decoded leniently."""
        return self.parts[0][1].rstrip(b"\r\n").decode("utf-8", "replace")

    @property
    def text(self):
        """All line parts joined (literals replaced by {n}), decoded; for matching."""
        out = []
        for kind, data in self.parts:
            if kind == "line":
                out.append(data.rstrip(b"\r\n").decode("utf-8", "replace"))
        return "".join(out)

    @property
    def literals(self):
        return [d for k, d in self.parts if k == "lit"]

    @property
    def tag(self):
        return self.first.split(" ", 1)[0]

    @property
    def is_continuation(self):
        return self.first.startswith("+")

    @property
    def status(self):
        """OK/NO/BAD/BYE/PREAUTH for status responses, else None."""
        words = self.first.split(" ", 2)
        if len(words) >= 2 and words[1].upper() in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
            return words[1].upper()
        return None

    def __repr__(self):
        return "<Response %r>" % self.raw[:200]


class PipeTransport:
    """The part of the socket interface Client uses, over two pipe fds:
    write to a child's stdin, read from its stdout (pimap-proxy --stdio)."""

    def __init__(self, wfd, rfd):
        self.wfd, self.rfd = wfd, rfd
        self._timeout = None

    def settimeout(self, t):
        self._timeout = t

    def recv(self, n):
        r, _, _ = select.select([self.rfd], [], [], self._timeout)
        if not r:
            raise socket.timeout("pipe read timed out")
        return os.read(self.rfd, n)

    def sendall(self, data):
        view = memoryview(data)
        while view:
            _, w, _ = select.select([], [self.wfd], [], self._timeout)
            if not w:
                raise socket.timeout("pipe write timed out")
            n = os.write(self.wfd, view)
            view = view[n:]

    def close_write(self):
        if self.wfd is not None:
            os.close(self.wfd)
            self.wfd = None

    def close(self):
        self.close_write()
        if self.rfd is not None:
            os.close(self.rfd)
            self.rfd = None


class Client:
    """A blocking IMAP client with deadlines on every read.

    Plain TCP, implicit TLS (tls=True) or STARTTLS (starttls()), optional
    COMPRESS=DEFLATE (compress()). Everything sent and received is kept in
    self.transcript (decompressed), every response in self.responses.
    """

    def __init__(self, host="127.0.0.1", port=143, tls=False, cafile=None,
                 verify=True, server_hostname=None, timeout=DEFAULT_TIMEOUT,
                 tag_prefix="A"):
        self.host = host
        self.port = int(port)
        self.tls = tls
        self.cafile = cafile
        self.verify = verify
        self.server_hostname = server_hostname
        self.timeout = timeout
        self.tag_prefix = tag_prefix
        self.source = None      # local address to connect from (e.g. "127.0.0.2"), None = any
        self.sock = None
        self.rbuf = b""
        self.inflate = None
        self.deflate = None
        self.ntags = 0
        self.tag_numbers = {}
        self.transcript = []    # (direction, kind, bytes); direction "C"/"S"
        self.responses = []
        self.greeting = None
        self.eof = False

    # --- connection ----------------------------------------------------

    def _ssl_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.verify:
            if self.cafile:
                ctx.load_verify_locations(self.cafile)
            else:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _wrap_tls(self):
        ctx = self._ssl_context()
        name = self.server_hostname or self.host
        self.sock = ctx.wrap_socket(self.sock, server_hostname=name)
        self.tls_version = self.sock.version()
        self.peer_cert = self.sock.getpeercert(binary_form=True)

    def connect(self, read_greeting=True):
        """Connect (and do the TLS handshake for implicit TLS); return the greeting Response."""
        self.close()
        self.rbuf = b""
        self.inflate = self.deflate = None
        self.eof = False
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout,
                                             source_address=(self.source, 0) if self.source else None)
        if self.tls:
            self._wrap_tls()
        if read_greeting:
            self.greeting = self.read_response()
            self.transcript[-1] = ("S", "greeting", self.greeting)
            return self.greeting
        return None

    def attach(self, transport, read_greeting=True):
        """Use an already connected socket-like object (e.g. a PipeTransport
        to a child's stdin/stdout) instead of connecting; returns the greeting."""
        self.close()
        self.rbuf = b""
        self.inflate = self.deflate = None
        self.eof = False
        self.sock = transport
        if read_greeting:
            self.greeting = self.read_response()
            self.transcript[-1] = ("S", "greeting", self.greeting)
            return self.greeting
        return None

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def starttls(self):
        """STARTTLS; raises IMAPError unless OK. Returns the tagged Response."""
        tag, resps = self.command("STARTTLS")
        if resps[-1].status != "OK":
            raise IMAPError("STARTTLS refused: %s" % resps[-1].first)
        if self.rbuf:
            raise IMAPError("plaintext bytes after STARTTLS OK: %r" % self.rbuf)
        self._wrap_tls()
        return resps[-1]

    def compress(self):
        """COMPRESS DEFLATE; on OK both directions are raw deflate from now on."""
        tag, resps = self.command("COMPRESS DEFLATE")
        if resps[-1].status == "OK":
            self.start_compression()
        return resps[-1]

    def start_compression(self):
        # RFC 4978: raw deflate (no zlib header), windowBits -15.
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        if self.rbuf:
            # Bytes that came in the same read as the OK are already part of
            # the compressed stream (e.g. an empty sync-flush block).
            leftover, self.rbuf = self.rbuf, b""
            self.rbuf = self.inflate.decompress(leftover)

    # --- low level I/O -------------------------------------------------

    def send(self, data, record=True):
        if isinstance(data, str):
            data = data.encode()
        if record:
            self.transcript.append(("C", "raw", data))
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline):
        """Read more bytes into rbuf before deadline; raise Timeout or Closed."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no data from %s:%d within the deadline; buffered %r"
                              % (self.host, self.port, self.rbuf[-200:]))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ssl.SSLError as e:
                raise Closed("TLS error: %s" % e)
            except ConnectionResetError as e:
                self.eof = True
                raise Closed("connection reset: %s" % e)
            if not data:
                self.eof = True
                raise Closed("connection closed by server; buffered %r" % self.rbuf[-200:])
            if self.inflate is not None:
                data = self.inflate.decompress(data)
                if not data:
                    continue    # a flush block without payload
            self.rbuf += data
            return

    def read_line(self, timeout=None, deadline=None):
        """One line including CRLF (bare LF tolerated)."""
        deadline = deadline or self._deadline(timeout)
        while True:
            i = self.rbuf.find(b"\n")
            if i >= 0:
                line, self.rbuf = self.rbuf[:i + 1], self.rbuf[i + 1:]
                return line
            self._fill(deadline)

    def read_exact(self, n, timeout=None, deadline=None):
        deadline = deadline or self._deadline(timeout)
        while len(self.rbuf) < n:
            self._fill(deadline)
        data, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return data

    def read_response(self, timeout=None):
        """One complete response (a line, its literals and continuation lines)."""
        deadline = self._deadline(timeout)
        r = Response()
        while True:
            line = self.read_line(deadline=deadline)
            r.parts.append(("line", line))
            m = _LIT_AT_END.search(line)
            if not m:
                break
            r.parts.append(("lit", self.read_exact(int(m.group(1)), deadline=deadline)))
        self.responses.append(r)
        self.transcript.append(("S", "resp", r))
        return r

    def read_until_closed(self, timeout=None):
        """Read responses until EOF; returns them. Raises Timeout if the server keeps the connection open."""
        deadline = self._deadline(timeout)
        out = []
        while True:
            try:
                out.append(self.read_response(timeout=max(0.0, deadline - time.monotonic())))
            except Closed:
                return out

    # --- commands ------------------------------------------------------

    def next_tag(self):
        self.ntags += 1
        tag = "%s%04d" % (self.tag_prefix, self.ntags)
        self.tag_numbers[tag] = self.ntags
        return tag

    def send_command(self, *parts, tag=None, timeout=None):
        """Send one command made of str/bytes pieces and Literal objects.

        Sync literals wait for the "+" (untagged responses seen meanwhile are
        kept for later readers). Returns (tag, responses consumed so far),
        where a tagged response in that list means the server refused the
        command before its literal.
        """
        tag = tag or self.next_tag()
        consumed = []
        wire = b""          # bytes not yet written
        buf = tag.encode() + b" "
        for p in parts:
            if isinstance(p, Literal):
                buf += p.marker() + b"\r\n"
                self.transcript.append(("C", "raw", buf))
                wire += buf
                buf = b""
                if p.sync:
                    self.send(wire, record=False)
                    wire = b""
                    while True:
                        r = self.read_response(timeout=timeout)
                        consumed.append(r)
                        if r.is_continuation:
                            break
                        if r.tag == tag:
                            return tag, consumed
                self.transcript.append(("C", "lit", p.data))
                wire += p.data
            else:
                buf += p if isinstance(p, bytes) else p.encode()
        buf += b"\r\n"
        self.transcript.append(("C", "raw", buf))
        self.send(wire + buf, record=False)
        return tag, consumed

    def wait_tagged(self, tag, timeout=None):
        """Read responses until the tagged reply for tag; return them all (tagged one last)."""
        deadline = self._deadline(timeout)
        out = []
        while True:
            r = self.read_response(timeout=max(0.0, deadline - time.monotonic()))
            out.append(r)
            if r.tag == tag:
                return out

    def wait_all_tagged(self, tags, timeout=None):
        """Read until every tag in tags got its tagged reply, in any order
        (a server may finish pipelined commands out of order)."""
        deadline = self._deadline(timeout)
        left = set(tags)
        out = []
        while left:
            r = self.read_response(timeout=max(0.0, deadline - time.monotonic()))
            out.append(r)
            left.discard(r.tag)
        return out

    def command(self, *parts, timeout=None):
        """Send a command and read until its tagged reply. Returns (tag, responses)."""
        tag, consumed = self.send_command(*parts, timeout=timeout)
        if consumed and consumed[-1].tag == tag:
            return tag, consumed
        return tag, consumed + self.wait_tagged(tag, timeout=timeout)

    def ok(self, *parts, timeout=None):
        """Like command() but raise IMAPError unless the tagged reply is OK."""
        tag, resps = self.command(*parts, timeout=timeout)
        if resps[-1].status != "OK":
            raise IMAPError("%s failed: %s" % (" ".join(p if isinstance(p, str) else "<lit>" for p in parts),
                                               resps[-1].first))
        return resps

    def login(self, user, password):
        return self.ok('LOGIN "%s" "%s"' % (user, password))

    def authenticate_plain(self, user, password, initial_response=True, timeout=None):
        """AUTHENTICATE PLAIN, with SASL-IR or answering the "+" continuation. Returns the responses."""
        cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        if initial_response:
            return self.command("AUTHENTICATE PLAIN " + cred.decode(), timeout=timeout)[1]
        tag = self.next_tag()
        self.send(tag + " AUTHENTICATE PLAIN\r\n")
        out = []
        while True:
            r = self.read_response(timeout=timeout)
            out.append(r)
            if r.tag == tag:
                return out
            if r.is_continuation:
                self.send(cred + b"\r\n")
                return out + self.wait_tagged(tag, timeout=timeout)

    # --- IDLE ----------------------------------------------------------

    def idle_start(self, timeout=None):
        """Send IDLE and wait for the "+" continuation; returns the tag."""
        tag = self.next_tag()
        self.send(tag + " IDLE\r\n")
        deadline = self._deadline(timeout)
        while True:
            r = self.read_response(timeout=max(0.0, deadline - time.monotonic()))
            if r.is_continuation:
                return tag
            if r.tag == tag:
                raise IMAPError("IDLE refused: %s" % r.first)

    def wait_match(self, regex, timeout=None):
        """Read responses until one's text matches regex; return it (Timeout otherwise)."""
        rx = re.compile(regex)
        deadline = self._deadline(timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no response matching %r" % regex)
            r = self.read_response(timeout=left)
            if rx.search(r.text):
                return r

    def idle_done(self, tag, timeout=None):
        """Send DONE and read until IDLE's tagged reply; returns the responses."""
        self.send(b"DONE\r\n")
        return self.wait_tagged(tag, timeout=timeout)


# --- transcripts ---------------------------------------------------------------

_RX_TAGGED = re.compile(r"^([A-Za-z]+\d{4}) ")
_RX_CAPA_RESP = re.compile(r"^(\* CAPABILITY )(.*)$", re.I)
_RX_CAPA_CODE = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.I)
_RX_UIDVALIDITY_CODE = re.compile(r"\[UIDVALIDITY \d+\]", re.I)
_RX_UIDVALIDITY_ITEM = re.compile(r"(\bUIDVALIDITY )\d+", re.I)
_RX_APPENDUID = re.compile(r"\[(APPENDUID|COPYUID) \d+ ", re.I)
_RX_INTERNALDATE = re.compile(r'(INTERNALDATE )"[^"]*"', re.I)
_RX_DOVECOT_TIMING = re.compile(r" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")


def escape_bytes(b):
    out = []
    for c in b:
        if 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def _literal_lines(prefix, data):
    lines = []
    pieces = data.split(b"\r\n")
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if last and piece == b"":
            break           # the literal ended with CRLF
        lines.append(prefix + escape_bytes(piece) + ("\\<no-crlf>" if last else ""))
    return lines


def normalize_line(s, tag_numbers, normalize):
    m = _RX_TAGGED.match(s)
    if m and m.group(1) in tag_numbers:
        s = "%d %s" % (tag_numbers[m.group(1)], s[m.end():])
    m = _RX_CAPA_RESP.match(s)
    if m:
        s = m.group(1) + " ".join(sorted(m.group(2).split(), key=str.upper))
    s = _RX_CAPA_CODE.sub(lambda m: "[CAPABILITY %s]" % " ".join(sorted(m.group(1).split(), key=str.upper)), s)
    if normalize:
        s = _RX_UIDVALIDITY_CODE.sub("[UIDVALIDITY <uidvalidity>]", s)
        s = _RX_UIDVALIDITY_ITEM.sub(r"\1<uidvalidity>", s)
        s = _RX_APPENDUID.sub(lambda m: "[%s <uidvalidity> " % m.group(1), s)
        s = _RX_INTERNALDATE.sub(r'\1"<date>"', s)
        s = _RX_DOVECOT_TIMING.sub(" (<timing> secs)", s)
    return s


def format_transcript(client, normalize=False, start=0):
    """Render client.transcript[start:] as text lines (see module doc)."""
    out = []
    tn = client.tag_numbers
    pipeline = None     # with normalize: server responses of the current pipeline
    for direction, kind, item in client.transcript[start:]:
        if direction == "X":
            if kind == "pipeline" and normalize:
                pipeline = []
            elif kind == "end" and pipeline is not None:
                # A server may run pipelined commands concurrently (Dovecot
                # does), so the order of their replies varies from run to
                # run even without a proxy: compare them as a sorted list.
                out.append("S: (replies to the pipelined commands above, sorted)")
                for block in sorted(pipeline):
                    out.extend(block)
                pipeline = None
            continue
        if direction == "C":
            if kind == "lit":
                out.extend(_literal_lines("C| ", item))
                continue
            # a raw send may hold several lines (pipelining) or end in {n}
            for piece in item.split(b"\r\n"):
                if piece:
                    out.append("C: " + normalize_line(escape_bytes(piece), tn, normalize))
            continue
        r = item
        if kind == "greeting":
            out.append("S: greeting " + escape_bytes(r.parts[0][1].rstrip(b"\r\n")))
            continue
        block = []
        for k, data in r.parts:
            if k == "line":
                txt = escape_bytes(data[:-2] if data.endswith(b"\r\n") else data)
                block.append("S: " + normalize_line(txt, tn, normalize))
            else:
                block.extend(_literal_lines("S| ", data))
        if pipeline is not None:
            pipeline.append(block)
        else:
            out.extend(block)
    return out


# --- scripts -------------------------------------------------------------------

_RX_LIT_REF = re.compile(r"\{\{(sync|nonsync):([A-Za-z0-9_.-]+)\}\}")


def parse_script(text, variables):
    """Return (steps, literal blocks). A step is (kind, payload)."""
    def expand(s):
        return re.sub(r"\$\{([A-Za-z0-9_]+)\}",
                      lambda m: variables[m.group(1)] if m.group(1) in variables
                      else _die("undefined variable %s" % m.group(1)), s)

    steps, blocks = [], {}
    lines = text.splitlines()
    i = 0
    pipeline = None
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if line.startswith("@literal "):
            words = line.split()
            name = words[1]
            eol = "noeol" not in words[2:]
            body = []
            while i < len(lines) and lines[i].rstrip("\r") != "@endliteral":
                body.append(expand(lines[i].rstrip("\r")))
                i += 1
            if i >= len(lines):
                _die("@literal %s without @endliteral" % name)
            i += 1
            blocks[name] = ("\r\n".join(body) + ("\r\n" if eol else "")).encode()
            continue
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        s = expand(s)
        if s == "@pipeline":
            pipeline = []
            continue
        if s == "@end":
            if pipeline is None:
                _die("@end without @pipeline")
            steps.append(("pipeline", pipeline))
            pipeline = None
            continue
        if s.startswith("@"):
            word, _, arg = s.partition(" ")
            if pipeline is not None:
                _die("%s inside @pipeline" % word)
            steps.append((word, arg))
            continue
        if pipeline is not None:
            pipeline.append(s)
        else:
            steps.append(("cmd", s))
    if pipeline is not None:
        _die("@pipeline without @end")
    return steps, blocks


def _die(msg):
    raise SystemExit("imapc: " + msg)


def command_parts(text, blocks):
    parts, pos = [], 0
    for m in _RX_LIT_REF.finditer(text):
        parts.append(text[pos:m.start()])
        if m.group(2) not in blocks:
            _die("unknown literal block %s" % m.group(2))
        parts.append(Literal(blocks[m.group(2)], sync=(m.group(1) == "sync")))
        pos = m.end()
    parts.append(text[pos:])
    return [p for p in parts if not (isinstance(p, str) and p == "")]


def run_script(client, text, variables=None, lmtp=None, log=None):
    """Run a script on a connected client. Returns the number of failed expectations (0)."""
    steps, blocks = parse_script(text, variables or {})
    idle_tag = None
    for kind, arg in steps:
        if kind == "cmd":
            parts = command_parts(arg, blocks)
            client.command(*parts)
        elif kind == "pipeline":
            tags = []
            client.transcript.append(("X", "pipeline", None))
            for c in arg:
                parts = command_parts(c, blocks)
                if any(isinstance(p, Literal) and p.sync for p in parts):
                    _die("sync literal inside @pipeline: %s" % c)
                tags.append(client.send_command(*parts)[0])
            client.wait_all_tagged(tags)
            client.transcript.append(("X", "end", None))
        elif kind == "@idle":
            idle_tag = client.idle_start()
        elif kind == "@done":
            if idle_tag is None:
                _die("@done without @idle")
            client.idle_done(idle_tag)
            idle_tag = None
        elif kind == "@wait":
            words = arg.rsplit(" ", 1)
            timeout = DEFAULT_TIMEOUT
            if len(words) == 2 and re.fullmatch(r"\d+(\.\d+)?", words[1]):
                arg, timeout = words[0], float(words[1])
            client.wait_match(arg, timeout=timeout)
        elif kind == "@deliver":
            if not lmtp:
                _die("@deliver needs --lmtp")
            user, _, subject = arg.partition(" ")
            deliver(lmtp, user, make_message(subject))
        elif kind == "@starttls":
            client.starttls()
        elif kind == "@compress":
            r = client.compress()
            if r.status != "OK":
                _die("COMPRESS refused: %s" % r.first)
        elif kind == "@raw":
            client.send(arg.encode().decode("unicode_escape").encode("latin-1"))
        elif kind == "@reconnect":
            client.connect()
        elif kind == "@authenticate-plain":
            words = arg.split()
            if len(words) < 2:
                _die("@authenticate-plain USER PASS [ir]")
            client.authenticate_plain(words[0], words[1], initial_response="ir" in words[2:])
        elif kind == "@closed":
            client.read_until_closed(timeout=float(arg) if arg else None)
        else:
            _die("unknown directive %s" % kind)
    return 0


# --- LMTP delivery ---------------------------------------------------------------

FIXED_DATE = "Mon, 24 Nov 2025 10:00:00 +0000"


def make_message(subject, body=None, sender="sender@example.org",
                 to="recipient@example.org", date=FIXED_DATE):
    """A deterministic RFC 5322 message (CRLF line ends) as bytes."""
    if body is None:
        body = "This is the body of the message \"%s\".\nSecond line.\n" % subject
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    mid = hashlib.sha1((subject + "\0" + body).encode()).hexdigest()[:20]
    head = ("From: Test Sender <%s>\r\n"
            "To: Test Recipient <%s>\r\n"
            "Subject: %s\r\n"
            "Date: %s\r\n"
            "Message-ID: <%s@pimap.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n") % (sender, to, subject, date, mid)
    return head.encode() + body.encode()


def deliver(lmtp, user, message, sender="sender@example.org", timeout=DEFAULT_TIMEOUT):
    """Deliver message (bytes) to user over LMTP at "host:port"."""
    host, _, port = lmtp.rpartition(":")
    if b"\r\n" not in message:
        message = message.replace(b"\n", b"\r\n")
    rcpt = user if "@" in user else user + "@localhost"
    with smtplib.LMTP(host, int(port), timeout=timeout) as s:
        refused = s.sendmail(sender, [rcpt], message)
        if refused:
            raise IMAPError("LMTP refused %r" % refused)


# --- command line ----------------------------------------------------------------

def _add_conn_args(p):
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true", help="implicit TLS")
    p.add_argument("--starttls", action="store_true", help="STARTTLS right after the greeting")
    p.add_argument("--cafile", help="verify the server against this CA")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    p.add_argument("--server-name", help="name to verify and send as SNI (default: --host)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="imapc.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a script and print the transcript")
    _add_conn_args(r)
    r.add_argument("--var", action="append", default=[], metavar="K=V")
    r.add_argument("--normalize", action="store_true",
                   help="normalize UIDVALIDITY, INTERNALDATE and Dovecot timings")
    r.add_argument("--lmtp", help="host:port for @deliver")
    r.add_argument("--output", "-o", help="write the transcript here (default stdout)")
    r.add_argument("script")
    d = sub.add_parser("deliver", help="deliver one message over LMTP")
    d.add_argument("--lmtp", required=True)
    d.add_argument("--to", required=True)
    d.add_argument("--subject")
    d.add_argument("--body")
    d.add_argument("--file")
    args = ap.parse_args(argv)

    if args.cmd == "deliver":
        if args.file:
            with open(args.file, "rb") as f:
                msg = f.read()
        elif args.subject is not None:
            msg = make_message(args.subject, args.body)
        else:
            ap.error("deliver needs --subject or --file")
        deliver(args.lmtp, args.to, msg)
        return 0

    variables = dict(v.split("=", 1) for v in args.var)
    with open(args.script) as f:
        text = f.read()
    c = Client(args.host, args.port, tls=args.tls, cafile=args.cafile,
               verify=not args.insecure, server_hostname=args.server_name,
               timeout=args.timeout)
    rc = 0
    try:
        c.connect()
        if args.starttls:
            c.starttls()
        run_script(c, text, variables, lmtp=args.lmtp)
    except (IMAPError, OSError) as e:
        print("imapc: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        rc = 1
    finally:
        c.close()
        lines = format_transcript(c, normalize=args.normalize)
        if args.output:
            with open(args.output, "w") as f:
                f.write("\n".join(lines) + "\n")
        else:
            print("\n".join(lines))
    return rc


if __name__ == "__main__":
    sys.exit(main())
