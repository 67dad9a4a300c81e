#!/bin/bash
# What root runs is built hardened, checked on the built files themselves with readelf: every
# program and plugin of a build tree (its ELF files outside CMakeFiles/ and tests/: the admin's
# slurm-vm, the exec client, the SPANK and scheduling plugins, the guest's agent) must have
#   - full RELRO: a GNU_RELRO segment, and BIND_NOW (no lazy binding, so the GOT is read-only);
#   - PIE, for a program (ELF type DYN with the PIE flag: ASLR of its own code);
#   - a non-executable stack (a GNU_STACK segment without E);
#   - for a plugin, no exported symbol but what Slurm (or the SPANK plugin) looks up: the
#     plugin_* data, init/fini, job_submit/job_modify, slurm_spank_*, <type>_p_*, and the node
#     module's slurm_vm_node_call; the rest stays hidden behind the linker version scripts;
#   - a stack protector: it calls __stack_chk_fail; and with debug info, every compile unit of
#     ours says -fstack-protector-strong (or -all) in its DW_AT_producer;
#   - fortified calls where it uses them: a binary that calls a libc function _FORTIFY_SOURCE
#     can check also calls some checked variant (__*_chk), as checksec judges it.
# A static program (the agent: a static PIE) carries libc's own __stack_chk_fail and __*_chk,
# so its symbols prove nothing: there, the stack protector is read from the compile units'
# DW_AT_producer and fortification from its line tables, which name glibc's fortify headers
# (string_fortified.h, stdio2.h, ...) only when checked calls were inlined. Both need debug
# info (RelWithDebInfo, as contrib/test.sh builds).
# The flags come from the top CMakeLists.txt. Prints one line per fault; exit status 1 when
# there is one (2 when there is nothing to check). Run by contrib/test.sh.
#
#   contrib/check-hardening.sh [BUILD_DIR]      (default: build/)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
[ -f "$build/CMakeCache.txt" ] || { echo "check-hardening: $build is not a CMake build tree" >&2; exit 2; }
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")

# libc functions that _FORTIFY_SOURCE replaces by a checked __<name>_chk where it can.
fortifiable='memcpy|memmove|mempcpy|memset|stpcpy|stpncpy|strcat|strcpy|strncat|strncpy|sprintf|snprintf|vsprintf|vsnprintf|printf|fprintf|vprintf|vfprintf|dprintf|vdprintf|asprintf|vasprintf|fgets|fread|read|pread|pread64|readlink|readlinkat|getcwd|realpath|recv|recvfrom|poll|ppoll|getgroups|ttyname_r|getlogin_r|gethostname|getdomainname|confstr|wcscpy|wmemcpy|syslog'
fortify_headers='string_fortified\.h|stdio2\.h|fcntl2\.h|socket2\.h|poll2\.h|wchar2\.h'
# What a plugin may export: what Slurm's plugin loaders and the SPANK plugin look up.
plugin_exports='plugin_(name|type|version)|spank_plugin_version|init|fini|job_submit|job_modify|slurm_spank_[a-z0-9_]+|[a-z0-9_]+_p_[a-z0-9_]+|slurm_vm_node_call'

bad=0
fault() {
  echo "$1: $2"
  bad=1
}

# The compile units of ours in $1 (source files below the source tree) without a stack
# protector, one per line; "no-debug-info" when it has none.
unprotected_units() {
  readelf --debug-dump=info --dwarf-depth=1 "$1" 2>/dev/null | awk -v src="$source_dir/" '
    /DW_TAG_compile_unit/ { if (name != "") report(); producer = ""; name = ""; units++ }
    /DW_AT_producer/ { producer = $0 }
    /DW_AT_name/ { sub(/.*: /, ""); name = $0 }
    function report() {
      if (index(name, src) == 1 && producer !~ /-fstack-protector-(strong|all)/) print name
    }
    END { if (name != "") report(); if (units == 0) print "no-debug-info" }'
}

