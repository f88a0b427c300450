# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Demo: what pruning does to the digit MLP's bytes and accuracy
#
# Module 16's `prune` sets the smallest weights to zero: **unstructured** removes single weights
# (smallest |w| in each layer), **structured** removes whole output channels (rows of smallest L2
# norm; the output layer is kept whole). Move the sparsity, and see, for the trained digit MLP
# (`data/mlp_digits.npz`, no fine-tuning after pruning):
#
# - **the first layer's weight matrix**, pruned entries in black;
# - **the real bytes** of the three weight matrices: dense float32 (`ndarray.nbytes`), as a bitmask
#   (`to_bitmask`: one bit per entry + the nonzero float32 values) and as CSR (`to_csr`: values,
#   int16 column indices, int32 row pointers), each checked by converting back; and the size of the
#   whole model's file written by `save_compressed` (bitmask where at least half is zero, dense
#   otherwise, then LZMA), biases and header included;
# - **the held-out accuracy** (360 test images) of the pruned model;
# - the current point on the accuracy-vs-file-bytes curve.
#
# Computed at start-up: the curve, 0-95% in steps of 5 for both methods (about 5 s). The table
# and the marked point are computed again from the controls on every change.

# %%
import tempfile
from pathlib import Path

import ipywidgets as W
import matplotlib
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import app, control, figure, row, value

for line in tinytorch_lib.check_ready("training", "dataloader", "compression"):
    print(line)

from tinytorch_lib import data_dir  # noqa: E402
from tinytorch_lib.compression import (from_bitmask, from_csr, make_permanent, prunable_layers,  # noqa: E402
                                       prune, save_compressed, to_bitmask, to_csr)
from tinytorch_lib.compression import sparsity as zero_fraction  # noqa: E402
from tinytorch_lib.dataloader import DataLoader, load_digits  # noqa: E402
from tinytorch_lib.training import evaluate, load_model  # noqa: E402

model, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
test = DataLoader(load_digits("test", flatten=True), batch_size=360)
METHODS = {"unstructured": "magnitude", "structured": "structured"}  # label -> prune(method=...)
SCRATCH = tempfile.TemporaryDirectory(prefix="pruning-demo-")  # removed when the kernel exits
FILE = Path(SCRATCH.name) / "mlp-pruned.ttc"


def prune_model(percent: int, kind: str) -> dict:
    """Prune, make permanent, store three ways and write the file; held-out accuracy of the pruned model."""
    pruned = make_permanent(prune(model, percent / 100, METHODS[kind]))
    dense = bitmask = csr = 0
    for _, layer in prunable_layers(pruned):
        w = layer.weight.data
        bits, values = to_bitmask(w)
        assert np.array_equal(from_bitmask(bits, values, w.shape), w), "bitmask round trip changed the weights"
        v, idx, ptr = to_csr(w)
        assert np.array_equal(from_csr(v, idx, ptr, w.shape), w), "CSR round trip changed the weights"
        dense, bitmask, csr = dense + w.nbytes, bitmask + bits.nbytes + values.nbytes, csr + v.nbytes + idx.nbytes + ptr.nbytes
    file_bytes = save_compressed(FILE, pruned)
    return {"model": pruned, "accuracy": evaluate(pruned, test), "sparsity": zero_fraction(pruned)["total"],
            "dense": dense, "bitmask": bitmask, "csr": csr, "file": file_bytes}


PERCENTS = list(range(0, 100, 5))
CURVE = {kind: [(r["file"], r["accuracy"]) for r in (prune_model(p, kind) for p in PERCENTS)] for kind in METHODS}
print(f"FP32: accuracy {CURVE['unstructured'][0][1]:.2%} on {len(test.dataset)} held-out images; "
      f"file {CURVE['unstructured'][0][0]:,} bytes unpruned; curve: {len(PERCENTS)} sparsities x {len(METHODS)} methods")


# %%
def redraw(sparsity: int, method: str) -> tuple:
    percent, kind = sparsity, method
    r = prune_model(percent, kind)
    w = prunable_layers(r["model"])[0][1].weight.data  # (128 out, 64 in)

    fig = figure(11, 4.2)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="black")
    limit = float(np.abs(model[0].weight.data).max())
    im = ax1.imshow(np.ma.masked_equal(w.T, 0), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto",
                    interpolation="nearest")
    fig.colorbar(im, ax=ax1, label="weight value")
    ax1.set_title(f"Layer 0 weights, {kind} {percent}%: "
                  f"{int((w == 0).sum()):,} of {w.size:,} zero (black)")
    ax1.set_xlabel("output channel (128)")
    ax1.set_ylabel("input pixel (64)")

    for name, points in CURVE.items():
        ax2.plot([b / 1000 for b, _ in points], [a * 100 for _, a in points], marker="o", ms=3, label=name,
                 lw=2.5 if name == kind else 1, alpha=1 if name == kind else 0.5)
    ax2.plot([r["file"] / 1000], [r["accuracy"] * 100], "o", ms=12, mfc="none", mec="black", mew=2,
             label="current setting")
    ax2.set_xlabel("save_compressed file size (KB, 1 KB = 1000 bytes)")
    ax2.set_ylabel("held-out accuracy (%)")
    ax2.set_title("Accuracy vs file bytes, 0-95% sparsity (curves: start-up)")
    ax2.legend(fontsize=8, loc="lower right")

    html = ("<table>"
            + row(["setting", value("setting", f"{kind} {percent}%")
                   + f" (all weights: {r['sparsity']:.1%} zero)"])
            + row(["held-out accuracy", value("accuracy", f"{r['accuracy']:.2%}")
                   + f" (unpruned {CURVE['unstructured'][0][1]:.2%})"])
            + row(["weight matrices, dense float32", value("dense", f"{r['dense']:,}") + " bytes"])
            + row(["as bitmask + values", value("bitmask", f"{r['bitmask']:,}") + " bytes"])
            + row(["as CSR", value("csr", f"{r['csr']:,}") + " bytes"])
            + row(["whole model, save_compressed file", value("file", f"{r['file']:,}")
                   + f" bytes ({CURVE['unstructured'][0][0] / r['file']:.1f}x smaller than unpruned)"])
            + "</table>")
    return html, fig


controls = {
    "sparsity": control(W.IntSlider(value=50, min=0, max=95, step=5, description="sparsity (%)"), "sparsity"),
    "method": control(W.ToggleButtons(options=list(METHODS), value="unstructured", description="pruning"), "method"),
}
controls["method"].layout.width = "auto"
box, result, plot = app(controls, redraw, "Computed at start-up: the accuracy-vs-bytes curves (20 sparsities x 2 "
                        "methods). On every change: pruning, the three storage formats, the file and the accuracy "
                        "of the current setting.")
display(box)

# %% [markdown]
# What to look for:
#
# - Dense storage does not shrink: a zero costs 4 bytes like any weight. Savings appear only when
#   the zeros are not stored: the bitmask costs 1 bit per entry plus 4 bytes per kept weight, so it
#   is smaller than dense once about 3% are zero. CSR pays 2 bytes of index per kept weight (and 4 per
#   row): smaller than dense above about a third zero, smaller than the bitmask only above about 94%.
# - Without any fine-tuning, unstructured pruning costs about a point of accuracy up to 40-45%
#   sparsity, then falls off; structured pruning removes whole channels and loses several points
#   by 20-25%, but what it leaves is a smaller dense matrix, which is what makes a layer faster.
# - Milestone 06 fine-tunes after pruning: that moves the whole curve up.
