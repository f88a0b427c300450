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
# - **the held-out accuracy** (360 test images) against the size of the file `save_compressed`
#   writes (bitmask where at least half is zero, dense otherwise, then LZMA; biases and header
#   included), with the current point;
# - in the table, **the real bytes** of the three weight matrices: dense float32
#   (`ndarray.nbytes`), as a bitmask (`to_bitmask`: one bit per entry + the nonzero float32
#   values) and as CSR (`to_csr`: values, int16 column indices, int32 row pointers), each checked
#   by converting back.
#
# The curves (0-95% in steps of 5, both methods) are stored, measured ahead by `make demos`
# (`demo_measure.py`); **measure live** computes them again on this kernel's library. The table,
# the matrix and the marked point are computed from the controls (`demo_measure.prune_model`).

# %%
from demo_common import show_first

FIRST = {"sparsity": 50, "method": "unstructured"}  # the controls' first setting
show_first("pruning", FIRST)  # the stored first figure, at once

# %%
import time

import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import App, control, describe_stored, first_png, load_stored, row, value
from demo_measure import LIBRARIES, METHODS, PERCENTS, digits_mlp, measure_pruning, prune_model
from tinytorch_lib.plotting import KB, format_bytes

tinytorch_lib.check_ready(*LIBRARIES["pruning"])  # stops naming the first unfinished task
STORED = load_stored("pruning")
LIVE = {}  # filled by the measure-live button
LIMIT = float(np.abs(digits_mlp()[0][0].weight.data).max())
COLORS = {"unstructured": "#4477aa", "structured": "#ee6677"}


def curves() -> dict | None:
    return LIVE.get("data") or (STORED and STORED["data"])


def setup(fig):
    import matplotlib

    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1])
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="black")
    im = ax1.imshow(np.zeros((64, 128)), cmap=cmap, vmin=-LIMIT, vmax=LIMIT, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax1, label="weight (black: 0)")
    ax1.set_xlabel("output channel")
    ax1.set_ylabel("input pixel")
    ax1.set_xticks([0, 32, 64, 96, 127])
    ax1.set_yticks([0, 16, 32, 48, 63])
    lines = {k: ax2.plot([], [], marker="o", ms=4, color=COLORS[k], label=k)[0] for k in METHODS}
    live = {k: ax2.plot([], [], ls="none", marker="x", ms=10, mew=2, color=COLORS[k])[0] for k in METHODS}
    (point,) = ax2.plot([], [], "o", ms=16, mfc="none", mec="black", mew=2.5, label="now")
    ax2.set_xlabel("save_compressed file (kB)")
    ax2.set_ylabel("held-out accuracy (%)")
    data = curves()
    sizes = [p["file"] / KB for k in METHODS for p in data["curves"][k]] if data else [0, 50]
    ax2.set_xlim(0, max(sizes) * 1.05)
    ax2.set_ylim(0, 104)
    ax2.legend(loc="lower right")
    ax1.set_title(" ")
    ax2.set_title(" ")
    fig.art.update(ax1=ax1, ax2=ax2, im=im, lines=lines, live=live, point=point,
                   dynamic=[ax1.title, ax2.title, im, *lines.values(), *live.values(), point, ax2.get_legend()])


def draw(fig, sparsity: int, method: str) -> None:
    a = fig.art
    r = prune_model(sparsity, method)
    w = r["first_layer"]  # (128 out, 64 in)
    a["im"].set_data(np.ma.masked_equal(w.T, 0))
    a["ax1"].set_title(f"layer 0: {int((w == 0).sum()):,} of {w.size:,} zero")
    data = curves()
    for k, line in a["lines"].items():
        pts = data["curves"][k] if data else []
        line.set_data([p["file"] / KB for p in pts], [100 * p["accuracy"] for p in pts])
        line.set_linewidth(3.5 if k == method else 1.2)
        line.set_alpha(1 if k == method else 0.5)
        pts = LIVE["data"]["curves"][k] if LIVE else []
        a["live"][k].set_data([p["file"] / KB for p in pts], [100 * p["accuracy"] for p in pts])
    a["point"].set_data([r["file"] / KB], [100 * r["accuracy"]])
    a["ax2"].set_title("accuracy vs file size" + (": live (x)" if LIVE else ": stored" if STORED else ""))


def table(sparsity: int, method: str) -> str:
    r, base = prune_model(sparsity, method), prune_model(0, "unstructured")
    return ("<table>"
            + row(["setting", value("setting", f"{method} {sparsity}%") + f" (all weights: {r['sparsity']:.1%} zero)"])
            + row(["held-out accuracy", value("accuracy", f"{r['accuracy']:.2%}") + f" (unpruned {base['accuracy']:.2%})"])
            + row(["weight matrices", "dense float32 " + value("dense", f"{r['dense']:,}") + ", bitmask + values "
                   + value("bitmask", f"{r['bitmask']:,}") + ", CSR " + value("csr", f"{r['csr']:,}") + " bytes"])
            + row(["save_compressed file", value("file", f"{r['file']:,}") + f" bytes ({format_bytes(r['file'])}, "
                   + f"{base['file'] / r['file']:.1f}x smaller than unpruned)"])
            + "</table>")


def status(sparsity: int, method: str) -> str:
    if LIVE:
        return (f"Curves <b>measured live</b> on this kernel at {LIVE['when']} (x marks, beside the stored lines). "
                + describe_stored(STORED, *LIBRARIES["pruning"]))
    return describe_stored(STORED, *LIBRARIES["pruning"])


def measure(values: dict, progress) -> None:
    prune_model.cache_clear()
    data = measure_pruning(progress)
    LIVE.update(data=data, when=time.strftime("%H:%M:%S"))


controls = {
    "sparsity": control(W.IntSlider(value=FIRST["sparsity"], min=0, max=95, step=5, description="sparsity (%)"), "sparsity"),
    "method": control(W.ToggleButtons(options=list(METHODS), value=FIRST["method"], description="pruning"), "method"),
}
app = App([[controls["sparsity"], controls["method"]]], controls, setup, draw, table, status, measure=measure,
          first=first_png("pruning", FIRST),
          note="Stored: the accuracy-vs-bytes curves (20 sparsities x 2 methods). On every change: pruning, the "
               "three storage formats, the file and the accuracy of the current setting, on this kernel's library.")
display(app.box)

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
