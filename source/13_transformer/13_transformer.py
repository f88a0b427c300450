# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 13: Transformer
#
# Modules 10-12 gave you the pieces: characters become ids (10), ids become
# vectors with positions added (11), and attention lets each position read
# the positions before it (12). This module stacks them into a decoder-only
# **GPT**, the architecture behind every large language model, and makes it
# write text one character at a time.
#
# ```
# ids (batch, seq) int64
#   -> token embedding + sinusoidal positions      (batch, seq, d_model)
#   -> block 0 .. block n_layers-1                 (batch, seq, d_model)
#        x = x + attention(layer_norm_1(x))           each position reads the ones before it
#        x = x + mlp(layer_norm_2(x))                 each position alone: d -> 4d -> GELU -> d
#   -> final layer norm -> lm_head (Linear)        (batch, seq, vocab) logits for the NEXT token
# ```
#
# The course's trained GPT (d_model 128, 4 heads, 2 layers, trained on the
# first six books of the King James Bible by `make gpt`) ships in
# `data/gpt_corpus.npz`; this notebook loads it at the end, measures what
# its parts weigh, and times generation. Generating without a cache
# recomputes the whole sequence for every new token: that time, measured
# here, is the baseline that Module 18's KV cache beats.
#
# | task | what you build | points |
# |---|---|---|
# | 13.1 | `layer_norm`: normalise each position's vector, then scale and shift | 4 |
# | 13.2 | `layer_norm_backward`: its gradient rule | 4 |
# | 13.3 | `TransformerBlock.forward`: pre-LN attention and MLP with residuals | 4 |
# | 13.4 | `GPT.forward`: embeddings, positions, blocks, final norm, head | 4 |
# | 13.5 | `next_token` and `generate`: greedy, temperature, top-k | 5 |
#
# This module imports Modules 01-12 from `tinytorch_lib`. Each task's test
# replaces the parts from other tasks by small stand-ins written in the test
# cell, so the tasks can be done in any order.

# %% tags=["export"]
import math

import numpy as np

from tinytorch_lib.activations import GELU
from tinytorch_lib.attention import MultiHeadAttention
from tinytorch_lib.embeddings import Embedding, SinusoidalPositionalEncoding
from tinytorch_lib.layers import Linear, Module, Parameter, Sequential, resolve_rng
from tinytorch_lib.tensor import Tensor, no_grad, record, register_backward

# %% [markdown]
# ## Which library are you running on?

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "activations", "layers", "losses", "autograd", "optimizers", "training",
             "tokenization", "embeddings", "attention"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. Layer normalisation
#
# Deep stacks train badly when the scale of the activations drifts from
# layer to layer. **LayerNorm** fixes the scale at every position: it takes
# each position's `d_model` numbers, subtracts their mean and divides by
# their standard deviation, then applies a learned per-feature scale
# (`weight`, starts at 1) and shift (`bias`, starts at 0):
#
# ```
# mean = x.mean(-1)                    var = ((x - mean)**2).mean(-1)    (biased: divide by d)
# xhat = (x - mean) / sqrt(var + eps)  y = xhat * weight + bias
#
# x [1, 2, 3, 6]  mean 3, var 3.5  ->  xhat [-1.069, -0.535, 0, 1.604]   (eps = 0)
# ```
#
# Unlike the batch norm of CNNs, nothing is averaged across the batch or the
# sequence, so a position's output does not depend on other positions (it
# cannot leak the future) and generation of one sequence behaves like
# training on many. `eps` (1e-5) keeps a constant vector from dividing by 0.
#
# ### Task 13.1: `layer_norm`
#
# `x`: a float `Tensor` `(..., dim)`; `weight`, `bias`: `Tensor`s `(dim,)`.
# Return `y` of `x`'s shape and dtype, computed with numpy on the `.data`
# arrays, **recorded** as
# `record("layer_norm", Tensor(y), (x, weight, bias), xhat=xhat, rstd=rstd)`
# where `rstd = 1 / sqrt(var + eps)` has shape `(..., 1)` (keepdims) and
# `xhat` is `x`'s shape: Task 13.2's backward rule reads both. A last axis
# that is not `dim` is a `ValueError` naming both, e.g.
# `layer_norm: expected input of shape (..., 4), got (2, 3)`.
# The given class `LayerNorm(dim, eps=1e-5)` holds `weight` and `bias` and
# calls your function.

# %% nbgrader={"grade": false, "grade_id": "layer_norm", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """x: (..., dim) float, weight/bias: (dim,) -> (..., dim) same dtype; recorded as op "layer_norm"."""
    # Task 13.1: normalise over the last axis, scale and shift; record xhat and rstd
    ### BEGIN SOLUTION
    dim = weight.shape[0]
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(f"layer_norm: expected input of shape (..., {dim}), got {x.shape}")
    v = x.data
    mean = v.mean(axis=-1, keepdims=True)
    centred = v - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = centred * rstd
    y = (xhat * weight.data + bias.data).astype(x.dtype, copy=False)
    return record("layer_norm", Tensor(y), (x, weight, bias), xhat=xhat, rstd=rstd)
    ### END SOLUTION


# %% tags=["export"]
def _as_float(x) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    return x if x.dtype.kind == "f" else Tensor(x.data.astype(np.float32))


