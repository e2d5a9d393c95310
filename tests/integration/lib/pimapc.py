#!/usr/bin/env python3
"""pimapc - a scripted P-IMAP client for pimap-gateway's integration tests.

Standard library only; builds on imapc (the plain scripted IMAP client).
The rules it checks are those of docs/PROTOCOL.md ("the profile").

  PimapClient(imapc.Client)
      pimap_login(user, device, password, mech="LOGIN"|"PLAIN"|"PLAIN-IR",
                  domain=None, view=None) -> LoginResult
          logs in as user#P<device>[@domain] and parses the session
          responses of PROTOCOL.md section 2 (SESSION, FOLDER, pending
          events, RESYNC, SESSIONID). With view= (the client's model of the
          folder when its connection went away), the pending events are
          applied to it, in order, as they were read.
      select_view(mailbox, examine=False) -> View
          SELECT (or EXAMINE), then UID FETCH 1:* (FLAGS): a complete model.
      reselect(view, examine=False) -> responses
          SELECT a folder the client has a model of: the SELECT data and the
          pending events after it are applied to that model.
      drop(timeout)
          end the connection the way a client that loses its network does:
          no LOGOUT, no TLS close_notify, just a TCP FIN; then wait (bounded)
          until the server has closed its side, i.e. has processed the EOF.
      wait_untagged(regex, timeout), collect_until(pred, timeout): deadlines.
      While client.view is set, every untagged response read is applied to it
      (EXISTS, EXPUNGE, FETCH); an impossible one raises ViewError at once.

  View: the client's model of one selected folder: ordered UIDs and the
      flags of each (\\Recent ignored). apply(response), complete(client),
      resync(client), uids(), flags(), snapshot() (list of (uid, flags)),
      to_json()/from_json().

  store_truth(host, port, user, password, mailbox, tls=True, cafile=None)
      logs in to the store directly and returns [(uid, sorted flags)], to
      compare with View.snapshot().

  StoreClient: a direct store connection with helpers (create, append,
      store flags, UID EXPUNGE) to change a mailbox behind the gateway.

  check_event_order(events, count_before) -> list of problems: the order
      rules of PROTOCOL.md for pending events (EXPUNGE highest first, then
      EXISTS counting up by one, then FETCH).

Command line (handy when debugging a gateway by hand):

  pimapc.py login --port P [--cafile CA | --insecure] --user U --device D
                  --password PW [--mech LOGIN|PLAIN|PLAIN-IR] [--select MBOX]
  pimapc.py truth --port P [--cafile CA | --insecure] [--plain] --user U
                  --password PW [--mailbox M]
"""

import argparse
import json
import re
import socket
import sys
import time

import imapc
from imapc import IMAPError, Timeout, Closed, Response, Literal  # noqa: F401 (re-exported)

__all__ = ["PimapClient", "LoginResult", "View", "ViewError", "StoreClient", "store_truth",
           "check_event_order", "parse_tokens", "parse_fetch", "untagged_kind", "IMAPError",
           "Timeout", "Closed", "DropError"]


class ViewError(IMAPError):
    """A response that cannot apply to the client's model (EXPUNGE of a
    message that is not there, a UID that changed, EXISTS going down...)."""


class DropError(IMAPError):
    """The server did not close its side after the client went away."""


# --- tokens ---------------------------------------------------------------------

class Atom(str):
    """An IMAP atom (NIL, flags, numbers, keywords...)."""


class QStr(str):
    """A quoted string, unescaped."""


