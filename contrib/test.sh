#!/bin/bash
# Set up everything on this machine (as quickstart.sh does), then run every test: the layout
# check, unit tests, the same unit tests under ASan+UBSan, a short fuzzing run of the frame
# reader and the catalog parser, and the integration tests against the real daemons.
# As root, on Debian 12 or 13. Exit status: 0 when everything passed.
#
#   contrib/test.sh [--platform P] [INTEGRATION_TEST_PATTERN]
#
#   --platform host         (default) this machine, with its own Debian release
#   --platform debian13     inside a Debian 13 root made on this machine (Slurm 24.11, QEMU 10,
#                           libvirt 11): unit and integration tests (the sanitizer and fuzzing
#                           runs test our code, not the platform: they run on the host only)
#   --platform debian13-vm  inside a Debian 13 system VM (systemd, cgroup v2) booted here under
#                           User-Mode Linux, with job VMs nested in it: the containment tests
#   --platform all          the three, one after the other
#   --platform host,debian13  those, one after the other (what CI runs: .ci/run)
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/setup.sh"
. "$SVM_REPO/contrib/lib/platform.sh"

platform_option "$@"
pattern=${SVM_REST[0]:-.}

[ "$SVM_PLATFORM_ARG" = all ] && SVM_PLATFORM_ARG=host,debian13,debian13-vm
case "$SVM_PLATFORM_ARG" in
  host) ;;
  debian13)
    d13_enter contrib/test.sh "$pattern"
    exit
    ;;
  debian13-vm)
    d13vm_enter contrib/test.sh "${SVM_REST[0]:-$SVM_D13VM_TESTS}"
    exit
    ;;
  *,*)
    # Each platform in turn; a failure on one does not hide the others'. The host's cluster
    # is stopped when a platform's starts (one cluster per machine). What the Debian 13 root
    # needs before its cluster starts (debootstrap, packages, Slurm's configured source, the
    # build) is mostly downloads and unpacking: it is made meanwhile, in the background, while
    # the host's tests run; its log is $SVM_LOG/debian13-setup.log.
    need_root
    install -d -m 0755 "$SVM_LOG"
    d13_setup=
    if [[ ",$SVM_PLATFORM_ARG," == *,debian13* ]]; then
      # At the lowest priority: the host's guests are timed by its tests.
      (renice -n 19 "$BASHPID" >/dev/null && d13_build && d13_mount && d13_install) \
        >"$SVM_LOG/debian13-setup.log" 2>&1 </dev/null &
      d13_setup=$!
    fi
    results=()
    overall=0
    for p in ${SVM_PLATFORM_ARG//,/ }; do
      if [[ "$p" == debian13* && -n "$d13_setup" ]]; then
        wait "$d13_setup" || { tail -30 "$SVM_LOG/debian13-setup.log"
          echo "the Debian 13 root could not be set up (log: $SVM_LOG/debian13-setup.log)"; }
        d13_setup=
      fi
      t0=$(date +%s)
      if "$0" --platform "$p" "${SVM_REST[@]}"; then r=passed; else r=FAILED; overall=1; fi
      results+=("$(printf '%-12s %-7s %5.1f min' "$p" "$r" "$(awk -v s=$(($(date +%s) - t0)) 'BEGIN{print s/60}')")")
    done
    printf '\nPlatforms:\n'
    printf '  %s\n' "${results[@]}"
    exit $overall
    ;;
esac

svm_setup
status=0

# In the debian13-vm platform's system VM the tree is read-only and the build is the debian13
# platform's, whose unit tests ran there: only the integration tests run.
if [ "${SVM_PLATFORM:-}" != debian13-vm ]; then
  phase "layout of the core (contrib/check-layout.sh)"
  "$SVM_REPO/contrib/check-layout.sh" || status=1

  phase "hardening of the build (contrib/check-hardening.sh)"
  "$SVM_REPO/contrib/check-hardening.sh" "$SVM_BUILD" || status=1

  phase "unit tests"
  ctest --test-dir "$SVM_BUILD" --output-on-failure -j2 2>&1 | tail -n 25 || status=1
fi

if [ -z "${SVM_PLATFORM:-}" ]; then
  phase "unit tests under ASan + UBSan"
  cmake -S "$SVM_REPO" -B "$SVM_BUILD-asan" -DSVM_SANITIZE=ON -DSVM_BUILD_PLUGINS=OFF \
    -DCMAKE_BUILD_TYPE=Debug >"$SVM_CACHE/cmake-asan.log" 2>&1 || { tail -20 "$SVM_CACHE/cmake-asan.log"; exit 1; }
  cmake --build "$SVM_BUILD-asan" -j"$(nproc)" 2>&1 | tail -n 3
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$SVM_BUILD-asan" --output-on-failure -j2 2>&1 | tail -n 25 || status=1

  phase "fuzzing: frame reader and catalog parser, 20 s each"
  cmake -S "$SVM_REPO" -B "$SVM_BUILD-fuzz" -DSVM_FUZZ=ON >"$SVM_CACHE/cmake-fuzz.log" 2>&1 || { tail -20 "$SVM_CACHE/cmake-fuzz.log"; exit 1; }
  cmake --build "$SVM_BUILD-fuzz" -j"$(nproc)" 2>&1 | tail -n 3
  for f in frame_reader catalog; do
    mkdir -p "$SVM_BUILD-fuzz/corpus/$f" # new finds go here; tests/fuzz/corpus/$f is only read
    if "$SVM_BUILD-fuzz/tests/fuzz/fuzz_$f" -max_total_time=20 -artifact_prefix="$SVM_BUILD-fuzz/" \
      "$SVM_BUILD-fuzz/corpus/$f" "$SVM_REPO/tests/fuzz/corpus/$f" >"$SVM_LOG/fuzz-$f.log" 2>&1; then
      echo "$f: $(grep '^Done' "$SVM_LOG/fuzz-$f.log")"
    else
      tail -n 30 "$SVM_LOG/fuzz-$f.log"
      status=1
    fi
  done
fi

phase "integration tests (real daemons, as user $SVM_TEST_USER)"
"$SVM_REPO/tests/integration/run.sh" "$pattern" || status=1

phase_summary
echo "logs: $SVM_LOG    stop the cluster: contrib/cluster.sh stop"
exit $status
