#!/bin/bash
# t_signals.sh - pimap-proxy's signal handling, with a config file:
#  - SIGHUP after log.level changed to debug: "configuration reloaded" in the
#    log, debug lines follow, the proxy keeps serving (old and new clients);
#  - SIGHUP after the log file was renamed: the log is reopened (rotation);
#  - SIGHUP with a broken config: the error with file:line in the log, and
#    the proxy keeps serving with the old configuration;
#  - SIGTERM with clients connected (one in IDLE, one just selected): each
#    sees "* BYE", the proxy exits with status 0 at once (IDLE is no reason to wait)
# Also checks that --pid-file holds the daemon's pid.
#
# By hand: tests/integration/t_signals.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

start_store_for_proxy
deliver alice "signals: a message"

P=$(free_port)
CONF=$T/proxy.yaml
# write_conf LEVEL [EXTRA-LINE]: the proxy's config file.
write_conf() {
	cat >"$CONF.tmp" <<-YAML
		listen:
		  imap:
		    - "127.0.0.1:$P"
		  imaps: []
		upstream:
		  url: "imaps://127.0.0.1:$DOVECOT_IMAPS"
		  ca_file: "$CA"
		state_dir: "$T/proxy-state"
		log:
		  level: $1
		  file: "$PROXY_LOG"
		pid_file: "$T/proxy.pid"
		limits:
		  drain_timeout: 10s
		${2:-}
	YAML
	mv "$CONF.tmp" "$CONF"
}
write_conf info
start_proxy --config "$CONF"
wait_port 127.0.0.1 "$P" 15 "$PROXY_PID" || fail "proxy does not listen on $P"
wait_for 5 test -s "$T/proxy.pid" || fail "no pid file"
[ "$(cat "$T/proxy.pid")" = "$PROXY_PID" ] || fail "pid file holds $(cat "$T/proxy.pid"), not $PROXY_PID"

export P PROXY_PID PROXY_LOG CONF DOVECOT_PASS
export -f write_conf
export DOVECOT_IMAPS CA T
python3 - <<'PYEOF' || fail "see the messages above"
import os, re, signal, subprocess, sys, time
from imapc import Client, Closed, Timeout

P, PID = int(os.environ["P"]), int(os.environ["PROXY_PID"])
LOG, CONF, PASS = os.environ["PROXY_LOG"], os.environ["CONF"], os.environ["DOVECOT_PASS"]
step = ""
def check(cond, what):
    if not cond:
        print("FAIL (%s): %s" % (step, what), file=sys.stderr)
        sys.exit(1)
    print("ok   (%s): %s" % (step, what), file=sys.stderr)

def write_conf(level, extra=""):
    subprocess.run(["bash", "-c", 'write_conf "$@"', "x", level, extra], check=True)

def log_text(path=LOG):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""

def wait_log(pattern, start=0, timeout=10, path=LOG):
    """Poll the log until pattern (regex) appears after offset start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log_text(path)[start:])
        if m:
            return m
        time.sleep(0.05)
    return None

def alive():
    try:
        with open("/proc/%d/stat" % PID) as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False

def session_ok(what):
    c = Client("127.0.0.1", P)
    c.connect()
    c.login("alice", PASS)
    c.ok("SELECT INBOX")
    c.ok("NOOP")
    c.ok("LOGOUT")
    c.close()
    check(True, "a new client works %s" % what)

# a client that stays connected through the reloads
a = Client("127.0.0.1", P)
a.connect()
a.login("alice", PASS)
a.ok("SELECT INBOX")

# --- reload with a changed log level ------------------------------------------------
step = "reload"
mark = len(log_text())
write_conf("debug")
os.kill(PID, signal.SIGHUP)
check(wait_log(r"configuration reloaded", mark), "log says 'configuration reloaded'")
check(alive(), "proxy alive after SIGHUP")
mark2 = len(log_text())
session_ok("after the reload")
a.ok("NOOP")
check(True, "the client connected before the reload still works")
check(wait_log(r"(?i)\bdebug\b", mark2, timeout=2), "debug lines are logged after the reload")

# --- log rotation -------------------------------------------------------------------
step = "reopen"
os.rename(LOG, LOG + ".1")
os.kill(PID, signal.SIGHUP)
check(wait_log(r"configuration reloaded", 0), "SIGHUP reopened the log file (new file written)")
session_ok("after reopening the log")

# --- reload with a broken file -------------------------------------------------------
step = "broken reload"
write_conf("info", "colour: blue")
with open(CONF) as f:
    line = next(i for i, l in enumerate(f.read().splitlines(), 1) if l.startswith("colour"))
mark = len(log_text())
os.kill(PID, signal.SIGHUP)
m = wait_log(re.escape(os.path.basename(CONF)) + r":%d:\d+:" % line, mark)
check(m, "the log names %s:%d:col: (got: %r)"
      % (os.path.basename(CONF), line, log_text()[mark:][-300:]))
check(not re.search(r"configuration reloaded", log_text()[mark:]), "no 'configuration reloaded' for a broken file")
check(alive(), "proxy alive after a broken reload")
session_ok("after the broken reload")
a.ok("NOOP")
check(True, "the old client still works")
mark3 = len(log_text())
session_ok("(log level must still be debug: the old configuration stays)")
check(wait_log(r"(?i)\bdebug\b", mark3, timeout=2), "still logging at debug level (old configuration kept)")

# --- SIGTERM with clients connected --------------------------------------------------
step = "sigterm"
b = Client("127.0.0.1", P)
b.connect()
b.login("alice", PASS)
b.ok("EXAMINE INBOX")
idle_tag = a.idle_start()
t0 = time.monotonic()
os.kill(PID, signal.SIGTERM)
for name, c in (("selected client", b), ("idle client", a)):
    try:
        resps = c.read_until_closed(timeout=5)
    except Timeout:
        check(False, "%s: connection still open 5 s after SIGTERM" % name)
    check(any(r.status == "BYE" for r in resps),
          "%s saw %r before the close (%.2f s after SIGTERM)"
          % (name, [r.first for r in resps], time.monotonic() - t0))
while alive() and time.monotonic() - t0 < 10:
    time.sleep(0.02)
dt = time.monotonic() - t0
check(not alive(), "the proxy exited after SIGTERM")
check(dt <= 3.0, "it exited %.2f s after SIGTERM, without waiting for drain_timeout (10 s): an idle client is ended at once" % dt)
PYEOF

rc=0
wait "$PROXY_PID" || rc=$?
untrack_pid "$PROXY_PID"
[ $rc -eq 0 ] || fail "the proxy exited with status $rc after SIGTERM, want 0"
log "ok: exit status 0 after SIGTERM"
pass
