# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 17: Acceleration (a ladder of faster kernels, and `vectorize`)
#
# Module 09's convolution is correct and readable: a loop over the nine
# offsets of a 3x3 kernel, one numpy contraction each. Module 09 also measured
# what it costs: per FLOP it runs far slower than one matrix product with the
# same FLOPs, because it makes many small passes over strided memory. This
# module climbs a **ladder** of implementations of the same convolution, the
# way llm.c builds its kernels, from the definition in pure Python loops to a
# single matrix multiply:
#
# | rung | the loop that is left in Python | calls into numpy per convolution |
# |---|---|---|
# | pure Python loops | every multiply-add | none |
# | loop over output positions | `H_out * W_out` positions | one small matmul per position |
# | loop over kernel offsets (Module 09) | `kh * kw` offsets | one einsum per offset |
# | im2col + matmul | none (the gather loops over `kh * kw` copies) | one large matmul |
#
# Every rung is checked against Module 09's `conv2d` (within `1e-5`
# relative) before it is timed, and all rungs are timed side by side in the
# same cell. The same is done for attention (a loop over heads and positions,
# then one batched matmul). Finally `vectorize(model)` swaps the fast kernels
# into a trained model through the `Module` seam (`set_submodule`): the same
# outputs, the same gradients, and an epoch of training measured before and after.
# For inference, the transformer block and the whole GPT get a **fused** pass
# that removes most of what one generated token costs: the per-operation
# overhead of the library.
#
# | task | what you build | points |
# |---|---|---|
# | 17.1 | `conv2d_positions`: a loop over output positions, one matmul each | 3 |
# | 17.2 | `im2col`: every receptive field as one row of a matrix | 4 |
# | 17.3 | `conv2d_im2col`: the convolution as one matrix multiply | 3 |
# | 17.4 | `attention_batched`: attention for all heads in two batched matmuls | 3 |
# | 17.5 | `conv2d_im2col_backward`: gradients through im2col (col2im) | 4 |
# | 17.6 | `vectorize(model)`: a new model with the fast layers swapped in | 3 |
#
# This module builds on Modules 01-13: `Tensor` and the autograd seam from
# `tinytorch_lib.tensor`, `Module` from `tinytorch_lib.layers`, `Conv2d`,
# `conv2d` and `conv2d_output_shape` from `tinytorch_lib.spatial` (Module 09),
# `MultiHeadAttention` and its helpers from `tinytorch_lib.attention` (Module 12),
# `TransformerBlock` and `GPT` from `tinytorch_lib.transformer` (Module 13),
# and for the systems analysis the digits (07), the trained CNN (08) and the
# trained GPT (13). Timings use `tinytorch_lib.timing.measure`.

# %% tags=["export"]
import copy
import functools
import math
import weakref

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinytorch_lib.activations import GELU
from tinytorch_lib.attention import MultiHeadAttention, causal_mask
from tinytorch_lib.attention import scaled_dot_product_attention
from tinytorch_lib.embeddings import Embedding, SinusoidalPositionalEncoding
from tinytorch_lib.layers import Linear, Module, Sequential
from tinytorch_lib.spatial import Conv2d, conv2d, conv2d_output_shape
from tinytorch_lib.tensor import AUTOGRAD, Tensor, no_grad, record, register_backward
from tinytorch_lib.transformer import GPT, MLP, LayerNorm, TransformerBlock

# %% [markdown]
# ## Which library files are you running on?
#
# Each file below is either the course reference or your own export of an
# earlier module. When this notebook is autograded by the instructor it always
# runs on the reference, so your grade here depends only on this module's
# work. `tito module reset NN` puts a reference file back.

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "layers", "autograd", "spatial", "attention", "training", "transformer"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. The ladder's bottom and its reference
#
# Every rung has the signature of Module 09's `conv2d`, on numpy arrays:
#
# ```
# conv_fn(x, weight, bias=None, stride=1, padding=0) -> np.ndarray
#     x (batch, in, H, W), weight (out, in, kh, kw), bias (out,) or None
#     -> (batch, out, H_out, W_out),  H_out = (H + 2*padding - kh) // stride + 1
# ```
#
# The given helper `conv_arrays` turns `Tensor`s into arrays, integer input
# into float32, and runs Module 09's `conv2d_output_shape`, so every rung
# checks its arguments and fails with the same messages as Module 09
# (`conv2d: weight (16, 1, 3, 3) expects input (batch, 1, H, W), got (2, 3, 8, 8)`).
#
# The **reference** is Module 09's `conv2d` itself (run under `no_grad`, its
# `.data` taken): the loop over kernel offsets. The bottom rung,
# `conv2d_python`, is the definition written in pure Python: the arrays are
# turned into nested lists first (`tolist()`), so that every multiply-add is
# an interpreted operation on Python floats, with no numpy call inside the
# loops. It skips multiply-adds that would read a padding zero.
#
# "Equal" means equal up to float rounding: `relative_error(got, want)` is the
# largest absolute difference divided by the largest `|want|`, and the
# course's bar is `1e-5`. (Summing the same products in another order changes
# the last bits of a float32 result: `1e-7` relative is typical.)

# %% tags=["export"]
TOLERANCE = 1e-5  # every rung must equal the reference within this relative error


def relative_error(got, want) -> float:
    """max |got - want| / max |want| (0 when both are all zeros); shapes must match."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"relative_error: shapes differ, got {got.shape}, want {want.shape}")
    scale = np.abs(want).max() if want.size else 0.0
    diff = np.abs(got - want).max() if want.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def conv_arrays(x, weight, bias, stride: int, padding: int) -> tuple:
    """Arrays or Tensors -> (x, weight, bias or None, (batch, out, H_out, W_out)) with Module 09's checks."""
    x, weight = (t.data if isinstance(t, Tensor) else np.asarray(t) for t in (x, weight))
    x = x if x.dtype.kind == "f" else x.astype(np.float32)
    weight = weight if weight.dtype.kind == "f" else weight.astype(np.float32)
    out_shape = conv2d_output_shape(x.shape, weight.shape, stride, padding)
    if bias is not None:
        bias = bias.data if isinstance(bias, Tensor) else np.asarray(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"conv2d: weight {weight.shape} needs bias ({weight.shape[0]},), got {bias.shape}")
    return x, weight, bias, out_shape


