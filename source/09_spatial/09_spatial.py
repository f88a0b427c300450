# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 09: Spatial layers (convolution and pooling)
#
# An MLP reads an 8x8 digit as 64 unrelated numbers. Its first layer
# (`Linear(64, 128)`) learns a separate weight for every pixel and every hidden
# unit, 8,320 parameters, and a stroke that moves one pixel to the right meets
# completely different weights. A **convolution** slides one small filter
# over the image instead: 16 filters of 3x3 pixels are 160 parameters, and the
# same edge detector fires wherever the edge is. The small CNN of this module
# stores about 6x fewer weight bytes than the 64-128-64-10 MLP; the
# systems-analysis section measures both, and what the convolution costs in
# time instead.
#
# | task | what you build | points |
# |---|---|---|
# | 09.1 | `conv2d_output_shape`: output-size arithmetic and clear shape errors | 3 |
# | 09.2 | `conv2d`: the forward pass, one numpy contraction per kernel offset | 5 |
# | 09.3 | `conv2d_backward`: gradients of the input, the weight and the bias | 5 |
# | 09.4 | `max_pool2d` and its backward rule | 4 |
# | 09.5 | `Flatten` and a small CNN assembled with `Sequential` | 3 |
#
# The convolution you write is the **clear** version: a loop over the `kh * kw`
# offsets of the kernel, with numpy doing the work over batch, channels and
# positions. Module 17 builds faster versions (im2col and others) and checks
# every one of them against yours, so yours must be exact and readable.
#
# This module builds on Modules 01-05: it imports `Tensor` and the autograd seam
# from `tinytorch_lib.tensor`, `Module`, `Parameter`, `Linear` and `Sequential`
# from `tinytorch_lib.layers`, and `ReLU` from `tinytorch_lib.activations`; the
# systems analysis runs on the digits of Module 07 (`tinytorch_lib.dataloader`).

# %% tags=["export"]
import numpy as np

from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Linear, Module, Parameter, Sequential, resolve_rng
from tinytorch_lib.tensor import Tensor, record, register_backward

# %% [markdown]
# ## Which library files are you running on?
#
# Each of the files below is either the course reference or your own export of
# an earlier module. When this notebook is autograded by the instructor it
# always runs on the reference, so your grade here depends only on this
# module's work. `tito module reset NN` puts a reference file back.

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "activations", "layers", "autograd", "dataloader"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. What a convolution computes
#
# Images are stored as `(batch, channels, height, width)`, "NCHW", as in
# PyTorch. A digit batch is `(batch, 1, 8, 8)`: one channel (grey level).
# A convolution layer holds a **weight** of shape
# `(out_channels, in_channels, kh, kw)`, one `kh x kw` filter per pair of
# output and input channel, and a **bias** `(out_channels,)`. Output channel
# `o` at position `(y, x)` is
#
# ```
# out[n, o, y, x] = bias[o] + sum over c, i, j of
#                   weight[o, c, i, j] * xpad[n, c, y*stride + i, x*stride + j]
# ```
#
# where `xpad` is the input with `padding` rows and columns of zeros added on
# every side. (Strictly this is a cross-correlation: the filter is not flipped.
# Every deep-learning library calls it convolution.)
#
# Worked example, one channel, a 3x3 input, a 2x2 filter, stride 1, no padding:
#
# ```
# x = 1 2 3     weight = 1 0     out[0, 0] = 1*1 + 2*0 + 4*0 + 5*1 = 6
#     4 5 6              0 1     out[0, 1] = 2 + 6 = 8
#     7 8 9                      out[1, 0] = 4 + 8 = 12,  out[1, 1] = 5 + 9 = 14
# ```
#
# ### Output size
#
# Along the height, the filter's top row can sit at padded rows
# `0, stride, 2*stride, ...` as long as the filter still fits inside the
# `H + 2*padding` padded rows:
#
# ```
# H_out = (H + 2*padding - kh) // stride + 1        (the same for W with kw)
# ```
#
# | input | kernel | stride | padding | H_out |
# |---|---|---|---|---|
# | 8 | 3 | 1 | 0 | (8 - 3) // 1 + 1 = 6 |
# | 8 | 3 | 1 | 1 | (8 + 2 - 3) // 1 + 1 = 8 ("same" padding) |
# | 8 | 3 | 2 | 0 | (8 - 3) // 2 + 1 = 3 (the last row of the input is never read) |
# | 7 | 7 | 1 | 0 | 1 |
#
# So a digit batch `(2, 1, 8, 8)` through a weight `(16, 1, 3, 3)` with padding 1
# gives `(2, 16, 8, 8)`: 16 feature maps of the same size as the image.
#
# ### Task 09.1: output shape and shape errors
#
# `conv2d_output_shape(x_shape, weight_shape, stride=1, padding=0)` returns the
# output shape `(batch, out_channels, H_out, W_out)` as a tuple of ints (the
# kernel may be rectangular, `kh != kw`). Before computing it, check the
# arguments and raise a `ValueError` whose message names what was expected and
# what was given:
#
# - `stride` must be `>= 1` and `padding >= 0`:
#   `conv2d: need stride >= 1 and padding >= 0, got stride=0, padding=0`;
# - `weight_shape` must have 4 entries;
# - the input must be 4-d with `in_channels` channels (`weight_shape[1]`):
#   `conv2d: weight (16, 1, 3, 3) expects input (batch, 1, H, W), got (2, 3, 8, 8)`;
# - the padded input must be at least as large as the kernel:
#   `conv2d: input (2, 1, 2, 2) with padding 0 is smaller than the 3x3 kernel of weight (16, 1, 3, 3)`.
#
# The tests check the exception type and that the message contains both the
# weight's shape and the input's shape, written as Python tuples.

