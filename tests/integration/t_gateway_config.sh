#!/bin/bash
# t_gateway_config.sh - pimap-gateway's configuration interface:
#  - --help and --version work (exit 0);
#  - --check-config accepts the shipped etc/pimap-gateway.yaml (exit 0, with a
#    warning that names store.url, since the example names no store);
#  - broken files exit 2 with "file:line:col:" on stderr: unknown key, bad
#    enum value, values out of range (session.lifetime below one second,
#    store.idle_refresh above RFC 2177's 29 minutes), a pimaps:// or
#    http:// store, duplicate key, YAML syntax error;
#  - a missing file, bad or unknown --set keys, --set without '=', a bad
#    --listen or --listen-https, --cert without --key, no listener at all (the
#    HTTPS binding alone is one), an unknown option
#    or a stray argument exit 2 (or non-zero for getopt's own complaint);
#  - a store is an IMAP server: pimaps://, pimap://, https://, http:// and
#    user@ URLs are refused (--check-config and start, status 2);
#  - starting without a store exits 2 with "store.url is required";
#  - flags override the file (--dump-config shows it), repeated --listen
#    accumulate, and the dump is itself a valid configuration that dumps the
#    same way again;
#  - lifecycle of main(): --pid-file, SIGHUP with a broken file (error with
#    file:line:col in the log, old configuration kept), SIGHUP that drops the
#    store (refused), a good SIGHUP ("configuration reloaded"), SIGUSR1,
#    SIGTERM (exit 0, pid file removed), and detaching without -f.
# No mail store is needed: the store URL points at a closed port and nothing
# logs in.
#
# By hand: tests/integration/t_gateway_config.sh (after building src/pimap-gateway)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require_gateway
SHIPPED=$top_srcdir/etc/pimap-gateway.yaml
[ -r "$SHIPPED" ] || hard_error "$SHIPPED missing"
STORE=imaps://store.example.org:993

# run_gw EXPECTED-STATUS ARGS...: run the gateway (it must terminate within
# 10 s), stdout in $T/out, stderr in $T/err; fail unless the status matches
# and stderr holds no sanitizer report.
run_gw() {
	local want=$1 rc=0; shift
	timeout 10 "$GATEWAY_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
	[ $rc -ne 124 ] || fail "pimap-gateway $* did not finish within 10 s"
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/err"; then
		cat "$T/err" >&2
		fail "pimap-gateway $*: sanitizer report"
	fi
	if [ "$rc" -ne "$want" ]; then
		cat "$T/out" "$T/err" >&2
		fail "pimap-gateway $*: exit status $rc, want $want"
	fi
}

# stderr_has REGEX WHAT
stderr_has() {
	grep -Eq -- "$1" "$T/err" || { cat "$T/err" >&2; fail "$2: stderr does not match /$1/"; }
}

# re_quote STRING: STRING as a literal extended regex.
re_quote() { printf '%s' "$1" | sed 's/[.[\*^$()+?{|]/\\&/g'; }

# --- --help, --version -----------------------------------------------------------
run_gw 0 --help
for opt in --listen --listen-starttls --listen-https --cert --key --store --ca-file --allow-plaintext-store \
	--state-dir --config --check-config --dump-config --set --foreground --pid-file \
	--log-file --verbose --trace --version; do
	grep -q -- "$opt" "$T/out" || fail "--help does not describe $opt"
done
[ ! -s "$T/err" ] || fail "--help wrote to stderr: $(cat "$T/err")"
run_gw 0 --version
grep -Eq '^pimap-gateway [0-9]+\.[0-9]+' "$T/out" || fail "--version printed: $(cat "$T/out")"
log "ok: --help, --version ($(cat "$T/out"))"

