# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 06: Optimizers
#
# Module 05 computes `w.grad`, the direction in which the loss grows fastest.
# An optimizer turns gradients into updates of the weights, step after step.
# The rule it uses decides two systems questions:
#
# - **How many steps.** Plain gradient descent crawls along the flat directions
#   of a badly scaled loss; momentum and Adam were invented to take fewer steps.
# - **How much memory.** SGD with momentum keeps one extra array per weight
#   (the velocity); Adam keeps two (the moving averages of the gradient and of
#   its square). With float32 weights, Adam's state is twice the model's size,
#   and training memory is weights + gradients + optimizer state + activations.
#   You will measure it for the MLP of Milestone 06.
#
# | task | what you build | points |
# |---|---|---|
# | 06.1 | `Optimizer`: `zero_grad` and `step` (skip missing grads, update in place) | 4 |
# | 06.2 | `SGD.update`: weight decay (L2) and momentum | 4 |
# | 06.3 | `Adam`: moving averages, bias correction, L2 | 5 |
# | 06.4 | `AdamW.update`: decoupled weight decay | 3 |
#
# The optimizers work on any float `Tensor`s: Module 03's `Parameter`s and
# `model.parameters()`, or the plain `Tensor(..., requires_grad=True)` used in
# this notebook. Their tests set `.grad` by hand (the gradient of a quadratic,
# written out in numpy), so this module does not depend on Module 05.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.tensor import Tensor

# %% [markdown]
# ## Which `Tensor` are you running on?
#
# `tinytorch_lib/tensor.py` is either the course reference or your own export
# of Module 01. When this notebook is autograded by the instructor it always
# runs on the reference, so your grade depends only on this module's work.

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

print(tinytorch_lib.origin("tensor"))

# %% [markdown]
# ## 1. The contract: parameters, gradients, state
#
# An optimizer is built from a list of parameters and a learning rate, and a
# training loop calls it like this (Module 08):
#
# ```
# opt = SGD(model.parameters(), lr=0.1)
# for x, y in batches:
#     opt.zero_grad()            # every p.grad = None
#     loss = loss_fn(model(x), y)
#     loss.backward()            # fills p.grad (Module 05)
#     opt.step()                 # p.data updated in place from p.grad
# ```
#
# - `p.data` is an `np.ndarray` that the optimizer changes **in place**. The
#   model holds the same `Tensor` objects, so it sees the new weights without
#   being told; writing `p.data = p.data - lr * g` would also work for the
#   model but allocates a new array on every step.
# - `p.grad` is a `Tensor` of `p`'s shape, or `None` when no gradient reached
#   `p` (a layer not used in this forward pass, a frozen weight). A parameter
#   whose grad is `None` is skipped: no update, no state.
# - `self.state[i]` is a dict of arrays the optimizer keeps for parameter `i`
#   between steps (the velocity of momentum, Adam's moving averages). It is
#   created on the parameter's first step, in the parameter's dtype (float32),
#   and `state_nbytes()` adds up its real bytes.
#
# The base class below is given: it checks what it is given (an empty list,
# something that is not a float `Tensor`, the same `Tensor` twice, a learning
# rate that is not a positive number are all clear errors), and
# `state_nbytes()` measures the state. Each subclass writes one method,
# `update(p, g, state)`: change the array `p` in place from the gradient array
# `g`. You write `zero_grad` and `step`, which feed `update`.

# %% tags=["export"]
def check_number(owner: str, name: str, value, low: float, high: float = np.inf,
                 low_open: bool = False, high_open: bool = True) -> float:
    """A hyper-parameter as a float, or ValueError naming it, its range and the value given."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if np.isnan(v) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return v


# %% nbgrader={"grade": false, "grade_id": "optimizer_base", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Optimizer:
    """Updates float Tensors in place from their `.grad`; subclasses write `update`.

    params: an iterable of float Tensors (e.g. `[w, b]` or `model.parameters()`).
    self.params: list of those Tensors; self.state[i]: dict of np.ndarray buffers of params[i].
    """

    def __init__(self, params, lr: float):
        owner = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{owner}: params must be an iterable of Tensors, got a single Tensor of shape "
                            f"{params.shape}: wrap it in a list, [w]")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{owner}: params must be an iterable of Tensors (e.g. model.parameters()), "
                            f"got {type(params).__name__}") from None
        if not params:
            raise ValueError(f"{owner}: got an empty parameter list: there is nothing to optimize "
                             f"(does the model register its Parameters?)")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{owner}: parameter {i} is a {type(p).__name__}, expected a Tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"{owner}: parameter {i} has dtype {p.dtype}, shape {p.shape}: "
                                f"optimizers update floating-point Tensors")
            for j in range(i):
                if params[j] is p:
                    raise ValueError(f"{owner}: parameter {i} is the same Tensor as parameter {j}: "
                                     f"it would be updated twice per step")
        self.params = params
        self.lr = check_number(owner, "lr (learning rate)", lr, 0.0, low_open=True)
        self.state = [{} for _ in params]

    def zero_grad(self) -> None:
        """Set every parameter's `.grad` to None (the next backward() starts from nothing)."""
        # Task 06.1: p.grad = None for every parameter
        ### BEGIN SOLUTION
        for p in self.params:
            p.grad = None
        ### END SOLUTION

    def step(self) -> None:
        """One update of every parameter that has a grad: self.update(p.data, g, self.state[i])."""
        # Task 06.1: skip grad None; check the grad's shape; g in p's dtype; update p.data in place
        ### BEGIN SOLUTION
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad.data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
            if g.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {p.shape} "
                                 f"but its grad has shape {g.shape}")
            self.update(p.data, g.astype(p.data.dtype, copy=False), self.state[i])
        ### END SOLUTION

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        """p: (...) float array, changed in place; g: (...) same shape and dtype; state: this p's buffers."""
        raise NotImplementedError(f"{type(self).__name__} does not define update(p, g, state)")

    def state_nbytes(self) -> int:
        """Bytes of optimizer state actually stored: every np.ndarray in every self.state[i]."""
        return int(sum(v.nbytes for s in self.state for v in s.values() if isinstance(v, np.ndarray)))

    def __repr__(self) -> str:
        n = sum(p.data.size for p in self.params)
        return f"{type(self).__name__}(lr={self.lr:g}, {len(self.params)} tensors, {n:,} values)"


