# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 18: The KV cache
#
# Module 13 measured it: without a cache, generating token `n + 1` reruns the
# whole model on all `n` tokens so far and keeps only the last row of the
# output. The keys and values of positions `0 .. n-1` were already computed
# at the step before, and at the step before that. A **KV cache** stores them
# once: each step then runs the model on the one new token, appends its key
# and value to the cache, and attends over everything stored. Same
# arithmetic for the new position, so the same logits and the same tokens;
# far less work, and the saving grows with the length.
#
# This module writes that cache for your GPT. Module 12 designed the seam it
# plugs into (Hugging Face's `past_key_values` protocol): attention calls
# `k_all, v_all = cache.update(k, v, layer_idx)` and
# `GPT.forward(ids, cache=cache)` starts the positions at
# `cache.get_seq_length(0)`. Nothing in Modules 12-13 changes.
#
# | task | what you build | points |
# |---|---|---|
# | 18.1 | `KVCache`: preallocated key and value arrays, `nbytes`, `get_seq_length`, `reset` | 4 |
# | 18.2 | `KVCache.update(k, v, layer_idx)`: checks, append, return everything so far | 4 |
# | 18.3 | `generate(..., use_cache=True)`: prefill once, then one token per step | 5 |
# | 18.4 | `generate_batch`: B prompts of one length, one model call per step for all rows | 4 |
# | 18.5 | `Int8KVCache`: int8 codes and float16 scales, dequantized on read | 4 |
#
# The systems analysis times generation with and without your cache in the
# same run, checks the tokens are identical, and measures the cache's memory.
# Part B (18.4-18.5) generates for many prompts at once and stores the cache
# as int8.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.tensor import Tensor, no_grad
from tinytorch_lib.timing import measure
from tinytorch_lib.transformer import generate as generate_without_cache
from tinytorch_lib.transformer import next_token

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

for name in ("tensor", "layers", "attention", "transformer", "acceleration"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. What the cache holds
#
# Every attention layer of the GPT turns each position into a key and a value
# per head, `(batch, heads, seq, head_dim)`. A cache for `n_layers` layers,
# up to `max_len` positions, is two arrays
#
# ```
# keys, values: (n_layers, batch, n_heads, max_len, head_dim)     allocated once
# lengths:      one int per layer: how many positions are filled
# ```
#
# **Preallocated**, not grown: appending to a Python list and calling
# `np.concatenate` at every step would copy all `n` cached positions per step,
# `O(n^2)` copying per sequence, which is the cost the cache is meant to
# remove. Writing one position into a preallocated array copies only that
# position, and reading "everything so far" is a slice, `keys[layer, :, :, :n]`,
# a view without a copy.
#
# Its size is fixed by the shapes: `2 x n_layers x batch x n_heads x max_len x head_dim x itemsize`
# bytes. For the course GPT (2 layers, 4 heads of 32, `max_len` 1024, float32,
# batch 1): `2 * 2 * 1 * 4 * 1024 * 32 * 4` = 2,097,152 bytes (2.1 MB), about
# the size of the model itself: the plot in section 4 draws the model's stored
# arrays beside it, measured (its trained weights plus the buffer holding its
# position table), and prints both. At 7B-parameter scale the cache of
# a long context outgrows the weights; that is why serving systems page it
# (vLLM) or quantize it.
#
# ### Task 18.1: `KVCache`
#
# `KVCache(n_layers, batch, n_heads, max_len, head_dim, dtype=np.float32)`:
#
# - each of the five sizes must be an `int >= 1`; otherwise `ValueError`
#   naming it, e.g. `KVCache: max_len must be an int >= 1, got 0`;
# - `self.keys` and `self.values`: zero arrays of shape
#   `(n_layers, batch, n_heads, max_len, head_dim)` and that dtype;
#   `self.lengths`: a list of `n_layers` zeros;
# - `get_seq_length(layer_idx=0)`: how many positions layer `layer_idx` holds;
# - `reset()`: every length back to 0 (no new allocation: the arrays are reused);
# - `nbytes` (a property): the bytes of the two arrays, from the arrays
#   themselves (`.nbytes`), not from a formula.

# %% nbgrader={"grade": false, "grade_id": "kvcache", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class KVCache:
    """Preallocated keys and values for every attention layer: Module 12's cache protocol."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int, dtype=np.float32):
        # Task 18.1: check the five sizes, allocate keys and values, set every length to 0
        ### BEGIN SOLUTION
        sizes = {"n_layers": n_layers, "batch": batch, "n_heads": n_heads, "max_len": max_len, "head_dim": head_dim}
        for what, n in sizes.items():
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"KVCache: {what} must be an int >= 1, got {n!r}")
        self.n_layers, self.batch, self.n_heads = int(n_layers), int(batch), int(n_heads)
        self.max_len, self.head_dim = int(max_len), int(head_dim)
        shape = (self.n_layers, self.batch, self.n_heads, self.max_len, self.head_dim)
        self.keys = np.zeros(shape, dtype=dtype)
        self.values = np.zeros(shape, dtype=dtype)
        self.lengths = [0] * self.n_layers
        ### END SOLUTION

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many positions layer `layer_idx` holds."""
        # Task 18.1
        ### BEGIN SOLUTION
        return self.lengths[layer_idx]
        ### END SOLUTION

    def reset(self) -> None:
        """Empty every layer; the arrays are kept for the next sequence."""
        # Task 18.1
        ### BEGIN SOLUTION
        self.lengths = [0] * self.n_layers
        ### END SOLUTION

    @property
    def nbytes(self) -> int:
        """Bytes of the stored key and value arrays."""
        # Task 18.1
        ### BEGIN SOLUTION
        return int(self.keys.nbytes + self.values.nbytes)
        ### END SOLUTION

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_layers={self.n_layers}, batch={self.batch}, n_heads={self.n_heads}, "
                f"max_len={self.max_len}, head_dim={self.head_dim}, lengths={self.lengths})")


# %% nbgrader={"grade": true, "grade_id": "test_18_1_kvcache", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 18.1
from tinytorch_lib.testing import task

with task("18.1"):
    c = KVCache(2, 1, 4, 16, 8)
    assert c.keys.shape == c.values.shape == (2, 1, 4, 16, 8), \
        f"KVCache(2, 1, 4, 16, 8): expected keys and values of shape (2, 1, 4, 16, 8), got {c.keys.shape}, {c.values.shape}"
    assert c.keys.dtype == np.float32 and c.keys is not c.values, "keys and values: two separate float32 arrays"
    assert c.lengths == [0, 0] and c.get_seq_length() == 0 and c.get_seq_length(1) == 0, \
        f"a new cache holds 0 positions in every layer, got lengths {c.lengths}"
    assert c.nbytes == 2 * 2 * 1 * 4 * 16 * 8 * 4, f"KVCache(2, 1, 4, 16, 8) float32: expected nbytes 8192, got {c.nbytes}"
    c.lengths = [5, 3]
    assert c.get_seq_length(1) == 3, f"get_seq_length(1) with lengths [5, 3]: expected 3, got {c.get_seq_length(1)}"
    keys = c.keys
    c.reset()
    assert c.lengths == [0, 0] and c.keys is keys, "reset() sets the lengths to 0 and keeps the same arrays"
    try:
        KVCache(2, 1, 4, 0, 8)
    except ValueError as e:
        assert "max_len" in str(e) and "0" in str(e), f"KVCache(2, 1, 4, 0, 8): the error should name max_len and 0, got: {e}"
    else:
        raise AssertionError("KVCache with max_len 0 should raise ValueError")
