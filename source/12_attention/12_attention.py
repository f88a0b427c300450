# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 12: Attention
#
# A language model predicts the next token from the tokens before it. An MLP
# sees one position at a time; **attention** lets each position look at every
# earlier position and take a weighted average of what it finds there, with
# weights computed from the data. It is the operation that makes a
# transformer, and it is also its systems problem: for a sequence of `n`
# tokens it compares every token with every other, an `n x n` matrix of
# scores per head. At `n = 1024` with 4 heads that is 4 million float32
# scores, 16 MB, for one layer of one sequence. The systems-analysis section
# measures how time and memory grow with `n`.
#
# Generation adds a second problem. Producing token `n + 1` needs the keys and
# values of all `n` earlier tokens; recomputing them at every step repeats
# almost all of the work of the step before. A **KV cache** keeps them
# instead. Module 18 writes the cache; this module designs the **seam** it
# plugs into, in the style of Hugging Face's `past_key_values`, and checks
# with a ten-line cache that running a sequence token by token gives exactly
# what running it whole gives.
#
# | task | what you build | points |
# |---|---|---|
# | 12.1 | `split_heads` and `merge_heads`: `(batch, seq, d_model) <-> (batch, heads, seq, head_dim)` | 4 |
# | 12.2 | `causal_mask(s_q, s_k)`: which keys each query may see, with the offset rule | 4 |
# | 12.3 | `scaled_dot_product_attention`: scores, mask, softmax, weighted sum | 4 |
# | 12.4 | `MultiHeadAttention.forward`, with the optional cache | 4 |
#
# This module builds on Modules 01-05: `Tensor` from `tinytorch_lib.tensor`,
# `Softmax` from `tinytorch_lib.activations`, `Module`, `Linear` and
# `resolve_rng` from `tinytorch_lib.layers`, and Module 05's engine and
# `gradcheck` from `tinytorch_lib.autograd`. Every step is built from
# recorded `Tensor` operations, so it needs no backward rule of its own.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.activations import Softmax
from tinytorch_lib.layers import Linear, Module, resolve_rng
from tinytorch_lib.tensor import Tensor

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

for name in ("tensor", "activations", "layers", "autograd"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. Attention in one formula
#
# Each position `i` of a sequence produces three vectors of width `d`, by
# three learned linear maps of its input vector: a **query** `q_i` (what it is
# looking for), a **key** `k_j` (what position `j` offers) and a **value**
# `v_j` (what position `j` passes on). Position `i`'s output is an average of
# the values, weighted by how well its query matches each key:
#
# ```
# scores[i, j]  = q_i . k_j / sqrt(d)                     (s_q, s_k)
# weights[i, :] = softmax(scores[i, :])                   each row sums to 1
# out[i]        = sum_j weights[i, j] * v_j               (s_q, d)
# ```
#
# or, for whole matrices, `out = softmax(Q K^T / sqrt(d)) V`. Why divide by
# `sqrt(d)`: with entries of variance 1, a dot product of two `d`-vectors has
# variance `d`; unscaled, the softmax of scores of size `sqrt(128) ~ 11` is
# nearly one-hot and its gradient nearly zero.
#
# **Heads.** Instead of one attention of width `d_model`, a transformer runs
# `n_heads` attentions of width `head_dim = d_model / n_heads` side by side,
# each on its own slice of the projected vectors, so that different heads can
# attend to different things (one to the previous character, one to the start
# of the word). The FLOPs are the same as one wide attention; only the
# bookkeeping changes: a `(batch, seq, d_model)` tensor is viewed as
# `(batch, seq, n_heads, head_dim)` and the head axis moved forward, so that
# one batched matmul `(batch, heads, s_q, head_dim) @ (batch, heads, head_dim, s_k)`
# does every head of every sequence at once, with no Python loop.
#
# ```
# d_model = 6, n_heads = 2, head_dim = 3, one sequence of 2 tokens:
# x[0] = [[a0 a1 a2 a3 a4 a5],        split_heads -> [[[a0 a1 a2],     head 0
#         [b0 b1 b2 b3 b4 b5]]                         [b0 b1 b2]],
#        (1, 2, 6)                                    [[a3 a4 a5],     head 1
#                                                      [b3 b4 b5]]]    (1, 2, 2, 3)
# ```
#
# ### Task 12.1: `split_heads` and `merge_heads`
#
# `split_heads(x, n_heads)`: `(batch, seq, d_model) -> (batch, n_heads, seq, head_dim)`,
# with `Tensor.reshape` to `(batch, seq, n_heads, head_dim)` and then
# `Tensor.transpose(0, 2, 1, 3)` (both recorded, so gradients flow).
# `merge_heads(x)` is the inverse, `(batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim)`.
# Raise `ValueError` for a `split_heads` input that is not 3-d (naming its
# shape) and for a `d_model` that `n_heads` does not divide:
# `split_heads: d_model 10 is not divisible by n_heads 4`;
# and for a `merge_heads` input that is not 4-d (naming its shape).

# %% nbgrader={"grade": false, "grade_id": "heads", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def split_heads(x, n_heads: int) -> Tensor:
    """x: (batch, seq, d_model) -> (batch, n_heads, seq, d_model // n_heads)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    # Task 12.1: check the shape and divisibility, reshape to (batch, seq, heads, head_dim), move heads forward
    ### BEGIN SOLUTION
    if x.ndim != 3:
        raise ValueError(f"split_heads: expected x of shape (batch, seq, d_model), got {x.shape}")
    batch, seq, d_model = x.shape
    if n_heads < 1 or d_model % n_heads:
        raise ValueError(f"split_heads: d_model {d_model} is not divisible by n_heads {n_heads}")
    return x.reshape(batch, seq, n_heads, d_model // n_heads).transpose(0, 2, 1, 3)
    ### END SOLUTION


def merge_heads(x) -> Tensor:
    """x: (batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim); the inverse of split_heads."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    # Task 12.1: check the shape, move heads back behind seq, reshape
    ### BEGIN SOLUTION
    if x.ndim != 4:
        raise ValueError(f"merge_heads: expected x of shape (batch, heads, seq, head_dim), got {x.shape}")
    batch, heads, seq, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, seq, heads * head_dim)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_12_1_heads", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 12.1