def conv2d_reference(x, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Module 09's conv2d (a loop over kernel offsets) on arrays: the reference every rung is checked against."""
    with no_grad():
        return conv2d(x, weight, bias, stride, padding).data


def conv2d_python(x, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """The definition in pure Python loops over nested lists: one interpreted multiply-add at a time."""
    x, weight, bias, (n, o, h_out, w_out) = conv_arrays(x, weight, bias, stride, padding)
    c, h, w = x.shape[1:]
    kh, kw = weight.shape[2:]
    xl, wl = x.tolist(), weight.tolist()
    bl = [0.0] * o if bias is None else bias.tolist()
    out = [[[[0.0] * w_out for _ in range(h_out)] for _ in range(o)] for _ in range(n)]
    for b in range(n):
        for oc in range(o):
            for y in range(h_out):
                for z in range(w_out):
                    total = bl[oc]
                    for ic in range(c):
                        for i in range(kh):
                            row = y * stride + i - padding
                            if 0 <= row < h:              # rows of padding zeros add nothing
                                x_row, w_row = xl[b][ic][row], wl[oc][ic][i]
                                for j in range(kw):
                                    col = z * stride + j - padding
                                    if 0 <= col < w:
                                        total += w_row[j] * x_row[col]
                    out[b][oc][y][z] = total
    return np.array(out, dtype=np.result_type(x.dtype, weight.dtype))


# %% [markdown]
# Module 09's worked example, 3x3 input `1..9`, filter `[[1, 0], [0, 1]]`,
# expected `[[6, 8], [12, 14]]`, through the reference and the bottom rung:

# %%
x_ex = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)
w_ex = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
print("reference:   ", conv2d_reference(x_ex, w_ex)[0, 0].tolist())
print("Python loops:", conv2d_python(x_ex, w_ex)[0, 0].tolist())

# %% [markdown]
# ## 2. Rung 2: a loop over output positions
#
# Fix one output position `(y, z)` (row `y`, column `z`; `x` is the input). Every output channel there reads the same
# receptive field of the padded input, a block of `in * kh * kw` numbers per
# image:
#
# ```
# patch = xpad[:, :, y*stride : y*stride + kh, z*stride : z*stride + kw]   # (batch, in, kh, kw)
# ```
#
# and output channel `o` is the dot product of that block with the filter
# `weight[o]` (also `in * kh * kw` numbers). Flatten both and all output
# channels come out of one matrix product:
#
# ```
# patch.reshape(batch, in*kh*kw) @ weight.reshape(out, in*kh*kw).T   ->   out[:, :, y, z]   (batch, out)
# ```
#
# For a digit batch `(64, 1, 8, 8)` and `weight (16, 1, 3, 3)` with padding 1:
# 64 positions, each a `(64, 9) @ (9, 16)` product. The Python loop now runs
# `H_out * W_out` times instead of once per multiply-add; it grows with the
# image (a 32x32 output is 1024 iterations), while Module 09's loop is always
# `kh * kw = 9` iterations.
#
# ### Task 17.1: `conv2d_positions`
#
# Pad the input with `np.pad` (zeros), then fill `out[:, :, y, z]` for every
# output position with one matrix product as above, and add the bias
# (`None` means no bias), broadcast as `(1, out, 1, 1)`. The given first line
# checks the arguments and gives you the output shape. The result is a numpy
# array of dtype `np.result_type(x.dtype, weight.dtype)` (float32 in, float32
# out; float64 stays float64) that equals Module 09's `conv2d` within `1e-5`
# relative, for any stride and padding. Do not call the reference or Module 09's `conv2d`.

# %% nbgrader={"grade": false, "grade_id": "conv2d_positions", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def conv2d_positions(x, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """x (batch, in, H, W), weight (out, in, kh, kw), bias (out,) or None -> (batch, out, H_out, W_out).

    One (batch, in*kh*kw) @ (in*kh*kw, out) product per output position.
    """
    x, weight, bias, (n, o, h_out, w_out) = conv_arrays(x, weight, bias, stride, padding)
    # Task 17.1: pad; for each output position one matmul of the flattened patch with the flattened filters; bias
    ### BEGIN SOLUTION
    kh, kw = weight.shape[2:]
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    w_mat = weight.reshape(o, -1).T                               # (in*kh*kw, out)
    out = np.empty((n, o, h_out, w_out), dtype=np.result_type(x.dtype, weight.dtype))
    for y in range(h_out):
        for z in range(w_out):
            patch = xpad[:, :, y * stride:y * stride + kh, z * stride:z * stride + kw]   # (batch, in, kh, kw)
            out[:, :, y, z] = patch.reshape(n, -1) @ w_mat
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_17_1_positions", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.1
from tinytorch_lib.testing import task

with task("17.1"):
    got = conv2d_positions(x_ex, w_ex)
    assert isinstance(got, np.ndarray) and got.shape == (1, 1, 2, 2), \
        f"worked example (1, 1, 3, 3) input, (1, 1, 2, 2) filter: expected an array (1, 1, 2, 2), got {type(got).__name__} {getattr(got, 'shape', '')}"
    assert np.array_equal(got[0, 0], [[6, 8], [12, 14]]), f"worked example: expected [[6, 8], [12, 14]], got {got[0, 0].tolist()}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(0)
    for shape_x, shape_w, s, p in [((2, 3, 6, 7), (4, 3, 3, 3), 1, 1), ((2, 2, 7, 7), (3, 2, 3, 2), 2, 0)]:
        xr, wr, br = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        want = conv2d_reference(xr, wr, br, s, p)
        got = conv2d_positions(xr, wr, br, s, p)
        assert got.shape == want.shape, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: expected shape {want.shape}, got {got.shape}"
        err = relative_error(got, want)
        assert err < TOLERANCE, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: relative error {err:.2e} from Module 09's conv2d (need < 1e-5)"
print("Task 17.1 visible tests passed")

# %% [markdown]
# ## 3. Rung 4: im2col, the convolution as one matrix multiply
#
# The loop over positions does one small matmul per position, each with the
# same right-hand matrix `weight.reshape(out, -1).T`. Stack all the patches
# as rows of one matrix first, and the whole convolution is a single product.
# That stacking is **im2col** ("image to columns", from Caffe; here the patches
# are rows, as in most numpy write-ups):
#
# ```
# cols[(n, y, z), (c, i, j)] = xpad[n, c, y*stride + i, z*stride + j]
#
# cols:   (batch * H_out * W_out,  in * kh * kw)      one row per output position
# out  =  cols @ weight.reshape(out, in*kh*kw).T      (batch * H_out * W_out, out)
#      -> reshape (batch, H_out, W_out, out) -> transpose to (batch, out, H_out, W_out)
# ```
#
# Rows run over `(n, y, z)` in row-major order (image, then output row, then
# output column), columns over `(c, i, j)` in row-major order, the order of
# `weight.reshape(out, -1)`'s columns. Worked example, the 3x3 input `1..9`,
# a 2x2 kernel, stride 1, no padding: four positions, four rows
#
# ```
# cols = [[1, 2, 4, 5],      position (0, 0)
#         [2, 3, 5, 6],      position (0, 1)
#         [4, 5, 7, 8],      position (1, 0)
#         [5, 6, 8, 9]]      position (1, 1)
# cols @ [1, 0, 0, 1]^T = [6, 8, 12, 14]   (the filter [[1, 0], [0, 1]] flattened)
# ```
#
# Building `cols` needs no loop over positions: for a fixed kernel offset
# `(i, j)`, the strided slice of Module 09,
# `xpad[:, :, i : i + stride*H_out : stride, j : j + stride*W_out : stride]`,
# `(batch, in, H_out, W_out)`, holds the `(c, i, j)` entries of every row.
# Allocate `cols` as `(batch, H_out, W_out, in, kh, kw)`, copy each offset's
# slice (transposed to `(batch, H_out, W_out, in)`) into `cols[..., i, j]`,
# and reshape to two dimensions at the end: `kh * kw` copies, then one view.
#
# The price is memory: every input pixel is copied once per kernel offset that
# reads it, so `cols` is about `kh * kw` times the input (9x for a 3x3 kernel
# at stride 1). The systems analysis measures it.
#
# ### Task 17.2: `im2col`
#
# `im2col(x, kh, kw, stride=1, padding=0)` returns the 2-d array `cols` above,
# `(batch * H_out * W_out, in * kh * kw)`, in `x`'s dtype, with rows and
# columns in the order given. The given lines check the arguments
# (`im2col: input (1, 1, 2, 2) with padding 0 is smaller than the 3x3 kernel`)
# and compute `H_out`, `W_out`.

# %% nbgrader={"grade": false, "grade_id": "im2col", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def im2col(x, kh: int, kw: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """x (batch, in, H, W) -> cols (batch * H_out * W_out, in * kh * kw): rows (n, y, z), columns (c, i, j)."""
    x = x.data if isinstance(x, Tensor) else np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"im2col: expected x of shape (batch, channels, H, W), got {x.shape}")
    if min(kh, kw, stride) < 1 or padding < 0:
        raise ValueError(f"im2col: need kh, kw, stride >= 1 and padding >= 0, got kh={kh}, kw={kw}, "
                         f"stride={stride}, padding={padding}")
    n, c, h, w = x.shape
    if h + 2 * padding < kh or w + 2 * padding < kw:
        raise ValueError(f"im2col: input {x.shape} with padding {padding} is smaller than the {kh}x{kw} kernel")
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    # Task 17.2: pad; cols (batch, H_out, W_out, in, kh, kw) filled with one strided slice per offset; reshape to 2-d
    ### BEGIN SOLUTION
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((n, h_out, w_out, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]   # (batch, in, H_out, W_out)
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(n * h_out * w_out, c * kh * kw)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_17_2_im2col", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.2: against a loop that reads the definition cols[(n, y, z), (c, i, j)] = xpad[n, c, y*s + i, z*s + j]
from tinytorch_lib.testing import task

with task("17.2"):
    def im2col_loops(x, kh, kw, s, p):
        n, c, h, w = x.shape
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        h_out, w_out = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        return np.array([[xpad[b, ch, y * s + i, z * s + j] for ch in range(c) for i in range(kh) for j in range(kw)]
                         for b in range(n) for y in range(h_out) for z in range(w_out)], dtype=x.dtype)


    def first_difference(got, want, x_shape, kh, kw, s, p):
        """Where cols first differ, named as (image, output position) for the row and (channel, offset) for the column."""
        h_out, w_out = (x_shape[2] + 2 * p - kh) // s + 1, (x_shape[3] + 2 * p - kw) // s + 1
        r, col = (int(v) for v in np.argwhere(got != want)[0])
        b, y, z = r // (h_out * w_out), r // w_out % h_out, r % w_out
        ch, i, j = col // (kh * kw), col // kw % kh, col % kw
        return (f"first difference at row {r} (image {b}, output position ({y}, {z})), column {col} (channel {ch}, "
                f"kernel offset ({i}, {j})): expected {want[r, col]:.4g}, got {got[r, col]:.4g}")


    got = im2col(x_ex, 2, 2)
    want = np.array([[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]], dtype=np.float32)
    assert isinstance(got, np.ndarray) and got.shape == (4, 4), f"worked example (1, 1, 3, 3), 2x2 kernel: expected shape (4, 4), got {getattr(got, 'shape', type(got).__name__)}"
    assert np.array_equal(got, want), f"worked example: expected\n{fmt(want)}\ngot\n{fmt(got)}"
    assert got.dtype == np.float32, f"float32 input: cols should be float32, got {got.dtype}"
    row = im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2)[0].tolist()
    assert row == [0, 1, 3, 4, 9, 10, 12, 13], \
        (f"two channels 0..8 and 9..17 (1, 2, 3, 3), 2x2 kernel: the first row holds channel 0's 2x2 patch, then channel 1's: "
         f"expected [0, 1, 3, 4, 9, 10, 12, 13], got {row} (columns run over (channel, kernel row, kernel column))")
    rng = np.random.default_rng(1)
    for shape_x, kh, kw, s, p in [((2, 3, 5, 6), 3, 3, 1, 1), ((2, 2, 7, 7), 3, 2, 2, 0)]:
        xr = rng.standard_normal(shape_x)
        want = im2col_loops(xr, kh, kw, s, p)
        got = im2col(xr, kh, kw, s, p)
        assert got.shape == want.shape, f"x {shape_x}, kernel {kh}x{kw}, stride={s}, padding={p}: expected cols {want.shape}, got {got.shape}"
        assert np.array_equal(got, want), (f"x {shape_x}, kernel {kh}x{kw}, stride={s}, padding={p}: cols differ from the definition; "
                                           + first_difference(got, want, shape_x, kh, kw, s, p))
print("Task 17.2 visible tests passed")

# %% [markdown]
# ### Task 17.3: `conv2d_im2col`
#
# The convolution from `cols`: call your `im2col` (Task 17.2) with the
# kernel's `kh, kw` and the given stride and padding, multiply by
# `weight.reshape(out, -1).T`, add the bias (a `(out,)` vector broadcasts along
# the rows), reshape to `(batch, H_out, W_out, out)` and transpose to
# `(batch, out, H_out, W_out)`. Same contract as Task 17.1: dtype
# `np.result_type(x.dtype, weight.dtype)`, equal to Module 09's `conv2d`
# within `1e-5` relative for any stride and padding. (Returning the transposed
# view is fine; it need not be contiguous.)

# %% nbgrader={"grade": false, "grade_id": "conv2d_im2col", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def conv2d_im2col(x, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """x (batch, in, H, W), weight (out, in, kh, kw), bias (out,) or None -> (batch, out, H_out, W_out).

    cols = im2col(x) (batch*H_out*W_out, in*kh*kw); out = cols @ weight.reshape(out, -1).T + bias.
    """
    x, weight, bias, (n, o, h_out, w_out) = conv_arrays(x, weight, bias, stride, padding)
    # Task 17.3: im2col, one matmul, the bias, reshape and transpose to (batch, out, H_out, W_out)
    ### BEGIN SOLUTION
    cols = im2col(x, weight.shape[2], weight.shape[3], stride, padding)   # (batch*H_out*W_out, in*kh*kw)
    out = cols @ weight.reshape(o, -1).T                                   # (batch*H_out*W_out, out)
    if bias is not None:
        out += bias
    return out.reshape(n, h_out, w_out, o).transpose(0, 3, 1, 2)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_17_3_conv2d_im2col", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.3 (they rely on Task 17.2's im2col)
from tinytorch_lib.testing import task

with task("17.3", uses={"17.2": "im2col"}):
    try:   # two channels: the column order (channel, then kernel offset) matters here
        row = np.asarray(im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2))[0].tolist()
    except Exception as e:
        row = repr(e)
    if row != [0, 1, 3, 4, 9, 10, 12, 13]:
        raise AssertionError(f"Task 17.3 calls im2col from Task 17.2: the first row of im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2) "
                             f"should be [0, 1, 3, 4, 9, 10, 12, 13], got {row}: make Task 17.2's tests pass first")
    got = conv2d_im2col(x_ex, w_ex)
    assert isinstance(got, np.ndarray) and got.shape == (1, 1, 2, 2) and np.array_equal(got[0, 0], [[6, 8], [12, 14]]), \
        f"worked example: expected an array (1, 1, 2, 2) [[6, 8], [12, 14]], got {got!r}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(2)
    for shape_x, shape_w, s, p in [((2, 3, 6, 7), (4, 3, 3, 3), 1, 1), ((2, 2, 7, 7), (3, 2, 3, 2), 2, 0)]:
        xr, wr, br = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        want = conv2d_reference(xr, wr, br, s, p)
        got = conv2d_im2col(xr, wr, br, s, p)
        assert got.shape == want.shape, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: expected shape {want.shape}, got {got.shape}"
        err = relative_error(got, want)
        assert err < TOLERANCE, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: relative error {err:.2e} from Module 09's conv2d"
print("Task 17.3 visible tests passed")

# %% [markdown]
# ### A fifth rung (given): sliding windows and `tensordot`, without the copy
#
# numpy can describe every receptive field without copying anything:
# `sliding_window_view(xpad, (kh, kw), axis=(2, 3))` is a **view**
# `(batch, in, H+2p-kh+1, W+2p-kw+1, kh, kw)` whose strides step through the
# same memory many times; `[:, :, ::stride, ::stride]` keeps every
# `stride`-th window. `np.tensordot` then contracts the `(in, kh, kw)` axes
# with the weight's. Inside, `tensordot` has to hand a matrix to BLAS, so it
# copies the windows into a contiguous array anyway: the same gather as
# im2col, done by numpy. Whether it is faster than your im2col is for the
# measurement below to say.
#
# `CONV_LADDER` lists the rungs in order, bottom first.

# %% tags=["export"]
def conv2d_windows(x, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Same contract as conv2d_im2col: sliding_window_view (a view, no copy) + one np.tensordot."""
    x, weight, bias, (n, o, h_out, w_out) = conv_arrays(x, weight, bias, stride, padding)
    kh, kw = weight.shape[2:]
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(xpad, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # (n, in, H_out, W_out, kh, kw)
    out = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))                    # (n, H_out, W_out, out)
    if bias is not None:
        out += bias
    return out.transpose(0, 3, 1, 2)


