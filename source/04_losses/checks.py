"""Module 04's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`,
`s.expect_error`), every expected value and comparison stays here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check

# What a loss call returned, as data: (type name, data, dtype, recorded op or None).
# (The data goes as its shape and its values raveled: tito/check_runner.py's encode sends a 0-d array as
# shape (1,), and a numpy scalar does not decode at all.)
DESCRIBE = ("(type(_y).__name__, np.shape(_y.data) if isinstance(_y, Tensor) else None, "
            "np.asarray(_y.data).reshape(-1) if isinstance(_y, Tensor) else None, getattr(_y, 'dtype', None), "
            "None if getattr(_y, 'node', None) is None else _y.node.op)")


def overflowed(call: str, error: StudentError, inputs: dict) -> AssertionError:
    shown = ", ".join(f"{k} = {np.array2string(np.asarray(v), precision=4, threshold=12)}" for k, v in inputs.items())
    return AssertionError(f"{call}{fmt(' with ' + shown if shown else '')} must not overflow (numpy's overflow, invalid and "
                          f"divide errors are raised here, as in the notebook's test), but numpy reported: "
                          f"{error.message}" + (f" (at {error.at})" if error.at else ""))


def loss(s, call: str, strict: bool = False, **inputs):
    """(value, dtype, op) of the 0-d Tensor `call` returns in the sandbox; AssertionError if it is not one.
    strict: with numpy's overflow, invalid and divide errors raised, as the notebook's tests do."""
    code = f"_y = {call}"
    if strict:
        code = f"with np.errstate(over='raise', invalid='raise', divide='raise'):\n    {code}"
    try:
        s.run(code, **inputs)
    except StudentError as e:
        if e.type != "FloatingPointError":
            raise
        raise overflowed(call, e, inputs) from None
    kind, shape, data, dtype, op = s.value(DESCRIBE)
    assert data is not None, f"{call} should return a 0-d Tensor, got {fmt(kind)}"
    assert shape == (), f"{call} should return a 0-d Tensor, got shape {shape}"
    return float(data[0]), dtype, op


@check("test_04_1_mse")
def mse(s):
    p = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    t = np.array([[1.0, 0.0], [3.0, 1.0]], dtype=np.float32)
    got, dtype, _ = loss(s, "MSELoss()(Tensor(p), Tensor(t))", p=p, t=t)
    assert np.isclose(got, 3.25), f"MSE of pred [[1, 2], [3, 4]] and target [[1, 0], [3, 1]]: expected 13 / 4 = 3.25, got {fmt(got)}"
    assert dtype == np.float32, f"float32 pred: expected a float32 loss, got {dtype}"
    got, _, _ = loss(s, "MSELoss()(Tensor([1.0, 2.0]), [1.0, 4.0])")
    assert np.isclose(got, 2.0), f"a plain list as target: MSE([1, 2], [1, 4]) = 2, got {fmt(got)}"
    s.expect_error("MSELoss()(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))",
                   "MSELoss on pred (4, 1) and target (4,) (it must not broadcast to (4, 4))", ("(4, 1)", "(4,)"))
    r = np.random.default_rng(0)
    p64, t64 = r.standard_normal((3, 4, 5)), r.standard_normal((3, 4, 5))
    want = np.mean((p64 - t64) ** 2)
    got, dtype, _ = loss(s, "MSELoss()(Tensor(p), t)", p=p64, t=t64)
    assert dtype == np.float64 and np.isclose(got, want), \
        f"MSE of random float64 (3, 4, 5) pred and target: expected {fmt(want)} (float64), got {fmt(got)} ({dtype})"
    _, dtype, _ = loss(s, "MSELoss()(Tensor(p), t)", p=p64.astype(np.float32), t=t64)
    assert dtype == np.float32, f"float32 pred with a float64 target: the loss should be float32, got {dtype}"
    _, _, op = loss(s, "MSELoss()(Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True), np.zeros((2, 3)))")
    assert op == "mean", \
        f"MSELoss should be built from Tensor operators, ending in .mean() (recorded as 'mean'); got op {op!r}"
    s.expect_error("MSELoss()(Tensor(np.zeros((2, 3))), np.zeros((3, 2)))", "MSELoss on (2, 3) and (3, 2)",
                   ("(2, 3)", "(3, 2)"))
    for dtype in ("float32", "float64"):
        s.run(f"_p = Tensor(np.ones((2, 3)), dtype=np.{dtype}, requires_grad=True)\n"
              f"_t = Tensor(np.zeros((2, 3)), dtype=np.{dtype}, requires_grad=True)\n"
              "_seen, _stack = [], [MSELoss()(_p, _t)]\n"
              "while _stack:\n"
              "    _n = getattr(_stack.pop(), 'node', None)\n"
              "    for _x in (_n.inputs if _n is not None else ()):\n"
              "        _seen.append(_x)\n"
              "        _stack.append(_x)\n")
        found = s.value("any(_x is _t for _x in _seen)")
        assert found, (f"{dtype} pred and target, both Tensors with requires_grad=True: the target Tensor is not in "
                       "the loss's graph, so no gradient can reach it; use a target Tensor of pred's dtype as it is")


def log_softmax_of(s, z, strict: bool = False):
    try:
        if strict:
            s.run("with np.errstate(over='raise', invalid='raise', divide='raise'):\n    _got = log_softmax(z)", z=z)
        else:
            s.run("_got = log_softmax(z)", z=z)
    except StudentError as e:
        if e.type != "FloatingPointError":
            raise
        raise overflowed("log_softmax(z)", e, {"z": z}) from None
    kind, shape, got = s.value("(type(_got).__name__, np.shape(_got) if isinstance(_got, np.ndarray) else None, "
                               "_got.reshape(-1) if isinstance(_got, np.ndarray) else None)")
    assert got is not None, f"log_softmax of a {z.shape} array should return an np.ndarray, got {fmt(kind)}"
    return got.reshape(shape)


@check("test_04_2_log_softmax")
def log_softmax_(s):
    z = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    got = log_softmax_of(s, z)
    want = np.log(np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum())
    assert got.shape == (1, 3), f"log_softmax of a (1, 3) array: expected a (1, 3) np.ndarray, got shape {got.shape}"
    assert np.allclose(got, want, atol=1e-6), f"log_softmax([[1, 2, 3]]): expected {fmt(want)}, got {fmt(got)}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    two = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    got = log_softmax_of(s, two)
    want2 = np.array([want, np.full(3, -np.log(3.0))])
    assert got.shape == (2, 3) and np.allclose(got, want2, atol=1e-6), \
        f"log_softmax([[1, 2, 3], [0, 0, 0]]): expected {want2.round(4).tolist()} (each row on its own; keepdims=True), got {fmt(got)}"
    got = log_softmax_of(s, np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32), strict=True)
    assert got.shape == (1, 3) and np.allclose(got, [[-2.4076, -1.4076, -0.4076]], atol=1e-3), \
        f"log_softmax([[1000, 1001, 1002]]): expected [[-2.4076, -1.4076, -0.4076]], got {fmt(got)}"
    r = np.random.default_rng(1).standard_normal((4, 3, 10)) * 300
    got = log_softmax_of(s, r, strict=True)
    m = r.max(axis=-1, keepdims=True)
    ref = r - m - np.log(np.exp(r - m).sum(axis=-1, keepdims=True))
    assert got.shape == (4, 3, 10) and np.allclose(got, ref, atol=1e-10), \
        f"log_softmax of random (4, 3, 10) float64 logits of scale 300: expected shape (4, 3, 10) equal to " \
        f"z - max - log(sum(exp(z - max))) along the last axis, got shape {got.shape}"
    assert np.allclose(np.exp(got).sum(axis=-1), 1.0), "exp(log_softmax) should sum to 1 along the last axis"
    far = log_softmax_of(s, np.array([[-1e4, 0.0, 1e4]], dtype=np.float32), strict=True)
    assert np.isfinite(far).all() and np.allclose(far, [[-2e4, -1e4, 0.0]]), \
        f"log_softmax([[-1e4, 0, 1e4]]): expected [[-2e4, -1e4, 0]], got {fmt(far)}"
    shifted = log_softmax_of(s, r + 55.5)
    assert np.allclose(shifted, got), "log_softmax is shift invariant: log_softmax(z + 55.5) should equal log_softmax(z)"


@check("test_04_3_cross_entropy")
def cross_entropy(s):
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], dtype=np.float32)
    s.run("logits = Tensor(l)", l=logits)
    got, dtype, _ = loss(s, "CrossEntropyLoss()(logits, np.array([0, 2]))")
    assert np.isclose(got, 1.4185, atol=1e-3), \
        f"logits [[2, 1, 0.1], [0.5, 2.5, 0.3]], labels [0, 2]: expected 1.4185, got {fmt(got)}"
    assert dtype == np.float32, f"float32 logits: expected a float32 loss, got {dtype}"
    got, _, _ = loss(s, "CrossEntropyLoss()(Tensor([[1e4, 0.0, -1e4]]), [1])", strict=True)
    assert np.isfinite(got) and np.isclose(got, 1e4), \
        f"logits [[1e4, 0, -1e4]], label 1: expected a finite loss of 1e4, got {fmt(got)}"
    for bad, needle in [(np.array([0, 3]), "3"), (np.array([0.0, 1.0]), "float64"), (np.array([0, 1, 2]), "(3,)")]:
        s.expect_error("CrossEntropyLoss()(logits, bad)", f"labels {bad.tolist()} ({bad.dtype}) for logits (2, 3)",
                       (needle,), bad=bad)
    r = np.random.default_rng(2)
    z = r.standard_normal((7, 5)) * 20
    y = r.integers(0, 5, 7)
    m = z.max(axis=1, keepdims=True)
    ref_logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    want = -ref_logp[np.arange(7), y].mean()
    got, dtype, _ = loss(s, "CrossEntropyLoss()(Tensor(z), Tensor(y))", z=z, y=y)
    assert dtype == np.float64 and np.isclose(got, want), \
        f"random (7, 5) float64 logits, Tensor labels {y.tolist()}: expected {fmt(want)} (float64), got {fmt(got)} ({dtype})"
    s.run("zg = Tensor(z.astype(np.float32), requires_grad=True)\n"
          "out = CrossEntropyLoss()(zg, labels)\n"
          "node = getattr(out, 'node', None)", z=z, labels=y.astype(np.int32).tolist())
    op, inputs, zid = s.value("(None if node is None else node.op, "
                              "None if node is None else [id(v) for v in node.inputs], id(zg))")
    assert op == "cross_entropy" and inputs and inputs[0] == zid, \
        f"the loss should be recorded as op 'cross_entropy' with input the logits; got op {op!r}" + \
        ("" if not inputs or inputs[0] == zid else ", whose first input is not the logits tensor")
    targets, probs = s.value("(lambda d: (d.get('targets'), d.get('probs')))(dict(node.saved))")
    assert isinstance(targets, np.ndarray) and targets.dtype == np.int64 and np.array_equal(targets, y), \
        f"saved 'targets' should be the labels as int64 {y.tolist()}, got {targets!r}"
    assert isinstance(probs, np.ndarray) and probs.shape == (7, 5) and np.allclose(probs, np.exp(ref_logp), atol=1e-5), \
        f"saved 'probs' should be softmax(logits), shape (7, 5), got {getattr(probs, 'shape', probs)!r}"
    s.expect_error("CrossEntropyLoss()(Tensor(z), np.array([0, 1, 2, 3, 4, 0, -1]))",
                   "label -1 at index 6 for logits (7, 5) (numpy would silently pick the last class)",
                   ("-1", "6", "5"), z=z)
    s.expect_error("CrossEntropyLoss()(Tensor(z), np.array([True] * 7))",
                   "boolean labels for logits (7, 5) (not an integer dtype)", z=z)
    far = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=np.float32)
    got, dtype, _ = loss(s, "CrossEntropyLoss()(Tensor(far), [0, 1])", strict=True, far=far)
    assert np.isclose(got, 0.0) and dtype == np.float32, \
        f"confident, correct float32 logits of 1e4: expected loss 0 (float32), got {fmt(got)} ({dtype})"
