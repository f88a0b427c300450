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
# - **the reconstruction error** over all weights, |w - dequantize(quantize(w))|;
# - **the real bytes**: the codes bit-packed at b bits each (`np.packbits`, checked by unpacking),
#   plus the float32 scales, the int32 zero points (affine only: a symmetric zero point is 0 and is
#   not stored) and the float32 biases, which stay FP32. The int8 buffer `quantize_tensor` returns
#   (one byte per code at every b) is shown too;
# - **the held-out accuracy** (360 test images) of a deep copy of the model whose weights are the
#   dequantized ones.
#
# Computed at start-up: the accuracy at every bit width and scheme (28 settings, under a second),
# for the curves on the right. The numbers in the table and the marked point are computed again
# from the controls on every change.

# %%
import copy

import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import app, control, figure, row, value

for line in tinytorch_lib.check_ready("training", "dataloader", "quantization", "profiler"):
    print(line)

from tinytorch_lib import data_dir  # noqa: E402
from tinytorch_lib.compression import prunable_layers  # noqa: E402
from tinytorch_lib.dataloader import DataLoader, load_digits  # noqa: E402
from tinytorch_lib.profiler import model_bytes  # noqa: E402
from tinytorch_lib.quantization import dequantize_tensor, quantize_tensor  # noqa: E402
from tinytorch_lib.training import evaluate, load_model  # noqa: E402

model, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
test = DataLoader(load_digits("test", flatten=True), batch_size=360)
LAYERS = prunable_layers(model)  # (name, Linear): weights (out_features, in_features)
FP32_ACCURACY = evaluate(model, test)
FP32_BYTES = model_bytes(model)  # every float32 array of the state_dict
SCHEMES = {"per-tensor symmetric": (False, True), "per-tensor affine": (False, False),
           "per-channel symmetric": (True, True), "per-channel affine": (True, False)}


# %%
def pack_codes(q: np.ndarray, bits: int) -> np.ndarray:
    """int8 codes in [-2^(bits-1), 2^(bits-1)-1] -> uint8, `bits` bits per code (ceil(size*bits/8) bytes)."""
    u = (q.astype(np.int16).ravel() + 2 ** (bits - 1)).astype(np.uint8)    # 0 .. 2^bits - 1
    return np.packbits(np.unpackbits(u[:, None], axis=1)[:, 8 - bits:])     # keep the low `bits` bits


def unpack_codes(packed: np.ndarray, bits: int, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape))
    low = np.unpackbits(packed, count=n * bits).reshape(n, bits)
    u = np.packbits(np.pad(low, ((0, 0), (8 - bits, 0))), axis=1).ravel()
    return (u.astype(np.int16) - 2 ** (bits - 1)).astype(np.int8).reshape(shape)


def quantize_model(bits: int, per_channel: bool, symmetric: bool) -> dict:
    """Quantize every Linear weight (per channel: one scale per output row, axis 0) and measure what it costs."""
    axis = 0 if per_channel else None
    new = copy.deepcopy(model)
    stored = {"codes, bit-packed": 0, "codes, int8 buffer": 0, "scales (float32)": 0,
              "zero points (int32)": 0, "biases (float32)": 0}
    sq_err, sq_w, max_err, n = 0.0, 0.0, 0.0, 0
    codes = {}
    for (name, layer), (_, copy_layer) in zip(LAYERS, prunable_layers(new)):
        w = layer.weight.data
        q, scale, zero = quantize_tensor(w, bits=bits, symmetric=symmetric, axis=axis)
        packed = pack_codes(q, bits)
        assert np.array_equal(unpack_codes(packed, bits, q.shape), q), "bit packing lost a code"
        w_hat = dequantize_tensor(q, scale, zero, axis=axis)
        copy_layer.weight.data = w_hat
        codes[name] = (q, scale, zero)
        stored["codes, bit-packed"] += packed.nbytes
        stored["codes, int8 buffer"] += q.nbytes
        stored["scales (float32)"] += scale.nbytes
        stored["zero points (int32)"] += 0 if symmetric else zero.nbytes
        stored["biases (float32)"] += layer.bias.data.nbytes
        err = np.abs(w.astype(np.float64) - w_hat)
        sq_err, sq_w, max_err, n = sq_err + (err ** 2).sum(), sq_w + (w.astype(np.float64) ** 2).sum(), \
            max(max_err, float(err.max())), n + w.size
    total = stored["codes, bit-packed"] + stored["scales (float32)"] + stored["zero points (int32)"] \
        + stored["biases (float32)"]
    return {"accuracy": evaluate(new, test), "rms_error": float(np.sqrt(sq_err / n)),
            "relative_error": float(np.sqrt(sq_err / sq_w)), "max_error": max_err,
            "stored": stored, "bytes": total, "codes": codes}