class LayerNorm(Module):
    """x: (..., dim) float -> (..., dim); per position: (x - mean) / sqrt(var + eps) * weight + bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"LayerNorm: dim must be a positive int, got {dim!r}")
        if not eps > 0:
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps!r}")
        self.dim, self.eps = int(dim), float(eps)
        self.weight = Parameter(np.ones(self.dim, dtype=np.float32))
        self.bias = Parameter(np.zeros(self.dim, dtype=np.float32))

    def forward(self, x) -> Tensor:
        return layer_norm(_as_float(x), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps:g}"


# %% nbgrader={"grade": true, "grade_id": "test_13_1_layer_norm", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 13.1
from tinytorch_lib.testing import task

with task("13.1"):
    x = Tensor(np.array([[1.0, 2.0, 3.0, 6.0]], dtype=np.float32))
    got = layer_norm(x, Tensor(np.ones(4, np.float32)), Tensor(np.zeros(4, np.float32)), eps=0.0)
    want = np.array([[-1.069045, -0.534522, 0.0, 1.603567]])
    assert isinstance(got, Tensor) and got.shape == (1, 4), f"layer_norm of a (1, 4) input: expected a (1, 4) Tensor, got {got!r:.80}"
    assert got.dtype == np.float32, f"layer_norm of float32 input: expected float32, got {got.dtype}"
    assert np.allclose(got.data, want, atol=1e-5), f"layer_norm([1, 2, 3, 6]), eps=0: expected {want.round(4).tolist()}, got {got.data.round(4).tolist()}"
    got = layer_norm(x, Tensor(np.array([2.0, 1.0, 1.0, 0.5], np.float32)), Tensor(np.full(4, 10.0, np.float32)), eps=0.0)
    want2 = want * np.array([2.0, 1.0, 1.0, 0.5]) + 10
    assert np.allclose(got.data, want2, atol=1e-5), f"weight [2, 1, 1, 0.5], bias 10: expected {want2.round(4).tolist()}, got {got.data.round(4).tolist()}"
    try:
        layer_norm(Tensor(np.zeros((2, 3), np.float32)), Tensor(np.ones(4)), Tensor(np.zeros(4)))
    except ValueError as e:
        assert "(2, 3)" in str(e) and "4" in str(e), f"the error should name the input shape (2, 3) and dim 4, got: {e}"
    else:
        raise AssertionError("layer_norm of a (2, 3) input with dim 4 should raise ValueError")
    w = Tensor(np.ones(4, np.float32), requires_grad=True)
    out = layer_norm(x, w, Tensor(np.zeros(4, np.float32)))
    assert out.node is not None and out.node.op == "layer_norm", "layer_norm should record op 'layer_norm' when weight requires grad"
    assert out.node.inputs[0] is x and out.node.inputs[1] is w, "record the inputs as (x, weight, bias)"
    assert out.node.saved["rstd"].shape == (1, 1), f"saved rstd for a (1, 4) input: expected shape (1, 1), got {out.node.saved['rstd'].shape}"
print("Task 13.1 visible tests passed")

# %% [markdown]
# ## 2. The gradient of LayerNorm
#
# LayerNorm is one recorded op, so autograd needs its rule (Module 05's
# seam: `@register_backward("layer_norm")` on `rule(grad, out)` returning one
# array per input). With `g` the gradient of `y`, and the mean taken over the
# last axis (`d` features):
#
# ```
# d weight = sum of g * xhat  over every axis but the last        (dim,)
# d bias   = sum of g         over every axis but the last        (dim,)
# gh       = g * weight                                            the gradient of xhat
# d x      = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))       (..., dim)
# ```
#
# The last line is why LayerNorm is not just "divide by a constant": every
# output of a position depends on every input of that position through the
# mean and the variance, and the two subtracted means are exactly those
# paths. (Sum `d x` over the last axis: it is 0, because adding a constant to
# a position's inputs changes nothing after normalising.)
#
# ### Task 13.2: `layer_norm_backward`
#
# `grad`: an array of `y`'s shape; `out.node.inputs` is `(x, weight, bias)`
# and `out.node.saved` holds `xhat` and `rstd` (Task 13.1). Return
# `(dx, dweight, dbias)`, each an `np.ndarray` in its input's shape and
# dtype; return `None` in place of the gradient of an input that does not
# require grad (`requires_grad` is False). The test builds the recorded op
# itself, so it runs without Task 13.1.

# %% nbgrader={"grade": false, "grade_id": "layer_norm_backward", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("layer_norm")
def layer_norm_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """grad: (..., dim) -> (dx (..., dim), dweight (dim,), dbias (dim,)); None for inputs that need no grad."""
    # Task 13.2: the three formulas above; sum over every axis but the last for weight and bias
    ### BEGIN SOLUTION
    x, weight, bias = out.node.inputs
    xhat, rstd = out.node.saved["xhat"], out.node.saved["rstd"]
    lead = tuple(range(grad.ndim - 1))
    dx = dw = db = None
    if x.requires_grad:
        gh = grad * weight.data
        dx = rstd * (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        dx = dx.astype(x.dtype, copy=False)
    if weight.requires_grad:
        dw = (grad * xhat).sum(axis=lead).astype(weight.dtype, copy=False)
    if bias.requires_grad:
        db = grad.sum(axis=lead).astype(bias.dtype, copy=False)
    return dx, dw, db
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_13_2_layer_norm_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 13.2
from tinytorch_lib.testing import task

with task("13.2"):
    from tinytorch_lib.autograd import check_rule


    def recorded_layer_norm(x, w, b, eps=1e-5):
        """The forward of Task 13.1 written out in float64 numpy, recorded as op 'layer_norm'."""
        mean = x.data.mean(-1, keepdims=True)
        rstd = 1.0 / np.sqrt(((x.data - mean) ** 2).mean(-1, keepdims=True) + eps)
        xhat = (x.data - mean) * rstd
        return record("layer_norm", Tensor(xhat * w.data + b.data), (x, w, b), xhat=xhat, rstd=rstd)


    rng = np.random.default_rng(0)
    xs, ws, bs = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    # check_rule (Module 05): calls your rule on the recorded op and compares with float64 finite differences
    check_rule(layer_norm_backward, recorded_layer_norm, [xs, ws, bs])
    out = recorded_layer_norm(Tensor(xs, requires_grad=True), Tensor(ws), Tensor(bs))
    dx, dw, db = layer_norm_backward(np.ones((3, 5)), out)
    assert dw is None and db is None, f"weight and bias do not require grad here: expected None for both, got {type(dw).__name__}, {type(db).__name__}"
    assert np.allclose(dx.sum(-1), 0, atol=1e-10), f"each row of dx should sum to 0 (a constant shift changes nothing), got {fmt(dx.sum(-1))}"
print("Task 13.2 visible tests passed")

# %% [markdown]
# With the rule registered, `loss.backward()` runs through LayerNorm like
# through any other op. The course's `gradcheck` compares the whole thing,
# forward and backward, with finite differences in float64:

# %%
from tinytorch_lib.autograd import gradcheck

rng = np.random.default_rng(1)
report = gradcheck(lambda x, w, b: layer_norm(x, w, b),
                   [rng.standard_normal((2, 3, 8)) * 3, rng.standard_normal(8), rng.standard_normal(8)])
print(f"LayerNorm gradcheck (float64, (2, 3, 8)): max abs error {report['max_abs']:.1e}")

# %% [markdown]
# ## 3. The transformer block
#
# A block has two sublayers, each wrapped the same way: normalise, transform,
# **add back** what came in (the residual connection):
#
# ```
# h   = x + attn(ln1(x), cache=cache, layer_idx=layer_idx)   mixes positions (causal attention, Module 12)
# out = h + mlp(ln2(h))                                      each position alone: Linear(d, 4d), GELU, Linear(4d, d)
# ```
#
# This is the **pre-LN** arrangement (GPT-2 and later): the norm sits inside
# the branch, so the residual path `x -> h -> out` is a plain sum from the
# embedding to the last block. The gradient of the loss reaches the first
# block through that sum undiminished, which is why deep pre-LN stacks train
# without the learning-rate warm-up tricks the original post-LN transformer
# needed. Shapes never change: `(batch, seq, d_model)` in and out, so blocks
# stack.
#
# The `cache` and `layer_idx` arguments are Module 12's seam: the block only
# passes them to its attention. Module 18 gives each block's attention its
# own slot in one cache by its `layer_idx`.

# %% tags=["export"]
class MLP(Module):
    """x: (..., d_model) -> (..., d_model): Linear(d, 4d), GELU, Linear(4d, d); each position alone."""

    def __init__(self, d_model: int, rng=None):
        super().__init__()
        rng = resolve_rng(rng)
        self.fc = Linear(d_model, 4 * d_model, rng=rng)
        self.act = GELU()
        self.proj = Linear(4 * d_model, d_model, rng=rng)

    def forward(self, x) -> Tensor:
        return self.proj(self.act(self.fc(x)))


# %% [markdown]
# ### Task 13.3: `TransformerBlock.forward`
#
# Write the two lines above with the block's children `ln1`, `attn`, `ln2`,
# `mlp` (the constructor is given). Pass `cache` and `layer_idx` on to
# `self.attn` as keywords. Use Tensor operators (`+`) so the residual sums are
# recorded. The test swaps the children for small stand-ins, so it checks
# your wiring alone.

# %% nbgrader={"grade": false, "grade_id": "transformer_block", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class TransformerBlock(Module):
    """Pre-LN block. x: (batch, seq, d_model) -> (batch, seq, d_model)."""

    def __init__(self, d_model: int, n_heads: int, rng=None):
        super().__init__()
        rng = resolve_rng(rng)
        self.ln1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, rng=rng)
        self.ln2 = LayerNorm(d_model)
        self.mlp = MLP(d_model, rng=rng)

    def forward(self, x, cache=None, layer_idx: int = 0) -> Tensor:
        # Task 13.3: x + attn(ln1(x)), then + mlp(ln2(.)); pass cache and layer_idx to attn
        ### BEGIN SOLUTION
        h = x + self.attn(self.ln1(x), cache=cache, layer_idx=layer_idx)
        return h + self.mlp(self.ln2(h))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_13_3_transformer_block", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 13.3
from tinytorch_lib.testing import task

with task("13.3"):
    class Scale(Module):
        """Stand-in sublayer: multiplies by a constant (and remembers the keywords it got)."""

        def __init__(self, c):
            super().__init__()
            self.c, self.kwargs = c, None

        def forward(self, x, **kwargs):
            self.kwargs = kwargs
            return x * self.c


    block = TransformerBlock(4, 2, rng=0)
    for name, c in (("ln1", 2.0), ("attn", 3.0), ("ln2", 5.0), ("mlp", 7.0)):
        block.set_submodule(name, Scale(c))
    x = Tensor(np.arange(8, dtype=np.float32).reshape(1, 2, 4))
    got = block(x, cache="the-cache", layer_idx=3)
    h = x.data + 3 * 2 * x.data  # x + attn(ln1(x)) = 7x
    want = h + 7 * 5 * h         # h + mlp(ln2(h)) = 36 h = 252 x
    assert got.shape == (1, 2, 4), f"a (1, 2, 4) input: expected a (1, 2, 4) output, got {got.shape}"
    assert np.allclose(got.data, want), (f"with ln1 = 2x, attn = 3x, ln2 = 5x, mlp = 7x the block should give "
                                         f"h = x + 3(2x) = 7x, out = h + 7(5h) = 252x; for x = 1 expected 252, got {got.data[0, 0, 1]}")
    assert block.attn.kwargs == {"cache": "the-cache", "layer_idx": 3}, \
        f"attn should get cache=..., layer_idx=... as keywords; it got {block.attn.kwargs}"
print("Task 13.3 visible tests passed")

# %% [markdown]
# ## 4. The GPT
#
# The whole model, given the constructor:
#
# | child | what | shape |
# |---|---|---|
# | `tok_emb` | `Embedding(vocab_size, d_model)` (Module 11) | ids `(batch, seq)` -> `(batch, seq, d_model)` |
# | `pos` | `SinusoidalPositionalEncoding(max_len, d_model)` (Module 11), no parameters | adds `pe[offset : offset + seq]` |
# | `blocks` | a `Sequential` of `n_layers` `TransformerBlock`s, named `"0"`, `"1"`, ... | `(batch, seq, d_model)` |
# | `ln_f` | the final `LayerNorm(d_model)` | `(batch, seq, d_model)` |
# | `lm_head` | `Linear(d_model, vocab_size)` | `(batch, seq, vocab_size)` |
#
# The logits at position `t` score the token at position `t + 1`, and, by
# the causal mask, depend only on tokens `0 .. t`. So one forward pass over a
# training window of 256 characters gives 256 predictions at once.
#
# Two lengths: `context` is the window the model was trained on (256), and
# `max_len` (1024) is how far the positional table reaches. Sinusoidal
# positions are a formula, not learned rows, so the same weights run at 1024
# tokens (Milestone 06 times the KV cache up to there), though the model has
# only seen relative distances up to 256.
#
# With a cache (Module 18), the first new token sits at position
# `cache.get_seq_length(0)`, the number of positions already cached, not 0.
#
# ### Task 13.4: `GPT.forward`
#
# `ids`: an integer `np.ndarray` (or a `Tensor` of integers) `(batch, seq)`.
# 1. Check it: 2-d with `seq >= 1`, an integer dtype; otherwise a `ValueError`
#    naming the shape (or the dtype), e.g. `GPT: expected ids of shape (batch, seq) with seq >= 1, got (5,)`.
# 2. `offset = cache.get_seq_length(0)` if a cache is given, else 0. If
#    `offset + seq > self.max_len`, a `ValueError` naming both numbers, e.g.
#    `GPT: positions 0..1099 do not fit in max_len 1024`.
# 3. `x = self.pos(self.tok_emb(ids), offset=offset)`; then each block in
#    order, `x = block(x, cache=cache, layer_idx=i)` for block `i`; then
#    `self.ln_f`, then `self.lm_head`. Return the logits.

# %% nbgrader={"grade": false, "grade_id": "gpt", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class GPT(Module):
    """Decoder-only transformer. ids: (batch, seq) int -> logits (batch, seq, vocab_size) float32."""

    def __init__(self, vocab_size: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 2,
                 context: int = 256, max_len: int = 1024, rng=None):
        super().__init__()
        for what, n in (("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads),
                        ("n_layers", n_layers), ("context", context), ("max_len", max_len)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"GPT: {what} must be a positive int, got {n!r}")
        if context > max_len:
            raise ValueError(f"GPT: the training context {context} is longer than max_len {max_len}")
        self.vocab_size, self.d_model, self.n_heads = int(vocab_size), int(d_model), int(n_heads)
        self.n_layers, self.context, self.max_len = int(n_layers), int(context), int(max_len)
        rng = resolve_rng(rng)
        self.tok_emb = Embedding(self.vocab_size, self.d_model, rng=rng)
        self.pos = SinusoidalPositionalEncoding(self.max_len, self.d_model)
        self.blocks = Sequential(*[TransformerBlock(self.d_model, self.n_heads, rng=rng) for _ in range(self.n_layers)])
        self.ln_f = LayerNorm(self.d_model)
        self.lm_head = Linear(self.d_model, self.vocab_size, rng=rng)

    def config(self) -> dict:
        """The constructor's keywords: GPT(**model.config()) builds the same architecture."""
        return {"vocab_size": self.vocab_size, "d_model": self.d_model, "n_heads": self.n_heads,
                "n_layers": self.n_layers, "context": self.context, "max_len": self.max_len}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    def forward(self, ids, cache=None) -> Tensor:
        # Task 13.4: check ids, find the offset, embed + positions, blocks, ln_f, lm_head
        ### BEGIN SOLUTION
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise ValueError(f"GPT: expected ids of shape (batch, seq) with seq >= 1, got {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"GPT: ids must be integers, got dtype {ids.dtype}")
        offset = cache.get_seq_length(0) if cache is not None else 0
        seq = ids.shape[1]
        if offset + seq > self.max_len:
            raise ValueError(f"GPT: positions {offset}..{offset + seq - 1} do not fit in max_len {self.max_len}")
        x = self.pos(self.tok_emb(ids), offset=offset)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache, layer_idx=i)
        return self.lm_head(self.ln_f(x))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_13_4_gpt", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 13.4