# %% [markdown]
# ### Task 06.1: `zero_grad` and `step`
#
# - `zero_grad()`: set `p.grad = None` for every parameter in `self.params`
#   (PyTorch's default too: `None` costs no memory and no pass over an array).
# - `step()`: for each `i, p` in `enumerate(self.params)` (parameters of any
#   shape, 0-d scalars included, and any float dtype):
#   1. skip `p` if `p.grad is None`;
#   2. let `g = p.grad.data`; if `g.shape != p.data.shape`, raise
#      `ValueError` naming the optimizer, the parameter's index and both
#      shapes, exactly in this form:
#      `SGD.step: parameter 0 has shape (2, 3) but its grad has shape (3, 2)`
#      (use `type(self).__name__` for the name);
#   3. convert `g` to the parameter's dtype (`g.astype(p.data.dtype, copy=False)`),
#      so a float64 gradient cannot turn float32 weights or state into float64;
#   4. call `self.update(p.data, g, self.state[i])`: pass the array `p.data`
#      itself (not a copy), so `update` changes the parameter in place, and the
#      same dict `self.state[i]` on every step.
#
# The test defines a tiny optimizer whose `update` is `p -= lr * g` and
# records what it was called with.

# %% nbgrader={"grade": true, "grade_id": "test_06_1_base", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 06.1
from tinytorch_lib.testing import task

with task("06.1"):
    class Recorder(Optimizer):
        """p -= lr * g, and a record of every call to update."""

        def __init__(self, params, lr):
            super().__init__(params, lr)
            self.calls = []

        def update(self, p, g, state):
            self.calls.append((p, g.dtype, state))
            p -= self.lr * g


    w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    w_array = w.data
    w.grad = Tensor(np.full((2, 3), 0.5))  # a float64 gradient
    opt = Recorder([w, b], lr=0.1)
    opt.step()
    assert len(opt.calls) == 1, f"w has a grad and b.grad is None: expected 1 call of update, got {len(opt.calls)}"
    assert opt.calls[0][0] is w_array, "update(p, g, state) should receive w.data itself, not a copy"
    assert opt.calls[0][1] == np.float32, f"a float64 grad of a float32 parameter should reach update as float32, got {opt.calls[0][1]}"
    assert opt.calls[0][2] is opt.state[0], "update should receive the dict self.state[0] for parameter 0"
    assert np.allclose(w.data, 0.95), f"w = 1, grad 0.5, lr 0.1: expected w = 0.95 after step(), got {fmt(w.data)}"
    assert np.array_equal(b.data, np.zeros(3)), f"b.grad is None: b should be unchanged, got {fmt(b.data)}"
    opt.zero_grad()
    assert w.grad is None and b.grad is None, f"after zero_grad(): expected grads None, got {fmt(w.grad)}, {fmt(b.grad)}"
    w.grad = Tensor(np.ones((3, 2), dtype=np.float32))
    try:
        opt.step()
        raise AssertionError("w of shape (2, 3) with a grad of shape (3, 2): step() should raise ValueError")
    except ValueError as e:
        assert "(2, 3)" in str(e) and "(3, 2)" in str(e), f"the message should name both shapes, got: {e}"
        want = "Recorder.step: parameter 0 has shape (2, 3) but its grad has shape (3, 2)"
        assert str(e) == want, f"the shape error should read exactly '{want}', got: '{e}'"
print("Task 06.1 visible tests passed")

# %% [markdown]
# ## 2. SGD: weight decay and momentum
#
# Stochastic gradient descent moves each weight against its gradient:
# `p <- p - lr * g`. Two additions, written as PyTorch's `torch.optim.SGD`
# applies them:
#
# **Weight decay (L2).** Adding `(wd / 2) * ||p||^2` to the loss adds `wd * p`
# to the gradient, which pulls every weight towards 0 a little on each step:
#
# ```
# d = g + wd * p          ("coupled": the decay goes through the gradient)
# ```
#
# **Momentum.** On a loss shaped like a long narrow valley the gradient points
# mostly across the valley, so plain SGD zig-zags from wall to wall and creeps
# along the floor. Momentum keeps a running sum of past steps, the velocity
# `v` (one array per parameter, starting at 0): across the valley the
# gradients alternate in sign and cancel; along it they agree and add up.
#
# ```
# v = mu * v + d          (v starts at zeros, so the first step has v = d)
# p = p - lr * v
# ```
#
# With a constant gradient the velocity grows to `d / (1 - mu)`: with
# `mu = 0.9`, steps ten times longer than plain SGD's.
#
# **Worked example**, one weight `p = 1.0`, gradient `g = 0.5`, `lr = 0.1`:
#
# | optimizer | step 1 | step 2 (same g = 0.5) |
# |---|---|---|
# | SGD | `d = 0.5`, `p = 1 - 0.1 * 0.5 = 0.95` | `p = 0.95 - 0.05 = 0.90` |
# | SGD, wd = 0.1 | `d = 0.5 + 0.1 * 1 = 0.6`, `p = 0.94` | `d = 0.5 + 0.094 = 0.594`, `p = 0.8806` |
# | SGD, mu = 0.9 | `v = 0.5`, `p = 0.95` | `v = 0.9 * 0.5 + 0.5 = 0.95`, `p = 0.855` |
#
# ### Task 06.2: `SGD.update`
#
# Write `update(p, g, state)` for the hyper-parameters stored by the given
# `__init__` (`self.lr`, `self.momentum`, `self.weight_decay`):
#
# 1. `d = g + self.weight_decay * p`;
# 2. if `self.momentum != 0`: the velocity `v = state["momentum_buffer"]`
#    (create it as `np.zeros_like(p)` on the first step), updated **in place**
#    to `mu * v + d`, and `d = v`. With `momentum == 0` store nothing in `state`;
# 3. `p -= self.lr * d`, in place.
#
# Keep everything in `p`'s dtype: with float32 `p` and `g`, Python-float
# hyper-parameters keep the arithmetic in float32.

