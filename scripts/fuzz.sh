#!/usr/bin/env bash
# Build the libFuzzer harnesses (tests/fuzz, clang) and run each for
# SECONDS (default 30) from its seed corpus, as many at once as there are
# cores (FUZZ_JOBS); any crash, leak or sanitizer
# report fails. Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
# Long runs: docs/fuzzing.md.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(runbook expr lua_pattern audit convert cmdline fleet journal index sql lint retention age aws_xml s3_answer demux docker_answer pgurl pgbr recovery_log)
BUILD=build-fuzz
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzz=true -Dtests=disabled \
    -Dbuildtype=debugoptimized -Dpostgres=disabled -Ds3=disabled \
    -Dprisma=disabled -Dslack=disabled -Dpagerduty=disabled -Dman=disabled >/dev/null ||
    { echo "fuzz: cannot configure (is clang installed?)"; exit 1; }
fi
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }
# One harness: its report line on stdout; non-zero when it found something.
run_one() {
  local h=$1 work log st runs dict=()
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$h"/* "$work"/ 2>/dev/null
  [ -f tests/fuzz/"$h".dict ] && dict=(-dict=tests/fuzz/"$h".dict)
  log=$(mktemp)
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$BUILD"/tests/fuzz/fuzz_"$h" "$work" "${dict[@]}" -max_total_time="$secs" \
    -rss_limit_mb=2048 -max_len=65536 -timeout=10 -artifact_prefix="$work"/ >"$log" 2>&1
  st=$?
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1)
  if [ $st -ne 0 ]; then
    echo "fuzz $h: FAILED (exit $st); the input is kept in $work:"
    grep -E 'ERROR|SUMMARY|runtime error|crash-|leak-|timeout-' "$log" | head -20
  else
    echo "fuzz $h: ok (${runs:-no runs} in ${secs}s)"
    rm -rf "$work"
  fi
  rm -f "$log"
  return $st
}

# As many harnesses at once as there are cores (FUZZ_JOBS to choose):
# each still gets its SECONDS.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
rc=0
out=$(mktemp -d)
pids=()
for i in "${!harnesses[@]}"; do
  run_one "${harnesses[$i]}" >"$out/$i" 2>&1 &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || rc=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for i in "${!harnesses[@]}"; do cat "$out/$i"; done
rm -rf "$out"
exit $rc
