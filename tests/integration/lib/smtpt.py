"""smtpt.py - SMTP clients for the tests of pimap-proxy's SMTP listener
(t_smtp*.sh): one transaction with smtplib that returns the server's
codes instead of raising, and a raw line-level client for bad input."""
import os
import socket
import smtplib
import ssl
import time

E = os.environ
PASS = E.get("DOVECOT_PASS", "secret")


class Result:
    def __init__(self, stage, code, text):
        self.stage, self.code, self.text = stage, code, text

    def __repr__(self):
        return "%s %d %s" % (self.stage, self.code, self.text)


def connect(port, mode="starttls", cafile=None, timeout=60):
    """An EHLOed smtplib client: mode starttls (verified against cafile), tls (implicit) or plain."""
    ctx = ssl.create_default_context(cafile=cafile) if mode != "plain" else None
    if mode == "tls":
        s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    s.ehlo("client.test")
    if mode == "starttls":
        s.starttls(context=ctx)
        s.ehlo("client.test")
    return s


def send(port, user, msg, rcpts, frm=None, password=PASS, mode="starttls", cafile=None, timeout=60):
    """AUTH, MAIL, RCPT..., DATA; the Result of the first step that is not 2xx/3xx, else DATA's."""
    s = connect(port, mode, cafile, timeout)
    try:
        try:
            code, text = s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            return Result("AUTH", e.smtp_code, e.smtp_error.decode())
        code, text = s.mail(frm or "%s@mail.test" % user)
        if code >= 400:
            return Result("MAIL", code, text.decode())
        for r in rcpts:
            code, text = s.rcpt(r)
            if code >= 400:
                return Result("RCPT", code, text.decode())
        code, text = s.data(msg)
        return Result("DATA", code, text.decode())
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


class Raw:
    """A line-level SMTP client: send bytes, read replies (multi-line ones whole)."""

    def __init__(self, port, timeout=15):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """(code, [lines]) of the next reply; (None, []) if the server closed."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    return None, lines
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True once the server has closed the connection (everything it sent is read)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.s.close()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)