# --- the shipped file -----------------------------------------------------------------
run_gw 0 --check-config --config "$SHIPPED"
grep -q 'configuration OK' "$T/out" || fail "--check-config did not say 'configuration OK'"
stderr_has 'warning: .*store\.url' "the shipped file names no store"
log "ok: --check-config accepts $SHIPPED as shipped ($(head -n 1 "$T/err"))"
run_gw 0 --check-config --config "$SHIPPED" --store "$STORE"
grep -q 'configuration OK' "$T/out" || fail "--check-config did not say 'configuration OK'"
[ ! -s "$T/err" ] || fail "unexpected warning with a store: $(cat "$T/err")"
log "ok: --check-config accepts $SHIPPED with --store, without warnings"
# the shipped file is all defaults: dumping it equals dumping no file at all
run_gw 0 --config "$SHIPPED" --dump-config
cp "$T/out" "$T/dump-shipped.yaml"
run_gw 0 --config /dev/null --dump-config
diff -u "$T/dump-shipped.yaml" "$T/out" >&2 || fail "the shipped file is not the defaults"
log "ok: the shipped file sets the defaults"

# --- broken files ----------------------------------------------------------------------
# broken NAME LINE COL CONTENT [MESSAGE-REGEX]: the file must be refused (exit 2)
# with NAME:LINE:COL: on stderr.
broken() {
	local name=$1 line=$2 col=$3 f="$T/$1"
	printf '%b' "$4" >"$f"
	run_gw 2 --check-config --config "$f" --store "$STORE"
	stderr_has "^pimap-gateway: $(re_quote "$f"):$line:$col: ${5:-}" "$name"
	log "ok: $name -> $(head -n 1 "$T/err")"
}
broken unknown-key.yaml 3 3 'session:\n  lifetime: 2h\n  colour: blue\n' "unknown key 'session\.colour'"
broken unknown-top-key.yaml 2 1 'pid_file: ""\nupstream:\n  url: "imaps://x"\n' "unknown key 'upstream'"
broken bad-enum.yaml 2 20 'listen:\n  plaintext_login: sometimes\n' 'listen\.plaintext_login: expected one of'
broken short-session.yaml 3 13 '# a second at least\nsession:\n  lifetime: 0s\n' \
	'session\.lifetime: must be between 1s and 720h'
broken long-idle.yaml 3 17 'store:\n  compress: false\n  idle_refresh: 30m\n' \
	'store\.idle_refresh: must be between 1m and 29m'
broken short-idle.yaml 1 21 'store.idle_refresh: 30s\n' 'store\.idle_refresh: must be between 1m and 29m'
broken pimaps-store.yaml 2 8 'store:\n  url: "pimaps://gw.example.org"\n' \
	'store\.url: .*imaps:// or imap://.*pimaps://'
broken http-store.yaml 3 12 'log:\n  level: debug\nstore.url: http://store.example.org\n' \
	"store\.url: unknown scheme 'http'"
broken bad-size.yaml 2 20 'limits:\n  max_line_length: 10\n' 'limits\.max_line_length: must be between'
broken bad-int.yaml 2 22 'limits:\n  max_queued_events: lots\n' 'limits\.max_queued_events: expected an integer'
broken duplicate-key.yaml 5 1 'limits:\n  max_clients: 5\nlog:\n  level: info\nlimits.max_clients: 6\n' \
	"duplicate key 'limits\.max_clients'"
broken syntax-error.yaml 4 7 'log:\n  level: info\n  file: [unclosed\nlimits:\n  max_clients: 1\n' 'YAML syntax error'
broken bad-indent.yaml 3 8 'log:\n  level: info\n   file: x\n' 'YAML syntax error'

