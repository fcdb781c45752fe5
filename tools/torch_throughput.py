#!/usr/bin/env python3
"""The DAE-GCN model of `crates/model` (Table 2 row 7: disentangled blocks,
GCN attribute branch, decoder, h_i) in PyTorch, timed the same way as
`crates/train/benches/throughput.rs`: warm-up steps, then timed steps of
forward + backward + Adam on random inputs. Prints `samples_per_s peak_MiB`.

`--precision bf16` runs forward and loss under `torch.autocast(bfloat16)`
(f32 weights and Adam, as candle's `optim.precision = "bf16"`); on a GPU
the model and input are channels_last in both precisions (PyTorch's
fastest layout for these convolutions).

Used by `cargo bench -p dae-train --bench throughput`; needs torch
(on these CPU machines: Debian's python3-torch with libopenblas0-pthread
or libopenblas0-openmp).

    python3 tools/torch_throughput.py --setting quick --threads 2
"""
import argparse
import os
import resource
import sys
import time

# PyTorch's own OpenMP threads (--threads) do the parallel work. With
# Debian's default OpenBLAS (the pthread build) each BLAS call also woke
# OpenBLAS's own pool beside them, and on 2 cores the two pools spun against
# each other: PyTorch ran 2-3x slower on `quick` (2026-12-06,
# docs/performance.md). Set OPENBLAS_NUM_THREADS to time another choice.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402 (after the environment it reads at load time)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SETTINGS = {
    "quick": dict(encoder="small-cnn", size=64, batch=32, warmup=3, steps=15),
    "quick-row1": dict(encoder="small-cnn", size=64, batch=32, warmup=3, steps=15, row1=True),
    "resnet34-224": dict(encoder="resnet34", size=224, batch=8, warmup=1, steps=3),
}


def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class Encoder(nn.Module):
    """The encoder; with `last=False` the trunk without its last stage (the
    model's default `latent = "branches"` finishes it with one branch per block)."""

    def __init__(self, kind, width, last=True):
        super().__init__()
        self.kind = kind
        if kind == "small-cnn":
            layers = [conv_bn(1, width, 3, 1)]
            c = width
            for i in range(4 if last else 3):
                cout = width << min(i + 1, 3)
                layers.append(conv_bn(c, cout, 3, 2))
                c = cout
        else:
            layout = [2, 2, 2, 2] if kind == "resnet18" else [3, 4, 6, 3]
            layers = [conv_bn(1, 64, 7, 2), nn.MaxPool2d(2)]
            c = 64
            for l, (n, cout) in enumerate(zip(layout, [64, 128, 256, 512])):
                if l == 3 and not last:
                    break
                for b in range(n):
                    layers.append(Basic(c, cout, 2 if (b == 0 and l > 0) else 1))
                    c = cout
        self.net = nn.Sequential(*layers)
        self.out_dim = c

    def forward_map(self, x):
        return self.net(x)

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))


def branch(kind, cin, dim):
    """The last encoder stage for one latent block (`crates/model/src/encoder.rs`, `Branch`)."""
    return conv_bn(cin, dim, 3, 2) if kind == "small-cnn" else Basic(cin, dim, 2)


class Latent(nn.Module):
    """`model.latent`: "branches" (trunk + one branch per block, the default)
    or "projections" (whole encoder + one linear head per block)."""

    def __init__(self, kind, width, dims, mode):
        super().__init__()
        self.mode = mode
        self.enc = Encoder(kind, width, last=(mode == "projections"))
        if mode == "projections":
            self.parts = nn.ModuleList([nn.Linear(self.enc.out_dim, d) for d in dims])
        else:
            self.parts = nn.ModuleList([branch(kind, self.enc.out_dim, d) for d in dims])

    def forward(self, x):
        if self.mode == "projections":
            f = self.enc(x)
            return torch.cat([p(f) for p in self.parts], 1)
        m = self.enc.forward_map(x)
        return torch.cat([p(m).mean(dim=(2, 3)) for p in self.parts], 1)