CURVES = {scheme: [quantize_model(b, *flags)["accuracy"] for b in range(2, 9)] for scheme, flags in SCHEMES.items()}
print(f"FP32: accuracy {FP32_ACCURACY:.2%} on {len(test.dataset)} held-out images, {FP32_BYTES:,} bytes; "
      f"accuracy at 2-8 bits computed for {len(SCHEMES)} schemes")

# %%
W0 = LAYERS[0][1].weight.data
CHANNEL = int(np.argmin(W0.max(axis=1) - W0.min(axis=1)))  # the narrowest-range output channel of layer 0


def redraw(bits: int, scheme: str) -> tuple:
    per_channel, symmetric = SCHEMES[scheme]
    r = quantize_model(bits, per_channel, symmetric)
    q, scale, zero = r["codes"][LAYERS[0][0]]
    s = float(np.ravel(scale)[CHANNEL if per_channel else 0])
    z = int(np.ravel(zero)[CHANNEL if per_channel else 0])
    levels = (np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) - z) * s  # every value this channel's codes can take
    used = len(np.unique(q[CHANNEL]))

    fig = figure()
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    w = W0[CHANNEL]
    ax1.hist(w, bins=40, color="#4477aa", alpha=0.8, label=f"channel {CHANNEL}: {w.size} weights")
    w_hat = dequantize_tensor(q, scale, zero, axis=0 if per_channel else None)[CHANNEL]
    after, counts = np.unique(w_hat, return_counts=True)
    lo, hi = min(w.min(), after.min()), max(w.max(), after.max())
    pad = 0.15 * (hi - lo)
    shown = levels[(levels >= lo - pad) & (levels <= hi + pad)]
    for i, x in enumerate(shown):
        ax1.axvline(x, color="#cc3311", lw=0.8, alpha=0.5, label="grid levels" if i == 0 else None)
    ax1.vlines(after, 0, counts, color="#ee7733", lw=3, label="after rounding (count per level)")
    ax1.set_xlim(lo - pad, hi + pad)
    ax1.set_title(f"Layer 0, output channel {CHANNEL} (narrowest range): {bits}-bit {scheme} grid\n"
                  f"its weights use {used} of the {2 ** bits} levels; step {s:.2e}")
    ax1.set_xlabel("weight value")
    ax1.set_ylabel("count")
    ax1.legend(loc="upper right", fontsize=8)

    for name, accs in CURVES.items():
        ax2.plot(range(2, 9), [a * 100 for a in accs], marker="o", ms=3, label=name,
                 lw=2.5 if name == scheme else 1, alpha=1 if name == scheme else 0.5)
    ax2.axhline(FP32_ACCURACY * 100, color="gray", ls="--", lw=1, label="FP32")
    ax2.plot([bits], [r["accuracy"] * 100], "o", ms=12, mfc="none", mec="black", mew=2, label="current setting")
    ax2.set_xlabel("bits per weight")
    ax2.set_ylabel("held-out accuracy (%)")
    ax2.set_title("Accuracy vs bit width (curves: start-up)")
    ax2.legend(fontsize=7, loc="lower right")

    st = r["stored"]
    html = ("<table>"
            + row(["setting", value("setting", f"{bits}-bit {scheme}")])
            + row(["held-out accuracy", value("accuracy", f"{r['accuracy']:.2%}")
                   + f" (FP32 {FP32_ACCURACY:.2%}, {(r['accuracy'] - FP32_ACCURACY) * 100:+.2f} points)"])
            + row(["weight error", f"RMS {r['rms_error']:.2e} ("
                   + value("relative-error", f"{r['relative_error']:.2%}") + f" of RMS weight), max {r['max_error']:.2e}"])
            + row(["bytes stored", value("bytes", f"{r['bytes']:,}") + f" = codes bit-packed {st['codes, bit-packed']:,}"
                   + f" + scales {st['scales (float32)']:,} + zero points {st['zero points (int32)']:,}"
                   + f" + biases {st['biases (float32)']:,}; FP32 {FP32_BYTES:,} ({FP32_BYTES / r['bytes']:.1f}x smaller)"])
            + row(["as int8 buffers", f"codes {st['codes, int8 buffer']:,} bytes (one byte per code at any bit width)"])
            + "</table>")
    return html, fig


controls = {
    "bits": control(W.IntSlider(value=4, min=2, max=8, description="bits per weight"), "bits"),
    "scheme": control(W.ToggleButtons(options=list(SCHEMES), value="per-tensor symmetric", description="scheme"),
                      "scheme"),
}
controls["scheme"].layout.width = "auto"
box, result, plot = app(controls, redraw, "Computed at start-up: the accuracy curves (every bit width and scheme). "
                        "On every change: the quantized weights, errors, bytes and accuracy of the current setting.")
display(box)

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
