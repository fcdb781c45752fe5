#!/usr/bin/env bash
# The seven Table 2 rows on the cuda build; seed 0 for rows 3-5 (1, 2, 6, 7 ran in the first call) and seed 1 for all.
set -u
export LD_LIBRARY_PATH=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:):/usr/local/nvidia/lib64:/usr/local/nvidia/lib
export DAE_CACHE=/tmp/dae-cache
echo "run,test_auc,ci_lo,ci_hi,val_auc,attr_shape,attr_margin,attr_mean,probe_ma_mi,probe_h_i,probe_h,best_epoch,wall_s" > $OUT/summary.csv
for j in row3-s0 row4-s0 row5-s0 row1-s1 row2-s1 row3-s1 row4-s1 row5-s1 row6-s1 row7-s1; do
  timeout 80 .gpu/dae-train --config .gpu/$j.toml --out /tmp/run-$j >> $OUT/train2.log 2>&1
  echo "$j rc=$?"
  python3 - "$j" >> $OUT/summary.csv <<'PY'
import json, sys
j = sys.argv[1]
try:
    m = json.load(open(f"/tmp/run-{j}/metrics.json"))
except Exception as e:
    print(f"{j},failed"); sys.exit()
a, p = m["attr_acc"], m["probe_auc"]
g = lambda d, k: f"{d[k]:.4f}" if k in d else ""
print(f"{j},{m['test_auc']:.4f},{m['test_auc_ci95'][0]:.4f},{m['test_auc_ci95'][1]:.4f},{m['val_auc']:.4f},{g(a,'shape')},{g(a,'margin')},{g(a,'mean')},{g(p,'ma_mi')},{g(p,'h_i')},{g(p,'h')},{m['best_epoch']},{m['wall_seconds']:.1f}")
PY
done
cat $OUT/summary.csv