def _tokenize_line(line, out):
    i, n = 0, len(line)
    while i < n:
        c = line[i:i + 1]
        if c == b" ":
            i += 1
        elif c in (b"(", b")"):
            out.append(c.decode())
            i += 1
        elif c == b'"':
            i += 1
            buf = bytearray()
            while True:
                if i >= n:
                    raise IMAPError("unterminated quoted string in %r" % line)
                ch = line[i]
                if ch == 0x5C and i + 1 < n:      # backslash escape
                    buf.append(line[i + 1])
                    i += 2
                elif ch == 0x22:
                    i += 1
                    break
                else:
                    buf.append(ch)
                    i += 1
            out.append(QStr(buf.decode("utf-8", "replace")))
        else:
            start = i
            depth = 0
            while i < n:
                ch = line[i:i + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth = max(0, depth - 1)
                elif depth == 0 and ch in (b" ", b"(", b")"):
                    break
                i += 1
            out.append(Atom(line[start:i].decode("utf-8", "replace")))


def parse_tokens(resp, skip=0):
    """The tokens of a response (imapc.Response or bytes) as a nested list:
    Atom/QStr strings, bytes for literals, lists for parenthesised lists.
    skip: number of leading top-level tokens to drop ("*", "3", "FETCH")."""
    flat = []
    if isinstance(resp, (bytes, bytearray)):
        parts = [("line", bytes(resp))]
    else:
        parts = resp.parts
    for kind, data in parts:
        if kind == "lit":
            flat.append(bytes(data))
            continue
        line = data.rstrip(b"\r\n")
        m = re.search(rb"~?\{\d+\+?\}\Z", line)
        if m:
            line = line[:m.start()]
        _tokenize_line(line, flat)
    stack = [[]]
    for t in flat:
        if t == "(" and not isinstance(t, QStr):
            stack.append([])
        elif t == ")" and not isinstance(t, QStr):
            if len(stack) == 1:
                raise IMAPError("unbalanced ')' in %r" % getattr(resp, "raw", resp))
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(t)
    if len(stack) != 1:
        raise IMAPError("unbalanced '(' in %r" % getattr(resp, "raw", resp))
    return stack[0][skip:]


def astring(tok):
    """An astring token (atom, quoted or literal) as str."""
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "replace")
    if isinstance(tok, list):
        raise IMAPError("list where a string was expected: %r" % tok)
    return str(tok)


def untagged_kind(resp):
    """(number or None, KEYWORD upper-cased) of an untagged response, or
    (None, None) for a tagged response or a continuation."""
    first = resp.first
    if not first.startswith("* "):
        return None, None
    words = first.split(" ", 3)
    if len(words) >= 3 and words[1].isdigit():
        return int(words[1]), words[2].upper()
    if len(words) >= 2:
        return None, words[1].upper()
    return None, ""


def parse_fetch(resp):
    """(seq, {ITEM: value}) of a "* n FETCH (...)" response; item names
    upper-cased, UID and MODSEQ as int, FLAGS as a list of str."""
    toks = parse_tokens(resp)
    if len(toks) < 4 or toks[0] != "*" or not str(toks[1]).isdigit() or str(toks[2]).upper() != "FETCH" \
            or not isinstance(toks[3], list):
        raise IMAPError("not a FETCH response: %r" % resp.first)
    items = toks[3]
    if len(items) % 2:
        raise IMAPError("odd number of FETCH items: %r" % resp.first)
    d = {}
    for k, v in zip(items[0::2], items[1::2]):
        key = str(k).upper()
        if key == "UID":
            v = int(v)
        elif key == "MODSEQ":
            v = int(v[0]) if isinstance(v, list) else int(v)
        elif key == "FLAGS":
            if not isinstance(v, list):
                raise IMAPError("FLAGS is not a list: %r" % resp.first)
            v = [str(f) for f in v]
        d[key] = v
    return int(toks[1]), d


def norm_flags(flags):
    """Sorted tuple of flags without \\Recent (session-specific)."""
    return tuple(sorted(f for f in flags if f.lower() != "\\recent"))


_RX_CODE = re.compile(r"^\* (?:OK|NO|BAD) \[([A-Za-z-]+)(?: ([^\]]*))?\]", re.I)


def seqset(nums):
    """A compact sequence set for sorted ints: [1,2,3,7] -> '1:3,7'."""
    out = []
    nums = sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else "%d:%d" % (nums[i], nums[j]))
        i = j + 1
    return ",".join(out)