CONV_LADDER = {
    "pure Python loops": conv2d_python,
    "loop over positions": conv2d_positions,
    "loop over offsets (Module 09)": conv2d_reference,
    "im2col + matmul": conv2d_im2col,
    "sliding windows + tensordot": conv2d_windows,
}

# %% [markdown]
# ## 4. The attention ladder
#
# Module 12's attention, `softmax(q k^T / sqrt(d) + mask) v`, is already one
# batched matmul over all heads, built from recorded `Tensor` operations. The
# ladder below starts lower, at the loops a first implementation writes, and
# ends at the same batched formula on plain arrays. Shapes as in Module 12:
#
# ```
# q (batch, heads, s_q, d), k, v (batch, heads, s_k, d)  ->  (batch, heads, s_q, d)
# causal: query i sits at absolute position s_k - s_q + i and sees keys 0 .. s_k - s_q + i
# ```
#
# | rung | Python loop over | numpy work per iteration |
# |---|---|---|
# | `attention_loops` (given) | batch, heads, query positions | one `(s_k, d) @ (d,)` row of scores, its softmax, one weighted sum |
# | `attention_per_head` (given) | batch, heads | one `(s_q, d) @ (d, s_k)` score matrix, softmax, `@ v` |
# | `attention_batched` (Task 17.4) | nothing | two batched matmuls over all batches and heads |
# | `attention_reference` (Module 12) | nothing | the same as batched, through `Tensor` ops |
#
# The batched version relies on `@` (np.matmul) treating all leading axes as
# a batch: `(b, h, s_q, d) @ (b, h, d, s_k) -> (b, h, s_q, s_k)`, one call.

# %% tags=["export"]
def as_array(t) -> np.ndarray:
    return t.data if isinstance(t, Tensor) else np.asarray(t)


def qkv_arrays(q, k, v, causal: bool) -> tuple:
    """Arrays or Tensors -> arrays (q, k, v), checked as Module 12 checks them."""
    q, k, v = as_array(q), as_array(k), as_array(v)
    if not (q.ndim == k.ndim == v.ndim == 4 and k.shape == v.shape and q.shape[:2] == k.shape[:2]
            and q.shape[3] == k.shape[3]):
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape}: expected q (batch, heads, s_q, d) "
                         f"and k, v (batch, heads, s_k, d) with the same batch, heads and d")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"attention: causal attention needs s_q <= s_k, got q {q.shape} and k {k.shape}")
    return q, k, v


def attention_reference(q, k, v, causal: bool = True) -> np.ndarray:
    """Module 12's scaled_dot_product_attention on arrays (no graph recorded): the attention reference."""
    with no_grad():
        return scaled_dot_product_attention(q, k, v, causal=causal).data


def attention_loops(q, k, v, causal: bool = True) -> np.ndarray:
    """One query at a time: loops over batch, heads and query positions; numpy does one row of scores."""
    q, k, v = qkv_arrays(q, k, v, causal)
    batch, heads, s_q, d = q.shape
    s_k, scale = k.shape[2], float(1.0 / np.sqrt(d))
    out = np.empty(q.shape, dtype=np.result_type(q.dtype, k.dtype, v.dtype))
    for b in range(batch):
        for h in range(heads):
            for i in range(s_q):
                seen = s_k - s_q + i + 1 if causal else s_k          # keys this query may see
                scores = k[b, h, :seen] @ q[b, h, i] * scale     # (seen,)
                e = np.exp(scores - scores.max())
                out[b, h, i] = (e / e.sum()) @ v[b, h, :seen]       # (d,)
    return out


def attention_per_head(q, k, v, causal: bool = True) -> np.ndarray:
    """One head at a time: loops over batch and heads; numpy does each head's (s_q, s_k) score matrix."""
    q, k, v = qkv_arrays(q, k, v, causal)
    batch, heads, s_q, d = q.shape
    visible = causal_mask(s_q, k.shape[2]) if causal else None
    scale = float(1.0 / np.sqrt(d))
    out = np.empty(q.shape, dtype=np.result_type(q.dtype, k.dtype, v.dtype))
    for b in range(batch):
        for h in range(heads):
            scores = q[b, h] @ k[b, h].T * scale                  # (s_q, s_k)
            if causal:
                scores = np.where(visible, scores, -np.inf)
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            out[b, h] = (e / e.sum(axis=-1, keepdims=True)) @ v[b, h]
    return out


# %% [markdown]
# ### Task 17.4: `attention_batched`
#
# `attention_batched(q, k, v, causal=True, return_weights=False)` computes
# attention for all batches and heads at once, on numpy arrays:
#
# 1. `scores = q @ k^T * float(1 / np.sqrt(d))`, `(batch, heads, s_q, s_k)` (a Python
#    `float`: a numpy float64 scalar, such as `/ np.sqrt(d)` gives, would turn float32
#    scores into float64), with
#    `k.swapaxes(-1, -2)` as `k^T`;
# 2. with `causal`, set the scores a query may not see to `-inf`, using Module
#    12's `causal_mask(s_q, s_k)` (True where query `i` may see key `j`) and `np.where`;
# 3. a stable softmax over the last axis (subtract the row maximum, `np.exp`,
#    divide by the row sum): the attention `weights`;
# 4. `out = weights @ v`, `(batch, heads, s_q, d)`.
#
# Return `out`, or `(out, weights)` when `return_weights` is True (the given
# fused attention below keeps the weights for its backward pass). The output's
# dtype is the inputs' (float32 stays float32) and it equals Module 12's
# attention within `1e-5` relative, with and without `causal`, also for
# `s_q < s_k` (a query block at the end of a longer sequence). The given first
# line checks the shapes.

# %% nbgrader={"grade": false, "grade_id": "attention_batched", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def attention_batched(q, k, v, causal: bool = True, return_weights: bool = False):
    """q (batch, heads, s_q, d), k, v (batch, heads, s_k, d) -> out (batch, heads, s_q, d) [, weights (b, h, s_q, s_k)]."""
    q, k, v = qkv_arrays(q, k, v, causal)
    # Task 17.4: scores with one batched matmul, causal -inf, stable softmax, weights @ v
    ### BEGIN SOLUTION
    s_q, s_k, d = q.shape[2], k.shape[2], q.shape[3]
    scores = (q @ k.swapaxes(-1, -2)) * float(1.0 / np.sqrt(d))         # (batch, heads, s_q, s_k)
    if causal:
        scores = np.where(causal_mask(s_q, s_k), scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = weights @ v
    return (out, weights) if return_weights else out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_17_4_attention", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.4
from tinytorch_lib.testing import task

with task("17.4"):
    q1 = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)   # (1, 1, 2, 2): two queries
    v1 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32)
    got = attention_batched(q1, q1, v1, causal=True)
    assert isinstance(got, np.ndarray) and got.shape == (1, 1, 2, 2), f"q = k (1, 1, 2, 2): expected an array (1, 1, 2, 2), got {got!r}"
    assert np.allclose(got[0, 0, 0], [1.0, 2.0]), f"causal: query 0 sees only key 0, so its output is v[0] = [1, 2]; got {fmt(got[0, 0, 0])}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(3)
    for shape_q, shape_k, causal in [((2, 4, 6, 8), (2, 4, 6, 8), True), ((1, 2, 5, 4), (1, 2, 5, 4), False), ((2, 2, 3, 4), (2, 2, 7, 4), True)]:
        qr = rng.standard_normal(shape_q).astype(np.float32)
        kr, vr = (rng.standard_normal(shape_k).astype(np.float32) for _ in range(2))
        want = attention_reference(qr, kr, vr, causal)
        got = attention_batched(qr, kr, vr, causal)
        err = relative_error(got, want)
        assert got.shape == want.shape and err < TOLERANCE, f"q {shape_q}, k, v {shape_k}, causal={causal}: relative error {err:.2e} from Module 12 (shape {got.shape})"
    out, weights = attention_batched(qr, kr, vr, causal=True, return_weights=True)
    assert weights.shape == (2, 2, 3, 7) and np.allclose(weights.sum(-1), 1, atol=1e-6), f"return_weights: expected weights (2, 2, 3, 7) whose rows sum to 1, got {weights.shape}"
    assert np.all(weights[:, :, 0, 5:] == 0), "q (2, 2, 3, 4), k (2, 2, 7, 4), causal: query 0 sits at position 4 and must give keys 5, 6 weight 0"