from tinytorch_lib.testing import task

with task("13.4", uses={"13.1": "layer_norm", "13.3": "TransformerBlock.forward"}):
    from tinytorch_lib.embeddings import sinusoidal_positions


    class AddBlock(Module):
        """Stand-in block: adds a constant, and remembers the keywords it got."""

        def __init__(self, c):
            super().__init__()
            self.c, self.kwargs = c, None

        def forward(self, x, **kwargs):
            self.kwargs = kwargs
            return x + self.c


    class Doubler(Module):
        def forward(self, x):
            return x * 2.0


    class FakeCache:
        def __init__(self, n):
            self.n = n

        def get_seq_length(self, layer_idx=0):
            return self.n


    gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=3, context=16, max_len=32, rng=0)
    gpt.set_submodule("ln_f", Doubler())
    for i in range(3):
        gpt.set_submodule(f"blocks.{i}", AddBlock(10.0 ** i))
    ids = np.array([[1, 4, 2], [0, 10, 3]])


    def expected(ids, offset):
        x = gpt.tok_emb.weight.data[ids] + sinusoidal_positions(32, 8)[offset:offset + ids.shape[1]]
        return (2 * (x + 111)) @ gpt.lm_head.weight.data.T + gpt.lm_head.bias.data


    got = gpt(ids)
    assert got.shape == (2, 3, 11), f"ids (2, 3), vocab 11: expected logits (2, 3, 11), got {got.shape}"
    assert np.allclose(got.data, expected(ids, 0), atol=1e-4), \
        "logits differ from lm_head(ln_f(blocks(tok_emb(ids) + pe[0:3]))) (blocks stand-ins add 1, 10, 100; ln_f doubles)"
    assert [gpt.blocks[i].kwargs["layer_idx"] for i in range(3)] == [0, 1, 2], \
        f"block i should get layer_idx=i, got {[gpt.blocks[i].kwargs.get('layer_idx') for i in range(3)]}"
    got = gpt(ids[:, :1], cache=FakeCache(5))
    assert np.allclose(got.data, expected(ids[:, :1], 5), atol=1e-4), "with a cache holding 5 positions, the new token's position is 5 (pe[5])"
    assert gpt.blocks[0].kwargs["cache"] is not None, "the cache should be passed to every block"
    for bad in (np.array([1, 2, 3]), np.zeros((1, 0), dtype=np.int64)):
        try:
            gpt(bad)
        except ValueError as e:
            assert str(bad.shape) in str(e), f"the error should name the shape {bad.shape}, got: {e}"
        else:
            raise AssertionError(f"GPT on ids of shape {bad.shape} should raise ValueError")
    try:
        gpt(np.zeros((1, 4), dtype=np.int64), cache=FakeCache(30))
    except ValueError as e:
        assert "32" in str(e) and "33" in str(e), f"4 tokens after 30 cached positions (positions 30..33), max_len 32: the error should name 33 and 32, got: {e}"
    else:
        raise AssertionError("4 tokens after 30 cached positions with max_len 32 (positions 30..33) should raise ValueError")
    try:
        gpt(np.zeros((1, 4), dtype=np.float32))
    except ValueError as e:
        assert "float32" in str(e), f"float32 ids: the error should name the dtype float32, got: {e}"
    else:
        raise AssertionError("GPT on float32 ids should raise ValueError (ids must be integers)")
    assert np.allclose(gpt(Tensor(ids)).data, expected(ids, 0), atol=1e-4), "ids given as a Tensor should work like an array"
    try:
        got = gpt(np.zeros((1, 32), dtype=np.int64))
    except ValueError as e:
        raise AssertionError(f"32 tokens, exactly max_len 32, fit; got ValueError: {e}") from None
    assert got.shape == (1, 32, 11), f"32 tokens fit in max_len 32: expected logits (1, 32, 11), got {got.shape}"