from tinytorch_lib.testing import task

with task("12.1"):
    x = Tensor(np.arange(12, dtype=np.float32).reshape(1, 2, 6))
    h = split_heads(x, 2)
    assert isinstance(h, Tensor) and h.shape == (1, 2, 2, 3), f"(1, 2, 6) into 2 heads: expected a (1, 2, 2, 3) Tensor, got {type(h).__name__} {getattr(h, 'shape', '')}"
    want = [[[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9, 10, 11]]]]
    assert np.array_equal(h.data, want), f"worked example, x = arange(12) as (1, 2, 6), 2 heads: expected {fmt(want)}, got {h.data.tolist()}"
    m = merge_heads(h)
    assert m.shape == (1, 2, 6) and np.array_equal(m.data, x.data), f"merge_heads(split_heads(x, 2)) should give x back, got {m.data.tolist()}"
    try:
        split_heads(Tensor(np.zeros((2, 3, 10))), 4)
    except ValueError as e:
        assert "10" in str(e) and "4" in str(e), f"d_model 10, 4 heads: the message should name 10 and 4, got {str(e)!r}"
    else:
        raise AssertionError("split_heads of a (2, 3, 10) tensor into 4 heads should raise ValueError")
print("Task 12.1 visible tests passed")

# %% [markdown]
# ## 2. The causal mask, and where the offset comes from
#
# A language model trained to predict token `t + 1` must not see token
# `t + 1`. In attention that means query `i` may only use keys `j <= i`: the
# scores above the diagonal are removed before the softmax. Removing means
# adding `-inf`: `exp(-inf) = 0`, so those keys get weight exactly 0, and the
# remaining weights of the row still sum to 1.
#
# With a **cache**, the queries are not always the whole sequence. After
# 4 tokens have been processed and cached, generating the 5th runs **one**
# query (at absolute position 4) against **five** keys (positions 0-4). In
# general `s_q` new queries meet `s_k >= s_q` keys, and the queries are the
# **last** `s_q` positions: query `i` sits at absolute position
# `s_k - s_q + i` and may see keys `0 .. s_k - s_q + i`.
#
# ```
# s_q = 4, s_k = 4 (no cache)      s_q = 1, s_k = 5 (5th token)   s_q = 2, s_k = 5
#           keys 0 1 2 3                     keys 0 1 2 3 4              keys 0 1 2 3 4
# query 0        1 0 0 0           query 0        1 1 1 1 1     query 0        1 1 1 1 0
# query 1        1 1 0 0                                        query 1        1 1 1 1 1
# query 2        1 1 1 0
# query 3        1 1 1 1
# ```
#
# This bottom-right alignment is what makes a cache give the same result as
# recomputing everything; Hugging Face's models and FlashAttention 2.1+
# align it this way. (PyTorch's `scaled_dot_product_attention(is_causal=True)`
# aligns it to the top-left when `s_q != s_k`, which is wrong for a cache;
# PyTorch provides a separate lower-right causal bias for that case.)
#
# ### Task 12.2: `causal_mask`
#
# `causal_mask(s_q, s_k)` returns a boolean numpy array `(s_q, s_k)`, `True`
# where query `i` may attend to key `j`, i.e. `j <= s_k - s_q + i` (build it
# from `np.arange` and broadcasting, or `np.tril` with the right diagonal).
# `s_q >= 1` and `s_k >= s_q` are required; otherwise raise `ValueError`:
# `causal_mask: need 1 <= s_q <= s_k, got s_q=5, s_k=3`.

# %% nbgrader={"grade": false, "grade_id": "causal_mask", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def causal_mask(s_q: int, s_k: int) -> np.ndarray:
    """-> (s_q, s_k) bool, True where query i (at absolute position s_k - s_q + i) may see key j: j <= s_k - s_q + i."""
    # Task 12.2: check 1 <= s_q <= s_k, then compare key positions with query positions
    ### BEGIN SOLUTION
    if not 1 <= s_q <= s_k:
        raise ValueError(f"causal_mask: need 1 <= s_q <= s_k, got s_q={s_q}, s_k={s_k}")
    query_pos = np.arange(s_q)[:, None] + (s_k - s_q)   # (s_q, 1): absolute positions of the queries
    key_pos = np.arange(s_k)[None, :]                   # (1, s_k)
    return key_pos <= query_pos
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_12_2_causal_mask", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 12.2
from tinytorch_lib.testing import task