# --- other configuration errors --------------------------------------------------------------
run_gw 2 --check-config --config "$T/does-not-exist.yaml" --store "$STORE"
stderr_has "$(re_quote "$T/does-not-exist.yaml"): cannot open" "missing config file"
log "ok: a missing config file -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --set session.lifetime=forever
stderr_has '^pimap-gateway: command line: session\.lifetime: expected a duration' "bad --set value"
log "ok: bad --set value -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --set no.such_key=1
stderr_has "unknown key 'no\.such_key'" "unknown --set key"
log "ok: unknown --set key -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --set session.lifetime
stderr_has "--set needs KEY=VALUE" "--set without '='"
log "ok: --set without '=' -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --listen 'no-port-here'
stderr_has "listen\.pimaps: .*no-port-here" "bad --listen"
log "ok: bad --listen -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --listen-starttls '127.0.0.1:99999'
stderr_has "listen\.pimap: .*out of range" "bad --listen-starttls"
log "ok: bad --listen-starttls -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --cert "$T/gw.pem"
stderr_has "tls\.cert and tls\.key" "--cert without --key"
log "ok: --cert without --key -> $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" --listen none --listen-starttls none
stderr_has "no listener" "no listener at all"
log "ok: no listener -> $(head -n 1 "$T/err")"
run_gw 0 --check-config --store "$STORE" --listen none --listen-starttls none --listen-https 127.0.0.1:3443
log "ok: the HTTPS binding alone is a listener"
run_gw 2 --check-config --store "$STORE" --listen-https 'no-port-here'
stderr_has "listen\.https: .*no-port-here" "bad --listen-https"
log "ok: bad --listen-https -> $(head -n 1 "$T/err")"
rc=0
timeout 10 "$GATEWAY_BIN" --no-such-option >"$T/out" 2>"$T/err" </dev/null || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "an unknown option gave status $rc"
stderr_has 'no-such-option' "unknown option"
log "ok: unknown option -> status $rc, $(head -n 1 "$T/err")"
run_gw 2 --check-config --store "$STORE" stray-argument
stderr_has "unexpected argument 'stray-argument'" "stray argument"
log "ok: stray argument -> $(head -n 1 "$T/err")"

# --- the store -----------------------------------------------------------------------------
# store_refused URL REGEX: --store URL is refused with status 2, by
# --check-config and by a start alike.
store_refused() {
	run_gw 2 --check-config --store "$1"
	stderr_has "^pimap-gateway: command line: store\.url: $2" "--store $1"
	log "ok: --check-config --store $1 -> $(head -n 1 "$T/err")"
	run_gw 2 -f --listen "127.0.0.1:$(free_port)" --listen-starttls none --state-dir "$T/refused-state" \
		--store "$1"
	stderr_has "store\.url: $2" "start with --store $1"
	[ ! -e "$T/refused-state" ] || fail "a refused start created its state dir"
}
store_refused pimaps://gw.example.org 'a store is an IMAP server: expected imaps:// or imap://, not pimaps://'
store_refused pimap://gw.example.org:2143 'a store is an IMAP server: expected imaps:// or imap://, not pimap://'
store_refused https://gw.example.org/pimap 'a store is an IMAP server: expected imaps:// or imap://, not https://'
store_refused http://store.example.org "unknown scheme 'http'"
store_refused imaps://alice@store.example.org 'user info'
store_refused 'imaps://store.example.org:0' "port '0' out of range"
run_gw 0 --check-config --store imap://127.0.0.1:1143 --allow-plaintext-store
log "ok: an imap:// store (STARTTLS) with --allow-plaintext-store passes"
run_gw 0 --check-config --store 'imaps://[::1]'
log "ok: an IPv6 store passes"

# no store: a warning for --check-config (above), an error for a start
run_gw 2 -f --listen "127.0.0.1:$(free_port)" --listen-starttls none --state-dir "$T/nostore-state"
stderr_has '^pimap-gateway: store\.url is required' "start without a store"
log "ok: start without a store -> $(head -n 1 "$T/err")"
printf 'store:\n  url: ""\n' >"$T/empty-store.yaml"
run_gw 2 -f --config "$T/empty-store.yaml" --listen "127.0.0.1:$(free_port)" --listen-starttls none \
	--state-dir "$T/nostore-state"
stderr_has 'store\.url is required' "start with an empty store.url in the file"
[ ! -e "$T/nostore-state" ] || fail "a start without a store created its state dir"
log "ok: start with store.url \"\" in the file -> status 2"

# --- flags override the file ---------------------------------------------------------------
cat >"$T/base.yaml" <<'YAML'
listen:
  pimaps: "0.0.0.0:2993"
  pimap: []
store:
  url: "imaps://file.example.org:993"
  ca_file: "/nonexistent/file-ca.pem"
session:
  lifetime: 4h
log:
  level: warn
limits:
  max_queued_events: 50
  max_clients: 77
