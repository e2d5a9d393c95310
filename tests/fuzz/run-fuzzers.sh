#!/bin/sh
# run-fuzzers.sh - build the libFuzzer targets with clang (ASan + UBSan) and
# fuzz each one for a bounded time. CI runs it from scripts/test-all.sh.
#
# Usage: tests/fuzz/run-fuzzers.sh [--merge] [TARGET...]
#   TARGET      a directory name in tests/fuzz/corpus: imap_parse pimap_cmd
#               zio cfg macros roundtrip (default: all of them)
#   --merge     afterwards, merge what the fuzzers found into the checked-in
#               corpora (tests/fuzz/corpus/*; libFuzzer -merge=1 keeps only
#               inputs that add coverage). For developers, never in CI.
#
# Environment:
#   PIMAP_FUZZ_SECONDS   total fuzzing time, shared by the targets (default 180)
#   PIMAP_FUZZ_JOBS      targets fuzzed at the same time (default: CPUs, at most 4)
#   PIMAP_FUZZ_BUILD     build directory (default ./build-fuzz under the source tree)
#   PIMAP_FUZZ_MAX_LEN   largest input tried (default 4096 bytes)
#
# Fuzzing starts from the checked-in corpus (read only) and keeps what it
# finds in the build directory. A crash, a failed property check, a
# sanitizer report, a leak, a timeout (10 s per input) or excessive memory
# (2 GB) stops that target: the script prints the input and how to replay
# it, and exits 1. Fix the bug, then keep the input as a regression case:
#   cp build-fuzz/artifacts/<target>/crash-... tests/fuzz/corpus/<target>/regress-<what>
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
merge=0
targets=""
for a in "$@"; do
	case $a in
	--merge) merge=1 ;;
	-h | --help) sed -n '2,26p' "$0"; exit 0 ;;
	-*) echo "run-fuzzers: unknown option $a" >&2; exit 2 ;;
	*) targets="$targets $a" ;;
	esac
done
# Every target has a corpus directory named after it.
[ -n "$targets" ] || targets=$(cd "$top/tests/fuzz/corpus" && ls)
total=${PIMAP_FUZZ_SECONDS:-180}
jobs=${PIMAP_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -le 4 ] || jobs=4
[ "$jobs" -ge 1 ] || jobs=1
build=${PIMAP_FUZZ_BUILD:-$top/build-fuzz}
max_len=${PIMAP_FUZZ_MAX_LEN:-4096}

# Debian's clang-14 package installs clang-14; "clang" comes with the clang package.
cc=""
for c in ${CC_FUZZ:-clang clang-14}; do
	if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
done
[ -n "$cc" ] || { echo "run-fuzzers: clang is not installed (Debian: clang-14 libclang-rt-14-dev)" >&2; exit 1; }

started=$(date +%s)
mkdir -p "$build"
cd "$build"
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh)
if [ ! -f Makefile ] || ! grep -q 'enable-fuzzing' config.status 2>/dev/null; then
	CC=$cc "$top/configure" --enable-fuzzing >configure.log 2>&1 || { cat configure.log; exit 1; }
fi
make -j"$(nproc 2>/dev/null || echo 1)" fuzz-targets >make.log 2>&1 || { tail -n 40 make.log; exit 1; }
built=$(date +%s)
echo "run-fuzzers: built in $((built - started)) s with clang (ASan, UBSan, libFuzzer)"

ntargets=$(echo $targets | wc -w)
# Time per target: the total divided by the targets, run $jobs at a time
# (fewer targets than jobs: each gets the whole time, not more).
[ "$jobs" -le "$ntargets" ] || jobs=$ntargets
per=$((total * jobs / ntargets))
[ "$per" -ge 5 ] || per=5

# Leaks are failures too; a report must stop the fuzzer at once.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {
	name=$1
	bin="$build/tests/fuzz/fuzz_$name"
	seeds="$top/tests/fuzz/corpus/$name"
	work="$build/corpus/$name"
	art="$build/artifacts/$name"
	mkdir -p "$work" "$art"
	dict=""
	[ ! -f "$top/tests/fuzz/$name.dict" ] || dict="-dict=$top/tests/fuzz/$name.dict"
	log="$build/fuzz-$name.log"
	# shellcheck disable=SC2086
	if "$bin" -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
		-print_final_stats=1 -artifact_prefix="$art/" $dict "$work" "$seeds" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
		echo "run-fuzzers: $name: ok, ${runs:-?} runs in $per s, $cov, $(find "$work" -type f | wc -l) new inputs"
		return 0
	fi
	echo "run-fuzzers: $name: FAILED"
	grep -E 'ERROR|check failed|runtime error|SUMMARY|Test unit written' "$log" | head -n 20
	tail -n 60 "$log"
	for f in "$art"/*; do
		[ -f "$f" ] || continue
		echo "--- input $f (base64):"
		base64 "$f" | head -n 40
		echo "--- replay: $bin $f"
	done
	return 1
}

status=0
running=""
for name in $targets; do
	run_one "$name" >"$build/fuzz-$name.summary" 2>&1 &
	running="$running $!:$name"
	# At most $jobs at a time: wait for the oldest (all run equally long).
	while [ "$(echo $running | wc -w)" -ge "$jobs" ]; do
		first=$(echo $running | cut -d' ' -f1)
		wait "${first%%:*}" || status=1
		cat "$build/fuzz-${first#*:}.summary"
		running=$(echo $running | cut -s -d' ' -f2-)
	done
done
for entry in $running; do
	wait "${entry%%:*}" || status=1
	cat "$build/fuzz-${entry#*:}.summary"
done

if [ "$merge" = 1 ] && [ "$status" = 0 ]; then
	for name in $targets; do
		"$build/tests/fuzz/fuzz_$name" -merge=1 -max_len="$max_len" "$top/tests/fuzz/corpus/$name" \
			"$build/corpus/$name" >"$build/merge-$name.log" 2>&1 || { tail "$build/merge-$name.log"; status=1; }
		echo "run-fuzzers: merged $name: $(find "$top/tests/fuzz/corpus/$name" -type f | wc -l) inputs"
	done
fi
echo "run-fuzzers: $((built - started)) s build + $(( $(date +%s) - built )) s fuzzing (PIMAP_FUZZ_SECONDS=$total, $jobs at a time)"
[ "$status" = 0 ] || echo "run-fuzzers: FAILED"
exit "$status"
