#!/usr/bin/env bash
# Runs every test binary of the given build folders from the repository root
# and prints one closing line "N passed, N failed" over all of them.
#
# NURI_TEST_WRAPPER: a command that runs the binaries, e.g.
#   NURI_TEST_WRAPPER="qemu-aarch64 -cpu cortex-a53" tests/run_tests.sh build-arm
# runs a cross-built suite under emulation: the tests go through it, $NURI_BIN
# becomes a script that does the same for nuri (so a test or a host tool may
# exec it), and tests/support/test.c's test_run passes it on to the test
# binaries that re-run themselves.
# NURI_TEST_SKIP: test names (test_chat ...) not to run, each reported as SKIP.
set -u
cd "$(dirname "$0")/.."
total_pass=0 total_fail=0 broken=0
wrapper=${NURI_TEST_WRAPPER:-}
wrap_dir=
if [ -n "$wrapper" ]; then
  wrap_dir=$(mktemp -d)
  trap 'rm -rf "$wrap_dir"' EXIT
fi
for dir in "$@"; do
  nuri_bin="$dir/nuri"
  if [ -n "$wrapper" ] && [ -x "$dir/nuri" ]; then
    nuri_bin="$wrap_dir/nuri-$(echo "$dir" | tr -c 'A-Za-z0-9_\n' _)"
    printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$wrapper" "$(cd "$dir" && pwd)/nuri" >"$nuri_bin"
    chmod +x "$nuri_bin"
  fi
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    case " ${NURI_TEST_SKIP:-} " in
      *" $(basename "$t") "*) echo "== $t: SKIP (NURI_TEST_SKIP)"; continue ;;
    esac
    log=$(mktemp)
    # $wrapper is split into words on purpose.
    NURI_BIN="$nuri_bin" $wrapper "$t" >"$log" 2>&1
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