print("Task 17.4 visible tests passed")

# %% tags=["export"]
ATTENTION_LADDER = {
    "loop over heads and positions": attention_loops,
    "loop over heads": attention_per_head,
    "batched matmul": attention_batched,
    "Module 12 (Tensor ops)": attention_reference,
}

# %% [markdown]
# ## 5. Gradients through im2col
#
# A fast forward pass is only half of a training step. To train with it, the
# op needs a backward rule (Module 05's seam: `record` the op under its own
# name, `@register_backward` its rule). With `g = grad` rearranged to
# `(batch * H_out * W_out, out)`, rows in im2col's `(n, y, z)` order
# (`grad.transpose(0, 2, 3, 1).reshape(-1, out)`), the forward
# `out_mat = cols @ W_mat.T` (with `W_mat = weight.reshape(out, -1)`) is one matmul, and
# the rules of a matmul (Module 05) give
#
# ```
# dW_mat = g.T @ cols          (out, in*kh*kw)   -> reshape to weight's shape
# dcols  = g @ W_mat           (batch*H_out*W_out, in*kh*kw)
# dbias  = g.sum(axis=0)       (out,)
# ```
#
# `cols` is **recomputed** from `x` with `im2col` in the backward pass rather
# than saved by the forward: the forward then keeps nothing larger than
# Module 09's op keeps, at the price of one more gather (PyTorch's CPU
# convolution makes the same trade).
#
# `dcols` holds one gradient per (position, input pixel it read). **col2im**
# sends them back: reshape `dcols` to `(batch, H_out, W_out, in, kh, kw)`; for
# each offset `(i, j)`, `dcols[..., i, j]` transposed to `(batch, in, H_out, W_out)`
# is **added** (`+=`, pixels are read by several offsets) to the strided slice
# of `dxpad` that im2col copied from; `dx` is the interior of `dxpad`, as in Module 09.
#
# `conv2d_fast` (given, below the task) records the forward as op
# `"conv2d_im2col"` with the same inputs `(x, weight, bias)` and saved
# `stride`, `padding` as Module 09's `"conv2d"`; its output is
# `conv2d_im2col(...)` made contiguous.
#
# ### Task 17.5: `conv2d_im2col_backward`
#
# Return `(dx, dweight, dbias)` in the shapes and dtypes of `x`, `weight` and
# `bias`, computed as above with your `im2col` (Task 17.2). As in Module 09,
# an input that needs no gradient gets `None`: the bias when there is none,
# and any input with `requires_grad=False`. The tests compare with Module 09's
# `conv2d_backward` (within `1e-5` relative) on a hand-built `"conv2d_im2col"`
# node, so they do not need Task 17.3.

# %% nbgrader={"grade": false, "grade_id": "conv2d_im2col_backward", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("conv2d_im2col")
def conv2d_im2col_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad (batch, out, H_out, W_out) -> (dx (batch, in, H, W), dweight (out, in, kh, kw), dbias (out,)), None where not needed."""
    x, weight, bias = out.node.inputs
    stride, padding = out.node.saved["stride"], out.node.saved["padding"]
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    h_out, w_out = grad.shape[2], grad.shape[3]
    g = grad.transpose(0, 2, 3, 1).reshape(-1, o)          # (batch*H_out*W_out, out), rows in im2col's order
    dx = dweight = dbias = None
    # Task 17.5: dweight = g.T @ im2col(x); dcols = g @ W_mat, scattered back by col2im; dbias = g.sum(0)
    ### BEGIN SOLUTION
    if weight.requires_grad:
        cols = im2col(x.data, kh, kw, stride, padding)      # recomputed, not saved by the forward
        dweight = (g.T @ cols).reshape(weight.shape).astype(weight.dtype)
    if x.requires_grad:
        dcols = (g @ weight.data.reshape(o, -1)).reshape(n, h_out, w_out, c, kh, kw)
        dxpad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=np.result_type(x.dtype, dcols.dtype))
        for i in range(kh):
            for j in range(kw):
                dxpad[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        dx = dxpad[:, :, padding:padding + h, padding:padding + w].astype(x.dtype)
    if bias is not None and bias.requires_grad:
        dbias = g.sum(axis=0).astype(bias.dtype)
    ### END SOLUTION
    return dx, dweight, dbias


# %% nbgrader={"grade": true, "grade_id": "test_17_5_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.5 (they rely on Task 17.2's im2col): the same node built twice, once as Module 09's
# "conv2d" and once as "conv2d_im2col"; both rules must give the same gradients.
from tinytorch_lib.testing import task

with task("17.5", uses={"17.2": "im2col"}):
    from tinytorch_lib.spatial import conv2d_backward

    try:   # two channels: the column order (channel, then kernel offset) matters here
        row = np.asarray(im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2))[0].tolist()
    except Exception as e:
        row = repr(e)
    if row != [0, 1, 3, 4, 9, 10, 12, 13]:
        raise AssertionError(f"Task 17.5 calls im2col from Task 17.2: the first row of im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2) "
                             f"should be [0, 1, 3, 4, 9, 10, 12, 13], got {row}: make Task 17.2's tests pass first")


    def both_rules(x, w, b, s, p, g, needs=(True, True, True)):
        """(gradients from conv2d_im2col_backward, gradients from Module 09's conv2d_backward) for one hand-built node."""
        results = []
        for op, rule in (("conv2d_im2col", conv2d_im2col_backward), ("conv2d", conv2d_backward)):
            ins = tuple(None if a is None else Tensor(a, requires_grad=r) for a, r in zip((x, w, b), needs))
            out = record(op, Tensor(conv2d_reference(x, w, b, s, p)), ins, stride=s, padding=p)
            results.append(rule(g, out))
        return results


    rng = np.random.default_rng(4)
    for shape_x, shape_w, s, p in [((2, 2, 5, 5), (3, 2, 3, 3), 1, 1), ((1, 2, 7, 6), (2, 2, 2, 3), 2, 0)]:
        x, w, b = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        g = rng.standard_normal(conv2d_output_shape(shape_x, shape_w, s, p))
        got, want = both_rules(x, w, b, s, p, g)
        assert isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dweight, dbias), got {type(got).__name__}"
        for name, gv, wv in zip(("dx", "dweight", "dbias"), got, want):
            assert gv is not None and gv.shape == wv.shape, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: {name} should have shape {wv.shape}, got {None if gv is None else gv.shape}"
            err = relative_error(gv, wv)
            assert err < TOLERANCE, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: {name} differs from Module 09's rule by {err:.2e} (relative)"
print("Task 17.5 visible tests passed")

# %% [markdown]
# ### The fast layers (given)
#
# `conv2d_fast` is the `Tensor` version of your `conv2d_im2col`, recorded as
# `"conv2d_im2col"` so that your rule above computes its gradients.
# `FastConv2d` is a `Conv2d` (same constructor, same parameters, same
# `state_dict` keys) whose `forward` calls `conv2d_fast`.
#
# For attention, `attention_fused` runs your `attention_batched` on the arrays
# and records the whole of attention as **one** op, `"fused_attention"`,
# keeping the softmax weights for the backward pass. Module 12 records about
# eight ops (matmul, transpose, scale, mask, softmax, matmul), and the
# backward pass visits each; the fused rule below does the same arithmetic in
# five matmuls and one softmax-backward formula,
# `dS = P * (dP - sum(dP * P, axis=-1)) / sqrt(d)`.
# `FastMultiHeadAttention` is a `MultiHeadAttention` that overrides only
# Module 12's seam `attend(q, k, v)` to use it: the forward, the cache seam
# and the parameters are Module 12's (Module 18's cache works with it
# unchanged).
#
# `as_fast(layer)` builds the fast layer from an existing one: a new object
# of the fast class holding the **same** parameters, buffers, hooks and
# training mode (no copy of the weights, no new random numbers).

# %% tags=["export"]
def conv2d_fast(x, weight, bias=None, stride: int = 1, padding: int = 0) -> Tensor:
    """Tensor version of conv2d_im2col: (batch, in, H, W) -> (batch, out, H_out, W_out), op "conv2d_im2col"."""
    x, weight = (t if isinstance(t, Tensor) else Tensor(t) for t in (x, weight))
    if x.dtype.kind != "f":
        x = Tensor(x.data.astype(np.float32))
    if bias is not None and not isinstance(bias, Tensor):
        bias = Tensor(bias)
    out = conv2d_im2col(x.data, weight.data, None if bias is None else bias.data, stride, padding)
    return record("conv2d_im2col", Tensor(np.ascontiguousarray(out)), (x, weight, bias), stride=stride, padding=padding)


class FastConv2d(Conv2d):
    """A Conv2d computed with im2col + one matmul (forward) and col2im (backward); same parameters."""

    def forward(self, x) -> Tensor:
        return conv2d_fast(x, self.weight, self.bias, self.stride, self.padding)


def attention_fused(q, k, v, causal: bool = True) -> Tensor:
    """Tensors q (batch, heads, s_q, d), k, v (batch, heads, s_k, d) -> (batch, heads, s_q, d), one op "fused_attention"."""
    q, k, v = (t if isinstance(t, Tensor) else Tensor(t) for t in (q, k, v))
    out, weights = attention_batched(q.data, k.data, v.data, causal=causal, return_weights=True)
    return record("fused_attention", Tensor(out), (q, k, v), weights=weights)


@register_backward("fused_attention")
def fused_attention_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad (batch, heads, s_q, d) -> (dq, dk, dv); masked keys have weight 0 and get no gradient."""
    q, k, v = out.node.inputs
    p = out.node.saved["weights"]                                        # (batch, heads, s_q, s_k)
    dv = p.swapaxes(-1, -2) @ grad                                       # (batch, heads, s_k, d)
    dp = grad @ v.data.swapaxes(-1, -2)                                  # (batch, heads, s_q, s_k)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * float(1.0 / np.sqrt(q.shape[-1]))
    grads = (ds @ k.data, ds.swapaxes(-1, -2) @ q.data, dv)
    return tuple(gr.astype(t.dtype) if t.requires_grad else None for gr, t in zip(grads, (q, k, v)))


class FastMultiHeadAttention(MultiHeadAttention):
    """Module 12's MultiHeadAttention (its forward, parameters and cache seam) attending with attention_fused."""

    def attend(self, q, k, v) -> Tensor:
        return attention_fused(q, k, v, causal=True)

