"""Module 06's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value, oracle and comparison stays here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check


def close(got, want, **tolerance) -> bool:
    """np.allclose for a value that came from the student's code: False (not an error) when it is not
    a non-empty array of numbers that want broadcasts to."""
    try:
        got = np.asarray(got, dtype=np.float64)
        return got.size > 0 and np.broadcast_shapes(got.shape, np.shape(want)) == got.shape and \
            bool(np.allclose(got, want, **tolerance))
    except (TypeError, ValueError):
        return False

# The visible tests' helpers (Task 06.1's Recorder, Task 06.2's run_update), defined in the sandbox.
# `calls_of` turns the Recorder's record into data: for each call of update, the index of the
# parameter whose array it received as p (-1: none of them, e.g. a copy), g's dtype, and the index of
# the state dict it received (-1: none of self.state).
HELPERS = '''
class Recorder(Optimizer):
    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.calls = []

    def update(self, p, g, state):
        self.calls.append((p, g.dtype, state))
        p -= self.lr * g


def calls_of(opt, arrays):
    return [(next((i for i, a in enumerate(arrays) if a is p), -1), dtype,
             next((i for i, st in enumerate(opt.state) if st is state), -1)) for p, dtype, state in opt.calls]


dummy = [Tensor(np.zeros(1, dtype=np.float32))]


def run_update(opt, p0, grads):
    p, state = np.array(p0, dtype=np.float32), {}
    for g in grads:
        opt.update(p, np.array(g, dtype=np.float32), state)
    return p, state
'''


def helpers(s):
    s.run(HELPERS)


def state_data(state: str) -> str:
    """An expression for a state dict as data (its arrays, numbers and numpy scalars as numbers; anything else
    by type name)."""
    return (f"{{k: (v if isinstance(v, (np.ndarray, int, float)) else v.item() if isinstance(v, np.generic) "
            f"else type(v).__name__) for k, v in {state}.items()}}")


def updated(s, make: str, p0, grads):
    """(p, state) after run_update(make, p0, grads) in the sandbox, as data."""
    s.run(f"p, state = run_update({make}, p0, grads)", p0=np.asarray(p0, dtype=np.float64),
          grads=[np.asarray(g, dtype=np.float64) for g in grads])
    return s.value("p"), s.value(state_data("state"))


def step_works(s):
    """The hint of Tasks 06.2 and 06.3: step() from Task 06.1 on w = 1, grad 1, lr 1 gives w = 0."""
    try:
        s.run("w = Tensor(np.ones(1, dtype=np.float32))\n"
              "w.grad = Tensor(np.ones(1, dtype=np.float32))\n"
              "Optimizer.step(Recorder([w], lr=1.0))")
        got = s.value("w.data")
        problem = None if close(got, 0.0) else f"got w = {got}"
    except StudentError as e:
        problem = f"{e.said}"
    assert problem is None, (f"this test calls step() from Task 06.1, and step() on w = 1, grad 1, lr 1 did not "
                             f"give w = 0 ({problem}): make Task 06.1's tests pass first")


def sgd_oracle(p0, grads, lr, mu, wd):
    q, v = np.array(p0, dtype=np.float64), np.zeros_like(np.asarray(p0, dtype=np.float64))
    for g in grads:
        d = np.asarray(g, dtype=np.float64) + wd * q
        if mu:
            v = mu * v + d
            d = v
        q = q - lr * d
    return q


def adam_oracle(p0, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    q = np.array(p0, dtype=np.float64)
    m, v = np.zeros_like(q), np.zeros_like(q)
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, dtype=np.float64)
        if decoupled:
            q = q - lr * wd * q
            d = g
        else:
            d = g + wd * q
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        q = q - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return q


@check("test_06_1_base")
def base(s):
    helpers(s)
    s.run("w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)\n"
          "b = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)\n"
          "w_array = w.data\n"
          "w.grad = Tensor(np.full((2, 3), 0.5))\n"
          "opt = Recorder([w, b], lr=0.1)\n"
          "opt.step()")
    calls = s.value("calls_of(opt, [w_array, b.data])")
    assert len(calls) == 1, f"w has a grad and b.grad is None: expected 1 call of update, got {len(calls)}"
    which, dtype, state = calls[0]
    assert which == 0, "update(p, g, state) should receive w.data itself, not a copy"
    assert dtype == np.float32, f"a float64 grad of a float32 parameter should reach update as float32, got {dtype}"
    assert state == 0, "update should receive the dict self.state[0] for parameter 0"
    got = s.value("w.data")
    assert close(got, 0.95), f"w = 1, grad 0.5, lr 0.1: expected w = 0.95 after step(), got {fmt(got)}"
    got = s.value("b.data")
    assert np.array_equal(got, np.zeros(3)), f"b.grad is None: b should be unchanged, got {fmt(got)}"
    s.run("opt.zero_grad()")
    grads = s.value("(repr(w.grad), repr(b.grad))")
    assert grads == ("None", "None"), f"after zero_grad(): expected grads None, got {fmt(grads[0])}, {fmt(grads[1])}"
    s.run("w.grad = Tensor(np.ones((3, 2), dtype=np.float32))")
    raised = s.expect_error("opt.step()", "w of shape (2, 3) with a grad of shape (3, 2): step()", ("(2, 3)", "(3, 2)"))
    want = "Recorder.step: parameter 0 has shape (2, 3) but its grad has shape (3, 2)"
    assert raised.message == want, f"the shape error should read exactly '{fmt(want)}', got: '{raised.message}'"

    shapes = [(4,), (2, 2), (), (3, 1, 2)]
    s.run("ps = [Tensor(np.full(shape, 2.0, dtype=np.float32)) for shape in shapes]\n"
          "arrays = [p.data for p in ps]\n"
          "opt = Recorder(ps, lr=0.5)\n"
          "ps[0].grad = Tensor(np.ones(4, dtype=np.float32))\n"
          "ps[2].grad = Tensor(np.float32(2.0))\n"
          "ps[3].grad = Tensor(np.ones((3, 1, 2), dtype=np.float32))\n"
          "for _ in range(2):\n"
          "    opt.step()", shapes=shapes)
    calls = s.value("calls_of(opt, arrays)")
    setup = ("parameters of shapes (4,), (2, 2), (), (3, 1, 2), all 2.0, grads 1, None, 2.0 (0-d), 1, "
             "lr 0.5, two steps")
    assert [c[0] for c in calls] == [0, 2, 3, 0, 2, 3], \
        f"{setup}: update should receive the arrays of parameters 0, 2, 3, 0, 2, 3, got {[c[0] for c in calls]}"
    assert [c[2] for c in calls] == [0, 2, 3, 0, 2, 3], \
        f"{setup}: update should receive self.state[i] for parameter i (state dicts 0, 2, 3, 0, 2, 3), " \
        f"got {[c[2] for c in calls]}"
    # (shape, values) pairs: tito's data encoding returns a 0-d array as shape (1,), so shapes travel apart
    got = [values.reshape(shape) for shape, values in s.value("[(p.data.shape, p.data.reshape(-1)) for p in ps]")]
    for i, want in enumerate([1.0, 2.0, 0.0, 1.0]):
        assert got[i].shape == shapes[i] and close(got[i], want), \
            f"{setup}: parameter {i} (shape {shapes[i]}) should be {fmt(want)}, got {fmt(got[i])}"
    dtypes = s.value("[p.dtype for p in ps]")
    assert all(d == np.float32 for d in dtypes), f"{setup}: parameters should stay float32, got {dtypes}"
    s.run("opt.zero_grad()")
    grads = s.value("[repr(p.grad) for p in ps]")
    assert grads == ["None"] * 4, f"zero_grad() should set every parameter's grad to None, got {fmt(grads)}"
    s.run("d = Tensor(np.ones(2))\n"
          "d.grad = Tensor(np.array([0.25, 0.5]))\n"
          "opt = Recorder([d], lr=1.0)\n"
          "opt.step()")
    calls, got = s.value("calls_of(opt, [d.data])"), s.value("d.data")
    assert len(calls) == 1 and calls[0][1] == np.float64, \
        f"a float64 parameter with a float64 grad: update should get a float64 g, got {[c[1] for c in calls]}"
    assert close(got, [0.75, 0.5]), f"float64 parameter [1, 1], grad [0.25, 0.5], lr 1: expected [0.75, 0.5], got {fmt(got)}"


@check("test_06_2_sgd")
def sgd(s):
    helpers(s)
    p, state = updated(s, "SGD(dummy, lr=0.1)", [1.0], [[0.5]])
    assert close(p, 0.95), f"SGD lr 0.1, p = 1, g = 0.5: expected p = 0.95, got {p}"
    assert state == {}, f"SGD without momentum should store no state, got keys {list(state)}"
    p, _ = updated(s, "SGD(dummy, lr=0.1, weight_decay=0.1)", [1.0], [[0.5], [0.5]])
    assert close(p, 0.8806), f"SGD lr 0.1, wd 0.1, p = 1, g = 0.5 twice: expected 0.8806 (table above), got {p}"
    p, state = updated(s, "SGD(dummy, lr=0.1, momentum=0.9)", [1.0], [[0.5], [0.5]])
    assert close(p, 0.855), f"SGD lr 0.1, mu 0.9, p = 1, g = 0.5 twice: expected 0.855, got {p}"
    assert "momentum_buffer" in state, f"momentum should keep state['momentum_buffer'], got keys {list(state)}"
    v = state["momentum_buffer"]
    assert isinstance(v, np.ndarray), f"state['momentum_buffer'] should be an np.ndarray, got {fmt(v)}"
    assert close(v, 0.95), f"velocity after two steps: expected 0.95, got {fmt(v)}"
    assert v.dtype == np.float32, f"the velocity should be float32 like p, got {v.dtype}"
    step_works(s)
    s.run("w = Tensor(np.array([[1.0, -2.0]], dtype=np.float32), requires_grad=True)\n"
          "opt = SGD([w], lr=0.5, momentum=0.5)\n"
          "w.grad = Tensor(np.array([[1.0, 1.0]], dtype=np.float32))\n"
          "opt.step()\n"
          "opt.step()")
    got = s.value("w.data")
    assert close(got, [[-0.25, -3.25]]), (f"w = [[1, -2]], grad [[1, 1]], lr 0.5, mu 0.5, two steps: "
                                                f"expected [[-0.25, -3.25]], got {got}")
    nbytes = s.value("opt.state_nbytes()")
    assert nbytes == 8, f"momentum keeps one buffer of w's size (8 bytes), measured {nbytes}"

    rng = np.random.default_rng(6)
    for mu, wd, lr in [(0.0, 0.0, 0.05), (0.9, 0.0, 0.01), (0.0, 0.01, 0.1), (0.8, 0.05, 0.02)]:
        p0 = rng.standard_normal((3, 4))
        grads = [rng.standard_normal((3, 4)) for _ in range(5)]
        p, state = updated(s, f"SGD(dummy, lr={lr}, momentum={mu}, weight_decay={wd})", p0, grads)
        want = sgd_oracle(p0, grads, lr, mu, wd)
        case = f"SGD(lr={lr}, momentum={mu}, weight_decay={wd}), 5 updates of a random (3, 4) float32 p"
        assert p.shape == (3, 4) and close(p, want, rtol=1e-5, atol=1e-6), \
            f"{case}: differs from the float64 formula by up to {np.max(np.abs(p - want)) if p.shape == want.shape else '?'}"
        assert p.dtype == np.float32, f"{case}: p should stay float32, got {p.dtype}"
        assert (len(state) == 1) == (mu != 0), \
            f"{case}: expected {fmt('one state entry (momentum_buffer)' if mu else 'no state')}, got keys {list(state)}"
    s.run("p = np.ones(3, dtype=np.float32)\n"
          "SGD(dummy, lr=0.1, momentum=0.9).update(p, np.ones(3, dtype=np.float32), {})")
    got = s.value("p")
    assert close(got, 0.9), f"SGD(lr=0.1, momentum=0.9).update(p = ones(3), g = ones(3), {{}}) should change " \
                                  f"p in place to 0.9, the caller's array is {fmt(got)}"


@check("test_06_3_adam")
def adam(s):
    helpers(s)
    s.run("state = {}\n"
          "r = Adam(dummy, lr=0.1).direction(np.array([0.5], dtype=np.float32), state)")
    r = s.value("r")
    assert isinstance(r, np.ndarray) and close(r, 1.0), \
        f"first direction for d = 0.5 (worked example): expected m_hat / sqrt(v_hat) = 1, got {r}" + \
        (" (nan on the first step: is t still 0 in 1 - b1**t? increment the step count first)"
         if isinstance(r, np.ndarray) and np.isnan(r).any() else "")
    state = s.value(state_data("state"))
    assert sorted(state) == ["exp_avg", "exp_avg_sq", "step"], \
        f"state keys: expected exp_avg, exp_avg_sq, step, got {sorted(state)}"
    assert state["step"] == 1, f"state['step'] after one call: expected 1, got {fmt(state['step'])}"
    assert close(state["exp_avg"], 0.05) and close(state["exp_avg_sq"], 0.00025), \
        f"m, v after one step of d = 0.5: expected 0.05, 0.00025, got {fmt(state['exp_avg'])}, {fmt(state['exp_avg_sq'])}"
    p, state = updated(s, "Adam(dummy, lr=0.1)", [1.0], [[0.5], [0.5]])
    assert close(p, 0.8), f"Adam lr 0.1, p = 1, g = 0.5 twice: expected 0.8 (worked example), got {p}"
    assert close(state["exp_avg"], 0.095) and close(state["exp_avg_sq"], 0.00049975), \
        f"m, v after two steps: expected 0.095, 0.00049975, got {fmt(state['exp_avg'])}, {fmt(state['exp_avg_sq'])}"
    assert state["exp_avg"].dtype == np.float32 and p.dtype == np.float32, \
        f"state and p stay float32, got m {state['exp_avg'].dtype}, p {p.dtype}"
    p, _ = updated(s, "Adam(dummy, lr=0.1)", [1.0], [[-3.0], [1.0]])
    want = adam_oracle([1.0], [[-3.0], [1.0]], 0.1)
    assert close(p, want, atol=1e-6), f"Adam lr 0.1, p = 1, g = -3 then 1: expected {want[0]:.6f}, got {p}"
    p, _ = updated(s, "Adam(dummy, lr=0.1, weight_decay=0.5)", [2.0], [[0.0]])
    assert close(p, 1.9), f"Adam, wd 0.5, p = 2, g = 0: d = 0 + 0.5 * 2 = 1, expected p = 1.9, got {p}"
    step_works(s)
    s.run("w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)\n"
          "opt = Adam([w], lr=0.01)\n"
          "w.grad = Tensor(np.ones((2, 3), dtype=np.float32))\n"
          "opt.step()")
    got = s.value("w.data")
    assert close(got, 0.99), f"Adam lr 0.01 on w = 1, grad 1: expected 0.99 everywhere, got {fmt(got)}"
    nbytes = s.value("opt.state_nbytes()")
    assert nbytes == 48, f"Adam keeps 2 arrays of w's size: expected 48 bytes, measured {nbytes}"

    rng = np.random.default_rng(7)
    for (b1, b2), wd, lr, eps in [((0.9, 0.999), 0.0, 0.01, 1e-8), ((0.5, 0.9), 0.1, 0.05, 1e-3),
                                  ((0.0, 0.99), 0.0, 0.1, 1e-8)]:
        p0 = rng.standard_normal((4, 2))
        grads = [rng.standard_normal((4, 2)) * 3 for _ in range(6)]
        p, state = updated(s, f"Adam(dummy, lr={lr}, betas=({b1}, {b2}), eps={eps}, weight_decay={wd})", p0, grads)
        want = adam_oracle(p0, grads, lr, b1, b2, eps, wd)
        case = f"Adam(lr={lr}, betas=({b1}, {b2}), eps={eps}, weight_decay={wd}), 6 updates of a random (4, 2) p"
        assert p.shape == (4, 2) and close(p, want, rtol=1e-5, atol=1e-5), \
            f"{case}: differs from the float64 formula by up to {np.max(np.abs(p - want)) if p.shape == want.shape else '?'}"
        assert state.get("step") == 6, f"{case}: state['step'] should be 6, got {fmt(state.get('step'))}"
        assert p.dtype == np.float32, f"{case}: p should stay float32, got {p.dtype}"
        for key in ("exp_avg", "exp_avg_sq"):
            v = state.get(key)
            assert isinstance(v, np.ndarray) and v.dtype == np.float32, \
                f"{case}: state['{key}'] should be a float32 array, got {getattr(v, 'dtype', v)}"
    # m is updated in place: the array held before the call holds the new average after it
    m_before = state["exp_avg"]
    s.run("m_array = state['exp_avg']\n"
          "Adam(dummy, lr=0.1).direction(np.ones((4, 2), dtype=np.float32), state)")
    got = s.value("m_array")
    want = 0.9 * m_before.astype(np.float64) + 0.1
    assert close(got, want, rtol=1e-5, atol=1e-6), \
        "direction should update state['exp_avg'] in place (m *= b1; m += (1 - b1) * d): the array it held " \
        f"before the call should hold b1 * m + (1 - b1) * d after it, expected {want.ravel()[:3]}..., got {got.ravel()[:3]}..."
    r = s.value("Adam(dummy).direction(np.zeros(3, dtype=np.float32), {})")
    assert isinstance(r, np.ndarray) and r.shape == (3,) and np.array_equal(r, np.zeros(3)) and r.dtype == np.float32, \
        f"zero gradient d = zeros(3) float32 on the first step: expected a zero direction, float32, got {r} " \
        f"({getattr(r, 'dtype', type(r).__name__)})"


@check("test_06_4_adamw")
def adamw(s):
    helpers(s)
    try:
        r = s.value("Adam(dummy, lr=0.1).direction(np.array([0.5], dtype=np.float32), {})")
        problem = None if close(r, 1.0) else f"got {r}"
    except StudentError as e:
        problem = f"{e.said}"
    assert problem is None, (f"Task 06.4 calls direction from Task 06.3, and Adam.direction(0.5, {{}}) did not "
                             f"return 1 ({problem}): make Task 06.3's tests pass first")
    p, state = updated(s, "AdamW(dummy, lr=0.1, weight_decay=0.1)", [1.0], [[0.5]])
    assert close(p, 0.89), f"AdamW lr 0.1, wd 0.1, p = 1, g = 0.5: expected 0.89 (worked example), got {p}"
    assert close(state.get("exp_avg"), 0.05), \
        f"AdamW's m should see the raw gradient: expected 0.05, got {fmt(state.get('exp_avg'))}"
    p, _ = updated(s, "AdamW(dummy, lr=0.1, weight_decay=0.5)", [2.0, -4.0], [[0.0, 0.0]] * 10)
    want = np.array([2.0, -4.0]) * (1 - 0.1 * 0.5) ** 10
    assert close(p, want, rtol=1e-5), f"AdamW, zero gradient, 10 steps: expected p0 * (1 - lr wd)^10 = {fmt(want)}, got {p}"
    wd = s.value("AdamW(dummy).weight_decay")
    assert wd == 0.01, f"AdamW's default weight_decay is 0.01, got {fmt(wd)}"

    rng = np.random.default_rng(8)
    for wd, lr in [(0.01, 0.01), (0.3, 0.05), (0.0, 0.02)]:
        p0 = rng.standard_normal((5,))
        grads = [rng.standard_normal(5) for _ in range(6)]
        p, _ = updated(s, f"AdamW(dummy, lr={lr}, weight_decay={wd})", p0, grads)
        want = adam_oracle(p0, grads, lr, wd=wd, decoupled=True)
        assert p.shape == (5,) and close(p, want, rtol=1e-5, atol=1e-5), \
            f"AdamW(lr={fmt(lr)}, weight_decay={fmt(wd)}), 6 updates of a random (5,) p: differs from the float64 formula " \
            f"(p -= lr wd p, then Adam's step on the raw g) by up to " \
            f"{np.max(np.abs(p - want)) if p.shape == want.shape else '?'}"
    p_adam, _ = updated(s, "Adam(dummy, lr=0.05)", p0, grads)
    p_adamw, _ = updated(s, "AdamW(dummy, lr=0.05, weight_decay=0.0)", p0, grads)
    assert np.array_equal(p_adam, p_adamw), \
        f"AdamW with weight_decay 0 should give exactly Adam's result: Adam {fmt(p_adam)}, AdamW {fmt(p_adamw)}"
    s.run("p = np.ones(3, dtype=np.float32)\n"
          "AdamW(dummy, lr=0.1).update(p, np.ones(3, dtype=np.float32), {})")
    got = s.value("p")
    want = adam_oracle(np.ones(3), [np.ones(3)], 0.1, wd=0.01, decoupled=True)
    assert got.dtype == np.float32 and close(got, want, rtol=1e-5), \
        f"AdamW(lr=0.1).update(p = ones(3) float32, g = ones(3), {{}}) should change p in place, float32, to " \
        f"{want[0]:.6f}: the caller's array is {fmt(got)} ({got.dtype})"