# %% nbgrader={"grade": false, "grade_id": "sgd", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class SGD(Optimizer):
    """p -= lr * d, d = g + weight_decay * p; with momentum mu: v = mu * v + d, p -= lr * v.

    State per parameter: "momentum_buffer" (same shape and dtype as p) when momentum != 0.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = check_number("SGD", "momentum", momentum, 0.0, 1.0)
        self.weight_decay = check_number("SGD", "weight_decay", weight_decay, 0.0)

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        # Task 06.2: d = g + wd * p; momentum buffer v = mu * v + d (in place); p -= lr * d
        ### BEGIN SOLUTION
        d = g + self.weight_decay * p if self.weight_decay != 0 else g
        if self.momentum != 0:
            v = state.get("momentum_buffer")
            if v is None:
                v = state["momentum_buffer"] = np.zeros_like(p)
            v *= self.momentum
            v += d
            d = v
        p -= self.lr * d
        ### END SOLUTION

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, weight_decay={self.weight_decay:g})"


# %% nbgrader={"grade": true, "grade_id": "test_06_2_sgd", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 06.2 (update is called directly; the step() tests at the end rely on Task 06.1)
from tinytorch_lib.testing import task

with task("06.2", uses={"06.1": "Optimizer.step"}):
    dummy = [Tensor(np.zeros(1, dtype=np.float32))]


    def run_update(opt, p0, grads):
        """p after calling opt.update once per gradient in grads, and the state dict."""
        p, state = np.array(p0, dtype=np.float32), {}
        for g in grads:
            opt.update(p, np.array(g, dtype=np.float32), state)
        return p, state


    p, state = run_update(SGD(dummy, lr=0.1), [1.0], [[0.5]])
    assert np.allclose(p, 0.95), f"SGD lr 0.1, p = 1, g = 0.5: expected p = 0.95, got {p}"
    assert state == {}, f"SGD without momentum should store no state, got keys {list(state)}"
    p, _ = run_update(SGD(dummy, lr=0.1, weight_decay=0.1), [1.0], [[0.5], [0.5]])
    assert np.allclose(p, 0.8806), f"SGD lr 0.1, wd 0.1, p = 1, g = 0.5 twice: expected 0.8806 (table above), got {p}"
    p, state = run_update(SGD(dummy, lr=0.1, momentum=0.9), [1.0], [[0.5], [0.5]])
    assert np.allclose(p, 0.855), f"SGD lr 0.1, mu 0.9, p = 1, g = 0.5 twice: expected 0.855, got {p}"
    assert "momentum_buffer" in state, f"momentum should keep state['momentum_buffer'], got keys {list(state)}"
    assert np.allclose(state["momentum_buffer"], 0.95), f"velocity after two steps: expected 0.95, got {fmt(state['momentum_buffer'])}"
    assert state["momentum_buffer"].dtype == np.float32, f"the velocity should be float32 like p, got {state['momentum_buffer'].dtype}"
    try:
        w = Tensor(np.ones(1, dtype=np.float32))
        w.grad = Tensor(np.ones(1, dtype=np.float32))
        Optimizer.step(Recorder([w], lr=1.0))
        assert np.allclose(w.data, 0.0)
    except Exception as e:
        raise AssertionError(f"this test calls step() from Task 06.1, and step() on w = 1, grad 1, lr 1 did not give "
                             f"w = 0 ({e!r}): make Task 06.1's tests pass first") from None
    w = Tensor(np.array([[1.0, -2.0]], dtype=np.float32), requires_grad=True)
    opt = SGD([w], lr=0.5, momentum=0.5)
    w.grad = Tensor(np.array([[1.0, 1.0]], dtype=np.float32))
    opt.step()
    opt.step()
    assert np.allclose(w.data, [[-0.25, -3.25]]), (f"w = [[1, -2]], grad [[1, 1]], lr 0.5, mu 0.5, two steps: "
                                                   f"expected [[-0.25, -3.25]], got {w.data}")
    assert opt.state_nbytes() == w.nbytes, f"momentum keeps one buffer of w's size ({w.nbytes} bytes), measured {opt.state_nbytes()}"
print("Task 06.2 visible tests passed")

# %% [markdown]
# ## 3. Adam: a step size per weight
#
# SGD uses one learning rate for every weight. When some gradients are 1000
# times larger than others, an `lr` small enough for the steep weights is far
# too small for the flat ones. Adam (Kingma & Ba, 2015) divides each weight's
# step by a running estimate of its gradient's size. It keeps two arrays per
# parameter, both starting at 0:
#
# ```
# d = g + wd * p                      coupled L2, as in SGD (PyTorch's Adam(weight_decay=...))
# t = t + 1                           this parameter's step count
# m = b1 * m + (1 - b1) * d           moving average of the gradient ("first moment")
# v = b2 * v + (1 - b2) * d * d       moving average of its square ("second moment")
# m_hat = m / (1 - b1**t)             bias correction: m and v start at 0, so early
# v_hat = v / (1 - b2**t)             averages are too small by exactly these factors
# p = p - lr * m_hat / (sqrt(v_hat) + eps)
# ```
#
# With a gradient of constant sign and size, `m_hat / sqrt(v_hat)` is about 1:
# each weight moves by about `lr` per step, whatever its gradient's scale.
# `eps` (1e-8) only keeps the division finite when `v_hat` is 0.
#
# **Worked example**, `p = 1.0`, `g = 0.5`, `lr = 0.1`, `b1 = 0.9`, `b2 = 0.999`:
#
# | | step 1 | step 2 (same g = 0.5) |
# |---|---|---|
# | `m` | `0.1 * 0.5 = 0.05` | `0.9 * 0.05 + 0.05 = 0.095` |
# | `v` | `0.001 * 0.25 = 0.00025` | `0.999 * 0.00025 + 0.00025 = 0.00049975` |
# | `m_hat` | `0.05 / 0.1 = 0.5` | `0.095 / 0.19 = 0.5` |
# | `v_hat` | `0.00025 / 0.001 = 0.25` | `0.00049975 / 0.001999 = 0.25` |
# | `p` | `1 - 0.1 * 0.5 / 0.5 = 0.9` | `0.9 - 0.1 = 0.8` |
#
# Without bias correction the first step would be
# `0.1 * 0.05 / sqrt(0.00025) = 0.316`, not `0.1`: both raw averages start
# biased towards 0, by different factors (`1 - b1` and `1 - b2`), and dividing
# one by the square root of the other does not cancel them.
#
# ### Task 06.3: `Adam`
#
# Two methods; the given `__init__` stores `self.lr`, `self.betas = (b1, b2)`,
# `self.eps`, `self.weight_decay`.
#
# - `direction(d, state)`: the moment updates and bias correction above.
#   On the first call create `state["exp_avg"]` (`m`) and `state["exp_avg_sq"]`
#   (`v`) as `np.zeros_like(d)` and `state["step"] = 0`; then add 1 to
#   `state["step"]`, update `m` and `v` **in place**, and return
#   `m_hat / (sqrt(v_hat) + eps)` (same shape and dtype as `d`).
# - `update(p, g, state)`: `d = g + self.weight_decay * p`, then
#   `p -= self.lr * self.direction(d, state)`, in place.
#
# The state names are PyTorch's. The step count is per parameter (a parameter
# skipped on some steps has its own `t`).

# %% nbgrader={"grade": false, "grade_id": "adam", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Adam(Optimizer):
    """Adam with bias correction and coupled L2 (d = g + weight_decay * p).

    State per parameter: "exp_avg" m and "exp_avg_sq" v (shape and dtype of p), "step" (int).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        name = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{name}: betas must be a pair (b1, b2), got {betas!r}") from None
        self.betas = (check_number(name, "betas[0]", b1, 0.0, 1.0), check_number(name, "betas[1]", b2, 0.0, 1.0))
        self.eps = check_number(name, "eps", eps, 0.0, low_open=True)
        self.weight_decay = check_number(name, "weight_decay", weight_decay, 0.0)

    def direction(self, d: np.ndarray, state: dict) -> np.ndarray:
        """d: (...) gradient -> (...) m_hat / (sqrt(v_hat) + eps), after updating m, v, step in state."""
        # Task 06.3: create m, v, step on the first call; t += 1; update m, v in place; bias-correct
        ### BEGIN SOLUTION
        if "step" not in state:
            state["exp_avg"] = np.zeros_like(d)
            state["exp_avg_sq"] = np.zeros_like(d)
            state["step"] = 0
        b1, b2 = self.betas
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * d
        v *= b2
        v += (1 - b2) * d * d
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        return m_hat / (np.sqrt(v_hat) + self.eps)
        ### END SOLUTION

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        # Task 06.3: d = g + wd * p (coupled L2); p -= lr * direction(d, state)
        ### BEGIN SOLUTION
        d = g + self.weight_decay * p if self.weight_decay != 0 else g
        p -= self.lr * self.direction(d, state)
        ### END SOLUTION

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lr={self.lr:g}, betas=({self.betas[0]:g}, {self.betas[1]:g}), "
                f"eps={self.eps:g}, weight_decay={self.weight_decay:g})")


