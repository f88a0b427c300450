# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 11: Embeddings and positional encodings
#
# Module 10 turned text into integer ids. A network computes with vectors,
# so each id becomes a row of a learned table, the **embedding**:
# `(batch, seq)` ids in, `(batch, seq, dim)` vectors out. The table is often
# the largest single tensor of a language model. GPT-2 small has a vocabulary
# of 50,257 tokens and a width of 768: its token table alone is
# `50,257 x 768 x 4 bytes` (float32), about 154 MB, roughly a third of the whole
# model. The course's character-level GPT (Module 13) has a vocabulary of 72
# characters and `dim = 128`: a table of a few tens of kilobytes.
# The systems-analysis section measures these tables, the time a lookup takes,
# and why the gradient of an embedding table is almost all zeros.
#
# Attention (Module 12) does not know where in the sequence a vector came
# from: shuffle the tokens and every output is shuffled the same way. A
# **positional encoding** adds a position-dependent vector to each token's
# vector, so that "dog bites man" and "man bites dog" differ.
#
# | task | what you build | points |
# |---|---|---|
# | 11.1 | `embedding`: the lookup, with clear errors for bad ids | 4 |
# | 11.2 | `embedding_backward`: its gradient, scattered with `np.add.at` | 4 |
# | 11.3 | `sinusoidal_positions` and `PositionalEncoding.forward` with an `offset` | 4 |
#
# This module builds on Modules 01-05: `Tensor` and the autograd seam
# (`record`, `register_backward`) from `tinytorch_lib.tensor`, `Module`,
# `Parameter` and `resolve_rng` from `tinytorch_lib.layers`, and Module 05's
# engine and `gradcheck` from `tinytorch_lib.autograd`.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.layers import Module, Parameter, resolve_rng
from tinytorch_lib.tensor import Tensor, record, register_backward

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

for name in ("tensor", "layers", "autograd"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. An embedding is a table lookup
#
# An `Embedding(num_embeddings, embedding_dim)` holds a weight table `W` of
# shape `(num_embeddings, embedding_dim)`: row `r` is the vector of token id
# `r`. Looking up a batch of ids is numpy's integer-array indexing,
# `W[ids]`: for ids of shape `(batch, seq)` it returns `(batch, seq, dim)`.
#
# ```
# W = [[0.0, 0.1],       ids = [[2, 0, 2]]      W[ids] = [[[2.0, 2.1],
#      [1.0, 1.1],             (1, 3)                    [0.0, 0.1],
#      [2.0, 2.1]]                                       [2.0, 2.1]]]
#      (3, 2)                                            (1, 3, 2)
# ```
#
# The same result is a matrix product: write each id as a **one-hot** row of
# length `num_embeddings` (a 1 in column `id`, zeros elsewhere); then
# `onehot(ids) @ W` picks the same rows. The lookup does it without the
# multiplications by zero: it copies `dim` numbers per token instead of
# computing `2 * num_embeddings * dim` FLOPs. The systems analysis times both.
#
# Numpy's indexing is forgiving in a way a model must not be: `W[-1]` is the
# last row, so a negative id would silently read the wrong token's vector, and
# `W[70]` of a 65-row table raises an `IndexError` that says nothing about
# vocabularies. A bad id usually means the tokenizer and the model disagree
# (a model trained on one vocabulary, fed another's ids), so the error should
# say so.
#
# ### Task 11.1: `embedding`, the lookup
#
# `embedding(ids, weight)` returns `weight[ids]` as a numpy array in
# `weight`'s dtype, for integer `ids` of any shape (`(batch, seq)`, `(n,)`,
# ...): the output shape is `ids.shape + (dim,)`. Check the ids first:
#
# - ids that are not integers (any numpy integer dtype is fine, `int32` or
#   `int64`) are a `TypeError` naming the dtype:
#   `embedding: ids must be integers, got dtype float32`;
# - an id `< 0` or `>= num_embeddings` is a `ValueError` naming the first bad
#   id (in row-major order), where it is, and the vocabulary size:
#   `embedding: id 70 at position (0, 3) is out of range for a vocabulary of 65 (expected 0 <= id < 65)`.
#
# The given first lines turn `weight` into a `Tensor` and `ids` into an
# `np.ndarray`; the given last line records the op as `"embedding"` with the
# ids saved, for Task 11.2's backward rule. The `Embedding` layer after the
# task calls your function.

# %% nbgrader={"grade": false, "grade_id": "embedding", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def embedding(ids, weight) -> Tensor:
    """ids: (...) int, weight: (num_embeddings, dim) -> (..., dim) in weight's dtype: row ids[i] of weight.

    Recorded as op "embedding" with saved `ids`. TypeError for non-integer ids, ValueError for an id out of range.
    """
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got shape {weight.shape}")
    # Task 11.1: check the ids' dtype and range, then look the rows up
    ### BEGIN SOLUTION
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    num = weight.shape[0]
    bad = (ids < 0) | (ids >= num)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"embedding: id {int(ids[where])} at position {where} is out of range for a vocabulary "
                         f"of {num} (expected 0 <= id < {num})")
    out = weight.data[ids]
    ### END SOLUTION
    return record("embedding", Tensor(out), (weight,), ids=ids)


