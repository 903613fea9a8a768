#!/usr/bin/env bash
# The GPU checks in one prepared script (at most about 11 minutes on an H100/H200):
# ResNet-18 training and pool-labelling throughput, fp32 and bf16 + channels_last, with and
# without torch.compile, and peak GPU memory; then the tiny preset with 1 process and with one
# process per GPU under torchrun (skipped on a machine with one GPU). Copy the tables into
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import rolemodels" 2>/dev/null || pip install -q -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 python3 benchmarks/bench_gpu.py "$@"
GPUS=$(nvidia-smi -L | wc -l)
if [ "$GPUS" -gt 1 ]; then
    timeout 180 python3 benchmarks/bench_distributed.py --device cuda --processes 1 "$GPUS"
fi
