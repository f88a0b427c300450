"""Module 05's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`,
`s.expect_error`), every expected value and comparison stays here.

The notebook's `check_rule` compares a rule with finite differences inside the kernel. Here the
sandbox only records the op (with the reference library of Modules 01-04) and calls the student's
rule on it (`RULE_CALL` below, the mechanics of `check_rule` without its comparison); the finite
differences are computed here, on numpy versions of the same ops (`rule_check`).
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check

# Sandbox side of a rule check: record `fn` on Tensors made from `arrays` (numbers stay numbers), call
# `rule(w, out)`, answer (kind of the result, one entry per input: None, a numeric array, or a type name).
RULE_CALL = '''
from tinytorch_lib.activations import GELU, ReLU, Sigmoid, Softmax, Tanh


def _as_data(a):
    """(type name, shape, values raveled) of an array or numpy scalar; (type name, None, None) otherwise."""
    if isinstance(a, (np.ndarray, np.generic)) and np.asarray(a).dtype.kind in "biufc":
        return type(a).__name__, np.shape(a), np.asarray(a).reshape(-1)
    return type(a).__name__, None, None


def _rule_result(rule, fn, arrays, w):
    tensors = [Tensor(a.copy(), requires_grad=True) if isinstance(a, np.ndarray) else a for a in arrays]
    got = rule(np.array(w, dtype=np.float64), fn(*tensors))
    if not isinstance(got, tuple):
        return type(got).__name__, None
    return "tuple", [None if g is None else _as_data(g) for g in got]


def ce_forward(logits, targets):
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = Tensor(-logp[np.arange(len(targets)), targets].mean())
    return record("cross_entropy", loss, (logits,), targets=targets, probs=np.exp(logp))
'''


def numerical_gradient(np_fn, arrays: list, i: int, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d sum(np_fn(*arrays) * weight) / d arrays[i] by central differences, in float64 numpy."""
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in arrays]
    x = arrays[i]
    grad = np.zeros_like(x)
    for j in np.ndindex(*x.shape):
        keep = x[j]
        x[j] = keep + eps
        up = float(np.sum(np_fn(*arrays) * weight))
        x[j] = keep - eps
        down = float(np.sum(np_fn(*arrays) * weight))
        x[j] = keep
        grad[j] = (up - down) / (2 * eps)
    return grad


def from_data(entry):
    """(type name, array or None) from the sandbox's _as_data answer (None: the value was None)."""
    if entry is None:
        return "NoneType", None
    kind, shape, flat = entry
    return kind, None if flat is None else flat.reshape(shape)


def fetch(s, expr: str, **inputs):
    """(type name, array or None) of `expr` evaluated in the sandbox (RULE_CALL's _as_data must be defined):
    an array keeps its shape, 0-d included."""
    s.run(f"_v = {expr}", **inputs)
    return from_data(s.value("None if _v is None else _as_data(_v)"))


def describe(arrays) -> str:
    return ", ".join(str(np.shape(a)) if isinstance(a, np.ndarray) else repr(a) for a in arrays)


def rule_check(s, rule: str, fn: str, np_fn, arrays: list, seed: int = 0, atol: float = 1e-6, rtol: float = 1e-5,
               **inputs) -> None:
    """The student's `rule` on the op `fn` (code, run in the sandbox) records, against finite differences of
    `np_fn` (the same op in numpy, here); AssertionError naming the input and element that differ."""
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in arrays]
    w = np.random.default_rng(seed).standard_normal(np.shape(np_fn(*arrays)))
    what = f"{rule} on {fn} with inputs of shapes {describe(arrays)}"
    try:  # a 0-d w goes as a float (tito/check_runner.py's encode would send it as shape (1,))
        kind, got = s.value(f"_rule_result({rule}, {fn}, arrays, w)", arrays=arrays,
                            w=float(w) if w.ndim == 0 else w, **inputs)
    except StudentError as e:
        if e.type == "NotImplementedError":
            raise
        raise AssertionError(f"{what}: the rule raised {e.said}") from None
    assert kind == "tuple" and len(got) == len(arrays), \
        f"{what}: expected a tuple with one entry per input ({len(arrays)}), got {fmt(kind)}" + \
        (f" of {len(got)}" if got is not None else "")
    for k, (a, entry) in enumerate(zip(arrays, got)):
        kind, g = from_data(entry)
        if not isinstance(a, np.ndarray):
            assert kind == "NoneType", \
                f"{what}: input {k} is the number {a!r}, which needs no gradient: expected None, got a {fmt(kind)}"
            continue
        assert kind == "ndarray" and g is not None, f"{what}: gradient of input {k}: expected an np.ndarray, got {fmt(kind)}"
        assert g.shape == a.shape, f"{what}: gradient of input {k}: expected shape {a.shape}, got {g.shape}"
        assert g.dtype == a.dtype, f"{what}: gradient of input {k}: expected dtype {a.dtype}, got {g.dtype}"
        want = numerical_gradient(np_fn, arrays, k, w)
        bad = np.abs(g - want) > atol + rtol * np.abs(want)
        if bad.any():
            at = tuple(int(n) for n in np.argwhere(bad)[0])
            raise AssertionError(f"{what}: gradient of input {k} at index {fmt(at)}: expected {want[at]:.6g} "
                                 f"(finite differences), got {g[at]:.6g}; expected gradient "
                                 f"{np.round(want, 4).tolist()!s:.200}")


