#!/bin/sh
# Install what pimap needs to build, test and run its demo on Debian 12.
# Runs apt-get as root (directly, or through sudo when not root).
set -eu
PACKAGES="build-essential autoconf automake libtool pkg-config
  libev-dev libgnutls28-dev gnutls-bin zlib1g-dev libyaml-dev libcunit1-dev libsqlite3-dev sqlite3 libhttp-parser-dev curl
  dovecot-imapd dovecot-lmtpd dovecot-submissiond mutt libsasl2-modules swaks tmux socat python3 python3-cryptography
  tinyproxy-bin
  ca-certificates procps clang-14 libclang-rt-14-dev
  thunderbird xvfb xdotool imagemagick iproute2 isync groff-base systemd gnuplot-nox"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing:$missing"
# Debian's dovecot packages try to start their own service; in containers and
# on developer machines we run private instances only.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
