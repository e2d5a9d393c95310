#!/bin/sh
# Install what the tests need, build with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run every test (unit + integration), then
# fuzz every parser for a bounded time (tests/fuzz/run-fuzzers.sh; 3 minutes
# in all unless PIMAP_FUZZ_SECONDS says otherwise).
# Usage: ./scripts/test-all.sh [--no-distcheck] [--no-fuzz]
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
distcheck=1
fuzz=1
for a in "$@"; do
	case $a in
	--no-distcheck) distcheck=0 ;;
	--no-fuzz) fuzz=0 ;;
	*) echo "usage: $0 [--no-distcheck] [--no-fuzz]" >&2; exit 2 ;;
	esac
done
./scripts/install-deps.sh

[ -x configure ] || ./autogen.sh
build="$top/build-test"
mkdir -p "$build"
cd "$build"
"$top/configure" --enable-sanitizers --prefix="$build/inst" >configure.log 2>&1 || {
	cat configure.log; exit 1; }
tail -n 12 configure.log
make -j"$(nproc)"

# Sanitizer reports fail the run; leaks are reported at exit.
export ASAN_OPTIONS="abort_on_error=0:detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
started=$(date +%s)
make -j1 check || status=$?
echo "make check took $(( $(date +%s) - started )) s"
for log in tests/unit/*.log tests/integration/*.log; do
	[ -f "$log" ] || continue
	case "$log" in *test-suite.log) continue ;; esac
	if [ "$status" -ne 0 ] && grep -q "^:test-result: \(FAIL\|ERROR\)" "${log%.log}.trs" 2>/dev/null; then
		echo "===== $log"; cat "$log"
	fi
done
if [ "$status" -ne 0 ]; then
	# CI shows only the end of this output: repeat the last lines of each
	# failing test's log here, after the full logs above.
	for trs in tests/unit/*.trs tests/integration/*.trs; do
		grep -q "^:test-result: \(FAIL\|ERROR\)" "$trs" 2>/dev/null || continue
		# The test's own progress lines end with its verdict; the daemon
		# logs the harness dumps after them would hide it.
		echo "----- ${trs%.trs}.log, the test's last steps:"
		grep -E '^\[t_[a-z0-9_]+ +[0-9.]+s\]' "${trs%.trs}.log" | tail -n 15
		echo "----- and its last lines:"
		tail -n 8 "${trs%.trs}.log"
	done
fi
[ -f test-suite.log ] && grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' test-suite.log || true
if [ "$status" -ne 0 ]; then
	echo "test-all: FAILED"
	exit "$status"
fi
if [ "$fuzz" = 1 ]; then
	# libFuzzer targets in a clang build of their own (build-fuzz), each for
	# its share of PIMAP_FUZZ_SECONDS; a crash or a failed check fails CI.
	started=$(date +%s)
	"$top/tests/fuzz/run-fuzzers.sh" || { echo "test-all: fuzzing FAILED"; exit 1; }
	echo "fuzzing took $(( $(date +%s) - started )) s"
fi
if [ "$distcheck" = 1 ]; then
	# The tarball must build and pass its unit tests on its own.
	make distcheck DISTCHECK_CONFIGURE_FLAGS="--disable-werror" TESTS="tests/unit/run_unit" >distcheck.log 2>&1 || {
		tail -n 60 distcheck.log; echo "test-all: distcheck FAILED"; exit 1; }
	grep -A2 "archives ready" distcheck.log | head -3
fi
# One closing line: CUnit cases plus integration scripts.
unit_pass=$(sed -n 's/^unit: \([0-9]*\) passed.*/\1/p' tests/unit/run_unit.log)
int_pass=$(grep -h '^:test-result: PASS' tests/integration/*.trs | wc -l)
echo "test-all: $((unit_pass + int_pass)) passed, 0 failed"