print("Task 18.1 visible tests passed")

# %% [markdown]
# ## 2. `update`: append, then return everything so far
#
# Attention (Module 12) calls `k_all, v_all = cache.update(k, v, layer_idx)`
# with the **new** positions' keys and values, Tensors of shape
# `(batch, n_heads, s_new, head_dim)`. The cache writes them after the
# `n = get_seq_length(layer_idx)` positions it holds and returns all
# `n + s_new` of them, `(batch, n_heads, n + s_new, head_dim)`, which attention
# then attends over. Module 12's causal mask already places the `s_new`
# queries at positions `n .. n + s_new - 1` (the offset rule `s_k - s_q + i`),
# so a prefill of a whole prompt (`s_new` = prompt length) and a one-token step
# (`s_new = 1`) go through the same code.
#
# ```
# prefill "And" (3 tokens):  update(k (1, 4, 3, 32), ...) -> writes slots 0..2, returns (1, 4, 3, 32)
# step " " (1 token):        update(k (1, 4, 1, 32), ...) -> writes slot 3,     returns (1, 4, 4, 32)
# ```
#
# The returned Tensors are views of the cache arrays (no copy). The cache is
# for inference: it stores arrays, not the graph, so use it under `no_grad()`.
#
# ### Task 18.2: `update`
#
# `update(k, v, layer_idx) -> (k_all, v_all)`; `k`, `v` are Tensors or arrays.
# Raise `ValueError`, and change nothing, when:
#
# - `layer_idx` is not in `[0, n_layers)`: `KVCache.update: layer_idx 2 is out of range for 2 layers`;
# - `k` and `v` differ in shape, or are not `(batch, n_heads, s_new, head_dim)`
#   for this cache with `s_new >= 1`: name the shapes received and expected;
# - the cache would overflow: `KVCache.update: layer 0 holds 15 of 16 positions; cannot add 2`.
#
# Otherwise write them into `keys[layer_idx, :, :, n:n + s_new]` (and values),
# advance that layer's length, and return Tensors of the first `n + s_new`
# positions of that layer.

# %% nbgrader={"grade": false, "grade_id": "update", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def kvcache_update(cache: KVCache, k, v, layer_idx: int) -> tuple:
    """Append k, v (batch, n_heads, s_new, head_dim) to layer `layer_idx`; return all keys and values so far."""
    k = k.data if isinstance(k, Tensor) else np.asarray(k)
    v = v.data if isinstance(v, Tensor) else np.asarray(v)
    # Task 18.2: check layer_idx, the shapes and the room left; write; advance; return views as Tensors
    ### BEGIN SOLUTION
    if not isinstance(layer_idx, (int, np.integer)) or not 0 <= layer_idx < cache.n_layers:
        raise ValueError(f"KVCache.update: layer_idx {layer_idx!r} is out of range for {cache.n_layers} layers")
    expected = f"(batch {cache.batch}, n_heads {cache.n_heads}, s_new >= 1, head_dim {cache.head_dim})"
    if (k.shape != v.shape or k.ndim != 4 or k.shape[0] != cache.batch or k.shape[1] != cache.n_heads
            or k.shape[3] != cache.head_dim or k.shape[2] < 1):
        raise ValueError(f"KVCache.update: got k {k.shape} and v {v.shape}; expected both of shape {expected}")
    n, s_new = cache.lengths[layer_idx], k.shape[2]
    if n + s_new > cache.max_len:
        raise ValueError(f"KVCache.update: layer {layer_idx} holds {n} of {cache.max_len} positions; "
                         f"cannot add {s_new}")
    cache.keys[layer_idx, :, :, n:n + s_new] = k
    cache.values[layer_idx, :, :, n:n + s_new] = v
    cache.lengths[layer_idx] = n + s_new
    return Tensor(cache.keys[layer_idx, :, :, :n + s_new]), Tensor(cache.values[layer_idx, :, :, :n + s_new])
    ### END SOLUTION


KVCache.update = kvcache_update  # given: the method attention calls (this file's own class)

# %% nbgrader={"grade": true, "grade_id": "test_18_2_update", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 18.2
from tinytorch_lib.testing import task

with task("18.2", uses={"18.1": "KVCache"}):
    c = KVCache(2, 1, 2, 6, 3)
    rng = np.random.default_rng(0)
    k1, v1 = rng.standard_normal((1, 2, 4, 3)).astype(np.float32), rng.standard_normal((1, 2, 4, 3)).astype(np.float32)
    ka, va = c.update(Tensor(k1), Tensor(v1), 1)
    assert isinstance(ka, Tensor) and ka.shape == (1, 2, 4, 3) and np.array_equal(ka.data, k1) and np.array_equal(va.data, v1), \
        f"update of an empty layer with k (1, 2, 4, 3): expected those keys and values back, got shape {getattr(ka, 'shape', ka)}"
    assert c.lengths == [0, 4], f"after 4 positions into layer 1: expected lengths [0, 4], got {c.lengths}"
    k2, v2 = rng.standard_normal((1, 2, 1, 3)).astype(np.float32), rng.standard_normal((1, 2, 1, 3)).astype(np.float32)
    kb, vb = c.update(k2, v2, 1)
    assert kb.shape == (1, 2, 5, 3) and np.array_equal(kb.data, np.concatenate([k1, k2], axis=2)) \
        and np.array_equal(vb.data, np.concatenate([v1, v2], axis=2)), \
        f"a second update with 1 position: expected the 5 keys so far (1, 2, 5, 3) in order, got shape {kb.shape}"
    assert c.get_seq_length(1) == 5 and c.get_seq_length(0) == 0, f"expected lengths [0, 5], got {c.lengths}"
    try:
        c.update(k1[:, :, :2], v1[:, :, :2], 1)
    except ValueError as e:
        assert "5" in str(e) and "6" in str(e) and "2" in str(e), f"adding 2 to a layer holding 5 of 6: the error should say so, got: {e}"
    else:
        raise AssertionError("update past max_len (5 held, 6 max, 2 more) should raise ValueError")
    assert c.lengths == [0, 5], f"a refused update must change nothing: lengths {c.lengths}"
    try:
        c.update(k2, v2, 2)
    except ValueError as e:
        assert "layer_idx" in str(e) and "2" in str(e), f"layer_idx 2 of 2 layers: the error should name layer_idx 2, got: {e}"
    else:
        raise AssertionError("update with layer_idx 2 on a 2-layer cache should raise ValueError")
    try:
        c.update(np.zeros((1, 2, 1, 3)), np.zeros((1, 2, 1, 4)), 0)
    except ValueError as e:
        assert "(1, 2, 1, 3)" in str(e) and "(1, 2, 1, 4)" in str(e), f"k (1, 2, 1, 3) and v (1, 2, 1, 4): the error should name both shapes, got: {e}"
    else:
        raise AssertionError("update with k (1, 2, 1, 3) and v (1, 2, 1, 4) (shapes differ) should raise ValueError")
    assert c.lengths == [0, 5], f"refused updates must change nothing: lengths {c.lengths}"
    try:
        kc, _ = c.update(k2, v2, 1)
    except ValueError as e:
        raise AssertionError(f"1 more position into a layer holding 5 of 6 fills it exactly and should work; got ValueError: {e}") from None
    assert c.lengths == [0, 6] and kc.shape == (1, 2, 6, 3), f"a layer filled to max_len 6: expected lengths [0, 6] and 6 keys back, got {c.lengths}, {kc.shape}"
