#!/bin/sh
# replay-corpus.sh - run every fuzz target once over its corpus (seeds and
# regression inputs), under the build's sanitizers. Part of `make check`,
# in the normal build (replay driver) and in a --enable-fuzzing build
# (libFuzzer, -runs=0: each input once, no fuzzing). A crash, a failed
# property check or a sanitizer report fails the test and names the input.
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
corpora="$top_srcdir/tests/fuzz/corpus"
status=0
# Every target has a corpus directory named after it.
for name in $(cd "$corpora" && ls); do
	bin="$top_builddir/tests/fuzz/fuzz_$name"
	dir="$corpora/$name"
	if [ ! -x "$bin" ]; then
		echo "replay-corpus: $bin not built" >&2
		exit 99
	fi
	[ -d "$dir" ] || { echo "replay-corpus: no corpus $dir" >&2; exit 99; }
	count=$(find "$dir" -type f | wc -l)
	started=$(date +%s)
	if "$bin" -runs=0 -artifact_prefix="fuzz-replay-$name-" "$dir" >"fuzz-replay-$name.log" 2>&1; then
		echo "replay-corpus: $name: $count inputs ok ($(( $(date +%s) - started )) s)"
	else
		echo "replay-corpus: $name: FAILED"
		tail -n 40 "fuzz-replay-$name.log"
		status=1
	fi
done
exit $status