def needs_unbroadcast(s, task: str, grad_shape: tuple, shape: tuple, through: str = "") -> None:
    """The notebook's hint: Tasks 05.2-05.5 call Task 05.1's unbroadcast."""
    try:
        got = s.value(f"np.shape(unbroadcast(np.ones({grad_shape}), {shape}))")
    except StudentError as e:
        got = e
    assert got == shape, (f"{fmt(task)} calls unbroadcast from Task 05.1{fmt(through)}, and unbroadcast(ones({grad_shape}), "
                          f"{shape}) did not return shape {shape} ({got!r}): make Task 05.1's tests pass first")


@check("test_05_1_unbroadcast")
def unbroadcast_(s):
    s.run(RULE_CALL)
    g = np.arange(24.0).reshape(2, 3, 4)
    _, got = fetch(s, "unbroadcast(g, (3, 1))", g=g)
    want = g.sum(axis=0).sum(axis=1, keepdims=True)
    assert np.shape(got) == (3, 1), f"unbroadcast of a (2, 3, 4) gradient to (3, 1): expected shape (3, 1), got {np.shape(got)}"
    assert np.allclose(got, want), \
        f"unbroadcast(arange(24).reshape(2, 3, 4), (3, 1)): expected {fmt(want.ravel())}, got {fmt(np.ravel(got))}"
    _, got = fetch(s, "unbroadcast(np.ones((2, 4)), (4,))")
    assert np.shape(got) == (4,) and np.allclose(got, 2), f"unbroadcast(ones((2, 4)), (4,)): expected [2, 2, 2, 2], got {fmt(got)}"
    _, got = fetch(s, "unbroadcast(np.ones((5, 3)), (5, 3))")
    assert np.shape(got) == (5, 3) and np.allclose(got, 1), \
        f"unbroadcast to the same shape (5, 3) should change nothing, got {fmt(got)}"
    s.expect_error("unbroadcast(np.ones((2, 3)), (4,))", "unbroadcast(ones((2, 3)), (4,))", ("(2, 3)", "(4,)"))
    _, got = fetch(s, "unbroadcast(np.full((2, 2), 1.5), ())")
    assert np.shape(got) == () and np.isclose(got, 6.0), \
        f"unbroadcast(full((2, 2), 1.5), ()): expected 6.0 of shape (), got {fmt(got)} of shape {np.shape(got)}"
    rng = np.random.default_rng(0)
    for shape, out in [((1, 4, 1), (3, 2, 4, 5)), ((1,), (6,)), ((2, 1), (2, 7)), ((3, 1, 2), (3, 4, 2))]:
        g = rng.standard_normal(out)
        want = g.sum(axis=tuple(range(len(out) - len(shape))))
        want = want.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)
        _, got = fetch(s, "unbroadcast(g, shape)", g=g, shape=shape)
        assert np.shape(got) == shape and np.allclose(got, want), \
            f"unbroadcast of a random {fmt(out)} gradient to {shape}: expected shape {shape} and the sums over the " \
            f"broadcast axes, got shape {np.shape(got)}"
    for grad_shape, shape in [((3,), (2, 3)), ((2, 3), (2, 4))]:
        s.expect_error(f"unbroadcast(np.ones({grad_shape}), {shape})", f"unbroadcast of a {grad_shape} gradient to {shape}")


