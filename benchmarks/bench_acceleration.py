"""Module 17's ladders at full size: convolution and attention rungs side by side, and vectorize() on the CNN.

    .venv/bin/python -m benchmarks.bench_acceleration [--batches 1 16 64 256] [--lengths 64 256 512] [--repeats 5]

Every rung is first checked against the reference (Module 09's conv2d, Module 12's attention) within
1e-5 relative, then all rungs are timed in the same run with `tinytorch_lib.timing.measure` (one BLAS
thread, median and p90). The pure-Python rung runs only up to batch 64 (at 256 it takes seconds per
call); its speedup column is then "-". Then the trained digit CNN and its vectorize() copy: held-out
accuracy of both, and one training epoch of each, timed side by side, with the same shuffles.
"""
from __future__ import annotations

import argparse
import copy

import numpy as np

from tinytorch_lib import data_dir
from tinytorch_lib.acceleration import (ATTENTION_LADDER, CONV_LADDER, attention_reference, conv2d_reference,
                                        format_ladder, time_ladder, vectorize)
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.timing import measure
from tinytorch_lib.training import evaluate, load_model, train_epoch

PYTHON_LOOPS_UP_TO = 64   # batch size above which the pure-Python rung is left out


def conv_tables(batches: list, repeats: int) -> None:
    digits = load_digits("train", flatten=False).tensors[0].data
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 1, 3, 3)) / 3).astype(np.float32)
    b = (rng.standard_normal(16) / 3).astype(np.float32)
    for n in batches:
        x = np.concatenate([digits] * (1 + n // len(digits)))[:n]
        ladder = dict(CONV_LADDER) if n <= PYTHON_LOOPS_UP_TO else {k: v for k, v in CONV_LADDER.items()
                                                                    if k != "pure Python loops"}
        rows = time_ladder(ladder, (x, w, b, 1, 1), conv2d_reference, repeats=repeats)
        note = "" if n <= PYTHON_LOOPS_UP_TO else " (pure Python loops left out: x bottom is over the next rung)"
        print(format_ladder(f"digits: x {x.shape}, weight {w.shape}, padding 1{note}", rows), flush=True)
    x = rng.standard_normal((8, 16, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) / 12).astype(np.float32)
    ladder = {k: v for k, v in CONV_LADDER.items() if k != "pure Python loops"}
    print(format_ladder(f"x {x.shape}, weight {w.shape}, stride 2, padding 1 (pure Python loops left out)",
                        time_ladder(ladder, (x, w, None, 2, 1), conv2d_reference, repeats=repeats)), flush=True)


def attention_tables(lengths: list, repeats: int) -> None:
    rng = np.random.default_rng(1)
    for batch in (1, 4):
        for s in lengths:
            q, k, v = (rng.standard_normal((batch, 4, s, 32)).astype(np.float32) for _ in range(3))
            rows = time_ladder(ATTENTION_LADDER, (q, k, v, True), attention_reference, repeats=repeats)
            print(format_ladder(f"attention q, k, v {q.shape}, causal", rows), flush=True)


def cnn_epochs(repeats: int) -> None:
    cnn, _ = load_model(data_dir("cnn_digits.npz") / "cnn_digits.npz")
    fast = vectorize(cnn)
    test = DataLoader(load_digits("test", flatten=False), batch_size=360)
    print(f"trained CNN, held-out accuracy: original {evaluate(cnn, test):.4f}, vectorized {evaluate(fast, test):.4f}")
    train = load_digits("train", flatten=False)
    runs = {}
    for label, model in (("original", cnn), ("vectorized", fast)):
        trainee = copy.deepcopy(model)
        opt = Adam(trainee.parameters(), lr=1e-3)
        loader = DataLoader(train, batch_size=32, shuffle=True, seed=0)
        loss = train_epoch(trainee, CrossEntropyLoss(), opt, loader)
        runs[label] = (measure(lambda: train_epoch(trainee, CrossEntropyLoss(), opt, loader),
                               repeats=repeats, warmup=0), loss)
    for label, (t, loss) in runs.items():
        print(f"  one epoch (1437 images, batch 32), {label:<10}: {t}; first epoch's mean loss {loss:.6f}")
    (t_a, _), (t_b, _) = runs.values()
    print(f"  epoch speedup {t_a.median / t_b.median:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    conv_tables(args.batches, args.repeats)
    attention_tables(args.lengths, args.repeats)
    cnn_epochs(args.repeats)


if __name__ == "__main__":
    main()
