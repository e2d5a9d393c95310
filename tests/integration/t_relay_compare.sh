#!/bin/bash
# t_relay_compare.sh - pimap-proxy relays a whole IMAP session faithfully.
#
# One scripted session (lib/relay-session.imap: LOGIN, CAPABILITY, ID,
# NAMESPACE, LIST/LSUB, CREATE/DELETE, SELECT, STATUS, FETCH of every kind,
# SEARCH, STORE, APPEND with sync and LITERAL+ literals, COPY, EXPUNGE,
# pipelined commands, NOOP, LOGOUT, then LOGIN with literals and AUTHENTICATE
# PLAIN with and without SASL-IR) runs three times, each time on a fresh
# Dovecot holding the same four delivered messages:
#   1. directly on Dovecot's plain port,
#   2. through the proxy, upstream imaps:// (implicit TLS, verified by CA),
#   3. through the proxy, upstream imap:// (STARTTLS).
# The transcripts after the greeting must be identical, with tags numbered,
# CAPABILITY lists compared as sets, and UIDVALIDITY, INTERNALDATE, Dovecot's
# command timings and the order of pipelined replies normalized (these differ
# between two direct runs too). The proxy must also have turned on
# COMPRESS=DEFLATE upstream, and Dovecot must have seen TLS logins.
#
# By hand: tests/integration/t_relay_compare.sh (after building src/pimap-proxy)

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require dovecot certtool
require_proxy
gen_certs

SESSION=$HARNESS_LIB/relay-session.imap

# fresh_store NAME: a new Dovecot instance NAME whose alice has the 4 messages.
fresh_store() {
	start_dovecot "$1"
	deliver_file alice "$HARNESS_LIB/messages/01-plain.eml"
	deliver_file alice "$HARNESS_LIB/messages/02-multipart.eml"
	deliver alice "third: a big one" "$(python3 -c '
for i in range(500):
    print("line %05d of a long body, padded to make it a few tens of kilobytes ........" % i)')"
	deliver alice "fourth: short"
}

# session OUT IMAPC-CONNECTION-ARGS...: run the script, write the transcript.
session() {
	local out=$1; shift
	imapc run "$@" --var USER=alice --var PASS="$DOVECOT_PASS" --normalize \
		--output "$out" "$SESSION" || fail "session failed (transcript: $out)"
	add_log "$out"
}

# compare EXPECTED ACTUAL WHAT: equal transcripts, greetings left out.
compare() {
	grep -v '^S: greeting ' "$1" >"$1.cmp"
	grep -v '^S: greeting ' "$2" >"$2.cmp"
	if ! diff -u "$1.cmp" "$2.cmp" >"$T/diff-$3.txt"; then
		cat "$T/diff-$3.txt" >&2
		fail "transcript $3 differs from the direct one (diff above)"
	fi
	log "transcript $3 equals the direct one ($(wc -l <"$2.cmp") lines)"
}

# check_greetings TRANSCRIPT: every greeting from the proxy is a plain
# "* OK" (never PREAUTH on TCP) with a capability list.
check_greetings() {
	local g n=0
	while IFS= read -r g; do
		n=$((n + 1))
		case $g in
		"S: greeting * OK [CAPABILITY "*IMAP4rev1*"] "*"pimap-proxy ready"*) ;;
		*) fail "unexpected proxy greeting: $g" ;;
		esac
	done < <(grep '^S: greeting ' "$1")
	[ $n -eq 4 ] || fail "expected 4 greetings in $1, got $n"
}

# 1. direct
fresh_store direct
session "$T/direct.txt" --port "$DOVECOT_IMAP"
stop_dovecot

# through_proxy NAME SCHEME PORTVAR: the same session through the proxy with
# upstream SCHEME://127.0.0.1:$PORTVAR of a fresh store. The transcript must
# equal the direct one, every login must have switched the upstream to
# COMPRESS, and Dovecot must have seen only TLS logins.
through_proxy() {
	local name=$1 scheme=$2 portvar=$3 n
	fresh_store "via-$name"
	local url="$scheme://127.0.0.1:${!portvar}"
	P=$(free_port)
	PROXY_LOG=$T/proxy-$name.log
	start_proxy --listen "127.0.0.1:$P" --listen-tls none --upstream "$url" --ca-file "$CA"
	session "$T/via-$name.txt" --port "$P"
	check_greetings "$T/via-$name.txt"
	compare "$T/direct.txt" "$T/via-$name.txt" "$name"
	proxy_alive || fail "proxy died"
	n=$(grep -cF 'upstream COMPRESS=DEFLATE active' "$PROXY_LOG" || true)
	[ "$n" -ge 4 ] || fail "$name: proxy log has 'upstream COMPRESS=DEFLATE active' $n times, want one per login (4)"
	n=$(grep -c 'Login: user=<alice>.*TLS' "$DOVECOT_LOG" || true)
	[ "$n" -ge 4 ] || fail "$name: Dovecot saw $n TLS logins from the proxy, want 4"
	stop_pid "$PROXY_PID"
	stop_dovecot
}

# 2. through the proxy, upstream imaps://; 3. upstream imap:// with STARTTLS
through_proxy imaps imaps DOVECOT_IMAPS
through_proxy starttls imap DOVECOT_IMAP

pass
