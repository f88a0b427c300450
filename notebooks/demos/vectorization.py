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
# checked before anything is timed). Move the batch and the rung, and see, for the first layer of
# the trained digit CNN (`data/cnn_digits.npz`: 16 filters of 3x3, padding 1) on real held-out
# 8x8 digit images:
#
# - **the CPU time of every rung** at this batch, all rungs timed in turns by the course's
#   `compare` (one BLAS thread), and each rung's **speedup over the rung below it** (median of the
#   paired ratios);
# - **time against batch size** for every rung, with the current point.
#
# The pure-Python rung runs only up to a batch of 8. The ladder at every batch is **stored**,
# measured ahead by `make demos` (`demo_measure.py`); **measure live** times the current batch
# again now and draws it beside the stored bars (x marks).

# %%
from demo_common import show_first

FIRST = {"batch": 4, "rung": "im2col + matmul"}  # the controls' first setting
show_first("vectorization", FIRST)  # the stored first figure, at once

# %%
import os
import time

import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import App, control, describe_stored, first_png, load_stored, plain_log_ticks, row, value
from demo_measure import BATCHES, LIBRARIES, PYTHON_MAX, rungs, time_conv

tinytorch_lib.check_ready(*LIBRARIES["vectorization"])  # stops naming the first unfinished task
STORED = load_stored("vectorization")
LIVE = {}  # batch -> time_conv's result, from the measure-live button
RUNGS = rungs()
SHORT = ["1 Python loops", "2 positions", "3 offsets", "4 im2col", "5 windows"]
LADDER = STORED["data"]["ladder"] if STORED else {}
COLORS = ["#aa3377", "#ccbb44", "#66ccee", "#4477aa", "#228833"]


def setup(fig):
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1])
    y = np.arange(len(RUNGS))
    bars = ax1.barh(y, [1e-9] * len(RUNGS), color=COLORS, height=0.6)
    (live,) = ax1.plot([], [], ls="none", marker="x", ms=12, mew=2.5, color="black")
    ax1.set_yticks(y, SHORT)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    times = [r["ms"] for b in LADDER.values() for r in b["rungs"].values()] or [1e-3, 1e3]
    ax1.set_xlim(min(times) / 2, max(times) * 60)
    plain_log_ticks(ax1.xaxis, [t for t in (0.01, 0.1, 1, 10, 100, 1000) if min(times) / 2 <= t <= max(times) * 60])
    ax1.set_xlabel("CPU ms per call")
    labels = [ax1.text(1, k, "", va="center") for k in y]
    lines = []
    for i, name in enumerate(RUNGS):
        pts = [(b, LADDER[str(b)]["rungs"][name]["ms"]) for b in BATCHES if name in LADDER.get(str(b), {}).get("rungs", {})]
        (line,) = ax2.plot(*zip(*pts) if pts else ([], []), marker="o", ms=4, color=COLORS[i], label=SHORT[i])
        lines.append(line)
    (point,) = ax2.plot([], [], "o", ms=16, mfc="none", mec="black", mew=2.5)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    plain_log_ticks(ax2.xaxis, [1, 4, 16, 64, 256])
    ax2.set_ylim(min(times) / 2, max(times) * 3)
    plain_log_ticks(ax2.yaxis, [t for t in (0.01, 0.1, 1, 10, 100, 1000) if min(times) / 2 <= t <= max(times) * 3])
    ax2.set_xlabel("batch (8x8 images)")
    ax2.set_ylabel("CPU ms per call")
    ax1.set_title(" ")
    ax2.set_title("time vs batch (colours as left): stored" if STORED else "time vs batch")
    fig.art.update(ax1=ax1, ax2=ax2, bars=list(bars), live=live, labels=labels, lines=lines, point=point,
                   dynamic=[ax1.title, *bars, live, *labels, *lines, point])


