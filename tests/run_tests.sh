#!/usr/bin/env bash
# Runs every test binary of the given build folders from the repository root
# and prints one closing line "N passed, N failed" over all of them.
set -u
cd "$(dirname "$0")/.."
total_pass=0 total_fail=0 broken=0
for dir in "$@"; do
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    log=$(mktemp)
    NURI_BIN="$dir/nuri" "$t" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; broken=1; fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [ $rc -ne 0 ]; then
      echo "== $t: FAILED (exit $rc)"; grep -E 'FAIL|ERROR|Sanitizer|runtime error' "$log" | head -n 40
    else
      echo "== $t: $p passed"
    fi
    grep -E '^SKIP' "$log" | head -n 5
    rm -f "$log"
  done
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