# --- the client's model of a folder -----------------------------------------------

class _Entry:
    __slots__ = ("uid", "flags")

    def __init__(self, uid=None, flags=None):
        self.uid = uid
        self.flags = flags

    def __repr__(self):
        return "(%r, %r)" % (self.uid, self.flags)


class View:
    """The client's model of one folder: message n (1-based) is entries[n-1],
    with its UID and flags (None while not known yet, after an EXISTS)."""

    def __init__(self, mailbox=None):
        self.mailbox = mailbox
        self.entries = []
        self.uidvalidity = None
        self.uidnext = None
        self.highestmodseq = None
        self.readonly = None
        self.last_exists = None     # the n of the last "* n EXISTS" applied
        self.log = []               # (first line) of every response applied

    # -- reading ----------------------------------------------------------

    def __len__(self):
        return len(self.entries)

    def uids(self):
        return [e.uid for e in self.entries]

    def flags(self):
        """{uid: sorted flags tuple}."""
        return {e.uid: e.flags for e in self.entries}

    def snapshot(self):
        """[(uid, sorted flags)] in sequence order, comparable to store_truth()."""
        return [(e.uid, e.flags) for e in self.entries]

    def unknown(self):
        """Sequence numbers whose UID or flags are not known yet."""
        return [i + 1 for i, e in enumerate(self.entries) if e.uid is None or e.flags is None]

    def copy(self):
        return View.from_json(self.to_json())

    def to_json(self):
        return json.dumps({"mailbox": self.mailbox, "uidvalidity": self.uidvalidity,
                           "uidnext": self.uidnext, "highestmodseq": self.highestmodseq,
                           "readonly": self.readonly,
                           "entries": [[e.uid, list(e.flags) if e.flags is not None else None]
                                       for e in self.entries]})

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        v = cls(d["mailbox"])
        v.uidvalidity, v.uidnext = d["uidvalidity"], d["uidnext"]
        v.highestmodseq, v.readonly = d["highestmodseq"], d["readonly"]
        v.entries = [_Entry(u, tuple(f) if f is not None else None) for u, f in d["entries"]]
        return v

    def __repr__(self):
        return "<View %s %r>" % (self.mailbox, self.snapshot())

    # -- updating ---------------------------------------------------------

    def _check_uid_order(self, i):
        uid = self.entries[i].uid
        for j in range(i - 1, -1, -1):
            if self.entries[j].uid is not None:
                if self.entries[j].uid >= uid:
                    raise ViewError("UID %d at seq %d is not above UID %d at seq %d"
                                    % (uid, i + 1, self.entries[j].uid, j + 1))
                break
        for j in range(i + 1, len(self.entries)):
            if self.entries[j].uid is not None:
                if self.entries[j].uid <= uid:
                    raise ViewError("UID %d at seq %d is not below UID %d at seq %d"
                                    % (uid, i + 1, self.entries[j].uid, j + 1))
                break

    def apply(self, resp):
        """Apply one response to the model. Returns True if it was a message
        event (EXISTS, EXPUNGE, FETCH). Raises ViewError if it cannot apply."""
        first = resp.first
        if not first.startswith("* "):
            return False
        n, kind = untagged_kind(resp)
        if n is not None:
            if kind == "EXISTS":
                if n < len(self.entries):
                    raise ViewError("%r: EXISTS below the %d messages the client has (no EXPUNGE for them)"
                                    % (first, len(self.entries)))
                while len(self.entries) < n:
                    self.entries.append(_Entry())
                self.last_exists = n
            elif kind == "EXPUNGE":
                if not 1 <= n <= len(self.entries):
                    raise ViewError("%r: no message %d, the client has %d" % (first, n, len(self.entries)))
                del self.entries[n - 1]
            elif kind == "FETCH":
                if not 1 <= n <= len(self.entries):
                    raise ViewError("%r: no message %d, the client has %d" % (first, n, len(self.entries)))
                _, items = parse_fetch(resp)
                e = self.entries[n - 1]
                if "UID" in items:
                    if e.uid is None:
                        e.uid = items["UID"]
                        self._check_uid_order(n - 1)
                    elif e.uid != items["UID"]:
                        raise ViewError("%r: message %d has UID %d in the client's view" % (first, n, e.uid))
                if "FLAGS" in items:
                    e.flags = norm_flags(items["FLAGS"])
            else:
                return False
            self.log.append(first)
            return True
        if kind == "VANISHED":
            raise ViewError("%r: VANISHED (the profile reports expunges as EXPUNGE)" % first)
        m = _RX_CODE.match(first)
        if m:
            code, arg = m.group(1).upper(), m.group(2)
            try:
                if code == "UIDVALIDITY":
                    self.uidvalidity = int(arg)
                elif code == "UIDNEXT":
                    self.uidnext = int(arg)
                elif code == "HIGHESTMODSEQ":
                    self.highestmodseq = int(arg)
            except (TypeError, ValueError):
                raise ViewError("bad response code in %r" % first)
        return False

    def complete(self, client, timeout=None):
        """Learn the UID and flags of every message the model lacks them for
        (after EXISTS) with one FETCH <set> (UID FLAGS). Returns the responses."""
        todo = self.unknown()
        if not todo:
            return []
        resps = client.ok("FETCH %s (UID FLAGS)" % seqset(todo), timeout=timeout)
        if client.view is not self:
            for r in resps:
                self.apply(r)
        left = self.unknown()
        if left:
            raise ViewError("FETCH %s (UID FLAGS) left messages %s unknown" % (seqset(todo), left))
        return resps

    def resync(self, client, timeout=None):
        """Forget the model and rebuild it with UID FETCH 1:* (FLAGS) (the
        answer to RESYNC). Returns the responses."""
        saved, client.view = client.view, None
        try:
            resps = client.ok("UID FETCH 1:* (FLAGS)", timeout=timeout)
        finally:
            client.view = saved
        count = 0
        got = {}
        for r in resps:
            n, kind = untagged_kind(r)
            if kind == "EXISTS":
                count = max(count, n)
            elif kind == "EXPUNGE":
                raise ViewError("EXPUNGE during the resync fetch: %r" % r.first)
            elif kind == "FETCH":
                seq, items = parse_fetch(r)
                if "UID" not in items or "FLAGS" not in items:
                    raise ViewError("resync FETCH without UID or FLAGS: %r" % r.first)
                got[seq] = (items["UID"], norm_flags(items["FLAGS"]))
        count = max([count] + list(got))
        missing = [i for i in range(1, count + 1) if i not in got]
        if missing:
            raise ViewError("UID FETCH 1:* (FLAGS) gave no data for messages %s of %d" % (missing, count))
        self.entries = [_Entry(*got[i]) for i in range(1, count + 1)]
        for i in range(len(self.entries)):
            self._check_uid_order(i)
        return resps


