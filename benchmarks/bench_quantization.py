"""FP32 / FP16 / INT8 digit models: real bytes, ratio and held-out accuracy over 5 seeds, and forward time.

    .venv/bin/python -m benchmarks.bench_quantization [--seeds 5]

Each seed retrains the MLP and the CNN with `benchmarks/train_digits.py`'s recipe
(seed 0 is the model shipped in data/), quantizes it with
`tinytorch_lib.quantization.quantize` (calibration: the first 256 training images),
saves every variant with Module 08's `save_model` and reloads it (the reloaded model
must give the same outputs), and evaluates on the 360 held-out images. Bytes are the
arrays stored (state_dict nbytes) and the saved file's size. Forward time: one pass
over the 360 test images, `measure` with one BLAS thread, both sides in the same run.
Target (issue): INT8 >= 3.5x smaller in real bytes at <= 0.5 points accuracy loss.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.train_digits import RECIPES, train
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.profiler import model_bytes
from tinytorch_lib.quantization import model_arch, quantize
from tinytorch_lib.timing import blas_threads, measure
from tinytorch_lib.training import evaluate, load_model, save_model

VARIANTS = ("FP32", "FP16", "INT8 per tensor", "INT8 per channel")


def variants(model, calibration) -> dict:
    return {"FP32": model, "FP16": quantize(model, dtype="fp16"),
            "INT8 per tensor": quantize(model, calibration, per_channel=False),
            "INT8 per channel": quantize(model, calibration)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    with blas_threads(1):
        for name in ("mlp", "cnn"):
            flatten = RECIPES[name][1]
            train_x = load_digits("train", flatten=flatten).tensors[0].data
            test = load_digits("test", flatten=flatten)
            calibration = [train_x[i:i + 64] for i in range(0, 256, 64)]
            acc = {v: [] for v in VARIANTS}
            stored, files, times = {}, {}, {}
            for seed in range(args.seeds):
                model, _, _ = train(name, seed, progress=False)
                for label, m in variants(model, calibration).items():
                    path = scratch / f"{name}_{seed}_{label.replace(' ', '_')}.npz"
                    files[label] = save_model(path, m, model_arch(m))
                    back, _ = load_model(path)
                    assert np.array_equal(back(test.tensors[0]).data, m(test.tensors[0]).data), (name, seed, label)
                    stored[label] = model_bytes(m)
                    acc[label].append(evaluate(m, DataLoader(test, batch_size=360)))
                    if seed == 0:
                        times[label] = measure(lambda: m(test.tensors[0]), repeats=7)
                print(f"{name} seed {seed}: " + ", ".join(f"{v} {acc[v][-1]:.4f}" for v in VARIANTS), flush=True)
            base_acc = np.array(acc["FP32"])
            print(f"\n{name.upper()}: {args.seeds} seeds, 360 held-out images; forward = 360 images, seed 0, 1 BLAS thread")
            print(f"{'':<17} {'stored B':>9} {'ratio':>6} {'file B':>8} {'ratio':>6} {'acc mean':>9} {'min-max':>15} "
                  f"{'loss mean':>10} {'worst loss':>11} {'forward':>10} {'vs FP32':>8}")
            for v in VARIANTS:
                a = np.array(acc[v])
                loss = (base_acc - a) * 100
                print(f"{v:<17} {stored[v]:>9,} {stored['FP32'] / stored[v]:>5.2f}x {files[v]:>8,} "
                      f"{files['FP32'] / files[v]:>5.2f}x {a.mean():>9.4f} {a.min():>7.4f}-{a.max():.4f} "
                      f"{loss.mean():>+9.2f}p {loss.max():>+10.2f}p {times[v].median * 1e3:>7.2f} ms "
                      f"{times[v].median / times['FP32'].median:>7.2f}x")
            int8 = stored["FP32"] / stored["INT8 per channel"]
            worst = ((base_acc - np.array(acc["INT8 per channel"])) * 100).max()
            print(f"target INT8 >= 3.5x at <= 0.5 points: {int8:.2f}x, worst loss {worst:+.2f} points: "
                  f"{'met' if int8 >= 3.5 and worst <= 0.5 else 'NOT met'}\n")


if __name__ == "__main__":
    main()
