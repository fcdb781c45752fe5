#!/usr/bin/env bash
# The prepared device check, run on a lent GPU from the repository root with
# `.gpu/` carried (see README.md for the builds):
#   bash tools/gpu-check/check.sh                # every stage
#   STAGES="smoke resume" bash tools/gpu-check/check.sh
# Stages: smoke and resnet34-224 (experiments/gpu-check.toml through
# dae-sweep, once per trainer build found in .gpu/: dae-train = cuda,
# dae-train-cudnn = cudnn), resume (a checkpoint resume on the GPU against
# an uninterrupted run and a second uninterrupted run), bench (candle vs
# PyTorch at the paper setting, ResNet-34 at 224 x 224, batch 32 and 64,
# f32 and bf16; the cudnn build's candle side beside it), precision (DAE-GCN
# at smoke size, seeds 0-2, f32 against bf16: test AUCs), paper (Table 2
# row 7 of the paper profile, f32 and bf16, for PAPER_SECONDS each: seconds
# per epoch, extrapolated to the 21 jobs). One summary line per job and
# stage goes to $OUT/gpu-check.txt; logs and metrics to $OUT/<stage>/.
# One call cannot run every stage (600 s): see README.md for the split.
set -u
OUT=${OUT:-/tmp/gpu-check-out}
STAGES=${STAGES:-"bench precision"}
PAPER_SECONDS=${PAPER_SECONDS:-90}
mkdir -p "$OUT"
summary=$OUT/gpu-check.txt
say() { echo "$*" | tee -a "$summary"; }
export LD_LIBRARY_PATH=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:):/usr/local/nvidia/lib64:/usr/local/nvidia/lib
export DAE_CACHE=/tmp/dae-cache
# The binaries travel gzipped (the carry limit is 64 MiB).
for gz in .gpu/*.gz; do b=${gz%.gz}; [ -f "$b" ] || gunzip -c "$gz" > "$b"; chmod +x "$b"; done
builds=$(for b in dae-train dae-train-cudnn; do [ -x .gpu/$b ] && echo $b; done)
best=$(echo $builds | awk '{print $NF}')   # the precision and paper stages: cudnn where carried
say "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
for b in $builds dae-sweep throughput; do
  [ -x .gpu/$b ] && ldd .gpu/$b | grep -q 'not found' && say "$b: unresolved libraries: $(ldd .gpu/$b | grep 'not found' | tr -s ' ' | paste -sd';')"
done

# One line per finished job of a results folder: parameters, AUC, speed, memory.
report() {
  python3 - "$1" "$2" <<'PY'
import json, pathlib, sys
results, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
for plan in sorted((results / "plans").glob("*.json")):
    for job in json.loads(plan.read_text())["jobs"]:
        run = results / "runs" / job["id"]
        if not run.exists():  # not selected (--only)
            continue
        desc = " ".join(f"{k}={v}" for k, v in job["params"])
        try:
            m = json.loads((run / "metrics.json").read_text())
            print(f"{tag} {desc}: test_auc {m['test_auc']:.4f}  samples/s {m['train_samples_per_second']:.1f}  wall {m['wall_seconds']:.1f} s")
        except (OSError, ValueError, KeyError):
            print(f"{tag} {desc}: no metrics (see {run}/log.txt)")
PY
}

for stage in $STAGES; do
  case $stage in
  smoke|resnet34-224)
    for b in $builds; do
      res=/tmp/gpu-results-$b-$stage
      rm -rf "$res"
      limit=150; [ "$stage" = resnet34-224 ] && limit=240
      timeout $limit .gpu/dae-sweep run experiments/gpu-check.toml --profile $stage --trainer .gpu/$b --gpus 0 --results "$res" \
        > "$OUT/$b-$stage.log" 2>&1
      say "$stage with $b: dae-sweep rc=$?"
      report "$res" "  $b $stage" | tee -a "$summary"
      mkdir -p "$OUT/$b-$stage" && cp -r "$res/runs" "$OUT/$b-$stage/" 2>/dev/null
    done
    ;;
  resume)
    # Run B is stopped (SIGTERM) as soon as its first checkpoint exists and
    # started again on its folder; C is a second uninterrupted run (is the GPU
    # run deterministic at all?).
    job=$(ls -d /tmp/gpu-results-dae-train-smoke/runs/*/ 2>/dev/null | while read d; do grep -q 'method' "$d/job.toml" || { echo "$d/job.toml"; break; }; done)
    if [ -z "$job" ]; then say "resume: no smoke DAE-GCN job to copy (run the smoke stage first)"; continue; fi
    rm -rf /tmp/resume-A /tmp/resume-B /tmp/resume-C
    timeout 60 .gpu/dae-train --config "$job" --out /tmp/resume-A > "$OUT/resume-A.log" 2>&1
    timeout 60 .gpu/dae-train --config "$job" --out /tmp/resume-B > "$OUT/resume-B.log" 2>&1 &
    pid=$!
    until [ -f /tmp/resume-B/checkpoint.safetensors ] || ! kill -0 $pid 2>/dev/null; do sleep 0.1; done
    kill -TERM $pid 2>/dev/null; wait $pid; rc1=$?
    timeout 60 .gpu/dae-train --config "$job" --out /tmp/resume-B >> "$OUT/resume-B.log" 2>&1; rc2=$?
    timeout 60 .gpu/dae-train --config "$job" --out /tmp/resume-C > "$OUT/resume-C.log" 2>&1
    resumed=$(python3 -c "import json; print(json.load(open('/tmp/resume-B/metrics.json'))['resumed_from_epoch'])" 2>/dev/null || echo n/a)
    same() { if cmp -s "$1/scores.csv" "$2/scores.csv"; then echo identical; elif [ -f "$1/scores.csv" ] && [ -f "$2/scores.csv" ]; then echo different; else echo "n/a"; fi; }
    if [ "$rc1" = 5 ] && [ "$rc2" = 0 ] && [ "$resumed" != n/a ] && [ "$resumed" -ge 1 ]; then
      say "resume: after epoch $resumed; scores resumed vs uninterrupted: $(same /tmp/resume-A /tmp/resume-B); two uninterrupted runs: $(same /tmp/resume-A /tmp/resume-C)"
    else
      say "resume: NOT A RESUME TEST (rc $rc1 then $rc2, resumed_from_epoch $resumed; wanted 5, 0, >= 1)"
    fi
    ;;
  bench)
    say "bench: ResNet-34 224 x 224 (setting, batch, candle samples/s, MiB, pytorch samples/s, MiB, ratio; MiB by nvidia-smi)"
    for p in f32 bf16; do
      for batch in 32 64; do
        DAE_PYTHON=python3 timeout 80 .gpu/throughput --cuda --settings resnet34-224 --batch $batch --precision $p > "$OUT/bench-$p-$batch.txt" 2>&1
        say "  $p rc=$?: $(grep '^resnet34-224' "$OUT/bench-$p-$batch.txt" || tail -2 "$OUT/bench-$p-$batch.txt")"
        if [ -x .gpu/throughput-cudnn ]; then
          line=$(timeout 45 .gpu/throughput-cudnn --one resnet34-224 --cuda --batch $batch --precision $p 2>&1 | tail -1)
          say "  $p batch $batch, cudnn build, candle alone: $line (samples/s, 0)"
        fi
        if [ $batch = 32 ]; then
          line=$(DAE_CONV_BACKWARD=released timeout 45 .gpu/throughput --one resnet34-224 --cuda --batch $batch --precision $p 2>&1 | tail -1)
          say "  $p batch $batch, cuda build, candle alone, candle's released conv2d backward: $line (samples/s, 0)"
        fi
      done
    done
    ;;
  precision)
    # The same jobs in f32 and bf16: test AUCs should agree within seed noise.
    for p in f32 bf16; do
      res=/tmp/gpu-results-precision-$p
      rm -rf "$res"
      timeout 150 .gpu/dae-sweep run experiments/gpu-check.toml --profile smoke --only variant=dae-gcn --seeds 0-2 \
        --set optim.precision=$p --trainer .gpu/$best --gpus 0 --results "$res" > "$OUT/precision-$p.log" 2>&1
      say "precision $p with $best: dae-sweep rc=$?"
      report "$res" "  $p" | tee -a "$summary"
    done
    python3 - <<'PY' | tee -a "$summary"
