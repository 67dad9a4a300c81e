#!/bin/bash
# Run the integration tests against the running cluster:
#   tests/integration/run.sh [NAME_PATTERN]
# Every test_* function of every test_*.sh file runs in its own subshell with a fresh folder.
# A failing test prints the end of the logs that explain it; a test that does not apply to the
# host calls skip (exit status 77). Ends with "N passed, N failed[, N skipped]".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
pattern=${1:-.}
passed=0
failed=0
skipped=0
failed_names=()
file_names=()
file_times=()
file_counts=()
suite_start=$(date +%s.%N)
[ "$(id -u)" = 0 ] || { echo "run.sh must run as root (it reads daemons' logs and libvirt)"; exit 2; }

print_logs() {
  local since=$1 f
  for f in "$SVM_LOG"/slurmctld.log "$SVM_LOG"/slurmd-node*.log; do
    [ -f "$f" ] || continue
    echo "    --- last lines of $f"
    tail -n 15 "$f" | sed 's/^/    | /'
  done
  for f in $(find "$SVM_LOG/guests" -name '*.log' -newer "$since" 2>/dev/null | head -3); do
    echo "    --- $f"
    tail -n 10 "$f" | sed 's/^/    | /'
  done
}

for file in "$here"/test_*.sh; do
  file_start=$(date +%s.%N)
  file_count=0
  # The pattern is matched against "test_<file>::test_<name>", as the results are printed.
  for t in $(bash -c ". '$here/lib.sh'; . '$file'; declare -F" | awk -v f="$(basename "$file" .sh)" '$3 ~ /^test_/ {print f "::" $3}' |
    grep -E -- "$pattern" | sed 's/.*:://'); do
    stamp=$(mktemp)
    start=$(date +%s.%N)
    dir=/home/$SVM_TEST_USER/svm-tests/$t
    rm -rf "$dir"
    install -d -o "$SVM_TEST_USER" -g "$(id -gn "$SVM_TEST_USER")" -m 0755 "/home/$SVM_TEST_USER/svm-tests" "$dir"
    out=$(TEST_DIR=$dir bash -c ". '$here/lib.sh'; . '$file'; set -e; TEST_DIR='$dir'; cd '$dir'; $t" 2>&1)
    rc=$?
    took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    if [ $rc = 0 ]; then
      passed=$((passed + 1))
      printf 'ok   %-55s %6ss\n' "$(basename "$file" .sh)::$t" "$took"
    elif [ $rc = 77 ]; then
      skipped=$((skipped + 1))
      printf 'skip %-55s %s\n' "$(basename "$file" .sh)::$t" "$(printf '%s\n' "$out" | sed -n 's/^ *SKIP: //p' | tail -1)"
    else
      failed=$((failed + 1))
      failed_names+=("$(basename "$file" .sh)::$t")
      printf 'FAIL %-55s %6ss\n' "$(basename "$file" .sh)::$t" "$took"
      printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
      print_logs "$stamp"
    fi
    rm -f "$stamp"
    file_count=$((file_count + 1))
  done
  if [ $file_count -gt 0 ]; then
    file_names+=("$(basename "$file" .sh)")
    file_counts+=("$file_count")
    file_times+=("$(awk -v a="$file_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')")
  fi
done
echo
# The time table: where the suite's minutes go, per file, longest first.
printf '%-24s %6s %9s\n' FILE TESTS SECONDS
for i in "${!file_names[@]}"; do
  printf '%-24s %6s %9s\n' "${file_names[$i]}" "${file_counts[$i]}" "${file_times[$i]}"
done | sort -k3 -n -r
printf '%-24s %6s %9s\n' total "$((passed + failed + skipped))" \
  "$(awk -v a="$suite_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')"
echo
[ $failed = 0 ] || printf 'failed: %s\n' "${failed_names[@]}"
echo "integration: $passed passed, $failed failed$([ $skipped = 0 ] || echo ", $skipped skipped")"
[ $failed = 0 ]