with task("12.2"):
    m = causal_mask(4, 4)
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (4, 4), \
        f"causal_mask(4, 4): expected a bool ndarray (4, 4), got {type(m).__name__} {getattr(m, 'dtype', '')} {getattr(m, 'shape', '')}"
    assert np.array_equal(m, np.tril(np.ones((4, 4), dtype=bool))), f"causal_mask(4, 4): expected the lower triangle, got {m.astype(int).tolist()}"
    assert np.array_equal(causal_mask(1, 5), [[True] * 5]), f"causal_mask(1, 5), one new token after 4 cached: expected all True, got {causal_mask(1, 5).astype(int).tolist()}"
    assert np.array_equal(causal_mask(2, 5), [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]), f"causal_mask(2, 5): expected [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], got {causal_mask(2, 5).astype(int).tolist()}"
    try:
        causal_mask(5, 3)
    except ValueError as e:
        assert "5" in str(e) and "3" in str(e), f"s_q=5, s_k=3: the message should name both, got {str(e)!r}"
    else:
        raise AssertionError("causal_mask(5, 3) (more queries than keys) should raise ValueError")
print("Task 12.2 visible tests passed")

# %% [markdown]
# ## 3. Scaled dot-product attention, vectorized over batch and heads
#
# With `q (batch, heads, s_q, d)` and `k, v (batch, heads, s_k, d)`, the whole
# computation is three batched operations, each over all heads of all
# sequences at once:
#
# ```
# scores  = q @ k^T * (1 / sqrt(d))     k.transpose(0, 1, 3, 2): (batch, heads, d, s_k)  -> (batch, heads, s_q, s_k)
# scores  = scores + mask_bias          mask_bias (s_q, s_k): 0 where allowed, -inf elsewhere (broadcast)
# weights = Softmax(axis=-1)(scores)    Module 02's stable softmax, recorded    (batch, heads, s_q, s_k)
# out     = weights @ v                                                          (batch, heads, s_q, d)
# ```
#
# Every row keeps at least one allowed key (key 0), so no row is all `-inf`
# and the softmax never divides by zero. Two dtype details: compute the scale
# as a Python `float` (a numpy float64 scalar would turn a float32 tensor into
# float64, see Module 02), and make the mask bias an array of the scores'
# dtype. Since every step is a recorded `Tensor` operation (matmul, transpose,
# mul, add, Softmax), Module 05's engine differentiates the whole function;
# the test checks it with `gradcheck` in float64.
#
# ### Task 12.3: `scaled_dot_product_attention`
#
# `scaled_dot_product_attention(q, k, v, causal=True)` returns a `Tensor`
# `(batch, heads, s_q, d)` as above; with `causal=False` no mask is applied.
# Check the shapes first and raise `ValueError` naming them when `q`, `k`,
# `v` are not all 4-d, `k` and `v` differ in shape, `q` and `k` differ in
# batch, heads or `d`:
# `scaled_dot_product_attention: q (2, 4, 5, 8), k (2, 4, 5, 16), v (2, 4, 5, 16): ...`;
# with `causal=True`, `s_k < s_q` is a `ValueError` too (your `causal_mask`
# raises it when you call it, with the Task 12.2 message).

# %% nbgrader={"grade": false, "grade_id": "sdpa", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def scaled_dot_product_attention(q, k, v, causal: bool = True) -> Tensor:
    """q: (batch, heads, s_q, d), k, v: (batch, heads, s_k, d) -> (batch, heads, s_q, d).

    softmax(q k^T / sqrt(d) + mask) v; with causal, query i sits at absolute position s_k - s_q + i
    and sees keys 0 .. s_k - s_q + i (s_k >= s_q). Built from recorded Tensor ops: differentiable.
    """
    q, k, v = (t if isinstance(t, Tensor) else Tensor(t) for t in (q, k, v))
    # Task 12.3: check shapes; scores = q @ k^T * (1 / sqrt(d)); add the causal bias; Softmax(axis=-1); @ v
    ### BEGIN SOLUTION
    if not (q.ndim == k.ndim == v.ndim == 4 and k.shape == v.shape and q.shape[:2] == k.shape[:2]
            and q.shape[3] == k.shape[3]):
        raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape}: expected "
                         f"q (batch, heads, s_q, d) and k, v (batch, heads, s_k, d) with the same batch, heads and d")
    s_q, s_k, d = q.shape[2], k.shape[2], q.shape[3]
    scores = (q @ k.transpose(0, 1, 3, 2)) * float(1.0 / np.sqrt(d))    # (batch, heads, s_q, s_k)
    if causal:
        bias = np.where(causal_mask(s_q, s_k), 0.0, -np.inf).astype(scores.dtype)
        scores = scores + Tensor(bias)
    weights = Softmax(axis=-1)(scores)
    return weights @ v
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_12_3_sdpa", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 12.3 (the causal cases rely on Task 12.2's causal_mask)
from tinytorch_lib.testing import task