class Decoder(nn.Module):
    def __init__(self, latent, base, size):
        super().__init__()
        self.s0, self.c0 = size // 16, base * 8
        self.fc = nn.Linear(latent, self.c0 * self.s0 * self.s0)
        ups, c = [], self.c0
        for _ in range(4):
            cout = max(c // 2, base)
            ups += [nn.ConvTranspose2d(c, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]
            c = cout
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, z):
        y = F.relu(self.fc(z)).view(z.shape[0], self.c0, self.s0, self.s0)
        return self.out(self.ups(y))


class Vanilla(nn.Module):
    """Table 2 row 1: encoder, one latent h, classifier."""

    def __init__(self, kind, latent, width=16, d=96):
        super().__init__()
        self.latent = Latent(kind, width, [d], latent)
        self.cls = nn.Linear(d, 1)

    def forward(self, x):
        return self.cls(self.latent(x)).squeeze(1), None, None


class DaeGcn(nn.Module):
    def __init__(self, kind, size, latent, width=16, d=32, a=9, feat=384, hidden=64):
        super().__init__()
        self.latent = Latent(kind, width, [d, d, d], latent)
        self.register_buffer("E", torch.eye(a) * 0.8 + 0.2 / a)
        self.register_buffer("X", torch.randn(a, feat))
        self.w0 = nn.Linear(feat, hidden, bias=False)
        self.w1 = nn.Linear(hidden, d, bias=False)
        self.cls = nn.Linear(2 * d, 1)
        self.dec = Decoder(3 * d, width if kind == "small-cnn" else 32, size)
        self.d = d

    def forward(self, x):
        h = self.latent(x)
        w = self.E @ self.w1(F.leaky_relu(self.E @ self.w0(self.X), 0.2))
        scores = h[:, : self.d] @ w.t()
        return self.cls(h[:, : 2 * self.d]).squeeze(1), scores, self.dec(h)


def cluster_ce(scores, targets, clusters):
    total = 0.0
    for lo, hi in clusters:
        t = targets[:, lo:hi]
        t = t / t.sum(1, keepdim=True).clamp(min=1)
        total = total - (t * F.log_softmax(scores[:, lo:hi], 1)).sum()
    return total / scores.shape[0]


def check_blas():
    """Stops with an error where torch runs on the reference BLAS.

    Debian's python3-torch depends on libblas3 | libopenblas0; installed
    alone it can get the netlib reference BLAS, which made PyTorch about
    five times slower on these settings: a ratio against it would mislead.
    """
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    reference = sorted(l for l in libs if "/blas/libblas" in l)
    if reference:
        sys.exit(
            f"error: PyTorch is using the reference BLAS ({reference[0]}); install an optimised one "
            "(Debian: apt-get install libopenblas0-pthread) before comparing speeds"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=SETTINGS, default="quick")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--latent", choices=["branches", "projections"], default="branches")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--batch", type=int, help="instead of the setting's batch size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        check_blas()
    torch.manual_seed(0)
    s = SETTINGS[args.setting]
    dev = torch.device(args.device)
    kind = s["encoder"]
    model = (Vanilla(kind, args.latent) if s.get("row1") else DaeGcn(kind, s["size"], args.latent)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    b, n = args.batch or s["batch"], s["size"]
    x = torch.randn(b, 1, n, n)
    y = torch.tensor([float(i % 2) for i in range(b)])
    attrs = torch.zeros(b, 9)
    for i in range(b):
        attrs[i, i % 4] = 1
        attrs[i, 4 + i % 5] = 1
    x, y, attrs = x.to(dev), y.to(dev), attrs.to(dev)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if args.device == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        with autocast:
            logits, scores, recon = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            if scores is not None:
                loss = loss + cluster_ce(scores, attrs, [(0, 4), (4, 9)]) + (x - recon).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    # A GPU step is short: more steps there (as in the candle bench).
    warmup, steps = (s["warmup"], s["steps"]) if args.device == "cpu" else (s["warmup"] * 3, s["steps"] * 10)
    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    sps = steps * b / (time.perf_counter() - t)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{sps:.2f} {peak:.0f}")


if __name__ == "__main__":
    main()
