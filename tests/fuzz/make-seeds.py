#!/usr/bin/env python3
"""make-seeds.py - write the hand-made seed inputs of tests/fuzz/corpus/.

Each target's corpus holds three kinds of files:
  seed-*     written by this script (rerun it after changing it; it only
             rewrites seed-* files),
  regress-*  inputs that once crashed a target or broke a property, kept
             forever (see tests/fuzz/README.md),
  other      inputs libFuzzer found interesting, merged in with
             `tests/fuzz/run-fuzzers.sh --merge`.

The first byte of most inputs picks a case inside the target (see each
fuzz_*.c); the seeds cover every case.
"""

import os
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def crlf(text):
    return text.replace("\n", "\r\n")


def raw_deflate(data, flushes=1, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = b""
    step = max(1, len(data) // flushes)
    for i in range(0, len(data), step):
        out += c.compress(data[i:i + step]) + c.flush(zlib.Z_SYNC_FLUSH)
    return out


# --- imap_parse: first byte = chunking seed (bit 0: small limits) ----------
COMMANDS = crlf("""a1 LOGIN alice secret
a2 LOGIN "al ice" {6}
sec\"et
a3 AUTHENTICATE PLAIN
AGFsaWNlAHNlY3JldA==
a4 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==
a5 CAPABILITY
a6 ID ("name" "Thunderbird" "version" "153.0")
a7 SELECT INBOX
a8 UID FETCH 1:* (FLAGS)
a9 FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])
b1 APPEND INBOX (\\Seen) "07-Feb-1994 21:52:25 -0800" {30+}
Subject: hi

a DELETE INBOX
b2 IDLE
DONE
b3 SEARCH CHARSET UTF-8 SUBJECT {4}
s\xc3\xbc
b4 STORE 1:* +FLAGS.SILENT (\\Deleted)
b5 UID EXPUNGE 1:5,7
b6 COMPRESS DEFLATE
b7 STARTTLS
b8 LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))
b9 APPEND INBOX ~{5}
ab\x00cd
c1 XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (UID FLAGS BODY.PEEK[HEADER])
c2 XGETPIMAPPREF (PIMAP_INBAND_PUSH PIMAP_EVENT_FILTER)
c3 XZIP z1 FETCH 1:* (FLAGS)
c4 XPROVISION
c5 LOGOUT
""")
RESPONSES = crlf("""* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.
* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT CONDSTORE QRESYNC COMPRESS=DEFLATE
a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.
* 4 EXISTS
* 0 RECENT
* OK [UIDVALIDITY 1700000000] UIDs valid
* OK [UIDNEXT 5] Predicted next UID
* OK [HIGHESTMODSEQ 12] Highest
a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).
* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 388 INTERNALDATE "07-Feb-2026 10:00:00 +0000")
* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {18}
Subject: hello

)
* 3 FETCH (BODY[] {5}
hello ENVELOPE ("Sat, 07 Feb 2026 10:00:00 +0000" "hi" (("A" NIL "a" "example.org")) NIL NIL NIL NIL NIL NIL "<m@x>"))
* 4 FETCH (BINARY[1] ~{3}
a\x00b)
* ESEARCH (TAG "a3") UID ALL 1:4
* SEARCH 1 2 3
* LIST (\\HasNoChildren) "." INBOX
* LIST () "/" {5}
a b c
* STATUS "Archive" (MESSAGES 2 UNSEEN 1)
+ idling
* 5 EXISTS
* 3 EXPUNGE
* VANISHED (EARLIER) 1:3
* NO [ALERT] disk full
* BAD [PARSE] what
+ 
* SESSION SELECTED
* FOLDER INBOX
* SESSIONID 42
* RESYNC
* XGETPIMAPPREF (PIMAP_INBAND_PUSH ON PIMAP_EVENT_FILTER ALL)
* XPROVISION XPIMAPPREF PIMAP_INBAND_PUSH (ON OFF)
* XZIP ~{4}
abcd
* BYE Logging out
a9 OK Logout completed.
* PREAUTH [CAPABILITY IMAP4rev1] logged in as root
""")
for seed, limits in ((0x10, "default"), (0x11, "small")):
    write("imap_parse", "commands-" + limits, bytes([seed]) + COMMANDS.encode("latin-1"))
    write("imap_parse", "responses-" + limits, bytes([seed]) + RESPONSES.encode("latin-1"))
with open(os.path.join(TOP, "tests/integration/lib/relay-session.imap"), "rb") as f:
    session = b"".join(b"t%d " % i + l.rstrip(b"\n") + b"\r\n"
                       for i, l in enumerate(f) if l.strip() and not l.startswith(b"#"))
write("imap_parse", "relay-session", b"\x22" + session)
for i, bad in enumerate([
    b"a LOGIN {99999999999999999999}\r\n",
    b"a FETCH 1 (((((((((((((((((((((((((((((((((((((FLAGS)))))))))))))))))))))))))))))))))))\r\n",
    b"a NOOP\r\nb NOOP {5+}\r\nabc",
    b"* 1 FETCH (BODY[] {3}\r\nab",
    b"a1 LOGIN alice \"unterminated\r\na2 NOOP\r\n",
    b"\r\n\r\n   \r\na\r\n* \r\n+\r\n",
    b"a BAD-SYNTAX \"x\" {5}\r\nhello\r\nb NOOP\r\n",
]):
    write("imap_parse", "edge-%d" % i, bytes([0x30 + 2 * i + (i & 1)]) + bad)

# --- pimap_cmd: first byte = case (see enum which) ------------------------
W_LOGIN, W_SETPREF, W_GETPREF, W_STORED, W_UIDSET, W_XZIP, W_SASL, W_CAPS = range(8)
for i, name in enumerate(["alice", "alice#Plaptop1", "joe#P6505551234@example.org", "a#Pb#Pc",
                          "#Pdev", "x#P", "bob#Pbad/dev", "u@d#Pdev", "a" * 300 + "#Pd"]):
    write("pimap_cmd", "login-%d" % i, bytes([W_LOGIN]) + name.encode())
for i, args in enumerate(["PIMAP_INBAND_PUSH ON", "PIMAP_EVENT_FILTER new",
                          "PIMAP_INBAND_NEW_FORMAT (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>)",
                          "PIMAP_INBAND_NEW_FORMAT FULL", "PIMAP_IN-BAND_NEW_FORMAT NONE",
                          "PIMAP_INBAND_NEW_FORMAT (BODY[TEXT] BINARY.PEEK[1.2]<5.10> BINARY.SIZE[1] RFC822.HEADER)",
                          "PIMAP_OUTBAND_ADDRESS \"mailto:joe@example.org\"", "PIMAP_OUTBAND_ADDRESS {3+}\r\nx y",
                          "PIMAP_OUTBAND_CHANNEL NONE", "PIMAP_OUTBAND_FORMAT EXTENDED",
                          "PIMAP_NOPE 1", "PIMAP_INBAND_PUSH", "PIMAP_INBAND_NEW_FORMAT (BODY[1.2.MIME] FLAGS"]):
    write("pimap_cmd", "setpref-%d" % i, bytes([W_SETPREF]) + args.encode())
for i, args in enumerate(["", "(PIMAP_INBAND_PUSH PIMAP_EVENT_FILTER)", "PIMAP_INBAND_PUSH PIMAP_OUTBAND_FORMAT",
                          "(NOPE)"]):
    write("pimap_cmd", "getpref-%d" % i, bytes([W_GETPREF, i & 1]) + args.encode())
for i, v in enumerate(["ON", "(UID FLAGS)", "NONE", "mailto:x@y", "EXTENDED", "garbage ("]):
    write("pimap_cmd", "stored-%d" % i, bytes([W_STORED, i]) + v.encode())
for i, v in enumerate(["1:5,7,9:8", "", "1", "4294967295", "1:4294967295", "*", "0", "1,,2", "3:1,2:4,10"]):
    write("pimap_cmd", "uidset-%d" % i, bytes([W_UIDSET]) + v.encode())
for i, v in enumerate(["z1 FETCH 1:* (FLAGS)", "a NOOP", "z1 LOGOUT", "z1 IDLE", "z1", "z1 SELECT {5+}\r\nINBOX",
                       "z1 XZIP z2 NOOP", "\"z1\" NOOP"]):
    write("pimap_cmd", "xzip-%d" % i, bytes([W_XZIP]) + v.encode())
for i, v in enumerate(["AGFsaWNlAHNlY3JldA==", "YWxpY2UAYWxpY2UAc2VjcmV0", "Ym9iAGFsaWNlAHNlY3JldA==", "*", "!!!",
                       "AAA=", "AGFsaWNlAA=="]):
    write("pimap_cmd", "sasl-%d" % i, bytes([W_SASL]) + v.encode())
for i, v in enumerate(["IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN AUTH=SCRAM-SHA-1-PLUS COMPRESS=DEFLATE",
                       "IMAP4rev1 XPIMAPv1 XPIMAPPREF XZIP NOTIFY AUTH=LOGIN LITERAL+ IDLE",
                       "", "  STARTTLS  "]):
    for leg in (0, 3, 4, 8, 13):
        write("pimap_cmd", "caps-%d-%d" % (i, leg), bytes([W_CAPS, leg]) + v.encode())

# --- zio: first byte % 3 = case, >> 2 = seed --------------------------------
text = (RESPONSES * 3).encode("latin-1")
write("zio", "inflate-text", bytes([0x00]) + raw_deflate(text, 5))
write("zio", "inflate-level0", bytes([0x0c]) + raw_deflate(text[:3000], 2, 0))
write("zio", "inflate-final", bytes([0x18]) + zlib.compressobj(9, zlib.DEFLATED, -15).compress(text) +
      b"\x03\x00")
c = zlib.compressobj(9, zlib.DEFLATED, -15)
write("zio", "inflate-bomb", bytes([0x24]) + c.compress(b"\x00" * 300000) + c.flush(zlib.Z_SYNC_FLUSH))
write("zio", "inflate-garbage", bytes([0x30]) + bytes(range(256)))
write("zio", "roundtrip-text", bytes([0x01]) + text[:2000])
write("zio", "roundtrip-binary", bytes([0x05]) + bytes(range(256)) * 3)
write("zio", "complete-text", bytes([0x02]) + text[:1500])
write("zio", "complete-empty", bytes([0x06]))

# --- cfg: bit 0 = gateway table, rest = YAML ------------------------------
for daemon, bit in (("proxy", 0), ("gateway", 1)):
    with open(os.path.join(TOP, "etc/pimap-%s.yaml" % daemon), "rb") as f:
        write("cfg", "etc-" + daemon, bytes([bit]) + f.read())
cfg_docs = [
    (0, "limits.max_line_length: 64K\nlimits:\n  max_clients: 12\n"),
    (0, "upstream:\n  url: imaps://[::1]:993\n  connect_timeout: 250ms\nlisten:\n  imap: []\n"),
    (0, "listen:\n  imap: [\"127.0.0.1:1143\", \":1144\"]\n  plaintext_login: NEVER\n"),
    (0, "log:\n  level: debug\n  trace: yes\ndevice_id: \"laptop 1\"\n"),
    (0, "upstream:\n  url: \"user@imap.example.org\"\n"),
    (0, "limits:\n  max_line_length: 1G\n  idle_timeout: 1h\n  drain_timeout: 1.5m\n"),
    (1, "store:\n  url: imap://127.0.0.1:143\n  allow_plaintext: on\nsession:\n  lifetime: 2h\n"),
    (1, "limits: {max_failed_logins: 3, preauth_timeout: 2s}\n"),
    (1, "listen:\n  pimaps: ~\n  pimap: \"[::1]:2143\"\n"),
    (1, "a: &x 1\nb: *x\n"),
    (1, "- just\n- a list\n"),
    (1, "store:\n  url: imaps://h\nstore:\n  url: imaps://h\n"),
    (0, "\ttab: 1\n"),
    (0, "key: \"unterminated\n"),
]
for i, (bit, doc) in enumerate(cfg_docs):
    write("cfg", "doc-%d" % i, bytes([bit]) + doc.encode())

# --- macros: YAML, optionally "\n%%\n" and client commands ----------------
for name in ("mutt", "thunderbird"):
    with open(os.path.join(TOP, "macros/%s.yaml" % name), "rb") as f:
        yaml = f.read()
    write("macros", name, yaml)
    write("macros", name + "-session", yaml + b"\n%%\n" + crlf(
        "a0 ID (\"name\" \"Thunderbird\" \"version\" \"153.0\")\n"
        "a1 SELECT INBOX\na2 SELECT \"INBOX\"\n"
        "a3 FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
        "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])\n"
        "a4 UID fetch 1:* (FLAGS)\na5 UID FETCH 1:4 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
        "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\n"
        "a6 SELECT {5}\nINBOX\na7 STORE 1 +FLAGS (\\Seen)\na8 EXAMINE \"Sent\"\n").encode())
write("macros", "small", b"""client:
  name: t
  listen: [stdio]
macros:
  - name: m
    trigger: "SELECT {mailbox}"
    send:
      - "UID FETCH 1:* (FLAGS)"
      - "STATUS {mailbox} (MESSAGES)"
%%
a SELECT INBOX\r
b UID FETCH 1:* (FLAGS)\r
c SELECT "a b"\r
""")
write("macros", "bad-send", b"client:\n  name: t\nmacros:\n  - name: m\n    trigger: \"NOOP\"\n    send: [\"STORE 1 +FLAGS (x)\"]\n")
write("macros", "id-match", b"""client:
  name: tb
  id:
    name: "Thunder*"
macros:
  - name: m
    trigger: "EXAMINE {mailbox}"
    send: ["FETCH 1:* (FLAGS)"]
%%
a ID ("name" "Thunderbird")\r
b EXAMINE Sent\r
c FETCH 2:3 (FLAGS)\r
""")

# --- roundtrip: first byte = writer (see enum which) -----------------------
R_ASTRING, R_MAILBOX, R_RETAG, R_UIDSET, R_PREFS, R_LOGIN, R_SASL = range(7)
for i, (u, p) in enumerate([(b"alice", b"secret"), (b"al ice", b"se\"cr\\et"), (b"j\xc3\xb6rg", b"p\xc3\xa4ss"),
                            (b"", b"x\r\ny"), (b"a{3}", b"{3}\r\nabc"), (b"LOGIN", b"AUTHENTICATE")]):
    write("roundtrip", "astring-%d" % i, bytes([R_ASTRING]) + u + b"\0" + p)
for i, m in enumerate([b"INBOX", b"Archive/2026", b"a \"b\"", b"Entw\xc3\xbcrfe", b"", b"x\ry", b"NIL"]):
    write("roundtrip", "mailbox-%d" % i, bytes([R_MAILBOX]) + m)
for i, cmd in enumerate(COMMANDS.encode("latin-1").split(b"\r\n")[:12]):
    write("roundtrip", "retag-%d" % i, bytes([R_RETAG]) + cmd + b"\r\n")
write("roundtrip", "retag-literals", bytes([R_RETAG]) + b"a APPEND {5}\r\nINBOX (\\Seen) {3}\r\nabc\r\n")
write("roundtrip", "uidset-0", bytes([R_UIDSET]) + bytes([0, 0, 0, 0, 5, 1, 0, 0, 0, 9, 2, 0, 0, 0, 6,
                                                           0x81, 0xff, 0xff, 0xff, 0xfe]))
write("roundtrip", "prefs-0", bytes([R_PREFS, 4, 0, 3, 9, 5, 2, 0, 0x81]) + b"mailto:joe@example.org")
write("roundtrip", "login-0", bytes([R_LOGIN]) + b"joe\0laptop-1\0example.org")
write("roundtrip", "login-1", bytes([R_LOGIN]) + b"joe\0dev\0")
write("roundtrip", "sasl-0", bytes([R_SASL]) + b"alice\0secret")

# --- http_wire: bit 0 = responses, bit 1 = small limits (fuzz_http_wire.c) ----
for i, (ctl, text) in enumerate([
    (0, "POST /pimap HTTP/1.1\r\nHost: gw\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 13\r\n\r\n"
        "a1 NOOP\r\nxyz"),
    (0, "POST /pimap HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na NOO\r\n3\r\nP\r\n\r\n0\r\n\r\n"),
    (2, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nab\r\n\r\n0\r\nX-T: 1\r\n\r\n"),
    (0, "GET /pimap HTTP/1.1\r\nHost: x\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    (0, "POST /p HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    (0, "POST /p HTTP/1.1\r\nCookie: PIMAPSESSION=0123\r\nContent-Encoding: deflate\r\nContent-Length: 2\r\n\r\nab"),
    (1, "HTTP/1.1 200 OK\r\nSet-Cookie: PIMAPSESSION=0123; Path=/pimap; HttpOnly\r\nContent-Length: 5\r\n\r\n* OK "),
    (1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n* OK \r\n4\r\nhi\r\n\r\n0\r\n\r\n"),
    (1, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof"),
    (3, "HTTP/1.1 409 Conflict\r\nX-PIMAP-Incomplete: 1\r\nContent-Length: 0\r\n\r\n"),
]):
    write("http_wire", "seed-%d" % i, bytes([ctl]) + text.encode())

# --- smtp: bit 0 = replies; server: bit 1 STARTTLS offered, 2 TLS on, 3 AUTH
# in clear, 4 small messages, 5 one recipient (fuzz_smtp.c) ------------------
PLAIN_SECRET = "AGFsaWNlAHNlY3JldA=="
sessions = [
    (0x0a, "EHLO c\r\nAUTH PLAIN %s\r\nMAIL FROM:<alice@x> SIZE=20\r\nRCPT TO:<bob@y>\r\nDATA\r\n"
           "Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n" % PLAIN_SECRET),
    (0x02, "EHLO c\r\nAUTH PLAIN %s\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN %s\r\nMAIL FROM:<a@b>\r\n"
           "RCPT TO:<b@c>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n" % (PLAIN_SECRET, PLAIN_SECRET)),
    (0x0a, "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n"),
    (0x0a, "EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n%%%\r\nAUTH CRAM-MD5\r\nQUIT\r\n"),
    (0x04, "MAIL FROM:<a@b>\r\nAUTH PLAIN %s\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\n"
           "DATA\r\nAUTH PLAIN %s\r\nMAIL FROM:<a@b>\r\nDATA\r\n" % (PLAIN_SECRET, PLAIN_SECRET)),
    (0x3c, "EHLO c\r\nAUTH PLAIN %s\r\nMAIL FROM:<a@b> SIZE=101\r\nMAIL FROM:<a@b> FOO=1\r\n"
           "MAIL FROM:<a@b> BODY=8BITMIME\r\nRCPT TO:<b@c>\r\nRCPT TO:<d@e>\r\nDATA\r\n"
           "reject me\r\n.\r\nQUIT\r\n" % PLAIN_SECRET),
    (0x0a, "EHLO c\r\nAUTH PLAIN %s\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\nDATA\r\nbad\nline\r\n.\r\n"
           % PLAIN_SECRET),
    (0x00, "EHLO c\r\nAUTH PLAIN %s\r\nSTARTTLS\r\nHELO x\r\nVRFY a\r\nEXPN b\r\nBDAT 5\r\nRSET\r\n"
           "NOOP\r\nHELP\r\n" % PLAIN_SECRET + "x" * 3000 + "\r\nQUIT\r\n"),
]
for i, (ctl, text) in enumerate(sessions):
    write("smtp", "server-%d" % i, bytes([ctl]) + text.encode())
replies = [
    "220 smtp.example.org ESMTP ready\r\n250-smtp.example.org\r\n250-SIZE 35882577\r\n250-AUTH PLAIN LOGIN\r\n"
    "250-STARTTLS\r\n250 8BITMIME\r\n235 2.7.0 ok\r\n",
    "250 2.0.0 Ok: queued as 1234\r\n550-5.1.1 no such user\r\n550 5.1.1 really\r\n",
    "421 4.3.2 shutting down\r\n999 odd\r\n",
    "250-a\r\n251 b\r\n",
    "354 End data with <CR><LF>.<CR><LF>\r\n" + "250-x\r\n" * 300,
]
for i, text in enumerate(replies):
    write("smtp", "replies-%d" % i, bytes([0x01 | (i << 1)]) + text.encode())

# --- xdeliver: 0 command, 1 result (code, text), 2 tagged response -----------
for i, cmd in enumerate([
    'N SAVETO=Sent ENVELOPE (("Bob" NIL "bob" "example.org")) {21+}\r\nSubject: hi\r\n\r\nbody\r\n',
    'N ENVELOPE (("Bob" NIL "bob" "x.org") (NIL NIL "a b" "y.org")) {3+}\r\nabc',
    'R Inbox 1 203 Y SAVETO=~/Sent ENVELOPE (("Mooch" NIL "mooch" "owatagu.siam.edu")) {1+}\r\nz',
    'F "Sent Items" 7 9 N SAVETO "My Sent" ENVELOPE ((NIL NIL "c" "d.org")) ~{2+}\r\nab',
    'Q ENVELOPE ((NIL NIL b c)) {1+}\r\nz',
    'N ENVELOPE NIL {1+}\r\nz',
    'N ENVELOPE ((NIL NIL "x>y" "z")) {1+}\r\nz',
    'N ENVELOPE ((NIL NIL "x" "z\r\n")) {1+}\r\nz',
]):
    write("xdeliver", "command-%d" % i, bytes([0]) + cmd.encode())
for i, (code, text) in enumerate([(250, "2.0.0 Ok: queued"), (550, "5.1.1 <bob@x>: no such user"),
                                  (451, "4.3.0 try again\x01\x7f"), (354, ""), (221, "x" * 700)]):
    write("xdeliver", "result-%d" % i, bytes([1, code >> 8, code & 0xff]) + text.encode())
for i, t in enumerate(["OK [SMTP 250 2.0.0] sent", "NO [SMTP 550 5.1.1] no", "OK [APPENDUID 1 2] 250 2.0.0 ok",
                       "NO [UNAVAILABLE] later", "NO [SMTP 999 9.9.9] odd", "BAD what", "NO [SMTP"]):
    write("xdeliver", "tagged-%d" % i, bytes([2]) + t.encode())

# --- xfilter: first byte % 3: 0 command, 1 criteria text, 2 filter file; the
# byte also picks "today" (fuzz_xfilter.c) --------------------------------------
for i, cmd in enumerate([
    'INBOX V DAYSBEFORETODAY 14',
    'INBOX N OR FROM boss@example.com FROM family@example.org',
    'ALL B GET',
    'ALL V NONE',
    '"ALL" N ALL',
    'INBOX B OR FROM a SUBJECT b',
    'Lists/x V (NOT SUBJECT digest DAYSBEFORETODAY 30) LARGER 10 SMALLER 5000000',
    'INBOX V HEADER X-Priority "1" SENTSINCE 1-Mar-2024 SENTBEFORE "2-Apr-2025" ON 3-May-2026',
    'INBOX V SINCE 01-Jan-1970 BEFORE 31-Dec-2150 SENTON 29-Feb-2024 BCC x CC y TO z',
    'INBOX V BODY foo TEXT "bar baz"',
    'INBOX V FLAGGED',
    'INBOX V UNSEEN',
    'INBOX V NOT DAYSBEFORETODAY 3',
    'INBOX V 1:5',
    'INBOX V UID 1:*',
    'INBOX V MODSEQ 5',
    'INBOX V KEYWORD $Junk',
    'INBOX V FROM {7+}\r\nM\xc3\xbcller',
    'INBOX V SUBJECT "\xe2\x82\xac"',
    'INBOX X ALL',
    'INBOX V',
    'INBOX V ((((FROM a))))',
    'INBOX V OR OR FROM a FROM b OR TO c TO d',
]):
    write("xfilter", "command-%d" % i, bytes([0 + 3 * (i % 60)]) + cmd.encode("latin-1"))
for i, text in enumerate([
    'DAYSBEFORETODAY 0', 'from "x" subject y', 'OR (FROM a TO b) NOT LARGER 100',
    'HEADER "List-Id" "<x.y>"', 'SENTSINCE 1-Jan-2000 BEFORE 1-Jan-2001', 'ALL', 'NONE',
    'DAYSBEFORETODAY 36500', 'LARGER 4294967295', 'SMALLER 0', 'NOT NOT FROM a', '(', ')', 'OR FROM a',
    'SEEN', 'ANSWERED', 'ON 31-Feb-2024', 'FROM "a\\"b\\\\c"',
]):
    write("xfilter", "text-%d" % i, bytes([1 + 3 * (i % 60)]) + text.encode())
for i, name in enumerate(["mobile.yaml", "metered.yaml"]):
    with open(os.path.join(TOP, "filters", name), "rb") as f:
        write("xfilter", "file-%s" % name.split(".")[0], bytes([2 + 3 * i]) + f.read())
for i, text in enumerate([
    'folders:\n  "Lists/*":\n    view:\n      days: 30\n      search: NOT SUBJECT digest\n    notify: none\n'
    '  INBOX:\n    notify:\n      header: {X-Priority: "1"}\n  "*":\n    view: {max_size: 5M}\n    notify: none\n',
    'events: new\nexclude: Junk\nfolders:\n  INBOX:\n    view:\n      since: 2024-03-01\n      before: 1-Mar-2025\n'
    '      min_size: 500K\n      to: [a@b, c@d]\n      cc: x\n      subject: ["hi", "ho"]\n      body: b\n      text: t\n',
    'events: none\nfolders:\n  INBOX:\n    view:\n      dayz: 3\n',
    'folders:\n  INBOX:\n    view:\n      search: FLAGGED\n',
    'folders:\n  "Arch?ve/*":\n    view: none\n    notify: all\n',
]):
    write("xfilter", "file-%d" % i, bytes([2 + 3 * (i % 60)]) + text.encode())

print("seeds written under", os.path.join(HERE, "corpus"), file=sys.stderr)