with task("12.3", uses={"12.2": "causal_mask"}):
    def attention_oracle(q, k, v, causal):
        """float64 numpy, with explicit loops over the mask: the definition."""
        s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
        s_q, s_k = q.shape[2], k.shape[2]
        if causal:
            for i in range(s_q):
                for j in range(s_k):
                    if j > s_k - s_q + i:
                        s[:, :, i, j] = -np.inf
        w = np.exp(s - s.max(axis=-1, keepdims=True))
        return (w / w.sum(axis=-1, keepdims=True)) @ v


    try:
        assert np.array_equal(causal_mask(2, 3), [[1, 1, 0], [1, 1, 1]])
    except Exception as e:
        raise AssertionError(f"Task 12.3 calls causal_mask from Task 12.2, and causal_mask(2, 3) failed ({e!r}; expected "
                             f"[[1, 1, 0], [1, 1, 1]]): make Task 12.2's tests pass first") from None
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    for causal in (True, False):
        got = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
        want = attention_oracle(q, k, v, causal)
        assert isinstance(got, Tensor) and got.shape == (2, 3, 5, 4), f"q, k, v (2, 3, 5, 4): expected a (2, 3, 5, 4) Tensor, got {type(got).__name__} {getattr(got, 'shape', '')}"
        assert np.allclose(got.data, want, atol=1e-10), f"q, k, v (2, 3, 5, 4), causal={causal}: largest difference from the oracle {np.abs(got.data - want).max():.3g}"
    got = scaled_dot_product_attention(Tensor(q[:, :, 3:]), Tensor(k), Tensor(v))
    assert np.allclose(got.data, attention_oracle(q, k, v, True)[:, :, 3:], atol=1e-10), \
        "q of the last 2 positions (2, 3, 2, 4) against k, v (2, 3, 5, 4), causal: expected the last 2 rows of the full causal attention (the offset rule)"
    for shapes in (((2, 4, 5, 8), (2, 4, 5, 16), (2, 4, 5, 16)), ((2, 4, 5, 8), (2, 4, 5, 8), (2, 4, 6, 8)), ((4, 5, 8), (4, 5, 8), (4, 5, 8))):
        try:
            scaled_dot_product_attention(*(Tensor(np.zeros(sh)) for sh in shapes))
        except ValueError as e:
            assert all(str(sh) in str(e) for sh in shapes), f"q {shapes[0]}, k {shapes[1]}, v {shapes[2]}: the error should name all three shapes, got: {e}"
        else:
            raise AssertionError(f"attention of q {shapes[0]}, k {shapes[1]}, v {shapes[2]} should raise ValueError")
    try:
        scaled_dot_product_attention(Tensor(np.zeros((1, 1, 3, 2))), Tensor(np.zeros((1, 1, 2, 2))), Tensor(np.zeros((1, 1, 2, 2))))
    except ValueError:
        pass
    else:
        raise AssertionError("causal attention with 3 queries and only 2 keys (s_k < s_q) should raise ValueError")
    from tinytorch_lib.autograd import gradcheck

    small = [rng.standard_normal((1, 2, 3, 2)), rng.standard_normal((1, 2, 3, 2)), rng.standard_normal((1, 2, 3, 2))]
    report = gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, causal=True), small)
    print(f"gradcheck of causal attention, q, k, v (1, 2, 3, 2) float64: largest absolute error {report['max_abs']:.2e}")
print("Task 12.3 visible tests passed")

# %% [markdown]
# ## 4. Multi-head attention, and the cache seam
#
# `MultiHeadAttention(d_model, n_heads)` holds four `Linear(d_model, d_model)`
# layers (Module 03): `q_proj`, `k_proj`, `v_proj` make queries, keys and
# values from the input, `out_proj` mixes the heads' outputs back together.
# For `x (batch, seq, d_model)`:
#
# ```
# q = split_heads(q_proj(x), n_heads)          (batch, heads, seq, head_dim)
# k = split_heads(k_proj(x), n_heads)          (batch, heads, seq, head_dim)
# v = split_heads(v_proj(x), n_heads)          (batch, heads, seq, head_dim)
#     [with a cache: k, v = cache.update(k, v, layer_idx)    -> (batch, heads, cached + seq, head_dim)]
# a = self.attend(q, k, v)   [scaled_dot_product_attention(q, k, v, causal=True)]   (batch, heads, seq, head_dim)
# y = out_proj(merge_heads(a))                 (batch, seq, d_model)
# ```
#
# Attention here is always causal: this is a decoder, for a language model.
#
# ### The cache protocol (Module 18 implements it)
#
# The names are Hugging Face's. There, a model's forward takes
# `past_key_values`, a `Cache` object, and each attention layer calls
# `key_states, value_states = past_key_values.update(key_states, value_states, layer_idx)`:
# it hands the cache the keys and values of the **new** tokens and gets back
# the keys and values of **all** tokens so far, for its layer. Here:
#
# | call | arguments | returns |
# |---|---|---|
# | `cache.update(k, v, layer_idx)` | `k, v`: Tensors `(batch, heads, seq, head_dim)`, the new tokens' keys and values; `layer_idx`: which layer is calling | `(k_all, v_all)`: Tensors `(batch, heads, cached + seq, head_dim)`, the cache's keys and values for that layer after appending |
# | `cache.get_seq_length(layer_idx)` | | `int`: how many positions are cached for that layer |
#
# `MultiHeadAttention.forward(x, cache=None, layer_idx=0)`:
#
# - `cache=None` (everything in this module, and training): attention over
#   the `seq` tokens of `x`.
# - With a cache, `x` holds only the **new** tokens; the layer calls
#   `cache.update` once with their keys and values and attends from its `seq`
#   queries over the `s_k = cached + seq` keys it gets back. The causal mask's
#   offset rule (Task 12.2) places the queries at absolute positions
#   `cached .. cached + seq - 1`. The layer does not call
#   `get_seq_length`; the model does: Module 13's `GPT.forward` reads it to
#   get the positional-encoding offset of the new tokens (Module 11's
#   `offset`).
#
# The cell below is a complete cache in ten lines, kept in this notebook only
# (Module 18 writes the real `KVCache`). It is
# enough to check the seam: running a sequence through the layer one token at
# a time, with the cache, must give the same outputs as running it whole.

