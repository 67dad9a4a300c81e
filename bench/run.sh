#!/bin/bash
# The benchmarks of issue 12, against the local test cluster (contrib/cluster.sh start), as
# root: bench/run.sh [--runs N] [--images tiny,debian11-direct] [--json FILE] [--no-submit]
# Not run by the tests: it takes minutes and restarts Slurm to measure it without the plugins.
set -euo pipefail
exec python3 "$(cd "$(dirname "$0")" && pwd)/bench.py" "$@"