print("Task 13.4 visible tests passed")

# %% [markdown]
# ### Is it causal?
#
# The property everything rests on: the logits at positions `<= t` must not
# change when a token after `t` changes. Otherwise training would let the
# model read the answer, and generation (which never has the future) would
# see different inputs from training. A real model, with your blocks:

# %%
rng = np.random.default_rng(2)
probe = GPT(vocab_size=20, d_model=16, n_heads=2, n_layers=2, context=12, max_len=12, rng=0)
a = rng.integers(0, 20, (1, 12))
b = a.copy()
b[0, 7] = (b[0, 7] + 1) % 20  # change token 7 only
with no_grad():
    diff = np.abs(probe(a).data - probe(b).data).max(axis=-1)[0]
print("max |logit change| per position:", np.array2string(diff, precision=2, suppress_small=True))
print("positions 0..6 unchanged:", bool(np.all(diff[:7] == 0)), "| positions 7..11 changed:", bool(np.all(diff[7:] > 0)))

# %% [markdown]
# ## 5. Generating text
#
# The model gives scores for the next token; **decoding** turns them into a
# choice, appends it, and repeats:
#
# ```
# ids = prompt
# repeat max_new_tokens times:
#     logits = model(ids[-max_len:] as (1, n))[0, -1]     only the last position's scores (vocab,)
#     ids.append(next_token(logits, temperature, top_k, rng))
# ```
#
# - **Greedy** (`temperature == 0`): the `argmax` (the first one on a tie).
#   Deterministic, and prone to loops ("and the and the ...").
# - **Sampling** (`temperature > 0`): draw from `softmax(logits / temperature)`.
#   Temperature below 1 sharpens the distribution, above 1 flattens it.
# - **Top-k**: before sampling, keep only the `k` largest logits (set the rest
#   to `-inf`, so their probability is 0): the model's long tail of unlikely
#   characters never gets picked. `top_k=1` is greedy. With ties at the
#   `k`-th value, keep every logit `>=` it.
# - A **seed** makes sampling reproducible: `rng = np.random.default_rng(seed)`,
#   created once per `generate` call.
#
# Without a cache each step runs the model on the **whole** sequence so far
# and uses one row of the result: the work per token grows with the length.
# Module 18 keeps each layer's keys and values instead and feeds one token per
# step; for that to give the same tokens, both must pick with the same
# `next_token`.
#
# ### Task 13.5: `next_token` and `generate`
#
# `next_token(logits, temperature, top_k, rng)`: `logits` a float `np.ndarray`
# `(vocab,)`; return a Python `int`. Greedy when `temperature == 0` (ignore
# `top_k` and `rng`); otherwise apply top-k (if `top_k` is not None), then
# sample with `rng.choice(vocab, p=probs)` from the softmax of
# `logits / temperature` computed in float64.
#
# `generate(model, prompt_ids, max_new_tokens, temperature=0.0, top_k=None, seed=None)`:
# `prompt_ids` a 1-d sequence of ints `(n,)` (list, array or Tensor). Return an
# `np.ndarray` of int64, the prompt followed by the `max_new_tokens` new ids.
# Call `model(ids)` with `ids` an int64 array `(1, n)` holding the sequence so
# far, cropped to its last `model.max_len` tokens, in eval mode under
# `no_grad()` (put the model's mode back afterwards). Check the input first,
# each a `ValueError` that names the value:
#
# | bad input | example message |
# |---|---|
# | an empty prompt, or not 1-d | `generate: the prompt is empty; give at least one token id` |
# | a prompt longer than `model.max_len` | `generate: the prompt has 1100 tokens, more than max_len 1024` |
# | an id outside `[0, model.vocab_size)` | `generate: prompt id 70 at position 3 is outside [0, 65)` |
# | `max_new_tokens` not an int `>= 1` | `generate: max_new_tokens must be an int >= 1, got 0` |
# | `temperature` negative or not finite | `generate: temperature must be >= 0, got -1.0` |
# | `top_k` not None and not an int in `[1, model.vocab_size]` | `generate: top_k must be in [1, 65], got 0` |
#
# The test uses a stand-in model whose next-token scores depend only on the
# last token (a bigram table), so it runs without Task 13.4.