# --- login results -------------------------------------------------------------------

_RX_SESSIONID = re.compile(r"^[0-9A-Fa-f]{32}$")


class LoginResult:
    """What a P-IMAP login answered (PROTOCOL.md section 2).

    session_state  None (new session), "AUTHENTICATED" or "SELECTED"
    folder         the mailbox of "* FOLDER", or None
    resync         a "* RESYNC" was sent
    session_id     the id of "* SESSIONID", or None
    events         the untagged responses between FOLDER (or SESSION) and
                   SESSIONID, in order (RESYNC excluded)
    status, tag    of the tagged reply; tagged: that Response
    responses      every response read, continuations included
    untagged       the untagged ones
    capabilities   from an untagged CAPABILITY or a [CAPABILITY] code
    problems       every departure from the profile's grammar, as text
    lines          the raw first lines, for messages
    """

    def __init__(self, responses):
        self.responses = responses
        self.tagged = responses[-1]
        self.tag = self.tagged.tag
        self.status = self.tagged.status
        self.untagged = [r for r in responses[:-1] if r.first.startswith("* ")]
        self.lines = [r.first for r in responses]
        self.session_state = None
        self.folder = None
        self.resync = False
        self.session_id = None
        self.events = []
        self.capabilities = []
        self.problems = []
        self.view_error = None
        self._parse()

    @property
    def raw_lines(self):
        return self.lines

    def exists_numbers(self):
        return [n for n, k in (untagged_kind(r) for r in self.events) if k == "EXISTS"]

    def event_kinds(self):
        return [untagged_kind(r)[1] for r in self.events]

    def _parse(self):
        m = re.search(r"\[CAPABILITY ([^\]]*)\]", self.tagged.first, re.I)
        if m:
            self.capabilities = m.group(1).split()
        if self.status != "OK":
            return
        rs = list(self.untagged)
        # An untagged CAPABILITY is harmless before the session responses.
        while rs and untagged_kind(rs[0])[1] == "CAPABILITY":
            self.capabilities = rs.pop(0).first.split()[2:]
        p = self.problems

        def word(i):
            return untagged_kind(rs[i])[1] if i < len(rs) else None

        def toks(i):
            return parse_tokens(rs[i])

        i = 0
        k = word(0)
        if k == "SESSION":
            t = toks(0)
            if len(t) != 3 or str(t[2]).upper() not in ("AUTHENTICATED", "SELECTED"):
                p.append("bad SESSION response %r" % rs[0].first)
                return
            self.session_state = str(t[2]).upper()
            i = 1
            if self.session_state == "SELECTED":
                if word(1) != "FOLDER":
                    p.append("SESSION SELECTED not followed by FOLDER but by %r"
                             % (rs[1].first if len(rs) > 1 else self.tagged.first))
                    return
                t = toks(1)
                if len(t) != 3:
                    p.append("bad FOLDER response %r" % rs[1].first)
                    return
                self.folder = astring(t[2])
                i = 2
                if word(i) == "RESYNC":
                    self.resync = True
                    if len(toks(i)) != 2:
                        p.append("bad RESYNC response %r" % rs[i].first)
                    i += 1
                while i < len(rs) and word(i) != "SESSIONID":
                    n, kk = untagged_kind(rs[i])
                    self.events.append(rs[i])
                    if n is None or kk not in ("EXISTS", "EXPUNGE", "FETCH"):
                        p.append("not a pending event (EXPUNGE, EXISTS, FETCH): %r" % rs[i].first)
                    elif self.resync:
                        p.append("event after RESYNC: %r" % rs[i].first)
                    i += 1
        elif k == "RESYNC":
            self.resync = True
            if len(toks(0)) != 2:
                p.append("bad RESYNC response %r" % rs[0].first)
            i = 1
        if word(i) != "SESSIONID":
            p.append("expected * SESSIONID, got %r" % (rs[i].first if i < len(rs) else self.tagged.first))
            return
        t = toks(i)
        if len(t) != 3 or not isinstance(t[2], str) or not _RX_SESSIONID.match(str(t[2])):
            p.append("bad SESSIONID response %r (want 32 hex digits)" % rs[i].first)
        else:
            self.session_id = str(t[2])
        for r in rs[i + 1:]:
            p.append("untagged response after SESSIONID: %r" % r.first)

    def describe(self):
        return "\n".join("    S: " + l for l in self.lines)

    def __repr__(self):
        return ("<LoginResult %s state=%s folder=%r resync=%s id=%s events=%r problems=%r>"
                % (self.status, self.session_state, self.folder, self.resync, self.session_id,
                   [r.first for r in self.events], self.problems))


