"""Library tests for tinytorch_lib.attention (Module 12): heads, causal mask, attention, MultiHeadAttention.

Forward passes against float64 numpy oracles with explicit loops, gradients against float64
central finite differences (Module 05's gradcheck), causality, and the cache seam with a tiny
list-based cache following the protocol (update(k, v, layer_idx), get_seq_length(layer_idx)).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch_lib.attention import (MultiHeadAttention, causal_mask, merge_heads, scaled_dot_product_attention,
                                     split_heads)
from tinytorch_lib.autograd import gradcheck
from tinytorch_lib.tensor import Tensor, no_grad


class ListCache:
    """The cache protocol in its simplest form: per layer, concatenate the new keys and values."""

    def __init__(self):
        self.keys, self.values, self.calls = {}, {}, []

    def update(self, k, v, layer_idx):
        assert isinstance(k, Tensor) and isinstance(v, Tensor) and k.ndim == 4 and k.shape == v.shape
        self.calls.append((layer_idx, k.shape))
        if layer_idx in self.keys:
            self.keys[layer_idx] = np.concatenate([self.keys[layer_idx], k.data], axis=2)
            self.values[layer_idx] = np.concatenate([self.values[layer_idx], v.data], axis=2)
        else:
            self.keys[layer_idx], self.values[layer_idx] = k.data, v.data
        return Tensor(self.keys[layer_idx]), Tensor(self.values[layer_idx])

    def get_seq_length(self, layer_idx=0):
        return self.keys[layer_idx].shape[2] if layer_idx in self.keys else 0


def attention_oracle(q, k, v, causal):
    """float64, one (batch, head, query) row at a time, mask by explicit comparison."""
    batch, heads, s_q, d = q.shape
    s_k = k.shape[2]
    out = np.zeros((batch, heads, s_q, d))
    for b in range(batch):
        for h in range(heads):
            for i in range(s_q):
                scores = np.array([q[b, h, i] @ k[b, h, j] / np.sqrt(d) for j in range(s_k)])
                allowed = np.array([(not causal) or j <= s_k - s_q + i for j in range(s_k)])
                scores = np.where(allowed, scores, -np.inf)
                w = np.exp(scores - scores.max())
                out[b, h, i] = (w / w.sum()) @ v[b, h]
    return out


def mha_oracle(mha, x):
    """The layer in float64 numpy with its own weights, heads as column slices."""
    def lin(layer, a):
        return a @ layer.weight.data.astype(np.float64).T + layer.bias.data.astype(np.float64)
    q, k, v = lin(mha.q_proj, x), lin(mha.k_proj, x), lin(mha.v_proj, x)
    hd = mha.head_dim
    out = np.zeros(x.shape[:2] + (mha.d_model,))
    for h in range(mha.n_heads):
        cols = slice(h * hd, (h + 1) * hd)
        qh, kh, vh = (a[:, :, cols][:, None] for a in (q, k, v))
        out[:, :, cols] = attention_oracle(qh, kh, vh, True)[:, 0]
    return lin(mha.out_proj, out)


# ---- heads ----

@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 3), seq=st.integers(1, 5), heads=st.integers(1, 4), hd=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_split_then_merge_is_the_identity_and_head_h_is_column_block_h(batch, seq, heads, hd, seed):
    x = np.random.default_rng(seed).standard_normal((batch, seq, heads * hd))
    h = split_heads(Tensor(x), heads)
    assert h.shape == (batch, heads, seq, hd)
    for i in range(heads):
        assert np.array_equal(h.data[:, i], x[:, :, i * hd:(i + 1) * hd])
    assert np.array_equal(merge_heads(h).data, x)


def test_head_errors_name_the_shapes():
    with pytest.raises(ValueError, match="d_model 10 is not divisible by n_heads 4"):
        split_heads(Tensor(np.zeros((2, 3, 10))), 4)
    with pytest.raises(ValueError, match=r"\(3, 10\)"):
        split_heads(Tensor(np.zeros((3, 10))), 2)
    with pytest.raises(ValueError, match=r"\(2, 3, 10\)"):
        merge_heads(Tensor(np.zeros((2, 3, 10))))


# ---- the mask ----

@settings(max_examples=40, deadline=None)
@given(s_k=st.integers(1, 12), data=st.data())
def test_causal_mask_is_the_last_rows_of_the_square_mask(s_k, data):
    s_q = data.draw(st.integers(1, s_k))
    m = causal_mask(s_q, s_k)
    assert m.dtype == bool and m.shape == (s_q, s_k)
    assert np.array_equal(m, np.tril(np.ones((s_k, s_k), dtype=bool))[-s_q:])
    assert m[:, 0].all(), "every query sees key 0"


@pytest.mark.parametrize("s_q, s_k", [(0, 3), (5, 3)])
def test_causal_mask_rejects_more_queries_than_keys(s_q, s_k):
    with pytest.raises(ValueError, match=f"s_q={s_q}, s_k={s_k}"):
        causal_mask(s_q, s_k)


# ---- scaled dot-product attention ----

@pytest.mark.parametrize("s_q, s_k, causal", [(4, 4, True), (4, 4, False), (2, 6, True), (1, 5, True), (3, 5, False)])
def test_attention_against_the_loop_oracle_float64(s_q, s_k, causal):
    rng = np.random.default_rng(s_q * 10 + s_k)
    q, k, v = rng.standard_normal((2, 3, s_q, 4)), rng.standard_normal((2, 3, s_k, 4)), rng.standard_normal((2, 3, s_k, 4))
    got = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
    assert got.shape == (2, 3, s_q, 4) and got.dtype == np.float64
    assert np.allclose(got.data, attention_oracle(q, k, v, causal), atol=1e-12)


def test_attention_keeps_float32_and_raises_no_floating_point_warnings():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 6, 8)).astype(np.float32) * 30 for _ in range(3))
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the point of the mask
        out = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v))
    assert out.dtype == np.float32 and np.isfinite(out.data).all()


@pytest.mark.parametrize("s_q, s_k", [(3, 3), (2, 4)])
def test_attention_gradcheck_float64(s_q, s_k):
    rng = np.random.default_rng(1)
    report = gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True),
                       [rng.standard_normal((2, 2, s_q, 3)), rng.standard_normal((2, 2, s_k, 3)),
                        rng.standard_normal((2, 2, s_k, 3))])
    assert report["max_abs"] < 1e-6


def test_attention_shape_errors_name_the_shapes():
    bad = [((2, 3, 5, 4), (2, 3, 5, 8), (2, 3, 5, 8)), ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 5, 4)),
           ((3, 5, 4), (3, 5, 4), (3, 5, 4)), ((2, 3, 5, 4), (1, 3, 5, 4), (1, 3, 5, 4))]
    for shapes in bad:
        with pytest.raises(ValueError) as e:
            scaled_dot_product_attention(*(np.zeros(s) for s in shapes))
        assert all(str(s) in str(e.value) for s in shapes), str(e.value)
    with pytest.raises(ValueError, match="s_q=5, s_k=3"):
        scaled_dot_product_attention(np.zeros((1, 1, 5, 4)), np.zeros((1, 1, 3, 4)), np.zeros((1, 1, 3, 4)))


# ---- MultiHeadAttention ----

def test_mha_structure_and_bad_construction():
    mha = MultiHeadAttention(16, 4, rng=0)
    assert [n for n, _ in mha.named_children()] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert all(m.in_features == m.out_features == 16 for m in mha.children())
    assert mha.head_dim == 4 and len(mha.parameters()) == 8
    with pytest.raises(ValueError, match="d_model 10 is not divisible by n_heads 4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="positive int"):
        MultiHeadAttention(16, 0)
    with pytest.raises(ValueError, match=r"\(2, 5, 8\)"):
        mha(Tensor(np.zeros((2, 5, 8), dtype=np.float32)))


def test_mha_against_the_float64_oracle():
    mha = MultiHeadAttention(12, 3, rng=1)
    x = np.random.default_rng(2).standard_normal((2, 5, 12)).astype(np.float32)
    y = mha(Tensor(x))
    assert y.shape == (2, 5, 12) and y.dtype == np.float32
    assert np.allclose(y.data, mha_oracle(mha, x.astype(np.float64)), atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_causality_changing_position_t_plus_1_never_changes_outputs_up_to_t(t, seed):
    rng = np.random.default_rng(seed)
    mha = MultiHeadAttention(8, 2, rng=seed)
    x = rng.standard_normal((2, 8, 8)).astype(np.float32)
    x2 = x.copy()
    x2[:, t + 1] += rng.standard_normal((2, 8)).astype(np.float32) * 5
    with no_grad():
        y, y2 = mha(Tensor(x)).data, mha(Tensor(x2)).data
    assert np.array_equal(y[:, :t + 1], y2[:, :t + 1])
    assert not np.allclose(y[:, t + 1], y2[:, t + 1]), "the changed position itself should change"


def test_mha_gradcheck_float64_through_the_layer():
    mha = MultiHeadAttention(4, 2, rng=3)

    def f(x, wq, wk, wv, wo):
        # the checked inputs become the layer's weights (plain Tensors replace the Parameters)
        mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight, mha.out_proj.weight = wq, wk, wv, wo
        return mha(x)

    rng = np.random.default_rng(4)
    report = gradcheck(f, [rng.standard_normal((1, 3, 4))] + [rng.standard_normal((4, 4)) for _ in range(4)])
    assert report["max_abs"] < 1e-6


@pytest.mark.parametrize("chunks", [[1] * 7, [4, 1, 1, 1], [3, 4], [7]])
def test_the_cache_seam_token_by_token_equals_the_whole_sequence(chunks):
    mha = MultiHeadAttention(12, 3, rng=5)
    x = np.random.default_rng(6).standard_normal((2, 7, 12)).astype(np.float32)
    with no_grad():
        whole = mha(Tensor(x)).data
        cache, parts, start = ListCache(), [], 0
        for size in chunks:
            parts.append(mha(Tensor(x[:, start:start + size]), cache=cache, layer_idx=1).data)
            start += size
            assert cache.get_seq_length(1) == start
    assert np.allclose(np.concatenate(parts, axis=1), whole, atol=1e-5)
    assert [c[0] for c in cache.calls] == [1] * len(chunks), "update is called once per forward with layer_idx"
    assert [c[1] for c in cache.calls] == [(2, 3, size, 4) for size in chunks], "update receives only the new tokens"


def test_two_layers_share_one_cache_by_layer_idx():
    a, b = MultiHeadAttention(8, 2, rng=7), MultiHeadAttention(8, 2, rng=8)
    x = np.random.default_rng(9).standard_normal((1, 5, 8)).astype(np.float32)
    with no_grad():
        whole = b(a(Tensor(x))).data
        cache = ListCache()
        steps = [b(a(Tensor(x[:, i:i + 1]), cache=cache, layer_idx=0), cache=cache, layer_idx=1).data for i in range(5)]
    assert np.allclose(np.concatenate(steps, axis=1), whole, atol=1e-5)
    assert cache.get_seq_length(0) == cache.get_seq_length(1) == 5
