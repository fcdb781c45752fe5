#!/usr/bin/env bash
# One prepared device check: the cuda dae-train and the throughput bench.
set -u
export LD_LIBRARY_PATH=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:):/usr/local/nvidia/lib64:/usr/local/nvidia/lib
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "--- unresolved libraries (should be none):"
ldd .gpu/dae-train | grep 'not found'
ldd .gpu/throughput | grep 'not found'
export DAE_CACHE=/tmp/dae-cache
train() {
  echo "--- train $1 on cuda"
  timeout $2 .gpu/dae-train --config .gpu/$1.toml --out /tmp/run-$1 >> $OUT/train.log 2>&1
  echo "rc=$?"; tail -1 $OUT/train.log
  cp /tmp/run-$1/metrics.json $OUT/metrics-$1.json 2>/dev/null
}
train row7-s0 100
cp /tmp/run-row7-s0/history.csv $OUT/history-row7.csv 2>/dev/null
echo "--- bench (candle cuda vs torch cuda)"
DAE_PYTHON=python3 timeout 150 .gpu/throughput --cuda 2>&1 | tee $OUT/bench-gpu.txt
for r in row1-s0 row2-s0 row6-s0; do train $r 70; done