# %% nbgrader={"grade": true, "grade_id": "test_11_1_embedding", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 11.1
from tinytorch_lib.testing import task

with task("11.1"):
    W = np.array([[0.0, 0.1], [1.0, 1.1], [2.0, 2.1]], dtype=np.float32)
    got = embedding(np.array([[2, 0, 2]]), W)
    assert isinstance(got, Tensor), f"embedding should return a Tensor, got {type(got).__name__}"
    assert got.shape == (1, 3, 2), f"ids (1, 3), weight (3, 2): expected shape (1, 3, 2), got {got.shape}"
    assert np.array_equal(got.data, W[[[2, 0, 2]]]) and np.allclose(got.data, [[[2.0, 2.1], [0.0, 0.1], [2.0, 2.1]]]), \
        f"worked example, ids [[2, 0, 2]]: expected [[[2, 2.1], [0, 0.1], [2, 2.1]]], got {got.data.tolist()}"
    assert got.dtype == np.float32, f"float32 weight: expected a float32 output, got {got.dtype}"
    rng = np.random.default_rng(0)
    Wr = rng.standard_normal((65, 8)).astype(np.float32)
    ids = rng.integers(0, 65, (4, 7))
    assert np.array_equal(embedding(ids, Wr).data, Wr[ids]), "ids (4, 7) from a 65-row table: expected weight[ids]"
    try:
        embedding(np.array([[1, 2, 3, 70, 99]]), Wr)
    except ValueError as e:
        assert "70" in str(e) and "65" in str(e), f"id 70 in a vocabulary of 65: the message should name 70 and 65, got {str(e)!r}"
    else:
        raise AssertionError("embedding of id 70 with a (65, 8) weight should raise ValueError")
    try:
        embedding(np.array([0.0, 1.0], dtype=np.float32), Wr)
    except TypeError as e:
        assert "float32" in str(e), f"float32 ids: the message should name the dtype float32, got {str(e)!r}"
    else:
        raise AssertionError("embedding of float32 ids [0.0, 1.0] should raise TypeError")
print("Task 11.1 visible tests passed")

# %% [markdown]
# ### The `Embedding` layer (given)
#
# The layer owns the table as a `Parameter` and calls your `embedding`.
# Initialisation as in PyTorch's `nn.Embedding`: every entry drawn from a
# standard normal distribution, `N(0, 1)`, float32, from `rng` (Module 03's
# `resolve_rng`: `None` is the shared generator, an int is a seed). Unlike a
# `Linear` layer there is no fan-in to scale by: each output is one row, not a
# sum over inputs.