@check("test_05_2_elementwise")
def elementwise(s):
    needs_unbroadcast(s, "Task 05.2", (2, 3), (3,), " (through grad_for)")
    s.run(RULE_CALL)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.uniform(0.5, 2.0, 3)
    ops = [("add_backward", "lambda a, b: a + b", lambda a, b: a + b),
           ("sub_backward", "lambda a, b: a - b", lambda a, b: a - b),
           ("mul_backward", "lambda a, b: a * b", lambda a, b: a * b),
           ("div_backward", "lambda a, b: a / b", lambda a, b: a / b)]
    for rule, fn, np_fn in ops:
        rule_check(s, rule, fn, np_fn, [a, b])
    rule_check(s, "neg_backward", "lambda a: -a", lambda a: -a, [a])
    rule_check(s, "mul_backward", "lambda a, k: a * k", lambda a, k: a * k, [a, 2.5])
    rule_check(s, "sub_backward", "lambda k, a: k - a", lambda k, a: k - a, [1.0, a])
    s.run("x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)\n"
          "got = mul_backward(np.ones((2, 3), dtype=np.float32), x * Tensor(np.full(3, 2.0, dtype=np.float32)))")
    _, first = fetch(s, "got[0]")
    second = s.value("type(got[1]).__name__")
    assert second == "NoneType", \
        f"(2, 3) float32 requiring grad * a constant (3,) Tensor: the constant needs no gradient (None), got a {fmt(second)}"
    assert isinstance(first, np.ndarray) and first.dtype == np.float32 and np.allclose(first, 2.0), \
        f"gradient of x in x * [2, 2, 2] with grad = ones: expected float32 twos, got {getattr(first, 'dtype', '')} {fmt(first)}"
    r = np.random.default_rng(1)
    p, q = r.standard_normal((4, 1, 3)), r.uniform(0.5, 2.0, (2, 1))
    for rule, fn, np_fn in ops:
        rule_check(s, rule, fn, np_fn, [p, q])
        rule_check(s, rule, fn, np_fn, [q, p + 3.0])
    rule_check(s, "div_backward", "lambda k, a: k / a", lambda k, a: k / a, [3.0, q])
    rule_check(s, "div_backward", "lambda a, k: a / k", lambda a, k: a / k, [p, 4.0])
    rule_check(s, "add_backward", "lambda k, a: k + a", lambda k, a: k + a, [2.0, p])
    rule_check(s, "neg_backward", "lambda a: -a", lambda a: -a, [r.standard_normal((2, 3, 4))])


@check("test_05_3_matmul")
def matmul(s):
    needs_unbroadcast(s, "Task 05.3", (2, 3, 4), (3, 4))
    s.run(RULE_CALL)
    mm = "lambda a, b: a @ b"
    rng = np.random.default_rng(0)
    for shapes in [((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((3,), (3, 4))]:  # 2-d, shared b, vector @ matrix
        rule_check(s, "matmul_backward", mm, np.matmul, [rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])])
    s.run("x = Tensor(np.ones((2, 3), dtype=np.float32))\n"
          "W = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)\n"
          "got = matmul_backward(np.ones((2, 4), dtype=np.float32), x @ W)")
    first = s.value("type(got[0]).__name__")
    _, second = fetch(s, "got[1]")
    assert first == "NoneType", f"(2, 3) constant @ (3, 4) requiring grad: the constant needs no gradient (None), got a {fmt(first)}"
    assert isinstance(second, np.ndarray) and second.shape == (3, 4) and second.dtype == np.float32 \
        and np.allclose(second, 2.0), \
        f"ones (2, 3) @ W (3, 4) with grad = ones (2, 4): expected g_W = x.T @ g = twos (3, 4) float32, got {fmt(second)}"
    r = np.random.default_rng(1)
    for shapes in [((4, 3), (3,)), ((5,), (5,)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4, 3), (2, 3, 2))]:
        rule_check(s, "matmul_backward", mm, np.matmul, [r.standard_normal(shapes[0]), r.standard_normal(shapes[1])])


def transpose_np(*axes):
    if len(axes) == 1 and isinstance(axes[0], tuple):
        axes = axes[0]
    return lambda x: np.transpose(x, axes or None)


