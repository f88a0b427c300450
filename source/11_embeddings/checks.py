"""Module 11's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible cases
and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`), every
expected value (the lookup, the loop sum of the gradient, the sinusoidal formula) and every comparison
stays here. A Tensor cannot cross, so the sandbox sends back `.data`.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import check, tensor_data

def sinusoid(max_len: int, dim: int) -> np.ndarray:
    """The definition, float64: column j uses the angle p / 10000^(2 (j // 2) / dim), sine even, cosine odd."""
    table = np.zeros((max_len, dim))
    for j in range(dim):
        angle = np.arange(max_len) / 10000.0 ** (2 * (j // 2) / dim)
        table[:, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return table


@check("test_11_1_embedding")
def embedding_(s):
    W = np.array([[0.0, 0.1], [1.0, 1.1], [2.0, 2.1]], dtype=np.float32)
    got = tensor_data(s, "embedding(np.array([[2, 0, 2]]), W)", "embedding(np.array([[2, 0, 2]]), W)", W=W)
    assert got.shape == (1, 3, 2), f"ids (1, 3), weight (3, 2): expected shape (1, 3, 2), got {got.shape}"
    assert np.array_equal(got, W[[[2, 0, 2]]]), \
        f"worked example, ids [[2, 0, 2]]: expected [[[2, 2.1], [0, 0.1], [2, 2.1]]], got {got.tolist()}"
    assert got.dtype == np.float32, f"float32 weight: expected a float32 output, got {got.dtype}"
    rng = np.random.default_rng(0)
    Wr = rng.standard_normal((65, 8)).astype(np.float32)
    s.run("Wr = w", w=Wr)
    ids = rng.integers(0, 65, (4, 7))
    got = tensor_data(s, "embedding(ids (4, 7), Wr)", "embedding(ids, Wr)", ids=ids)
    assert got.shape == (4, 7, 8) and np.array_equal(got, Wr[ids]), \
        f"ids (4, 7) from a 65-row (65, 8) table: expected weight[ids] of shape (4, 7, 8), got shape {got.shape}"
    s.expect_error("embedding(np.array([[1, 2, 3, 70, 99]]), Wr)", "embedding of id 70 with a (65, 8) weight",
                   ("70", "65"))
    s.expect_error("embedding(np.array([0.0, 1.0], dtype=np.float32), Wr)", "embedding of float32 ids [0.0, 1.0]",
                   ("float32",), error="TypeError")
    for shape in [(5,), (2, 3, 4), (1, 1)]:
        ids = rng.integers(0, 65, shape)
        got = tensor_data(s, f"embedding of ids {shape}", "embedding(ids, Wr)", ids=ids)
        assert got.shape == shape + (8,) and np.array_equal(got, Wr[ids]), \
            f"ids of shape {shape} from a (65, 8) table: expected weight[ids] of shape {shape + (8,)}, got shape {got.shape}"
    ids32 = rng.integers(0, 65, (3, 4)).astype(np.int32)
    got = tensor_data(s, "embedding of int32 ids (3, 4)", "embedding(ids, Wr)", ids=ids32)
    assert got.shape == (3, 4, 8) and np.array_equal(got, Wr[ids32]), "int32 ids (3, 4): expected weight[ids]"
    got = tensor_data(s, "embedding of an int32 Tensor of ids (3, 4)", "embedding(Tensor(ids), Wr)", ids=ids32)
    assert got.shape == (3, 4, 8) and np.array_equal(got, Wr[ids32]), \
        "ids given as an int32 Tensor (3, 4): expected weight[ids]"
    W64 = rng.standard_normal((10, 3))
    got = tensor_data(s, "embedding with a float64 weight", "embedding(np.array([1, 2]), w)", w=W64)
    assert got.dtype == np.float64 and np.array_equal(got, W64[[1, 2]]), \
        f"float64 weight (10, 3), ids [1, 2]: expected rows 1 and 2 in float64, got dtype {got.dtype}"
    for bad_ids, bad in [(np.array([[3, -1, 2]]), -1), (np.array([0, 1, 65]), 65), (np.array([[0, 1], [2, 1000]]), 1000)]:
        s.expect_error("embedding(ids, Wr)", f"embedding of ids {bad_ids.tolist()} with a 65-row table",
                       (str(bad), "65"), ids=bad_ids)
    s.expect_error("embedding(np.array([True, False]), Wr)", "embedding of boolean ids [True, False] (they are not integers)",
                   error="TypeError")


HAND_BUILT = '''
def hand_built_embedding(ids, W):
    return record("embedding", Tensor(W[ids]), (Tensor(W, requires_grad=True),), ids=ids)
'''


def backward_of(s, what: str, ids, W, g):
    got = s.value("embedding_backward(g, hand_built_embedding(ids, W))", ids=ids, W=W, g=g)
    assert isinstance(got, tuple) and len(got) == 1, \
        f"{what}: expected a one-element tuple (dweight,), got {type(got).__name__} {got!r:.80}"
    (dW,) = got
    assert isinstance(dW, np.ndarray), f"{what}: dweight should be an np.ndarray, got {type(dW).__name__}"
    return dW


def loop_sum(ids, g, rows: int) -> np.ndarray:
    want = np.zeros((rows, g.shape[-1]))
    for idx in np.ndindex(*ids.shape):
        want[ids[idx]] += g[idx]
    return want


@check("test_11_2_embedding_backward")
def embedding_backward_(s):
    s.run(HAND_BUILT)
    W = np.arange(6, dtype=np.float32).reshape(3, 2)
    g = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]], dtype=np.float32)
    dW = backward_of(s, "worked example", np.array([2, 0, 2]), W, g)
    assert dW.shape == (3, 2) and dW.dtype == np.float32, \
        f"weight (3, 2) float32: expected dweight (3, 2) float32, got {dW.shape} {dW.dtype}"
    want = np.array([[10.0, 20.0], [0.0, 0.0], [101.0, 202.0]])
    assert np.array_equal(dW, want), (f"worked example, ids [2, 0, 2], grad [[1, 2], [10, 20], [100, 200]]: expected "
                                      f"{want.tolist()} (id 2 occurs twice: its rows add up), got {dW.tolist()}")
    rng = np.random.default_rng(1)
    W = rng.standard_normal((7, 4))
    ids = rng.integers(0, 7, (3, 5))
    g = rng.standard_normal((3, 5, 4))
    want = loop_sum(ids, g, 7)
    dW = backward_of(s, "ids (3, 5) from 7 rows", ids, W, g)
    assert dW.shape == (7, 4) and np.allclose(dW, want), \
        f"ids (3, 5) from 7 rows, grad (3, 5, 4): expected the loop sum {np.round(want, 3).tolist()}, got {np.round(dW, 3).tolist()}"
    W = rng.standard_normal((50, 3))
    ids = rng.integers(0, 5, (4, 6, 2))  # many repeats, most rows untouched
    g = rng.standard_normal((4, 6, 2, 3))
    want = loop_sum(ids, g, 50)
    dW = backward_of(s, "ids (4, 6, 2) from a 50-row table", ids, W, g)
    assert dW.shape == (50, 3) and np.allclose(dW, want), \
        f"ids (4, 6, 2) in 0..4 from a (50, 3) table, grad (4, 6, 2, 3): differs from the loop sum (got shape {dW.shape})"
    assert np.all(dW[5:] == 0), "rows 5..49 occur in no position: their gradient should be exactly 0"
    dW = backward_of(s, "float32 weight (50, 3)", ids, W.astype(np.float32), g.astype(np.float32))
    assert dW.dtype == np.float32 and dW.shape == (50, 3), \
        f"float32 weight (50, 3): expected dweight float32 (50, 3), got {dW.dtype} {dW.shape}"


@check("test_11_3_positions")
def positions(s):
    want = sinusoid(3, 4)
    s.run("_out = sinusoidal_positions(3, 4)")
    kind, pe = s.value("(type(_out).__name__, _out if isinstance(_out, np.ndarray) else None)")
    assert pe is not None, f"sinusoidal_positions(3, 4): expected a float32 ndarray (3, 4), got {fmt(kind)}"
    assert pe.shape == (3, 4) and pe.dtype == np.float32, \
        f"sinusoidal_positions(3, 4): expected a float32 ndarray (3, 4), got {pe.dtype} {pe.shape}"
    assert np.allclose(pe, want, atol=1e-4), \
        f"sinusoidal_positions(3, 4), worked example: expected {np.round(want, 4).tolist()}, got {np.round(pe, 4).tolist()}"
    s.run("enc = SinusoidalPositionalEncoding(16, 4); x = Tensor(np.zeros((2, 3, 4), dtype=np.float32))")
    y = tensor_data(s, "SinusoidalPositionalEncoding(16, 4) on zeros (2, 3, 4)", "enc(x)")
    assert y.shape == (2, 3, 4), f"(2, 3, 4) input: expected a (2, 3, 4) Tensor, got shape {y.shape}"
    assert np.allclose(y[1], want, atol=1e-4), \
        f"zeros (2, 3, 4) + pe, offset 0: expected rows 0..2 of the table in each batch entry, got {np.round(y[1], 4).tolist()}"
    y5 = tensor_data(s, "enc(x, offset=5)", "enc(x, offset=5)")
    assert y5.shape == (2, 3, 4) and np.allclose(y5[0], sinusoid(16, 4)[5:8], atol=1e-6), \
        "offset 5, seq 3: expected rows 5..7 of the table"
    s.expect_error("enc(x, offset=14)", "offset 14 + seq 3 = 17 positions with max_len 16", ("14", "16"))
    for max_len, dim in [(50, 7), (9, 1), (1024, 128)]:
        pe = s.value("sinusoidal_positions(max_len, dim)", max_len=max_len, dim=dim)
        assert isinstance(pe, np.ndarray) and pe.shape == (max_len, dim) and pe.dtype == np.float32, \
            f"sinusoidal_positions({fmt(max_len)}, {fmt(dim)}): expected float32 ({fmt(max_len)}, {fmt(dim)}), got {getattr(pe, 'dtype', type(pe).__name__)} {getattr(pe, 'shape', '')}"
        ref = sinusoid(max_len, dim)
        err = np.abs(pe - ref)
        at = tuple(int(i) for i in np.unravel_index(err.argmax(), err.shape))
        assert err.max() <= 1e-6 + 1e-5 * np.abs(ref[at]), \
            f"sinusoidal_positions({fmt(max_len)}, {fmt(dim)}): differs from the formula, e.g. at [p, column] = {list(at)}: " \
            f"expected {ref[at]:.6f}, got {pe[at]:.6f}"
    xr = np.random.default_rng(3).standard_normal((3, 6, 7)).astype(np.float32)
    s.run("enc = SinusoidalPositionalEncoding(20, 7)")
    got = tensor_data(s, "enc(Tensor(xr), offset=14)", "enc(Tensor(xr), offset=14)", xr=xr)
    assert got.shape == (3, 6, 7) and np.allclose(got, xr + sinusoid(20, 7)[14:20], atol=1e-6), \
        "x (3, 6, 7), offset 14, max_len 20 (exactly full): expected x + pe[14:20]"
    s.run("learned = LearnedPositionalEncoding(10, 7, rng=0); got = learned(Tensor(xr), offset=2)", xr=xr)
    table, got = s.value("(learned.pe.data, got.data)")
    assert got.shape == (3, 6, 7) and np.allclose(got, xr + table[2:8]), "learned encoding, offset 2: expected x + pe[2:8]"
    error = s.raises("got.backward(np.ones(got.shape, dtype=np.float32))")
    grad = None if error else s.value("None if learned.pe.grad is None else learned.pe.grad.data")
    want_grad = np.zeros((10, 7), dtype=np.float32)
    want_grad[2:8] = 3.0
    assert grad is not None and grad.shape == (10, 7) and np.allclose(grad, want_grad), \
        ("learned encoding, x (3, 6, 7), offset 2, gradient of ones: pe's gradient should be 3 (the batch) at rows 2..7, "
         "0 elsewhere; the slice must be a recorded Tensor op" +
         (f" (backward raised {error.said})" if error else " (pe.grad is None)" if grad is None else ""))
    for shape, kwargs in [((2, 5, 8), {}), ((5, 7), {}), ((3, 6, 7), {"offset": -1}), ((3, 6, 7), {"offset": 15})]:
        s.expect_error("enc(Tensor(np.zeros(shape)), **kwargs)",
                       f"SinusoidalPositionalEncoding(20, 7) on x {shape} with {kwargs}", shape=shape, kwargs=kwargs)
    s.expect_error("enc(Tensor(np.zeros((2, 5, 8))))", "x (2, 5, 8) into dim 7", ("(2, 5, 8)",))