# %%
class ListCache:
    """A minimal cache: per layer, the keys and values so far (np.concatenate at every update)."""

    def __init__(self):
        self.keys, self.values = {}, {}

    def update(self, k: Tensor, v: Tensor, layer_idx: int) -> tuple:
        if layer_idx in self.keys:
            self.keys[layer_idx] = np.concatenate([self.keys[layer_idx], k.data], axis=2)
            self.values[layer_idx] = np.concatenate([self.values[layer_idx], v.data], axis=2)
        else:
            self.keys[layer_idx], self.values[layer_idx] = k.data, v.data
        return Tensor(self.keys[layer_idx]), Tensor(self.values[layer_idx])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[layer_idx].shape[2] if layer_idx in self.keys else 0


# %% [markdown]
# ### Task 12.4: `MultiHeadAttention.forward`
#
# The constructor is given (it checks that `n_heads` divides `d_model`, with
# the message `MultiHeadAttention: d_model 10 is not divisible by n_heads 4`,
# and builds the four `Linear` layers, in the order `q_proj`, `k_proj`,
# `v_proj`, `out_proj`, from `rng`). Write `forward(x, cache=None, layer_idx=0)`
# as in the diagram above, with your Tasks 12.1-12.3: when `cache` is not
# `None`, call `cache.update(k, v, layer_idx)` exactly once and attend over
# what it returns. Attend through the given method `self.attend(q, k, v)`
# (your causal `scaled_dot_product_attention`): it is the seam through which
# Module 17's faster layer swaps in its own attention kernel while keeping
# this forward. Raise `ValueError` for an `x` that is not
# `(batch, seq, d_model)`:
# `MultiHeadAttention: expected x of shape (batch, seq, 16), got (2, 5, 8)`.
# The test checks the layer against a float64 numpy computation with the same
# weights, checks **causality** (changing the input at position `t + 1`
# changes no output at positions `<= t`), and runs the token-by-token cache
# comparison.

# %% nbgrader={"grade": false, "grade_id": "mha", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class MultiHeadAttention(Module):
    """Causal multi-head self-attention: x (batch, seq, d_model) -> (batch, seq, d_model).

    Children q_proj, k_proj, v_proj, out_proj: Linear(d_model, d_model). head_dim = d_model // n_heads.
    Cache seam (Hugging Face's `past_key_values` protocol): with `cache`, x holds the new tokens only and
    `k_all, v_all = cache.update(k, v, layer_idx)` (Tensors (batch, heads, seq, head_dim) in,
    (batch, heads, cached + seq, head_dim) out) gives the keys and values attended over;
    `cache.get_seq_length(layer_idx)` says how many positions are cached.
    """

    def __init__(self, d_model: int, n_heads: int, rng=None):
        super().__init__()
        for what, n in (("d_model", d_model), ("n_heads", n_heads)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"MultiHeadAttention: {what} must be a positive int, got {n!r}")
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_heads, self.head_dim = int(d_model), int(n_heads), int(d_model) // int(n_heads)
        rng = resolve_rng(rng)
        self.q_proj = Linear(self.d_model, self.d_model, rng=rng)
        self.k_proj = Linear(self.d_model, self.d_model, rng=rng)
        self.v_proj = Linear(self.d_model, self.d_model, rng=rng)
        self.out_proj = Linear(self.d_model, self.d_model, rng=rng)

    def attend(self, q, k, v) -> Tensor:
        """Given: causal attention of q over k, v (batch, heads, seq, head_dim); a subclass may override it."""
        return scaled_dot_product_attention(q, k, v, causal=True)

    def forward(self, x, cache=None, layer_idx: int = 0) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        # Task 12.4: check x; project and split q, k, v; cache.update(k, v, layer_idx) if a cache is given;
        # self.attend(q, k, v); merge the heads; out_proj
        ### BEGIN SOLUTION
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiHeadAttention: expected x of shape (batch, seq, {self.d_model}), got {x.shape}")
        q = split_heads(self.q_proj(x), self.n_heads)   # (batch, heads, seq, head_dim)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)         # (batch, heads, cached + seq, head_dim)
        return self.out_proj(merge_heads(self.attend(q, k, v)))
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}"


