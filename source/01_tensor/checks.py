"""Module 01's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check


def dtype_and_nbytes(s, make: str, **inputs):
    return s.value(f"(lambda t: (type(t.data).__name__, t.shape, t.dtype, t.nbytes))({make})", **inputs)


@check("test_01_1_tensor")
def tensor(s):
    kind, shape, dtype, nbytes = dtype_and_nbytes(s, "Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])")
    assert kind == "ndarray", f"self.data should be an np.ndarray, got {fmt(kind)}"
    assert shape == (2, 3), f"shape: expected (2, 3), got {shape}"
    assert dtype == np.float32, f"a list of Python floats should become float32, got {dtype}"
    assert nbytes == 24, f"nbytes of a (2, 3) float32 tensor: expected 6 * 4 = 24, got {nbytes}"
    _, _, dtype, nbytes = dtype_and_nbytes(s, "Tensor(a)", a=np.array([1, -2, 127], dtype=np.int8))
    assert dtype == np.int8 and nbytes == 3, f"an int8 array of 3 values must stay int8, 3 bytes; got {dtype}, {nbytes}"
    _, _, dtype, nbytes = dtype_and_nbytes(s, "Tensor([1, 2, 3], dtype=np.float16)")
    assert dtype == np.float16 and nbytes == 6, f"dtype=float16: expected float16 and 6 bytes, got {dtype}, {nbytes}"
    _, _, dtype, nbytes = dtype_and_nbytes(s, "Tensor(np.zeros((4, 5), dtype=np.float64))")
    assert dtype == np.float64 and nbytes == 160, \
        f"Tensor(np.zeros((4, 5), dtype=float64)): an existing array keeps float64 (rule 2), 160 bytes; got {dtype}, {nbytes}"
    dtype = s.value("Tensor(Tensor(a)).dtype", a=np.array([1, -2, 127], dtype=np.int8))
    assert dtype == np.int8, f"Tensor(Tensor of int8): expected int8 (rule 2), got {dtype}"
    _, shape, dtype, _ = dtype_and_nbytes(s, "Tensor(3.5)")
    assert shape == () and dtype == np.float32, f"Tensor(3.5): expected shape () and float32 (rule 3), got {shape}, {dtype}"
    dtype = s.value("Tensor([[1, 2]]).dtype")
    assert dtype.kind == "i", f"Tensor([[1, 2]]): a list of ints stays integer, got {dtype}"
    dtype = s.value("Tensor(np.float64(2.5)).dtype")
    assert dtype == np.float64, f"Tensor(np.float64(2.5)): a numpy scalar keeps its dtype (rule 2), got {dtype}"
    kind = s.value("type(Tensor(np.int8(3)).data).__name__")
    assert kind == "ndarray", f"Tensor(np.int8(3)).data: expected an np.ndarray (0-d), got {fmt(kind)}"
    _, shape, _, nbytes = dtype_and_nbytes(s, "Tensor(np.ones((7, 11, 3), dtype=np.int16))")
    assert shape == (7, 11, 3) and nbytes == 462, \
        f"Tensor(np.ones((7, 11, 3), dtype=int16)): expected shape (7, 11, 3) and 462 bytes, got {shape}, {nbytes}"


@check("test_01_2_broadcast")
def broadcast(s):
    rng = np.random.default_rng(0)
    cases = [((32, 10), (10,)), ((8, 1, 5), (6, 1)), ((), (3,)), ((3, 4), (4, 3))]
    for _ in range(200):
        cases.append(tuple(tuple(int(x) for x in rng.integers(1, 4, size=rng.integers(0, 4))) for _ in range(2)))
    for a, b in cases:
        try:
            want = np.broadcast_shapes(a, b)
        except ValueError:
            want = None
        error = s.raises("got = broadcast_shape(a, b)", a=a, b=b)
        if want is None:
            assert error is not None and error.type == "ValueError", \
                f"broadcast_shape({fmt(a)}, {b}) should raise ValueError (numpy cannot broadcast them)" + \
                (f"; it raised {error.said}" if error else "")
            if (a, b) == ((3, 4), (4, 3)):
                assert "(3, 4)" in error.message and "(4, 3)" in error.message, \
                    f"the error should name both shapes, got: {error.message}"
            continue
        if error is not None:
            raise error
        got = s.value("got")
        assert got == want, f"broadcast_shape({fmt(a)}, {b}): expected {fmt(want)}, got {fmt(got)}"


@check("test_01_3_elementwise")
def elementwise(s):
    try:
        got = s.value("broadcast_shape((2, 3), (3,))")
    except StudentError as e:
        got = e
    assert got == (2, 3), (f"Task 01.3 calls broadcast_shape from Task 01.2, and broadcast_shape((2, 3), (3,)) "
                           f"did not return (2, 3) ({got!r}): make Task 01.2's tests pass first")
    s.run("x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])")
    got = s.value("(x + Tensor([10.0, 20.0, 30.0])).data")
    assert np.allclose(got, [[11, 22, 33], [14, 25, 36]]), f"(2, 3) + (3,): got {fmt(got)}"
    assert np.allclose(s.value("(x * 2).data"), [[2, 4, 6], [8, 10, 12]]), "Tensor * number"
    assert np.allclose(s.value("(1 - x).data"), [[0, -1, -2], [-3, -4, -5]]), "number - Tensor (reflected)"
    assert np.allclose(s.value("(x / Tensor([[2.0], [4.0]])).data"), [[0.5, 1, 1.5], [1, 1.25, 1.5]]), "(2, 3) / (2, 1)"
    s.expect_error("Tensor(np.zeros((3, 4))) + Tensor(np.zeros((4, 3)))", "(3, 4) + (4, 3)", ("(3, 4)", "(4, 3)"))
    s.run("q = Tensor(np.array([1, 2, 3], dtype=np.int8))")
    dtype = s.value("(q + 1).dtype")
    assert dtype == np.int8, f"int8 tensor [1, 2, 3] + 1: expected dtype int8, got {dtype}"
    dtype = s.value("(q * q).dtype")
    assert dtype == np.int8, f"int8 tensor * int8 tensor: expected dtype int8, got {dtype}"
    r, v = np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.arange(4, dtype=np.float32)
    got = s.value("(Tensor(r) - Tensor(v)).data", r=r, v=v)
    assert got.shape == (2, 3, 4) and np.array_equal(got, r - v), \
        "(2, 3, 4) - (4,) with r = arange(24), s = arange(4): expected r.data - s.data, shape (2, 3, 4)"
    s.expect_error("Tensor(r) * Tensor(np.ones((2, 4)))", "(2, 3, 4) * (2, 4)", ("mul", "(2, 3, 4)"), r=r)


@check("test_01_4_matmul")
def matmul_(s):
    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    b = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    got = s.value("(Tensor(a) @ Tensor(b)).data", a=a, b=b)
    assert got.shape == (3, 3), f"(3, 2) @ (2, 3): expected shape (3, 3), got {got.shape}"
    assert np.allclose(got, [[1, 2, 8], [3, 4, 18], [5, 6, 28]]), f"wrong product: {fmt(got)}"
    s.expect_error("Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 2)))", "(3, 4) @ (5, 2)", ("(3, 4)", "(5, 2)", "4", "5"))
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 5, 6)).astype(np.float32)
    b = rng.standard_normal((4, 6, 7)).astype(np.float32)
    got = s.value("matmul(Tensor(a), Tensor(b)).data", a=a, b=b)
    assert got.shape == (4, 5, 7) and np.allclose(got, a @ b, atol=1e-5), \
        f"batched matmul (4, 5, 6) @ (4, 6, 7) of random float32: expected shape (4, 5, 7) equal to a @ b, got {got.shape}"
    v = rng.standard_normal(6).astype(np.float32)
    got = s.value("matmul(Tensor(m), Tensor(v)).data", m=a[0], v=v)
    assert got.shape == (5,) and np.allclose(got, a[0] @ v, atol=1e-5), \
        "matrix (5, 6) @ vector (6,): expected np.matmul's result, shape (5,)"
    s.expect_error("matmul(Tensor(a), Tensor(a))", "(4, 5, 6) @ (4, 5, 6) (inner dimensions 6 and 5)", ("6 and 5",), a=a)


@check("test_01_5_reduce")
def reduce_(s):
    s.run("x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])")
    got = s.value("x.sum().item()")
    assert np.isclose(got, 21.0), f"sum of everything: expected 21, got {fmt(got)}"
    got = s.value("x.sum(axis=0).data")
    assert np.allclose(got, [5, 7, 9]), f"sum(axis=0): got {fmt(got)}"
    got = s.value("x.mean(axis=1, keepdims=True).shape")
    assert got == (2, 1), f"mean(axis=1, keepdims=True): got shape {fmt(got)}"
    got = s.value("x.max(axis=-1).data")
    assert np.allclose(got, [3, 6]), f"max(axis=-1): got {fmt(got)}"
    s.expect_error("x.sum(axis=2)", "sum(axis=2) of a (2, 3) tensor", ("2", "(2, 3)"))
    r = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)
    s.run("t = Tensor(r)", r=r)
    got = s.value("t.mean(axis=(0, 2)).data")
    assert got.shape == (4,) and np.allclose(got, r.mean(axis=(0, 2)), atol=1e-6), \
        f"mean(axis=(0, 2)) of a (3, 4, 5) tensor: expected shape (4,) equal to numpy's, got shape {got.shape}"
    got = s.value("t.max(axis=1, keepdims=True).shape")
    assert got == (3, 1, 5), f"max(axis=1, keepdims=True) of (3, 4, 5): expected (3, 1, 5), got {fmt(got)}"
    got = s.value("t.sum(axis=-3).shape")
    assert got == (4, 5), f"sum(axis=-3) of (3, 4, 5): expected (4, 5), got {fmt(got)}"
    for bad in (3, -4):
        s.expect_error(f"t.max(axis={bad})", f"max(axis={bad}) of shape (3, 4, 5)")
    s.expect_error("reduce(t, 'median')", "reduce(t, 'median') (an unknown kind)")


@check("test_01_6_layout")
def layout(s):
    s.run("x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))")
    got = s.value("x.reshape(3, 2).shape")
    assert got == (3, 2), f"reshape(3, 2): got {fmt(got)}"
    assert s.value("x.reshape((6,)).shape") == (6,), "reshape((6,)) with a tuple"
    got = s.value("x.reshape(-1, 2).shape")
    assert got == (3, 2), f"reshape(-1, 2): expected (3, 2), got {fmt(got)}"
    got = s.value("x.T.data")
    assert np.array_equal(got, [[0, 3], [1, 4], [2, 5]]), f"x.T: got {fmt(got)}"
    s.expect_error("x.reshape(4, 2)", "reshape of 6 elements into (4, 2)", ("(2, 3)", "(4, 2)"))
    y = np.arange(120, dtype=np.int8).reshape(2, 3, 4, 5)
    s.run("y = Tensor(a)", a=y)
    got = s.value("y.transpose(0, 2, 1, 3).data")
    assert got.shape == (2, 4, 3, 5) and np.array_equal(got, np.transpose(y, (0, 2, 1, 3))), \
        f"transpose(0, 2, 1, 3) of a (2, 3, 4, 5) tensor: expected shape (2, 4, 3, 5), got {got.shape}"
    got = s.value("y.transpose().shape")
    assert got == (5, 4, 3, 2), f"transpose() of (2, 3, 4, 5): expected (5, 4, 3, 2), got {fmt(got)}"
    shape, dtype = s.value("(lambda r: (r.shape, r.dtype))(y.reshape(2, -1))")
    assert shape == (2, 60) and dtype == np.int8, \
        f"reshape(2, -1) of a (2, 3, 4, 5) int8 tensor: expected (2, 60) int8, got {shape} {dtype}"
    for bad in [(7, -1), (-1, -1)]:
        s.expect_error(f"y.reshape{bad}", f"reshape{bad} of a (2, 3, 4, 5) tensor (120 elements)")