YAML
run_gw 0 --config "$T/base.yaml" --dump-config
grep -Eq '^  lifetime: 4h$' "$T/out" || fail "dump does not show the file's session.lifetime"
grep -Eq '^  level: warn$' "$T/out" || fail "dump does not show the file's log.level"
grep -Eq '^  pimap: \[\]$' "$T/out" || fail "dump does not show the file's empty listen.pimap"
run_gw 0 --config "$T/base.yaml" --store imap://flag.example.org:1143 --ca-file /flag/ca.pem \
	--listen 127.0.0.1:3993 --listen '[::1]:3993' --listen-starttls :3143 --listen-https 127.0.0.1:3443 \
	--allow-plaintext-store \
	--state-dir /flag/state --pid-file /flag/gw.pid --log-file /flag/gw.log --trace \
	--set session.lifetime=48h --set limits.max_queued_events=3 -v --dump-config
cp "$T/out" "$T/dump.yaml"
add_log "$T/dump.yaml"
want() { grep -Eq -- "$1" "$T/dump.yaml" || fail "$2"; }
want '^  url: "imap://flag\.example\.org:1143"$' "--store did not override store.url"
want '^  ca_file: "/flag/ca\.pem"$' "--ca-file did not override store.ca_file"
want '^  allow_plaintext: true$' "--allow-plaintext-store did not set store.allow_plaintext"
want '^  pimaps:$' "listen.pimaps is not a list"
grep -A2 '^  pimaps:$' "$T/dump.yaml" | grep -q '"127.0.0.1:3993"' &&
	grep -A2 '^  pimaps:$' "$T/dump.yaml" | grep -q '"\[::1\]:3993"' ||
	fail "repeated --listen did not give both addresses"
grep -q '0\.0\.0\.0:2993' "$T/dump.yaml" && fail "--listen did not replace the file's listen.pimaps"
grep -A1 '^  pimap:$' "$T/dump.yaml" | grep -q '":3143"' || fail "--listen-starttls did not set listen.pimap"
grep -A1 '^  https:$' "$T/dump.yaml" | grep -q '"127.0.0.1:3443"' || fail "--listen-https did not set listen.https"
want '^state_dir: "/flag/state"$' "--state-dir did not override state_dir"
want '^pid_file: "/flag/gw\.pid"$' "--pid-file did not set pid_file"
want '^  file: "/flag/gw\.log"$' "--log-file did not set log.file"
want '^  trace: true$' "--trace did not set log.trace"
want '^  level: debug$' "-v did not override log.level"
want '^  lifetime: 48h$' "--set did not override session.lifetime"
want '^  max_queued_events: 3$' "--set did not override limits.max_queued_events"
want '^  max_clients: 77$' "a file value not given as a flag was lost"
log "ok: flags override the file, other file values stay"
# later flags win over earlier ones for the same key
run_gw 0 --store imaps://first.example.org --store imaps://second.example.org \
	--set log.level=error --verbose --dump-config
grep -Eq '^  url: "imaps://second\.example\.org"$' "$T/out" || fail "the last --store did not win"
grep -Eq '^  level: debug$' "$T/out" || fail "--verbose after --set log.level did not win"
log "ok: the last flag for a key wins"

# the dump is a valid configuration and dumps to itself
run_gw 0 --check-config --config "$T/dump.yaml"
run_gw 0 --config "$T/dump.yaml" --dump-config
diff -u "$T/dump.yaml" "$T/out" >&2 || fail "dumping the dump gives a different configuration"
log "ok: the dump round-trips"

# --- lifecycle: pid file, SIGHUP, SIGUSR1, SIGTERM ------------------------------------------
P1=$(free_port)
P2=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done
CLOSED=$(free_port) # nothing listens there: the store is never contacted without a login
CONF=$T/gw.yaml
LIFE_LOG=$T/gateway-life.log
# write_conf LEVEL [STORE] [LIFETIME]: the gateway's config file (written whole, then renamed).
write_conf() {
	cat >"$CONF.tmp" <<-YAML
		listen:
		  pimaps: "127.0.0.1:$P1"
		  pimap: "127.0.0.1:$P2"
		store:
		  url: "${2-imaps://127.0.0.1:$CLOSED}"
		state_dir: "$T/life-state"
		session:
		  lifetime: ${3:-1h}
		log:
		  level: $1
		  file: "$LIFE_LOG"
		pid_file: "$T/gw.pid"
		limits:
		  drain_timeout: 5s
	YAML
	mv "$CONF.tmp" "$CONF"
}
write_conf info
mkdir -p "$T/life-state"
spawn "$T/gateway-life.stderr" "$GATEWAY_BIN" --foreground --config "$CONF"
GPID=$SPAWNED_PID
wait_port 127.0.0.1 "$P1" 15 "$GPID" && wait_port 127.0.0.1 "$P2" 15 "$GPID" ||
	fail "the gateway does not listen on $P1 and $P2"