# %% tags=["export"]
class Embedding(Module):
    """ids: (batch, seq) int -> (batch, seq, embedding_dim) float32; weight: (num_embeddings, embedding_dim)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None):
        super().__init__()
        for what, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Embedding: {what} must be a positive int, got {n!r}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        rng = resolve_rng(rng)
        self.weight = Parameter(rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(np.float32))

    def forward(self, ids) -> Tensor:
        return embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


# %% [markdown]
# ## 2. The gradient of a lookup
#
# Each output vector is a copy of one row: `out[b, s, :] = W[ids[b, s], :]`.
# So the gradient of the loss with respect to row `r` of `W` is the sum of
# the output gradients at every position whose id is `r`, and rows whose id
# does not occur in the batch get zero:
#
# ```
# ids  = [2, 0, 2]            dW[0] = g[1]
# grad = [g0, g1, g2]  ->     dW[1] = 0           (id 1 is not in the batch)
#   (3, dim)                  dW[2] = g[0] + g[2] (id 2 occurs twice: the two add up)
# ```
#
# The obvious numpy line is wrong exactly when an id repeats:
#
# ```
# dW = np.zeros_like(W)
# dW[ids] += grad      # buffered: for ids [2, 0, 2], row 2 gets only g2, not g0 + g2
# ```
#
# `dW[ids] += grad` reads `dW[ids]`, adds, and writes back, and the second
# write to row 2 overwrites the first. `np.add.at(dW, ids, grad)` is the
# unbuffered version: it adds each `grad` row into its `dW` row one after the
# other, so repeats accumulate. Repeats are the normal case: in English text
# the character `" "` or `"e"` occurs in almost every sequence.
#
# ### Task 11.2: `embedding_backward`
#
# The rule receives `grad`, of the output's shape `ids.shape + (dim,)`, and
# `out`, whose `out.node.inputs` is `(weight,)` and `out.node.saved["ids"]` the
# ids. Return a one-element tuple `(dweight,)`: `dweight` in `weight`'s shape
# and dtype, row `r` the sum of `grad` over every position with id `r`. The
# decorator `@register_backward("embedding")` puts the rule where Module 05's
# engine looks for it: this file adds the gradient of its own op without
# touching `autograd.py`. The test builds `out` by hand with `record`, so it
# does not need your Task 11.1.

# %% nbgrader={"grade": false, "grade_id": "embedding_backward", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("embedding")
def embedding_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad: (..., dim) -> (dweight,), dweight (num_embeddings, dim): row r sums grad over the positions with id r."""
    (weight,) = out.node.inputs
    ids = out.node.saved["ids"]
    # Task 11.2: zeros of weight's shape and dtype, then scatter-add grad into the rows `ids` with np.add.at
    ### BEGIN SOLUTION
    dweight = np.zeros(weight.shape, dtype=weight.dtype)
    np.add.at(dweight, ids, grad)
    return (dweight,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_11_2_embedding_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 11.2: a hand-built "embedding" output (numpy's W[ids]), so they do not need Task 11.1
from tinytorch_lib.testing import task

with task("11.2"):
    def hand_built_embedding(ids, W):
        return record("embedding", Tensor(W[ids]), (Tensor(W, requires_grad=True),), ids=ids)


    W = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = hand_built_embedding(np.array([2, 0, 2]), W)
    g = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]], dtype=np.float32)
    got = embedding_backward(g, out)
    assert isinstance(got, tuple) and len(got) == 1, f"expected a one-element tuple (dweight,), got {type(got).__name__} {got!r:.80}"
    (dW,) = got
    assert dW.shape == (3, 2) and dW.dtype == np.float32, f"weight (3, 2) float32: expected dweight (3, 2) float32, got {dW.shape} {dW.dtype}"
    want = np.array([[10.0, 20.0], [0.0, 0.0], [101.0, 202.0]])
    assert np.array_equal(dW, want), f"worked example, ids [2, 0, 2], grad [[1, 2], [10, 20], [100, 200]]: expected {want.tolist()} " \
                                     f"(id 2 occurs twice: its rows add up), got {dW.tolist()}"
    rng = np.random.default_rng(1)
    W = rng.standard_normal((7, 4))
    ids = rng.integers(0, 7, (3, 5))
    g = rng.standard_normal((3, 5, 4))
    want = np.zeros((7, 4))
    for b, s in np.ndindex(3, 5):
        want[ids[b, s]] += g[b, s]
    (dW,) = embedding_backward(g, hand_built_embedding(ids, W))
    assert np.allclose(dW, want), f"ids (3, 5) from 7 rows, grad (3, 5, 4): expected the loop sum {np.round(want, 3).tolist()}, got {np.round(dW, 3).tolist()}"
print("Task 11.2 visible tests passed")

