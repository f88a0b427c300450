"""Library tests for tinytorch_lib.embeddings (Module 11): Embedding, its backward rule, positional encodings.

Lookups against numpy indexing, gradients against a loop oracle and float64 central finite
differences, the sinusoidal table against its formula evaluated per element in Python floats.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch_lib.autograd import gradcheck
from tinytorch_lib.embeddings import (Embedding, LearnedPositionalEncoding, PositionalEncoding,
                                      SinusoidalPositionalEncoding, embedding, embedding_backward,
                                      sinusoidal_positions)
from tinytorch_lib.tensor import BACKWARD_RULES, Tensor, no_grad


def central_differences(f, x, h=1e-6):
    """d f(x) / d x[idx] for every idx, float64 central differences."""
    d = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        d[idx] = (f(plus) - f(minus)) / (2 * h)
    return d


# ---- forward ----

@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3), vocab=st.integers(1, 30), dim=st.integers(1, 6),
       seed=st.integers(0, 2**16), int32=st.booleans())
def test_lookup_equals_numpy_indexing_for_any_id_shape(shape, vocab, dim, seed, int32):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((vocab, dim)).astype(np.float32)
    ids = rng.integers(0, vocab, shape).astype(np.int32 if int32 else np.int64)
    out = embedding(ids, W)
    assert out.shape == tuple(shape) + (dim,) and out.dtype == np.float32
    assert np.array_equal(out.data, W[ids])


def test_embedding_layer_shapes_init_and_recording():
    emb = Embedding(65, 16, rng=0)
    assert emb.weight.shape == (65, 16) and emb.weight.dtype == np.float32 and emb.weight.requires_grad
    assert [n for n, _ in emb.named_parameters()] == ["weight"]
    assert abs(float(emb.weight.data.std()) - 1.0) < 0.1, "N(0, 1) initialisation as in PyTorch"
    assert np.array_equal(Embedding(65, 16, rng=0).weight.data, emb.weight.data), "an int rng is a seed"
    out = emb(np.array([[1, 2, 3]]))
    assert out.node.op == "embedding" and out.node.inputs == (emb.weight,)
    assert np.array_equal(out.node.saved["ids"], [[1, 2, 3]])
    with no_grad():
        assert emb(np.array([[1]])).node is None
    assert "embedding" in BACKWARD_RULES and BACKWARD_RULES["embedding"] is embedding_backward


@pytest.mark.parametrize("bad_id, position", [(65, (0, 3)), (-1, (1, 0)), (10**6, (1, 2))])
def test_an_id_out_of_range_names_the_id_and_the_vocabulary_size(bad_id, position):
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    ids[position] = bad_id
    with pytest.raises(ValueError) as e:
        Embedding(65, 4, rng=0)(ids)
    msg = str(e.value)
    assert str(bad_id) in msg and "65" in msg and str(position) in msg, msg


@pytest.mark.parametrize("ids", [np.array([0.0, 1.0]), np.array([True, False]), ["a", "b"]])
def test_non_integer_ids_are_a_type_error_naming_the_dtype(ids):
    with pytest.raises(TypeError, match="ids must be integers"):
        embedding(ids, np.zeros((3, 2), dtype=np.float32))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_embedding_sizes_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match="positive int"):
        Embedding(bad, 4)
    with pytest.raises(ValueError, match="positive int"):
        Embedding(4, bad)


# ---- backward ----

def test_backward_rule_against_a_loop_oracle_with_repeated_ids():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((9, 3))
    ids = rng.integers(0, 4, (3, 5))  # ids repeat, rows 4..8 untouched
    out = embedding(ids, Tensor(W, requires_grad=True))
    g = rng.standard_normal(out.shape)
    (dW,) = embedding_backward(g, out)
    want = np.zeros_like(W)
    for idx in np.ndindex(ids.shape):
        want[ids[idx]] += g[idx]
    assert dW.shape == W.shape and dW.dtype == W.dtype
    assert np.allclose(dW, want, atol=1e-12)
    assert np.all(dW[4:] == 0)


def test_backward_matches_finite_differences_float64():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((6, 4))
    ids = np.array([[5, 0, 5, 2], [2, 2, 3, 0]])
    g = rng.standard_normal((2, 4, 4))

    def loss(w):
        with no_grad():
            return float((embedding(ids, w).data * g).sum())

    t = Tensor(W.copy(), requires_grad=True)
    embedding(ids, t).backward(g)
    assert np.allclose(t.grad.data, central_differences(loss, W), atol=1e-7)


def test_gradcheck_of_embedding_then_a_nonlinear_function():
    ids = np.array([[3, 1, 3], [0, 0, 4]])
    report = gradcheck(lambda W: (embedding(ids, W) * embedding(ids, W)).sum(axis=-1),
                       [np.random.default_rng(2).standard_normal((5, 3))])
    assert report["max_abs"] < 1e-6


def test_gradient_accumulates_over_two_backward_calls_and_float32_stays_float32():
    emb = Embedding(10, 3, rng=0)
    ids = np.array([[1, 1, 2]])
    for _ in range(2):
        emb(ids).backward(np.ones((1, 3, 3), dtype=np.float32))
    assert emb.weight.grad.dtype == np.float32
    assert np.array_equal(emb.weight.grad.data[1], [4, 4, 4]) and np.array_equal(emb.weight.grad.data[2], [2, 2, 2])
    assert emb.weight.grad.data[[0, 3, 4, 5, 6, 7, 8, 9]].sum() == 0


# ---- positional encodings ----

def test_sinusoidal_table_against_the_formula_element_by_element():
    for max_len, dim in [(20, 8), (7, 5), (3, 1)]:
        pe = sinusoidal_positions(max_len, dim)
        assert pe.shape == (max_len, dim) and pe.dtype == np.float32
        for p in range(max_len):
            for j in range(dim):
                angle = p / 10000 ** (2 * (j // 2) / dim)
                want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                assert abs(pe[p, j] - want) < 1e-6, (max_len, dim, p, j)


def test_sinusoidal_dot_products_depend_only_on_the_distance():
    pe = sinusoidal_positions(200, 32).astype(np.float64)
    for d in (1, 7, 40):
        vals = [pe[p] @ pe[p + d] for p in range(0, 150, 13)]
        assert np.ptp(vals) < 1e-4, (d, vals)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_offset_adds_the_right_rows_and_is_consistent_with_a_whole_sequence(cls):
    enc = cls(32, 6)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 10, 6)).astype(np.float32)
    whole = enc(Tensor(x)).data
    assert np.allclose(whole, x + enc.pe.data[:10])
    # token by token with offset == running the whole sequence
    pieces = [enc(Tensor(x[:, t:t + 1]), offset=t).data for t in range(10)]
    assert np.allclose(np.concatenate(pieces, axis=1), whole)
    assert np.allclose(enc(Tensor(x), offset=22).data, x + enc.pe.data[22:32])  # exactly full


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_offset_plus_seq_beyond_max_len_is_a_clear_error(cls):
    enc = cls(1024, 4)
    with pytest.raises(ValueError) as e:
        enc(Tensor(np.zeros((1, 10, 4), dtype=np.float32)), offset=1020)
    assert "1020" in str(e.value) and "1024" in str(e.value) and "10" in str(e.value)
    with pytest.raises(ValueError, match="offset"):
        enc(Tensor(np.zeros((1, 2, 4), dtype=np.float32)), offset=-1)
    with pytest.raises(ValueError, match=r"\(1, 2, 5\)"):
        enc(Tensor(np.zeros((1, 2, 5), dtype=np.float32)))


def test_sinusoidal_is_a_buffer_and_learned_is_a_parameter_with_a_gradient():
    sin = SinusoidalPositionalEncoding(16, 4)
    assert sin.parameters() == [] and [n for n, _ in sin.named_buffers()] == ["pe"]
    assert list(sin.state_dict()) == ["pe"]
    learned = LearnedPositionalEncoding(16, 4, rng=0)
    assert [n for n, _ in learned.named_parameters()] == ["pe"] and learned.pe.dtype == np.float32
    assert isinstance(learned, PositionalEncoding) and isinstance(sin, PositionalEncoding)
    x = Tensor(np.zeros((3, 5, 4), dtype=np.float32), requires_grad=True)
    learned(x, offset=4).backward(np.ones((3, 5, 4), dtype=np.float32))
    want = np.zeros((16, 4), dtype=np.float32)
    want[4:9] = 3.0
    assert np.array_equal(learned.pe.grad.data, want)
    assert np.array_equal(x.grad.data, np.ones((3, 5, 4)))


def test_embedding_plus_learned_positions_gradcheck_float64():
    ids = np.array([[2, 0, 2, 1]])
    pe_rows = slice(3, 7)

    def f(W, pe):
        return embedding(ids, W) * (embedding(ids, W) + pe[pe_rows])

    r = np.random.default_rng(4)
    report = gradcheck(f, [r.standard_normal((3, 5)), r.standard_normal((8, 5))])
    assert report["max_abs"] < 1e-6