# %% [markdown]
# ### Fused inference (given): a whole block, and the whole GPT, in one pass
#
# Every `Tensor` operation costs a few microseconds of Python before numpy
# does any arithmetic: checking shapes, wrapping the result, asking whether
# to record a node. For a `(256, 128) @ (128, 512)` matmul that is nothing;
# for one generated token, a `(1, 128) @ (128, 128)` matmul of 16 thousand
# multiply-adds, it is most of the time. A transformer block is about forty
# such operations (projections, head reshapes, scores, softmax, residuals,
# norms), so a step that generates one token is bound by **overhead**, not
# arithmetic. Module 18 measures exactly that.
#
# The standard fix is **fusion**: run a whole block as one function on raw
# arrays, with no graph, the way inference engines fuse kernels or replay a
# captured graph for each decoding step. `block_inference` is Module 13's
# block written that way: the same arithmetic on the positions as the rows
# of one array, each operation a plain numpy call of about a microsecond
# instead of a `Tensor` operation of several. Three details save calls: a
# layer norm's means are products with a column of `1/dim` (float32 sums in
# another order, so a last bit may differ); `vectorize` stores the q, k and
# v weights as one array that the three `Linear` layers view (PyTorch's
# `in_proj_weight`), so one product projects all three and a write to a
# weight is a write to it; GELU runs in place on one buffer. Your
# `attention_batched` does the attention of several queries; one query (a
# generation step) sees every key, so `one_query_attention` skips the mask
# and normalises in place. Module 12's cache seam is called unchanged. `FastGPT` does the same
# for the whole model: the embedding rows plus the positions, every block,
# the final norm and the head.
#
# A fused pass is only taken when it computes what the layer-by-layer pass
# would (to float32 rounding):
#
# - gradients are off (`no_grad()`): with them on, the block runs its
#   children, so training records the graph as before; the block's input
#   is float32, as the model's own layers produce;
# - every child is the type the fused pass reads (`LayerNorm`, `Linear`,
#   `GELU`, ...): a layer that Module 15 or 16 swapped for another class
#   sends the block back to the layer-by-layer path;
# - no child has a hook: Module 14's profiler and Module 16's pruning masks
#   work through hooks, and a fused pass would skip them;
# - the input is what the model's own checks accept (integer ids in the
#   vocabulary, positions within `max_len`): anything else goes the
#   layer-by-layer way, which raises Module 13's clear errors.
#
# Otherwise `FastTransformerBlock` and `FastGPT` call Module 13's `forward`.
# `FastGPT` checks its layers once and remembers the answer until a hook is
# registered, a child swapped or removed, or an activation replaced.

# %% tags=["export"]
def linear_arrays(layer: Linear, x: np.ndarray) -> np.ndarray:
    """Module 03's Linear on rows x (n, in), the same two operations: x @ W.T (one BLAS product), then + b."""
    y = np.dot(x, layer.weight.data.T)
    if layer.bias is not None:
        y += layer.bias.data
    return y


@functools.lru_cache(maxsize=None)
def averaging_column(n: int, dtype) -> np.ndarray:
    """(n, 1) of 1/n (read-only): rows @ it is each row's mean, one product instead of a numpy reduction."""
    column = np.full((n, 1), 1.0 / n, dtype=dtype)
    column.flags.writeable = False
    return column


def layer_norm_arrays(norm: LayerNorm, x: np.ndarray) -> np.ndarray:
    """Module 13's layer_norm on rows x (n, dim): the same formula; the means are products with a column of
    1/dim (the float32 sums come in another order, so the result may differ in the last bit)."""
    avg = averaging_column(x.shape[-1], x.dtype)
    centred = x - np.dot(x, avg)
    var = np.dot(centred * centred, avg)
    var += norm.eps
    centred /= np.sqrt(var)
    centred *= norm.weight.data
    centred += norm.bias.data
    return centred


GELU_C32 = np.sqrt(2.0 / np.pi).astype(np.float32)


def gelu_arrays(v: np.ndarray) -> np.ndarray:
    """Module 02's GELU on an array: its operations in its order (so the same bits), in place on one buffer."""
    c = GELU_C32 if v.dtype == np.float32 else np.sqrt(2.0 / np.pi).astype(v.dtype)
    u = v * 0.044715
    u *= v
    u *= v
    u += v
    u *= c
    np.tanh(u, out=u)
    u += 1
    out = v * 0.5
    out *= u
    return out


def unhooked(*modules) -> bool:
    """No forward hooks or pre-hooks on any of `modules` (a fused pass would skip them)."""
    for m in modules:
        if getattr(m, "_forward_pre_hooks", None) or getattr(m, "_forward_hooks", None):
            return False
    return True


def fusable(block: TransformerBlock) -> bool:
    """Can one fused pass replace the block's children? Only if each is the type it reads, with no hooks on it."""
    def is_a(m, kind) -> bool:
        return (type(m) is kind or type(m) is FAST_LAYERS.get(kind)) and unhooked(m)

    attn, mlp = block.attn, block.mlp
    if not (is_a(block.ln1, LayerNorm) and is_a(block.ln2, LayerNorm) and is_a(attn, MultiHeadAttention)
            and is_a(mlp, MLP)):                          # their children are only read once these are known
        return False
    return all(is_a(m, kind) for m, kind in ((attn.q_proj, Linear), (attn.k_proj, Linear), (attn.v_proj, Linear),
                                             (attn.out_proj, Linear), (mlp.fc, Linear), (mlp.act, GELU),
                                             (mlp.proj, Linear)))


def pack_qkv(attn: MultiHeadAttention) -> None:
    """Lay q_proj, k_proj and v_proj's weights out as the row blocks of one (3*d_model, d_model) array and their
    biases as one (3*d_model,) array (PyTorch's in_proj_weight): each Linear keeps its Parameters, whose data
    become views of the packed arrays, so a write to them (an optimizer step, a load) is a write to the packed
    ones. Anything but three distinct Linear layers with distinct weights and biases of one shape and dtype is
    left unpacked."""
    layers = (attn.q_proj, attn.k_proj, attn.v_proj)
    params = [p for layer in layers for p in (layer.weight, getattr(layer, "bias", None))]
    if (any(type(layer) is not Linear for layer in layers) or any(p is None for p in params)
            or len({id(x) for x in (*layers, *params, *(p.data for p in params))}) != 15
            or len({(p.shape, p.dtype) for p in params[0::2]}) != 1 or len({(p.shape, p.dtype) for p in params[1::2]}) != 1):
        return
    weight = np.concatenate([p.data for p in params[0::2]])
    bias = np.concatenate([p.data for p in params[1::2]])
    n = params[0].shape[0]
    for i, (w, b) in enumerate(zip(params[0::2], params[1::2])):
        w.data, b.data = weight[i * n:(i + 1) * n], bias[i * n:(i + 1) * n]
    attn.qkv_packed = (weight, bias, tuple(p.data for p in params))


def packed_qkv(attn: MultiHeadAttention):
    """(weight, bias) packed by pack_qkv while the q, k, v Parameters still hold its views, else None (a layer or
    an array was replaced, or this is a deep copy, whose arrays no longer share memory: the fused pass then runs
    the three Linear layers)."""
    packed = attn.__dict__.get("qkv_packed")
    if packed is None:
        return None
    weight, bias, views = packed
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    now = (q.weight.data, getattr(q.bias, "data", None), k.weight.data, getattr(k.bias, "data", None),
           v.weight.data, getattr(v.bias, "data", None))
    if views[0].base is weight and views[1].base is bias and all(a is b for a, b in zip(now, views)):
        return weight, bias
    return None


def one_query_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Attention of one query (a generation step: q (batch, heads, 1, d)) over every key, as attention_batched
    computes it (the causal mask would keep every key), the softmax in place on the scores."""
    if not (q.shape[2] == 1 and k.shape == v.shape and k.shape[:2] == q.shape[:2] and k.shape[3] == q.shape[3]):
        raise ValueError(f"one_query_attention: expected q (batch, heads, 1, d) and k, v (batch, heads, s_k, d), "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    scores = q @ k.swapaxes(-1, -2)                                   # (batch, heads, 1, s_k)
    scores *= 1.0 / math.sqrt(q.shape[3])                             # the same float as 1 / np.sqrt(d)
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ v


def block_inference(block: TransformerBlock, x: np.ndarray, cache=None, layer_idx: int = 0) -> np.ndarray:
    """One TransformerBlock on an array (batch, seq, d_model), no graph: the arithmetic of its children, fused.
    Inside, the positions are the rows of one 2-d array, so each Linear is a single matrix product."""
    attn, mlp = block.attn, block.mlp
    if x.ndim != 3 or x.shape[-1] != attn.d_model:
        raise ValueError(f"MultiHeadAttention: expected x of shape (batch, seq, {attn.d_model}), got {x.shape}")
    batch, seq, d_model = x.shape
    split = (batch, seq, attn.n_heads, attn.head_dim)                 # split_heads on arrays: reshape, transpose
    rows = x.reshape(batch * seq, d_model)
    h = layer_norm_arrays(block.ln1, rows)
    packed = packed_qkv(attn)
    if packed is not None:                                            # one product for q, k and v
        qkv = np.dot(h, packed[0].T)                                  # (batch*seq, 3*d_model)
        qkv += packed[1]
        q, k, v = qkv.reshape(batch, seq, 3, *split[2:]).transpose(2, 0, 3, 1, 4)
    else:
        q = linear_arrays(attn.q_proj, h).reshape(split).transpose(0, 2, 1, 3)
        k = linear_arrays(attn.k_proj, h).reshape(split).transpose(0, 2, 1, 3)
        v = linear_arrays(attn.v_proj, h).reshape(split).transpose(0, 2, 1, 3)
    if cache is not None:
        k, v = cache.update(Tensor(k), Tensor(v), layer_idx)           # Module 12's seam, unchanged
        k, v = k.data, v.data
    a = (one_query_attention(q, k, v) if seq == 1 else attention_batched(q, k, v, causal=True))
    a = a.transpose(0, 2, 1, 3).reshape(batch * seq, d_model)
    y = linear_arrays(attn.out_proj, a)                               # every buffer is new: added to in place
    y += rows
    out = linear_arrays(mlp.proj, gelu_arrays(linear_arrays(mlp.fc, layer_norm_arrays(block.ln2, y))))
    out += y
    return out.reshape(batch, seq, d_model)


class FastTransformerBlock(TransformerBlock):
    """Module 13's block; with gradients off, one fused pass (block_inference); else the layer-by-layer forward."""

    def forward(self, x, cache=None, layer_idx: int = 0) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if AUTOGRAD["enabled"] or x.dtype != np.float32 or not fusable(self):
            return super().forward(x, cache=cache, layer_idx=layer_idx)
        return Tensor(block_inference(self, x.data, cache, layer_idx))


