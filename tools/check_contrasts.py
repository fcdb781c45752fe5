#!/usr/bin/env python3
"""An independent check of dae-report's contrasts, from the run folders alone.

    python3 tools/check_contrasts.py experiments/table2-ablation.toml --profile quick [--results results]

For each `[[contrast]]` of the experiment file it pairs the finished runs of
rows a and b by seed (the plan manifest `results/plans/<experiment>.<profile>.json`
names the jobs), recomputes delta = the seed mean of per-seed AUC differences
on the common test samples from each run's scores.csv, and draws its own
two-level bootstrap (numpy; seeds resampled, test patients resampled as
clusters, one patient draw for both rows and every seed that shares the test
set). It prints both beside `results/tables/<experiment>-contrasts.csv` and
exits 1 when a delta differs by more than 1e-6 or a CI end by more than 0.015.
Needs numpy. AUC contrasts only (attribute-accuracy contrasts are skipped).
"""
import argparse, csv, json, pathlib, sys, tomllib

import numpy as np


class Ranked:
    """Scores sorted once; a weighted AUC is then a few vector operations."""

    def __init__(self, scores, labels):
        self.order = np.argsort(scores, kind="stable")
        s = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        self.pos = (labels[self.order] == 1).astype(float)

    def auc(self, weights):
        w = weights[self.order]
        pos = np.add.reduceat(w * self.pos, self.starts)
        neg = np.add.reduceat(w * (1.0 - self.pos), self.starts)
        below = np.cumsum(neg) - neg
        wp, wn = pos.sum(), neg.sum()
        return (pos * (below + 0.5 * neg)).sum() / (wp * wn) if wp > 0 and wn > 0 else None


def read_scores(run):
    with open(run / "scores.csv") as f:
        return {r["sample_id"]: (int(r["label"]), float(r["score"]), r["patient"]) for r in csv.DictReader(f)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("--profile")
    ap.add_argument("--results", default="results")
    ap.add_argument("--resamples", type=int, default=4000)
    args = ap.parse_args()
    exp = tomllib.loads(pathlib.Path(args.experiment).read_text())
    name = exp["experiment"]["name"]
    profile = args.profile or exp["experiment"].get("default_profile", "default")
    results = pathlib.Path(args.results)
    manifest = json.loads((results / "plans" / f"{name}.{profile}.json").read_text())
    ours = {r["contrast"]: r for r in csv.DictReader(open(results / "tables" / f"{name}-contrasts.csv"))}
    runs = {}
    for job in manifest["jobs"]:
        run = results / "runs" / job["id"]
        if (run / "done").exists():
            runs.setdefault(job["variant"], {})[job["seed"]] = read_scores(run)
    rng = np.random.default_rng(12345)
    bad = False
    for c in exp.get("contrast", []):
        if c.get("metric", "auc") != "auc":
            continue
        cname = c.get("name", f"{c['a']}-{c['b']}")
        seeds = sorted(set(runs.get(c["a"], {})) & set(runs.get(c["b"], {})))
        per_seed = []
        for s in seeds:
            sa, sb = runs[c["a"]][s], runs[c["b"]][s]
            ids = sorted(set(sa) & set(sb))
            y = np.array([sa[i][0] for i in ids])
            xa, xb = np.array([sa[i][1] for i in ids]), np.array([sb[i][1] for i in ids])
            pats = [sa[i][2] for i in ids]
            uniq = {p: k for k, p in enumerate(dict.fromkeys(pats))}
            per_seed.append((y, Ranked(xa, y), Ranked(xb, y), np.array([uniq[p] for p in pats]), len(uniq)))
        delta = np.mean([t[1].auc(np.ones(len(t[0]))) - t[2].auc(np.ones(len(t[0]))) for t in per_seed])
        draws = []
        while len(draws) < args.resamples:
            pick = rng.integers(0, len(per_seed), len(per_seed))
            counts = np.bincount(rng.integers(0, per_seed[0][4], per_seed[0][4]), minlength=per_seed[0][4])
            vals = []
            for k in pick:
                y, ra, rb, cl, _ = per_seed[k]
                w = counts[cl].astype(float)
                a, b = ra.auc(w), rb.auc(w)
                if a is None or b is None:
                    break
                vals.append(a - b)
            else:
                draws.append(np.mean(vals))
        lo, hi = np.quantile(draws, [0.025, 0.975])
        r = ours[cname]
        dd, dlo, dhi = abs(float(r["delta"]) - delta), abs(float(r["ci_lo"]) - lo), abs(float(r["ci_hi"]) - hi)
        ok = dd <= 1e-6 and dlo <= 0.015 and dhi <= 0.015
        bad |= not ok
        print(f"{cname:12} seeds {len(seeds)}  delta {delta:+.6f} (report {float(r['delta']):+.6f})  "
              f"CI [{lo:+.4f}, {hi:+.4f}] (report [{float(r['ci_lo']):+.4f}, {float(r['ci_hi']):+.4f}])  {'ok' if ok else 'MISMATCH'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