@check("test_05_4_reductions")
def reductions(s):
    needs_unbroadcast(s, "the rules return grad_for(...), which", (2, 3), (2, 3))
    s.run(RULE_CALL)
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((2, 3, 4))
    cases = [("sum_backward", "lambda x: x.sum()", lambda x: np.sum(x)),
             ("sum_backward", "lambda x: x.sum(axis=1)", lambda x: x.sum(axis=1)),
             ("mean_backward", "lambda x: x.mean(axis=-1, keepdims=True)", lambda x: x.mean(axis=-1, keepdims=True)),
             ("max_backward", "lambda x: x.max(axis=0)", lambda x: x.max(axis=0)),
             ("reshape_backward", "lambda x: x.reshape(4, -1)", lambda x: x.reshape(4, -1)),
             ("transpose_backward", "lambda x: x.transpose(1, 2, 0)", transpose_np(1, 2, 0)),
             ("getitem_backward", "lambda x: x[1, :, ::2]", lambda x: x[1, :, ::2])]
    for rule, fn, np_fn in cases:
        rule_check(s, rule, fn, np_fn, [x3])
    _, got = fetch(s, "max_backward(np.array([1.0]), Tensor(t, requires_grad=True).max(axis=1))[0]", t=np.array([[1.0, 5.0, 5.0]]))
    assert np.shape(got) == (1, 3) and np.allclose(got, [[0, 0.5, 0.5]]), \
        f"max of [[1, 5, 5]] along axis 1, grad 1: ties split evenly, expected [[0, 0.5, 0.5]], got {fmt(got)}"
    _, got = fetch(s, "getitem_backward(np.ones(3), Tensor([1.0, 2.0, 3.0], requires_grad=True)[np.array([0, 0, 1])])[0]")
    assert np.shape(got) == (3,) and np.allclose(got, [2, 1, 0]), \
        f"x[[0, 0, 1]] of a (3,) tensor with grad = ones: expected [2, 1, 0] (np.add.at), got {fmt(got)}"
    r = np.random.default_rng(1)
    y = r.standard_normal((3, 4, 5))
    i1, i2, i3 = np.array([2, 0, 2, 2]), np.array([0, 1, 1]), np.array([3, 3, 0])
    cases = [("sum_backward", "lambda x: x.sum(axis=(0, 2))", lambda x: x.sum(axis=(0, 2))),
             ("sum_backward", "lambda x: x.sum(axis=-2, keepdims=True)", lambda x: x.sum(axis=-2, keepdims=True)),
             ("mean_backward", "lambda x: x.mean()", lambda x: np.mean(x)),
             ("mean_backward", "lambda x: x.mean(axis=(0, 1))", lambda x: x.mean(axis=(0, 1))),
             ("max_backward", "lambda x: x.max()", lambda x: np.max(x)),
             ("max_backward", "lambda x: x.max(axis=-1, keepdims=True)", lambda x: x.max(axis=-1, keepdims=True)),
             ("max_backward", "lambda x: x.max(axis=(0, 2))", lambda x: x.max(axis=(0, 2))),
             ("transpose_backward", "lambda x: x.T", transpose_np()),
             ("transpose_backward", "lambda x: x.transpose((2, 0, 1))", transpose_np((2, 0, 1))),
             ("reshape_backward", "lambda x: x.reshape(60)", lambda x: x.reshape(60)),
             ("getitem_backward", "lambda x: x[i1]", lambda x: x[i1]),
             ("getitem_backward", "lambda x: x[:, 1]", lambda x: x[:, 1]),
             ("getitem_backward", "lambda x: x[i2, i3]", lambda x: x[i2, i3])]
    for rule, fn, np_fn in cases:
        rule_check(s, rule, fn, np_fn, [y], i1=i1, i2=i2, i3=i3)
    _, got = fetch(s, "max_backward(np.array(4.0), Tensor(np.ones((2, 2)), requires_grad=True).max())[0]")
    assert np.shape(got) == (2, 2) and np.allclose(got, 1.0), \
        f"max of ones((2, 2)) with grad 4: four tied maxima each get 1, got {fmt(got)}"


def softmax_np(axis):
    def f(x):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return f


def gelu_np(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def ce_np(targets):
    def f(z):
        m = z - z.max(axis=1, keepdims=True)
        logp = m - np.log(np.exp(m).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(targets)), targets].mean()
    return f


ACTIVATIONS = [("relu_backward", "ReLU()", lambda x: np.maximum(x, 0)),
               ("sigmoid_backward", "Sigmoid()", lambda x: 1 / (1 + np.exp(-x))),
               ("tanh_backward", "Tanh()", np.tanh),
               ("gelu_backward", "GELU()", gelu_np)]


