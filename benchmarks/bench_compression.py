"""Pruning + INT8 (or 4-bit levels) + sparse storage of the digit models: real file bytes vs FP32, 5 seeds.

    .venv/bin/python -m benchmarks.bench_compression [--seeds 5] [--epochs N]

For each seed, the MLP and the CNN are retrained with `benchmarks/train_digits.py`'s
recipe (seed 0 is the shipped model). Rows:
- FP32 / FP16 / INT8: the dense model, Module 15's `quantize` (INT8 per-channel scales,
  calibrated on 256 training images), written with `save_compressed` (dense arrays, lzma).
- pruned S: global magnitude pruning at sparsity S, fine-tuning with the masks (Adam,
  lr 1e-3, 15 epochs MLP, 30 CNN), make_permanent, float32 weights, `save_compressed` (bitmask + values, lzma).
- pruned S + INT8: the same pruned model through Module 15's `quantize` (per-channel).
- pruned S + INT4 levels: the INT8 model whose weight codes are re-derived from the pruned
  float weights with Module 15's own `quantize_tensor(w, bits=4, axis=0)` (codes in [-8, 7],
  still held in the int8 buffer; zeros stay zero). No new quantizer: this only asks Module 15
  for fewer levels. `save_compressed` stores int8 values that fit in 4 bits two per byte.
Every file is loaded back with `load_compressed`, checked to give the same outputs as the
model that was saved, and evaluated on the 360 held-out images. Ratio = FP32 bytes (the
float32 arrays the model stores, state_dict nbytes) / bytes of the file.
Targets (issue 8): mean over 5 seeds, >= 8x at <= 1 point loss; >= 12x at <= 2 points.
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
from tinytorch_lib.profiler import model_bytes
from tinytorch_lib.quantization import quantize, quantize_tensor
from tinytorch_lib.timing import blas_threads
from tinytorch_lib.training import evaluate, fit

SPARSITIES = (0.7, 0.8, 0.85, 0.9)
EPOCHS = {"mlp": 15, "cnn": 30}  # fine-tuning epochs after pruning (the CNN's 2,704 weights recover more slowly)


def fewer_levels(q_model, float_model, bits: int):
    """Weight codes of every quantized layer re-derived with Module 15's quantize_tensor at `bits` (in place)."""
    for name, m in q_model.named_modules():
        if hasattr(m, "weight_q"):
            w = float_model.get_submodule(name).weight.data
            codes, scale, _ = quantize_tensor(w, bits=bits, axis=0 if m.per_channel else None)
            m.weight_q.data[...] = codes
            m.weight_scale.data[...] = scale
    return q_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs after pruning (default: 15 MLP, 30 CNN)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    with blas_threads(1):
        for name in ("mlp", "cnn"):
            flatten = RECIPES[name][1]
            epochs = args.epochs or EPOCHS[name]
            tr, te = load_digits("train", flatten=flatten), load_digits("test", flatten=flatten)
            test_loader = DataLoader(te, batch_size=360)
            calibration = [tr.tensors[0].data[:256]]
            rows: dict = {}

            def store(label, model, seed):
                path = scratch / f"{name}_{seed}_{label.replace(' ', '_')}.ttc"
                size = save_compressed(path, model)
                back, _ = load_compressed(path)
                assert np.array_equal(back(te.tensors[0]).data, model(te.tensors[0]).data), label
                rows.setdefault(label, ([], []))
                rows[label][0].append(size)
                rows[label][1].append(evaluate(back, test_loader))

            base = []
            for seed in range(args.seeds):
                model, _, _ = train(name, seed, progress=False)
                base.append(evaluate(model, test_loader))
                fp32 = model_bytes(model)
                store("FP32", model, seed)
                store("FP16", quantize(model, dtype="fp16"), seed)
                store("INT8", quantize(model, calibration), seed)
                for s in SPARSITIES:
                    p = prune(model, s, "global")
                    fit(p, CrossEntropyLoss(), Adam(p.parameters(), lr=1e-3), DataLoader(tr, 32, shuffle=True, seed=seed),
                        test_loader, epochs=epochs, progress=False)
                    make_permanent(p)
                    store(f"pruned {s:.0%}", p, seed)
                    store(f"pruned {s:.0%} + INT8", quantize(p, calibration), seed)
                    store(f"pruned {s:.0%} + INT4 levels", fewer_levels(quantize(p, calibration), p, 4), seed)
                print(f"{name} seed {seed}: FP32 {base[-1]:.4f}; " + ", ".join(
                    f"{k} {v[1][-1]:.4f} ({fp32 / v[0][-1]:.1f}x)" for k, v in rows.items()), flush=True)
            base = np.array(base)
            print(f"\n{name.upper()}: FP32 {fp32:,} bytes stored (state_dict nbytes), accuracy mean {base.mean():.4f} "
                  f"({base.min():.4f}-{base.max():.4f}); pruning = global magnitude + {epochs} epochs "
                  f"fine-tuning; files = save_compressed (bitmask where >= half zeros, lzma); {args.seeds} seeds")
            print(f"{'configuration':>26} {'file bytes':>10} {'ratio':>7} {'acc mean':>9} {'min-max':>15} "
                  f"{'loss mean':>10} {'worst loss':>11}")
            table = []
            for label, (sizes, accs) in rows.items():
                a, b = np.array(accs), np.array(sizes)
                loss = (base - a) * 100
                ratio = fp32 / b.mean()
                table.append((ratio, label, loss.mean()))
                print(f"{label:>26} {b.mean():>10,.0f} {ratio:>6.1f}x {a.mean():>9.4f} {a.min():.4f}-{a.max():.4f} "
                      f"{loss.mean():>+9.2f}p {loss.max():>+10.2f}p")
            for need, points in ((8, 1.0), (12, 2.0)):
                ok = [(r, lab, l) for r, lab, l in table if l <= points]
                best = max(ok) if ok else None
                verdict = (f"best {best[0]:.1f}x ({best[1]}, {best[2]:+.2f} points): "
                           f"{'met' if best[0] >= need else 'NOT met'}" if best else "no configuration within the loss")
                print(f"target >= {need}x at <= {points:g} point(s) mean loss: {verdict}")
            print(flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