# %% nbgrader={"grade": true, "grade_id": "test_06_3_adam", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 06.3 (update and direction are called directly; the step() test at the end relies on Task 06.1)
from tinytorch_lib.testing import task

with task("06.3", uses={"06.1": "Optimizer.step"}):
    state = {}
    r = Adam(dummy, lr=0.1).direction(np.array([0.5], dtype=np.float32), state)
    assert np.allclose(r, 1.0), f"first direction for d = 0.5 (worked example): expected m_hat / sqrt(v_hat) = 1, got {r}" \
        + (" (nan on the first step: is t still 0 in 1 - b1**t? increment the step count first)" if np.isnan(r).any() else "")
    assert sorted(state) == ["exp_avg", "exp_avg_sq", "step"], f"state keys: expected exp_avg, exp_avg_sq, step, got {sorted(state)}"
    assert state["step"] == 1, f"state['step'] after one call: expected 1, got {fmt(state['step'])}"
    assert np.allclose(state["exp_avg"], 0.05) and np.allclose(state["exp_avg_sq"], 0.00025), \
        f"m, v after one step of d = 0.5: expected 0.05, 0.00025, got {fmt(state['exp_avg'])}, {fmt(state['exp_avg_sq'])}"
    p, state = run_update(Adam(dummy, lr=0.1), [1.0], [[0.5], [0.5]])
    assert np.allclose(p, 0.8), f"Adam lr 0.1, p = 1, g = 0.5 twice: expected 0.8 (worked example), got {p}"
    assert np.allclose(state["exp_avg"], 0.095) and np.allclose(state["exp_avg_sq"], 0.00049975), \
        f"m, v after two steps: expected 0.095, 0.00049975, got {fmt(state['exp_avg'])}, {fmt(state['exp_avg_sq'])}"
    assert state["exp_avg"].dtype == np.float32 and p.dtype == np.float32, "state and p stay float32"
    p, _ = run_update(Adam(dummy, lr=0.1), [1.0], [[-3.0], [1.0]])
    m, v = 0.9 * 0.1 * -3.0 + 0.1 * 1.0, 0.999 * 0.001 * 9.0 + 0.001 * 1.0
    want = 1.0 + 0.1 - 0.1 * (m / 0.19) / (np.sqrt(v / 0.001999) + 1e-8)
    assert np.allclose(p, want, atol=1e-6), f"Adam lr 0.1, p = 1, g = -3 then 1: expected {want:.6f}, got {p}"
    p, _ = run_update(Adam(dummy, lr=0.1, weight_decay=0.5), [2.0], [[0.0]])
    assert np.allclose(p, 1.9), f"Adam, wd 0.5, p = 2, g = 0: d = 0 + 0.5 * 2 = 1, expected p = 1.9, got {p}"
    try:
        w = Tensor(np.ones(1, dtype=np.float32))
        w.grad = Tensor(np.ones(1, dtype=np.float32))
        Optimizer.step(Recorder([w], lr=1.0))
        assert np.allclose(w.data, 0.0)
    except Exception as e:
        raise AssertionError(f"this test calls step() from Task 06.1, and step() on w = 1, grad 1, lr 1 did not give "
                             f"w = 0 ({e!r}): make Task 06.1's tests pass first") from None
    w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    opt = Adam([w], lr=0.01)
    w.grad = Tensor(np.ones((2, 3), dtype=np.float32))
    opt.step()
    assert np.allclose(w.data, 0.99), f"Adam lr 0.01 on w = 1, grad 1: expected 0.99 everywhere, got {fmt(w.data)}"
    assert opt.state_nbytes() == 2 * w.nbytes, f"Adam keeps 2 arrays of w's size: expected {2 * w.nbytes} bytes, measured {opt.state_nbytes()}"
