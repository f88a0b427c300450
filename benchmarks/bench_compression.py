"""Pruning + INT8 + sparse storage of the digit models: real file bytes vs FP32 and held-out accuracy, 5 seeds.

    .venv/bin/python -m benchmarks.bench_compression [--seeds 5] [--epochs 15]

For each seed, the MLP and the CNN are retrained with `benchmarks/train_digits.py`'s
recipe (seed 0 is the shipped model). Each configuration: global magnitude pruning at
a sparsity, fine-tuning with the masks (Adam, lr 1e-3, --epochs), make_permanent,
INT8 (Module 15, per-channel or per-tensor scales, calibrated on 256 training images), `save_compressed` (bitmask + int8
values, lzma). The file is loaded back and evaluated on the 360 held-out images. Ratio =
FP32 bytes (the float32 arrays the model stores) / bytes of the compressed file.
Targets (issue): mean over 5 seeds, >= 8x at <= 1 point loss; >= 12x at <= 2 points.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.train_digits import RECIPES, train
from tinytorch_lib.compression import load_compressed, make_permanent, prune, save_compressed
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.quantization import quantize, stored_bytes
from tinytorch_lib.timing import blas_threads
from tinytorch_lib.training import evaluate, fit

SPARSITIES = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)
CONFIGS = [(s, pc) for s in SPARSITIES for pc in (True, False)]  # (sparsity, per-channel int8 scales)


def label(config) -> str:
    return f"{config[0]:.0%} {'per-ch' if config[1] else 'per-t'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15, help="fine-tuning epochs after pruning")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    with blas_threads(1):
        for name in ("mlp", "cnn"):
            flatten = RECIPES[name][1]
            tr, te = load_digits("train", flatten=flatten), load_digits("test", flatten=flatten)
            test_loader = DataLoader(te, batch_size=360)
            base, sizes, accs = [], {c: [] for c in CONFIGS}, {c: [] for c in CONFIGS}
            for seed in range(args.seeds):
                model, _, _ = train(name, seed, progress=False)
                base.append(evaluate(model, test_loader))
                fp32 = stored_bytes(model)
                for s in SPARSITIES:
                    p = prune(model, s, "global")
                    fit(p, CrossEntropyLoss(), Adam(p.parameters(), lr=1e-3), DataLoader(tr, 32, shuffle=True, seed=seed),
                        test_loader, epochs=args.epochs, progress=False)
                    make_permanent(p)
                    for per_channel in (True, False):
                        q = quantize(p, [tr.tensors[0].data[:256]], per_channel=per_channel)
                        path = scratch / f"{name}_{seed}_{s}_{per_channel}.ttc"
                        sizes[s, per_channel].append(save_compressed(path, q))
                        back, _ = load_compressed(path)
                        assert np.array_equal(back(te.tensors[0]).data, q(te.tensors[0]).data)
                        accs[s, per_channel].append(evaluate(back, test_loader))
                print(f"{name} seed {seed}: FP32 {base[-1]:.4f}; " + ", ".join(
                    f"{label(c)} {accs[c][-1]:.4f} ({fp32 / sizes[c][-1]:.1f}x)" for c in CONFIGS), flush=True)
            base = np.array(base)
            print(f"\n{name.upper()}: FP32 {fp32:,} bytes stored, accuracy mean {base.mean():.4f} "
                  f"({base.min():.4f}-{base.max():.4f}); pruned (global) + {args.epochs} epochs fine-tuning + INT8 + "
                  f"bitmask + lzma, {args.seeds} seeds")
            print(f"{'sparsity, int8 scales':>22} {'file bytes':>10} {'ratio':>7} {'acc mean':>9} {'min-max':>15} "
                  f"{'loss mean':>10} {'worst loss':>11}")
            table = []
            for c in CONFIGS:
                a, b = np.array(accs[c]), np.array(sizes[c])
                loss = (base - a) * 100
                ratio = fp32 / b.mean()
                table.append((label(c), ratio, loss.mean()))
                print(f"{label(c):>22} {b.mean():>10,.0f} {ratio:>6.1f}x {a.mean():>9.4f} {a.min():.4f}-{a.max():.4f} "
                      f"{loss.mean():>+9.2f}p {loss.max():>+10.2f}p")
            for need, points in ((8, 1.0), (12, 2.0)):
                ok = [(r, name_) for name_, r, l in table if l <= points]
                best = max(ok) if ok else None
                verdict = (f"best {best[0]:.1f}x at {best[1]}: {'met' if best[0] >= need else 'NOT met'}"
                           if best else "no configuration within the loss")
                print(f"target >= {need}x at <= {points:g} point(s) mean loss: {verdict}")
            print()
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
