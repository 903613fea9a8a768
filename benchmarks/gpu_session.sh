#!/usr/bin/env bash
# Everything a lent GPU should show, as one prepared script of about 8 minutes:
#   1. the README's main job (the MNIST-1D default run), timed, with its Table 1;
#   2. many models at once (benchmarks/bench_many.py): the default's 10 teachers one at a time,
#      side by side in CUDA streams and stacked; the pool labelled one teacher at a time and
#      stacked; then ResNet-18 at the paper's batch of 128, 4 and 8 teachers at once;
#   3. benchmarks/gpu_check.sh --budget N: the GPU path's checks (throughput, the paper preset
#      killed and resumed, the CUDA tests, compile).
# Results go to $OUT (at most 8 files: the logs travel as one archive).
#   bash benchmarks/gpu_session.sh [--budget SECONDS]     # gpu_check's share, default 300
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
BUDGET=300
[ "${1:-}" = "--budget" ] && BUDGET="$2"
OUT="${OUT:-/tmp/rolemodels-gpu-session}"
WORK=/tmp/rolemodels-gpu-session-work
rm -rf "$WORK" && mkdir -p "$WORK/logs" "$OUT"
# A machine without network: mnist1d travels as a wheel in .whl/ (pip download mnist1d there)
if ls .whl/mnist1d-*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/rolemodels-site .whl/*.whl \
        && export PYTHONPATH="/tmp/rolemodels-site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$WORK/logs/gpu.txt"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$WORK/logs/gpu.txt"

echo "== 1. the default run"
SECONDS=0
timeout 240 "$PYTHON" -m rolemodels run --out "$WORK/default" > "$WORK/logs/default_run.log" 2>&1
rc=$?
echo "exit $rc after $SECONDS s (with the data's generation)" | tee -a "$WORK/logs/default_run.log"
tail -25 "$WORK/logs/default_run.log"
"$PYTHON" -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(r.get('seconds')))" \
    "$WORK/default/results.json" 2>/dev/null | tee "$WORK/default_seconds.json"
cp "$WORK/default/results.json" "$OUT/default_results.json" 2>/dev/null

echo "== 2. many models at once"
timeout 120 "$PYTHON" benchmarks/bench_many.py --device cuda --epochs 3 --pool 200000 \
    --ways one_at_a_time,side_by_side,side_by_side4,stacked,label 2>&1 | tee "$WORK/logs/bench_many_cnn1d.log" | tail -9
for k in 4 8; do
    timeout 120 "$PYTHON" benchmarks/bench_many.py --device cuda --model resnet18 --n 10000 --batch 128 \
        --models $k --epochs 2 --pool 50000 --ways side_by_side4,stacked,label 2>&1 \
        | tee "$WORK/logs/bench_many_resnet18_k$k.log" | tail -7
done

echo "== 3. gpu_check"
OUT="$WORK/check" bash benchmarks/gpu_check.sh --budget "$BUDGET" > "$WORK/logs/gpu_check.log" 2>&1
echo "gpu_check exit $?"
tail -30 "$WORK/logs/gpu_check.log"
cp "$WORK/check/summary.md" "$OUT/gpu_check_summary.md" 2>/dev/null
cp "$WORK/check/numbers.json" "$OUT/gpu_check_numbers.json" 2>/dev/null
cp -r "$WORK/check/logs" "$WORK/logs/gpu_check_logs" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
ls -la "$OUT"
