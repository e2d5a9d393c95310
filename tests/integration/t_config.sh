#!/bin/bash
# t_config.sh - pimap-proxy's configuration interface:
#  - --check-config accepts the shipped etc/pimap-proxy.yaml (exit 0);
#  - broken files exit 2 with "file:line:col:" on stderr: unknown key, bad
#    enum value, value out of range, duplicate key, YAML syntax error;
#    a missing file, bad --set values, a bad upstream URL or listen address
#    exit 2 too (in --check-config and when starting the daemon);
#  - --help and --version work (exit 0);
#  - flags override file values (--dump-config shows it), and the dump is
#    itself a valid configuration that dumps the same way again.
# No server is needed.
#
# By hand: tests/integration/t_config.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require_proxy
SHIPPED=$top_srcdir/etc/pimap-proxy.yaml
[ -r "$SHIPPED" ] || hard_error "$SHIPPED missing"

# run_proxy EXPECTED-STATUS ARGS...: run the proxy (it must terminate within
# 10 s), stdout in $T/out, stderr in $T/err; fail unless the status matches.
run_proxy() {
	local want=$1 rc=0; shift
	timeout 10 "$PROXY_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
	[ $rc -ne 124 ] || fail "pimap-proxy $* did not finish within 10 s"
	if [ "$rc" -ne "$want" ]; then
		cat "$T/out" "$T/err" >&2
		fail "pimap-proxy $*: exit status $rc, want $want"
	fi
}

# stderr_has REGEX WHAT
stderr_has() {
	grep -Eq -- "$1" "$T/err" || { cat "$T/err" >&2; fail "$2: stderr does not match /$1/"; }
}

# --- the shipped file ------------------------------------------------------------
run_proxy 0 --check-config --config "$SHIPPED"
log "ok: --check-config accepts $SHIPPED as shipped"
run_proxy 0 --check-config --config "$SHIPPED" --upstream imaps://mail.example.org
log "ok: --check-config accepts $SHIPPED with an upstream"

# --- broken files ----------------------------------------------------------------------
# broken NAME LINE COL CONTENT: the file must be refused (exit 2) with
# NAME:LINE:COL: on stderr (COL "*" = any column).
broken() {
	local name=$1 line=$2 col=$3 f="$T/$1"
	printf '%b' "$4" >"$f"
	run_proxy 2 --check-config --config "$f" --upstream imaps://mail.example.org
	if [ "$col" = '*' ]; then col='[0-9]+'; fi
	stderr_has "$(printf '%s' "$f" | sed 's/[.[\*^$()+?{|]/\\&/g'):$line:$col:" "$name"
	log "ok: $name -> $(head -n 1 "$T/err")"
}
broken unknown-key.yaml 3 3 'log:\n  level: info\n  colour: blue\n'
broken unknown-top-key.yaml 2 1 'pid_file: ""\ncolour: blue\n'
broken bad-enum.yaml 2 10 'log:\n  level: loud\n'
broken out-of-range.yaml 3 20 '# comment\nlimits:\n  max_line_length: 10\n'
broken bad-duration.yaml 2 18 'limits:\n  drain_timeout: soon\n'
broken bad-bool.yaml 2 20 'upstream:\n  allow_plaintext: maybe\n'
broken duplicate-key.yaml 5 1 'limits:\n  max_clients: 5\nlog:\n  level: info\nlimits.max_clients: 6\n'
broken syntax-error.yaml '[0-9]+' '*' 'log:\n  level: info\n  file: [unclosed\nlimits:\n  max_clients: 1\n'
broken bad-indent.yaml '[0-9]+' '*' 'log:\n  level: info\n   file: x\n'

