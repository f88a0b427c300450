"""Module 02's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`), every
expected value and comparison stays here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check

# What the activation returned, as data: (data, dtype, type name of the result).
DESCRIBE = "(_y.data if isinstance(_y, Tensor) else None, getattr(_y, 'dtype', None), type(_y).__name__)"


def act(s, name: str, x, strict: bool = False):
    """(data, dtype) of `name(Tensor(x))` computed by the student's code; AssertionError when not a Tensor.
    strict: with numpy's overflow and invalid errors raised, as the notebook's tests do (an overflow fails)."""
    call = f"_y = {name}(Tensor(x))"
    try:
        s.run(f"with np.errstate(over='raise', invalid='raise'):\n    {call}" if strict else call, x=x)
    except StudentError as e:
        if e.type != "FloatingPointError":
            raise
        raise AssertionError(f"{name} on {x.dtype} input of shape {x.shape} (values {show(x)}) must not overflow, "
                             f"but numpy reported: {e.message}" + (f" (at {e.at})" if e.at else "")) from None
    data, dtype, kind = s.value(DESCRIBE)
    assert data is not None, f"{name} should return a Tensor, got {fmt(kind)}"
    return data, dtype


def show(a) -> str:
    return np.array2string(np.asarray(a), precision=4, threshold=12)


@check("test_02_1_relu")
def relu(s):
    x = np.array([[-2.0, 0.0, 3.0], [1.5, -0.5, 7.0]], dtype=np.float32)
    got, dtype = act(s, "ReLU()", x)
    assert got.shape == (2, 3), f"ReLU of a (2, 3) tensor: expected shape (2, 3), got {got.shape}"
    want = np.maximum(x, 0)
    assert np.array_equal(got, want), f"ReLU([[-2, 0, 3], [1.5, -0.5, 7]]): expected {show(want)}, got {show(got)}"
    assert dtype == np.float32, f"float32 in should give float32 out, got {dtype}"
    r = np.random.default_rng(0).standard_normal((5, 7, 3))
    got, dtype = act(s, "ReLU()", r)
    assert got.shape == r.shape and np.array_equal(got, np.maximum(r, 0)), \
        "ReLU on a random float64 (5, 7, 3) array: expected max(0, x) elementwise"
    assert dtype == np.float64, f"ReLU of float64 input: float64 in, float64 out, got {dtype}"
    _, dtype = act(s, "ReLU()", np.array([-1, 2]))
    assert dtype == np.float32, f"ReLU(Tensor([-1, 2])): int input becomes float32, got {dtype}"


@check("test_02_2_sigmoid")
def sigmoid(s):
    x = np.array([0.0, 2.0, -2.0], dtype=np.float32)
    got, _ = act(s, "Sigmoid()", x)
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert got.shape == (3,) and np.allclose(got, want, atol=1e-6), \
        f"sigmoid([0, 2, -2]): expected {show(want)}, got {show(got)}"
    big = np.array([-1000.0, 1000.0], dtype=np.float32)
    got, dtype = act(s, "Sigmoid()", big, strict=True)
    assert np.allclose(got, [0.0, 1.0]), f"sigmoid([-1000, 1000]): expected [0, 1], got {show(got)}"
    assert dtype == np.float32, f"float32 in should give float32 out, got {dtype}"
    r = np.random.default_rng(1).standard_normal((4, 6)) * 30
    got, dtype = act(s, "Sigmoid()", r, strict=True)
    assert got.shape == r.shape and np.allclose(got, 0.5 * (1 + np.tanh(r / 2)), atol=1e-12), \
        f"sigmoid on a random float64 (4, 6) array of scale 30: expected 1 / (1 + exp(-x)) to 1e-12 (float64 {dtype})"
    neg, _ = act(s, "Sigmoid()", -r, strict=True)
    assert np.allclose(got + neg, 1.0), "sigmoid(x) + sigmoid(-x) should be 1 (random float64 (4, 6) of scale 30)"


@check("test_02_3_tanh_gelu")
def tanh_gelu(s):
    x = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    t, tdtype = act(s, "Tanh()", x)
    assert np.allclose(t, np.tanh(x), atol=1e-6), f"tanh([-1, 0, 1]): got {show(t)}"
    g, gdtype = act(s, "GELU()", np.array([0.0, 1.0, -1.0], dtype=np.float32))
    assert np.allclose(g, [0.0, 0.8412, -0.1588], atol=1e-4), \
        f"gelu([0, 1, -1]): expected [0, 0.8412, -0.1588], got {show(g)}"
    assert gdtype == np.float32 and tdtype == np.float32, f"float32 in should give float32 out, got {gdtype}, {tdtype}"
    r = np.random.default_rng(2).standard_normal((3, 50)) * 4
    ref = 0.5 * r * (1 + np.tanh(np.sqrt(2 / np.pi) * (r + 0.044715 * r**3)))
    got, _ = act(s, "GELU()", r)
    assert got.shape == r.shape and np.allclose(got, ref, atol=1e-12), \
        "GELU on a random float64 (3, 50) array of scale 4: expected the tanh approximation to 1e-12"
    got, _ = act(s, "Tanh()", r)
    assert got.shape == r.shape and np.allclose(got, np.tanh(r)), "Tanh on a random float64 (3, 50) array"
    far, _ = act(s, "GELU()", np.array([-30.0, 30.0], dtype=np.float32), strict=True)
    assert np.allclose(far, [0.0, 30.0], atol=1e-5), \
        f"GELU([-30, 30]) far from 0 behaves like ReLU: expected [0, 30] without overflow, got {show(far)}"


@check("test_02_4_softmax")
def softmax(s):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    p, _ = act(s, "Softmax()", x)
    assert p.shape == (2, 3), f"Softmax of a (2, 3) tensor: expected shape (2, 3), got {p.shape}"
    assert np.allclose(p.sum(axis=-1), 1.0), f"each row should sum to 1, got {show(p.sum(axis=-1))}"
    assert np.allclose(p[1], 1 / 3), f"equal logits give equal probabilities, got {show(p[1])}"
    big, _ = act(s, "Softmax()", np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32), strict=True)
    assert not np.isnan(big).any(), f"logits of 1000 gave NaN: {show(big)}"
    assert np.allclose(big, [[0.0900, 0.2447, 0.6652]], atol=1e-4), f"softmax([1000, 1001, 1002]): got {show(big)}"
    r = np.random.default_rng(3).standard_normal((2, 5, 7)) * 50
    for axis in (-1, 0, 1):
        got, _ = act(s, f"Softmax(axis={axis})", r, strict=True)
        e = np.exp(r - r.max(axis=axis, keepdims=True))
        assert got.shape == r.shape and np.allclose(got, e / e.sum(axis=axis, keepdims=True)), \
            f"Softmax(axis={fmt(axis)}) of a random float64 (2, 5, 7) array of scale 50: should sum to 1 along axis {fmt(axis)}"
    shifted, _ = act(s, "Softmax()", r + 123.0)
    plain, _ = act(s, "Softmax()", r)
    assert np.allclose(shifted, plain), "softmax should be shift invariant: softmax(x + 123) == softmax(x)"
    _, dtype = act(s, "Softmax()", r.astype(np.float32))
    assert dtype == np.float32, f"Softmax of float32 input: float32 in, float32 out, got {dtype}"