def draw(fig, batch: int, rung: str) -> None:
    a = fig.art
    stored = LADDER.get(str(batch), {}).get("rungs", {})
    live = LIVE.get(batch, {}).get("rungs", {})
    for i, name in enumerate(RUNGS):
        r = stored.get(name)
        a["bars"][i].set_width(r["ms"] if r else 1e-9)
        a["bars"][i].set_alpha(1 if name == rung else 0.45)
        a["bars"][i].set_edgecolor("black" if name == rung else "none")
        a["bars"][i].set_linewidth(2.5)
        x = r["x_previous"] if r else None
        a["labels"][i].set_position(((r["ms"] if r else a["ax1"].get_xlim()[0]) * 1.15, i))
        a["labels"][i].set_text((f"{r['ms']:.3g} ms" + (f", {x[0]:.1f}x" if x else "")) if r
                                else f"not run above batch {PYTHON_MAX}")
        a["lines"][i].set_linewidth(3.5 if name == rung else 1.2)
        a["lines"][i].set_alpha(1 if name == rung else 0.5)
    a["live"].set_data([live[n]["ms"] for n in RUNGS if n in live], [i for i, n in enumerate(RUNGS) if n in live])
    r = stored.get(rung)
    a["point"].set_data([batch] if r else [], [r["ms"]] if r else [])
    a["ax1"].set_title(f"batch {batch}: " + ("stored, x: live" if live else "stored") + ", speedup vs rung below")


def table(batch: int, rung: str) -> str:
    i = RUNGS.index(rung)
    where = "live" if batch in LIVE else "stored"
    rows = (LIVE.get(batch) or LADDER.get(str(batch), {})).get("rungs", {})
    r = rows.get(rung)
    if r is None:
        time_text, speed_text = f"not run above batch {PYTHON_MAX}", "n/a"
    else:
        time_text = f"{r['ms']:.3f}"
        if i == 0:
            speed_text = "n/a (the bottom rung)"
        elif r["x_previous"] is None:
            speed_text = f"n/a ({RUNGS[i - 1]} not run above batch {PYTHON_MAX})"
        else:
            speed_text = f"{r['x_previous'][0]:.1f}x"
    return ("<table>"
            + row(["setting", value("setting", f"batch {batch}, rung {i + 1}: {rung}") + f" ({where})"])
            + row(["CPU ms per call", value("time", time_text) + (f" (p90 {r['p90_ms']:.3f})" if r else "")])
            + row(["speedup over the rung below", value("speedup", speed_text)
                   + (f" (p10-p90 {r['x_previous'][1]:.1f}-{r['x_previous'][2]:.1f})" if r and r["x_previous"] else "")])
            + row(["error vs reference", f"{r['error']:.1e} relative" if r else "n/a"])
            + "</table>")


def status(batch: int, rung: str) -> str:
    line = describe_stored(STORED, *LIBRARIES["vectorization"])
    if batch in LIVE:
        r = LIVE[batch]
        line = (f"<b>Measured live</b> at {r['when']} (load {r['load']}): the table and the x marks." 
                + (f" {r['noisy']}" if r.get("noisy") else "") + " " + line)
    return line


def measure(values: dict, progress) -> None:
    batch = values["batch"]
    progress(f"batch {batch}: checking every rung against the reference, then timing them in turns ...")
    r = time_conv(batch)
    r.update(when=time.strftime("%H:%M:%S"), load=f"{os.getloadavg()[0]:.1f}")
    LIVE[batch] = r


controls = {
    "batch": control(W.SelectionSlider(options=BATCHES, value=FIRST["batch"], description="batch (images)"), "batch"),
    "rung": control(W.SelectionSlider(options=list(zip(SHORT, RUNGS)), value=FIRST["rung"], description="rung"), "rung"),
}
app = App([[controls["batch"], controls["rung"]]], controls, setup, draw, table, status, measure=measure,
          first=first_png("vectorization", FIRST),
          note="Stored: every rung timed at every batch. On every change: the stored row of the setting. "
               "Measure live: the current batch, timed now.")
display(app.box)

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