print("Task 18.2 visible tests passed")

# %% [markdown]
# ### Does the seam work? Your cache inside attention
#
# The check Module 12 made with a ten-line list cache, now with yours: run a
# `MultiHeadAttention` on a sequence whole, then token by token through the
# cache. The outputs agree to float32 rounding.

# %%
from tinytorch_lib.attention import MultiHeadAttention

mha = MultiHeadAttention(16, 4, rng=0)
x = np.random.default_rng(1).standard_normal((1, 9, 16)).astype(np.float32)
with no_grad():
    whole = mha(Tensor(x)).data
    cache = KVCache(1, 1, 4, 9, 4)
    steps = np.concatenate([mha(Tensor(x[:, i:i + 1]), cache=cache, layer_idx=0).data for i in range(9)], axis=1)
print(f"9 positions whole vs one at a time through the cache: max |difference| = {np.abs(whole - steps).max():.2e}")

# %% [markdown]
# ## 3. Generation with the cache
#
# Module 13's `generate` (imported here as `generate_without_cache`) reruns
# the model on the whole sequence at every step. With a cache:
#
# ```
# cache = KVCache(model.n_layers, 1, model.n_heads, model.max_len, model.d_model // model.n_heads)
# logits = model(prompt (1, n), cache=cache)        # prefill: positions 0..n-1, fills the cache
# repeat max_new_tokens times:
#     pick the next id from logits[0, -1]           # Module 13's next_token, same rng
#     if that was the last token wanted: stop
#     logits = model([[id]], cache=cache)           # one position, at offset cache.get_seq_length(0)
# ```
#
# The prefill runs the prompt in one pass (that is why `update` takes several
# positions at once); each later step costs one position. One model call
# fewer than tokens generated: the last token needs no logits after it.
#
# What cannot be cached: Module 13 crops the window to the last `max_len`
# tokens once a sequence is longer than the model's positions. A cropped
# window shifts every position, so every stored key would be wrong. Here a
# prompt plus new tokens longer than `max_len` is an error; the course GPT's
# `max_len` is 1024.
#
# ### Task 18.3: `generate`
#
# `generate(model, prompt_ids, max_new_tokens, temperature=0.0, top_k=None, seed=None, use_cache=True)`
# returns the prompt followed by the new ids, an `np.int64` array, exactly as
# Module 13's `generate` does:
#
# - `use_cache=False`: return `generate_without_cache(model, prompt_ids, max_new_tokens, temperature, top_k, seed)`.
# - `use_cache=True`: if `len(prompt) + max_new_tokens > model.max_len`, raise
#   `ValueError`: `generate: 30 prompt + 1000 new tokens = 1030 positions do not fit in the cache (max_len 1024); use use_cache=False, which crops the window`.
#   The other arguments are checked for you (given): one call of
#   `generate_without_cache` for a single token, with the model replaced by a
#   stand-in (`ChecksOnly`, zero logits, no forward pass: the same trick as
#   Module 13's bigram test model), raises Module 13's clear errors at no cost.
#   Then, in eval mode under `no_grad()`, run the loop above with
#   `rng = np.random.default_rng(seed)` and `next_token(logits, temperature, top_k, rng)`,
#   so that the draws match Module 13's one for one. `next_token` (Module 13)
#   takes the last position's logits as a numpy array `(vocab,)` (so pass
#   `model(...).data[0, -1]`, not a `Tensor`) and returns a Python `int`.
# - Put the model's training mode back afterwards, also when a call raises:
#   remember `was_training = model.training`, and at the end (`finally:`) call
#   `model.train(was_training)` (Module 03: `train(mode=True)` sets
#   `training` to `mode` on the model and every submodule; `eval()` is
#   `train(False)`).

# %% nbgrader={"grade": false, "grade_id": "generate", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class ChecksOnly:
    """Given: `model`'s stand-in for Module 13's generate, which then checks the prompt and arguments only.

    Every attribute is the model's (vocab_size, max_len, eval, train, ...); calling it returns zero logits
    (1, n, vocab_size) instead of running the model.
    """

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, ids, *args, **kwargs) -> Tensor:
        return Tensor(np.zeros(np.shape(ids) + (self.model.vocab_size,), dtype=np.float32))


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
             seed: int | None = None, use_cache: bool = True) -> np.ndarray:
    """prompt_ids: (n,) ints -> (n + max_new_tokens,) int64; with use_cache, one new position per step."""
    if not use_cache:
        return generate_without_cache(model, prompt_ids, max_new_tokens, temperature, top_k, seed)
    prompt = np.asarray(prompt_ids.data if isinstance(prompt_ids, Tensor) else prompt_ids)
    # given: Module 13's checks of every argument, without a forward pass (a bad count is passed on to fail)
    count_ok = isinstance(max_new_tokens, (int, np.integer)) and not isinstance(max_new_tokens, bool) and max_new_tokens >= 1
    generate_without_cache(ChecksOnly(model), prompt, 1 if count_ok else max_new_tokens, temperature, top_k, seed)
    # Task 18.3: check the length fits, then prefill and one model call per new token through a KVCache
    ### BEGIN SOLUTION
    total = prompt.size + max_new_tokens
    if total > model.max_len:
        raise ValueError(f"generate: {prompt.size} prompt + {max_new_tokens} new tokens = {total} positions do not "
                         f"fit in the cache (max_len {model.max_len}); use use_cache=False, which crops the window")
    cache = KVCache(model.n_layers, 1, model.n_heads, model.max_len, model.d_model // model.n_heads)
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in prompt]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(np.array(ids, dtype=np.int64)[None, :], cache=cache).data[0, -1]
            for step in range(max_new_tokens):
                ids.append(next_token(logits, temperature, top_k, rng))
                if step + 1 < max_new_tokens:
                    logits = model(np.array([[ids[-1]]], dtype=np.int64), cache=cache).data[0, -1]
    finally:
        model.train(was_training)
    return np.array(ids, dtype=np.int64)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_18_3_generate", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 18.3
from tinytorch_lib.testing import task

with task("18.3", uses={"18.1": "KVCache", "18.2": "KVCache.update"}):
    from tinytorch_lib.transformer import GPT

    small = GPT(vocab_size=11, d_model=16, n_heads=2, n_layers=2, context=24, max_len=24, rng=3)
    prompt = np.array([1, 4, 2, 7])
    slow = generate(small, prompt, 12, use_cache=False)
    fast = generate(small, prompt, 12)
    assert isinstance(fast, np.ndarray) and fast.dtype == np.int64 and fast.shape == (16,), \
        f"generate(prompt of 4, 12 new): expected an int64 array of 16 ids, got {type(fast).__name__} {getattr(fast, 'shape', '')}"
    assert fast.tolist() == slow.tolist(), f"greedy, random GPT(11, 16, 2 heads, 2 layers): with cache {fast.tolist()} != without {slow.tolist()}"
    a = generate(small, prompt, 12, temperature=1.0, seed=5)
    b = generate(small, prompt, 12, temperature=1.0, seed=5, use_cache=False)
    assert a.tolist() == b.tolist(), f"sampling at temperature 1 with seed 5: with cache {a.tolist()} != without {b.tolist()}"
    calls, modes = [], []
    handle = small.register_forward_hook(lambda m, args, out: calls.append(np.asarray(args[0]).shape) or modes.append(m.training))  # returns None: the output stays
    small.train()
    generate(small, prompt, 5)
    handle.remove()
    want = [(1, 4), (1, 1), (1, 1), (1, 1), (1, 1)]
    assert calls == want, (f"5 new tokens after a prompt of 4: expected {len(want)} model calls of input shapes {fmt(want)} (a prefill "
                           f"of the whole prompt, then one position per step, none after the last token); got {len(calls)} calls: {calls}")
    assert not any(modes), f"generate should run the model in eval mode: model.training during the 5 calls was {modes}"
    assert small.training, "generate on a model in training mode: afterwards model.training should be True again (put the mode back)"
    small.eval()
    generate(small, prompt, 3)
    assert not small.training, "generate on a model in eval mode: afterwards model.training should still be False"
    try:
        fits = generate(small, prompt, 20)
    except ValueError as e:
        raise AssertionError(f"4 prompt + 20 new tokens = 24 positions, exactly max_len 24, fit in the cache; got ValueError: {e}") from None
    assert len(fits) == 24, f"4 prompt + 20 new tokens: expected 24 ids, got {len(fits)}"
    try:
        generate(small, prompt, 21)
    except ValueError as e:
        assert "24" in str(e) and "25" in str(e), f"4 + 21 positions with max_len 24: the error should name 25 and 24, got: {e}"
    else:
        raise AssertionError("generate with 4 prompt + 21 new tokens on max_len 24 should raise ValueError")
