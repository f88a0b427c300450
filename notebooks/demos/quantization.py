# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Demo: what b-bit weights do to the digit MLP
#
# Module 15's `quantize_tensor` rounds every weight to one of 2^b levels (a grid set by a scale
# and a zero point), and `dequantize_tensor` maps the codes back to floats. Move the bit width and
# the scheme, and see, for the trained digit MLP (`data/mlp_digits.npz`, 64-128-64-10):
#
# - **the grid**: the weights of one output channel of the first layer and the levels they are
#   rounded to. The channel shown is the one with the narrowest range, the one a single
#   per-tensor scale serves worst;
# - **the held-out accuracy** (360 test images) of a copy of the model whose weights are the
#   dequantized ones, on the accuracy-vs-bits curves;
# - in the table: the reconstruction error |w - dequantize(quantize(w))| and **the real bytes**:
#   the codes bit-packed at b bits each (`np.packbits`, checked by unpacking), plus the float32
#   scales, the int32 zero points (affine only) and the float32 biases.
#
# The curves (28 settings) are stored, measured ahead by `make demos` (`demo_measure.py`);
# **measure live** computes them again on this kernel's library. The table, the grid and the
# marked point are computed from the controls on every change (`demo_measure.quantize_model`).

# %%
from demo_common import show_first

FIRST = {"bits": 4, "scheme": "per-tensor symmetric"}  # the controls' first setting
show_first("quantization", FIRST)  # the stored first figure, at once

# %%
import time

import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import App, control, describe_stored, first_png, load_stored, row, value
from demo_measure import BITS, LIBRARIES, SCHEMES, digits_mlp, measure_quantization, quantize_model
from tinytorch_lib.plotting import format_bytes

tinytorch_lib.check_ready(*LIBRARIES["quantization"])  # stops naming the first unfinished task
STORED = load_stored("quantization")
LIVE = {}  # filled by the measure-live button
LAYER0 = digits_mlp()[0][0].weight.data                            # (128 out, 64 in) float32
CHANNEL = int(np.argmin(LAYER0.max(axis=1) - LAYER0.min(axis=1)))  # the narrowest-range output channel
COLORS = dict(zip(SCHEMES, ["#4477aa", "#ee6677", "#228833", "#aa3377"]))
SHORT = {"per-tensor symmetric": "tensor, sym.", "per-tensor affine": "tensor, affine",
         "per-channel symmetric": "channel, sym.", "per-channel affine": "channel, affine"}


def curves() -> dict | None:
    """What the curves show: live when measured, else stored (None when neither)."""
    return LIVE.get("data") or (STORED and STORED["data"])


def setup(fig):
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
    w = LAYER0[CHANNEL]
    ax1.hist(w, bins=30, color="#4477aa", alpha=0.6, label="weights")
    grid = ax1.vlines([], 0, 1, color="#cc3311", lw=1, alpha=0.45, label="grid levels")
    after = ax1.vlines([], 0, 1, color="#ee7733", lw=4, label="after rounding")
    pad = 0.25 * (w.max() - w.min())
    ax1.set_xlim(w.min() - pad, w.max() + pad)
    ax1.set_xlabel("weight value")
    ax1.set_ylabel("weights per value")
    ax1.legend(loc="upper right")
    lines = {s: ax2.plot(BITS, [np.nan] * len(BITS), marker="o", ms=5, color=COLORS[s], label=SHORT[s])[0]
             for s in SCHEMES}
    live = {s: ax2.plot(BITS, [np.nan] * len(BITS), ls="none", marker="x", ms=10, mew=2, color=COLORS[s])[0]
            for s in SCHEMES}
    fp32 = ax2.axhline(np.nan, color="gray", ls="--", lw=1.5, label="FP32")
    (point,) = ax2.plot([], [], "o", ms=16, mfc="none", mec="black", mew=2.5, label="now")
    ax2.set_xlabel("bits per weight")
    ax2.set_ylabel("held-out accuracy (%)")
    ax2.set_xticks(BITS)
    ax2.set_xlim(1.6, 8.4)
    ax2.set_ylim(0, 104)
    ax2.legend(loc="lower right")
    ax1.set_title(" ")
    ax2.set_title(" ")
    fig.art.update(ax1=ax1, ax2=ax2, grid=grid, after=after, lines=lines, live=live, fp32=fp32, point=point,
                   hist_max=float(np.histogram(w, bins=30)[0].max()),
                   dynamic=[ax1.title, ax2.title, grid, after, *lines.values(), *live.values(), point,
                            ax1.get_legend(), ax2.get_legend()])