@check("test_05_5_activations")
def activations(s):
    needs_unbroadcast(s, "the rules return grad_for(...), which", (2, 3), (2, 3))
    s.run(RULE_CALL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.01] = 0.5  # keep ReLU's kink away from the finite differences
    for rule, fn, np_fn in ACTIVATIONS:
        rule_check(s, rule, fn, np_fn, [x])
    rule_check(s, "softmax_backward", "Softmax(axis=-1)", softmax_np(-1), [x])
    t = np.array([1, 0, 3])
    rule_check(s, "cross_entropy_backward", "lambda z: ce_forward(z, t)", ce_np(t), [x], t=t)
    row = np.array([[np.log(0.1), np.log(0.7), np.log(0.2)]])
    _, got = fetch(s, "cross_entropy_backward(np.array(1.0), ce_forward(Tensor(row, requires_grad=True), np.array([1])))[0]",
                  row=row)
    assert np.shape(got) == (1, 3) and np.allclose(got, [[0.1, -0.3, 0.2]]), \
        f"cross-entropy, probs [0.1, 0.7, 0.2], target 1: expected [[0.1, -0.3, 0.2]], got {fmt(got)}"
    _, got = fetch(s, "gelu_backward(np.ones((3, 4), dtype=np.float32), GELU()(Tensor(x, requires_grad=True)))[0]",
                  x=x.astype(np.float32))
    assert getattr(got, "dtype", None) == np.float32, \
        f"GELU of a float32 (3, 4) input: expected a float32 gradient, got {getattr(got, 'dtype', type(got).__name__)}"
    r = np.random.default_rng(1)
    y = r.standard_normal((2, 3, 5)) * 2
    y[np.abs(y) < 0.01] = -0.7
    for rule, fn, np_fn in ACTIVATIONS:
        rule_check(s, rule, fn, np_fn, [y])
    for axis in (0, 1, -1):
        rule_check(s, "softmax_backward", f"Softmax(axis={axis})", softmax_np(axis), [y])
    t = np.array([4, 4, 0, 2, 1])
    rule_check(s, "cross_entropy_backward", "lambda z: ce_forward(z, t)", ce_np(t), [r.standard_normal((5, 5))], t=t)
    _, got = fetch(s, "cross_entropy_backward(np.array(2.0), ce_forward(Tensor(np.zeros((2, 3), dtype=np.float32), "
                  "requires_grad=True), np.array([0, 2])))[0]")
    want = np.array([[-2 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, -2 / 3]])
    assert getattr(got, "dtype", None) == np.float32 and np.shape(got) == (2, 3) and np.allclose(got, want), \
        f"cross-entropy of zero logits (2, 3) float32, targets [0, 2], grad 2: expected 2 * (1/3 - onehot) / 2 = " \
        f"{np.round(want, 4).tolist()} (float32), got {fmt(got)}"


# The notebook's visible test cell defines these fake ops (and their rules) for Task 05.6.
FAKE_OPS = '''
@register_backward("test_scale")
def _scale_rule(grad, out):
    return (grad * out.node.saved["k"],)


@register_backward("test_add")
def _add_rule(grad, out):
    return grad, grad


def scale(x, k):
    return record("test_scale", Tensor(x.data * k), (x,), k=k)


def plus(a, b):
    return record("test_add", Tensor(a.data + b.data), (a, b))


def grad_of(t):
    return None if t.grad is None else (t.grad.data, t.grad.dtype, t.grad.shape)
'''