# %% nbgrader={"grade": false, "grade_id": "generate", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def next_token(logits: np.ndarray, temperature: float = 0.0, top_k: int | None = None, rng=None) -> int:
    """logits: (vocab,) float -> the chosen id: argmax at temperature 0, else a draw from rng."""
    # Task 13.5: argmax; or top-k mask, softmax(logits / temperature) in float64, rng.choice
    ### BEGIN SOLUTION
    logits = np.asarray(logits)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k is not None:
        kth = np.sort(z)[-top_k]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(len(p), p=p))
    ### END SOLUTION


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
             seed: int | None = None) -> np.ndarray:
    """prompt_ids: (n,) ints -> (n + max_new_tokens,) int64; each step reruns model on the whole sequence."""
    # Task 13.5: check the inputs, then the loop above in eval mode under no_grad
    ### BEGIN SOLUTION
    prompt = np.asarray(prompt_ids.data if isinstance(prompt_ids, Tensor) else prompt_ids)
    if prompt.ndim != 1 or prompt.size == 0:
        raise ValueError(f"generate: the prompt is empty; give at least one token id (a 1-d sequence), "
                         f"got shape {prompt.shape}")
    if prompt.dtype.kind not in "iu":
        raise ValueError(f"generate: prompt ids must be integers, got dtype {prompt.dtype}")
    vocab, max_len = model.vocab_size, model.max_len
    if prompt.size > max_len:
        raise ValueError(f"generate: the prompt has {prompt.size} tokens, more than max_len {max_len}")
    bad = np.flatnonzero((prompt < 0) | (prompt >= vocab))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"generate: prompt id {prompt[i]} at position {i} is outside [0, {vocab})")
    if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"generate: temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool)
                              or not 1 <= top_k <= vocab):
        raise ValueError(f"generate: top_k must be in [1, {vocab}], got {top_k!r}")
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in prompt]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                window = np.array(ids[-max_len:], dtype=np.int64)[None, :]
                logits = model(window).data[0, -1]
                ids.append(next_token(logits, temperature, top_k, rng))
    finally:
        model.train(was_training)
    return np.array(ids, dtype=np.int64)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_13_5_generate", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 13.5