# %% nbgrader={"grade": true, "grade_id": "test_12_4_mha", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 12.4 (they rely on Tasks 12.1-12.3)
from tinytorch_lib.testing import task

with task("12.4", uses={"12.1": "split_heads, merge_heads", "12.3": "scaled_dot_product_attention"}):
    def mha_oracle(mha, x):
        """float64 numpy: the same layer, written out with explicit per-head loops."""
        def lin(layer, a):
            return a @ layer.weight.data.astype(np.float64).T + layer.bias.data.astype(np.float64)
        q, k, v = lin(mha.q_proj, x), lin(mha.k_proj, x), lin(mha.v_proj, x)
        batch, seq, _ = x.shape
        hd = mha.head_dim
        out = np.zeros((batch, seq, mha.d_model))
        for b in range(batch):
            for h in range(mha.n_heads):
                cols = slice(h * hd, (h + 1) * hd)
                s = q[b, :, cols] @ k[b, :, cols].T / np.sqrt(hd)
                s[np.triu_indices(seq, 1)] = -np.inf
                w = np.exp(s - s.max(axis=1, keepdims=True))
                out[b, :, cols] = (w / w.sum(axis=1, keepdims=True)) @ v[b, :, cols]
        return lin(mha.out_proj, out)


    try:
        scaled_dot_product_attention(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))
        merge_heads(split_heads(np.zeros((1, 2, 4)), 2))
    except NotImplementedError as e:
        raise AssertionError(f"Task 12.4 calls split_heads (Task 12.1) and scaled_dot_product_attention (Task 12.3), and one "
                             f"failed ({e!r}): make their tests pass first") from None
    mha = MultiHeadAttention(16, 4, rng=0)
    assert [n for n, _ in mha.named_children()] == ["q_proj", "k_proj", "v_proj", "out_proj"], f"children: got {[n for n, _ in mha.named_children()]}"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    y = mha(Tensor(x))
    assert isinstance(y, Tensor) and y.shape == (2, 6, 16) and y.dtype == np.float32, \
        f"MultiHeadAttention(16, 4) on (2, 6, 16) float32: expected a (2, 6, 16) float32 Tensor, got {type(y).__name__} {getattr(y, 'shape', '')} {getattr(y, 'dtype', '')}" \
        + (" (float64: a numpy float64 scalar, such as 1 / np.sqrt(d), promotes float32 in Task 12.3; use float(...))" if getattr(y, "dtype", None) == np.float64 else "")
    want = mha_oracle(mha, x.astype(np.float64))
    assert np.allclose(y.data, want, atol=1e-5), f"(2, 6, 16) input: largest difference from the float64 per-head oracle {np.abs(y.data - want).max():.3g}"
    # causality: change the input at position t + 1; outputs at positions <= t must not move
    for t in range(5):
        x2 = x.copy()
        x2[:, t + 1:] = rng.standard_normal(x2[:, t + 1:].shape)
        y2 = mha(Tensor(x2)).data
        assert np.array_equal(y2[:, :t + 1], y.data[:, :t + 1]), f"changing positions {t + 1}.. changed the output at a position <= {t}: attention is not causal"
    # the cache: token by token == whole sequence
    cache = ListCache()
    steps = [mha(Tensor(x[:, i:i + 1]), cache=cache).data for i in range(6)]
    assert cache.get_seq_length(0) == 6, f"after 6 one-token steps the cache should hold 6 positions for layer 0, got {cache.get_seq_length(0)}"
    got = np.concatenate(steps, axis=1)
    assert np.allclose(got, y.data, atol=1e-5), f"token by token with a cache vs the whole sequence: largest difference {np.abs(got - y.data).max():.3g}"
    try:
        mha(Tensor(np.zeros((2, 5, 8), dtype=np.float32)))
    except ValueError as e:
        assert "(2, 5, 8)" in str(e), f"x (2, 5, 8) into d_model 16: the message should name the shape, got {str(e)!r}"
    else:
        raise AssertionError("MultiHeadAttention(16, 4) on x (2, 5, 8) should raise ValueError")
print("Task 12.4 visible tests passed")

# %% [markdown]
# ## Systems analysis: what does attention cost?
#
# All figures below are measured in the cell that prints them, with the
# course's `measure` (warm-up, median of several repeats, BLAS threads held at
# 1), on float32 inputs, under `no_grad()` (inference: no graph is recorded).
# The shapes are those of the course GPT's layers (Module 13): `d_model = 128`,
# 4 heads of `head_dim = 32`, one sequence.
#
# ### Time and score-matrix bytes against sequence length
#
# For `n` from 64 to 1024: the time of `scaled_dot_product_attention` on
# `q, k, v (1, 4, n, 32)`, and the bytes of one score matrix `q @ k^T`
# (`nbytes` of the array actually computed, `(1, 4, n, n)` float32). The
# implementation holds several arrays of that size at once (the scores, the
# masked scores, the exponentials, the weights), so this is a lower bound on
# its memory.

# %%
from tinytorch_lib.tensor import no_grad
from tinytorch_lib.timing import compare, measure