# %% nbgrader={"grade": false, "grade_id": "conv2d_output_shape", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def conv2d_output_shape(x_shape: tuple, weight_shape: tuple, stride: int = 1, padding: int = 0) -> tuple:
    """(batch, in, H, W), (out, in, kh, kw) -> (batch, out, H_out, W_out); ValueError on bad shapes."""
    x_shape, weight_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in weight_shape)
    # Task 09.1: validate stride, padding and the shapes; then H_out = (H + 2p - kh) // s + 1
    ### BEGIN SOLUTION
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d: need stride >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    if len(weight_shape) != 4:
        raise ValueError(f"conv2d: weight must be (out_channels, in_channels, kh, kw), got {weight_shape}")
    out_channels, in_channels, kh, kw = weight_shape
    if len(x_shape) != 4 or x_shape[1] != in_channels:
        raise ValueError(f"conv2d: weight {weight_shape} expects input (batch, {in_channels}, H, W), got {x_shape}")
    batch, _, h, w = x_shape
    if h + 2 * padding < kh or w + 2 * padding < kw:
        raise ValueError(f"conv2d: input {x_shape} with padding {padding} is smaller than the "
                         f"{kh}x{kw} kernel of weight {weight_shape}")
    return (batch, out_channels, (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_09_1_output_shape", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 09.1
from tinytorch_lib.testing import task

with task("09.1"):
    for x_shape, w_shape, s, p, want in [((2, 1, 8, 8), (16, 1, 3, 3), 1, 1, (2, 16, 8, 8)),
                                         ((2, 1, 8, 8), (16, 1, 3, 3), 1, 0, (2, 16, 6, 6)),
                                         ((4, 3, 8, 8), (5, 3, 3, 3), 2, 0, (4, 5, 3, 3)),
                                         ((1, 2, 7, 5), (3, 2, 7, 2), 1, 0, (1, 3, 1, 4))]:
        got = conv2d_output_shape(x_shape, w_shape, stride=s, padding=p)
        assert got == want, f"conv2d_output_shape({x_shape}, {w_shape}, stride={s}, padding={p}): expected {fmt(want)}, got {fmt(got)}"
    for x_shape, w_shape, p in [((2, 3, 8, 8), (16, 1, 3, 3), 0), ((2, 1, 2, 2), (16, 1, 3, 3), 0), ((1, 8, 8), (4, 1, 3, 3), 0)]:
        try:
            conv2d_output_shape(x_shape, w_shape, padding=p)
        except ValueError as e:
            assert str(w_shape) in str(e) and str(x_shape) in str(e), \
                f"conv2d_output_shape({x_shape}, {w_shape}): the message should name both shapes, got {str(e)!r}"
        else:
            raise AssertionError(f"conv2d_output_shape({x_shape}, {w_shape}, padding={p}) should raise ValueError")
print("Task 09.1 visible tests passed")

# %% [markdown]
# ## 2. The forward pass, one kernel offset at a time
#
# The formula above has seven nested loops (batch, output channel, two output
# positions, input channel, two kernel offsets). Written in plain Python it is
# slow but obviously right; the cell below keeps it as the **oracle** that the
# tests compare your numpy version with. (It is not exported; Module 17 builds
# its ladder of fast versions on your `conv2d`.)

# %%
def conv2d_loops(x, weight, bias=None, stride=1, padding=0, counter=None):
    """The definition, seven Python loops: x (n, c, H, W), weight (o, c, kh, kw) float64 arrays.

    counter: an optional dict; counter["macs"] counts multiply-adds, counter["padding_macs"]
    those whose input pixel is a padding zero.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, h_out, w_out))
    for b in range(n):
        for oc in range(o):
            for y in range(h_out):
                for xx in range(w_out):
                    total = 0.0 if bias is None else float(bias[oc])
                    for ic in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = y * stride + i - padding, xx * stride + j - padding
                                inside = 0 <= row < h and 0 <= col < w
                                if counter is not None:
                                    counter["macs"] = counter.get("macs", 0) + 1
                                    counter["padding_macs"] = counter.get("padding_macs", 0) + (not inside)
                                if inside:
                                    total += weight[oc, ic, i, j] * x[b, ic, row, col]
                    out[b, oc, y, xx] = total
    return out


print(conv2d_loops(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), np.array([[[[1.0, 0.0], [0.0, 1.0]]]])))

# %% [markdown]
# ### Turning seven loops into nine numpy calls
#
# Swap the loop order: put the two kernel offsets `(i, j)` outside. For one
# fixed offset, every output position `(y, x)` reads the padded input at
# `(y*stride + i, x*stride + j)`. Over all positions that is one strided slice:
#
# ```
# patch = xpad[:, :, i : i + stride*H_out : stride, j : j + stride*W_out : stride]
#         # (batch, in, H_out, W_out): the pixel that offset (i, j) meets at every output position
# ```
#
# and what offset `(i, j)` adds to the output is a contraction over input
# channels with the `(out, in)` matrix `weight[:, :, i, j]`:
#
# ```
# out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])    # (batch, out, H_out, W_out)
# ```
#
# A 3x3 kernel is nine such steps, whatever the batch size or the image size.
# Pad with `np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))`
# (zeros by default), then add the bias, broadcast as `(1, out, 1, 1)`.
#
# ### Task 09.2: `conv2d` forward
#
# Compute `out`, a numpy array `(batch, out_channels, H_out, W_out)`, with one
# contraction per kernel offset as above. Get the shape from your
# `conv2d_output_shape` (Task 09.1), so the same checks and error messages
# apply. The dtype of `out` is `np.result_type(x.dtype, weight.dtype)`: float32
# in, float32 out; float64 stays float64. `bias` may be `None` (no bias). The
# given first lines turn arrays into `Tensor`s and integer input into float32;
# the given last line wraps `out` and records the operation as `"conv2d"`
# (with `stride` and `padding` saved) so that Task 09.3's backward rule can
# find it. Do not call the loop oracle.

# %% nbgrader={"grade": false, "grade_id": "conv2d", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def conv2d(x, weight, bias=None, stride: int = 1, padding: int = 0) -> Tensor:
    """x: (batch, in, H, W), weight: (out, in, kh, kw), bias: (out,) or None -> (batch, out, H_out, W_out).

    H_out = (H + 2*padding - kh) // stride + 1. Recorded as op "conv2d" with saved stride, padding.
    """
    x, weight = (t if isinstance(t, Tensor) else Tensor(t) for t in (x, weight))
    if x.dtype.kind != "f":
        x = Tensor(x.data.astype(np.float32))
    if bias is not None:
        bias = bias if isinstance(bias, Tensor) else Tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"conv2d: weight {weight.shape} needs bias ({weight.shape[0]},), got {bias.shape}")
    # Task 09.2: pad, then one einsum per kernel offset (i, j); add the bias
    ### BEGIN SOLUTION
    batch, out_channels, h_out, w_out = conv2d_output_shape(x.shape, weight.shape, stride, padding)
    kh, kw = weight.shape[2], weight.shape[3]
    xpad = np.pad(x.data, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((batch, out_channels, h_out, w_out), dtype=np.result_type(x.dtype, weight.dtype))
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]  # (batch, in, h_out, w_out)
            out += np.einsum("nchw,oc->nohw", patch, weight.data[:, :, i, j])
    if bias is not None:
        out += bias.data.reshape(1, -1, 1, 1)
    ### END SOLUTION
    return record("conv2d", Tensor(out), (x, weight, bias), stride=stride, padding=padding)


# %% nbgrader={"grade": true, "grade_id": "test_09_2_conv2d", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 09.2 (they rely on Task 09.1's conv2d_output_shape)
from tinytorch_lib.testing import task

with task("09.2", uses={"09.1": "conv2d_output_shape"}):
    try:
        assert conv2d_output_shape((2, 1, 8, 8), (16, 1, 3, 3), 1, 1) == (2, 16, 8, 8)
    except Exception as e:
        raise AssertionError(f"Task 09.2 calls conv2d_output_shape from Task 09.1, and conv2d_output_shape((2, 1, 8, 8), "
                             f"(16, 1, 3, 3), 1, 1) did not return (2, 16, 8, 8) ({e!r}): make Task 09.1's tests pass first") from None
    x = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
    got = conv2d(x, w)
    assert isinstance(got, Tensor), f"conv2d should return a Tensor, got {type(got).__name__}"
    assert got.shape == (1, 1, 2, 2) and np.array_equal(got.data[0, 0], [[6, 8], [12, 14]]), \
        f"worked example, 3x3 input 1..9, filter [[1, 0], [0, 1]]: expected [[6, 8], [12, 14]], got {fmt(got.data)}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(0)
    for shape_x, shape_w, s, p in [((2, 3, 6, 7), (4, 3, 3, 3), 1, 1), ((2, 2, 7, 7), (3, 2, 3, 2), 2, 0)]:
        xr, wr, br = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        want = conv2d_loops(xr, wr, br, stride=s, padding=p)
        got = conv2d(Tensor(xr), Tensor(wr), Tensor(br), stride=s, padding=p).data
        assert got.shape == want.shape, f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: expected shape {want.shape}, got {got.shape}"
        assert got.dtype == np.float64, f"float64 x {shape_x} and weight {shape_w}: float64 stays float64, got {got.dtype}"
        assert np.allclose(got, want, atol=1e-10), \
            f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: largest difference from the loop oracle {np.abs(got - want).max():.3g}"
print("Task 09.2 visible tests passed")

# %% [markdown]
# ## 3. Gradients of a convolution
#
# Module 05's engine walks the graph backwards and, for each recorded op, calls
# the backward **rule** registered for its name: `rule(grad, out)` gets
# `grad = dL/d(out)` as a numpy array of `out`'s shape and returns one array per
# input of `out.node.inputs`, each in that input's shape (or `None` for an input
# that is `None`). The decorator `@register_backward("conv2d")` is the seam: this
# file adds the rule for its own op without touching `autograd.py`.
#
# Every forward step was `out += einsum("nchw,oc->nohw", patch_ij, W_ij)` with
# `patch_ij` a strided slice of the padded input and `W_ij = weight[:, :, i, j]`.
# That is a product, so each step sends gradient back to both of its factors,
# with the same einsum letters rearranged:
#
# ```
# dW[:, :, i, j]   = einsum("nohw,nchw->oc", grad, patch_ij)      # (out, in)
# dxpad[slice_ij] += einsum("nohw,oc->nchw", grad, W_ij)          # (batch, in, H_out, W_out)
# dbias            = grad.sum(axis=(0, 2, 3))                     # (out,)
# ```
#
# `dxpad` has the padded input's shape; `+=` because neighbouring offsets read
# overlapping pixels, and each reader adds its share. The gradient of `x` is the
# interior of `dxpad`, `dxpad[:, :, padding:padding + H, padding:padding + W]`:
# gradient that reached a padding zero has nowhere to go. Input rows that a
# stride skips (row 7 of an 8-row input with kernel 3, stride 2) get zero.
#
# A check that needs no autograd: the gradient of `L = sum(grad * conv(x))`
# with respect to one input number is `(L(x + h) - L(x - h)) / 2h` to
# `O(h^2)`. The tests do this in float64 for every entry.
#
# ### Task 09.3: `conv2d_backward`
#
# Return `(dx, dweight, dbias)`: `dx` in `x`'s shape and dtype, `dweight` in
# `weight`'s shape and dtype, `dbias` in `bias`'s shape and dtype. As in Module
# 05's rules, an input that needs no gradient gets `None`: the bias when the op
# had none, and any input with `requires_grad=False` (a batch of images is
# data, not a parameter: skipping its `dx` saves half the backward's work in a
# network's first layer). The given lines read the inputs and the saved `stride` and
# `padding` from `out.node`. The test builds `out` by hand with `record`, so it
# does not need your Task 09.2.

# %% nbgrader={"grade": false, "grade_id": "conv2d_backward", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("conv2d")
def conv2d_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad: (batch, out, H_out, W_out) -> (dx (batch, in, H, W), dweight (out, in, kh, kw), dbias (out,) or None)."""
    x, weight, bias = out.node.inputs
    stride, padding = out.node.saved["stride"], out.node.saved["padding"]
    # Task 09.3: dweight and dxpad per kernel offset, dx = interior of dxpad, dbias = sum of grad;
    # None for an input that does not require grad (or is None)
    ### BEGIN SOLUTION
    need_x, need_w = x.requires_grad, weight.requires_grad
    _, _, h, w = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    h_out, w_out = grad.shape[2], grad.shape[3]
    xpad = np.pad(x.data, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxpad = np.zeros(xpad.shape, dtype=np.result_type(x.dtype, grad.dtype)) if need_x else None
    dweight = np.zeros(weight.shape, dtype=weight.dtype) if need_w else None
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i, i + stride * h_out, stride), slice(j, j + stride * w_out, stride)
            if need_w:
                dweight[:, :, i, j] = np.einsum("nohw,nchw->oc", grad, xpad[:, :, rows, cols])
            if need_x:
                dxpad[:, :, rows, cols] += np.einsum("nohw,oc->nchw", grad, weight.data[:, :, i, j])
    dx = dxpad[:, :, padding:padding + h, padding:padding + w].astype(x.dtype) if need_x else None
    dbias = grad.sum(axis=(0, 2, 3)).astype(bias.dtype) if bias is not None and bias.requires_grad else None
    return dx, dweight, dbias
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_09_3_conv2d_backward", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 09.3: a hand-built "conv2d" output (values from the loop oracle), gradients checked
# against float64 central finite differences of the oracle.
from tinytorch_lib.testing import task

with task("09.3"):
    def conv_grads_by_differences(x, w, b, s, p, g, h=1e-4):
        """d sum(g * conv(x, w, b)) / d(x, w, b), one central difference per entry (float64)."""
        def loss(x_, w_, b_):
            return float((g * conv2d_loops(x_, w_, b_, s, p)).sum())
        grads = []
        for k, arr in enumerate((x, w, b)):
            d = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                args_plus, args_minus = [x.copy(), w.copy(), b.copy()], [x.copy(), w.copy(), b.copy()]
                args_plus[k][idx] += h
                args_minus[k][idx] -= h
                d[idx] = (loss(*args_plus) - loss(*args_minus)) / (2 * h)
            grads.append(d)
        return grads


    def hand_built_conv(x, w, b, s, p):
        ins = (Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), None if b is None else Tensor(b, requires_grad=True))
        return record("conv2d", Tensor(conv2d_loops(x, w, b, s, p)), ins, stride=s, padding=p)


    rng = np.random.default_rng(1)
    for shape_x, shape_w, s, p in [((2, 2, 4, 4), (3, 2, 3, 3), 1, 1), ((1, 2, 5, 4), (2, 2, 2, 3), 2, 0)]:
        x, w, b = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        out = hand_built_conv(x, w, b, s, p)
        g = rng.standard_normal(out.shape)
        got = conv2d_backward(g, out)
        want = conv_grads_by_differences(x, w, b, s, p, g)
        assert isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dweight, dbias), got {type(got).__name__} of length {len(got)}"
        for name, gv, wv in zip(("dx", "dweight", "dbias"), got, want):
            assert gv is not None and gv.shape == wv.shape, \
                f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: {name} should have shape {wv.shape}, got {None if gv is None else gv.shape}"
            assert np.allclose(gv, wv, atol=1e-5), \
                f"x {shape_x}, weight {shape_w}, stride={s}, padding={p}: {name} differs from finite differences by {np.abs(gv - wv).max():.3g}"