import json, pathlib, statistics as st
auc = {}
for p in ("f32", "bf16"):
    for m in pathlib.Path(f"/tmp/gpu-results-precision-{p}/runs").glob("*/metrics.json"):
        seed = int(next(l for l in (m.parent / "config.toml").read_text().splitlines() if l.startswith("seed")).split("=")[1])
        auc[(p, seed)] = json.loads(m.read_text())["test_auc"]
seeds = sorted(s for (p, s) in auc if p == "f32" and ("bf16", s) in auc)
if len(seeds) >= 2:
    d = [auc[("bf16", s)] - auc[("f32", s)] for s in seeds]
    sd = st.stdev([auc[("f32", s)] for s in seeds])
    print(f"precision: bf16 - f32 test AUC per seed {' '.join(f'{x:+.4f}' for x in d)}, mean {st.mean(d):+.4f}; f32 seed sd {sd:.4f}")
else:
    print("precision: fewer than two seeds finished in both precisions")
PY
    ;;
  paper)
    # Table 2 row 7, seed 0, of the paper profile, stopped after PAPER_SECONDS:
    # its epochs' seconds (history.csv) give the Table 2 estimate.
    for p in bf16 f32; do
      res=/tmp/gpu-results-paper-$p
      rm -rf "$res"
      timeout $PAPER_SECONDS .gpu/dae-sweep run experiments/table2-ablation.toml --profile paper --only variant=row7 --only seed=0 \
        --set optim.precision=$p --trainer .gpu/$best --gpus 0 --results "$res" > "$OUT/paper-$p.log" 2>&1
      python3 - "$res" "$p" "$best" <<'PY' | tee -a "$summary"
import csv, pathlib, sys
res, p, build = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [r for h in res.glob("runs/*/history.csv") for r in csv.DictReader(h.open())]
secs = [float(r["seconds"]) for r in rows]
if len(secs) < 2:
    print(f"paper {p} ({build}): {len(secs)} epochs in the time given: no estimate")
else:
    e = sum(secs[1:]) / len(secs[1:])  # the first epoch includes warm-up
    print(f"paper {p} ({build}): {len(secs)} epochs, first {secs[0]:.1f} s, then {e:.1f} s/epoch; "
          f"Table 2 (21 jobs, one at a time, each as costly as row 7, the costliest) at 60 epochs: "
          f"{21 * 60 * e / 60:.0f} min, at 30: {21 * 30 * e / 60:.0f} min")
PY
    done
    ;;
  *) say "unknown stage $stage (stages: smoke resnet34-224 resume bench precision paper)" ;;
  esac
done