print("Task 06.3 visible tests passed")

# %% [markdown]
# ## 4. AdamW: weight decay that is not divided away
#
# In SGD, "L2 regularization" (add `wd * p` to the gradient) and "weight
# decay" (shrink `p` by `lr * wd * p`) are the same thing. In Adam they are
# not: the L2 term `wd * p` goes into `m` and `v` and is divided by
# `sqrt(v_hat)` like the rest of the gradient. Loshchilov & Hutter
# ("Decoupled Weight Decay Regularization", ICLR 2019) point out what that
# does: a weight whose gradients have been large has a large `sqrt(v_hat)`,
# so it is regularized **less** than a weight with small gradients; and when
# the gradient is small the decay itself gets normalized, so every weight
# shrinks by about `lr` per step, whatever `wd` is. Their fix, AdamW, takes the
# decay out of the gradient and applies it to the weight directly:
#
# ```
# p = p - lr * wd * p                     decoupled decay (PyTorch: p *= 1 - lr * wd), first
# p = p - lr * m_hat / (sqrt(v_hat) + eps)  Adam's step on the raw gradient g (no wd in m, v)
# ```
#
# **Worked example**, `p = 1.0`, `g = 0.5`, `lr = 0.1`, `wd = 0.1`, one step:
#
# | | step 1 |
# |---|---|
# | Adam, L2 | `d = 0.5 + 0.1 * 1 = 0.6`; direction `0.6 / sqrt(0.36) = 1`; `p = 0.9`: the decay vanished |
# | AdamW | `p = 1 - 0.1 * 0.1 * 1 = 0.99`; direction `0.5 / sqrt(0.25) = 1`; `p = 0.89` |
#
# With a zero gradient AdamW is pure exponential decay, `p_t = p_0 (1 - lr wd)^t`
# (its `m` and `v` stay 0, so its Adam direction is 0).
#
# ### Task 06.4: `AdamW.update`
#
# `AdamW` is an `Adam` (same `__init__`, state and `direction`; its default
# `weight_decay` is 0.01, as in PyTorch). Write its `update(p, g, state)`:
# first `p -= self.lr * self.weight_decay * p` in place, then
# `p -= self.lr * self.direction(g, state)` with the raw gradient `g`
# (`direction` is your Task 06.3).

# %% nbgrader={"grade": false, "grade_id": "adamw", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr * wd * p, then Adam's step on the raw gradient."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        # Task 06.4: p -= lr * wd * p (in place), then p -= lr * direction(g, state)
        ### BEGIN SOLUTION
        if self.weight_decay != 0:
            p -= (self.lr * self.weight_decay) * p
        p -= self.lr * self.direction(g, state)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_06_4_adamw", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 06.4 (they rely on Task 06.3's direction)
from tinytorch_lib.testing import task

with task("06.4", uses={"06.3": "Adam.direction"}):
    try:
        assert np.allclose(Adam(dummy, lr=0.1).direction(np.array([0.5], dtype=np.float32), {}), 1.0)
    except Exception as e:
        raise AssertionError(f"Task 06.4 calls direction from Task 06.3, and Adam.direction(0.5, {{}}) did not return 1 "
                             f"({e!r}): make Task 06.3's tests pass first") from None
    p, state = run_update(AdamW(dummy, lr=0.1, weight_decay=0.1), [1.0], [[0.5]])
    assert np.allclose(p, 0.89), f"AdamW lr 0.1, wd 0.1, p = 1, g = 0.5: expected 0.89 (worked example), got {p}"
    assert np.allclose(state["exp_avg"], 0.05), f"AdamW's m should see the raw gradient: expected 0.05, got {fmt(state['exp_avg'])}"
    p, _ = run_update(AdamW(dummy, lr=0.1, weight_decay=0.5), [2.0, -4.0], [[0.0, 0.0]] * 10)
    want = np.array([2.0, -4.0]) * (1 - 0.1 * 0.5) ** 10
    assert np.allclose(p, want, rtol=1e-5), f"AdamW, zero gradient, 10 steps: expected p0 * (1 - lr wd)^10 = {fmt(want)}, got {p}"
    assert AdamW(dummy).weight_decay == 0.01, "AdamW's default weight_decay is 0.01"