# %% [markdown]
# ### Gradients end to end
#
# Your rule is now part of autograd: `Tensor.backward()` (Module 05's engine)
# finds `"embedding"` in `BACKWARD_RULES` like any other op. Module 05's
# `gradcheck` compares the engine's gradient of `sum(w * embedding(ids, W))`
# with float64 central finite differences, for every entry of the table,
# with ids that repeat and a row that no id touches.

# %%
from tinytorch_lib.autograd import gradcheck

ids = np.array([[3, 1, 3, 0], [1, 1, 4, 3]])  # id 2 never occurs
report = gradcheck(lambda W: embedding(ids, W), [np.random.default_rng(2).standard_normal((5, 3))])
print(f"gradcheck of embedding, ids (2, 4) into a (5, 3) table: largest absolute error {report['max_abs']:.2e}")

# %% [markdown]
# ## 3. Where is each token? Positional encodings
#
# Attention (Module 12) compares every token with every other token through
# dot products; nothing in it depends on where a token sits. A positional
# encoding adds a vector `pe[p]` of the same width to the token's vector at
# position `p`: `x[b, p, :] + pe[p, :]`. Two designs:
#
# - **sinusoidal** (the original Transformer, Vaswani et al. 2017): fixed
#   sines and cosines of the position at geometrically spaced frequencies.
#   Nothing is learned, and it is defined for any position, so a model trained
#   on 256-token contexts can be run at 1024 (whether it *works* that far is
#   another question; Module 13 measures it).
# - **learned** (GPT-2): a `(max_len, dim)` table of parameters, trained
#   like the embedding. It knows nothing about positions it never saw in
#   training.
#
# The sinusoidal table, for position `p` and column pair `i`
# (columns `2i` and `2i + 1`):
#
# ```
# pe[p, 2i]     = sin(p / 10000^(2i / dim))
# pe[p, 2i + 1] = cos(p / 10000^(2i / dim))
# ```
#
# Column pair 0 has wavelength `2 pi` positions; the last pair's wavelength is
# close to `2 pi * 10000`. Worked example, `dim = 4` (frequencies `1` and
# `1/100`):
#
# ```
# p = 0:  [sin 0, cos 0, sin 0, cos 0]              = [0,      1,      0,      1     ]
# p = 1:  [sin 1, cos 1, sin 0.01, cos 0.01]        = [0.8415, 0.5403, 0.0100, 0.9999]
# p = 2:  [sin 2, cos 2, sin 0.02, cos 0.02]        = [0.9093, -0.4161, 0.0200, 0.9998]
# ```
#
# For an odd `dim` the last column is a sine (column `dim - 1 = 2i` with
# `i = (dim - 1) / 2`); the formula covers it with `i = column // 2`.
#
# ### The offset: positions when generating
#
# A forward pass over a whole sequence adds `pe[0], pe[1], ..., pe[seq - 1]`.
# When a model generates with a cache (Module 18), it runs one new token at a
# time: the token at absolute position `n` must get `pe[n]`, not `pe[0]`. So
# `forward(x, offset=0)` adds rows `offset .. offset + seq - 1`:
#
# ```
# x (batch, seq, dim), offset -> x + pe[offset : offset + seq]      pe[...] is (seq, dim), broadcast over batch
# ```
#
# A table holds `max_len` rows; asking for position `max_len` or beyond must
# stop with a message, not return a short slice that numpy would then fail to
# broadcast (`pe[1020:1030]` of a 1024-row table is only 4 rows).
#
# ### Task 11.3: `sinusoidal_positions` and `PositionalEncoding.forward`
#
# `sinusoidal_positions(max_len, dim)` returns the table above as a float32
# numpy array `(max_len, dim)` (compute in float64, convert at the end; any
# `dim >= 1`, odd too).
#
# `PositionalEncoding.forward(x, offset=0)` is shared by both encodings (each
# subclass stores its table as `self.pe`, a `(max_len, dim)` Tensor). Check,
# raising `ValueError` with these messages:
#
# - `x` must be 3-d with last axis `self.dim`:
#   `PositionalEncoding: expected x of shape (batch, seq, 16), got (2, 5, 8)`;
# - `offset` must be an int `>= 0`: `PositionalEncoding: offset must be an int >= 0, got -1`;
# - `offset + seq <= self.max_len`:
#   `PositionalEncoding: offset 1020 + seq 10 = 1030 positions, more than max_len 1024`.
#
# Then return `x + self.pe[offset : offset + seq]` with Tensor operators (the
# slice is `Tensor.__getitem__`, recorded, so a learned table gets its
# gradient through Module 05's `getitem` rule).

