#!/bin/sh
# Runs every unit test binary and integration script; ends with "tests: N passed, N failed".
BUILD=${BUILD:-build}
pass=0
fail=0
failed_names=""
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p))
    fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_names="$failed_names $(basename "$t")"
done
for s in tests/integration/*.sh; do
    [ -f "$s" ] || continue
    echo "== $s"
    if BUILD="$BUILD" sh "$s"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed_names="$failed_names $(basename "$s")"
    fi
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