print("Task 09.3 visible tests passed")

# %% [markdown]
# ### The `Conv2d` layer (given)
#
# The layer is a `Module` that owns the parameters and calls your `conv2d`.
# Initialisation as in PyTorch: weight and bias uniform in
# `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` with `fan_in = in_channels * kh * kw`,
# drawn from `rng` (a `np.random.Generator`; `None` makes a fresh one), float32.

# %% tags=["export"]
class Conv2d(Module):
    """x: (batch, in_channels, H, W) float32 -> (batch, out_channels, H_out, W_out).

    weight: (out_channels, in_channels, kh, kw), bias: (out_channels,); kernel_size is an int or (kh, kw).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 bias: bool = True, rng=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
        if min(in_channels, out_channels, kh, kw) < 1 or stride < 1 or padding < 0:
            raise ValueError(f"Conv2d: need channels and kernel sizes >= 1, stride >= 1, padding >= 0; got "
                             f"in_channels={in_channels}, out_channels={out_channels}, kernel_size={kernel_size}, "
                             f"stride={stride}, padding={padding}")
        rng = resolve_rng(rng)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding = stride, padding
        bound = 1.0 / np.sqrt(in_channels * kh * kw)
        self.weight = Parameter(rng.uniform(-bound, bound, (out_channels, in_channels, kh, kw)).astype(np.float32))
        self.bias = Parameter(rng.uniform(-bound, bound, out_channels).astype(np.float32)) if bias else None

    def forward(self, x) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


# %% [markdown]
# ## 4. Max pooling
#
# `MaxPool2d(k)` keeps the largest value of each `k x k` window, moving the
# window by `stride` (default: `k`, so windows do not overlap). It has no
# parameters; it halves the height and width for `k = 2`, and a feature that
# moves by one pixel inside a window gives the same output.
#
# ```
# x = 1 3 | 2 0      max_pool2d(x, 2) = 4 5        H_out = (H - k) // stride + 1
#     4 2 | 5 1                         9 8
#     ----+----
#     9 0 | 7 8
#     6 6 | 1 3
# ```
#
# The forward pass has the same shape as the convolution's: for each window
# offset `(i, j)`, the strided slice `x[:, :, i : i + s*H_out : s, j : j + s*W_out : s]`
# holds the element at that offset of every window, and the output is the
# running maximum over the `k * k` slices (`np.maximum`).
#
# **Backward**: a max passes its gradient to the element that won. In the
# example, `grad[0, 0]` goes to the 4, and the 1, 3, 2 get nothing. When several
# elements of a window tie for the maximum, any split of the gradient among them
# is a valid (sub)gradient; this course routes all of it to the **first** tied
# element in row-major order (top row first, then left to right), the element
# `np.argmax` of the flattened window would pick. So every output's gradient
# lands on exactly one input, and `dx.sum() == grad.sum()`. When windows
# overlap (`stride < k`), an input that wins several windows receives the sum.
#
# To find the winners, walk the offsets in row-major order and compare each
# slice with the output (`slice == out.data`); keep a boolean
# `(batch, channels, H_out, W_out)` array of windows already served, so a later
# tie does not get the gradient again.
#
# ### Task 09.4: `max_pool2d` and its backward rule
#
# `max_pool2d(x, kernel_size, stride=None)`: `kernel_size` and `stride` are ints
# (`stride=None` means `stride = kernel_size`); output `(batch, channels, H_out, W_out)`
# in the input's dtype. Raise `ValueError` for `kernel_size < 1` or `stride < 1`
# (naming them), and for a non-4-d input or an input smaller than the window
# (naming the input's shape):
# `max_pool2d: input (2, 3, 1, 1) is smaller than the 2x2 window`.
# The given last line records the op as `"maxpool2d"` with `kernel_size` and
# `stride` saved. `maxpool2d_backward(grad, out)` returns a one-element tuple
# `(dx,)`, `dx` in the input's shape and dtype, with the tie rule above. Its
# tests build `out` by hand (with numpy's `max`), so they do not need your forward.

# %% nbgrader={"grade": false, "grade_id": "max_pool2d", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def max_pool2d(x, kernel_size: int, stride=None) -> Tensor:
    """x: (batch, channels, H, W) -> (batch, channels, (H - k) // s + 1, (W - k) // s + 1); max of each window."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.dtype.kind != "f":
        x = Tensor(x.data.astype(np.float32))
    stride = kernel_size if stride is None else stride
    # Task 09.4: check the arguments, then a running np.maximum over the k*k offset slices
    ### BEGIN SOLUTION
    k, s = kernel_size, stride
    if k < 1 or s < 1:
        raise ValueError(f"max_pool2d: need kernel_size >= 1 and stride >= 1, got kernel_size={k}, stride={s}")
    if x.ndim != 4:
        raise ValueError(f"max_pool2d: expected input (batch, channels, H, W), got {x.shape}")
    n, c, h, w = x.shape
    if h < k or w < k:
        raise ValueError(f"max_pool2d: input {x.shape} is smaller than the {k}x{k} window")
    h_out, w_out = (h - k) // s + 1, (w - k) // s + 1
    out = np.full((n, c, h_out, w_out), -np.inf, dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            np.maximum(out, x.data[:, :, i:i + s * h_out:s, j:j + s * w_out:s], out=out)
    ### END SOLUTION
    return record("maxpool2d", Tensor(out), (x,), kernel_size=kernel_size, stride=stride)


@register_backward("maxpool2d")
def maxpool2d_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad: (batch, channels, H_out, W_out) -> (dx,) with dx (batch, channels, H, W): each window's first max gets it."""
    (x,) = out.node.inputs
    k, s = out.node.saved["kernel_size"], out.node.saved["stride"]
    # Task 09.4: walk the offsets in row-major order; route grad to the first element equal to the max
    ### BEGIN SOLUTION
    h_out, w_out = out.shape[2], out.shape[3]
    dx = np.zeros(x.shape, dtype=x.dtype)
    served = np.zeros(out.shape, dtype=bool)  # windows whose gradient has already been routed
    for i in range(k):
        for j in range(k):
            rows, cols = slice(i, i + s * h_out, s), slice(j, j + s * w_out, s)
            first = (x.data[:, :, rows, cols] == out.data) & ~served
            dx[:, :, rows, cols] += np.where(first, grad, 0)
            served |= first
    return (dx,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_09_4_maxpool", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 09.4
from tinytorch_lib.testing import task

with task("09.4"):
    def pool_loops(x, k, s):
        """The definition: max of each window, and the (row, col) of the first max in row-major order."""
        n, c, h, w = x.shape
        h_out, w_out = (h - k) // s + 1, (w - k) // s + 1
        out, where = np.zeros((n, c, h_out, w_out)), {}
        for idx in np.ndindex(n, c, h_out, w_out):
            b, ch, y, xx = idx
            window = x[b, ch, y * s:y * s + k, xx * s:xx * s + k]
            out[idx] = window.max()
            r, q = divmod(int(np.argmax(window)), k)
            where[idx] = (b, ch, y * s + r, xx * s + q)
        return out, where


    def hand_built_pool(x, k, s):
        return record("maxpool2d", Tensor(pool_loops(x, k, s)[0].astype(x.dtype)), (Tensor(x, requires_grad=True),),
                      kernel_size=k, stride=s)


    x = np.array([[[[1, 3, 2, 0], [4, 2, 5, 1], [9, 0, 7, 8], [6, 6, 1, 3]]]], dtype=np.float32)
    got = max_pool2d(x, 2)
    assert isinstance(got, Tensor) and got.shape == (1, 1, 2, 2), f"max_pool2d of a (1, 1, 4, 4) input, k=2: expected a Tensor (1, 1, 2, 2), got {got!r}"
    assert np.array_equal(got.data[0, 0], [[4, 5], [9, 8]]), f"worked example: expected [[4, 5], [9, 8]], got {fmt(got.data[0, 0])}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(2)
    xr = rng.standard_normal((2, 3, 7, 6))
    for k, s in [(2, None), (3, 2), (2, 1)]:
        want = pool_loops(xr, k, k if s is None else s)[0]
        got = max_pool2d(xr, k, s).data
        assert got.shape == want.shape and np.array_equal(got, want), f"(2, 3, 7, 6) input, kernel_size={k}, stride={s}: expected shape {want.shape}, got {got.shape} (or different values)"
    try:
        max_pool2d(np.zeros((2, 3, 1, 1)), 2)
    except ValueError as e:
        assert "(2, 3, 1, 1)" in str(e), f"the message should name the input shape (2, 3, 1, 1), got {str(e)!r}"
    else:
        raise AssertionError("max_pool2d of a (2, 3, 1, 1) input with a 2x2 window should raise ValueError")
    # backward on the worked example: grad [[1, 2], [3, 4]] lands on the 4, the 5, the 9 and the 8
    out = hand_built_pool(x, 2, 2)
    (dx,) = maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32), out)
    want = np.zeros((4, 4), dtype=np.float32)
    want[1, 0], want[1, 2], want[2, 0], want[2, 3] = 1, 2, 3, 4
    assert dx.shape == (1, 1, 4, 4) and np.array_equal(dx[0, 0], want), f"backward of the worked example: expected\n{fmt(want)}\ngot\n{fmt(dx)}"
    # ties: an all-equal window gives everything to its top-left element
    out = hand_built_pool(np.ones((1, 1, 2, 2), dtype=np.float32), 2, 2)
    (dx,) = maxpool2d_backward(np.full((1, 1, 1, 1), 5.0, dtype=np.float32), out)
    assert np.array_equal(dx[0, 0], [[5, 0], [0, 0]]), f"a 2x2 window of ones, grad 5: expected [[5, 0], [0, 0]] (first max), got {fmt(dx[0, 0])}"
print("Task 09.4 visible tests passed")

# %% [markdown]
# ### The `MaxPool2d` layer (given)

# %% tags=["export"]
class MaxPool2d(Module):
    """x: (batch, channels, H, W) -> (batch, channels, (H - k) // s + 1, (W - k) // s + 1); no parameters."""

    def __init__(self, kernel_size: int, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride

    def forward(self, x) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


# %% [markdown]
# ## 5. From feature maps to classes: `Flatten` and a small CNN
#
# After convolution and pooling, each image is a stack of small feature maps,
# `(batch, channels, h, w)`. A `Linear` layer wants `(batch, features)`.
# `Flatten` reshapes `(batch, ...)` to `(batch, -1)`, keeping the batch axis.
# `Tensor.reshape` is recorded already (Module 01) and its gradient rule is
# Module 05's, so `Flatten` needs no backward rule of its own.
#
# The small CNN for 8x8 digits, with the shapes of a batch of 2:
#
# ```
# (2, 1, 8, 8)  Conv2d(1, C, 3, padding=1)  -> (2, C, 8, 8)     C * 9 + C parameters
#               ReLU()                      -> (2, C, 8, 8)
#               MaxPool2d(2)                -> (2, C, 4, 4)
#               Flatten()                   -> (2, 16 C)
#               Linear(16 C, 10)            -> (2, 10)          160 C + 10 parameters
# ```
#
# ### Task 09.5: `Flatten` and `small_cnn`
#
# `Flatten.forward(x)` returns `x.reshape(batch, -1)` as a `Tensor` (use
# `Tensor.reshape`, so that gradients flow); an input with fewer than 2
# dimensions is a `ValueError` naming its shape:
# `Flatten: expected (batch, ...) with at least 2 dimensions, got (5,)`.
# `small_cnn(channels=16, classes=10, rng=None)` returns the `Sequential` above
# (layers in that order, so `model.get_submodule("0")` is the `Conv2d`), with
# `rng` passed to both the `Conv2d` and the `Linear` (Module 03's
# `resolve_rng(rng)` turns `None` or an int seed into a `Generator` first). `Sequential`
# wraps `ReLU()`, which is not a `Module`, in a `Lambda`. The CNN test relies on
# Tasks 09.2 and 09.4 (it runs the model forward).

# %% nbgrader={"grade": false, "grade_id": "flatten_cnn", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Flatten(Module):
    """x: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def forward(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        # Task 09.5: check x.ndim >= 2, then keep the batch axis and flatten the rest with Tensor.reshape
        ### BEGIN SOLUTION
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected (batch, ...) with at least 2 dimensions, got {x.shape}")
        return x.reshape(x.shape[0], -1)
        ### END SOLUTION


def small_cnn(channels: int = 16, classes: int = 10, rng=None) -> Sequential:
    """(batch, 1, 8, 8) -> (batch, classes): Conv2d(1, channels, 3, padding=1), ReLU, MaxPool2d(2), Flatten, Linear."""
    # Task 09.5: assemble the five layers with Sequential
    ### BEGIN SOLUTION
    rng = resolve_rng(rng)
    return Sequential(Conv2d(1, channels, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(channels * 4 * 4, classes, rng=rng))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_09_5_flatten_cnn", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 09.5 (the CNN part relies on Tasks 09.2 and 09.4)
from tinytorch_lib.testing import task

with task("09.5", uses={"09.2": "conv2d", "09.4": "max_pool2d"}):
    got = Flatten()(Tensor(np.arange(24.0).reshape(2, 3, 2, 2)))
    assert isinstance(got, Tensor) and got.shape == (2, 12), f"Flatten of a (2, 3, 2, 2) tensor: expected shape (2, 12), got {getattr(got, 'shape', got)}"
    assert np.array_equal(got.data[1], np.arange(12.0, 24.0)), f"Flatten keeps row-major order: expected row 1 = 12..23, got {fmt(got.data[1])}"
    try:
        Flatten()(Tensor(np.zeros(5)))
    except ValueError as e:
        assert "(5,)" in str(e), f"the message should name the shape (5,), got {str(e)!r}"
    else:
        raise AssertionError("Flatten of a (5,) tensor should raise ValueError")
    model = small_cnn(channels=8, rng=np.random.default_rng(0))
    assert isinstance(model, Sequential), f"small_cnn should return a Sequential, got {type(model).__name__}"
    conv = model.get_submodule("0")
    assert isinstance(conv, Conv2d) and conv.weight.shape == (8, 1, 3, 3) and conv.padding == 1, \
        f"layer 0 should be Conv2d(1, 8, 3, padding=1), got {conv!r}"
    n_params = sum(p.size for p in model.parameters())
    assert n_params == 8 * 9 + 8 + 128 * 10 + 10, f"small_cnn(channels=8): expected 1370 parameters, got {n_params}"
    try:
        logits = model(Tensor(np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)))
    except NotImplementedError as e:
        raise AssertionError(f"the CNN runs conv2d (Task 09.2) and max_pool2d (Task 09.4): make their tests pass first ({e})") from None
    assert logits.shape == (3, 10) and logits.dtype == np.float32, \
        f"small_cnn(channels=8) on (3, 1, 8, 8) float32: expected (3, 10) float32, got {logits.shape} {logits.dtype}"
print("Task 09.5 visible tests passed")

# %% [markdown]
# ### Gradients end to end
#
# Your rules are now part of autograd: `Tensor.backward()` (Module 05's engine)
# finds `"conv2d"` and `"maxpool2d"` in `BACKWARD_RULES` like any other op. One
# backward pass through the small CNN gives every parameter a gradient of its
# own shape, and Module 05's `gradcheck` compares the engine's gradients of the
# whole chain conv, ReLU, pool, flatten, linear with float64 central finite
# differences, for every input and parameter entry.

# %%
from tinytorch_lib.autograd import gradcheck

model = small_cnn(channels=4, rng=np.random.default_rng(0))
logits = model(Tensor(np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)))
(logits * Tensor(np.random.default_rng(2).standard_normal(logits.shape).astype(np.float32))).sum().backward()
for name, p in model.named_parameters():
    print(f"{name:<9} parameter {str(p.shape):<13} gradient {str(p.grad.shape):<13} {p.grad.dtype}")


def cnn_function(x, w, b, w_lin, b_lin):
    """The small CNN as a function of its input and parameters (float64 for the check)."""
    h = Flatten()(max_pool2d(ReLU()(conv2d(x, w, b, stride=1, padding=1)), 2))
    return h @ w_lin.T + b_lin


r = np.random.default_rng(3)
report = gradcheck(cnn_function, [r.standard_normal((2, 1, 8, 8)), r.standard_normal((4, 1, 3, 3)),
                                  r.standard_normal(4), r.standard_normal((10, 64)), r.standard_normal(10)])
print(f"gradcheck of the CNN chain: largest absolute error {report['max_abs']:.2e}, largest relative {report['max_rel']:.2e}")

# %% [markdown]
# ## Systems analysis: what does a convolution cost?
#
# All figures below are measured in the cell that prints them, with the
# course's `measure` (warm-up, median of several repeats, BLAS threads held at
# 1). Inputs are the digits of Module 07's training split as images,
# `load_digits("train", flatten=False)`: `(batch, 1, 8, 8)` float32 in `[0, 1]`.
#
# ### Parameters, bytes and FLOPs: the small CNN against the MLP
#
# The MLP is the 64-128-64-10 network of the milestone, fed the same 64 pixels
# flattened. For each model: parameters, the real bytes of its weights
# (`nbytes` of every parameter), the bytes of the activations each layer
# writes per image (measured on the layer outputs), the forward FLOPs per image
# (`2 * in * out` per `Linear`; the convolution's formula is in the next
# section), the forward time for a batch of 64, and the time of a forward plus
# a backward pass (a training step without the optimizer).

# %%
from tinytorch_lib.dataloader import load_digits
from tinytorch_lib.timing import compare, measure

rng = np.random.default_rng(0)
digits = load_digits("train", flatten=False).tensors[0].data  # (1437, 1, 8, 8) float32
images = Tensor(digits[:64])
cnn = small_cnn(channels=16, rng=np.random.default_rng(0))
mlp = Sequential(Linear(64, 128, rng=np.random.default_rng(0)), ReLU(), Linear(128, 64, rng=np.random.default_rng(1)),
                 ReLU(), Linear(64, 10, rng=np.random.default_rng(2)))
flat = images.reshape(64, 64)


def activation_bytes_per_image(model, x):
    """Bytes of every layer's output for a batch, divided by the batch size."""
    total = 0
    for layer in model:
        x = layer(x)
        total += x.nbytes
    return total // x.shape[0]


conv_flops = 2 * 16 * 1 * 3 * 3 * 8 * 8       # 2 * out * in * kh * kw * H_out * W_out, one image
rows = {"small CNN": (cnn, images, conv_flops + 2 * 256 * 10),
        "MLP 64-128-64-10": (mlp, flat, 2 * (64 * 128 + 128 * 64 + 64 * 10))}
def training_step(model, x, g):
    """Forward, then backward of sum(out * g): what one step of training costs, without the optimizer."""
    model.zero_grad()
    (model(x) * g).sum().backward()


g10 = Tensor(rng.standard_normal((64, 10)).astype(np.float32))
print(f"{'model':<18} {'parameters':>10} {'weight bytes':>12} {'act. bytes/img':>14} {'FLOPs/img':>10} "
      f"{'fwd ms':>7} {'fwd+bwd ms':>10}   (batch of 64)")
model_times = compare({name: (lambda model=model, x=x: model(x)) for name, (model, x, _) in rows.items()})
step_times = compare({name: (lambda model=model, x=x: training_step(model, x, g10))
                      for name, (model, x, _) in rows.items()}, repeats=5)
for name, (model, x, flops) in rows.items():
    params = model.parameters()
    t, t_step = model_times[name], step_times[name]
    print(f"{name:<18} {sum(p.size for p in params):>10,} {sum(p.nbytes for p in params):>12,} "
          f"{activation_bytes_per_image(model, x):>14,} {flops:>10,} {t.median * 1e3:>7.3f} {t_step.median * 1e3:>10.3f}")
print(f"weight bytes, MLP / CNN: {sum(p.nbytes for p in mlp.parameters()) / sum(p.nbytes for p in cnn.parameters()):.1f}x; "
      f"forward time, CNN / MLP, in this run: {model_times.ratio('small CNN', 'MLP 64-128-64-10'):.2g} "
      f"({model_times['small CNN'].threads} BLAS thread)")
for kind, c in (("forward", model_times), ("forward + backward", step_times)):
    if c.noisy:
        print(f"{kind}, {c.noisy}")

# %% [markdown]
# The CNN keeps far fewer weight bytes, because the convolution reuses 16
# small filters at all 64 positions. It pays in activations: the conv layer
# writes 16 feature maps of 8x8 floats per image, more than every hidden layer
# of the MLP together, and in a training step those activations are kept for
# the backward pass. Per image it also needs fewer FLOPs than the MLP, and yet
# its forward pass can take longer: the MLP is three calls to one large,
# well-tuned matrix product, while your convolution is nine small einsums, a
# padded copy, and nine `np.maximum` passes for the pool, each a separate
# trip through numpy's machinery. FLOPs are a budget; time is what the
# operations actually do. The next sections take the convolution apart.
#
# ### FLOPs of a convolution, checked by hand
#
# Each output element `(n, o, y, x)` is a sum of `in * kh * kw` products, one
# multiply and one add each, so
#
# ```
# FLOPs = 2 * batch * out * in * kh * kw * H_out * W_out
# ```
#
# The loop oracle counts its own multiply-adds; the formula should give twice
# that count. It also counts how many multiply-adds read a padding zero: work
# the formula charges for, that changes nothing.

# %%
def conv_flops_formula(batch, out_c, in_c, kh, kw, h_out, w_out):
    return 2 * batch * out_c * in_c * kh * kw * h_out * w_out


for shape_x, shape_w, s, p in [((2, 3, 6, 6), (4, 3, 3, 3), 2, 1), ((1, 1, 8, 8), (16, 1, 3, 3), 1, 1)]:
    counter = {}
    conv2d_loops(np.ones(shape_x), np.ones(shape_w), stride=s, padding=p, counter=counter)
    out_shape = conv2d_output_shape(shape_x, shape_w, s, p)
    formula = conv_flops_formula(shape_x[0], shape_w[0], shape_w[1], shape_w[2], shape_w[3], out_shape[2], out_shape[3])
    print(f"x {shape_x}, weight {shape_w}, stride {s}, padding {p}: counted {counter['macs']:,} multiply-adds "
          f"= {2 * counter['macs']:,} FLOPs, formula {formula:,}; on padding zeros: "
          f"{counter['padding_macs']:,} ({counter['padding_macs'] / counter['macs']:.0%})")
    assert 2 * counter["macs"] == formula

# %% [markdown]
# On an 8x8 digit with padding 1, the border positions of a 3x3 kernel hang
# over the edge: per axis, 22 of the 24 row-offset pairs land inside, so
# `1 - (22/24)^2 = 16%` of the multiply-adds read a zero. The smaller the image,
# the larger that share.
#
# ### FLOPs per second: your convolution, its backward, and one matmul
#
# `Conv2d(1, 16, 3, padding=1)` on batches of 8x8 images, forward and backward
# (the backward rule called directly; it does the forward's multiply-adds twice,
# once for `dweight` and once for `dx`). Next to them: one matrix product with
# the same FLOPs as the forward, `(batch * 64, 9) @ (9, 16)`, the product
# Module 17's im2col will turn the convolution into.

# %%
layer = Conv2d(1, 16, 3, padding=1, rng=np.random.default_rng(0))
batches = [1, 4, 16, 64, 256]
sweep = {"forward": [], "backward": [], "matmul, same FLOPs": []}
print(f"{'batch':>5} {'fwd MFLOP':>9} {'einsum out KB':>13} {'fwd ms':>8} {'bwd ms':>8} {'matmul ms':>9} "
      f"{'fwd GFLOP/s':>11} {'bwd GFLOP/s':>11} {'matmul GFLOP/s':>14}")
spreads = {}
for b in batches:
    x = Tensor(digits[:b], requires_grad=True)
    flops = conv_flops_formula(b, 16, 1, 3, 3, 8, 8)
    out = layer(x)
    g = np.ones(out.shape, dtype=np.float32)
    cols, w_mat = rng.standard_normal((b * 64, 9)).astype(np.float32), layer.weight.data.reshape(16, 9).T.copy()
    c = compare({"forward": lambda: layer(x), "backward": lambda: conv2d_backward(g, out),
                 "matmul": lambda: cols @ w_mat})  # the three in turns
    t_fwd, t_bwd, t_mm = c["forward"], c["backward"], c["matmul"]
    spreads[b] = (flops / t_fwd.p90 / 1e9, flops / t_fwd.min / 1e9, c.noisy)  # forward GFLOP/s at p90 and best
    for key, t, f in (("forward", t_fwd, flops), ("backward", t_bwd, 2 * flops), ("matmul, same FLOPs", t_mm, flops)):
        sweep[key].append(f / t.median / 1e9)
    print(f"{b:>5} {flops / 1e6:>9.3f} {b * 16 * 64 * 4 / 1024:>13,.0f} {t_fwd.median * 1e3:>8.3f} {t_bwd.median * 1e3:>8.3f} {t_mm.median * 1e3:>9.3f} "
          f"{sweep['forward'][-1]:>11.2f} {sweep['backward'][-1]:>11.2f} {sweep['matmul, same FLOPs'][-1]:>14.2f}")
peak = batches[int(np.argmax(sweep["forward"]))]
lo, hi = spreads[peak][:2]
if peak == batches[-1]:
    print(f"in this run the forward's GFLOP/s rose up to the largest batch, {peak}: {max(sweep['forward']):.2f} "
          f"(slowest to fastest repeat {lo:.2f}-{hi:.2f})")
else:
    print(f"in this run the forward's GFLOP/s peaked at batch {peak}: {max(sweep['forward']):.2f} (slowest to fastest "
          f"repeat {lo:.2f}-{hi:.2f}); at batch {batches[-1]}: {sweep['forward'][-1]:.2f} "
          f"({spreads[batches[-1]][0]:.2f}-{spreads[batches[-1]][1]:.2f})")
noisy = [f"batch {b}, {line}" for b, (_, _, line) in spreads.items() if line]
if noisy:
    print(noisy[0])

# %% [markdown]
# ### Where the forward pass spends its time
#
# The table may show the forward pass slower than the backward pass, although
# the backward does twice the multiply-adds, with the same kind of einsum calls.
# Take the forward pass of batch 64 apart into its numpy calls and time each
# kind alone. One extra row: the same nine einsums on **contiguous copies** of
# the slices (`np.ascontiguousarray`, copies made before timing), and the
# cost of making those copies.

# %%
b = 64
x = digits[:b]
w = layer.weight.data
xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
offsets = [(i, j) for i in range(3) for j in range(3)]
copies = [np.ascontiguousarray(xpad[:, :, i:i + 8, j:j + 8]) for i, j in offsets]
temps = [np.einsum("nchw,oc->nohw", c, w[:, :, i, j]) for c, (i, j) in zip(copies, offsets)]


def einsum_on_slices():
    for i, j in offsets:
        np.einsum("nchw,oc->nohw", xpad[:, :, i:i + 8, j:j + 8], w[:, :, i, j])


def einsum_on_copies():
    for c, (i, j) in zip(copies, offsets):
        np.einsum("nchw,oc->nohw", c, w[:, :, i, j])


def accumulate():
    out = np.zeros((b, 16, 8, 8), dtype=np.float32)
    for t in temps:
        out += t


parts = compare({"np.pad": lambda: np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))),
                 "9 x einsum on slices": einsum_on_slices,
                 "zeros + 9 x (out += temp)": accumulate,
                 "whole conv2d forward": lambda: conv2d(x, layer.weight, layer.bias, 1, 1),
                 "9 x ascontiguousarray": lambda: [np.ascontiguousarray(xpad[:, :, i:i + 8, j:j + 8]) for i, j in offsets],
                 "9 x einsum on copies": einsum_on_copies})