# %% nbgrader={"grade": false, "grade_id": "positions", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def sinusoidal_positions(max_len: int, dim: int) -> np.ndarray:
    """-> (max_len, dim) float32: pe[p, 2i] = sin(p / 10000^(2i/dim)), pe[p, 2i+1] = cos(p / 10000^(2i/dim))."""
    if max_len < 1 or dim < 1:
        raise ValueError(f"sinusoidal_positions: need max_len >= 1 and dim >= 1, got max_len={max_len}, dim={dim}")
    # Task 11.3: angles p / 10000^(2 (column // 2) / dim); sine in even columns, cosine in odd ones
    ### BEGIN SOLUTION
    positions = np.arange(max_len, dtype=np.float64)[:, None]         # (max_len, 1)
    columns = np.arange(dim)                                          # (dim,)
    angles = positions / 10000.0 ** (2 * (columns // 2) / dim)        # (max_len, dim)
    return np.where(columns % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)
    ### END SOLUTION


class PositionalEncoding(Module):
    """Base class: the table self.pe (max_len, dim) is set by a subclass; x (batch, seq, dim) -> x + pe[offset:offset+seq]."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        for what, n in (("max_len", max_len), ("dim", dim)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"{type(self).__name__}: {what} must be a positive int, got {n!r}")
        self.max_len, self.dim = int(max_len), int(dim)

    def forward(self, x, offset: int = 0) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        # Task 11.3: check x's shape, the offset and offset + seq <= max_len; then x + self.pe[offset:offset + seq]
        ### BEGIN SOLUTION
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"PositionalEncoding: expected x of shape (batch, seq, {self.dim}), got {x.shape}")
        if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"PositionalEncoding: offset must be an int >= 0, got {offset!r}")
        seq = x.shape[1]
        if offset + seq > self.max_len:
            raise ValueError(f"PositionalEncoding: offset {offset} + seq {seq} = {offset + seq} positions, "
                             f"more than max_len {self.max_len}")
        return x + self.pe[offset:offset + seq]
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


# %% [markdown]
# ### The two encodings (given)
#
# `SinusoidalPositionalEncoding` keeps its table as a **buffer** (Module 03):
# saved in `state_dict()`, moved along with the model, never trained.
# `LearnedPositionalEncoding` keeps it as a `Parameter`, initialised from
# `N(0, 0.02^2)` as GPT-2 does, so that at the start of training the positions
# nudge the token vectors rather than drown them.

# %% tags=["export"]
class SinusoidalPositionalEncoding(PositionalEncoding):
    """x: (batch, seq, dim) -> x + pe[offset:offset + seq]; pe: the fixed sinusoidal table, a buffer."""

    def __init__(self, max_len: int, dim: int):
        super().__init__(max_len, dim)
        self.register_buffer("pe", Tensor(sinusoidal_positions(self.max_len, self.dim)))


class LearnedPositionalEncoding(PositionalEncoding):
    """x: (batch, seq, dim) -> x + pe[offset:offset + seq]; pe: a (max_len, dim) Parameter, N(0, 0.02^2)."""

    def __init__(self, max_len: int, dim: int, rng=None):
        super().__init__(max_len, dim)
        rng = resolve_rng(rng)
        self.pe = Parameter((0.02 * rng.standard_normal((self.max_len, self.dim))).astype(np.float32))


# %% nbgrader={"grade": true, "grade_id": "test_11_3_positions", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 11.3
from tinytorch_lib.testing import task

with task("11.3"):
    pe = sinusoidal_positions(3, 4)
    want = np.array([[0, 1, 0, 1], [0.8415, 0.5403, 0.0100, 0.9999], [0.9093, -0.4161, 0.0200, 0.9998]])
    assert isinstance(pe, np.ndarray) and pe.shape == (3, 4) and pe.dtype == np.float32, \
        f"sinusoidal_positions(3, 4): expected a float32 ndarray (3, 4), got {type(pe).__name__} {getattr(pe, 'shape', '')} {getattr(pe, 'dtype', '')}"
    assert np.allclose(pe, want, atol=1e-4), f"sinusoidal_positions(3, 4), worked example: expected {want.tolist()}, got {np.round(pe, 4).tolist()}"
    enc = SinusoidalPositionalEncoding(16, 4)
    x = Tensor(np.zeros((2, 3, 4), dtype=np.float32))
    y = enc(x)
    assert isinstance(y, Tensor) and y.shape == (2, 3, 4), f"(2, 3, 4) input: expected a (2, 3, 4) Tensor, got {type(y).__name__} {getattr(y, 'shape', '')}"
    assert np.allclose(y.data[1], want, atol=1e-4), f"zeros (2, 3, 4) + pe, offset 0: expected rows 0..2 of the table in each batch entry, got {np.round(y.data[1], 4).tolist()}"
    y5 = enc(x, offset=5)
    assert np.allclose(y5.data[0], sinusoidal_positions(16, 4)[5:8], atol=1e-6), "offset 5, seq 3: expected rows 5..7 of the table"
    try:
        full = enc(x, offset=13)
    except ValueError as e:
        raise AssertionError(f"offset 13 + seq 3 = 16 positions, exactly max_len 16, fit; got ValueError: {e}") from None
    assert np.allclose(full.data[0], sinusoidal_positions(16, 4)[13:16], atol=1e-6), "offset 13, seq 3 (exactly full): expected rows 13..15 of the table"
    try:
        enc(x, offset=14)
    except ValueError as e:
        assert "14" in str(e) and "16" in str(e), f"offset 14 + seq 3 > max_len 16: the message should name the offset 14 and max_len 16, got {str(e)!r}"
    else:
        raise AssertionError("offset 14 + seq 3 = 17 positions with max_len 16 should raise ValueError")
print("Task 11.3 visible tests passed")

# %% [markdown]
# ## Systems analysis: what do embeddings cost?
#
# All figures below are measured in the cell that prints them; times with the
# course's `measure` (warm-up, median of several repeats, BLAS threads held at 1).
#
# ### Table bytes against vocabulary size and width
#
# The vocabulary sizes: a character vocabulary (Module 10 measures the
# course corpus's; character sets of English text are typically 65-100),
# byte-pair vocabularies of 1,000 and 8,000 tokens (Module 10 trains a small
# one), and GPT-2's 50,257. For `dim = 128` (the course GPT) each table is
# allocated with `Embedding` and its bytes are the weight's `nbytes`. For
# `dim = 768` (GPT-2 small) the tables are not allocated; their bytes are
# `rows x columns x 4` (float32), labelled "computed". For scale, one
# `Linear(128, 128)` layer's weight and bias, measured.

# %%
from tinytorch_lib.layers import Linear

vocabs = [("character (65)", 65), ("character (100)", 100), ("BPE 1,000", 1_000), ("BPE 8,000", 8_000),
          ("GPT-2 50,257", 50_257)]
linear_bytes = sum(p.nbytes for p in Linear(128, 128, rng=0).parameters())
print(f"{'vocabulary':<16} {'dim 128: measured nbytes':>25} {'vs Linear(128,128)':>19} {'dim 768: computed bytes':>24}")
for label, v in vocabs:
    table = Embedding(v, 128, rng=0)
    measured = table.weight.nbytes
    computed_768 = v * 768 * np.dtype(np.float32).itemsize
    print(f"{label:<16} {measured:>25,} {measured / linear_bytes:>18.1f}x {computed_768:>24,}")
print(f"Linear(128, 128) weight + bias: {linear_bytes:,} bytes (measured)")

# %% [markdown]
# The table grows linearly in both the vocabulary and the width. A character
# model's table is a fraction of a single `Linear(128, 128)`; with GPT-2's
# vocabulary the same width costs about 25 MB, far more than the course GPT's
# transformer blocks together (each holds about `12 x 128^2`, some 197,000
# parameters, 0.8 MB; Module 13 counts them). That is one reason GPT-2 **ties** its
# output layer to the embedding table (the same matrix used twice) instead of
# storing a second 50,257-row matrix, and why a larger vocabulary is a real
# memory cost even though it shortens the sequences (Module 10 measured that
# trade).
#
# ### Lookup time against batch size, and the one-hot matmul
#
# Lookups of `(batch, 64)` ids in a `(65, 128)` table for growing batches.
# The lookup copies `dim * 4` bytes per token, so the time should grow with
# the number of tokens; the last column divides the output bytes by the time.
# Then the same result computed as `onehot(ids) @ W`, timed in the same cell
# for 1,024 tokens and two vocabulary sizes, checked equal to the lookup.

# %%
from tinytorch_lib.timing import compare, measure

rng = np.random.default_rng(0)
emb = Embedding(65, 128, rng=0)
print(f"{'batch x seq':>11} {'tokens':>7} {'median':>10} {'p90':>10} {'ns / token':>11} {'output GB/s':>12}")
for batch in (1, 4, 16, 64, 256):
    ids = rng.integers(0, 65, (batch, 64))
    t = measure(lambda: emb(ids), repeats=5)
    out_bytes = batch * 64 * 128 * 4
    print(f"{batch:>5} x 64 {batch * 64:>7,} {t.median * 1e3:8.3f} ms {t.p90 * 1e3:7.3f} ms "
          f"{t.median / (batch * 64) * 1e9:11.1f} {out_bytes / t.median / 1e9:12.2f}")

print(f"\n1,024 tokens (16 x 64), dim 128 ({t.threads} BLAS thread):")
print(f"{'vocabulary':>10} {'lookup':>10} {'one-hot @ W':>12} {'ratio (p10-p90)':>17} {'one-hot bytes':>14} "
      f"{'matmul FLOPs':>14}")
for v in (65, 4_096):
    table = Embedding(v, 128, rng=0)
    ids = rng.integers(0, v, (16, 64))

    def one_hot_matmul():
        onehot = np.zeros((ids.size, v), dtype=np.float32)
        onehot[np.arange(ids.size), ids.reshape(-1)] = 1.0
        return (onehot @ table.weight.data).reshape(16, 64, 128), onehot.nbytes

    assert np.array_equal(one_hot_matmul()[0], table(ids).data), "one-hot matmul and lookup should agree exactly"
    c = compare({"lookup": lambda: table(ids), "one-hot": one_hot_matmul}, repeats=5)
    t_lookup, t_onehot = c["lookup"], c["one-hot"]
    print(f"{v:>10,} {t_lookup.median * 1e3:8.3f} ms {t_onehot.median * 1e3:9.3f} ms "
          f"{format(c.ratio('one-hot', 'lookup'), '.3g'):>17} {one_hot_matmul()[1]:>14,} {2 * ids.size * v * 128:>14,}")
    if c.noisy:
        print(f"  {c.noisy}")

# %% [markdown]
# The lookup's cost per token does not depend on the vocabulary; the one-hot
# product's grows with it, because it multiplies by every zero (and first
# writes a `tokens x vocab` matrix of them). In the batch table, a small batch
# pays the fixed per-call cost of Python and of `record` over few tokens;
# where the nanoseconds per token stop falling, copying memory is what is
# left. (The one-hot form is still how people *think* about an embedding: a
# linear layer whose input is a one-hot vector. That view gives the gradient
# of Task 11.2: `onehot^T @ grad`, which is the scatter-add.)
#
# ### The gradient of an embedding table is mostly zeros
#
# One batch of 16 sequences of 256 tokens touches at most 4,096 rows, and
# fewer, because ids repeat. Every other row of `dW` is exactly zero. Natural
# text is very uneven: the frequency of the `r`-th most frequent token falls
# roughly like `1 / r` (Zipf's law). Module 10's corpus is not used here;
# the ids below are drawn from a `1 / r` distribution over each vocabulary
# (a stated stand-in for text). For each vocabulary the cell runs the real
# backward pass through your rule and counts the rows of `W.grad` that are
# not all zero. "Dense gradient bytes" is the `nbytes` of `W.grad`;
# "touched-row bytes" is what a sparse gradient (PyTorch's
# `nn.Embedding(sparse=True)`) would store: the touched rows and their int64
# row numbers.

# %%
print(f"{'vocabulary':>10} {'touched rows':>13} {'fraction':>9} {'dense grad bytes':>17} {'touched-row bytes':>18} {'backward':>10}")
backward_rows, backwards = [], {}
for v in (65, 1_000, 8_000, 50_257):
    table = Embedding(v, 128, rng=0)
    p = 1.0 / np.arange(1, v + 1)
    ids = rng.choice(v, size=(16, 256), p=p / p.sum())
    out = table(ids)
    g = rng.standard_normal(out.shape).astype(np.float32)
    table.zero_grad()
    out.backward(g)
    touched = int(np.any(table.weight.grad.data != 0, axis=1).sum())
    assert touched == len(np.unique(ids)), "the touched rows should be exactly the distinct ids"
    backwards[v] = lambda g=g, out=out: embedding_backward(g, out)
    backward_rows.append((v, touched, table.weight.grad.nbytes, touched * 128 * 4 + touched * 8))
timed_back = compare(backwards, repeats=3)  # the four vocabularies in turns
for v, touched, dense_bytes, sparse_bytes in backward_rows:
    print(f"{v:>10,} {touched:>13,} {touched / v:>9.1%} {dense_bytes:>17,} {sparse_bytes:>18,} "
          f"{timed_back[v].median * 1e3:8.2f} ms")
print(f"in this run, backward time 50,257 rows / 65 rows: {timed_back.ratio(50_257, 65):.3g}, "
      f"for {50_257 / 65:.0f}x the rows")
if timed_back.noisy:
    print(timed_back.noisy)

# %% [markdown]
# A character vocabulary is almost fully touched by every batch, so a dense
# gradient is the right format. A 50,257-token table sees only a few percent
# of its rows per batch, yet the dense gradient holds every row, and an
# optimizer step (Module 06) reads and writes every row of the table and of
# its state. The backward time itself is set by the scatter-add over the
# batch's `16 x 256 x 128` gradient entries (`np.add.at` is a slow,
# element-at-a-time loop), the same work for every vocabulary; only zeroing
# the dense gradient (25 MB at 50,257 rows) grows with the table. The ratio
# under the table says how much it grew in this run, against the factor in
# rows: the backward does not grow in proportion to the table. Sparse
# gradients store only the touched rows; the catch is that Adam's moment
# estimates for the untouched rows then are not updated (PyTorch offers
# `SparseAdam` for this).
#
# ### What the sinusoidal encodings look like
#
# Left: the table for 128 positions and `dim = 64`, one row per position.
# Right: the dot product `pe[p] . pe[64]` for every position `p`.

# %%
import matplotlib.pyplot as plt

pe = sinusoidal_positions(128, 64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
im = ax1.imshow(pe, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
ax1.set_xlabel("column of the encoding (0 = fastest sine)")
ax1.set_ylabel("position p")
ax1.set_title("sinusoidal_positions(128, 64)")
fig.colorbar(im, ax=ax1, label="value")
ax2.plot(np.arange(128), pe @ pe[64], marker=".", markersize=3)
ax2.axvline(64, color="grey", linestyle=":")
ax2.set_xlabel("position p")
ax2.set_ylabel("dot product pe[p] . pe[64]")
ax2.set_title("Similarity to position 64 peaks at distance 0")
plt.tight_layout()
plt.show()
shift = [float(pe[p] @ pe[p + 5]) for p in (0, 30, 90)]
print(f"pe[p] . pe[p + 5] for p = 0, 30, 90: {np.round(shift, 4).tolist()} (the same: it depends only on the distance)")

# %% [markdown]
# Low columns oscillate fast (they tell neighbouring positions apart), high
# columns slowly (they tell the beginning of a long sequence from its end).
# Because `sin(a) sin(b) + cos(a) cos(b) = cos(a - b)`, the dot product of two
# encodings depends only on the distance between the positions, which the
# cell above checks numerically: attention's dot products can pick up
# relative positions from it.
#
# ## Summary
#
# - An embedding is a table lookup, `W[ids]`; its gradient is a scatter-add,
#   `np.add.at`, because ids repeat. Bad ids stop with the id and the
#   vocabulary size in the message.
# - The table's bytes are `vocab x dim x 4`: tiny for characters, tens of
#   megabytes for a GPT-2 vocabulary; and each batch touches only a fraction
#   of a large table's rows.
# - Positional encodings add `pe[offset : offset + seq]`; the `offset` is what
#   lets a cached model (Module 18) place one new token at its real position.
#
# Next: `tito module export 11`; Module 12 builds attention on these vectors.