print("Task 18.3 visible tests passed")

# %% [markdown]
# ## 4. Systems analysis: what the cache buys
#
# ### The trained GPT: identical tokens, time per token
#
# Both sides generate from the same prompt with the course GPT, greedy, and
# are timed in this cell with `measure` (one BLAS thread; the median of 3
# runs per side, one for the 512-token row; the cached side after one
# warm-up run). "ms/token" is a whole `generate` call divided by the tokens it
# produced. The speedup counts only if the tokens are identical, so the table
# says whether they are: `time_generation` (given) keeps the tokens of the
# timed runs and compares them. Milestone 06, the lecture demo and
# `benchmarks/bench_kvcache.py` measure with it too.

# %% tags=["export"]
def time_generation(model, prompt_ids, max_new_tokens: int, repeats: int = 3) -> dict:
    """Given: greedy generation without and with the cache, timed side by side with the course's `measure`.

    -> {"new_tokens", "without", "with" (Timing of one whole generate call), "speedup" (of the medians),
        "identical" (the tokens of the last timed run of each side), "tokens": {False: ids, True: ids}}.
    The uncached side runs `repeats` times; the cached side, fast, at least 3 times after a warm-up.
    """
    tokens = {}

    def run(use_cache: bool) -> None:
        tokens[use_cache] = generate(model, prompt_ids, max_new_tokens, use_cache=use_cache)

    t_without = measure(lambda: run(False), repeats=repeats, warmup=0, number=1)
    t_with = measure(lambda: run(True), repeats=max(repeats, 3), warmup=1, number=1)
    return {"new_tokens": max_new_tokens, "without": t_without, "with": t_with,
            "speedup": t_without.median / t_with.median,
            "identical": bool(np.array_equal(tokens[False], tokens[True])), "tokens": tokens}

# %%
import os

from tinytorch_lib.transformer import load_gpt

gpt, tok, meta = load_gpt()
prompt_ids = tok.encode("And the LORD said unto Moses, ")
grading = bool(os.environ.get("NBGRADER_EXECUTION"))
NEW_TOKENS = [16, 32, 64] if grading else [32, 64, 128, 256, 512]
if grading:
    print("(autograding: short generations only; run the notebook yourself for lengths up to 512)")
HEADER = (f"{'new tokens':>10} {'no cache ms/token':>18} {'cache ms/token':>15} {'speedup':>8} {'(from repeats)':>14} "
          f"{'tokens identical':>17}")


def generation_rows(model) -> list:
    """[(new tokens, s/token without, s/token with, identical, (lowest, highest) speedup of any two repeats)]."""
    rows = []
    for n in NEW_TOKENS:
        r = time_generation(model, prompt_ids, n, repeats=3 if n <= 256 else 1)
        lo_hi = (r["without"].min / r["with"].max, r["without"].max / r["with"].min)
        rows.append((n, r["without"].median / n, r["with"].median / n, r["identical"], lo_hi))
    return rows


def row_text(n, a, b, same, lo_hi=None) -> str:
    spread = f"{lo_hi[0]:.1f}-{lo_hi[1]:.1f}x" if lo_hi else ""
    return f"{n:>10} {a * 1e3:>18.2f} {b * 1e3:>15.2f} {a / b:>7.1f}x {spread:>14} {'yes' if same else 'NO':>17}"


rows = generation_rows(gpt)
print(f"prompt: {len(prompt_ids)} tokens; GPT d_model {gpt.d_model}, {gpt.n_layers} layers, {gpt.n_heads} heads")
print(HEADER)
for row in rows:
    print(row_text(*row))
print("\nthe same greedy text, both ways:", repr(tok.decode(generate(gpt, prompt_ids, 60)[len(prompt_ids):])))

# %% [markdown]
# Read the two columns separately. **Without a cache** the time per token
# rises with the number of tokens: step `t` reruns all `prompt + t` positions,
# so a generation of `N` tokens does about `N^2 / 2` position-passes: the
# work per token grows with `N`. In the table it grows slowly at first, while
# each step's fixed costs dominate, then faster, once attention's `(t, t)`
# scores (which grow like `t^2` per step) take over. **With the cache** the
# work per token is nearly flat: each step runs one position through the same
# layers, and only attention's read of the cache grows with `t` (one `(1, t)`
# row of scores per head, small next to the layers at these lengths). So the
# cached column has no trend with the length; it moves up and down with the
# machine (each row's speedup range, from the slowest and fastest repeats of
# the two sides, shows how much). The speedup grows with the length: modest
# for short generations, large for long ones.
#
# The prompt counts the same way: without a cache every step reruns it too,
# while with the cache the prompt is run once (the prefill) and each step
# reads it from the cache. So after a longer prompt the same number of new
# tokens gains more. How much more depends on how the fixed cost of a step
# compares with its work per position, so the next cell measures it: the
# same new tokens after the 30-character prompt and after a longer one, each
# side timed in turns with `compare`.

# %%
from tinytorch_lib.timing import compare
from tinytorch_lib.tokenization import load_corpus

long_prompt = tok.encode(load_corpus("val")[:128 if grading else 256])
prompt_tokens = 16 if grading else 64
speedups = {}
for label, p_ids in (("short", prompt_ids), ("long", long_prompt)):
    c = compare({"no cache": lambda p_ids=p_ids: generate(gpt, p_ids, prompt_tokens, use_cache=False),
                 "cache": lambda p_ids=p_ids: generate(gpt, p_ids, prompt_tokens, use_cache=True)},
                repeats=2 if grading else 3, number=1)
    speedups[label] = c.ratio("no cache", "cache")
    print(f"prompt of {len(p_ids):>3} tokens, {prompt_tokens} new tokens: no cache {c['no cache']}; "
          f"cache {c['cache']}; speedup {speedups[label]}")
    if c.noisy:
        print(f"  {c.noisy}")
print(f"in this run, the longer prompt raised the speedup {speedups['long'].median / speedups['short'].median:.2g}x "
      f"(from {speedups['short']:.3g} to {speedups['long']:.3g})")

# %% [markdown]
# Milestone 06 measures the same with longer generations.
#
# Why is a cached step not faster still? At one position, a step's arithmetic
# is tiny (a `(1, 128) @ (128, 128)` matmul is 16 thousand multiply-adds), and
# the time goes to running the library: each of the some eighty Tensor
# operations of a step (about forty per block, two blocks) costs microseconds
# of Python and numpy call overhead, whatever its size. The next cell measures that floor.