for name, t in parts.timings.items():
    share = parts.ratio(name, "whole conv2d forward")
    print(f"{name:<26} {t.median * 1e6:8.1f} us (p90 {t.p90 * 1e6:7.1f})  {share.median:5.0%} of the forward "
          f"({share.lo:.0%}-{share.hi:.0%})")
print(f"einsum on slices / on copies, in this run: {parts.ratio('9 x einsum on slices', '9 x einsum on copies')}")
if parts.noisy:
    print(parts.noisy)
print(f"slice xpad[:, :, 0:8, 0:8] contiguous: {xpad[:, :, 0:8, 0:8].flags.c_contiguous}; "
      f"strides (bytes) {xpad[:, :, 0:8, 0:8].strides} against a copy's {copies[0].strides}")

# %% [markdown]
# Compare "einsum on slices" with "einsum on copies": the same arithmetic and
# the same result, with one operand laid out differently in memory. A slice of
# the padded array is not contiguous: each row of 8 pixels is followed by 2
# padding pixels that the slice skips (the strides above), and numpy's einsum
# only uses its fastest inner loops on contiguous operands. Whatever split your
# machine shows, the time depends on memory layout and on how many separate
# passes over memory the code makes, not on the FLOP count. Module 17's faster
# versions work on exactly this: fewer, larger operations on well-laid-out data.