@check("test_05_6_engine")
def engine(s):
    s.run(FAKE_OPS)
    s.run("x = Tensor([1.0, 2.0], requires_grad=True)\ny = scale(x, 3.0)\nz = plus(y, x)\n"
          "order = topological_order(z)")
    ids, ops, want = s.value("([id(t) for t in order], [t.node.op if t.node else 'leaf' for t in order], "
                             "[id(x), id(y), id(z)])")
    assert ids == want, \
        f"topological_order of z = plus(scale(x, 3), x): expected [x, y, z], got {len(ids)} tensors {fmt(ops)}"
    s.run("backward(z, np.array([1.0, 1.0]))")
    got = s.value("grad_of(x)")
    assert got is not None and np.allclose(got[0], [4.0, 4.0]), \
        f"z = 3x + x with grad [1, 1]: expected x.grad = [4, 4] (3 along one path, 1 along the other), got {fmt(got and got[0])}"
    assert s.value("grad_of(y)") is None, "intermediate tensors get no .grad, only leaves"
    s.run("backward(z, np.array([1.0, 1.0]))")
    got = s.value("grad_of(x)")
    assert got is not None and np.allclose(got[0], [8.0, 8.0]), f"a second backward adds to x.grad: expected [8, 8], got {fmt(got)}"
    s.run("s = Tensor(2.0, requires_grad=True)\nscale(s, 5.0).backward()")
    got = s.value("grad_of(s)")
    assert got is not None and np.isclose(got[0], 5.0), \
        f"scale(s, 5).backward() with a single element: expected s.grad = 5, got {fmt(got)}"
    s.expect_error("backward(scale(x, 2.0))", "backward() of a (2,) tensor without grad", ("(2,)",), error="RuntimeError")
    # hidden cases
    s.run("deep = Tensor([1.0], requires_grad=True)\nh = deep\nfor _ in range(3000):\n    h = scale(h, 1.0)")
    error = s.raises("backward(h)")
    assert error is None, f"a chain of 3000 scale(., 1) ops (deeper than Python's recursion limit): backward raised " \
                          f"{error and error.said}" + \
                          (" (use a loop with an explicit stack, not recursion)" if error and error.type == "RecursionError" else "")
    got = s.value("grad_of(deep)")
    assert got is not None and np.allclose(got[0], [1.0]), f"a chain of 3000 scale(., 1) ops: expected grad [1], got {fmt(got)}"
    s.run("a = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)\n"
          "d1, d2 = scale(a, 2.0), scale(a, 3.0)\np = plus(d1, d2)\ntop = plus(p, d1)\n"
          "known = {id(a): 'a', id(d1): 'd1', id(d2): 'd2', id(p): 'p', id(top): 'top'}\n"
          "order = topological_order(top)")
    names = s.value("[known.get(id(t), '?') for t in order]")
    inputs = {"a": [], "d1": ["a"], "d2": ["a"], "p": ["d1", "d2"], "top": ["p", "d1"]}
    assert len(names) == 5 and sorted(names) == sorted(inputs), \
        f"diamond graph top = plus(plus(2a, 3a), 2a): expected 5 distinct tensors (a, d1 = 2a, d2 = 3a, their sum p, top), " \
        f"got {len(names)}: {names}"
    pos = {n: k for k, n in enumerate(names)}
    for n, ins in inputs.items():
        for v in ins:
            assert pos[v] < pos[n], f"diamond graph: every tensor must come after its inputs; got order {names}"
    s.run("backward(top, np.ones((2, 2)))")
    got = s.value("grad_of(a)")
    assert got is not None and np.allclose(got[0], 7.0) and got[1] == np.float32 and got[2] == (2, 2), \
        f"top = 2a + 3a + 2a: expected a.grad = 7 everywhere, float32 (2, 2), got {fmt(got)}"
    s.run("c = Tensor([1.0, 2.0])\nw = Tensor([1.0, 1.0], requires_grad=True)\n"
          "backward(plus(scale(w, 2.0), c), np.ones(2))")
    gw, gc = s.value("(grad_of(w), grad_of(c))")
    assert gw is not None and np.allclose(gw[0], 2.0) and gc is None, \
        f"plus(scale(w, 2), constant c): expected w.grad = [2, 2] and no c.grad (the engine skips inputs that need no " \
        f"gradient), got {fmt(gw and gw[0])}, {fmt(gc and gc[0])}"
    s.expect_error("backward(record('test_no_such_op', Tensor([1.0]), (Tensor([1.0], requires_grad=True),)))",
                   "backward through an op with no rule (test_no_such_op)", ("test_no_such_op",), error="RuntimeError")
    s.expect_error("backward(Tensor([1.0]))", "backward of a tensor that does not require grad", error="RuntimeError")
    error = s.raises("backward(scale(x, 2.0), np.ones(3))")
    assert error is not None, "backward with a grad of shape (3,) for a (2,) tensor should raise ValueError"
    assert error.type == "ValueError", \
        f"backward(t, grad) with t of shape (2,) and grad np.ones(3): expected your backward to raise ValueError naming " \
        f"both shapes before running any rule, got {error.said}"
    assert "(3,)" in error.message and "(2,)" in error.message, \
        f"grad (3,) for a (2,) tensor: the error should name both shapes, got: {error.message}"