# %%
one = Tensor(np.ones((1, 1, 128), dtype=np.float32))
w = Tensor(np.ones((128, 128), dtype=np.float32))
t_op = measure(lambda: one @ w)


def time_cached_step(model):
    """Prefill the prompt into a new cache, then time one more position, rewound before every call."""
    cache = KVCache(model.n_layers, 1, model.n_heads, model.max_len, model.d_model // model.n_heads)
    with no_grad():
        model(np.array(prompt_ids)[None, :], cache=cache)
        start_len = cache.get_seq_length()

        def one_step():
            cache.lengths = [start_len] * model.n_layers  # rewind: every timed step is the same step
            model(np.array([[prompt_ids[-1]]]), cache=cache)

        return measure(one_step)


t_step = time_cached_step(gpt)
print(f"one Tensor matmul (1, 1, 128) @ (128, 128): {t_op}")
print(f"one cached step of the GPT (1 position):    {t_step}")
print(f"in this run a cached step cost as much as {t_step.median / t_op.median:.0f} such matmuls "
      f"(from the repeats: {t_step.min / t_op.p90:.0f}-{t_step.p90 / t_op.min:.0f}): "
      f"per-operation overhead, not arithmetic, sets its time")
for t in (t_op, t_step):
    if t.noisy:
        print(t.noisy)

# %% [markdown]
# ### Removing the overhead: the cache on Module 17's fused GPT
#
# Module 17's `vectorize(gpt)` holds the same weights and, under `no_grad`,
# runs each block as one fused pass on arrays: the same operations as plain
# numpy calls of about a microsecond each, instead of `Tensor` operations of
# several, with the same logits. It calls
# the cache through the same seam, so your `KVCache` works with it unchanged.
# The same step and the same table, both sides on the fused model:

# %%
from tinytorch_lib.acceleration import vectorize

fast_gpt = vectorize(gpt)
t_fast = time_cached_step(fast_gpt)
print(f"one cached step: layer by layer {t_step}; fused {t_fast} ({t_step.median / t_fast.median:.1f}x, "
      f"from the repeats {t_step.min / t_fast.p90:.1f}-{t_step.p90 / t_fast.min:.1f}x)")
print(HEADER + "   (vectorize(gpt) on both sides)")
for row, (_, a0, b0, _, _) in zip(generation_rows(fast_gpt), rows):
    print(row_text(*row) + f"   (layer by layer: {a0 / b0:.1f}x)")

# %% [markdown]
# Both columns change, for different reasons. With the cache a step is one
# position, and fusing removes most of its cost, which was overhead. Without
# the cache each step reruns every position: at short lengths both models
# spend that time in the same matmuls, so the gain is small. At the longest
# lengths, where each step allocates and sweeps `(t, t)` score matrices, the
# no-cache times of both models vary from run to run by tens of percent, so
# read those rows as approximate. The
# cache's speedup is the ratio of the two columns: where overhead was most
# of the cached step, the fused model's speedup is the larger one, the same
# saving in arithmetic no longer hidden behind the library's bookkeeping.
# Milestone 06 reports both.
#
# ### Time per token against length, and the cache's memory
#
# The same measurements as a plot, with the cache's measured `nbytes` at each
# length next to the formula `2 x layers x heads x length x head_dim x 4` bytes.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import format_bytes, place_legend, plain_axis

lengths = np.array([r[0] for r in rows])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(lengths, [r[1] * 1e3 for r in rows], marker="o", label="without cache")
ax1.plot(lengths, [r[2] * 1e3 for r in rows], marker="s", label="with KV cache")
ax1.set_xlabel("new tokens generated")
ax1.set_ylabel("time per token (ms)")
ax1.set_title("Without a cache the cost per token grows")
mem_lengths = [64, 128, 256, 512, 1024]
measured = [KVCache(gpt.n_layers, 1, gpt.n_heads, n, gpt.d_model // gpt.n_heads).nbytes for n in mem_lengths]
formula = [2 * gpt.n_layers * gpt.n_heads * n * (gpt.d_model // gpt.n_heads) * 4 for n in mem_lengths]
assert measured == formula, (measured, formula)
ax2.plot(mem_lengths, measured, marker="o", label="KVCache.nbytes")
model_bytes = sum(a.nbytes for a in gpt.state_dict().values())
weight_bytes = sum(p.data.nbytes for p in gpt.parameters())
ax2.axhline(model_bytes, color="gray", ls="--", label="model's stored arrays (weights + position table)")
ax2.set_ylim(0, 1.15 * max(model_bytes, measured[-1]))
plain_axis(ax2, "y", "bytes")
ax2.set_xlabel("cache length (positions)")
ax2.set_ylabel("cache size (1 MB = 1,000,000 bytes)")
ax2.set_title("The cache grows linearly with length")
plt.tight_layout()
place_legend(ax1)
place_legend(ax2)
plt.show()
for n, b in zip(mem_lengths, measured):
    print(f"cache for {n:5d} positions: {b:>10,} bytes (formula: {2 * gpt.n_layers * gpt.n_heads * n * (gpt.d_model // gpt.n_heads) * 4:,})")
print(f"the model's stored arrays (state_dict): {model_bytes:,} bytes ({format_bytes(model_bytes)}): trained weights "
      f"{weight_bytes:,}, buffers (the position table) {model_bytes - weight_bytes:,}")

# %% [markdown]
# Takeaway: the cache trades memory that grows linearly with the length for
# work per token that stays nearly flat, and the trade improves with every
# token generated. `benchmarks/bench_kvcache.py` runs the same comparison up
# to 992 new tokens (the positions the course GPT has), checks the logits at
# every step, and prints the table.
#
# ## Part B: many sequences at once, and a smaller cache
#
# A server rarely generates for one user at a time. Part A made one step cost
# one position; that position's work is a `(1, 128) @ (128, 128)` matmul and
# dozens of small operations, so most of the step is fixed cost. Run `B`
# prompts together and the same operations carry `B` rows: the fixed cost is
# paid once per step for all of them. That is MLPerf's **Offline** scenario
# (tokens per second over a large batch), beside **SingleStream** (one
# sequence, milliseconds per token). And a cache for `B` sequences is `B`
# times the bytes, so the second task stores it as int8 codes, with Module
# 15's `quantize_tensor`.
#
# ## 5. Batched generation
#
# The model and the cache already take a batch dimension: `GPT.forward(ids
# (B, n), cache)` and `KVCache(n_layers, B, ...)`. Generation for `B` prompts
# of the same length `n` is Task 18.3's loop with `B` rows:
#
# ```
# prompts (B, n)                                    3 prompts of 4 tokens: (3, 4)
# cache = cache_class(n_layers, B, n_heads, n + max_new_tokens, head_dim)
# logits = model(prompts, cache=cache)               (3, 4, vocab): one prefill for all rows
# repeat max_new_tokens times:
#     ids = argmax of logits[:, -1] per row          (3,): greedy, one new id per row
#     if that was the last token wanted: stop
#     logits = model(ids[:, None], cache=cache)      (3, 1, vocab): one position, every row
# ```
#
# No operation mixes rows, so each row's logits are those of its prompt
# alone, to float32 rounding (a matmul of more rows may add in another
# order), and so are its tokens: the tests check them token for token. The
# cache here is sized to the sequence, `n + max_new_tokens` positions, so its
# `nbytes` is the memory this generation needs (to one position: the last
# token is never fed back, so the last position stays empty).
#
# Two limits keep it simple. The prompts have the same length: the cache
# keeps one length per layer for all rows (rows of different lengths need
# left padding and a mask that hides the padding; not done here). And it is
# greedy: a sampled row would have to draw from its own random generator, in
# the order a single run does, to match it.
#
# ### Task 18.4: `generate_batch`
#
# `generate_batch(model, prompts, max_new_tokens, cache_class=KVCache)`
# returns a `(B, n + max_new_tokens)` `np.int64` array: each row its prompt
# followed by its new ids. Given: the checks of the prompts (a 2-d array or
# equal-length lists of ids; each row passes Module 13's checks) and of
# `max_new_tokens`. Yours:
#
# - if `n + max_new_tokens > model.max_len`, raise `ValueError`:
#   `generate_batch: 30 prompt + 1000 new tokens = 1030 positions do not fit in max_len 1024`;
# - `cache = cache_class(model.n_layers, B, model.n_heads, n + max_new_tokens, model.d_model // model.n_heads)`;
# - in eval mode under `no_grad()`, the loop above: one model call for the
#   prefill, then one per new token but the last; the next ids are
#   `logits.data[:, -1].argmax(axis=-1)` (the same first-maximum rule as
#   Module 13's greedy `next_token`);
# - put the training mode back afterwards (`finally:`), as in Task 18.3.

# %% nbgrader={"grade": false, "grade_id": "generate_batch", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def batch_prompts(model, prompts, max_new_tokens) -> np.ndarray:
    """Given: prompts (B rows of n ids) -> an int64 array (B, n), checked; a clear ValueError otherwise."""
    rows = [np.asarray(p.data if isinstance(p, Tensor) else p) for p in
            (prompts.data if isinstance(prompts, Tensor) else prompts)]
    shapes = [r.shape for r in rows]
    if not rows or any(len(shape) != 1 for shape in shapes):
        raise ValueError(f"generate_batch: prompts must be B >= 1 rows of ids, a 2-d array (B, n); got rows of "
                         f"shapes {shapes[:4]}{' ...' if len(shapes) > 4 else ''}")
    if len(set(shapes)) != 1:
        raise ValueError(f"generate_batch: the prompts must have the same length (no padding here); got lengths "
                         f"{[shape[0] for shape in shapes]}")
    count_ok = isinstance(max_new_tokens, (int, np.integer)) and not isinstance(max_new_tokens, bool) and max_new_tokens >= 1
    for row in rows:  # Module 13's checks of each row (ids, dtype) and of max_new_tokens, without a forward pass
        generate_without_cache(ChecksOnly(model), row, 1 if count_ok else max_new_tokens)
    return np.stack(rows).astype(np.int64)


def generate_batch(model, prompts, max_new_tokens: int, cache_class=KVCache) -> np.ndarray:
    """prompts: (B, n) ints -> (B, n + max_new_tokens) int64, greedy; one model call per step for all B rows."""
    ids = batch_prompts(model, prompts, max_new_tokens)
    batch, n = ids.shape
    # Task 18.4: check the length fits; a cache of cache_class for B rows; prefill, then one call per new token
    ### BEGIN SOLUTION
    total = n + max_new_tokens
    if total > model.max_len:
        raise ValueError(f"generate_batch: {n} prompt + {max_new_tokens} new tokens = {total} positions do not "
                         f"fit in max_len {model.max_len}")
    cache = cache_class(model.n_layers, batch, model.n_heads, total, model.d_model // model.n_heads)
    out = np.zeros((batch, total), dtype=np.int64)
    out[:, :n] = ids
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(ids, cache=cache).data[:, -1]
            for step in range(max_new_tokens):
                out[:, n + step] = logits.argmax(axis=-1)
                if step + 1 < max_new_tokens:
                    logits = model(out[:, n + step:n + step + 1], cache=cache).data[:, -1]
    finally:
        model.train(was_training)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_18_4_generate_batch", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 18.4
from tinytorch_lib.testing import task

with task("18.4", uses={"18.1": "KVCache", "18.2": "KVCache.update"}):
    import inspect

    from tinytorch_lib.transformer import GPT

    small = GPT(vocab_size=11, d_model=16, n_heads=2, n_layers=2, context=24, max_len=24, rng=3)
    prompts = np.array([[1, 4, 2, 7], [0, 0, 9, 3], [5, 10, 1, 1]])
    got = generate_batch(small, prompts, 10)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == (3, 14), \
        f"generate_batch(3 prompts of 4, 10 new): expected an int64 array (3, 14), got {type(got).__name__} {getattr(got, 'shape', '')}"
    for row, p in zip(got, prompts):
        alone = generate_without_cache(small, p, 10)
        assert row.tolist() == alone.tolist(), f"prompt {p.tolist()} in a batch of 3: {row.tolist()}; generated alone: {alone.tolist()}"
    calls = []
    handle = small.register_forward_hook(lambda m, args, out: calls.append(np.asarray(args[0]).shape))
    small.train()
    generate_batch(small, prompts[:2].tolist(), 4)
    handle.remove()
    want = [(2, 4), (2, 1), (2, 1), (2, 1)]
    assert calls == want, (f"2 prompts of 4, 4 new tokens: expected model calls of input shapes {want} (one prefill, "
                           f"then one position of every row per step); got {calls}")
    assert small.training, "generate_batch on a model in training mode: afterwards model.training should be True again"
    small.eval()
    sizes = []

    class Recorded(KVCache):
        def __init__(self, *args, **kwargs):  # the arguments in KVCache's order, given by position or by name
            sizes.append(tuple(inspect.signature(KVCache).bind(*args, **kwargs).arguments.values()))
            super().__init__(*args, **kwargs)

    generate_batch(small, prompts, 6, cache_class=Recorded)
    assert sizes == [(2, 3, 2, 10, 8)], \
        f"3 prompts of 4 + 6 new tokens: expected one cache_class(2 layers, batch 3, 2 heads, 10 positions, head_dim 8), got calls {sizes}"
    try:
        generate_batch(small, prompts, 21)
    except ValueError as e:
        assert "25" in str(e) and "24" in str(e), f"4 + 21 positions with max_len 24: the error should name 25 and 24, got: {e}"
    else:
        raise AssertionError("generate_batch with 4 prompt + 21 new tokens on max_len 24 should raise ValueError")
    try:
        generate_batch(small, [[1, 2, 3], [4, 5]], 2)
    except ValueError as e:
        assert "[3, 2]" in str(e), f"prompts of lengths 3 and 2: the error should name the lengths [3, 2], got: {e}"
    else:
        raise AssertionError("generate_batch with prompts of lengths 3 and 2 should raise ValueError")
print("Task 18.4 visible tests passed")

# %% [markdown]
# ## 6. An INT8 cache
#
# A float32 cache spends 4 bytes on every number. Module 15 stored weights as
# int8 codes with one float scale per row; the same works for keys and values,
# one scale per (layer, sequence, head, position): the `head_dim` numbers of
# one key share a scale. Written as it arrives, read back dequantized:
#
# ```
# k (B, H, s_new, D) float32 -> rows (B*H*s_new, D) -> quantize_tensor(rows, axis=0)
#     -> codes (B*H*s_new, D) int8, scale (B*H*s_new,)     symmetric: zero point 0
# store: keys[layer, :, :, n:n+s_new] = codes (B, H, s_new, D)     int8
#        key_scales[layer, :, :, n:n+s_new] = scale (B, H, s_new)  float16
# read:  keys[layer, :, :, :m] * key_scales[layer, :, :, :m, None] -> (B, H, m, D) float32
# ```
#
# The scales count: per head and position, `D` = 32 codes and one scale. A
# float32 scale would add 4 bytes to 32 (12.5%); a float16 one adds 2, so the
# cache is `4 * 32 / 34` = 3.8x smaller than float32. Rounding the scale to
# float16 moves it by at most 2^-11 of itself, which moves the largest code's
# value by 127 x 2^-11, about 0.06 of a step: small next to the half step that
# int8 rounding already costs.
#
# ### Task 18.5: `Int8KVCache`
#
# `Int8KVCache(n_layers, batch, n_heads, max_len, head_dim)` is a `KVCache`
# (Tasks 18.1-18.2) whose `keys` and `values` hold int8 codes:
#
# - `__init__`: `KVCache.__init__` with `dtype=np.int8`, then `key_scales` and
#   `value_scales`: float16 zeros `(n_layers, batch, n_heads, max_len)`;
# - `nbytes`: the bytes of the codes and of the scales (four arrays);
# - `int8_update(cache, k, v, layer_idx)`: quantize `k` and `v` as above with
#   `quantize_tensor` (symmetric, one scale per row of `head_dim`; the scales
#   it returns are float32: store `scale.astype(np.float16)`); store the codes with
#   `kvcache_update(cache, codes_k, codes_v, layer_idx)` (Task 18.2: it checks
#   `layer_idx`, the shapes and the room, writes, advances the length, and
#   raises before changing anything); then store the scales of the `s_new`
#   new positions, and return all `n + s_new` positions held (`n` were there
#   before) dequantized, as float32 Tensors `(batch, n_heads, n + s_new, head_dim)`.

# %% nbgrader={"grade": false, "grade_id": "int8_cache", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
from tinytorch_lib.quantization import quantize_tensor


class Int8KVCache(KVCache):
    """A KVCache of int8 codes, with a float16 scale per (layer, batch, head, position): about 4x fewer bytes."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int):
        # Task 18.5: KVCache's arrays as int8, then the two float16 scale arrays
        ### BEGIN SOLUTION
        super().__init__(n_layers, batch, n_heads, max_len, head_dim, dtype=np.int8)
        shape = (self.n_layers, self.batch, self.n_heads, self.max_len)
        self.key_scales = np.zeros(shape, dtype=np.float16)
        self.value_scales = np.zeros(shape, dtype=np.float16)
        ### END SOLUTION

    @property
    def nbytes(self) -> int:
        """Bytes of the stored codes and scales."""
        # Task 18.5
        ### BEGIN SOLUTION
        return int(self.keys.nbytes + self.values.nbytes + self.key_scales.nbytes + self.value_scales.nbytes)
        ### END SOLUTION


def int8_update(cache: Int8KVCache, k, v, layer_idx: int) -> tuple:
    """k, v (batch, n_heads, s_new, head_dim) float -> stored as codes and scales; all so far, dequantized (float32)."""
    k = k.data if isinstance(k, Tensor) else np.asarray(k)
    v = v.data if isinstance(v, Tensor) else np.asarray(v)
    # Task 18.5: quantize rows of head_dim; kvcache_update stores the codes; then the scales; dequantize all so far
    ### BEGIN SOLUTION
    codes, scales = [], []
    for x in (k, v):
        q, scale, _ = quantize_tensor(x.reshape(-1, x.shape[-1]), axis=0)
        codes.append(q.reshape(x.shape))
        scales.append(scale.reshape(x.shape[:-1]).astype(np.float16))
    kvcache_update(cache, codes[0], codes[1], layer_idx)
    m = cache.lengths[layer_idx]
    n = m - k.shape[2]
    cache.key_scales[layer_idx, :, :, n:m] = scales[0]
    cache.value_scales[layer_idx, :, :, n:m] = scales[1]
    keys = cache.keys[layer_idx, :, :, :m] * cache.key_scales[layer_idx, :, :, :m, None].astype(np.float32)
    values = cache.values[layer_idx, :, :, :m] * cache.value_scales[layer_idx, :, :, :m, None].astype(np.float32)
    return Tensor(keys), Tensor(values)
    ### END SOLUTION


Int8KVCache.update = int8_update  # given: the method attention calls

# %% nbgrader={"grade": true, "grade_id": "test_18_5_int8_cache", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 18.5
from tinytorch_lib.testing import task

with task("18.5", uses={"18.1": "KVCache", "18.2": "kvcache_update"}):
    c = Int8KVCache(2, 1, 2, 6, 4)
    assert c.keys.dtype == c.values.dtype == np.int8 and c.keys.shape == (2, 1, 2, 6, 4), \
        f"Int8KVCache(2, 1, 2, 6, 4): expected int8 keys and values (2, 1, 2, 6, 4), got {c.keys.dtype} {c.keys.shape}"
    assert c.key_scales.dtype == c.value_scales.dtype == np.float16 and c.key_scales.shape == c.value_scales.shape == (2, 1, 2, 6), \
        f"expected float16 key_scales and value_scales (2, 1, 2, 6), got {c.key_scales.dtype} {c.key_scales.shape}"
    assert c.nbytes == 2 * 96 + 2 * 48, f"Int8KVCache(2, 1, 2, 6, 4): expected nbytes 288 (codes 2 x 96, scales 2 x 48), got {c.nbytes}"
    rng = np.random.default_rng(0)
    k1, v1 = rng.standard_normal((2, 1, 2, 3, 4)).astype(np.float32) * np.array([1, 20], np.float32)[:, None, None, None, None]
    ka, va = c.update(Tensor(k1), Tensor(v1), 1)
    assert isinstance(ka, Tensor) and ka.dtype == np.float32 and ka.shape == (1, 2, 3, 4), \
        f"update with k (1, 2, 3, 4): expected float32 Tensors (1, 2, 3, 4), got {type(ka).__name__} {getattr(ka, 'dtype', '')} {getattr(ka, 'shape', '')}"
    step = np.abs(k1).max(axis=-1, keepdims=True) / 127
    assert np.all(np.abs(ka.data - k1) <= 0.6 * step), \
        f"dequantized keys should be within 0.6 of a step (max |key| of its row / 127) of the keys; worst {fmt(np.abs(ka.data - k1).max())}"
    assert np.all(np.abs(va.data - v1) <= 0.6 * np.abs(v1).max(axis=-1, keepdims=True) / 127), "values: the same bound as keys"
    q, s, _ = quantize_tensor(k1.reshape(-1, 4), axis=0)
    assert np.array_equal(c.keys[1, :, :, :3], q.reshape(1, 2, 3, 4)), "keys[1, :, :, :3] should hold quantize_tensor's codes of the rows of k"
    assert np.array_equal(c.key_scales[1, :, :, :3], s.reshape(1, 2, 3).astype(np.float16)), "key_scales[1, :, :, :3] should hold the rows' scales, as float16"
    k2 = rng.standard_normal((1, 2, 1, 4)).astype(np.float32)
    kb, _ = c.update(k2, k2, 1)
    assert kb.shape == (1, 2, 4, 4), f"a second update of 1 position: expected the 4 keys so far (1, 2, 4, 4), got {kb.shape}"
    assert np.array_equal(kb.data[:, :, :3], ka.data), \
        ("a second update of 1 position: the first 3 keys it returns should be those the first update returned; "
         f"they differ by up to {fmt(np.abs(kb.data[:, :, :3] - ka.data).max())} (codes or scales read at other positions?)")
    assert c.lengths == [0, 4], f"expected lengths [0, 4], got {c.lengths}"
    scales = c.key_scales.copy()
    try:
        c.update(np.ones((1, 2, 3, 4)), np.ones((1, 2, 3, 4)), 1)
    except ValueError as e:
        assert "4" in str(e) and "6" in str(e) and "3" in str(e), f"adding 3 to a layer holding 4 of 6: the error should say so, got: {e}"
    else:
        raise AssertionError("update past max_len (4 held, 6 max, 3 more) should raise ValueError")
    assert c.lengths == [0, 4] and np.array_equal(c.key_scales, scales), "a refused update must change nothing (lengths, scales)"
    f32, i8 = KVCache(2, 1, 4, 1024, 32), Int8KVCache(2, 1, 4, 1024, 32)
    assert f32.nbytes / i8.nbytes > 3.7, f"course GPT shape: float32 {f32.nbytes:,} bytes, int8 {i8.nbytes:,}: expected about 3.8x fewer"
print("Task 18.5 visible tests passed")

# %% [markdown]
# ### Systems analysis: batch sizes, and what int8 costs
#
# The course GPT, vectorized (Module 17), generating greedily after the
# prompt above, every row the same prompt. Each batch size is timed with
# `measure` in this cell; tokens per second is `B x new tokens` over the
# median time of a whole `generate_batch` call, with the rate at the p90
# time beside it. Both caches run at each batch size.

# %%
BATCH_TOKENS = 16 if grading else 64
BATCHES = [1, 8] if grading else [1, 8, 32]
print(f"{'B':>3} {'cache':>8} {'tokens/s (p90)':>20} {'cache bytes':>12} {'rows = batch 1':>15}")
alone = generate_batch(fast_gpt, [prompt_ids], BATCH_TOKENS)[0]
notes = []
for b in BATCHES:
    for cls in (KVCache, Int8KVCache):
        out = {}
        t = measure(lambda: out.update(ids=generate_batch(fast_gpt, [prompt_ids] * b, BATCH_TOKENS, cache_class=cls)),
                    repeats=3, warmup=1, number=1)
        nbytes = cls(gpt.n_layers, b, gpt.n_heads, len(prompt_ids) + BATCH_TOKENS, gpt.d_model // gpt.n_heads).nbytes
        same = all(np.array_equal(row, alone) for row in out["ids"]) if cls is KVCache else None
        rate = f"{b * BATCH_TOKENS / t.median:,.0f} ({b * BATCH_TOKENS / t.p90:,.0f})"
        print(f"{b:>3} {'float32' if cls is KVCache else 'int8':>8} {rate:>20} {nbytes:>12,} "
              f"{('yes' if same else 'NO') if same is not None else '':>15}")
        notes += [t.noisy] if t.noisy else []
if notes:
    print(f"note: {notes[0]}")

# %% [markdown]
# Read the tokens per second down the float32 rows: a step for `B` rows costs
# far less than `B` steps, as long as the fixed cost of a step dominates. The
# int8 rows pay for quantizing each new position and for dequantizing every
# stored position at every step: the price of the smaller cache is paid in
# time, and it grows with the length.
#
# How close are its logits? `compare_caches` (given) generates greedily from
# each prompt with both caches, and also feeds the float32 cache's tokens
# through both (teacher forcing), so the logits of every step can be compared
# on the same input. Here on prompts from the validation text, the same
# length as the prompt above:

# %% tags=["export"]
def validation_prompts(tokenizer, count: int, length: int) -> np.ndarray:
    """Given: `count` prompts of `length` characters, evenly spaced over the corpus's validation split -> (count, length) int64."""
    from tinytorch_lib.tokenization import load_corpus

    text = load_corpus("val")
    starts = np.linspace(0, len(text) - length, count).astype(int)
    return np.stack([tokenizer.encode(text[i:i + length]) for i in starts]).astype(np.int64)


def compare_caches(model, prompts, max_new_tokens: int, cache_class=None) -> dict:
    """Given: greedy generation of every row of prompts (B, n) with the float32 KVCache and with `cache_class`
    (default Int8KVCache), batched. -> {"tokens": (float32 ids, other ids) each (B, n + new),
    "first_divergence": per row the index of the first new token that differs, or None,
    "max_logit_diff": the largest |logit difference| of any row, step and id when both caches are fed the
    float32 cache's tokens}."""
    cache_class = cache_class or Int8KVCache
    ref = generate_batch(model, prompts, max_new_tokens)
    other = generate_batch(model, prompts, max_new_tokens, cache_class=cache_class)
    n = ref.shape[1] - max_new_tokens
    logits = []
    with no_grad():
        for cls in (KVCache, cache_class):
            cache = cls(model.n_layers, ref.shape[0], model.n_heads, ref.shape[1], model.d_model // model.n_heads)
            steps = [model(ref[:, :n], cache=cache).data[:, -1]]
            steps += [model(ref[:, i:i + 1], cache=cache).data[:, -1] for i in range(n, ref.shape[1] - 1)]
            logits.append(np.stack(steps))
    differ = ref[:, n:] != other[:, n:]
    first = [int(np.argmax(row)) if row.any() else None for row in differ]
    return {"tokens": (ref, other), "first_divergence": first,
            "max_logit_diff": float(np.abs(logits[0] - logits[1]).max())}

# %%
val_prompts = validation_prompts(tok, 8 if grading else 32, len(prompt_ids))
agree = compare_caches(fast_gpt, val_prompts, BATCH_TOKENS)
diverged = [i for i in agree["first_divergence"] if i is not None]
print(f"{len(val_prompts)} validation prompts of {val_prompts.shape[1]} characters, {BATCH_TOKENS} new tokens each: "
      f"int8 and float32 caches agree on every greedy token for {len(val_prompts) - len(diverged)} of them"
      + (f"; the others first differ at new tokens {sorted(diverged)}" if diverged else ""))
print(f"largest |logit difference| at any step, same input: {agree['max_logit_diff']:.3g}")

# %% [markdown]
# A token can differ where the float32 logits of its top two ids are closer
# than the int8 error; from there on the two texts go separate ways. Milestone
# 06 (part 2, Table 3c) measures all of this with batches up to 64 and 256
# new tokens, beside generation without any cache.
#
# ## Summary
#
# - A KV cache stores each layer's keys and values, preallocated as
#   `(n_layers, batch, heads, max_len, head_dim)`, so each step writes one
#   position and reads a view of all of them: no copying of the past.
# - It plugs into Module 12's seam (`update(k, v, layer_idx)`,
#   `get_seq_length`): the prefill and the one-token steps run the same
#   attention code, and the tokens are identical to Module 13's.
# - Measured: without a cache the time per token grows with the length;
#   with it, the work per token stays flat at the cost of running the
#   library once per token, so the speedup grows with the length. The memory is
#   `2 x layers x heads x length x head_dim x bytes`.
# - A cached step is one position, so its time is mostly the library's
#   per-operation overhead; on Module 17's fused GPT the step is several times
#   cheaper (measured above) and the cache's speedup larger.
# - Part B: `B` prompts share each step's fixed cost (`generate_batch`, each
#   row's tokens those of the prompt alone), and an int8 cache with a float16
#   scale per head and position stores `D + 2` bytes where float32 stores `4D`,
#   paying for it in time per step and in logits that differ slightly.
#
# Next: `tito module export 18`. Milestone 06 runs this on your GPT.