rng = np.random.default_rng(0)
lengths = [64, 128, 256, 512, 1024]
results = {}
with no_grad():
    for n in reversed(lengths):  # longest first: see the note on the allocator below
        q, k, v = (Tensor(rng.standard_normal((1, 4, n, 32)).astype(np.float32)) for _ in range(3))
        results[n] = (measure(lambda: scaled_dot_product_attention(q, k, v), repeats=5),
                      (q.data @ np.swapaxes(k.data, -1, -2)).nbytes)
times = [results[n][0].median for n in lengths]
score_bytes = [results[n][1] for n in lengths]
print(f"{'n':>5} {'median':>10} {'p90':>10} {'score matrix bytes':>19} {'ns per score':>13}")
for n in lengths:
    t, nbytes = results[n]
    print(f"{n:5d} {t.median * 1e3:8.3f} ms {t.p90 * 1e3:7.3f} ms {nbytes:>19,} {t.median / (4 * n * n) * 1e9:13.2f}")
slope_all = np.polyfit(np.log(lengths), np.log(times), 1)[0]
slope_top = np.polyfit(np.log(lengths[-3:]), np.log(times[-3:]), 1)[0]
print(f"log-log slope of time against n: {slope_all:.2f} over 64..1024, {slope_top:.2f} over 256..1024 "
      f"(2 = quadratic); BLAS threads: {results[64][0].threads}")
noisy = [f"n={n}: {results[n][0].noisy}" for n in lengths if results[n][0].noisy]
if noisy:
    print(noisy[0])

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import label_points, log_axis, place_legend

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.loglog(lengths, np.array(times) * 1e3, marker="o", label=f"measured (slope {slope_all:.2f})")
ax1.loglog(lengths, times[-1] * 1e3 * (np.array(lengths) / lengths[-1]) ** 2, linestyle=":", color="grey",
           label="slope 2 through the last point")
ax1.set_xlabel("sequence length n (tokens)")
ax1.set_ylabel("time per call (ms)")
ax1.set_title("Attention time, 4 heads x 32, float32")
ax2.loglog(lengths, score_bytes, marker="o")
label_points(ax2, lengths, score_bytes, "bytes", offset=(-3, 6), ha="right")
ax2.set_xlabel("sequence length n (tokens, log scale)")
ax2.set_ylabel("one score matrix (log scale; 1 kB = 1000 bytes)")
ax2.set_title("Score matrix (1, 4, n, n) float32: exactly n^2")
for ax, kind in ((ax1, "number"), (ax2, "bytes")):
    log_axis(ax, "x", "count", ticks=lengths)
    log_axis(ax, "y", kind)
    ax.grid(True, which="major", alpha=0.25)
ax1.set_xlabel("sequence length n (tokens, log scale)")
ax1.set_ylabel("time per call (ms, log scale)")
plt.tight_layout()
place_legend(ax1)
plt.show()

# %% [markdown]
# The score matrix's bytes are exactly `4 heads x n^2 x 4 bytes`: doubling the
# context quadruples them. Time follows the same `n^2` when `n` is large
# enough: `q @ k^T` and `weights @ v` are `2 n^2 d` FLOPs each per head, and
# the mask, the softmax's passes and the temporaries touch every one of the
# `n^2` scores several times. At small `n` a fixed per-call cost (Python,
# `record`, small-matrix overheads) flattens the curve, which pulls the
# slope over the whole range down; where the arrays outgrow the CPU's caches
# (a 1 MB score matrix may fit, a 16 MB one does not) the cost per score can
# jump, which pushes it up. Which effect wins, and so which of the two
# printed slopes is larger and how close each comes to 2 (the exponent of
# `n^2`), depends on the machine: the line under the table says where they
# sat in this run.
#
# A note on the allocator, because it can move these numbers by a large
# factor: glibc's `malloc` hands out large
# arrays as fresh pages from the operating system (`mmap`), and every call
# then pays a page fault per 4 KB it touches, until a large block is freed,
# which raises the size it serves from its own reused heap. The sweep above
# runs from the longest sequence down so that every length is measured with
# reused memory; run it in the other order and the short lengths, measured
# first, can come out slower than they should. First-touch costs are real
# costs, but they are the allocator's, not attention's. FlashAttention's answer to the `n^2` memory is never to store the
# score matrix at all: it computes the softmax in blocks, keeping running
# maxima and sums.
#
# ### Where the time goes: projections or attention?
#
# A `MultiHeadAttention(128, 4)` forward split in two parts, timed in turns
# with the whole layer in this cell (`compare`): the four projections (`q_proj`, `k_proj`, `v_proj`,
# `out_proj`, each `(n, 128) @ (128, 128)`) and the attention part
# (`split_heads`, `scaled_dot_product_attention`, `merge_heads`). FLOPs by
# formula: projections `4 x 2 n d^2`; attention `2 x 2 n^2 d` (the two
# matmuls, all heads together; the softmax's few operations per score are not
# counted). The FLOP counts cross at `n = 2 d = 256`.

# %%
mha = MultiHeadAttention(128, 4, rng=0)
d = 128
print(f"{'n':>5} {'projections':>12} {'attention':>10} {'whole layer':>12} {'attention share (p10-p90)':>26} "
      f"{'proj FLOPs':>12} {'attn FLOPs':>12}")
