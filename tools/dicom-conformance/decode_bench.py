#!/usr/bin/env python3
"""Decoding time per file with pydicom (+ pylibjpeg, pyjpegls): read, decode
the first frame, apply the modality LUT; the best of --repeat runs. One line
per file: `<path> <seconds>` (or `<path> n/a <why>`). Called by
`cargo bench -p dae-data --bench throughput`, which times ours beside it."""
import argparse
import time

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def once(path):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if arr.ndim == 3:
        arr = arr[0]
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    for f in a.files:
        try:
            once(f)  # warm-up: plugin imports
            best = float("inf")
            for _ in range(a.repeat):
                t = time.perf_counter()
                once(f)
                best = min(best, time.perf_counter() - t)
            print(f, f"{best:.6f}", flush=True)
        except Exception as e:
            print(f, "n/a", str(e).replace("\n", " ")[:80], flush=True)


if __name__ == "__main__":
    main()