# --- other errors ------------------------------------------------------------------------
run_proxy 2 --check-config --config "$T/does-not-exist.yaml" --upstream imaps://mail.example.org
stderr_has 'does-not-exist\.yaml' "missing config file"
log "ok: a missing config file -> $(head -n 1 "$T/err")"
run_proxy 2 --check-config --upstream imaps://mail.example.org --set limits.max_line_length=lots
stderr_has 'limits\.max_line_length' "bad --set value"
log "ok: bad --set value -> $(head -n 1 "$T/err")"
run_proxy 2 --check-config --upstream imaps://mail.example.org --set no.such_key=1
stderr_has 'no\.such_key' "unknown --set key"
log "ok: unknown --set key -> $(head -n 1 "$T/err")"
# --check-config must catch what would stop the daemon from starting
run_proxy 2 --check-config --upstream 'ftp://mail.example.org'
stderr_has 'ftp' "bad upstream URL"
log "ok: bad --upstream -> $(head -n 1 "$T/err")"
run_proxy 2 --check-config --upstream 'imaps://user@mail.example.org'
stderr_has 'upstream' "upstream URL with credentials"
log "ok: --upstream with user@ -> $(head -n 1 "$T/err")"
run_proxy 2 --check-config --upstream 'imaps://mail.example.org' --listen 'no-port-here'
stderr_has 'no-port-here' "bad listen address"
log "ok: bad --listen -> $(head -n 1 "$T/err")"
printf 'upstream:\n  url: "gopher://mail.example.org"\n' >"$T/bad-url.yaml"
run_proxy 2 --check-config --config "$T/bad-url.yaml"
stderr_has "bad-url\.yaml:2:[0-9]+:" "bad upstream.url in a file"
log "ok: bad upstream.url in a file -> $(head -n 1 "$T/err")"
# and the daemon itself refuses to start with status 2, not only --check-config
run_proxy 2 --foreground --listen "127.0.0.1:$(free_port)" --listen-tls none \
	--state-dir "$T/state" --upstream 'ftp://mail.example.org'
log "ok: the daemon refuses a bad --upstream with status 2"
rc=0
timeout 10 "$PROXY_BIN" --no-such-option >"$T/out" 2>"$T/err" </dev/null || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "an unknown option gave status $rc"
stderr_has 'no-such-option' "unknown option"
log "ok: unknown option -> status $rc, $(head -n 1 "$T/err")"

# --- --help, --version -----------------------------------------------------------------
run_proxy 0 --help
grep -q -- '--upstream' "$T/out" && grep -q -- '--listen' "$T/out" && grep -q -- '--check-config' "$T/out" ||
	fail "--help does not describe --upstream/--listen/--check-config"
run_proxy 0 --version
grep -Eq '^pimap-proxy [0-9]+\.[0-9]+' "$T/out" || fail "--version printed: $(cat "$T/out")"
log "ok: --help, --version ($(cat "$T/out"))"

# --- flags override the file ---------------------------------------------------------------
cat >"$T/base.yaml" <<'YAML'
upstream:
  url: "imaps://file.example.org:993"
  ca_file: "/nonexistent/file-ca.pem"
log:
  level: warn
limits:
  max_line_length: 8K
  max_clients: 77
YAML
run_proxy 0 --config "$T/base.yaml" --dump-config
cp "$T/out" "$T/dump-file-only.yaml"
grep -Eq '^  max_line_length: (8K|8192)$' "$T/out" || fail "dump does not show the file's max_line_length"
grep -Eq '^  level: warn$' "$T/out" || fail "dump does not show the file's log.level"
run_proxy 0 --config "$T/base.yaml" --upstream imaps://flag.example.org:1993 \
	--set limits.max_line_length=16K -v --dump-config
cp "$T/out" "$T/dump.yaml"
add_log "$T/dump.yaml"
grep -Eq '^  url: "?imaps://flag\.example\.org:1993"?$' "$T/out" || fail "--upstream did not override upstream.url"
grep -Eq '^  max_line_length: (16K|16384)$' "$T/out" || fail "--set did not override limits.max_line_length"
grep -Eq '^  level: debug$' "$T/out" || fail "-v did not override log.level"
grep -Eq '^  max_clients: 77$' "$T/out" || fail "a file value not given as a flag was lost"
grep -Eq '^  ca_file: "?/nonexistent/file-ca\.pem"?$' "$T/out" || fail "upstream.ca_file from the file was lost"
log "ok: flags override the file, other file values stay"

# the dump is a valid configuration and dumps to itself
run_proxy 0 --check-config --config "$T/dump.yaml"
run_proxy 0 --config "$T/dump.yaml" --dump-config
diff -u "$T/dump.yaml" "$T/out" >&2 || fail "dumping the dump gives a different configuration"
log "ok: the dump round-trips"

pass
