#!/bin/sh
# Build pimap and run the demo: a private Dovecot with sample mail, and
# pimap-proxy in front of it. Prints how to point mutt or Thunderbird at it.
# Stop with Ctrl-C; everything it started is stopped and removed.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
./scripts/install-deps.sh
[ -x configure ] || ./autogen.sh
build="$top/build"
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" >configure.log 2>&1 || { cat configure.log; exit 1; }
make -s -j"$(nproc)"
exec env top_srcdir="$top" top_builddir="$build" "$top/tests/integration/lib/demo.sh" "$@"