# %% [markdown]
# ### Seven Python loops against nine numpy calls
#
# The loop oracle and your `conv2d` on the same tiny input (two digits,
# 16 filters), timed in this cell, same answer checked first.

# %%
x_tiny = digits[:2].astype(np.float64)
w_tiny = layer.weight.data.astype(np.float64)
assert np.allclose(conv2d(x_tiny, w_tiny, None, 1, 1).data, conv2d_loops(x_tiny, w_tiny, None, 1, 1))
loops_vs_numpy = compare({"loops": lambda: conv2d_loops(x_tiny, w_tiny, None, 1, 1),
                          "numpy": lambda: conv2d(x_tiny, w_tiny, None, 1, 1)}, repeats=3)
t_loops, t_numpy = loops_vs_numpy["loops"], loops_vs_numpy["numpy"]
tiny_flops = conv_flops_formula(2, 16, 1, 3, 3, 8, 8)
python_gflops = tiny_flops / t_loops.median / 1e9
print(f"Python loops: {t_loops}")
print(f"your conv2d:  {t_numpy}")
print(f"in this run, loops / your conv2d: {loops_vs_numpy.ratio('loops', 'numpy'):.0f}; "
      f"Python loops reach {python_gflops * 1e3:.1f} MFLOP/s")
if loops_vs_numpy.noisy:
    print(loops_vs_numpy.noisy)

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import log_axis, place_legend

