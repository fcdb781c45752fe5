#!/usr/bin/env python3
"""Reference arrays for the DICOM conformance check, made by pydicom.

For each DICOM file given (or every monochrome 8/16-bit image of pydicom's
own test corpus, with --pydicom-corpus), copies the file into OUT and writes
beside it `<name>.npy`: the first frame's modality values (stored values
after Rescale Slope/Intercept, before any window) as float32, decoded by
pydicom with the pylibjpeg / pyjpegls plugins. `dae-data conformance OUT`
then compares our decoding with them.

    pip install pydicom==3.0.2 numpy pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg pyjpegls
    python3 tools/dicom-conformance/reference.py --pydicom-corpus /tmp/pydicom-corpus
    python3 tools/dicom-conformance/reference.py --out datasets/dicom-conformance FILE.dcm ...
"""
import argparse
import os
import shutil
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def candidates():
    """pydicom's test files that are monochrome, 8 or 16 bits allocated, with pixel data."""
    d = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if not name.endswith(".dcm") or not os.path.isfile(p):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=False)
        except Exception:
            continue
        if "PixelData" not in ds or ds.get("SamplesPerPixel", 1) != 1:
            continue
        if ds.get("BitsAllocated") not in (8, 16) or not str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
            continue
        yield p


def reference(path):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if arr.ndim == 3:  # several frames: the first
        arr = arr[0]
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32), str(ds.file_meta.TransferSyntaxUID)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--out", help="folder for the copies and their .npy references")
    ap.add_argument("--pydicom-corpus", metavar="OUT", help="every monochrome 8/16-bit image of pydicom's test files")
    a = ap.parse_args()
    out = a.pydicom_corpus or a.out
    if not out:
        ap.error("give --out DIR with files, or --pydicom-corpus DIR")
    files = list(candidates()) if a.pydicom_corpus else a.files
    os.makedirs(out, exist_ok=True)
    for f in files:
        name = os.path.basename(f)
        dst = os.path.join(out, name)
        if os.path.abspath(f) != os.path.abspath(dst):
            shutil.copyfile(f, dst)
        try:
            ref, ts = reference(f)
        except Exception as e:  # pydicom cannot decode it either: no reference
            print(f"{name}: pydicom cannot decode it ({str(e)[:80]}); no reference written", file=sys.stderr)
            continue
        np.save(os.path.join(out, name[:-4] + ".npy"), ref)
        print(f"{name}: {ts} {ref.shape[0]} x {ref.shape[1]}")


if __name__ == "__main__":
    main()
