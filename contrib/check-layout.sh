#!/bin/bash
# The core's shape, checked: plugins/ never includes a Slurm header, and its folders include
# only downwards:  vm -> catalog, exec, util;  catalog -> util;  exec -> util;  util -> nothing.
# Prints each offending line; exit status 1 when there is one. Run by contrib/test.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0

# allowed FOLDER: the folders of ours a file in plugins/FOLDER may include.
allowed() {
  case "$1" in
    util) echo "util" ;;
    catalog) echo "catalog util" ;;
    exec) echo "exec util" ;;
    vm) echo "vm catalog exec util" ;;
  esac
}

while IFS= read -r file; do
  folder=${file#plugins/}
  folder=${folder%%/*}
  while IFS= read -r line; do
    inc=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p' <<<"$line")
    [ -n "$inc" ] || continue
    case "$inc" in
      slurm/* | src/* | spank.h | *slurm_xlator* )
        echo "$file: includes a Slurm header: $line"; bad=1; continue ;;
    esac
    top=${inc%%/*}
    [ "$top" != "$inc" ] || continue # <string>, <unistd.h>: not ours
    case "$top" in util | catalog | exec | vm | accounting | spank | select | tools | guest) ;;
      *) continue ;;
    esac
    if ! grep -qw -- "$top" <<<"$(allowed "$folder")"; then
      echo "$file: plugins/$folder may not include $inc (allowed: $(allowed "$folder"))"; bad=1
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$file")
done < <(find plugins -name '*.h' -o -name '*.cpp' | sort)

[ $bad = 0 ] && echo "layout: plugins/ includes point down only and no Slurm header"
exit $bad