def check_event_order(events, count_before):
    """Problems with the order rules of pending events, starting from a view of
    count_before messages: EXPUNGEs first, highest number first, each valid
    at the moment read; then EXISTS, each exactly one above the current
    count; then FETCH. Returns a list of strings (empty: fine)."""
    problems = []
    phase = 0       # 0 expunge, 1 exists, 2 fetch
    count = count_before
    last_expunge = None
    for r in events:
        n, kind = untagged_kind(r)
        if kind == "EXPUNGE":
            if phase > 0:
                problems.append("EXPUNGE after EXISTS/FETCH: %r" % r.first)
            if not 1 <= n <= count:
                problems.append("%r: no such message (count %d)" % (r.first, count))
            if last_expunge is not None and n >= last_expunge:
                problems.append("%r: EXPUNGEs not highest number first (previous %d)" % (r.first, last_expunge))
            last_expunge = n
            count -= 1
        elif kind == "EXISTS":
            if phase > 1:
                problems.append("EXISTS after FETCH: %r" % r.first)
            phase = max(phase, 1)
            if n != count + 1:
                problems.append("%r: want * %d EXISTS (one new message at a time)" % (r.first, count + 1))
            count = max(count, n)
        elif kind == "FETCH":
            # With PIMAP_INBAND_NEW_FORMAT new messages come as FETCH (UID ..)
            # in the EXISTS phase; a FETCH for a message above the count is such one.
            if n == count + 1 and phase <= 1:
                phase = 1
                count += 1
                continue
            phase = 2
            if not 1 <= n <= count:
                problems.append("%r: no such message (count %d)" % (r.first, count))
        else:
            problems.append("not an event: %r" % r.first)
    return problems