fig, ax = plt.subplots(figsize=(6, 3.5))
for key, marker in (("forward", "o"), ("backward", "s"), ("matmul, same FLOPs", "^")):
    ax.plot(batches, sweep[key], marker=marker, label=key)
ax.axhline(python_gflops, color="grey", linestyle="--", label="seven Python loops (batch 2)")
log_axis(ax, "x", "count", ticks=batches)
log_axis(ax, "y", "number")
ax.grid(True, which="major", alpha=0.25)
ax.set_xlabel("batch size (8x8 images, log scale)")
ax.set_ylabel("achieved GFLOP/s (log scale)")
ax.set_title("Conv2d(1, 16, 3, padding=1): achieved GFLOP/s by batch size")
plt.tight_layout()
place_legend(ax)
plt.show()

# %% [markdown]
# Takeaway: the same convolution reaches very different GFLOP/s depending on the
# batch and on how its work is shaped; its FLOP count alone does not predict its time.
#
# Read the plot from left to right. At batch 1 each einsum does a few
# thousand multiply-adds, and the time is mostly the fixed cost of each numpy
# call (argument parsing, a temporary, the strided view). A larger batch
# spreads that fixed cost over more work, so the GFLOP/s rise at first. They
# do not keep rising: each of the nine einsums writes a new output of
# `batch x 16 x 8 x 8` floats (the `einsum out KB` column: 256 KB at batch 64,
# 1 MB at 256), and the accumulation reads each back. Once those temporaries
# no longer fit in the processor's caches, every pass goes out to main
# memory, and the GFLOP/s level off or fall. Where the peak sits depends on
# the machine's cache sizes: the line under the table says where it was in
# this run. (The times are CPU time, so other programs on the machine move
# them much less than they move wall time; the spread printed there shows how
# much they moved.) The single matmul with the same FLOPs
# shows how much of the gap is the shape of the computation, not the
# arithmetic: that is the starting point of Module 17. The Python-loop line is
# the cost of the definition itself, one interpreted multiply-add at a time.
#
# ## Summary
#
# - `H_out = (H + 2*padding - kh) // stride + 1`; a wrong channel count or a
#   too-small input is an error that names both shapes.
# - The forward pass is one strided slice and one einsum per kernel offset; the
#   backward pass is the same loop with the einsum's letters rearranged, and the
#   rules plug into autograd through `register_backward`, without touching
#   Module 05's file.
# - Max pooling routes each window's gradient to its first maximum.
# - The small CNN stores several times fewer weight bytes than the MLP, writes
#   more activation bytes, and its FLOPs are not its time: both are measured above.
#
# Next: `tito module export 09`. `make models` trains this CNN on the digits
# with Module 08's `fit` (`data/cnn_digits.npz`);
# Module 17 replaces your convolution with faster versions and checks each one
# against it.
