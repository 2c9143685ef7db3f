#!/usr/bin/env bash
# Set up everything and run all tests: unit (cmocka, under ASan+UBSan) and
# functional (the engine binary against real servers). Ends with a line
# "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh build-asan -Dsanitizers=true -Dbuildtype=debug -Dwerror=true || {
  echo "0 passed, 1 failed"; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

unit_log=$(mktemp)
meson test -C build-asan --suite unit --print-errorlogs 2>&1 | tee "$unit_log" | grep -vE '^\s*$' | tail -n 40
u_ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$unit_log" | tail -1)
u_fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$unit_log" | tail -1)
u_to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$unit_log" | tail -1)
u_ok=${u_ok:-0}; u_fail=$(( ${u_fail:-0} + ${u_to:-0} ))
[ "$u_ok" -gt 0 ] || u_fail=$((u_fail + 1))

# Functional tests: leak checking is for the unit tests; here the engine
# runs as a user would run it.
func_log=$(mktemp)
ENGINE_BIN=$PWD/build-asan/core/engine ASAN_OPTIONS=detect_leaks=0 \
  python3 tests/functional/run.py "$@" 2>&1 | tee "$func_log"
f_line=$(grep -E '^functional: [0-9]+ passed, [0-9]+ failed' "$func_log" | tail -1)
f_ok=$(echo "$f_line" | sed -n 's/^functional: \([0-9]*\) passed.*/\1/p')
f_fail=$(echo "$f_line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
[ -n "$f_line" ] || { f_ok=0; f_fail=1; }

# Fuzzing: each libFuzzer harness for 20 s from its seed corpus.
z_ok=0; z_fail=0
if bash scripts/fuzz.sh "${ENGINE_FUZZ_SECONDS:-20}"; then z_ok=1; else z_fail=1; fi

passed=$((u_ok + f_ok + z_ok)); failed=$((u_fail + f_fail + z_fail))
echo "unit: $u_ok passed, $u_fail failed"
echo "fuzz: $z_ok passed, $z_fail failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