# --- the client -------------------------------------------------------------------------

def _quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


class PimapClient(imapc.Client):
    """imapc.Client plus P-IMAP login, a folder model and bounded waits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.view = None
        self.login_result = None

    def read_response(self, timeout=None):
        r = super().read_response(timeout=timeout)
        if self.view is not None:
            self.view.apply(r)
        return r

    # -- login --------------------------------------------------------------

    def login_name(self, user, device, domain=None):
        return "%s#P%s%s" % (user, device, "@" + domain if domain else "")

    def raw_login(self, name, password, mech="LOGIN", timeout=None):
        """Log in with an arbitrary name; returns all responses (tagged last)."""
        mech = mech.upper()
        if mech == "LOGIN":
            return self.command("LOGIN %s %s" % (_quote(name), _quote(password)), timeout=timeout)[1]
        if mech in ("PLAIN", "PLAIN-IR"):
            return self.authenticate_plain(name, password, initial_response=(mech == "PLAIN-IR"),
                                           timeout=timeout)
        raise ValueError("mech %r" % mech)

    def pimap_login(self, user, device, password, mech="LOGIN", domain=None, view=None, timeout=None):
        """Log in as user#P<device>[@domain]; parse the session responses.

        With view (the model the client had when its previous connection went
        away): when the session resumes SELECTED on view.mailbox without
        RESYNC, the pending events are applied to it in order; an event that
        cannot apply is recorded in result.view_error (and in problems). The
        view becomes self.view when the connection is SELECTED on its folder.
        """
        saved, self.view = self.view, None
        try:
            resps = self.raw_login(self.login_name(user, device, domain), password, mech, timeout)
        finally:
            self.view = saved
        res = LoginResult(resps)
        self.login_result = res
        self.view = None
        if res.status == "OK" and res.session_state == "SELECTED" and view is not None:
            if res.folder != view.mailbox:
                res.problems.append("resumed on %r, the client's view is of %r" % (res.folder, view.mailbox))
            elif not res.resync:
                for r in res.events:
                    try:
                        view.apply(r)
                    except ViewError as e:
                        res.view_error = str(e)
                        res.problems.append("event cannot apply to the client's view: %s" % e)
                        break
                self.view = view
            else:
                self.view = view
        return res

    # -- folders ----------------------------------------------------------------

    def select_view(self, mailbox, examine=False, timeout=None):
        """SELECT/EXAMINE mailbox and build a complete model of it."""
        v = View(mailbox)
        self.view = v
        resps = self.ok("%s %s" % ("EXAMINE" if examine else "SELECT", _quote(mailbox)), timeout=timeout)
        v.select_responses = resps
        v.readonly = "[READ-ONLY]" in resps[-1].first.upper()
        if len(v):
            self.ok("UID FETCH 1:* (FLAGS)", timeout=timeout)
        left = v.unknown()
        if left:
            raise ViewError("UID FETCH 1:* (FLAGS) left messages %s of %s unknown" % (left, mailbox))
        return v

    def reselect(self, view, examine=False, timeout=None):
        """SELECT a folder again with the model the client kept of it; the
        SELECT data and any events are applied to that model (which becomes
        self.view). Returns the responses (tagged last)."""
        self.view = view
        tag, resps = self.command("%s %s" % ("EXAMINE" if examine else "SELECT", _quote(view.mailbox)),
                                  timeout=timeout)
        if resps[-1].status != "OK":
            self.view = None
            raise IMAPError("SELECT %s failed: %s" % (view.mailbox, resps[-1].first))
        view.select_responses = resps
        return resps

    def unselect_view(self):
        """Stop applying responses to the current model (after CLOSE/UNSELECT)."""
        v, self.view = self.view, None
        return v

    # -- waiting --------------------------------------------------------------

    def collect_until(self, pred, timeout=None):
        """Read responses until pred(response) is true; return all of them
        (the matching one last). Timeout (with what was read) otherwise."""
        deadline = self._deadline(timeout)
        out = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("condition not met; read %r" % [r.first for r in out])
            try:
                r = self.read_response(timeout=left)
            except Timeout:
                raise Timeout("condition not met; read %r" % [r.first for r in out])
            out.append(r)
            if pred(r):
                return out

    def wait_untagged(self, regex, timeout=None):
        """Read until an untagged response whose text matches regex; return it."""
        rx = re.compile(regex)
        return self.collect_until(lambda r: r.first.startswith("* ") and rx.search(r.text),
                                  timeout=timeout)[-1]

    def wait_exists(self, n=None, timeout=None):
        """Wait for "* n EXISTS" (any n if None); returns n."""
        rx = r"^\* %s EXISTS$" % (n if n is not None else r"\d+")
        r = self.wait_untagged(rx, timeout=timeout)
        return untagged_kind(r)[0]

    # -- leaving without LOGOUT ---------------------------------------------

    def drop(self, timeout=10.0):
        """Go away without LOGOUT (and without a TLS close_notify): send a TCP
        FIN, then read until the server closes its side, which shows it has
        processed the EOF. Raises DropError if it keeps the connection open."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)   # on an SSLSocket this also drops the TLS layer
        except OSError:
            sock.close()
            return
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DropError("the server did not close the connection within %.0f s after the "
                                    "client's EOF" % timeout)
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, OSError):
                    return
                if not data:
                    return
        finally:
            sock.close()

    def logout(self, timeout=None):
        """LOGOUT, expecting BYE and the tagged OK; then close."""
        self.view = None
        resps = self.ok("LOGOUT", timeout=timeout)
        self.close()
        return resps


