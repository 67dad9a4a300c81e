#!/bin/bash
# The tree's shape, checked on the text of every C and C++ file of every folder:
#   - each folder includes only the folders of ours its rule below names. The core (plugins/)
#     includes only downwards: vm -> catalog, exec, util; catalog -> util; exec -> util;
#     exec/protocol (linked into the guest's agent) -> util; util -> nothing of ours;
#   - no Slurm header in the core, accounting, the guest's agent or the tests;
#   - no relative include: a quoted include is named from its root ("util/error.h",
#     "exec/protocol/frame.h") or is a header of the including file's own folder ("agent.h");
#     never "../x.h", nor "protocol/frame.h" from plugins/exec.
# A folder with sources and no rule fails too: a new folder gets its rule here. The build
# checks the same for each target (its include root: svm_include_root in CMakeLists.txt).
# Prints each offending line; exit status 1 when there is one. Run by contrib/test.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bad=0

# The folders of ours, as includes name them (plugins/ is their root in the core).
ours="util catalog exec vm accounting spank select slurm_api tools guest"

# rule FOLDER: "ALLOWED|SLURM": the folders of ours a file in FOLDER may include, and whether
# it may include Slurm's headers. Nothing for a folder without a rule.
rule() {
  case "$1" in
    plugins/util) echo "util|no" ;;
    plugins/catalog) echo "catalog util|no" ;;
    plugins/exec/protocol) echo "exec/protocol util|no" ;;
    plugins/exec) echo "exec util|no" ;;
    plugins/vm) echo "vm catalog exec util|no" ;;
    accounting) echo "accounting vm catalog exec util|no" ;;
    guest) echo "exec/protocol util|no" ;;
    spank) echo "spank slurm_api accounting vm catalog exec util|yes" ;;
    slurm_api | slurm_api/*) echo "slurm_api spank exec util|yes" ;;
    select) echo "slurm_api accounting catalog util|yes" ;;
    tools) echo "accounting vm catalog exec util|yes" ;;
    # tests/unit/<folder> names its own helpers from tests/unit ("exec/agent_harness.h").
    tests/unit/*) echo "accounting vm catalog exec util guest|no" ;;
    tests/fuzz) echo "catalog exec util|no" ;;
    tests/integration/data) echo "|no" ;;
  esac
}

# Whether include INC is one of the folders in ALLOWED ("exec" allows "exec/protocol/x.h";
# "exec/protocol" allows only that sub-folder).
allowed_include() {
  local inc=$1 a
  for a in $2; do
    [[ "$inc" == "$a"/* ]] && return 0
  done
  return 1
}

# Generated headers a folder names bare: Slurm's configured config.h, and the plugin interfaces
# slurm_api/CMakeLists.txt writes (svm_slurm_plugin_interface).
generated_header() {
  case "$1" in config.h | *_interface.h) return 0 ;; esac
  return 1
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files -co --exclude-standard -- '*.c' '*.cpp' '*.h' | sort)
else
  files=$(find . \( -name .git -o -name 'build*' -o -name .cache \) -prune -o \
    \( -name '*.c' -o -name '*.cpp' -o -name '*.h' \) -print | sed 's|^\./||' | sort)
fi

include_re='^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]*)[>"]'
declare -A ruleless=()
while IFS= read -r file; do
  [ -n "$file" ] || continue
  dir=$(dirname "$file")
  r=$(rule "$dir")
  if [ -z "$r" ]; then
    ruleless[$dir]=1
    continue
  fi
  allowed=${r%|*}
  slurm=${r#*|}
  while IFS= read -r line; do
    [[ "$line" =~ $include_re ]] || continue
    inc=${BASH_REMATCH[2]}
    quoted=no
    [ "${BASH_REMATCH[1]}" = '"' ] && quoted=yes
    case "$inc" in
      slurm/* | src/* | spank.h | *slurm_xlator*)
        if [ "$slurm" != yes ]; then
          echo "$file: includes a Slurm header: $line"; bad=1
        fi
        continue ;;
    esac
    if [[ "$inc" == ../* || "$inc" == */../* || "$inc" == ./* ]]; then
      echo "$file: relative include (name it from its root): $line"; bad=1
      continue
    fi
    top=${inc%%/*}
    if [ "$top" = "$inc" ]; then
      # A bare name: a header of the file's own folder, or a generated one; <string> is not ours.
      if [ $quoted = yes ] && [ ! -f "$dir/$inc" ] &&
        ! { [ "$slurm" = yes ] && generated_header "$inc"; }; then
        echo "$file: $inc is not in $dir/ (name it from its root): $line"; bad=1
      fi
      continue
    fi
    if [[ " $ours " != *" $top "* ]]; then
      # Not ours (<sys/stat.h>), unless it is found beside the file: "protocol/frame.h".
      if [ $quoted = yes ] && [ -f "$dir/$inc" ]; then
        echo "$file: relative include (name it from its root): $line"; bad=1
      fi
      continue
    fi
    if ! allowed_include "$inc" "$allowed"; then
      echo "$file: $dir may not include $inc (allowed: ${allowed:-nothing of ours})"; bad=1
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$file")
done <<<"$files"

for dir in "${!ruleless[@]}"; do
  echo "$dir: has C/C++ sources but no rule in contrib/check-layout.sh"; bad=1
done

[ $bad = 0 ] && echo "layout: every folder includes only what its rule allows, no relative include," \
  "and no Slurm header outside spank/, select/, slurm_api/ and tools/"
exit $bad