print("Task 06.4 visible tests passed")

# %% [markdown]
# ## 5. Systems analysis
#
# ### How many steps? An ill-conditioned quadratic
#
# The simplest loss with a long narrow valley is a quadratic
# `f(w) = 0.5 (w - c)^T A (w - c)` with gradient `A (w - c)` and minimum
# `f = 0` at `w = c`. The eigenvalues of `A` are the curvatures along its
# axes; here they run from 1 to 1000 (condition number 1000), over 20
# dimensions. Gradient descent is stable only for `lr < 2 / 1000`, and with
# such a step the flattest direction shrinks by at most a factor `1 - lr * 1`
# per step.
#
# Two versions of the same valley: **axis-aligned** (`A` diagonal: each weight
# has its own curvature) and **rotated** (`A = Q diag Q^T` with a random
# rotation `Q`: every weight mixes all curvatures). Each optimizer runs 500
# steps from `w = 0` for every learning rate of a small grid; the table shows
# the final loss for each, and the plot the best one, so the comparison is
# between methods, not between lucky settings. The gradient is computed in
# numpy; the optimizers are yours.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import place_legend

rng = np.random.default_rng(0)
dim, steps, kappa = 20, 500, 1000.0
curvatures = np.logspace(0, np.log10(kappa), dim)  # 1 ... 1000
rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
problems = {"axis-aligned": np.diag(curvatures), "rotated": rotation @ np.diag(curvatures) @ rotation.T}
c = rng.standard_normal(dim)
methods = {  # name -> (make optimizer, learning-rate grid)
    "SGD": (lambda ps, lr: SGD(ps, lr=lr), [f / kappa for f in (0.5, 1.0, 1.5, 1.9)]),
    "SGD momentum 0.9": (lambda ps, lr: SGD(ps, lr=lr, momentum=0.9), [f / kappa for f in (0.2, 0.5, 1.0, 1.5)]),
    "Adam": (lambda ps, lr: Adam(ps, lr=lr), [0.01, 0.03, 0.1, 0.3, 1.0]),
}


def losses_of(make, lr, A):
    """Loss (float64) after each of `steps` steps from w = 0 on f(w) = 0.5 (w - c)^T A (w - c)."""
    w = Tensor(np.zeros(dim, dtype=np.float32), requires_grad=True)
    opt = make([w], lr)
    out = []
    for _ in range(steps):
        e = w.data.astype(np.float64) - c
        w.grad = Tensor((A @ e).astype(np.float32))
        opt.step()
        e = w.data.astype(np.float64) - c
        out.append(0.5 * e @ A @ e)
    return np.array(out)


curves = {}
print(f"{'problem':<13} {'method':<17} {'final loss for each lr in the grid':<62} {'best lr':>8} {'steps to 1e-6':>14}")
for pname, A in problems.items():
    for mname, (make, grid) in methods.items():
        runs = {lr: losses_of(make, lr, A) for lr in grid}
        lr = min(runs, key=lambda k: runs[k][-1] if np.isfinite(runs[k][-1]) else np.inf)
        curves[pname, mname] = (lr, runs[lr])
        hit = np.flatnonzero(runs[lr] < 1e-6)
        finals = ", ".join(f"{k:g}: {r[-1]:.0e}" for k, r in runs.items())
        print(f"{pname:<13} {mname:<17} {finals:<62} {lr:>8g} "
              f"{(str(hit[0] + 1) if hit.size else '> ' + str(steps)):>14}")
print(f"loss at w = 0: axis-aligned {0.5 * c @ problems['axis-aligned'] @ c:.3g}, "
      f"rotated {0.5 * c @ problems['rotated'] @ c:.3g}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, pname in zip(axes, problems):
    for mname in methods:
        lr, curve = curves[pname, mname]
        ax.semilogy(np.arange(1, steps + 1), curve, label=f"{mname} (lr {lr:g})")
    ax.set_title(f"{pname} quadratic, condition number {kappa:g}")
    ax.set_xlabel("step")
    ax.grid(True, which="major", alpha=0.3)
axes[0].set_ylabel("loss f(w) - f(w*) (log scale)")
plt.tight_layout()
for ax in axes:
    place_legend(ax)
plt.show()

# %% [markdown]
# These runs involve no timing and are seeded, so the table is the same on
# every machine. Read it with the mechanisms in mind:
#
# - **SGD** is held back by the steepest direction (`lr < 2 / 1000`), and then
#   the flattest direction (curvature 1) shrinks by a factor `1 - lr` per
#   step: with `lr = 0.0019`, 500 steps leave `(1 - 0.0019)^500 = 0.39` of it.
#   Its curve falls fast while the steep directions are solved, then turns
#   into a shallow line: the takeaway of the plot is that line, the cost of
#   ill-conditioning for plain gradient descent.
# - **Momentum** adds up steps along the flat directions, where successive
#   gradients agree; for quadratics the number of steps it needs grows with
#   `sqrt(condition number)` instead of the condition number. The bumps in its
#   curve are the velocity overshooting and coming back.
# - **Adam** divides each weight's step by that weight's own gradient size: a
#   per-coordinate rescaling. On the axis-aligned valley that rescaling lines
#   up with the curvatures (it acts like a diagonal preconditioner), and most
#   learning rates of the grid work. On the rotated valley every coordinate
#   sees a mixture of all curvatures: look at how much more the final loss
#   depends on `lr` in its row. The best Adam curve hides that sensitivity; the
#   table shows it.
# - The floor near `1e-12` is float32: `w` is stored in float32, so it cannot
#   get closer to `c` than about `1e-7` relative, and the loss bounces there.
#
# Real networks are neither of these valleys; the point is that which
# optimizer needs fewer steps depends on the shape of the loss and on tuning,
# and is measured, not assumed.
#
# ### AdamW against Adam's L2, measured
#
# The case where the difference matters: two weights, both `1.0`, whose loss
# gradients are noise of very different sizes (plus and minus 10 for one, plus
# and minus 0.01 for the other), `lr = 0.01`, `wd = 0.1`, 500 steps. With no
# signal in the gradient, only the decay should move the weights.

# %%
def decay_run(make, steps=500):
    w = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    opt = make([w])
    signs = np.random.default_rng(1).choice([-1.0, 1.0], size=steps)
    for s in signs:
        w.grad = Tensor(np.array([10.0, 0.01], dtype=np.float32) * s)
        opt.step()
    return w.data


for name, make in [("Adam + L2 (coupled)", lambda ps: Adam(ps, lr=0.01, weight_decay=0.1)),
                   ("AdamW (decoupled)", lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1)),
                   ("Adam, no decay", lambda ps: Adam(ps, lr=0.01))]:
    w = decay_run(make)
    print(f"{name:<20} weight with gradient noise +-10: {w[0]:7.4f}   with +-0.01: {w[1]:7.4f}")