def gpt_layers_fusable(model: GPT) -> bool:
    """The GPT's own layers are the types the fused pass reads, unhooked, and every block is fusable."""
    layers = ((model.tok_emb, Embedding), (model.pos, SinusoidalPositionalEncoding), (model.ln_f, LayerNorm),
              (model.lm_head, Linear), (model.blocks, Sequential))
    blocks = list(model.blocks)
    return (all(type(m) is kind for m, kind in layers) and unhooked(*(m for m, _ in layers), *blocks)
            and all(type(b) is FastTransformerBlock and fusable(b) for b in blocks))


def ids_pass_gpt_checks(model: GPT, ids: np.ndarray, offset: int) -> bool:
    """Would GPT's own checks pass these ids (integers in the vocabulary, positions within max_len)?"""
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.size == 0 or ids.shape[1] > model.max_len - offset:
        return False
    if ids.size == 1:                               # a generation step: one id, no numpy reduction needed
        return 0 <= ids.item() < model.vocab_size
    return 0 <= ids.min() and ids.max() < model.vocab_size


def gpt_fusable(model: GPT, ids: np.ndarray, offset: int) -> bool:
    """Can one fused pass replace the GPT's layers for these ids? Only with the layers it reads, unhooked, fusable
    blocks, and ids that GPT's own checks would pass (anything unusual takes the layered path, with its messages)."""
    return gpt_layers_fusable(model) and ids_pass_gpt_checks(model, ids, offset)


class LayersUnchanged:
    """gpt_layers_fusable's True for one model, kept while nothing it looked at can have changed.

    It remembers each `_modules` store the fused pass walks (with a copy), every hook dict of the model's
    layers, and each MLP's activation (a plain attribute). `holds()`, a few C-level comparisons, is False once
    a submodule was swapped or removed, a hook registered, or an activation replaced.
    """

    def __init__(self, model: GPT):
        blocks = list(model.blocks)
        walked = [model, model.blocks, *blocks, *(m for b in blocks for m in (b.attn, b.mlp))]
        self.stores = [m._modules for m in walked]
        self.copies = [dict(store) for store in self.stores]
        layers = [m for _, m in model.named_modules()][1:]        # the model's own hooks run around forward
        self.hooks = [hooks for m in layers for hooks in (m._forward_pre_hooks, m._forward_hooks)]
        self.acts = [(b.mlp, b.mlp.act) for b in blocks]

    def holds(self) -> bool:
        return (self.stores == self.copies and not any(self.hooks)
                and all(mlp.act is act for mlp, act in self.acts))


UNCHANGED = weakref.WeakKeyDictionary()   # FastGPT -> LayersUnchanged, while its layers are fusable


def layers_fusable_now(model: GPT) -> bool:
    """gpt_layers_fusable(model), answered from UNCHANGED while that still holds, else checked again."""
    known = UNCHANGED.get(model)
    if known is not None and known.holds():
        return True
    if gpt_layers_fusable(model):
        UNCHANGED[model] = LayersUnchanged(model)
        return True
    UNCHANGED.pop(model, None)
    return False


class FastGPT(GPT):
    """Module 13's GPT; with gradients off and gpt_fusable, ids -> logits in one fused pass."""

    def forward(self, ids, cache=None) -> Tensor:
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        offset = cache.get_seq_length(0) if cache is not None else 0
        if AUTOGRAD["enabled"] or not (layers_fusable_now(self) and ids_pass_gpt_checks(self, ids, offset)):
            return super().forward(ids, cache=cache)
        batch, seq = ids.shape
        x = self.tok_emb.weight.data[ids] + self.pos.pe.data[offset:offset + seq]   # (batch, seq, d_model)
        for i, block in enumerate(self.blocks):
            x = block_inference(block, x, cache, i)
        logits = linear_arrays(self.lm_head, layer_norm_arrays(self.ln_f, x.reshape(batch * seq, -1)))
        return Tensor(logits.reshape(batch, seq, -1))


FAST_LAYERS = {Conv2d: FastConv2d, MultiHeadAttention: FastMultiHeadAttention,  # exact type -> fast subclass
               TransformerBlock: FastTransformerBlock, GPT: FastGPT}


def as_fast(layer: Module) -> Module:
    """A layer whose exact type is a key of FAST_LAYERS -> its fast subclass, holding the same parameters,
    buffers, hooks and training mode (an attention's q, k, v parameters packed by pack_qkv)."""
    cls = FAST_LAYERS[type(layer)]
    fast = cls.__new__(cls)
    fast.__dict__.update({key: dict(value) if isinstance(value, dict) else value
                          for key, value in vars(layer).items()})
    if cls is FastMultiHeadAttention:
        pack_qkv(fast)
    return fast


# %% [markdown]
# ## 6. `vectorize(model)`
#
# A model is a tree of `Module`s; Module 03's seam `set_submodule("0", new)`
# replaces one node of the tree in place, keeping its name and position.
# `vectorize` walks the tree and swaps every layer that has a fast version,
# on a **copy**, so the original model is untouched (the same rule as
# Modules 15 and 16's transformations):
#
# ```
# cnn           Sequential(Conv2d, Lambda(ReLU), MaxPool2d, Flatten, Linear)
# vectorize ->  Sequential(FastConv2d, Lambda(ReLU), MaxPool2d, Flatten, Linear)   (a new model)
# gpt           GPT(blocks.0: TransformerBlock(attn: MultiHeadAttention, ...), ...)
# vectorize ->  FastGPT(blocks.0: FastTransformerBlock(attn: FastMultiHeadAttention, ...), ...)
# ```
#
# No attribute of any class is reassigned and no function is patched: each
# swapped layer is a new object whose class is a subclass, put in place
# through `set_submodule`; the root, which has no parent to hold it, is
# replaced by its fast version directly. Max pooling, `Linear` and the
# activations are left as they are: pooling is already one `np.maximum` per
# window offset, and a `Linear` is already one matmul.
#
# ### Task 17.6: `vectorize`
#
# `vectorize(model)` returns a new model:
#
# - `copy.deepcopy(model)` first; never change `model` itself;
# - in the copy, replace every layer whose **exact** type is a key of
#   `FAST_LAYERS` (`Conv2d`, `MultiHeadAttention`, `TransformerBlock`, `GPT`)
#   by `as_fast(layer)`, through `set_submodule(name, ...)` with the name that
#   `named_modules()` gives;
# - the root itself (name `""`, listed first) cannot be replaced that way: when
#   the model *is* such a layer, replace the copy by `as_fast(copy)` first,
#   then swap the other layers in it (a bare `MultiHeadAttention` has no
#   others; a `GPT` has its blocks and their attention);
# - a model with nothing to swap that already holds fast layers (it was
#   vectorized before) comes back as a plain copy;
# - a model with nothing to swap and no fast layer raises a `ValueError` naming
#   the model's class and the layer types it has, for example
#   `vectorize: Sequential has no Conv2d or MultiHeadAttention layer to swap (its layers: Flatten, Linear, Sequential)`
#   for `Sequential(Flatten(), Linear(256, 10))` (the types of every module `named_modules()`
#   gives, the root's own included, sorted, each once). The given line rejects what is not a `Module`.

# %% nbgrader={"grade": false, "grade_id": "vectorize", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def vectorize(model: Module) -> Module:
    """A copy of `model` with every layer of a FAST_LAYERS type swapped for its fast version; `model` is unchanged."""
    if not isinstance(model, Module):
        raise TypeError(f"vectorize: expected a Module, got {type(model).__name__}")
    # Task 17.6: deepcopy; swap each exact FAST_LAYERS type through set_submodule (the root first: as_fast);
    # nothing to swap: a copy if it already has fast layers, else a ValueError naming the layer types
    ### BEGIN SOLUTION
    new = copy.deepcopy(model)
    layers = new.named_modules()
    targets = [name for name, m in layers if type(m) in FAST_LAYERS]
    if not targets:
        if any(type(m) in FAST_LAYERS.values() for _, m in layers):
            return new
        kinds = ", ".join(sorted({type(m).__name__ for _, m in layers}))
        raise ValueError(f"vectorize: {type(model).__name__} has no Conv2d or MultiHeadAttention layer to swap "
                         f"(its layers: {kinds})")
    if targets[0] == "":                 # the model itself: named_modules() lists the root first
        new = as_fast(new)
    for name in targets[1:] if targets[0] == "" else targets:
        new.set_submodule(name, as_fast(new.get_submodule(name)))
    return new
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_17_6_vectorize", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 17.6: a small CNN (Module 09), checked against the original; outputs, gradients, the original untouched.
from tinytorch_lib.testing import task

