#!/usr/bin/env bash
# Session 3 device check: every method on the cuda build (smoke size, then
# ResNet-34 at 224 x 224), and the candle-vs-PyTorch bench on the GPU.
set -u
export LD_LIBRARY_PATH=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:):/usr/local/nvidia/lib64:/usr/local/nvidia/lib
# The binaries travel gzipped (the carry limit is 64 MiB).
for b in dae-train throughput; do [ -f .gpu/$b ] || gunzip -c .gpu/$b.gz > .gpu/$b; chmod +x .gpu/$b; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "--- unresolved libraries (should be none):"
ldd .gpu/dae-train | grep 'not found'
ldd .gpu/throughput | grep 'not found'
export DAE_CACHE=/tmp/dae-cache
train() {
  local t0=$(date +%s.%N)
  timeout $2 .gpu/dae-train --config .gpu/$1.toml --out /tmp/run-$1 >> $OUT/train-$1.log 2>&1
  local rc=$?
  local t1=$(date +%s.%N)
  echo "$1 rc=$rc wall=$(python3 -c "print(round($t1-$t0,1))")s :: $(tail -1 $OUT/train-$1.log)"
  mkdir -p $OUT/$1
  cp /tmp/run-$1/metrics.json /tmp/run-$1/history.csv /tmp/run-$1/config.toml $OUT/$1/ 2>/dev/null
}
for m in dae-gcn guided-vae icadx li-diagnet; do train $m-cuda 60; done
for m in row7 guided-vae icadx li-diagnet; do train resnet34-224-$m 90; done
echo "--- bench (candle cuda vs torch cuda)"
DAE_PYTHON=python3 timeout 120 .gpu/throughput --cuda --settings quick,resnet34-224 2>&1 | tee $OUT/bench-gpu.txt
