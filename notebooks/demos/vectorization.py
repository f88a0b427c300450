# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Demo: the convolution ladder, rung by rung
#
# Module 17 computes the same convolution five ways (`CONV_LADDER`, bottom first): pure Python
# loops, a loop over output positions, Module 09's loop over kernel offsets, im2col + one matmul,
# and sliding windows + `tensordot`. Every rung gives the reference's output (within 1e-5 relative,
# checked by `time_ladder` before it times anything). Move the batch and the rung, and see, for the
# first layer of the trained digit CNN (`data/cnn_digits.npz`: 16 filters of 3x3, padding 1) on
# real held-out 8x8 digit images:
#
# - **the time of every rung** at this batch, measured side by side by `time_ladder` (the
#   course's `measure`, one BLAS thread, median of 3 repeats), and the current rung's **speedup
#   over the rung below it**;
# - **time against batch size** for every rung, with the current point.
#
# The pure-Python rung runs only up to a batch of 8 (at 256 one call takes about half a second).
# Computed at start-up: the time-vs-batch curves (every batch, about 2 s). The bars and the
# numbers are measured again whenever the batch changes (moving only the rung reuses them).

# %%
import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import app, control, figure, row, value

for line in tinytorch_lib.check_ready("training", "dataloader", "spatial", "acceleration"):
    print(line)

from tinytorch_lib import data_dir  # noqa: E402
from tinytorch_lib.acceleration import CONV_LADDER, conv2d_reference, time_ladder  # noqa: E402
from tinytorch_lib.dataloader import load_digits  # noqa: E402
from tinytorch_lib.training import load_model  # noqa: E402

cnn, _ = load_model(data_dir("cnn_digits.npz") / "cnn_digits.npz")
conv = cnn[0]
IMAGES = load_digits("test", flatten=False).tensors[0].data  # (360, 1, 8, 8) float32
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PYTHON_MAX = 8  # largest batch the pure-Python rung runs at
RUNGS = list(CONV_LADDER)


def time_rungs(batch: int) -> dict:
    """{rung: time_ladder row} at this batch; the pure-Python rung only up to PYTHON_MAX."""
    ladder = {name: fn for name, fn in CONV_LADDER.items() if batch <= PYTHON_MAX or name != RUNGS[0]}
    args = (IMAGES[:batch], conv.weight.data, conv.bias.data, conv.stride, conv.padding)
    return {r["rung"]: r for r in time_ladder(ladder, args, conv2d_reference, repeats=3)}


START = {b: time_rungs(b) for b in BATCHES}
print(f"conv: {conv}; input (batch, 1, 8, 8); start-up curves measured at {len(BATCHES)} batch sizes")


# %%
LAST = {}  # the live timing of the current batch: moving only the rung redraws from it


def redraw(batch: int, rung: str) -> tuple:
    if batch not in LAST:
        LAST.clear()
        LAST[batch] = time_rungs(batch)
    rows = LAST[batch]
    i = RUNGS.index(rung)
    median = {name: rows[name]["timing"].median for name in rows}

    fig = figure(12, 4)
    ax1, ax2 = fig.subplots(1, 2)
    names = [n for n in RUNGS if n in median]
    colors = ["#cc3311" if n == rung else "#4477aa" for n in names]
    ax1.barh(range(len(names)), [median[n] * 1e3 for n in names], color=colors)
    ax1.set_yticks(range(len(names)), names)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    for k, n in enumerate(names):
        previous = RUNGS[RUNGS.index(n) - 1] if RUNGS.index(n) else None
        note = f"{median[previous] / median[n]:.1f}x previous" if previous in median else ""
        ax1.text(median[n] * 1e3 * 1.1, k, f"{median[n] * 1e3:.3g} ms  {note}", va="center", fontsize=8)
    ax1.set_xlim(right=max(median.values()) * 1e3 * 30)
    ax1.set_xlabel("ms per call (log scale)")
    ax1.set_title(f"Batch {batch}: every rung, measured when the batch was set" if rung in median else
                  f"Batch {batch}: {rung} not run above batch {PYTHON_MAX}")

    for name in RUNGS:
        pts = [(b, START[b][name]["timing"].median * 1e3) for b in BATCHES if name in START[b]]
        ax2.plot(*zip(*pts), marker="o", ms=3, label=name, lw=2.5 if name == rung else 1,
                 alpha=1 if name == rung else 0.6)
    if rung in median:
        ax2.plot([batch], [median[rung] * 1e3], "o", ms=12, mfc="none", mec="black", mew=2, label="current setting")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch (8x8 images)")
    ax2.set_ylabel("ms per call")
    ax2.set_title("Time vs batch (lines: start-up)")
    ax2.legend(fontsize=7)

    if rung not in median:
        time_text, speed_text = f"not run above batch {PYTHON_MAX}", "n/a"
    else:
        time_text = f"{median[rung] * 1e3:.3f}"
        previous = RUNGS[i - 1] if i else None
        if previous is None:
            speed_text = "n/a (the bottom rung)"
        elif previous in median:
            speed_text = f"{median[previous] / median[rung]:.1f}x"
        else:
            speed_text = f"n/a ({previous} not run above batch {PYTHON_MAX})"
    html = ("<table>"
            + row(["setting", value("setting", f"batch {batch}, rung {i + 1}: {rung}")])
            + row(["ms per call", value("time", time_text) + (f" (p90 {rows[rung]['timing'].p90 * 1e3:.3f})"
                                                             if rung in median else "")])
            + row(["speedup over the rung below", value("speedup", speed_text)])
            + row(["error vs reference", f"{rows[rung]['error']:.1e} relative" if rung in rows else "n/a"])
            + "</table>")
    return html, fig


controls = {
    "batch": control(W.SelectionSlider(options=BATCHES, value=4, description="batch (images)"), "batch"),
    "rung": control(W.SelectionSlider(options=RUNGS, value=RUNGS[3], description="rung"), "rung"),
}
box, result, plot = app(controls, redraw, "Computed at start-up: the time-vs-batch curves. On every change: "
                        "every rung timed again when the batch changes (moving only the rung reuses that timing).")
display(box)

# %% [markdown]
# What to look for:
#
# - The big step is leaving Python: the pure-Python rung is tens to hundreds of times slower than
#   im2col, and the gap grows with the batch.
# - At batch 1 every numpy rung takes well under a millisecond, much of it numpy's per-call
#   overhead. As the batch grows, the rungs that loop in Python over positions or offsets pay for
#   each numpy call on a bigger array, and im2col, one large matmul, stays ahead.
# - A rung higher on the ladder is not always faster at every size (on 8x8 images the loop over
#   positions can beat the loop over offsets, and sliding windows can trail im2col): measure on
#   your own sizes.
