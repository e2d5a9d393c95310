"""Helpers shared by the Python parts of the t_gw_*.sh tests."""
import os, re, sys, time, socket, base64, zlib, select
from imapc import Client, Closed, Timeout, Literal, IMAPError, deliver, make_message

E = os.environ
HOST = "127.0.0.1"
CA = E["CA"]
PASS = E["DOVECOT_PASS"]
LMTP = "127.0.0.1:" + E["DOVECOT_LMTP"]
_step = [""]


class StepFailed(Exception):
    """A check failed; the current step is abandoned, the next one runs."""


def _excepthook(t, v, tb):
    import traceback
    traceback.print_exception(t, v, tb)
    print("FAIL (%s): unexpected %s: %s" % (_step[0], t.__name__, v), file=sys.stderr)


sys.excepthook = _excepthook


def STEP(name):
    _step[0] = name
    print("---- %s" % name, file=sys.stderr)


def check(cond, what, quiet=False):
    """A check: print it (unless quiet and it passed); on failure abandon the step."""
    if not cond:
        print("FAIL (%s): %s" % (_step[0], what), file=sys.stderr)
        raise StepFailed(what)
    if not quiet:
        print("ok   (%s): %s" % (_step[0], what[:300]), file=sys.stderr)


STEPS = []


def step(name):
    """Decorator: register a step. run_steps() runs them in order; a failed
    step is reported and the next one still runs (later steps may then fail
    as a consequence); the script exits 1 if any step failed."""
    def deco(f):
        STEPS.append((name, f))
        return f
    return deco


def run_steps():
    import traceback
    failed = []
    for name, f in STEPS:
        STEP(name)
        try:
            f()
        except StepFailed:
            failed.append(name)
        except (IMAPError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, zlib.error) as e:
            traceback.print_exc()
            print("FAIL (%s): unexpected %s: %s" % (name, type(e).__name__, e), file=sys.stderr)
            failed.append(name)
    del STEPS[:]
    if failed:
        print("FAILED STEPS (%d of this part): %s" % (len(failed), "; ".join(failed)), file=sys.stderr)
        sys.exit(1)


def gw_port():
    return int(E["GW_PORT"])


def gw(port=None, tls=True, timeout=10, source=None):
    """A connection to the gateway (implicit TLS on GW_PORT by default), greeting read.
    source: the local address to come from (another loopback address, 127.0.0.2, is another client)."""
    c = Client(HOST, port or gw_port(), tls=tls, cafile=CA, timeout=timeout)
    c.source = source
    g = c.connect()
    check(g.status == "OK" and g.tag == "*", "gateway greeting %r" % g.first, quiet=True)
    return c


def pimap_device(user, device, prefs=(), source=None):
    """A P-IMAP connection of user#P<device> (from source), logged in, with prefs
    ((name, value) pairs) set by XSETPIMAPPREF."""
    c = gw(source=source)
    resps = login(c, "%s#P%s" % (user, device), PASS)
    check(resps[-1].status == "OK", "login %s#P%s%s" % (user, device, " from " + source if source else ""), quiet=True)
    for k, v in prefs:
        c.ok("XSETPIMAPPREF %s %s" % (k, v))
    return c


def park(c):
    """SELECT INBOX and go away without LOGOUT: the session's store connection is parked."""
    c.ok("SELECT INBOX")
    close_detached(c)


def store(user, pw=None, timeout=10):
    """A direct connection to Dovecot (plain port), logged in."""
    c = Client(HOST, int(E["DOVECOT_IMAP"]), timeout=timeout, tag_prefix="D")
    c.connect()
    c.login(user, pw or PASS)
    return c


def login(c, user, pw, how="login"):
    """LOGIN / AUTHENTICATE PLAIN with (ir) or without (noir) SASL-IR; all responses, tagged last."""
    if how == "login":
        return c.command('LOGIN "%s" "%s"' % (user, pw))[1]
    if how == "ir":
        return c.authenticate_plain(user, pw, initial_response=True)
    if how == "noir":
        return c.authenticate_plain(user, pw, initial_response=False)
    raise ValueError(how)


def firsts(resps):
    return [r.first for r in resps]


RX_SESSIONID = re.compile(r"^\* SESSIONID ([0-9A-Fa-f]+)$")


def session_lines(resps):
    """The P-IMAP session responses among resps (SESSIONID/SESSION/FOLDER/RESYNC), in order."""
    return [r.first for r in resps if r.tag == "*" and re.match(r"\* (SESSIONID|SESSION|FOLDER|RESYNC)\b", r.first, re.I)]