with task("17.6", uses={"17.3": "conv2d_im2col"}):
    from tinytorch_lib.spatial import small_cnn

    cnn_small = small_cnn(channels=4, rng=np.random.default_rng(0))
    before = {k: v.copy() for k, v in cnn_small.state_dict().items()}
    fast_small = vectorize(cnn_small)
    assert fast_small is not cnn_small, "vectorize must return a new model"
    assert type(cnn_small.get_submodule("0")) is Conv2d, f"the original model's layer '0' must stay a Conv2d, got {type(cnn_small.get_submodule('0')).__name__}"
    assert type(fast_small.get_submodule("0")) is FastConv2d, f"small_cnn's layer '0': expected FastConv2d in the new model, got {type(fast_small.get_submodule('0')).__name__}"
    assert fast_small.get_submodule("0").weight is not cnn_small.get_submodule("0").weight, "the new model must hold copies of the parameters (deepcopy), not the original's"
    xb = Tensor(np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32))
    want, got = cnn_small(xb), fast_small(xb)
    err = relative_error(got.data, want.data)
    assert err < TOLERANCE, f"small_cnn(channels=4) on a (5, 1, 8, 8) batch: vectorized output differs by {err:.2e} (relative)"
    for m in (cnn_small, fast_small):
        m.zero_grad()
        (m(xb) * Tensor(np.arange(50, dtype=np.float32).reshape(5, 10))).sum().backward()
    for (name, p), q in zip(cnn_small.named_parameters(), fast_small.parameters()):
        err = relative_error(q.grad.data, p.grad.data)
        assert err < TOLERANCE, f"gradient of {name}: vectorized model differs by {err:.2e} (relative)"
    assert all(np.array_equal(before[k], v) for k, v in cnn_small.state_dict().items()), "vectorize changed the original model's parameters"
    root_swapped = type(vectorize(MultiHeadAttention(8, 2, rng=0))).__name__
    assert root_swapped == "FastMultiHeadAttention", f"vectorize(MultiHeadAttention(8, 2)): the model itself is a layer to swap; expected a FastMultiHeadAttention, got {root_swapped}"
    try:
        again = vectorize(fast_small)
    except ValueError as e:
        raise AssertionError(f"vectorize of an already vectorized model (nothing left to swap, but it holds a FastConv2d) should "
                             f"return a plain copy, got ValueError: {e}") from None
    assert again is not fast_small and type(again.get_submodule("0")) is FastConv2d, \
        f"vectorize of an already vectorized model: expected a new copy with its FastConv2d, got {'the same object' if again is fast_small else type(again.get_submodule('0')).__name__}"
    try:
        vectorize(small_cnn(channels=2, rng=0)[3:])
    except ValueError as e:
        assert "Sequential" in str(e) and "Linear" in str(e), f"vectorize of Sequential(Flatten, Linear): the message should name the class and the layer types, got {str(e)!r}"
    else:
        raise AssertionError("vectorize of Sequential(Flatten, Linear) (nothing to swap) should raise ValueError")
print("Task 17.6 visible tests passed")

# %% [markdown]
# ## Systems analysis
#
# Every figure below is measured in the cell that prints it, with the course's
# `measure` (warm-up, median and p90 of several repeats, BLAS threads held at
# 1), and every rung's output is compared with the reference in the same run
# before it is timed. `time_ladder` (given) does both: it runs each rung once
# and checks it against the reference (that run is the warm-up), then times
# all rungs in turns (`compare`: CPU time, so a burst of load hits every rung
# alike). The "x previous" column is how many times faster this rung ran than
# the rung above; "x bottom" how many times faster than the bottom rung, with
# the p10-p90 range of the ratios of neighbouring repeats.
#
# **Autograding runs this notebook with small inputs**: when the
# `NBGRADER_EXECUTION` environment variable is set (nbgrader sets it), the
# pure-Python rung only meets the tiny sizes, and the cells say so in their
# output. The full tables, at all sizes, come from
# `python -m benchmarks.bench_acceleration`.

# %% tags=["export"]
def time_ladder(ladder: dict, args: tuple, reference, repeats: int = 5) -> list:
    """Check every rung against reference(*args) (within TOLERANCE relative), then time all rungs in turns.

    -> [{"rung", "timing", "error", "x_previous", "x_bottom" (floats: medians of the paired ratios),
         "x_previous_range", "x_bottom_range" (timing.Ratio: median and p10-p90)}], in ladder order.
    """
    from tinytorch_lib.timing import compare

    want = reference(*args)
    errors = {}
    for name, fn in ladder.items():
        errors[name] = relative_error(fn(*args), want)      # this call is also the warm-up
        if errors[name] > TOLERANCE:
            raise AssertionError(f"{name}: relative error {errors[name]:.2e} from the reference exceeds {TOLERANCE}")
    timed = compare({name: (lambda fn=fn: fn(*args)) for name, fn in ladder.items()}, repeats=repeats, warmup=0)
    names, rows = list(ladder), []
    for i, name in enumerate(names):
        prev = timed.ratio(names[i - 1], name) if i else timed.ratio(name, name)
        bottom = timed.ratio(names[0], name)
        rows.append({"rung": name, "timing": timed[name], "error": errors[name],
                     "x_previous": float(prev) if i else 1.0, "x_bottom": float(bottom) if i else 1.0,
                     "x_previous_range": prev, "x_bottom_range": bottom})
    return rows


def format_ladder(title: str, rows: list) -> str:
    """The table time_ladder's rows print as."""
    lines = [title, f"  {'rung':<31} {'median':>10} {'p90':>10} {'x previous (p10-p90)':>21} "
                    f"{'x bottom (p10-p90)':>21} {'rel. error':>10}"]
    for r in rows:
        t = r["timing"]
        prev, bottom = r.get("x_previous_range"), r.get("x_bottom_range")
        prev = format(prev, ".2g" if prev.median < 100 else ".0f") if prev is not None else f"{r['x_previous']:.1f}"
        bottom = format(bottom, ".3g" if bottom.median < 1000 else ".0f") if bottom is not None else f"{r['x_bottom']:.0f}"
        lines.append(f"  {r['rung']:<31} {t.median * 1e3:>8.3f}ms {t.p90 * 1e3:>8.3f}ms {prev:>21} "
                     f"{bottom:>21} {r['error']:>10.1e}")
    noisy = next((f"{r['rung']}: {r['timing'].noisy}" for r in rows if r["timing"].noisy), None)
    return "\n".join(lines + ([f"  {noisy}"] if noisy else []))


# %% [markdown]
# ### The convolution ladder on batches of digits
#
# `Conv2d(1, 16, 3, padding=1)`, the first layer of Module 08's CNN, on
# batches of `(batch, 1, 8, 8)` digit images from Module 07's training split,
# float32.

# %%
import os

from tinytorch_lib.dataloader import load_digits
from tinytorch_lib.timing import compare, measure

SMALL = bool(os.environ.get("NBGRADER_EXECUTION"))
digits = load_digits("train", flatten=False).tensors[0].data              # (1437, 1, 8, 8) float32
rng = np.random.default_rng(0)
w_digit = (rng.standard_normal((16, 1, 3, 3)) / 3).astype(np.float32)
b_digit = (rng.standard_normal(16) / 3).astype(np.float32)
batches = [1, 4] if SMALL else [1, 16, 64]
if SMALL:
    print("NBGRADER_EXECUTION is set: autograding runs batches 1 and 4 only, 3 repeats each; the full table "
          "(batches 1-256, a 16-channel 16x16 layer, stride 2) is printed by `python -m benchmarks.bench_acceleration`.")
conv_tables = {}
for b in batches:
    conv_tables[b] = time_ladder(CONV_LADDER, (digits[:b], w_digit, b_digit, 1, 1), conv2d_reference,
                                 repeats=3 if SMALL else 5)
    print(format_ladder(f"batch {b}: x {digits[:b].shape}, weight {w_digit.shape}, padding 1", conv_tables[b]))
print(f"({conv_tables[batches[0]][0]['timing'].threads} BLAS thread)")

# %% [markdown]
# Read a column at a time. The bottom rung does one interpreted multiply-add
# per step, so its time grows with the number of multiply-adds; every other
# rung pays a fixed cost per numpy call plus the work done inside the calls.
# The loop over positions makes `H_out * W_out = 64` calls here, the loop over
# offsets 9 einsums on strided slices (Module 09 measured that einsum on
# non-contiguous slices is its slow part), im2col 9 slice copies and one
# matmul. With one input channel, each position's matmul is tiny, so the
# order of the middle two rungs depends on the batch and on the machine:
# read it off the table, not off the table of contents. Larger batches
# spread the fixed costs over more work, so the speedup over the bottom rung
# grows with the batch. The plot shows the same tables.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import log_axis, place_legend

fig, (ax_time, ax_speed) = plt.subplots(1, 2, figsize=(11, 4))
names = list(CONV_LADDER)
for b in batches:
    ax_time.plot(range(len(names)), [r["timing"].median * 1e3 for r in conv_tables[b]], marker="o", label=f"batch {b}")
    ax_speed.plot(range(1, len(names)), [r["x_bottom"] for r in conv_tables[b][1:]], marker="o", label=f"batch {b}")
ax_time.set_xticks(range(len(names)), [n.replace(" (", "\n(").replace(" + ", "\n+ ") for n in names], fontsize=7)
log_axis(ax_time, "y", "number")
ax_time.set_ylabel("median time per convolution (ms, log scale)")
ax_time.set_title("Conv2d(1, 16, 3, padding=1) on digits: time per rung")
ax_speed.set_xticks(range(1, len(names)), [n.replace(" (", "\n(").replace(" + ", "\n+ ") for n in names[1:]], fontsize=7)
log_axis(ax_speed, "y", "ratio")
ax_speed.set_ylabel("speedup over pure Python loops (x, log scale)")
ax_speed.set_title("Speedup over the bottom rung, same run")
plt.tight_layout()
for ax in (ax_time, ax_speed):
    ax.grid(True, which="major", axis="y", alpha=0.25)
    place_legend(ax)
plt.show()
best = max(conv_tables[batches[-1]][1:], key=lambda r: r["x_bottom"])
print(f"Takeaway: at batch {batches[-1]}, the fastest rung ({best['rung']}) ran {best['x_bottom_range']:.3g} faster "
      f"than pure Python loops in this run, with the same output within {TOLERANCE:g} relative.")

# %% [markdown]
# ### What im2col costs in memory
#
# im2col trades memory for speed: `cols` holds every receptive field, so each
# input pixel is stored once per kernel offset that reads it. Below, the
# `nbytes` of the input, of the `cols` array `im2col` actually returns, and of
# the output, and, measured with `tracemalloc` (which sees numpy's
# allocations), the peak of memory allocated *during* one convolution by
# each rung, for the digit batch and for a 16-channel layer on 16x16 images.

# %%
import tracemalloc


