#!/usr/bin/env bash
# The GPU path proven in one call, at most 8 minutes on one GPU, no network (benchmarks/gpu_check.py
# says what it measures): fabricated CIFAR-10 and CIFAR-5m at realistic sizes, training and
# labelling throughput, the cifar10-paper preset end to end with a kill and a resume, the tests
# on CUDA. Numbers go to $OUT (or --out DIR): numbers.json, summary.md, logs/.
#   bash benchmarks/gpu_check.sh            # on a GPU
#   bash benchmarks/gpu_check.sh --small    # any machine, in seconds: the same steps at toy sizes
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the package from this checkout, nothing installed
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader 2>/dev/null || true
exec timeout -k 5 475 "$PYTHON" benchmarks/gpu_check.py "$@"
