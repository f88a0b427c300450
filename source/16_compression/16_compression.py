# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 16: Compression: pruning and sparse storage
#
# Most weights of a trained network matter little. Set the 80% smallest
# weights of your digit MLP to zero and, after a few epochs of fine-tuning,
# it classifies about as well as before. That is **pruning**. But a zero
# stored as a float32 still takes 4 bytes: a pruned model saves nothing until
# it is stored in a **sparse format** that spends bytes only on the weights
# that remain, plus a little to say where they are. Combined with Module 15's
# int8 codes and a general-purpose compressor, this is Han et al.'s "Deep
# Compression" (2015) recipe, which shrank AlexNet 35x.
#
# Here every size is the length of the file actually written, which loads back
# to a model with the same outputs, and every accuracy is measured on the 360
# held-out digits after the transformation.
#
# | task | what you build | points |
# |---|---|---|
# | 16.1 | `magnitude_mask` and `structured_mask`: which weights to keep | 4 |
# | 16.2 | `prune(model, amount, method)`: masks as buffers, kept zero by a hook | 4 |
# | 16.3 | `to_bitmask` / `from_bitmask` and `to_csr` / `from_csr`: exact sparse formats | 4 |
# | 16.4 | `save_compressed` / `load_compressed`: one file, real bytes | 4 |

# %% tags=["export"]
import copy
import json
import lzma
import zlib
from pathlib import Path

import numpy as np

from tinytorch_lib.layers import Linear, Module
from tinytorch_lib.quantization import model_arch
from tinytorch_lib.spatial import Conv2d
from tinytorch_lib.tensor import Tensor
from tinytorch_lib.training import build_model

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

