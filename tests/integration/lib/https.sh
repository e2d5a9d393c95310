# shellcheck shell=bash
# https.sh - helpers for the HTTPS binding tests (sourced after harness.sh):
# curl with the test CA, in-response POSTs with a cookie jar, raw bytes over
# TLS for requests curl will not send.

# hcurl ARGS...: curl, quiet but showing errors, trusting the test CA only.
hcurl() { curl -sS --cacert "$CA" "$@"; }

# ir_post NAME BODY [CURL-ARGS...]: an in-response POST of BODY to $URL with
# the cookie jar $T/jar; the head goes to $T/NAME.head, the body to
# $T/NAME.body.
ir_post() {
	local name=$1 body=$2; shift 2
	printf '%s' "$body" >"$T/$name.req"
	hcurl -b "$T/jar" -c "$T/jar" -H 'Content-Type: application/vnd.pimap' -H 'Expect:' \
		--data-binary "@$T/$name.req" -D "$T/$name.head" -o "$T/$name.body" "$@" "$URL" ||
		fail "curl failed for $name"
}

# http_code NAME: the status of $T/NAME.head (the last status line: 100 Continue comes first).
http_code() { awk '/^HTTP\//{c=$2} END{print c}' "$T/$1.head"; }

# body_has NAME REGEX: a line of $T/NAME.body (CRs removed) matches REGEX (grep -E).
body_has() { tr -d '\r' <"$T/$1.body" | grep -qE -- "$2"; }

# raw_https PORT [TIMEOUT]: send stdin as raw bytes over TLS to 127.0.0.1:PORT
# (certificate checked against $CA for "localhost"), print what comes back
# until the server closes or TIMEOUT seconds (default 10) pass.
raw_https() { python3 "$HARNESS_LIB/rawhttps.py" "$CA" "$1" "${2:-10}"; }

# crypto_python: print a python3 that has the cryptography module (AES-GCM, to
# seal or open EXTENDED datagrams as a device would). scripts/install-deps.sh
# installs Debian's python3-cryptography for /usr/bin/python3; a python3
# earlier on PATH may have its own. False if neither does.
crypto_python() {
	local p
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
