#!/bin/bash
# Set up everything on this machine (as quickstart.sh does), then run every test: the layout
# check, unit tests, the same unit tests under ASan+UBSan, a short fuzzing run of the frame
# reader and the catalog parser, and the integration tests against the real daemons.
# As root, on Debian 12. Exit status: 0 when everything passed.
#   contrib/test.sh [INTEGRATION_TEST_PATTERN]
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/setup.sh"

svm_setup
status=0

phase "layout of the core (contrib/check-layout.sh)"
"$SVM_REPO/contrib/check-layout.sh" || status=1

phase "unit tests"
ctest --test-dir "$SVM_BUILD" --output-on-failure -j2 2>&1 | tail -n 25 || status=1

phase "unit tests under ASan + UBSan"
cmake -S "$SVM_REPO" -B "$SVM_BUILD-asan" -DSVM_SANITIZE=ON -DSVM_BUILD_PLUGINS=OFF \
  -DCMAKE_BUILD_TYPE=Debug >"$SVM_CACHE/cmake-asan.log" 2>&1 || { tail -20 "$SVM_CACHE/cmake-asan.log"; exit 1; }
cmake --build "$SVM_BUILD-asan" -j"$(nproc)" 2>&1 | tail -n 3
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$SVM_BUILD-asan" --output-on-failure -j2 2>&1 | tail -n 25 || status=1

phase "fuzzing: frame reader and catalog parser, 20 s each"
cmake -S "$SVM_REPO" -B "$SVM_BUILD-fuzz" -DSVM_FUZZ=ON >"$SVM_CACHE/cmake-fuzz.log" 2>&1 || { tail -20 "$SVM_CACHE/cmake-fuzz.log"; exit 1; }
cmake --build "$SVM_BUILD-fuzz" -j"$(nproc)" 2>&1 | tail -n 3
for f in frame_reader catalog; do
  mkdir -p "$SVM_BUILD-fuzz/corpus/$f"  # new finds go here; tests/fuzz/corpus/$f is only read
  if "$SVM_BUILD-fuzz/tests/fuzz/fuzz_$f" -max_total_time=20 -artifact_prefix="$SVM_BUILD-fuzz/" \
    "$SVM_BUILD-fuzz/corpus/$f" "$SVM_REPO/tests/fuzz/corpus/$f" >"$SVM_LOG/fuzz-$f.log" 2>&1; then
    echo "$f: $(grep '^Done' "$SVM_LOG/fuzz-$f.log")"
  else tail -n 30 "$SVM_LOG/fuzz-$f.log"; status=1; fi
done

phase "integration tests (real daemons, as user $SVM_TEST_USER)"
"$SVM_REPO/tests/integration/run.sh" "${1:-.}" || status=1

phase_summary
echo "logs: $SVM_LOG    stop the cluster: contrib/cluster.sh stop"
exit $status