print(f"pure decay, (1 - lr wd)^500 = {(1 - 0.01 * 0.1) ** 500:.4f}")

# %% [markdown]
# With L2 inside Adam, the decay `wd * p = 0.1` is swamped by the gradient noise
# of size 10 (it is divided by a `sqrt(v_hat)` near 10), while for the weight with
# tiny gradients the decay dominates `m` and `v` and gets normalized up to a
# step of about `lr` per step: two weights with the same value are
# regularized very differently, for a reason that has nothing to do with the
# weights. AdamW shrinks both by the same factor, close to `(1 - lr wd)^t`,
# on top of the random-walk part of Adam's step that the noise causes.
#
# ### Optimizer state: real bytes for the Milestone 06 MLP
#
# The MLP 64-128-64-10 has the parameter shapes below (weights `(out, in)`,
# as `Linear` stores them). Each optimizer takes one step with a gradient on
# every parameter (state is created on the first step), then `state_nbytes()`
# adds up the `nbytes` of the arrays it actually keeps.

# %%
mlp_shapes = [(128, 64), (128,), (64, 128), (64,), (10, 64), (10,)]


def mlp_params(seed=0):
    r = np.random.default_rng(seed)
    ps = [Tensor(r.standard_normal(s).astype(np.float32) * 0.1, requires_grad=True) for s in mlp_shapes]
    for p in ps:
        p.grad = Tensor(r.standard_normal(p.shape).astype(np.float32) * 0.01)
    return ps


makers = {"SGD": lambda ps: SGD(ps, lr=0.01), "SGD momentum": lambda ps: SGD(ps, lr=0.01, momentum=0.9),
          "Adam": lambda ps: Adam(ps), "AdamW": lambda ps: AdamW(ps)}
params = mlp_params()
param_bytes = sum(p.nbytes for p in params)
grad_bytes = sum(p.grad.nbytes for p in params)
print(f"MLP 64-128-64-10: {sum(p.size for p in params):,} parameters, {param_bytes:,} bytes (float32), "
      f"gradients {grad_bytes:,} bytes")
print(f"{'optimizer':<14} {'state before step':>18} {'state after step':>17} {'x params':>9} {'weights + grads + state':>24}")
for name, make in makers.items():
    opt = make(mlp_params())
    before = opt.state_nbytes()
    opt.step()
    after = opt.state_nbytes()
    arrays = [a for s in opt.state for a in s.values() if isinstance(a, np.ndarray)]
    assert after == sum(a.nbytes for a in arrays) and all(a.dtype == np.float32 for a in arrays)
    print(f"{name:<14} {before:>18,} {after:>17,} {after / param_bytes:>8.1f}x {param_bytes + grad_bytes + after:>24,}")

# %% [markdown]
# Adam's state is two float32 copies of every parameter: for this MLP it is
# the largest item in training memory before activations. The ratio does not
# depend on the model, so for any model trained with Adam in float32, weights,
# gradients and state take 4 times the weights' bytes. (Large-model training
# attacks exactly this: 8-bit optimizer state, or sharding the state over many
# devices.)
#
# ### Time per step
#
# One `step()` on the MLP's six parameters, and on one parameter of one million
# values, timed with the course's `measure` (median of several repeats, BLAS
# threads held fixed). Each step changes the parameters, which is fine for
# timing: the work per step does not depend on the values.
#
# Beside your four optimizers, a second version of Adam: the same update,
# written so that no operation creates a new array. Every numpy call writes
# into `m`, `v`, `p` or one scratch buffer (`out=` and in-place operators),
# with the bias corrections folded into two scalars as PyTorch does:
# `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`. It is
# checked against your `Adam` first.
#
# Two columns count instead of timing, so they come out the same on any
# machine under any load: the temporaries a step holds at its peak
# (`tracemalloc`, which numpy reports every array to), and the minor page
# faults per step (`getrusage`): how often the operating system had to hand
# the process a fresh page of memory. The 1M-value steps of all five are
# timed in turns (`compare`), and each ratio to SGD is printed with the
# p10-p90 range of the paired repeats.

# %%
import math
import resource

import tracemalloc

from tinytorch_lib.timing import compare, measure


