#!/bin/bash
# t_gw_throttle.sh - pimap-gateway's per-address login throttle
# (limits.max_failed_logins, failures and logins in flight per minute):
#  (a) an address's throttle entry starts from zero. It did not: a new
#      entry came from xrealloc and its count of logins in flight was left
#      as the memory was, so an address could be refused ("Too many failed
#      logins") before it had failed at all; bench/gateway_bench.sh failed
#      now and then. The gateway runs with freshly allocated memory filled
#      with 0x01 bytes (MALLOC_PERTURB_, or ASan's malloc_fill_byte), so
#      such a count is never zero by luck: logins from several addresses
#      must succeed;
#  (b) the throttle still works, exactly: max_failed_logins (3) wrong
#      passwords from 127.0.0.2 are each refused as wrong, the next login
#      from there is throttled, even with the right password, while
#      127.0.0.1 logs in.
# Without the fix this test failed in (b) with both builds (sanitizers or
# not): a throttle where no address had failed often enough.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_gateway
gen_certs
DOVECOT_USERS="alice bob" start_dovecot
# glibc fills malloc'd memory with perturb ^ 0xff; ASan with malloc_fill_byte.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}malloc_fill_byte=1" MALLOC_PERTURB_=254 \
	start_gateway --set limits.max_failed_logins=3

export GW_PORT CA DOVECOT_PASS
python3 - <<'PY' || fail "see above"
import os, socket, ssl, sys

def login(source, user, password):
    """The tagged answer to LOGIN over implicit TLS, from source address."""
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    raw = socket.create_connection(("127.0.0.1", int(os.environ["GW_PORT"])), timeout=15,
                                   source_address=(source, 0))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    f = s.makefile("rb")
    f.readline()                                   # greeting
    s.sendall(b'a LOGIN %s "%s"\r\n' % (user.encode(), password.encode()))
    while True:
        line = f.readline().decode(errors="replace").rstrip("\r\n")
        if not line or line.startswith("a "):
            break
    s.close()
    return line

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what[:140], file=sys.stderr)
    if not cond:
        sys.exit(1)

pw = os.environ["DOVECOT_PASS"]
for src in ("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
    r = login(src, "alice", pw)
    check(r.startswith("a OK"), "(a) the first login from %s succeeds: %r" % (src, r))
for i in range(3):
    r = login("127.0.0.2", "bob", "wrong")
    check(r.startswith("a NO") and "throttled" not in r, "(b) wrong password %d from 127.0.0.2: %r" % (i + 1, r))
r = login("127.0.0.2", "bob", pw)
check(r.startswith("a NO") and "throttled" in r, "(b) then 127.0.0.2 is throttled, right password or not: %r" % r)
r = login("127.0.0.1", "bob", pw)
check(r.startswith("a OK"), "(b) while 127.0.0.1 still logs in: %r" % r)
PY
gateway_alive || fail "the gateway died"
pass