def draw(fig, bits: int, scheme: str) -> None:
    a = fig.art
    per_channel, _ = SCHEMES[scheme]
    r = quantize_model(bits, scheme)
    q, scale, zero, w_hat = r["codes"][next(iter(r["codes"]))]  # the first layer
    s = float(np.ravel(scale)[CHANNEL if per_channel else 0])
    z = int(np.ravel(zero)[CHANNEL if per_channel else 0])
    levels = (np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) - z) * s  # every value this channel's codes can take
    after, counts = np.unique(w_hat[CHANNEL], return_counts=True)
    top = next(t for t in (12, 24, 48, 72, 108) if t >= 1.6 * max(a["hist_max"], counts.max()))
    if a["ax1"].get_ylim()[1] != top:  # a few fixed heights: the background is drawn again only then
        a["ax1"].set_ylim(0, top)
        a["static_dirty"] = True
    lo, hi = a["ax1"].get_xlim()
    a["grid"].set_segments([[(x, 0), (x, top)] for x in levels[(levels >= lo) & (levels <= hi)]])
    a["after"].set_segments([[(x, 0), (x, c)] for x, c in zip(after, counts)])
    a["ax1"].set_title(f"channel {CHANNEL}: {bits}-bit grid, {len(np.unique(q[CHANNEL]))} of {2 ** bits} levels used")

    data = curves()
    for name, line in a["lines"].items():
        line.set_ydata([100 * x for x in data["curves"][name]] if data else [np.nan] * len(BITS))
        line.set_linewidth(3.5 if name == scheme else 1.2)
        line.set_alpha(1 if name == scheme else 0.45)
        a["live"][name].set_ydata([100 * x for x in LIVE["data"]["curves"][name]] if LIVE else [np.nan] * len(BITS))
    if data and a["fp32"].get_ydata()[0] != 100 * data["fp32_accuracy"]:
        a["fp32"].set_ydata([100 * data["fp32_accuracy"]] * 2)
        a["static_dirty"] = True
    a["point"].set_data([bits], [100 * r["accuracy"]])
    a["ax2"].set_title("accuracy vs bits" + (": live (x)" if LIVE else ": stored" if STORED else ""))


def table(bits: int, scheme: str) -> str:
    r = quantize_model(bits, scheme)
    st, data = r["stored"], curves()
    fp32_acc, fp32_bytes = (data["fp32_accuracy"], data["fp32_bytes"]) if data else (None, None)
    return ("<table>"
            + row(["setting", value("setting", f"{bits}-bit {scheme}")])
            + row(["held-out accuracy", value("accuracy", f"{r['accuracy']:.2%}")
                   + (f" (FP32 {fp32_acc:.2%}: {(r['accuracy'] - fp32_acc) * 100:+.2f} points)" if data else "")])
            + row(["weight error", f"RMS {r['rms_error']:.2e} (" + value("relative-error", f"{r['relative_error']:.2%}")
                   + f" of RMS weight), max {r['max_error']:.2e}"])
            + row(["bytes stored", value("bytes", f"{r['bytes']:,}") + f" = packed codes {st['codes, bit-packed']:,}"
                   + f" + scales {st['scales (float32)']:,} + zero points {st['zero points (int32)']:,}"
                   + f" + biases {st['biases (float32)']:,}"
                   + (f"; FP32 {fp32_bytes:,} bytes ({format_bytes(fp32_bytes)}), {fp32_bytes / r['bytes']:.1f}x more" if data else "")])
            + "</table>")


def status(bits: int, scheme: str) -> str:
    if LIVE:
        return (f"Curves <b>measured live</b> on this kernel at {LIVE['when']} (x marks, beside the stored lines). "
                + describe_stored(STORED, *LIBRARIES["quantization"]))
    return describe_stored(STORED, *LIBRARIES["quantization"])


def measure(values: dict, progress) -> None:
    data = measure_quantization(progress)
    LIVE.update(data=data, when=time.strftime("%H:%M:%S"))


controls = {"bits": control(W.IntSlider(value=FIRST["bits"], min=2, max=8, description="bits per weight"), "bits"),
            "scheme": control(W.ToggleButtons(options=list(SCHEMES), value=FIRST["scheme"],
                                              description="scheme"), "scheme")}
app = App([[controls["bits"]], [controls["scheme"]]], controls, setup, draw, table, status, measure=measure,
          first=first_png("quantization", FIRST),
          note="Stored: the accuracy curves. On every change: the quantized weights, errors, bytes and accuracy "
               "of the current setting, on this kernel's library.")
display(app.box)

# %% [markdown]
# What to look for:
#
# - At 8 bits every scheme keeps the FP32 accuracy; the packed codes are a quarter of the float32
#   weights, and the scales are a few hundred bytes.
# - Per-tensor, the narrowest channel falls on a handful of levels at low bit widths: its weights
#   are rounded to a few values (or to 0). Per-channel, the same channel gets its own grid and uses
#   all of it. This is why per-channel weights are the default for int8 layers (`QuantizedLinear`).
# - Below 4 bits the error grows fast and the accuracy falls. Affine fits the grid to [min, max];
#   symmetric centres it on 0, so the levels beyond the smaller side go unused: that costs most at
#   low bit widths and for lopsided ranges.