class InPlaceAdam(Adam):
    """Adam (weight_decay 0) without temporaries: one scratch buffer, the size of the largest parameter."""

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.scratch = np.empty(max(p.data.size for p in self.params), dtype=self.params[0].dtype)

    def update(self, p, g, state):
        if "step" not in state:
            state.update(exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p), step=0)
        (b1, b2), buf = self.betas, self.scratch[:p.size].reshape(p.shape)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        np.multiply(g, 1 - b1, out=buf)
        m += buf                                      # m = b1 m + (1 - b1) g
        v *= b2
        np.multiply(g, g, out=buf)
        buf *= 1 - b2
        v += buf                                      # v = b2 v + (1 - b2) g^2
        np.sqrt(v, out=buf)
        buf *= 1 / math.sqrt(1 - b2**t)
        buf += self.eps                               # sqrt(v_hat) + eps
        np.divide(m, buf, out=buf)
        buf *= self.lr / (1 - b1**t)                  # lr * m_hat / (sqrt(v_hat) + eps)
        p -= buf


mine, fast = mlp_params(1), mlp_params(1)
opt_mine, opt_fast = Adam(mine, lr=0.01), InPlaceAdam(fast, lr=0.01)
for _ in range(5):
    opt_mine.step()
    opt_fast.step()
assert all(np.allclose(a.data, b.data, rtol=1e-5, atol=1e-7) for a, b in zip(mine, fast)), "InPlaceAdam != Adam"


def faults_per_step(opt, n=20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        opt.step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def peak_temporary_bytes(opt):
    """Bytes of arrays alive at the peak of one step, beyond what was alive before it (numpy reports to tracemalloc)."""
    opt.step()  # the state is created on the first step: count a later one
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    opt.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


big = Tensor(np.zeros((1000, 1000), dtype=np.float32), requires_grad=True)
big.grad = Tensor(np.full((1000, 1000), 1e-3, dtype=np.float32))
ladder = dict(makers, **{"Adam in place": lambda ps: InPlaceAdam(ps)})
for make in ladder.values():  # warm-up: the allocator's first large blocks are not charged to the first row
    for _ in range(3):
        make([big]).step()
big_opts = {name: make([big]) for name, make in ladder.items()}
small = {name: measure(make(mlp_params()).step, repeats=5) for name, make in ladder.items()}
timed = compare({name: opt.step for name, opt in big_opts.items()}, repeats=5)
temps = {name: peak_temporary_bytes(opt) for name, opt in big_opts.items()}
faults = {name: faults_per_step(opt) for name, opt in big_opts.items()}
print(f"{'optimizer':<14} {'MLP (17,226 values)':>20} {'1M values':>10} {'ns / value':>11} {'vs SGD (p10-p90)':>19} "
      f"{'peak temporaries':>17} {'page faults / step':>19}")
for name in ladder:
    t_big = timed[name]
    print(f"{name:<14} {small[name].median * 1e6:>17.1f} us {t_big.median * 1e3:>7.2f} ms "
          f"{t_big.median * 1e9 / big.size:>11.2f} {format(timed.ratio(name, 'SGD'), '.2g'):>19} "
          f"{temps[name] / 1e6:>14.1f} MB {faults[name]:>19,.0f}")
print(f"1M values, in this run: Adam / Adam in place = {timed.ratio('Adam', 'Adam in place')}; "
      f"SGD / SGD momentum = {timed.ratio('SGD', 'SGD momentum')}")
print(f"one 4 MB array is {big.nbytes // resource.getpagesize():,} pages of {resource.getpagesize():,} bytes")
noisy = [timed.noisy] + [f"MLP {name}: {t.noisy}" for name, t in small.items() if t.noisy]
if any(noisy):
    print(next(line for line in noisy if line))

# %% [markdown]
# On the MLP a step costs tens of microseconds, mostly Python and numpy call
# overhead (six parameters, a few numpy calls each): the arithmetic on 17,226
# values is the smaller part.
#
# On one million values the update is memory traffic, not FLOPs. SGD is a
# multiply and a subtract; Adam as written in Task 06.3 is about a dozen
# numpy operations, each a full pass over a 4 MB array and most of them
# creating a new 4 MB temporary. How much a temporary costs depends on the
# memory allocator: when freed, large blocks may be handed back to the
# operating system, and the next one then has to be faulted in again page by
# page, each fault a trip into the kernel. The temporaries column counts the
# most temporary memory a step holds at once (the same on every machine);
# the page-fault column
# measures what that cost here: compare it with the number of pages in one
# array. The in-place version makes the same number of passes over memory
# but creates nothing, so it faults nothing in; the gap between the two Adam
# rows is the price of temporaries on this machine.
#
# Both SGD rows build exactly one temporary, the 4 MB `self.lr * d` (a
# student version that computes `g + wd * p` even when `wd = 0` builds two
# more). Whether that one temporary faults depends on the allocator's state,
# not on the code: glibc moves its threshold for handing blocks back as
# large blocks come and go, so the same SGD step can fault about a thousand
# pages a step in one notebook and none in the next, and then take several
# times as long as SGD with momentum. The cell warms every optimizer up
# first to make that less likely; when the faults column is not 0 for an
# SGD row, that row's time is the allocator's, not the arithmetic's.
#
# Temporaries are why real frameworks ship "fused"
# optimizer kernels (one pass that reads `p, g, m, v` and writes `p, m, v`),
# and it is the kind of rewrite Module 17 does: keep the clear version as the
# reference, check the fast one against it, time both.
#
# ## Summary
#
# - An optimizer owns the update rule and the state behind it: none for SGD,
#   one array per parameter for momentum, two for Adam and AdamW, all float32,
#   created on the first step.
# - Weight decay in Adam has two meanings. Coupled L2 is normalized away by
#   `sqrt(v_hat)`; AdamW's decoupled decay shrinks every weight by
#   `lr * wd` per step, as the AdamW paper argues and as measured above.
# - Which optimizer takes fewer steps depends on the shape of the loss; what
#   each step costs in memory and time is measured here, not assumed.
#
# Next: `tito module export 06`. Module 08's training loop calls
# `zero_grad()`, `backward()` and `step()` on a real model.