def session_id(resps):
    ids = [RX_SESSIONID.match(r.first).group(1) for r in resps if RX_SESSIONID.match(r.first)]
    return ids


def fresh_session(resps, what):
    """A successful P-IMAP login that opened a new session: exactly one
    '* SESSIONID <32 hex>' and no SESSION/FOLDER/RESYNC line. Returns the id."""
    t = resps[-1]
    check(t.status == "OK", "%s: tagged OK (%r)" % (what, t.first), quiet=True)
    sl = session_lines(resps)
    ids = session_id(resps)
    check(len(ids) == 1 and re.fullmatch(r"[0-9a-fA-F]{32}", ids[0]) and sl == ["* SESSIONID " + ids[0]],
          "%s: a new session, only '* SESSIONID <32 hex>' (got %r)" % (what, sl))
    return ids[0]


def exists_of(resps):
    for r in resps:
        m = re.match(r"^\* (\d+) EXISTS$", r.first)
        if m:
            return int(m.group(1))
    return None


def quiet(c, seconds):
    """Observe the connection for `seconds`: return every response that arrived (want none)."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        try:
            got.append(c.read_response(timeout=left))
        except Timeout:
            return got


# --- /proc/net/tcp -------------------------------------------------------------

def _hexaddr(port):
    return "0100007F:%04X" % port


def tcp_rows():
    rows = []
    for fn in ("/proc/net/tcp",):
        with open(fn) as f:
            next(f)
            for line in f:
                w = line.split()
                txq, rxq = w[4].split(":")
                rows.append({"local": w[1], "remote": w[2], "state": w[3],
                             "txq": int(txq, 16), "rxq": int(rxq, 16), "inode": w[9]})
    return rows


def wait_released(port, client_port, timeout=10):
    """Wait until the server side (127.0.0.1:port) of the connection from
    client_port is closed by the server (no ESTABLISHED/CLOSE_WAIT row left)."""
    deadline = time.monotonic() + timeout
    while True:
        live = [r for r in tcp_rows() if r["local"] == _hexaddr(port) and r["remote"] == _hexaddr(client_port)
                and r["state"] in ("01", "08")]
        if not live:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def close_detached(c, port=None):
    """Close c without LOGOUT and wait until the gateway has closed its side."""
    cp = c.sock.getsockname()[1]
    c.close()
    check(wait_released(port or gw_port(), cp), "the gateway closed its side of the connection (port %d)" % cp)


# --- the gateway's log -----------------------------------------------------------

def log_count(path, rx):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if re.search(rx, line))
    except FileNotFoundError:
        return 0


def wait_log_count(path, rx, n, timeout=15):
    """Wait until the log has at least n lines matching rx; return the count."""
    deadline = time.monotonic() + timeout
    while True:
        k = log_count(path, rx)
        if k >= n or time.monotonic() > deadline:
            return k
        time.sleep(0.05)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st.rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def gw_alive():
    return pid_alive(int(E["GW_PID"]))


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --- an IMAP value reader (for XGETPIMAPPREF answers) -------------------------

class Q(str):
    """A quoted string (as opposed to an atom)."""


def parse_values(s):
    """Parse a sequence of IMAP values: atoms (str; a fetch attribute such as
    BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10> is one atom), quoted strings (Q)
    and parenthesised lists (list). Raises ValueError on bad syntax."""
    pos = [0]

    def skip():
        while pos[0] < len(s) and s[pos[0]] == " ":
            pos[0] += 1

    def value():
        i = pos[0]
        ch = s[i]
        if ch == "(":
            pos[0] += 1
            out = []
            while True:
                skip()
                if pos[0] >= len(s):
                    raise ValueError("unbalanced ( in %r" % s)
                if s[pos[0]] == ")":
                    pos[0] += 1
                    return out
                out.append(value())
        if ch == '"':
            j = i + 1
            buf = []
            while j < len(s) and s[j] != '"':
                if s[j] == "\\" and j + 1 < len(s):
                    j += 1
                buf.append(s[j])
                j += 1
            if j >= len(s):
                raise ValueError("unterminated string in %r" % s)
            pos[0] = j + 1
            return Q("".join(buf))
        j = i
        depth = 0
        while j < len(s):
            c = s[j]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif depth == 0 and c in " )(":
                if c == "(" and j > i:
                    raise ValueError("( inside an atom in %r" % s)
                break
            j += 1
        if j == i:
            raise ValueError("empty value at %d in %r" % (i, s))
        pos[0] = j
        return s[i:j]

    out = []
    while True:
        skip()
        if pos[0] >= len(s):
            return out
        out.append(value())
