#!/usr/bin/env bash
# The GPU checks in one prepared script (at most about 11 minutes on an H100/H200):
# ResNet-18 training and pool-labelling throughput, fp32 and bf16 + channels_last, with and
# without torch.compile, and peak GPU memory; then the tiny preset with 1 process and with one
# process per GPU under torchrun (skipped on a machine with one GPU). Copy the tables into
# docs/benchmarks.md. benchmarks/gpu_check.sh is the fuller check of the whole GPU path.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import the package from this checkout
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
timeout 480 "$PYTHON" benchmarks/bench_gpu.py "$@"
GPUS=$( (nvidia-smi -L 2>/dev/null || true) | wc -l)
if [ "$GPUS" -gt 1 ]; then
    timeout 180 "$PYTHON" benchmarks/bench_distributed.py --device cuda --processes 1 "$GPUS"
fi