checked=0
while IFS= read -r file; do
  head -c4 "$file" 2>/dev/null | grep -q $'^\x7fELF' || continue
  checked=$((checked + 1))
  type=$(readelf -hW "$file" | sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p')
  segments=$(readelf -lW "$file" 2>/dev/null)
  dynamic=$(readelf -dW "$file" 2>/dev/null)
  symbols=$(readelf --dyn-syms -W "$file" 2>/dev/null)
  program=no
  case "$file" in *.so) ;; *) program=yes ;; esac
  static=$program # a program without an interpreter or a needed library
  grep -q 'INTERP' <<<"$segments" && static=no
  grep -q '(NEEDED)' <<<"$dynamic" && static=no

  grep -q 'GNU_RELRO' <<<"$segments" || fault "$file" "no RELRO segment (link with -Wl,-z,relro)"
  grep -qE '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dynamic" ||
    fault "$file" "no BIND_NOW: its GOT stays writable (link with -Wl,-z,now)"
  stack=$(awk '$1 == "GNU_STACK" {print $7}' <<<"$segments")
  [ "$stack" = RW ] || fault "$file" "its stack may be executable (GNU_STACK: ${stack:-none}): link with -z noexecstack"
  if [ $program = no ]; then
    extra=$(awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $5 != "LOCAL" && $8 != "" {sub(/@.*/, "", $8); print $8}' <<<"$symbols" |
      grep -vxE "$plugin_exports" | sort -u)
    [ -z "$extra" ] || fault "$file" "exports $(wc -l <<<"$extra") symbols Slurm does not look up: $(head -n 3 <<<"$extra" | tr '\n' ' ')(a version script hides them)"
  fi
  if [ $program = yes ] && ! { [ "$type" = DYN ] && grep -qE '\(FLAGS_1\).*PIE' <<<"$dynamic"; }; then
    fault "$file" "a program that is not PIE (ELF type $type): build with POSITION_INDEPENDENT_CODE and link with -pie"
  fi

  units=$(unprotected_units "$file")
  if [ $static = no ]; then
    grep -qE ' UND +__stack_chk_fail' <<<"$symbols" ||
      fault "$file" "no stack protector: it never calls __stack_chk_fail (-fstack-protector-strong)"
    used=$(grep -oE " UND +($fortifiable)(@|$)" <<<"$symbols" | awk '{print $2}' | tr -d @ | sort -u | tr '\n' ' ')
    if [ -n "$used" ] && ! grep -qE ' UND +__[a-z0-9_]+_chk(@|$)' <<<"$symbols"; then
      fault "$file" "not fortified: it calls ${used% } and no checked variant (__*_chk): built without _FORTIFY_SOURCE?"
    fi
  elif [ "$units" = no-debug-info ]; then
    fault "$file" "a static program without debug info: its stack protector and fortification cannot be read (build RelWithDebInfo)"
  # (Not grep -q: it would stop reading, and readelf killed by SIGPIPE fails the pipeline.)
  elif ! readelf -p .debug_line_str -p .debug_str "$file" 2>/dev/null | grep -E "$fortify_headers" >/dev/null; then
    fault "$file" "not fortified: no compile unit inlined a checked libc call (built without _FORTIFY_SOURCE?)"
  fi
  if [ -n "$units" ] && [ "$units" != no-debug-info ]; then
    n=$(wc -l <<<"$units")
    some=$(head -n 3 <<<"$units" | sed "s|^$source_dir/||" | tr '\n' ' ')
    fault "$file" "$n compile units of ours without a stack protector: ${some% }$([ "$n" -gt 3 ] && echo ", ...")"
  fi
done < <(find "$build" -path "$build/CMakeFiles" -prune -o -path "$build/tests" -prune -o \
  -path '*/CMakeFiles' -prune -o -type f \( -name '*.so' -o -perm -u+x \) -print | sort)

if [ $checked = 0 ]; then
  echo "check-hardening: no program or plugin in $build: build it first" >&2
  exit 2
fi
[ $bad = 0 ] && echo "hardening: $checked programs and plugins in $build have RELRO, BIND_NOW, PIE, a non-executable stack, a stack protector and fortified calls; the plugins export only their entry points"
exit $bad