for name in ("tensor", "layers", "spatial", "training", "quantization"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. Which weights to remove
#
# **Magnitude pruning** removes the weights closest to zero: their product
# with any input is small, so removing them changes the output least (a
# first-order argument; fine-tuning repairs the rest). `amount = 0.8`
# removes the 80% of weights with the smallest `|w|`.
#
# ```
# w = [[ 0.9, -0.1,  0.3],        |w| sorted: 0.05 0.1 0.2 0.3 0.7 0.9
#      [-0.05, 0.7, -0.2]]        amount 0.5 -> remove the 3 smallest
# mask = [[1, 0, 1],              keep 0.9, 0.3, 0.7
#         [0, 1, 0]]
# ```
#
# The count removed is `round(amount * w.size)`, but never all of them:
# `amount` 0.96 of 10 weights rounds to 10, and a layer with no weight left
# computes nothing, which is what `amount = 1.0` (refused) would ask for. So
# the count is capped at `w.size - 1`. Ties at the threshold are broken by
# position (a stable sort), so the count is always exact.
#
# **Structured pruning** removes whole output channels: row `o` of a
# `Linear` weight (one neuron) or filter `o` of a `Conv2d` weight, ranked by
# their L2 norm. Unstructured zeros need a sparse format to save anything;
# a removed neuron can be cut out of the matrices altogether, so dense BLAS
# runs faster on the smaller matrices. It costs more accuracy per weight
# removed.
#
# ### Task 16.1: `magnitude_mask` and `structured_mask`
#
# Both take a weight array and `amount` and return a `bool` mask of the
# weight's shape, `True` = keep. `amount` must be a number in `[0, 1)`:
# otherwise `ValueError` (`magnitude_mask: amount must be in [0, 1), got 1.0; 1.0 would remove every weight`).
#
# - `magnitude_mask(w, amount)`: remove exactly
#   `min(round(amount * w.size), w.size - 1)` weights (rounding never removes
#   the last one), those of smallest `|w|`
#   (`np.argsort(np.abs(w), axis=None, kind="stable")`).
# - `structured_mask(w, amount)`: channels are indexed by axis 0; remove
#   exactly `min(round(amount * w.shape[0]), w.shape[0] - 1)` of them (one
#   channel always stays: `amount` 0.75 of 2 units removes 1, not 2), those
#   of smallest L2 norm over all their other axes (stable sort again); a
#   removed channel is `False` everywhere.

# %% nbgrader={"grade": false, "grade_id": "masks", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def _check_amount(where: str, amount) -> float:
    """Given: amount must be a number in [0, 1)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.floating, np.integer)) \
            or not 0 <= amount < 1:
        raise ValueError(f"{where}: amount must be in [0, 1), got {amount!r}"
                         + ("; 1.0 would remove every weight" if amount == 1 else ""))
    return float(amount)


def magnitude_mask(w, amount) -> np.ndarray:
    """bool mask of w's shape: False for the round(amount * w.size) smallest |w| (at most w.size - 1)."""
    w = np.asarray(w.data if isinstance(w, Tensor) else w)
    amount = _check_amount("magnitude_mask", amount)
    # Task 16.1: stable argsort of |w| over all entries; the first k are removed (k < w.size)
    ### BEGIN SOLUTION
    k = min(int(round(amount * w.size)), max(w.size - 1, 0))
    mask = np.ones(w.size, dtype=bool)
    mask[np.argsort(np.abs(w), axis=None, kind="stable")[:k]] = False
    return mask.reshape(w.shape)
    ### END SOLUTION


def structured_mask(w, amount) -> np.ndarray:
    """bool mask of w's shape: whole channels (axis 0) of smallest L2 norm removed."""
    w = np.asarray(w.data if isinstance(w, Tensor) else w)
    amount = _check_amount("structured_mask", amount)
    # Task 16.1: L2 norm of each channel; stable argsort; remove round(amount * channels) of them, never all
    ### BEGIN SOLUTION
    norms = np.sqrt((w.reshape(w.shape[0], -1).astype(np.float64) ** 2).sum(axis=1))
    k = min(int(round(amount * w.shape[0])), max(w.shape[0] - 1, 0))
    keep = np.ones(w.shape[0], dtype=bool)
    keep[np.argsort(norms, kind="stable")[:k]] = False
    return np.broadcast_to(keep.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape).copy()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_16_1_masks", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 16.1
from tinytorch_lib.testing import task

with task("16.1"):
    w = np.array([[0.9, -0.1, 0.3], [-0.05, 0.7, -0.2]], dtype=np.float32)
    m = magnitude_mask(w, 0.5)
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (2, 3), f"expected a bool (2, 3) mask, got {type(m).__name__} {getattr(m, 'dtype', '')}"
    assert m.tolist() == [[True, False, True], [False, True, False]], f"magnitude_mask({w.tolist()}, 0.5): expected [[T, F, T], [F, T, F]], got {m.tolist()}"
    assert magnitude_mask(w, 0.0).all(), "amount 0 keeps every weight"
    neg = np.array([[-0.95, 0.2, 0.1, -0.3]], dtype=np.float32)
    m = magnitude_mask(neg, 0.5)
    assert m.tolist() == [[True, False, False, True]], \
        f"magnitude_mask({neg.tolist()}, 0.5): rank by |w|, so -0.95 is the largest; expected [[T, F, F, T]], got {m.tolist()}"
    signs = np.array([[1.0, -1.0, 1.0, -1.0], [0.3, 0.3, 0.3, 0.3]], dtype=np.float32)
    s = structured_mask(signs, 0.5)
    assert s[:, 0].tolist() == [True, False], \
        (f"structured_mask({signs.tolist()}, 0.5): row L2 norms 2.0 and 0.6 (sums 0 and 1.2): expected row 1 removed, "
         f"rows kept {s[:, 0].tolist()}")
    s = structured_mask(w, 0.5)
    assert s.tolist() == [[True, True, True], [False, False, False]], \
        f"structured_mask of rows with norms 0.955 and 0.732, amount 0.5: expected row 1 removed, got {s.tolist()}"
    try:
        magnitude_mask(w, 1.0)
    except ValueError as e:
        assert "amount" in str(e) and "1.0" in str(e), f"amount 1.0: the error should name amount and 1.0, got: {e}"
    else:
        raise AssertionError("magnitude_mask with amount 1.0 should raise ValueError")
    ten = np.arange(1, 11, dtype=np.float32)
    kept = int(magnitude_mask(ten, 0.96).sum())
    assert kept == 1, f"magnitude_mask of 10 weights [1, ..., 10], amount 0.96: round(9.6) = 10, capped at 9 removed; expected 1 kept, got {kept}"
    two = np.stack([np.full(30, 1.0), np.full(30, 2.0)]).astype(np.float32)
    rows = structured_mask(two, 0.75)[:, 0].tolist()
    assert rows == [False, True], f"structured_mask of a (2, 30) weight (row norms 5.48, 10.95), amount 0.75: round(1.5) = 2, capped at 1; expected rows kept [False, True], got {rows}"
print("Task 16.1 visible tests passed")

# %% [markdown]
# ## 2. `prune(model, ...)`: masks that stay
#
# Zeroing weights once is not enough: fine-tuning's optimizer updates every
# weight, zeros included, and would bring them back. So each pruned layer
# keeps its mask as a **buffer** (`weight_mask`, saved in `state_dict`, not
# trained) and a **forward pre-hook** (Module 03's seam) that multiplies the
# weight by the mask before every forward pass: whatever the optimizer did,
# the layer computes with the pruned weights, and the gradient of a removed
# weight never reaches the output.
#
# ```
# prune(mlp, 0.8)                       a copy; every Linear and Conv2d gets
#   0  Linear(64, 128)  + weight_mask (128, 64) bool, hook: weight *= mask
#   2  Linear(128, 64)  + weight_mask (64, 128) bool, ...
# make_permanent(pruned)                weight *= mask once more; hook and buffer removed
# ```
#
# Three methods: `"magnitude"` (each layer loses `amount` of its own
# weights), `"global"` (one threshold over all layers' `|w|` together: layers
# with many small weights lose more, and the total removed is `amount`), and
# `"structured"` (each layer loses `amount` of its output channels; every
# layer keeps at least one weight or channel, as Task 16.1's masks do). The
# last layer's outputs are the class scores: structured pruning leaves that
# layer alone (removing a class's row would remove the class).
#
# The hook and the bookkeeping are given:

# %% tags=["export"]
def _apply_mask(module, args):
    """Forward pre-hook: the layer computes with its pruned weight, whatever an optimizer did."""
    module.weight.data *= module.weight_mask.data


def _attach_mask(layer: Module, mask: np.ndarray) -> None:
    layer.register_buffer("weight_mask", mask.astype(bool))
    layer.weight.data *= mask
    layer._prune_hook = layer.register_forward_pre_hook(_apply_mask)


def prunable_layers(model: Module) -> list:
    """(dotted name, layer) of every Linear and Conv2d, in order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (Linear, Conv2d)) and name]


def make_permanent(model: Module) -> Module:
    """Apply each mask once more, then drop the hooks and mask buffers; returns the model (changed in place)."""
    for _, layer in prunable_layers(model):
        if "weight_mask" in layer._buffers:
            layer.weight.data *= layer.weight_mask.data
            layer._prune_hook.remove()
            del layer._buffers["weight_mask"]
            object.__delattr__(layer, "weight_mask")
            object.__delattr__(layer, "_prune_hook")
    return model


def sparsity(model: Module) -> dict:
    """{layer name: fraction of its weight that is exactly 0} for every Linear and Conv2d, and "total"."""
    out, zeros, total = {}, 0, 0
    for name, layer in prunable_layers(model):
        w = layer.weight.data
        out[name] = float((w == 0).mean())
        zeros, total = zeros + int((w == 0).sum()), total + w.size
    out["total"] = zeros / total if total else 0.0
    return out

# %% [markdown]
# ### Task 16.2: `prune`
#
# `prune(model, amount, method="magnitude")` returns a pruned copy
# (`copy.deepcopy`); `model` is unchanged. For each `(name, layer)` of
# `prunable_layers(copy)` compute a mask and call `_attach_mask(layer, mask)`:
#
# - `"magnitude"`: `magnitude_mask(layer.weight, amount)`;
# - `"global"`: one threshold for all layers: concatenate every layer's
#   `|w|`, find which entries `magnitude_mask` would remove from that
#   concatenation, and split the result back per layer (the total removed
#   is `round(amount * total weights)`);
# - `"structured"`: `structured_mask(layer.weight, amount)` for every layer
#   but the last, which keeps a mask of all `True`.
#
# A `method` not among these three is a `ValueError` naming it; `amount` is
# checked as in Task 16.1 (use `_check_amount("prune", amount)`); a model
# with no `Linear` or `Conv2d` is a `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "prune", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def prune(model: Module, amount, method: str = "magnitude") -> Module:
    """A copy of `model` with a kept-zero mask on every Linear and Conv2d weight."""
    amount = _check_amount("prune", amount)
    # Task 16.2: check method; copy; find the layers; one mask per layer by the method; attach
    ### BEGIN SOLUTION
    if method not in ("magnitude", "global", "structured"):
        raise ValueError(f"prune: method must be 'magnitude', 'global' or 'structured', got {method!r}")
    new = copy.deepcopy(model)
    layers = prunable_layers(new)
    if not layers:
        raise ValueError(f"prune: {type(model).__name__} has no Linear or Conv2d layer to prune")
    if method == "global":
        flat = np.concatenate([layer.weight.data.ravel() for _, layer in layers])
        keep = magnitude_mask(flat, amount)
        start = 0
        for _, layer in layers:
            n = layer.weight.data.size
            _attach_mask(layer, keep[start:start + n].reshape(layer.weight.shape))
            start += n
        return new
    for i, (_, layer) in enumerate(layers):
        if method == "magnitude":
            mask = magnitude_mask(layer.weight, amount)
        elif i < len(layers) - 1:
            mask = structured_mask(layer.weight, amount)
        else:
            mask = np.ones(layer.weight.shape, dtype=bool)
        _attach_mask(layer, mask)
    return new
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_16_2_prune", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 16.2
from tinytorch_lib.testing import task

with task("16.2", uses={"16.1": "magnitude_mask, structured_mask"}):
    from tinytorch_lib.activations import ReLU
    from tinytorch_lib.layers import Sequential
    from tinytorch_lib.optimizers import SGD

    net = Sequential(Linear(10, 20, rng=0), ReLU(), Linear(20, 5, rng=1))
    original = net[0].weight.data.copy()
    p = prune(net, 0.6)
    assert np.array_equal(net[0].weight.data, original) and "weight_mask" not in net[0]._buffers, "prune must leave the original model unchanged"
    sp = sparsity(p)
    assert abs(sp["0"] - 0.6) < 1e-9 and abs(sp["2"] - 0.6) < 1e-9, f"magnitude 0.6: expected each layer 60% zeros, got {fmt(sp)}"
    assert "0.weight_mask" in p.state_dict() and p.state_dict()["0.weight_mask"].dtype == bool, "the mask should be a bool buffer in state_dict"
    x = Tensor(np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32))
    opt = SGD(p.parameters(), lr=0.5)
    p(x).sum().backward()
    opt.step()
    p(x)
    assert (p[0].weight.data[~p[0].weight_mask.data] == 0).all(), "after an optimizer step and a forward pass, pruned weights must be 0 again"
    g = prune(net, 0.5, "global")
    assert abs(sparsity(g)["total"] - 0.5) < 1e-9, f"global 0.5: expected 50% zeros over all weights, got {fmt(sparsity(g))}"
    try:
        prune(net, 0.5, "random")
    except ValueError as e:
        assert "random" in str(e), f"method 'random': the error should name it, got: {e}"
    else:
        raise AssertionError("prune with method 'random' should raise ValueError")
    small = Sequential(Linear(30, 2, rng=0), ReLU(), Linear(2, 3, rng=1))
    units = int(prune(small, 0.75, "structured")[0].weight_mask.data.any(axis=1).sum())
    assert units == 1, f"prune(Linear(30, 2), ReLU, Linear(2, 3)), 0.75, 'structured'): layer 0 should keep 1 of its 2 units (never all removed), got {units}"
print("Task 16.2 visible tests passed")

# %% [markdown]
# ## 3. Storing only what is left
#
# A weight matrix with 80% zeros, stored densely, still costs every byte.
# Two standard formats store the nonzeros and their positions:
#
# - **Bitmask + values**: one bit per weight (`np.packbits`), 1 where the
#   weight is nonzero, then the nonzero values in row-major order.
#   Cost: `ceil(n / 8) + nnz x itemsize` bytes, whatever the pattern.
# - **CSR** (compressed sparse row), for a 2-d matrix `(rows, cols)`:
#   `values` (nnz), `indices` (nnz column numbers), `indptr` (rows + 1:
#   row `r`'s entries are `values[indptr[r]:indptr[r + 1]]`). Cost:
#   `nnz x (itemsize + index bytes) + (rows + 1) x 4`: cheaper than the
#   bitmask only when very sparse, and what sparse matmul kernels read.
#
# ```
# w = [[0, 5, 0, 0],      bitmask: 0100 0011 -> packbits -> [0x43] (1 byte), values [5, 7, 8]
#      [0, 0, 7, 8]]      CSR: values [5, 7, 8], indices [1, 2, 3], indptr [0, 1, 3]
# ```
#
# With int8 values (Module 15) a nonzero costs 1 byte; CSR's column index
# (int16 here, since columns < 32,768) then costs twice the value itself.
#
# ### Task 16.3: the two formats
#
# - `to_bitmask(w) -> (bits, values)`: `bits = np.packbits((w != 0).ravel())`
#   (uint8), `values = w[w != 0]` (w's dtype, row-major order).
#   `from_bitmask(bits, values, shape, dtype)` rebuilds `w` exactly.
# - `to_csr(w) -> (values, indices, indptr)` for a 2-d `w` (else `ValueError`
#   naming the shape): `indices` int16 when `w.shape[1] <= 32768`, else int32;
#   `indptr` int32. `from_csr(values, indices, indptr, shape)` rebuilds `w` exactly.

# %% nbgrader={"grade": false, "grade_id": "formats", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def to_bitmask(w) -> tuple:
    """w -> (bits uint8 packed, 1 = nonzero; values: the nonzeros in row-major order)."""
    w = np.asarray(w)
    # Task 16.3
    ### BEGIN SOLUTION
    nonzero = w != 0
    return np.packbits(nonzero.ravel()), w[nonzero]
    ### END SOLUTION


def from_bitmask(bits, values, shape, dtype=None) -> np.ndarray:
    """Inverse of to_bitmask."""
    # Task 16.3
    ### BEGIN SOLUTION
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    nonzero = np.unpackbits(np.asarray(bits, dtype=np.uint8), count=n).astype(bool)
    out = np.zeros(n, dtype=dtype or np.asarray(values).dtype)
    out[nonzero] = values
    return out.reshape(shape)
    ### END SOLUTION


def to_csr(w) -> tuple:
    """2-d w -> (values, indices int16/int32, indptr int32)."""
    w = np.asarray(w)
    # Task 16.3
    ### BEGIN SOLUTION
    if w.ndim != 2:
        raise ValueError(f"to_csr: expected a 2-d matrix, got shape {w.shape}")
    rows, cols = np.nonzero(w)
    index_type = np.int16 if w.shape[1] <= 32768 else np.int32
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return w[rows, cols], cols.astype(index_type), indptr
    ### END SOLUTION


def from_csr(values, indices, indptr, shape) -> np.ndarray:
    """Inverse of to_csr."""
    # Task 16.3
    ### BEGIN SOLUTION
    out = np.zeros(tuple(shape), dtype=np.asarray(values).dtype)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    out[rows, np.asarray(indices, dtype=np.int64)] = values
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_16_3_formats", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 16.3
from tinytorch_lib.testing import task

with task("16.3"):
    w = np.array([[0, 5, 0, 0], [0, 0, 7, 8]], dtype=np.float32)
    bits, values = to_bitmask(w)
    assert bits.dtype == np.uint8 and bits.tolist() == [0x43] and values.tolist() == [5, 7, 8], \
        f"to_bitmask of {w.tolist()}: expected bits [0x43] and values [5, 7, 8], got {bits.tolist()}, {values.tolist()}"
    back = from_bitmask(bits, values, w.shape)
    assert back.dtype == np.float32 and np.array_equal(back, w), f"from_bitmask: expected {w.tolist()}, got {back.tolist()}"
    v, idx, ptr = to_csr(w)
    assert v.tolist() == [5, 7, 8] and idx.tolist() == [1, 2, 3] and ptr.tolist() == [0, 1, 3], \
        f"to_csr of {w.tolist()}: expected values [5, 7, 8], indices [1, 2, 3], indptr [0, 1, 3], got {v.tolist()}, {idx.tolist()}, {ptr.tolist()}"
    assert idx.dtype == np.int16 and ptr.dtype == np.int32, f"expected int16 indices and int32 indptr, got {idx.dtype}, {ptr.dtype}"
    assert np.array_equal(from_csr(v, idx, ptr, w.shape), w), "from_csr should rebuild w exactly"
print("Task 16.3 visible tests passed")

# %% [markdown]
# ## 4. One file, real bytes
#
# `save_compressed(path, model)` writes a whole model to one file:
#
# 1. the architecture (Module 15's `model_arch`, so `build_model` can make an
#    empty model of the same layers, pruned or quantized);
# 2. every array of `state_dict()`: an array with at least 2 dimensions and
#    at least half zeros in **bitmask + values** format, every other array
#    dense (its raw bytes);
# 3. a JSON header saying, per key, the format, dtype, shape and where its
#    bytes are; then all the bytes in one blob;
# 4. with `lzma=True` (the default), compressed: int8 values that all fit
#    in 4 bits (Module 15's `bits=4` codes, `[-8, 7]`) stored two per byte;
#    the blob compressed by Python's `lzma` (LZMA, a general-purpose entropy
#    coder: it finds what repeats, such as the many equal codes of a
#    quantized layer; Deep Compression used Huffman coding for the same
#    job); the header compressed by DEFLATE (`zlib`) with a **preset
#    dictionary**, `HEADER_DICTIONARY`, the class and key names every course
#    header is made of, which reader and writer both know. At this size the
#    header is a large share of the file: the pruned 4-bit CNN's JSON header
#    is about 1,260 bytes, 416 after LZMA, about 140 with the dictionary.
#
# One blob instead of one `.npz` entry per array matters at this size: each
# `.npz` entry carries a header of about 200 bytes; a quantized CNN has a
# dozen arrays, about as many header bytes as weight bytes.
#
# `load_compressed(path)` reads it back, rebuilds each array exactly, and
# returns `(model, meta)` with the model built by `build_model` and its
# state loaded. The mask buffers of a pruned model are not saved: call
# `make_permanent` first (the zeros are the mask), otherwise `ValueError`.
#
# ### Task 16.4: `save_compressed` and `load_compressed`
#
# The file layout (given helpers write and read it, including the 4-bit
# packing and both compressors): `_pack(header, blob, lzma)` and
# `_unpack(raw) -> (header, blob)`, which returns the header and blob exactly
# as you built them. Your part is the header and blob:
# `header = {"arch": model_arch(model), "meta": meta or {}, "arrays": {key: entry}}`,
# where an entry is `{"format": "bitmask", "dtype": ..., "shape": [...], "offset": o, "nbits": nb, "nvalues": nv}`
# (the packed bits at `blob[o:o + nb]`, then the values' bytes) or
# `{"format": "dense", "dtype": ..., "shape": [...], "offset": o, "nbytes": n}`.
# `save_compressed` returns the file's size in bytes.

# %% tags=["export"]
MAGIC = b"TTC1"


# Raw LZMA2 stream: the .xz container's own header and checksums would add about 60 bytes to every file.
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]

# A preset dictionary for the header: the words every course header is made of. DEFLATE starts
# from it as if it had already seen these bytes, so a header's class and key names cost a few
# bits each instead of being spelled out once per file (zstd's and Brotli's dictionaries do the
# same for small files). Part of the file format: never change it, add a new flag byte instead.
HEADER_DICTIONARY = (
    '["activations.ReLU",{}],["activations.Sigmoid",{}],["activations.Tanh",{}],["activations.GELU",{}],'
    '["spatial.MaxPool2d",{"kernel_size":2,"stride":2}],["spatial.Flatten",{}],'
    '["layers.Linear",{"in_features":,"out_features":,"bias":true}],'
    '["spatial.Conv2d",{"in_channels":,"out_channels":,"kernel_size":[3,3],"stride":1,"padding":1,"bias":true}],'
    '["quantization.HalfLinear",{"in_features":,"out_features":,"bias":true}],'
    '["quantization.HalfConv2d",{"in_channels":,"out_channels":,"kernel_size":[3,3],"stride":1,"padding":1,"bias":true}],'
    '{"arch":{"layers":[["quantization.QuantizedConv2d",{"in_channels":,"out_channels":,"kernel_size":[3,3],'
    '"stride":1,"padding":1,"per_channel":true,"bias":true}],'
    '["quantization.QuantizedLinear",{"in_features":,"out_features":,"per_channel":true,"bias":true}]]},'
    '"meta":{},"arrays":{"0.weight":{"dtype":"<f4","shape":[],"offset":0,"format":"dense","nbytes":},'
    '"0.bias":{"dtype":"<f2","shape":[],"offset":,"format":"dense","nbytes":},'
    '"0.weight_q":{"dtype":"|i1","shape":[],"offset":,"format":"bitmask","nbits":,"nvalues":,"nibbles":true},'
    '"0.weight_scale":{"dtype":"<f4","shape":[],"offset":,"format":"dense","nbytes":},'
    '"0.input_scale":{"dtype":"<f4","shape":[1],"offset":,"format":"dense","nbytes":4},'
    '"0.input_zero_point":{"dtype":"<i4","shape":[1],"offset":,"format":"dense","nbytes":4},'
).encode()


def _value_span(e: dict) -> tuple:
    """(start, length in bytes) in the blob of an entry's values (a bitmask entry's values follow its bits)."""
    if e["format"] == "bitmask":
        return e["offset"] + e["nbits"], e["nvalues"] * np.dtype(e["dtype"]).itemsize
    return e["offset"], e["nbytes"]


def _rewrite_values(header: dict, blob: bytes, rewrite) -> tuple:
    """Every entry's values, in blob order, through rewrite(entry, blob, start, length) -> (entry, bytes);
    -> (header, blob) with every offset moved to match and the keys in their original order."""
    arrays, parts, offset = {}, [], 0
    for key, e in sorted(header["arrays"].items(), key=lambda item: item[1]["offset"]):
        start, n = _value_span(e)
        head = blob[e["offset"]:start]                      # a bitmask entry's bits, kept as they are
        e, values = rewrite(dict(e, offset=offset), blob, start, n)
        arrays[key] = e
        parts.append(head + values)
        offset += len(parts[-1])
    return dict(header, arrays={key: arrays[key] for key in header["arrays"]}), b"".join(parts)


def _to_nibbles(e: dict, blob: bytes, start: int, n: int) -> tuple:
    """int8 values that all fit in 4 bits ([-8, 7], Module 15's 4-bit codes): two per byte, entry marked "nibbles"."""
    values = np.frombuffer(blob, np.int8, n, start)          # int8: 1 byte each
    if e["dtype"] != "|i1" or not n or values.min() < -8 or values.max() > 7:
        return e, blob[start:start + n]
    u = values.astype(np.uint8) & 0x0F
    u = np.append(u, np.uint8(0)) if n % 2 else u
    return dict(e, nibbles=True), (u[0::2] | (u[1::2] << 4)).astype(np.uint8).tobytes()


def _from_nibbles(e: dict, blob: bytes, start: int, n: int) -> tuple:
    """Inverse of _to_nibbles: the entry and values exactly as save_compressed built them."""
    if not e.pop("nibbles", False):
        return e, blob[start:start + n]
    packed = np.frombuffer(blob, np.uint8, (n + 1) // 2, start)
    u = np.empty(2 * packed.size, np.uint8)
    u[0::2], u[1::2] = packed & 0x0F, packed >> 4
    return e, ((u[:n].astype(np.int16) ^ 8) - 8).astype(np.int8).tobytes()     # 4-bit two's complement


def _pack(header: dict, blob: bytes, compress: bool) -> bytes:
    """Given: the file. MAGIC, 1 flag byte, then
    0: 4-byte header length, JSON header, blob (nothing compressed);
    2: int8 values that fit in 4 bits packed two per byte (_to_nibbles), 4-byte length, the JSON header
       compressed by DEFLATE with HEADER_DICTIONARY, the blob compressed by LZMA2.
    """
    if compress:
        header, blob = _rewrite_values(header, blob, _to_nibbles)
    text = json.dumps(header, separators=(",", ":")).encode()
    if not compress:
        return MAGIC + b"\x00" + len(text).to_bytes(4, "little") + text + blob
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=HEADER_DICTIONARY)
    head = deflate.compress(text) + deflate.flush()
    return (MAGIC + b"\x02" + len(head).to_bytes(4, "little") + head
            + lzma.compress(blob, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS))


def _unpack(raw: bytes) -> tuple:
    if raw[:4] != MAGIC or raw[4:5] not in (b"\x00", b"\x02"):
        raise ValueError("load_compressed: not a file written by save_compressed (wrong magic bytes)")
    n = int.from_bytes(raw[5:9], "little")
    if raw[4:5] == b"\x00":
        return json.loads(raw[9:9 + n]), raw[9 + n:]
    inflate = zlib.decompressobj(-15, zdict=HEADER_DICTIONARY)
    header = json.loads(inflate.decompress(raw[9:9 + n]) + inflate.flush())
    blob = lzma.decompress(raw[9 + n:], format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    return _rewrite_values(header, blob, _from_nibbles)

# %% nbgrader={"grade": false, "grade_id": "save_load", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def save_compressed(path, model: Module, meta: dict | None = None, lzma: bool = True) -> int:
    """Write model (architecture + state, sparse where it pays) to one file; returns its size in bytes."""
    state = model.state_dict()
    if any(key.endswith("weight_mask") for key in state):
        raise ValueError("save_compressed: the model still has pruning masks; call make_permanent(model) first "
                         "(its zeros then are the mask)")
    # Task 16.4: one entry per state key (bitmask if ndim >= 2 and at least half zeros, else dense); pack
    ### BEGIN SOLUTION
    arrays, parts, offset = {}, [], 0
    for key, a in state.items():
        a = np.ascontiguousarray(a)
        entry = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        if a.ndim >= 2 and (a == 0).mean() >= 0.5:
            bits, values = to_bitmask(a)
            chunk = bits.tobytes() + values.tobytes()
            entry.update(format="bitmask", nbits=bits.nbytes, nvalues=int(values.size))
        else:
            chunk = a.tobytes()
            entry.update(format="dense", nbytes=len(chunk))
        arrays[key] = entry
        parts.append(chunk)
        offset += len(chunk)
    header = {"arch": model_arch(model), "meta": meta or {}, "arrays": arrays}
    raw = _pack(header, b"".join(parts), lzma)
    Path(path).write_bytes(raw)
    return len(raw)
    ### END SOLUTION


def load_compressed(path) -> tuple:
    """A file written by save_compressed -> (model, meta)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_compressed: {path} does not exist")
    header, blob = _unpack(path.read_bytes())
    # Task 16.4: rebuild every array from its entry; build_model(header["arch"]); load_state_dict
    ### BEGIN SOLUTION
    state = {}
    for key, e in header["arrays"].items():
        dtype, shape, o = np.dtype(e["dtype"]), tuple(e["shape"]), e["offset"]
        if e["format"] == "bitmask":
            bits = np.frombuffer(blob, dtype=np.uint8, count=e["nbits"], offset=o)
            values = np.frombuffer(blob, dtype=dtype, count=e["nvalues"], offset=o + e["nbits"])
            state[key] = from_bitmask(bits, values, shape, dtype)
        else:
            state[key] = np.frombuffer(blob, dtype=dtype, count=e["nbytes"] // dtype.itemsize, offset=o).reshape(shape).copy()
    model = build_model(header["arch"])
    model.load_state_dict(state)
    return model, header["meta"]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_16_4_save_load", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 16.4
from tinytorch_lib.testing import task

with task("16.4", uses={"16.2": "prune", "16.3": "to_bitmask, from_bitmask"}):
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    net = Sequential(Linear(30, 40, rng=0), ReLU(), Linear(40, 10, rng=1))
    pruned = make_permanent(prune(net, 0.8))
    size = save_compressed(tmp / "p.ttc", pruned, lzma=False)
    assert size == (tmp / "p.ttc").stat().st_size, f"save_compressed should return the file's size {(tmp / 'p.ttc').stat().st_size}, got {size}"
    loaded, meta = load_compressed(tmp / "p.ttc")
    x = Tensor(np.random.default_rng(0).uniform(0, 1, (5, 30)).astype(np.float32))
    assert np.array_equal(loaded(x).data, pruned(x).data), "the loaded model should give exactly the pruned model's outputs"
    dense = sum(a.nbytes for a in pruned.state_dict().values())
    assert size < 0.5 * dense, f"80% pruned, bitmask + float32 values, no lzma: expected under half of the {dense:,} dense bytes, got {size:,}"
    try:
        save_compressed(tmp / "m.ttc", prune(net, 0.5))
    except ValueError as e:
        assert "make_permanent" in str(e), f"saving with masks: the error should say make_permanent, got: {e}"
    else:
        raise AssertionError("save_compressed of a model with pruning masks should raise ValueError")
print("Task 16.4 visible tests passed")

# %% [markdown]
# ## 5. Systems analysis: how far can the digit models shrink?
#
# ### Accuracy against sparsity, with and without fine-tuning
#
# Prune your trained MLP (global magnitude) at increasing sparsity, measure
# held-out accuracy straight away, and again after fine-tuning the pruned
# model for a few epochs with Adam on the training split (the masks keep the
# zeros; Module 08's `fit`).

# %%
import os

from tinytorch_lib import data_dir
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.training import evaluate, fit, load_model


def fine_tune(model, train_set, test_set, epochs, lr=1e-3, seed=0):
    """Adam on the training split; the masks' hooks keep the pruned weights at zero."""
    fit(model, CrossEntropyLoss(), Adam(model.parameters(), lr=lr), DataLoader(train_set, 32, shuffle=True, seed=seed),
        DataLoader(test_set, batch_size=360), epochs=epochs, progress=False)
    return model


grading = bool(os.environ.get("NBGRADER_EXECUTION"))
SPARSITIES = [0.0, 0.5, 0.8, 0.95] if grading else [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95]
EPOCHS = 3 if grading else 10
if grading:
    print("(autograding: 4 sparsities, 3 fine-tuning epochs; run the notebook yourself for the full sweep)")
mlp, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
train_set, test_set = load_digits("train"), load_digits("test")
test_loader = DataLoader(test_set, batch_size=360)
base_acc = evaluate(mlp, test_loader)
sweep = []
for s in SPARSITIES:
    pruned = prune(mlp, s, "global")
    before = evaluate(pruned, test_loader)
    after = evaluate(fine_tune(pruned, train_set, test_set, EPOCHS), test_loader) if s > 0 else before
    sweep.append((s, before, after))
    print(f"sparsity {s:4.0%}: held-out accuracy {before:.2%} pruned, {after:.2%} after {EPOCHS} epochs of fine-tuning")

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import place_legend

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot([r[0] * 100 for r in sweep], [r[1] * 100 for r in sweep], marker="o", label="pruned")
ax.plot([r[0] * 100 for r in sweep], [r[2] * 100 for r in sweep], marker="s", label=f"pruned + {EPOCHS} epochs fine-tuning")
ax.axhline(base_acc * 100 - 1, color="gray", ls="--", label="1 point below the dense model")
ax.set_xlabel("weights removed (%)")
ax.set_ylabel("held-out accuracy (%)")
ax.set_title("MLP: global magnitude pruning")
plt.tight_layout()
place_legend(ax)
plt.show()

# %% [markdown]
# Read the two curves apart. Without fine-tuning the accuracy holds at
# moderate sparsity and then falls: the small weights really are small, up
# to a point. Fine-tuning lets the remaining weights take over the work of
# the removed ones, which moves the point where accuracy falls much further
# to the right.
#
# ### The whole pipeline, in real file bytes
#
# FP32 as saved by Module 08's `save_model` (the `.npz` the course ships),
# then the same model through this module's `save_compressed` at each step:
# pruning (80%, global, fine-tuned), int8 (Module 15, calibrated on 256
# training images), bitmask storage, lzma. Every row's file is loaded back and
# its held-out accuracy is measured on the loaded model.

# %%
from tinytorch_lib.quantization import quantize
from tinytorch_lib.training import save_model

scratch = Path(tempfile.mkdtemp())
pipeline = {}
for name, flatten in (("mlp", True), ("cnn", False)):
    model, _ = load_model(data_dir(f"{name}_digits.npz") / f"{name}_digits.npz")
    tr, te = load_digits("train", flatten=flatten), load_digits("test", flatten=flatten)
    loader = DataLoader(te, batch_size=360)
    calibration = [tr.tensors[0].data[:256]]
    fp32_file = save_model(scratch / f"{name}.npz", model, model_arch(model))
    pruned = make_permanent(fine_tune(prune(model, 0.8, "global"), tr, te, EPOCHS))
    steps = [("FP32, dense (.npz)", None, model, False),
             ("FP32 dense, lzma", "a", model, True),
             ("pruned 80%, float32 bitmask", "b", pruned, False),
             ("pruned 80% + INT8, bitmask", "c", quantize(pruned, calibration), False),
             ("pruned 80% + INT8, bitmask, lzma", "d", quantize(pruned, calibration), True)]
    rows = []
    for label, tag, m, use_lzma in steps:
        if tag is None:
            size, acc = fp32_file, evaluate(load_model(scratch / f"{name}.npz")[0], loader)
        else:
            size = save_compressed(scratch / f"{name}_{tag}.ttc", m, lzma=use_lzma)
            acc = evaluate(load_compressed(scratch / f"{name}_{tag}.ttc")[0], loader)
        rows.append((label, size, acc))
    pipeline[name] = rows
    print(f"\n{name.upper()}: file bytes, ratio to the FP32 file, held-out accuracy of the loaded file")
    for label, size, acc in rows:
        print(f"  {label:<34} {size:>8,} B {rows[0][1] / size:>6.1f}x   {acc:.2%} ({(acc - rows[0][2]) * 100:+.2f} points)")

# %% [markdown]
# Each step's share, as measured:
#
# - **lzma on a dense float32 model** gains little: trained float32 weights
#   look like noise to a compressor.
# - **Pruning + bitmask** pays one bit per weight plus 4 bytes per survivor:
#   at 80% sparsity, `0.125 + 0.2 x 4 = 0.925` bytes per weight instead of 4.
# - **INT8** makes each survivor 1 byte: `0.125 + 0.2 = 0.325` bytes per weight.
# - **Compression** (lzma on the blob, the dictionary on the header) then
#   squeezes the bitmask and the codes, which are far from random (most
#   codes are small; masks of whole dead rows are long runs).
#
# The CNN is small (2,730 weights), so its fixed costs (biases, per-channel
# scales, the header naming every array) are a larger share of its file.
# `benchmarks/bench_compression.py` runs this over 5 training seeds and
# several sparsities, adds FP16, INT8 and 4-bit levels (Module 15's
# `quantize_tensor(w, bits=4)` codes in the int8 buffer, which the file
# stores two per byte), and prints the smallest configurations within 1 and
# 2 points of FP32 accuracy. For the CNN the fixed costs set the limit:
# float32 biases, scales and input quantizers take 224 bytes and the
# compressed header about 140, against 10,920 FP32 bytes.
#
# ## Summary
#
# - Magnitude pruning removes the smallest weights (per layer or globally);
#   structured pruning removes whole neurons or filters.
# - Masks are buffers and a forward pre-hook keeps the pruned weights at
#   zero through fine-tuning; `make_permanent` bakes them in.
# - Zeros save bytes only in a sparse format: bitmask + values costs one bit
#   per weight plus the survivors; CSR pays an index per survivor.
# - Pruning + int8 + bitmask + lzma, measured in real file bytes that load
#   back to the same model: the table above.
#
# Next: `tito module export 16`.