# --- the store, directly -----------------------------------------------------------------

class StoreClient(imapc.Client):
    """A direct, logged-in connection to the store, to change things behind
    the gateway's back."""

    def __init__(self, host, port, user, password, tls=True, cafile=None, verify=True, **kw):
        super().__init__(host, port, tls=tls, cafile=cafile, verify=verify, **kw)
        self.connect()
        self.login(user, password)

    def create(self, mailbox):
        return self.ok("CREATE %s" % _quote(mailbox))

    def append(self, mailbox, message, flags=()):
        if isinstance(message, str):
            message = imapc.make_message(message)
        fl = "(%s) " % " ".join(flags) if flags else ""
        resps = self.ok("APPEND %s %s" % (_quote(mailbox), fl), Literal(message, sync=False))
        m = re.search(r"\[APPENDUID \d+ (\d+)\]", resps[-1].first, re.I)
        return int(m.group(1)) if m else None

    def select(self, mailbox):
        return self.ok("SELECT %s" % _quote(mailbox))

    def store_uid(self, uid, op, flags):
        """UID STORE uid op (flags), op e.g. "+FLAGS.SILENT"."""
        return self.ok("UID STORE %s %s (%s)" % (uid, op, " ".join(flags)))

    def expunge_uids(self, uids):
        s = seqset(uids)
        self.ok("UID STORE %s +FLAGS.SILENT (\\Deleted)" % s)
        return self.ok("UID EXPUNGE %s" % s)

    def logout(self):
        try:
            self.ok("LOGOUT")
        finally:
            self.close()