from tinytorch_lib.testing import task

with task("13.5"):
    class Bigram(Module):
        """Stand-in model: the scores at each position depend only on the token there (a (vocab, vocab) table)."""

        def __init__(self, table, max_len=8):
            super().__init__()
            self.table, self.vocab_size, self.max_len = table, table.shape[0], max_len
            self.shapes, self.modes = [], []

        def forward(self, ids, cache=None):
            ids = np.asarray(ids)
            self.shapes.append(ids.shape)
            self.modes.append(self.training)
            return Tensor(self.table[ids])


    chain = np.full((5, 5), -1.0, dtype=np.float32)
    for t, nxt in enumerate([2, 3, 4, 1, 0]):  # 0 -> 2 -> 4 -> 0 ..., 1 -> 3 -> 1 ...
        chain[t, nxt] = 1.0
    model = Bigram(chain)
    got = generate(model, [0], 5)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64, f"generate should return an int64 np.ndarray, got {type(got).__name__} {getattr(got, 'dtype', '')}"
    assert got.tolist() == [0, 2, 4, 0, 2, 4], f"greedy from [0] with the chain 0->2->4->0: expected [0, 2, 4, 0, 2, 4], got {got.tolist()}"
    assert model.shapes == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5)], f"each step runs the whole sequence so far as (1, n): got shapes {model.shapes}"
    assert model.training and model.modes == [False] * 5, "generate should run the model in eval mode and put training mode back"
    model.shapes = []
    generate(model, [1, 3, 1, 3, 1, 3, 1], 3)
    assert model.shapes == [(1, 7), (1, 8), (1, 8)], f"max_len 8: the window is cropped to the last 8 tokens; got shapes {model.shapes}"

    logits = np.array([0.0, 1.0, 3.0, 2.0])
    assert next_token(logits, 0.0) == 2, "next_token greedy on [0, 1, 3, 2]: expected 2"
    draws = [next_token(logits, 1.0, 2, np.random.default_rng(s)) for s in range(200)]
    assert set(draws) == {2, 3}, f"top_k=2 on [0, 1, 3, 2]: only ids 2 and 3 may be drawn, got {sorted(set(draws))}"
    flat = Bigram(np.zeros((5, 5), dtype=np.float32))
    a, b = generate(flat, [0], 20, temperature=1.0, seed=7), generate(flat, [0], 20, temperature=1.0, seed=7)
    assert a.tolist() == b.tolist(), f"sampling with seed 7 twice should give the same ids: {a.tolist()} vs {b.tolist()}"
    assert len(set(a[1:].tolist())) > 1, f"sampling from uniform scores should not repeat one id 20 times: {a.tolist()}"
    for kwargs, word in (({"prompt_ids": []}, "empty"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_k": 6}, "top_k")):
        args = {"prompt_ids": [0], "max_new_tokens": 3, **kwargs}
        try:
            generate(model, **args)
        except ValueError as e:
            assert word in str(e), f"generate({args}): the error should mention {word!r}, got: {e}"
        else:
            raise AssertionError(f"generate({args}) should raise ValueError")
print("Task 13.5 visible tests passed")

# %% [markdown]
# ## 6. Saving and loading the course GPT
#
# The trained GPT is stored in Module 08's format: `save_model` writes the
# architecture as `[["transformer.GPT", {vocab_size: ..., d_model: ...}]]`
# and the `state_dict`; the tokenizer's `to_dict()` goes into `meta`, so a
# file alone can turn text into ids and back. `load_gpt` reads that file
# back into this module's own `GPT` class (given): in this notebook, yours.

# %% tags=["export"]
GPT_FILE = "gpt_corpus.npz"


def save_gpt(path, model: GPT, tokenizer, meta: dict | None = None) -> int:
    """Module 08's save_model with arch [["transformer.GPT", model.config()]]; returns the file size in bytes."""
    from tinytorch_lib.training import save_model

    meta = dict(meta or {}, tokenizer=tokenizer.to_dict())
    return save_model(path, Sequential(model), {"layers": [["transformer.GPT", model.config()]]}, meta=meta)


def load_gpt(path=None) -> tuple:
    """A file written by save_gpt (default: the course's data/gpt_corpus.npz) -> (model, tokenizer, meta).

    Builds the `GPT` defined beside this function (not Module 08's `load_model`, which would import
    `tinytorch_lib.transformer`): the notebook's own class in the notebook, the library's once exported.
    """
    import json
    import os

    from tinytorch_lib import data_dir
    from tinytorch_lib.tokenization import CharTokenizer

    if path is None:
        try:
            path = data_dir(GPT_FILE) / GPT_FILE
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; or make it again with `make gpt` (about 25 minutes)") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_gpt: {path} does not exist")
    not_gpt = f"load_gpt: {path} is not a GPT file written by save_gpt"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        arch = json.loads(str(arrays.pop("__arch__")))
        [[name, config]] = arch["layers"]
        meta = arch.get("meta", {})
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:  # not an .npz, no or odd __arch__
        raise ValueError(f"{not_gpt} ({type(e).__name__}: {e})") from None
    if name != "transformer.GPT" or "tokenizer" not in meta:
        raise ValueError(f"{not_gpt} (no GPT layer or no tokenizer in meta)")
    model = GPT(**config)
    model.load_state_dict({key.removeprefix("0."): value for key, value in arrays.items()})  # saved as Sequential(gpt)
    model.eval()
    return model, CharTokenizer.from_dict(meta["tokenizer"]), meta


# %% [markdown]
# ## 7. A few training steps
#
# Training is next-token prediction: a window of `context + 1` characters
# gives inputs `ids[:-1]` and targets `ids[1:]`, and the loss is the mean
# cross-entropy (Module 04) over every position of every window, in **nats
# per character**. A model that knows nothing predicts each of the `vocab`
# characters with probability `1 / vocab`: a loss of `ln(vocab)`. A model that
# knows only how often each character occurs (the **unigram** model) does
# better; a model that uses the context does better still.
#
# The course GPT was trained by `make gpt` (`benchmarks/train_gpt.py`) for
# about 25 minutes; here a small GPT takes a few steps of the same loop, to
# show it runs and the loss falls.

# %%
import time

from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.tokenization import CharTokenizer, load_corpus

train_text, val_text = load_corpus("train"), load_corpus("val")
tok = CharTokenizer(train_text)
train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
print(f"corpus: {len(train_ids):,} training and {len(val_ids):,} validation characters, vocabulary {tok.vocab_size}")


def batch(ids, size, length, rng):
    """`size` random windows of length + 1 -> inputs (size, length), targets (size, length)."""
    starts = rng.integers(0, len(ids) - length - 1, size)
    windows = np.stack([ids[s:s + length + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


rng = np.random.default_rng(0)
small = GPT(tok.vocab_size, d_model=32, n_heads=2, n_layers=1, context=32, max_len=64, rng=0)
opt = Adam(small.parameters(), lr=1e-2)
loss_fn = CrossEntropyLoss()
losses = []
start = time.perf_counter()
for step in range(25):
    x, y = batch(train_ids, 16, 32, rng)
    opt.zero_grad()
    loss = loss_fn(small(x).reshape(-1, tok.vocab_size), y.reshape(-1))
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(f"25 steps of 16 x 32 characters in {time.perf_counter() - start:.1f} s; "
      f"loss {losses[0]:.2f} -> {losses[-1]:.2f} nats/char (uniform guess: ln({tok.vocab_size}) = {math.log(tok.vocab_size):.2f})")

# %% [markdown]
# ## 8. Systems analysis
#
# ### The course GPT: what it knows, what it weighs
#
# The shipped model, loaded from `data/gpt_corpus.npz`. Its validation loss
# is measured here on held-out text it never trained on, against the unigram
# baseline of the same split: the cross-entropy of the training split's
# character frequencies on the same validation characters.

# %%
try:
    gpt, tok, meta = load_gpt()
except FileNotFoundError as e:
    raise FileNotFoundError(f"the trained GPT is missing: {e}. Run `make gpt` at the repository root, "
                            f"then run this notebook again.") from None
print(gpt)
print("training (from the file's meta):", {k: meta[k] for k in ("steps", "batch_size", "context", "lr", "train_seconds",
                                                                "blas_threads", "val_loss", "unigram_val_loss")})

n_eval, length = 4, 256  # 4 windows of 256 characters at the start of the validation split
windows = np.stack([val_ids[i * length:(i + 1) * length + 1] for i in range(n_eval)])
with no_grad():
    val_loss = loss_fn(gpt(windows[:, :-1]).reshape(-1, tok.vocab_size), windows[:, 1:].reshape(-1)).item()
freq = np.bincount(train_ids, minlength=tok.vocab_size) / len(train_ids)
unigram = float(-np.log(freq[windows[:, 1:]]).mean())
print(f"validation loss on {windows[:, 1:].size:,} characters: {val_loss:.3f} nats/char; "
      f"unigram baseline {unigram:.3f}; uniform {math.log(tok.vocab_size):.3f}")

# %% [markdown]
# Where the parameters and the bytes are, from the model's own arrays
# (`nbytes` of what is stored: float32 parameters, plus the positional table,
# a buffer of `max_len x d_model` floats that is not trained but is stored):

# %%
groups = {"token embedding": [], "positions (buffer)": [], "attention": [], "MLP": [], "layer norms": [], "lm_head": []}
for name, t in gpt.named_parameters() + gpt.named_buffers():
    key = ("token embedding" if name.startswith("tok_emb") else "positions (buffer)" if name.startswith("pos")
           else "attention" if ".attn." in name else "MLP" if ".mlp." in name
           else "lm_head" if name.startswith("lm_head") else "layer norms")
    groups[key].append(t)
is_param = {id(p) for p in gpt.parameters()}
total_params = sum(p.size for p in gpt.parameters())
total_bytes = sum(t.nbytes for ts in groups.values() for t in ts)
print(f"{'component':<20} {'parameters':>11} {'bytes':>11} {'share of bytes':>15}")
for key, ts in groups.items():
    params = sum(t.size for t in ts if id(t) in is_param)
    nbytes = sum(t.nbytes for t in ts)
    print(f"{key:<20} {params:>11,} {nbytes:>11,} {nbytes / total_bytes:>14.1%}")
print(f"{'total':<20} {total_params:>11,} {total_bytes:>11,}")
print(f"file data/gpt_corpus.npz: {(tinytorch_lib.data_dir() / GPT_FILE).stat().st_size:,} bytes")

# %% [markdown]
# With `d_model = d`, each block holds `4 d^2` attention weights (q, k, v,
# out) and `8 d^2` MLP weights (d -> 4d -> d): two thirds of a block is its
# MLP. With 72 characters the embedding and the head are small; with a
# 50,000-token BPE vocabulary (GPT-2) they would dominate a model this narrow.
# The sinusoidal table is not a parameter, yet at `max_len = 1024` it weighs
# as much as all the attention weights together (compare the two rows): real
# bytes count what is stored, and a table that is a formula could be
# computed on the fly instead.
#
# ### Generation without a cache: time per token vs length
#
# Each new token costs one forward pass over the whole sequence so far. At
# length `n` that pass does `O(n d^2)` work in the linear layers (every
# position through q/k/v/out and the MLP) and `O(n^2 d)` in attention (every
# position against every earlier one), and it uses only the last row of the
# output. So the time per token grows at least linearly with `n`, and
# generating `N` tokens costs about the sum over `n`, growing like `N^2`.
# Timed here: one generation step (`model(ids)` for ids `(1, n)`, the pass
# `generate` makes) at several lengths, all lengths in turns (`compare`: CPU
# time, one BLAS thread, ratios from neighbouring repeats).

# %%
from tinytorch_lib.timing import compare

lengths = [16, 64, 128, 256, 512]
ids_long = val_ids[:max(lengths)][None, :]

def one_pass(n):
    def run():
        with no_grad():
            gpt(ids_long[:, :n])
    return run


passes = compare({n: one_pass(n) for n in lengths}, repeats=5, number=1)
step_times = [passes[n] for n in lengths]
for n, t in zip(lengths, step_times):
    print(f"length {n:4d}: {t}  ({t.median / n * 1e6:6.1f} us per position computed)")
print(f"in this run, length {lengths[-1]} / length {lengths[0]}: {passes.ratio(lengths[-1], lengths[0]):.3g} the time "
      f"for {lengths[-1] // lengths[0]}x the positions")
if passes.noisy:
    print(f"length {passes.noisy}")

# %% [markdown]
# One real `generate` call, to compare a step of `generate` with the
# table: 16 new tokens after a 240-character prompt, so the steps run at
# lengths 240 to 255, timed in turns with a single pass at length 256. A
# step of `generate` also picks the next token and appends it, and runs at
# a slightly shorter length, so expect the same order of magnitude, not the
# same figure: the ratio printed says how close they came in this run.

# %%
prompt_ids = val_ids[:240]
gen_vs_pass = compare({"generate": lambda: generate(gpt, prompt_ids, 16), "pass": one_pass(256)},
                      repeats=3, warmup=0, number=1)
t_gen = gen_vs_pass["generate"]
per_token = gen_vs_pass.ratio("generate", "pass")
print(f"generate 16 tokens after 240: {t_gen} per call, {t_gen.median / 16 * 1e3:.1f} ms per token; "
      f"a single pass at length 256: {gen_vs_pass['pass'].median * 1e3:.1f} ms")
print(f"in this run, a step of generate / a pass at 256: {per_token.median / 16:.2f}x "
      f"({per_token.lo / 16:.2f}-{per_token.hi / 16:.2f})")
if gen_vs_pass.noisy:
    print(gen_vs_pass.noisy)

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import place_legend

med = np.array([t.median for t in step_times]) * 1e3
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(lengths, med, marker="o", label="measured")
ax1.plot(lengths, med[0] * np.array(lengths) / lengths[0], "--", color="gray", label="linear from the first point")
ax1.set_xlabel("sequence length n (tokens)")
ax1.set_ylabel("time per generated token (ms)")
ax1.set_title("No cache: every step reruns all n positions")
cumulative = np.cumsum(np.interp(np.arange(1, max(lengths) + 1), lengths, med)) / 1e3
ax2.plot(np.arange(1, max(lengths) + 1), cumulative)
ax2.set_xlabel("tokens generated from a 1-token prompt")
ax2.set_ylabel("total time (s, interpolated)")
ax2.set_title("Total generation time grows ~quadratically")
plt.tight_layout()
place_legend(ax1)
plt.show()

# %% [markdown]
# Takeaway: the time per token rises with the length; at short lengths the
# fixed cost of a pass (dozens of numpy calls, each with Python overhead)
# hides the growth, and from a hundred or so tokens on the `n d^2` matmuls
# and the `n^2` attention scores take over. Almost all of that work
# recomputes keys and values that the previous step already computed: a KV
# cache (Module 18) computes one new position per step instead.
#
# ### A sample from the trained model
#
# Seeded sampling at temperature 0.8 with top-k 10, from a prompt in the
# style of the corpus:

# %%
prompt = "And the LORD said unto Moses, "
out = generate(gpt, tok.encode(prompt), 300, temperature=0.8, top_k=10, seed=0)
print(tok.decode(out))
print("\ngreedy:")
print(tok.decode(generate(gpt, tok.encode(prompt), 120)))

# %% [markdown]
# ## Summary
#
# - LayerNorm normalises each position's vector on its own; its backward
#   rule subtracts the two mean paths, and gradcheck confirms it in float64.
# - A pre-LN block is `x + attn(ln1(x))`, then `+ mlp(ln2(.))`; a GPT is
#   embeddings + positions, a stack of blocks, a final norm and a head, and
#   it is causal: no position sees a later token.
# - Generation picks one token at a time (greedy, temperature, top-k, seeded)
#   and, without a cache, reruns the whole sequence each step: the measured
#   time per token grows with the length.
#
# Next: `tito module export 13`. Module 14 profiles this model layer by
# layer; Module 18 adds the KV cache through the `cache` argument that runs
# from `GPT.forward` through every block into attention.