split_noisy = None
with no_grad():
    for n in (64, 256, 1024):
        x = Tensor(rng.standard_normal((1, n, d)).astype(np.float32))
        q, k, v = (split_heads(p(x), 4) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
        c = compare({"proj": lambda: [p(x) for p in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj)],
                     "attn": lambda: merge_heads(scaled_dot_product_attention(q, k, v)), "all": lambda: mha(x)},
                    repeats=5)
        t_proj, t_attn, t_all = c["proj"], c["attn"], c["all"]
        a, pr = np.array(t_attn.samples), np.array(t_proj.samples)
        shares = a / (a + pr)  # one share per round of the three
        split_noisy = split_noisy or (c.noisy and f"n={n}, {c.noisy}")
        share_text = f"{np.median(shares):.0%} ({np.percentile(shares, 10):.0%}-{np.percentile(shares, 90):.0%})"
        print(f"{n:5d} {t_proj.median * 1e3:9.3f} ms {t_attn.median * 1e3:7.3f} ms {t_all.median * 1e3:9.3f} ms "
              f"{share_text:>26} {4 * 2 * n * d * d:>12,} {2 * 2 * n * n * d:>12,}")
if split_noisy:
    print(split_noisy)

# %% [markdown]
# The projections' FLOPs grow linearly in `n` and the attention part's
# quadratically, so the attention part's share of the work grows with the
# context; its share of the time is measured in each row. Compare the
# row `n = 256`, where the two FLOP counts are equal: if the attention part
# takes longer there, the difference is what the FLOP count leaves out, the
# mask and the softmax, several memory passes over `n^2` scores that do few
# FLOPs each, while the projections are matrix products with a `128 x 128`
# weight that BLAS runs at high throughput. The "whole layer" column is a check that the two
# parts account for the layer's time (it adds the split/merge reshapes and
# Python's per-call costs).
#
# ### What a cache would save per generated token
#
# Generating without a cache (Module 13's baseline), step `n` runs the whole
# `n`-token sequence through every layer again to get the last position's
# output. With a cache, step `n` runs only the new token: its projections,
# and one query row against `n` cached keys. Per layer, with `d = 128`, by
# formula (the same terms as above):
#
# ```
# recompute all n tokens:  4 x 2 n d^2  +  2 x 2 n^2 d        (all n query rows)
# one new token, cached:   4 x 2 d^2    +  2 x 2 n d          (one query row)
# ```
#
# The ratio is about `n`: the cache turns each step from quadratic to linear
# in the context. (Only the attention layers are counted here; the MLPs of
# Module 13 save the same factor `n`, since without a cache they too process
# all `n` positions.) The cache costs memory: the keys and values of every
# position, `2 x n x d x 4` bytes per layer per sequence. The cell measures
# that with the `ListCache` above after feeding 256 tokens one at a time, and
# checks once more that the cached outputs equal the uncached ones.
# Whether the FLOP savings become the same *time* savings is for Module 18 to
# measure: the cached step is many small operations, where Python's per-call
# cost weighs more.

# %%
print(f"{'context n':>9} {'FLOPs, recompute all':>21} {'FLOPs, one cached token':>24} {'ratio':>7}")
for n in (64, 128, 256, 512, 1024):
    full = 4 * 2 * n * d * d + 2 * 2 * n * n * d
    cached = 4 * 2 * d * d + 2 * 2 * n * d
    print(f"{n:9,} {full:>21,} {cached:>24,} {full / cached:6.0f}x")

n = 256
x = Tensor(rng.standard_normal((1, n, d)).astype(np.float32))
cache = ListCache()
with no_grad():
    whole = mha(x).data
    steps = np.concatenate([mha(x[:, i:i + 1], cache=cache).data for i in range(n)], axis=1)
cache_bytes = sum(a.nbytes for a in cache.keys.values()) + sum(a.nbytes for a in cache.values.values())
print(f"\nafter {cache.get_seq_length(0)} tokens the cache holds {cache_bytes:,} bytes for this layer "
      f"(2 x {n} x {d} x 4 = {2 * n * d * 4:,}); cached outputs equal the whole-sequence outputs to "
      f"{np.abs(steps - whole).max():.1e}")

# %% [markdown]
# ## Summary
#
# - Attention is `softmax(Q K^T / sqrt(d) + mask) V`, batched over sequences
#   and heads by moving the head axis forward (`split_heads`), built from
#   recorded operations so Module 05 differentiates it.
# - The causal mask is aligned bottom-right: query `i` of `s_q` sits at
#   absolute position `s_k - s_q + i`. That one rule makes a cache give the
#   same outputs as recomputing.
# - `MultiHeadAttention.forward(x, cache=None, layer_idx=0)` is the seam:
#   `cache.update(k, v, layer_idx)` returns all keys and values so far, as in
#   Hugging Face's `Cache`. Module 18 writes the real `KVCache`.
# - Time and score memory grow as `n^2`; per generated token, a cache saves
#   about a factor `n` in FLOPs, for `2 n d x 4` bytes per layer.
#
# Next: `tito module export 12`; Module 13 stacks attention, an MLP and
# LayerNorm into a GPT.