wait_for 5 test -s "$T/gw.pid" || fail "no pid file"
[ "$(cat "$T/gw.pid")" = "$GPID" ] || fail "pid file holds $(cat "$T/gw.pid"), not $GPID"
wait_log "$LIFE_LOG" "started (pid $GPID)" 5 || fail "no 'started' line in the log"
log "ok: started in the foreground, pid file holds $GPID"

# SIGHUP with a broken file: the error with its position, the old configuration stays
write_conf info "imaps://127.0.0.1:$CLOSED" 0s
kill -HUP "$GPID"
wait_log "$LIFE_LOG" "$CONF:8:13: session.lifetime: must be between 1s and 720h" 10 ||
	fail "SIGHUP with a broken file: no '$CONF:8:13:' error in the log"
wait_log "$LIFE_LOG" "keeping the running one" 5 || fail "SIGHUP with a broken file: not reported as kept"
running "$GPID" || fail "the gateway died on a broken SIGHUP"
port_listening 127.0.0.1 "$P1" || fail "the gateway stopped listening after a broken SIGHUP"
log "ok: SIGHUP with a broken file keeps the running configuration"

# SIGHUP that removes the store: refused like a start without one
write_conf info ""
n=$(grep -c 'keeping the running one' "$LIFE_LOG")
kept_more_than() { [ "$(grep -c 'keeping the running one' "$LIFE_LOG")" -gt "$1" ]; }
kill -HUP "$GPID"
wait_for 10 kept_more_than "$n" ||
	fail "SIGHUP without a store was not refused"
log_has "$LIFE_LOG" "store.url is required" || fail "SIGHUP without a store: no reason in the log"
running "$GPID" || fail "the gateway died on a SIGHUP without a store"
log "ok: SIGHUP without a store keeps the running configuration"

# a good SIGHUP
write_conf debug
kill -HUP "$GPID"
wait_log "$LIFE_LOG" "configuration reloaded" 10 || fail "SIGHUP: no 'configuration reloaded' in the log"
running "$GPID" || fail "the gateway died on SIGHUP"
log "ok: SIGHUP reloads"

kill -USR1 "$GPID"
sleep 0.2
running "$GPID" || fail "the gateway died on SIGUSR1"
log "ok: SIGUSR1 leaves the gateway running"

kill -TERM "$GPID"
wait_gone "$GPID" 15 || fail "the gateway did not exit within 15 s of SIGTERM"
untrack_pid "$GPID"
rc=0
wait "$GPID" 2>/dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
[ ! -e "$T/gw.pid" ] || fail "the pid file is still there after SIGTERM"
log "ok: SIGTERM: exit status 0, pid file removed"

# --- detaching ------------------------------------------------------------------------------
rm -f "$T/gw.pid"
write_conf info
rc=0
timeout 15 "$GATEWAY_BIN" --config "$CONF" >"$T/out" 2>"$T/gateway-detach.stderr" </dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "starting detached: exit status $rc"
wait_for 10 test -s "$T/gw.pid" || fail "detached: no pid file"
DPID=$(cat "$T/gw.pid")
track_pid "$DPID"
running "$DPID" || fail "detached: pid $DPID from the pid file is not running"
wait_port 127.0.0.1 "$P1" 15 "$DPID" || fail "detached: the gateway does not listen on $P1"
[ "$(awk '{print $7}' "/proc/$DPID/stat")" = 0 ] || fail "detached: the daemon still has a controlling terminal"
kill -TERM "$DPID"
wait_gone "$DPID" 15 || fail "detached: the daemon did not exit within 15 s of SIGTERM"
untrack_pid "$DPID"
wait_for 5 test ! -e "$T/gw.pid" || fail "detached: pid file not removed"
log "ok: detaches without -f, pid file names the daemon, SIGTERM stops it"

pass