def peak_bytes(fn) -> int:
    """Peak bytes allocated (and traced) while fn() runs, above what was allocated before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - start


big_b = 4 if SMALL else 64
mem_cases = {f"digits ({big_b}, 1, 8, 8), w (16, 1, 3, 3), pad 1": (digits[:big_b], w_digit, b_digit, 1, 1),
             "(8, 16, 16, 16), w (32, 16, 3, 3), pad 1": (rng.standard_normal((8, 16, 16, 16)).astype(np.float32),
                                                          (rng.standard_normal((32, 16, 3, 3)) / 12).astype(np.float32),
                                                          None, 1, 1)}
print(f"{'case':<40} {'x KB':>8} {'cols KB':>9} {'cols/x':>7} {'out KB':>8} | peak KB during: {'offsets':>8} {'im2col':>8} {'windows':>8}")
for label, (x, w, b_, s, p) in mem_cases.items():
    cols = im2col(x, w.shape[2], w.shape[3], s, p)
    out = conv2d_im2col(x, w, b_, s, p)
    peaks = [peak_bytes(lambda fn=fn: fn(x, w, b_, s, p)) for fn in (conv2d_reference, conv2d_im2col, conv2d_windows)]
    print(f"{label:<40} {x.nbytes / 1024:>8.1f} {cols.nbytes / 1024:>9.1f} {cols.nbytes / x.nbytes:>7.2f} "
          f"{out.nbytes / 1024:>8.1f} |                 " + " ".join(f"{pk / 1024:>8.1f}" for pk in peaks))

# %% [markdown]
# `cols / x` is `kh * kw * (H_out * W_out) / (H * W)`: exactly 9 here, since
# padding 1 keeps a 3x3 kernel's output the size of its input; less without
# padding or with a stride (fewer positions). On a digit batch that is a few hundred
# kilobytes, harmless; for a layer with 256 channels on 56x56 images at batch
# 64 it would be 64 * 56 * 56 * 256 * 9 * 4 bytes, about 1.8 GB for one
# layer, which is why GPU libraries avoid materialising `cols` at large sizes.
# The peak column shows what each rung really allocates; the sliding-window
# rung's view costs nothing, but `tensordot` makes its own contiguous copy.
#
# ### The attention ladder
#
# Shapes of the trained GPT's attention: 4 heads of width 32, one sequence,
# lengths 64 and 256 (the GPT's training context), float32.

# %%
att_cases = [(1, 4, 32, 32)] if SMALL else [(1, 4, 64, 32), (1, 4, 256, 32)]
if SMALL:
    print("NBGRADER_EXECUTION is set: autograding runs one sequence of 32 positions; "
          "`python -m benchmarks.bench_acceleration` prints lengths 64-512 and batch 4.")
att_tables = {}
for shape in att_cases:
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    att_tables[shape] = time_ladder(ATTENTION_LADDER, (q, k, v, True), attention_reference, repeats=3 if SMALL else 5)
    print(format_ladder(f"q, k, v {shape}, causal", att_tables[shape]))

# %% [markdown]
# Module 12's attention and the batched rung do the same two batched matmuls;
# the difference between them is the `Tensor` machinery (one `Tensor` and
# one graph check per op, the mask built as a separate array). The loops
# pay per iteration: `heads * s_q` small vector operations against `heads`
# matrix ones.
#
# Batching is not free at every size. From a few hundred positions on, the
# loop over heads can match or beat the batched rung (the "x previous"
# column of the batched rung says how they came out in this run; below 1
# the loop was faster): the batched rung builds the
# score array of every head at once, `batch * heads * s_q * s_k * 4` bytes
# (4 MB for one 512-position sequence), and the mask, the exponential and the
# sum each stream it through memory, while one head's `s_q * s_k` block
# (1 MB) stays in the CPU's cache between those passes. Fused attention
# kernels (FlashAttention) tile the scores for the same reason.
#
# ### `vectorize` on the trained CNN: the same model, a faster epoch
#
# The trained digit CNN of Module 08 (`data/cnn_digits.npz`) and its
# vectorized copy: their held-out accuracy, the largest difference of their
# logits on the 360 test images, and their gradients on one batch. Then one
# epoch of training each (Module 08's `train_epoch`, Adam, batch 32, the 1437
# training images, the same shuffle), timed side by side, and the mean loss of
# that epoch, which must agree.

# %%
from tinytorch_lib import data_dir
from tinytorch_lib.dataloader import DataLoader
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.training import evaluate, load_model, train_epoch

cnn, meta = load_model(data_dir("cnn_digits.npz") / "cnn_digits.npz")
fast_cnn = vectorize(cnn)
print("vectorized:", [f"{name}: {type(m).__name__}" for name, m in fast_cnn.named_children()])
test_set = load_digits("test", flatten=False)
test_loader = DataLoader(test_set, batch_size=360)
with no_grad():
    logit_err = relative_error(fast_cnn(test_set.tensors[0]).data, cnn(test_set.tensors[0]).data)
print(f"held-out accuracy: original {evaluate(cnn, test_loader):.4f}, vectorized {evaluate(fast_cnn, test_loader):.4f}; "
      f"logits on the 360 test images differ by {logit_err:.1e} (relative)")
xb, yb = load_digits("train", flatten=False).tensors
grads = []
for m in (cnn, fast_cnn):
    m.zero_grad()
    CrossEntropyLoss()(m(xb[:64]), yb[:64]).backward()
    grads.append({n: p.grad.data.copy() for n, p in m.named_parameters()})
print("gradients on one batch of 64, relative difference per parameter:",
      {n: f"{relative_error(grads[1][n], g):.1e}" for n, g in grads[0].items()})

train_set = load_digits("train", flatten=False)
first_losses, epochs = {}, {}
for label, model in (("original (Module 09 conv)", cnn), ("vectorize(model)", fast_cnn)):
    trainee = copy.deepcopy(model)
    opt = Adam(trainee.parameters(), lr=1e-3)
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True, seed=0)   # one each: the same shuffles
    first_losses[label] = train_epoch(trainee, CrossEntropyLoss(), opt, train_loader)
    epochs[label] = lambda trainee=trainee, opt=opt, loader=train_loader: train_epoch(trainee, CrossEntropyLoss(), opt,
                                                                                     loader)
timed_epochs = compare(epochs, repeats=3, warmup=0)  # the two in turns
for label, t in timed_epochs.timings.items():
    print(f"{label:<26} one epoch: {t}   first epoch's mean loss {first_losses[label]:.6f}")
loss_old, loss_new = first_losses.values()
print(f"in this run, epoch speedup {timed_epochs.ratio(*epochs):.3g}; the two first epochs' losses differ by "
      f"{abs(loss_old - loss_new):.1e}")
if timed_epochs.noisy:
    print(timed_epochs.noisy)

# %% [markdown]
# The whole epoch speeds up less than the convolution alone: the epoch also
# runs the pooling, the `Linear` layer, the loss, Adam's update and the data
# loader, none of which changed (this is Amdahl's law; Module 14's profiler
# shows the split per layer).
#
# ### `vectorize` on the trained GPT
#
# The same check on Module 13's GPT, whose root, blocks and attention layers
# `vectorize` swaps. With gradients on (training), the fused pass is not
# taken: each block runs its children, with `FastMultiHeadAttention` for
# attention. The logits of a batch of sequences from the corpus, then the
# time of a forward pass and of a forward plus backward pass (the core of a
# training step) on that batch.

# %%
from tinytorch_lib.transformer import load_gpt

gpt, tokenizer, _ = load_gpt()
fast_gpt = vectorize(gpt)
seq = 64 if SMALL else 128
corpus_ids = tokenizer.encode(open(data_dir("corpus.txt") / "corpus.txt", encoding="utf-8").read()[:20000])
ids = np.stack([corpus_ids[i * seq:(i + 1) * seq] for i in range(4)])            # (4, seq)
targets = Tensor(np.stack([corpus_ids[i * seq + 1:(i + 1) * seq + 1] for i in range(4)]).reshape(-1))
gpt_err = relative_error(fast_gpt(ids).data, gpt(ids).data)     # gradients on: the layer-by-layer path
print(f"GPT logits on {ids.shape} tokens: vectorized differs by {gpt_err:.1e} (relative)")


def gpt_step(model):
    model.zero_grad()
    logits = model(ids)
    CrossEntropyLoss()(logits.reshape(-1, logits.shape[-1]), targets).backward()


for what, fn in (("forward", lambda m: m(ids)), ("forward + backward", gpt_step)):
    c = compare({"original": lambda: fn(gpt), "vectorized": lambda: fn(fast_gpt)}, repeats=5)
    print(f"{what:<19} batch {ids.shape}: original {c['original']}; vectorized {c['vectorized']}; "
          f"speedup in this run {c.ratio('original', 'vectorized'):.3g}")
    if c.noisy:
        print(f"  {c.noisy}")

# %% [markdown]
# Attention is one part of a transformer block; the projections, the MLP,
# the layer norms and the language-model head are `Linear` layers that were
# already single matmuls, so the GPT gains less than the attention kernel
# alone.
#
# ### The fused pass: overhead, not arithmetic
#
# Under `no_grad()` the vectorized GPT takes the fused pass. Its logits on
# the batch, then the same two models on one token, the shape of a generation
# step, and on the batch:

# %%
one_token = ids[:1, :1]
with no_grad():
    fused_err = relative_error(fast_gpt(ids).data, gpt(ids).data)
    for what, x in (("1 token", one_token), (f"batch {ids.shape}", ids)):
        c = compare({"original": lambda: gpt(x), "fused": lambda: fast_gpt(x)})
        print(f"no_grad forward, {what:<15}: original {c['original']}; fused {c['fused']}; "
              f"speedup in this run {c.ratio('original', 'fused'):.3g}")
        if c.noisy:
            print(f"  {c.noisy}")
print(f"fused logits differ from the original's by {fused_err:.1e} (relative)")

# %% [markdown]
# On one token the original spends most of its time in the bookkeeping of
# about forty `Tensor` operations per block, which the fused pass does not
# have, so the fused pass gains most there. On the batch both do the same
# matmuls, which dominate, so the ratio comes closer to 1; each ratio's
# p10-p90 range shows how much it moved in this run. Generation with a KV cache
# (Module 18) runs one token per step, so this is the case that matters
# there: Module 18 and Milestone 06 measure the cache's speedup on both
# models.
#
# ## Summary
#
# - A ladder of the same convolution: pure Python loops, a loop over output
#   positions, Module 09's loop over kernel offsets, im2col + one matmul, and
#   sliding windows + `tensordot`; every rung checked against Module 09's
#   `conv2d` within `1e-5` relative before it is timed.
# - The speed comes from moving loops out of Python and handing BLAS one large
#   matrix product; the price of im2col is memory, about `kh * kw` times the
#   input, measured above.
# - Attention: loops over heads and positions, then one batched matmul; a
#   fused attention op with its own backward rule.
# - `vectorize(model)` swaps `Conv2d`, `MultiHeadAttention`,
#   `TransformerBlock` and `GPT` for fast subclasses (through
#   `set_submodule`, the root directly), on a copy: same outputs, same
#   gradients, a faster epoch, all measured in the same run.
# - For inference, `TransformerBlock` and `GPT` get fused passes: the same
#   arithmetic on raw arrays, taken only with gradients off and no hook or
#   swapped child; one token runs several times faster, a large batch barely.
#
# Next: `tito module export 17`. Module 18 builds the KV cache on Module 12's
# cache seam; the milestone combines this module's `vectorize` with
# quantization and pruning.