def truth_of(client, mailbox):
    """[(uid, sorted flags)] of mailbox over an already logged-in client."""
    client.ok("EXAMINE %s" % _quote(mailbox))
    resps = client.ok("UID FETCH 1:* (FLAGS)")
    got = {}
    for r in resps:
        if untagged_kind(r)[1] == "FETCH":
            seq, items = parse_fetch(r)
            got[seq] = (items["UID"], norm_flags(items["FLAGS"]))
    out = [got[k] for k in sorted(got)]
    if sorted(got) != list(range(1, len(got) + 1)):
        raise IMAPError("store UID FETCH 1:* gave sequence numbers %s" % sorted(got))
    return out


def store_truth(host, port, user, password, mailbox="INBOX", tls=True, cafile=None, verify=True,
                timeout=imapc.DEFAULT_TIMEOUT):
    """Log in to the store directly; return [(uid, sorted flags)] of mailbox
    (\\Recent ignored), in sequence order."""
    c = imapc.Client(host, port, tls=tls, cafile=cafile, verify=verify, timeout=timeout)
    try:
        c.connect()
        c.login(user, password)
        out = truth_of(c, mailbox)
        c.ok("LOGOUT")
        return out
    finally:
        c.close()


# --- command line ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog="pimapc.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("login", "truth"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--plain", action="store_true", help="no TLS (default: implicit TLS)")
        p.add_argument("--cafile")
        p.add_argument("--insecure", action="store_true")
        p.add_argument("--user", required=True)
        p.add_argument("--password", required=True)
        p.add_argument("--timeout", type=float, default=imapc.DEFAULT_TIMEOUT)
    p = sub.choices["login"]
    p.add_argument("--device", required=True)
    p.add_argument("--mech", default="LOGIN", choices=["LOGIN", "PLAIN", "PLAIN-IR"])
    p.add_argument("--select")
    sub.choices["truth"].add_argument("--mailbox", default="INBOX")
    a = ap.parse_args(argv)
    if a.cmd == "truth":
        for uid, flags in store_truth(a.host, a.port, a.user, a.password, a.mailbox, tls=not a.plain,
                                      cafile=a.cafile, verify=not a.insecure, timeout=a.timeout):
            print(uid, " ".join(flags))
        return 0
    c = PimapClient(a.host, a.port, tls=not a.plain, cafile=a.cafile, verify=not a.insecure,
                    timeout=a.timeout)
    rc = 0
    try:
        c.connect()
        res = c.pimap_login(a.user, a.device, a.password, a.mech)
        print(json.dumps({"status": res.status, "session_state": res.session_state, "folder": res.folder,
                          "resync": res.resync, "session_id": res.session_id,
                          "events": [r.first for r in res.events], "problems": res.problems}, indent=1))
        if a.select and res.status == "OK":
            v = c.select_view(a.select)
            print(json.dumps(v.snapshot()))
        rc = 0 if res.status == "OK" and not res.problems else 1
    except (IMAPError, OSError) as e:
        print("pimapc: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        rc = 1
    finally:
        c.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
