# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 05: Autograd
#
# Training a network means nudging every weight against its gradient: a
# `64 -> 128 -> 64 -> 10` digit MLP has 17,226 weights, so 17,226 partial
# derivatives per step, of a loss built from a few dozen tensor operations.
# Writing those derivatives by hand for every model would be hopeless.
# **Reverse-mode automatic differentiation** gets all of them in one backward
# pass whose cost is of the same order as the forward pass (Section 10
# measures it): record what the forward pass computed, then walk the record
# backwards, applying the chain rule once per operation.
#
# Module 01 already records. Every `Tensor` operator passes its result through
# `record(op, out, inputs, **saved)`, which attaches a `Node` (the op's name,
# its inputs, anything saved) when an input has `requires_grad=True`. This
# module adds the other half, without changing Modules 01-04:
#
# - one **backward rule** per op, registered by name with
#   `@register_backward("mul")`: given the gradient of the loss with respect
#   to the op's output, it returns the gradient with respect to each input;
# - the **engine** `backward(tensor)`, which orders the recorded graph and
#   calls the rules, accumulating gradients into the tensors you asked about.
#
# | task | what you build | points |
# |---|---|---|
# | 05.1 | `unbroadcast`: sum a gradient back to the shape before broadcasting | 3 |
# | 05.2 | rules for `add sub mul div neg` | 3 |
# | 05.3 | the rule for `matmul` (batched and 1-d too) | 4 |
# | 05.4 | rules for `sum mean max reshape transpose getitem` | 5 |
# | 05.5 | rules for `ReLU Sigmoid Tanh GELU Softmax` and `cross_entropy` | 5 |
# | 05.6 | the engine: `topological_order` and `backward` | 4 |
#
# Each rule is tested on its own, by calling it on one recorded operation and
# comparing with finite differences, so the tasks do not wait for each other
# (Tasks 05.2-05.5 call your `unbroadcast` from Task 05.1). The engine's tests
# use tiny fake operations of their own, so Task 05.6 does not need your
# rules either.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.tensor import (AUTOGRAD, BACKWARD_RULES, Tensor, no_grad, record,  # noqa: F401 (re-exported)
                                  register_backward, set_backward_engine)

# %% [markdown]
# ## Which library are you running on?
#
# This notebook imports `Tensor` (Module 01) and the activations (Module 02)
# from `tinytorch_lib`, and later `Linear` and the losses (Modules 03-04, to
# check their gradients). Under the instructor's autograder they are always the
# course reference, so your grade here depends only on this module.

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "activations", "layers", "losses"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. The chain rule on a tiny graph
#
# A linear layer followed by a sum, with the shape of every node:
#
# ```
# x (2, 3) --\
#             matmul --> z (2, 4) --\
# W (3, 4) --/                       add --> h (2, 4) --> sum --> L ()
#                        b (4,) ----/   (b broadcast to (2, 4))
# ```
#
# Reverse mode starts at the end with `dL/dL = 1` and moves one node back at
# a time. Each step needs only the local derivative of one operation and the
# gradient that arrived from the step before (the chain rule:
# `dL/dinput = dL/doutput * doutput/dinput`). Write `g_t` for `dL/dt`, which
# always has the shape of `t`:
#
# | node | rule | gradient | shape |
# |---|---|---|---|
# | `L = h.sum()` | every element of `h` adds to `L` once | `g_h = ones` | (2, 4) |
# | `h = z + b` | `dh/dz = 1` | `g_z = g_h` | (2, 4) |
# | | `b` was used by both rows of `h` | `g_b = g_h.sum(axis=0)` | (4,) |
# | `z = x @ W` | `dz/dW` and `dz/dx` | `g_W = x.T @ g_z`, `g_x = g_z @ W.T` | (3, 4), (2, 3) |
#
# Every gradient has the shape of its tensor: that is the first check of any
# rule. The cell computes these by hand in numpy; in Section 7 your engine
# computes the same numbers.

# %%
x_np = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
W_np = np.arange(12.0).reshape(3, 4) / 10
b_np = np.array([0.1, 0.2, 0.3, 0.4])
L = (x_np @ W_np + b_np).sum()
g_h = np.ones((2, 4))
g_z = g_h
g_b = g_h.sum(axis=0)
g_W = x_np.T @ g_z
g_x = g_z @ W_np.T
print(f"L = {L:.2f}")
print("g_b", g_b.shape, g_b)
print("g_W", g_W.shape, "\n", g_W)
print("g_x", g_x.shape, "\n", g_x)

# %% [markdown]
# Three questions the rest of the module answers:
#
# - **Why unbroadcast?** `b` has 4 elements but its output `h` has 8: each
#   element of `b` reached `L` along two paths (one per row), so its gradient
#   is the sum over those rows. Any broadcast in the forward pass is a sum in
#   the backward pass (Task 05.1).
# - **Why accumulate?** In `y = x * x`, `x` is used twice. Each use sends back
#   `g_y * x`, and the true gradient `2 x g_y` is their sum. A gradient that
#   arrives along several paths is added up, never overwritten.
# - **Why topological order?** A node may pass its gradient on only after
#   **every** node that used it has sent its contribution; otherwise it sends
#   an incomplete sum. Processing nodes in reverse topological order (each
#   node after everything computed from it) guarantees that (Task 05.6).

# %% [markdown]
# ## 2. Unbroadcasting
#
# Broadcasting (Module 01) lines shapes up from the right, adds leading axes
# of size 1, and stretches size-1 axes. Undoing it on a gradient means:
#
# 1. sum over the leading axes that broadcasting added;
# 2. sum, keeping the axis, over every axis where the input had size 1 and
#    the gradient has more.
#
# ```
# input shape   gradient shape     step 1 (sum axis 0)   step 2 (sum axis 1, keepdims)
# (3, 1)        (2, 3, 4)          (3, 4)                (3, 1)
# (4,)          (2, 4)             (4,)                  (4,)
# ()            (2, 2)             sum of everything     ()
# ```
#
# ### Task 05.1: `unbroadcast`
#
# `unbroadcast(grad, shape)` returns `grad` (an `np.ndarray`) summed back to
# `shape` by the two steps above. If `grad`'s shape cannot have come from
# broadcasting `shape` (for example `(2, 3)` back to `(4,)`), raise
# `ValueError` naming both shapes, in the form
# `unbroadcast: a gradient of shape (2, 3) cannot come from broadcasting shape (4,)`.

# %% nbgrader={"grade": false, "grade_id": "unbroadcast", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """grad: (broadcast shape) -> (shape): sum over added leading axes and over stretched size-1 axes."""
    # Task 05.1: sum the leading axes, then the size-1 axes (keepdims), check the shape
    ### BEGIN SOLUTION
    shape = tuple(shape)
    grad = np.asarray(grad)
    extra = grad.ndim - len(shape)
    bad = ValueError(f"unbroadcast: a gradient of shape {grad.shape} cannot come from broadcasting shape {shape}")
    if extra < 0:
        raise bad
    g = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    if g.shape != shape:
        raise bad
    return np.asarray(g)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_05_1_unbroadcast", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.1
from tinytorch_lib.testing import task

with task("05.1"):
    g = np.arange(24.0).reshape(2, 3, 4)
    got = unbroadcast(g, (3, 1))
    assert got.shape == (3, 1), f"unbroadcast of a (2, 3, 4) gradient to (3, 1): expected shape (3, 1), got {got.shape}"
    want = g.sum(axis=0).sum(axis=1, keepdims=True)
    assert np.allclose(got, want), f"unbroadcast(arange(24).reshape(2, 3, 4), (3, 1)): expected {fmt(want.ravel())}, got {fmt(got.ravel())}"
    got = unbroadcast(np.ones((2, 4)), (4,))
    assert got.shape == (4,) and np.allclose(got, 2), f"unbroadcast(ones((2, 4)), (4,)): expected [2, 2, 2, 2], got {fmt(got)}"
    got = unbroadcast(np.ones((5, 3)), (5, 3))
    assert got.shape == (5, 3) and np.allclose(got, 1), f"unbroadcast to the same shape (5, 3) should change nothing, got {fmt(got)}"
    try:
        unbroadcast(np.ones((2, 3)), (4,))
    except ValueError as e:
        assert "(2, 3)" in str(e) and "(4,)" in str(e), f"the error should name both shapes, got: {e}"
    else:
        raise AssertionError("unbroadcast(ones((2, 3)), (4,)) should raise ValueError")
print("Task 05.1 visible tests passed")

# %% [markdown]
# ## 3. How a rule is written, and how it is checked
#
# A backward rule is a function `rule(grad, out) -> tuple`:
#
# - `grad` is an `np.ndarray` of `out`'s shape: the gradient of the loss with
#   respect to the op's output;
# - `out` is the output `Tensor`; `out.node.inputs` are the op's inputs
#   (Tensors, or Python numbers as in `x * 2`), `out.node.saved` what the op
#   saved (an axis, an index), `out.data` the output's values;
# - it returns one entry per input: an `np.ndarray` of that input's shape and
#   dtype, or `None` for an input that needs no gradient.
#
# Two given helpers make that short: `needs_grad(v)` (a Tensor with
# `requires_grad=True`) and `grad_for(v, g)`, which returns `None` when `v`
# needs no gradient, and otherwise `g` unbroadcast to `v`'s shape (your Task
# 05.1) in `v`'s dtype. So the rule for `add` is one line:
#
# ```python
# @register_backward("add")
# def add_backward(grad, out):
#     a, b = out.node.inputs
#     return grad_for(a, grad), grad_for(b, grad)
# ```
#
# `register_backward("add")` stores the function in `BACKWARD_RULES["add"]`,
# where the engine finds it by the op's name. Later modules add rules the same
# way, in their own files (`"conv2d"` in Module 09).

# %% tags=["export"]
def needs_grad(v) -> bool:
    """True for a Tensor that requires grad (a Python number or a constant Tensor needs no gradient)."""
    return isinstance(v, Tensor) and v.requires_grad


def grad_for(v, g):
    """The gradient entry for input `v`: None if it needs none, else `g` unbroadcast to v.shape in v.dtype."""
    if not needs_grad(v):
        return None
    return np.asarray(unbroadcast(np.asarray(g), v.shape)).astype(v.dtype, copy=False)


def zero_grad(tensors) -> None:
    """Forget accumulated gradients: t.grad = None for each tensor."""
    for t in tensors:
        t.grad = None

# %% [markdown]
# ### Checking a gradient: central finite differences
#
# The oracle for every rule is the definition of the derivative. For a
# scalar function `f` and a small `eps`,
#
# `df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`,
#
# with an error of order `eps^2` (the first-order terms cancel). In float64
# with `eps = 1e-6`, that truncation error is about `1e-12` and the rounding
# error about `1e-16 / 1e-6 = 1e-10` relative to `f`. To check a rule of a
# non-scalar op, take `f = sum(op(x) * w)` for a random `w` of the output's
# shape: its gradient is exactly what the rule returns when it is given
# `grad = w`.
#
# The (read-only) cell below gives three tools used in the tests and later
# modules:
#
# - `numerical_gradient(fn, arrays, i, weight)`: the finite-difference gradient
#   of `sum(fn(*arrays) * weight)` with respect to `arrays[i]`;
# - `check_rule(rule, fn, arrays)`: one recorded op against finite
#   differences, **without** the engine (it calls the rule directly);
# - `gradcheck(fn, inputs)`: a whole function of tensors through your engine
#   (Task 05.6) against finite differences, in float64. It passes when every
#   element satisfies `|autograd - fd| <= atol + rtol * |fd|`, with
#   `atol = 1e-5, rtol = 1e-3` (PyTorch's defaults); a wrong rule is usually off
#   by order 1. It returns the largest absolute error and the largest relative
#   error `|autograd - fd| / (|fd| + atol)`, and raises `AssertionError`
#   naming the input and the element that failed. Modules 09-13 check their
#   own rules with it.

# %% nbgrader={"grade": false, "grade_id": "gradient_checks", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["export"]
def numerical_gradient(fn, arrays: list, i: int, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d sum(fn(*arrays) * weight) / d arrays[i] by central differences (arrays: float64 ndarrays or numbers)."""
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in arrays]
    x = arrays[i]
    grad = np.zeros_like(x)

    def f():
        with no_grad():
            out = fn(*[Tensor(a) if isinstance(a, np.ndarray) else a for a in arrays])
        return float(np.sum(np.asarray(out.data, dtype=np.float64) * weight))

    for j in np.ndindex(*x.shape):
        keep = x[j]
        x[j] = keep + eps
        up = f()
        x[j] = keep - eps
        down = f()
        x[j] = keep
        grad[j] = (up - down) / (2 * eps)
    return grad


def _describe(arrays) -> str:
    return ", ".join(str(np.shape(a)) if isinstance(a, np.ndarray) else repr(a) for a in arrays)


def check_rule(rule, fn, arrays: list, seed: int = 0, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Call `rule` on the one op `fn` records and compare with finite differences; AssertionError if they differ.

    arrays: float64 ndarrays (made into Tensors with requires_grad=True) or Python numbers.
    """
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) if isinstance(a, np.ndarray) else a for a in arrays]
    out = fn(*tensors)
    what = f"{rule.__name__} on inputs of shapes {_describe(arrays)}"
    assert isinstance(out, Tensor) and out.node is not None, f"{what}: the op recorded no node"
    w = np.random.default_rng(seed).standard_normal(out.shape)
    try:
        got = rule(w.copy(), out)
    except NotImplementedError:
        raise
    except Exception as e:  # name the input that made the rule fail, not just numpy's complaint
        saved = {k: v for k, v in out.node.saved.items() if k != "module"}
        raise AssertionError(f"{what}, saved {saved}: the rule raised {type(e).__name__}: {e}") from None
    inputs = out.node.inputs
    assert isinstance(got, tuple) and len(got) == len(inputs), \
        f"{what}: expected a tuple with one entry per input ({len(inputs)}), got {type(got).__name__} {got!r:.80}"
    for k, (v, g) in enumerate(zip(inputs, got)):
        if not needs_grad(v):
            assert g is None, f"{what}: input {k} is {v!r}, which needs no gradient: expected None, got {g!r:.80}"
            continue
        assert isinstance(g, np.ndarray), f"{what}: gradient of input {k}: expected an np.ndarray, got {type(g).__name__}"
        assert g.shape == v.shape, f"{what}: gradient of input {k}: expected shape {v.shape}, got {g.shape}"
        assert g.dtype == v.dtype, f"{what}: gradient of input {k}: expected dtype {v.dtype}, got {g.dtype}"
        idx = next(n for n, t in enumerate(tensors) if t is v)
        want = numerical_gradient(fn, arrays, idx, w)
        err = np.abs(g - want)
        bad = err > atol + rtol * np.abs(want)
        if bad.any():
            at = tuple(int(n) for n in np.argwhere(bad)[0])
            raise AssertionError(f"{what}: gradient of input {k} at index {at}: expected {want[at]:.6g} "
                                 f"(finite differences), got {g[at]:.6g}; expected gradient {np.round(want, 4).tolist()!s:.200}")


def gradcheck(fn, inputs: list, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> dict:
    """Autograd (backward) against central finite differences for y = fn(*inputs), in float64.

    inputs: arrays or Tensors (each becomes a float64 Tensor with requires_grad=True).
    Passes when |autograd - fd| <= atol + rtol * |fd| everywhere; raises AssertionError naming the
    input and element otherwise. Returns {"max_abs": ..., "max_rel": ..., "per_input": [(abs, rel), ...]}.
    """
    arrays = [np.array(v.data if isinstance(v, Tensor) else v, dtype=np.float64) for v in inputs]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.node is None:
        raise RuntimeError(f"gradcheck: fn's output (shape {out.shape}) recorded no graph: it does not depend on "
                           "the inputs through recorded ops (or ran under no_grad)")
    w = np.random.default_rng(seed).standard_normal(out.shape)
    backward(out, w)  # this module's engine (Task 05.6)
    per_input = []
    for i, t in enumerate(tensors):
        got = np.zeros_like(arrays[i]) if t.grad is None else np.asarray(t.grad.data, dtype=np.float64)
        want = numerical_gradient(fn, arrays, i, w, eps)
        err = np.abs(got - want)
        bad = err > atol + rtol * np.abs(want)
        if bad.any():
            at = tuple(int(n) for n in np.argwhere(bad)[0])
            raise AssertionError(f"gradcheck: input {i} (shape {arrays[i].shape}) at index {at}: autograd {got[at]:.6g}, "
                                 f"finite differences {want[at]:.6g} (abs error {err[at]:.2e} > "
                                 f"{atol:g} + {rtol:g} * |fd|)")
        per_input.append((float(err.max(initial=0.0)), float((err / (np.abs(want) + atol)).max(initial=0.0))))
    return {"max_abs": max((a for a, _ in per_input), default=0.0),
            "max_rel": max((r for _, r in per_input), default=0.0), "per_input": per_input}


# %% [markdown]
# ## 4. Elementwise rules
#
# For `out = a op b` (after broadcasting), with `g` the gradient of `out`:
#
# | op | gradient for `a` | gradient for `b` |
# |---|---|---|
# | `add` | `g` | `g` |
# | `sub` | `g` | `-g` |
# | `mul` | `g * b` | `g * a` |
# | `div` | `g / b` | `-g * a / b**2` |
# | `neg` (one input) | `-g` | |
#
# Then `grad_for` unbroadcasts each to its input's shape. Either input may be
# a Python number (`x * 2`, `1 - x`, recorded as `(x, 2)` and `(1, x)`): use
# its value in the formula, and `grad_for` returns `None` for it.
# Worked example: `a` of shape (2, 3) times `b` of shape (3,), `g` all ones:
# `g * b` is (2, 3), the gradient of `a`; `g * a` is (2, 3), summed over the
# rows to (3,) for `b`.
#
# ### Task 05.2: `add sub mul div neg`
#
# Write the five rules from the table. Each returns a tuple with one entry per
# input, in the order of `out.node.inputs` (one entry for `neg`). The given
# `value(v)` returns the array of a Tensor or the number itself. The tests run
# each rule with broadcasting shapes and with a Python number on either side,
# and check shapes, dtypes (a float32 input gets a float32 gradient) and values
# against finite differences.

# %% nbgrader={"grade": false, "grade_id": "elementwise_rules", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def value(v):
    """The array of a Tensor, or a Python number as it is."""
    return v.data if isinstance(v, Tensor) else v


@register_backward("add")
def add_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.2: out = a + b
    ### BEGIN SOLUTION
    a, b = out.node.inputs
    return grad_for(a, grad), grad_for(b, grad)
    ### END SOLUTION


@register_backward("sub")
def sub_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.2: out = a - b
    ### BEGIN SOLUTION
    a, b = out.node.inputs
    return grad_for(a, grad), grad_for(b, -grad)
    ### END SOLUTION


@register_backward("mul")
def mul_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.2: out = a * b
    ### BEGIN SOLUTION
    a, b = out.node.inputs
    return grad_for(a, grad * value(b)), grad_for(b, grad * value(a))
    ### END SOLUTION


@register_backward("div")
def div_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.2: out = a / b
    ### BEGIN SOLUTION
    a, b = out.node.inputs
    ga = grad_for(a, grad / value(b)) if needs_grad(a) else None
    gb = grad_for(b, -grad * value(a) / (value(b) * value(b))) if needs_grad(b) else None
    return ga, gb
    ### END SOLUTION


@register_backward("neg")
def neg_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.2: out = -a
    ### BEGIN SOLUTION
    (a,) = out.node.inputs
    return (grad_for(a, -grad),)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_05_2_elementwise", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.2 (they rely on Task 05.1's unbroadcast)
from tinytorch_lib.testing import task

with task("05.2", uses={"05.1": "unbroadcast"}):
    try:
        assert unbroadcast(np.ones((2, 3)), (3,)).shape == (3,)
    except Exception as e:
        raise AssertionError(f"Task 05.2 calls unbroadcast from Task 05.1 (through grad_for), and "
                             f"unbroadcast(ones((2, 3)), (3,)) did not return shape (3,) ({e!r}): "
                             f"make Task 05.1's tests pass first") from None
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.uniform(0.5, 2.0, 3)
    check_rule(add_backward, lambda a, b: a + b, [a, b])
    check_rule(sub_backward, lambda a, b: a - b, [a, b])
    check_rule(mul_backward, lambda a, b: a * b, [a, b])
    check_rule(div_backward, lambda a, b: a / b, [a, b])
    check_rule(neg_backward, lambda a: -a, [a])
    check_rule(mul_backward, lambda a, k: a * k, [a, 2.5])  # a Python number gets None
    check_rule(sub_backward, lambda k, a: k - a, [1.0, a])  # 1 - a is recorded as inputs (1.0, a)
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    out = x * Tensor(np.full(3, 2.0, dtype=np.float32))
    got = mul_backward(np.ones((2, 3), dtype=np.float32), out)
    assert got[1] is None, f"(2, 3) float32 requiring grad * a constant (3,) Tensor: the constant needs no gradient, got {got[1]!r}"
    assert got[0].dtype == np.float32 and np.allclose(got[0], 2.0), \
        f"gradient of x in x * [2, 2, 2] with grad = ones: expected float32 twos, got {got[0].dtype} {fmt(got[0])}"
print("Task 05.2 visible tests passed")

# %% [markdown]
# ## 5. Matmul
#
# For `out = a @ b` with `a: (n, k)`, `b: (k, m)` and `g: (n, m)`:
#
# ```
# g_a = g @ b.T      (n, m) @ (m, k) -> (n, k)
# g_b = a.T @ g      (k, n) @ (n, m) -> (k, m)
# ```
#
# (Each `out[i, j] = sum_p a[i, p] b[p, j]`, so `a[i, p]` meets `b[p, j]` once
# for every `j`: summing `g[i, j] b[p, j]` over `j` is row `i` of `g @ b.T`.)
# Each costs as many FLOPs as the forward product, so the backward of a
# matmul does twice its forward's FLOPs (how long it takes is measured in
# Section 10).
#
# Two generalisations, as in numpy's `matmul`:
#
# - **batched**: `(..., n, k) @ (..., k, m)`; "transpose" means swapping the
#   last two axes (`np.swapaxes(b, -1, -2)`), and batch axes broadcast like
#   elementwise ops, so `grad_for` sums a shared operand's gradient over the
#   batch. `(8, 5, 3) @ (3, 4)`: `g_b` is `(8, 3, 4)` before unbroadcasting, `(3, 4)` after;
# - **1-d operands**: numpy treats `a: (k,)` as `(1, k)` and `b: (k,)` as `(k, 1)`
#   and drops that axis from the result. Do the same: view the 1-d operand as
#   2-d, reshape `g` to the 2-d product's shape (put the dropped size-1 axes
#   back), apply the formulas, and reshape each gradient to its input's shape.
#
# ### Task 05.3: the `matmul` rule
#
# Return `(g_a, g_b)` for 2-d, batched (with broadcast batch axes) and 1-d
# operands (vector @ matrix, matrix @ vector, vector @ vector). Compute a
# gradient only for an input with `needs_grad` true, and return `None` for the
# other: in an MLP the input batch needs no gradient, and skipping it saves a
# whole matmul of the first layer's backward.

# %% nbgrader={"grade": false, "grade_id": "matmul_rule", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("matmul")
def matmul_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.3: g_a = g @ b^T, g_b = a^T @ g; batched, broadcast and 1-d operands
    ### BEGIN SOLUTION
    a, b = out.node.inputs
    A = a.data[None, :] if a.ndim == 1 else a.data  # (k,) -> (1, k)
    B = b.data[:, None] if b.ndim == 1 else b.data  # (k,) -> (k, 1)
    G = np.asarray(grad).reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
    ga = gb = None
    if needs_grad(a):
        ga = unbroadcast(G @ np.swapaxes(B, -1, -2), A.shape).reshape(a.shape).astype(a.dtype, copy=False)
    if needs_grad(b):
        gb = unbroadcast(np.swapaxes(A, -1, -2) @ G, B.shape).reshape(b.shape).astype(b.dtype, copy=False)
    return ga, gb
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_05_3_matmul", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.3 (batched cases rely on Task 05.1's unbroadcast)
from tinytorch_lib.testing import task

with task("05.3", uses={"05.1": "unbroadcast"}):
    try:
        assert unbroadcast(np.ones((2, 3, 4)), (3, 4)).shape == (3, 4)
    except Exception as e:
        raise AssertionError(f"Task 05.3 calls unbroadcast from Task 05.1, and unbroadcast(ones((2, 3, 4)), (3, 4)) "
                             f"did not return shape (3, 4) ({e!r}): make Task 05.1's tests pass first") from None
    rng = np.random.default_rng(0)
    mm = lambda a, b: a @ b
    check_rule(matmul_backward, mm, [rng.standard_normal((2, 3)), rng.standard_normal((3, 4))])
    check_rule(matmul_backward, mm, [rng.standard_normal((5, 2, 3)), rng.standard_normal((3, 4))])  # shared b
    check_rule(matmul_backward, mm, [rng.standard_normal(3), rng.standard_normal((3, 4))])          # vector @ matrix
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    W = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    got = matmul_backward(np.ones((2, 4), dtype=np.float32), x @ W)
    assert got[0] is None, f"(2, 3) constant @ (3, 4) requiring grad: the constant needs no gradient, got {got[0]!r:.60}"
    assert got[1].shape == (3, 4) and got[1].dtype == np.float32 and np.allclose(got[1], 2.0), \
        f"ones (2, 3) @ W (3, 4) with grad = ones (2, 4): expected g_W = x.T @ g = twos (3, 4) float32, got {fmt(got[1])}"
print("Task 05.3 visible tests passed")

# %% [markdown]
# ## 6. Reductions and shape operations
#
# A reduction's backward spreads the gradient back over what was reduced.
# `out = x.sum(axis=1)` of a `(2, 3)` tensor is `(2,)`; every `x[i, j]` adds
# to `out[i]` once, so `g_x[i, j] = g[i]`: put the reduced axis back as size
# 1, `(2,) -> (2, 1)`, then broadcast to `(2, 3)`. The given
# `restore_reduced_axes(g, shape, axis, keepdims)` does the first step for any
# `axis` (None, an int, a tuple) and `keepdims`.
#
# | op (saved) | gradient of `x` |
# |---|---|
# | `sum` (`axis`, `keepdims`) | `g` with the reduced axes restored, broadcast to `x.shape` |
# | `mean` (same) | as `sum`, divided by the number of elements averaged (`x.size // out.size`) |
# | `max` (same) | `g` (restored) at the positions equal to the max, 0 elsewhere; **ties split `g` evenly**: two maxima each get `g / 2` |
# | `reshape` | `g.reshape(x.shape)` |
# | `transpose` (`axes`) | `g` transposed by the **inverse** permutation (`np.argsort(axes)`); no axes means all reversed |
# | `getitem` (`index`) | zeros of `x.shape`, with `g` added at `index` |
#
# `transpose` saves `axes` as `Tensor.transpose` received them: `()` (reverse
# all), `(0, 2, 1)`, or one tuple inside a tuple, `((0, 2, 1),)`.
#
# For `getitem`, `gx[index] += g` is wrong when an index repeats:
# `x[[0, 0, 1]]` uses `x[0]` twice, but numpy's `+=` on a fancy index writes
# each position once. `np.add.at(gx, index, g)` adds every occurrence:
#
# ```
# x[[0, 0, 1]] with g = [1, 1, 1]:   gx[idx] += g -> [1, 1, 0]    np.add.at -> [2, 1, 0]
# ```
#
# ### Task 05.4: `sum mean max reshape transpose getitem`
#
# Write the six rules from the table (one input each, so each returns a
# 1-tuple). The tests cover `axis` None, an int, a negative int and a tuple,
# `keepdims` True and False, ties in `max`, all three forms of `axes`, and
# basic, slice and repeated fancy indices.

# %% tags=["export"]
def restore_reduced_axes(g: np.ndarray, shape: tuple, axis, keepdims: bool) -> np.ndarray:
    """The gradient of a reduction of an array of `shape`, with the reduced axes back as size 1.

    (2, 3) sum(axis=1) -> g (2,) -> (2, 1); axis=None -> (1, 1); keepdims=True: unchanged.
    """
    g = np.asarray(g)
    if axis is None:
        return g.reshape((1,) * len(shape))
    if keepdims:
        return g
    axes = axis if isinstance(axis, tuple) else (axis,)
    return np.expand_dims(g, tuple(a % len(shape) for a in axes))


# %% nbgrader={"grade": false, "grade_id": "reduction_rules", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("sum")
def sum_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: broadcast the restored gradient to x's shape
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    g = restore_reduced_axes(grad, x.shape, out.node.saved["axis"], out.node.saved["keepdims"])
    return (grad_for(x, np.broadcast_to(g, x.shape)),)
    ### END SOLUTION


@register_backward("mean")
def mean_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: like sum, divided by the number of elements averaged
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    g = restore_reduced_axes(grad, x.shape, out.node.saved["axis"], out.node.saved["keepdims"])
    count = x.size // max(out.size, 1)
    return (grad_for(x, np.broadcast_to(g / count, x.shape)),)
    ### END SOLUTION


@register_backward("max")
def max_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: g at the maximum's positions, split evenly among ties
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    axis, keepdims = out.node.saved["axis"], out.node.saved["keepdims"]
    g = restore_reduced_axes(grad, x.shape, axis, keepdims)
    m = restore_reduced_axes(out.data, x.shape, axis, keepdims)
    mask = x.data == m
    count = mask.sum(axis=axis, keepdims=True)
    return (grad_for(x, mask * (g / count)),)
    ### END SOLUTION


@register_backward("reshape")
def reshape_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: back to x's shape
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    return (grad_for(x, np.reshape(grad, x.shape)),)
    ### END SOLUTION


@register_backward("transpose")
def transpose_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: the inverse permutation
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    axes = out.node.saved["axes"]
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = [a % x.ndim for a in axes] if axes else list(range(x.ndim))[::-1]
    return (grad_for(x, np.transpose(grad, np.argsort(perm))),)
    ### END SOLUTION


@register_backward("getitem")
def getitem_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.4: scatter-add g into zeros of x's shape with np.add.at
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    gx = np.zeros(x.shape, dtype=np.result_type(grad, x.dtype))
    np.add.at(gx, out.node.saved["index"], grad)
    return (grad_for(x, gx),)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_05_4_reductions", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.4 (grad_for relies on Task 05.1's unbroadcast)
from tinytorch_lib.testing import task

with task("05.4", uses={"05.1": "unbroadcast"}):
    try:
        assert unbroadcast(np.ones((2, 3)), (2, 3)).shape == (2, 3)
    except Exception as e:
        raise AssertionError(f"the rules return grad_for(...), which calls unbroadcast from Task 05.1, and "
                             f"unbroadcast(ones((2, 3)), (2, 3)) did not return shape (2, 3) ({e!r}): "
                             f"make Task 05.1's tests pass first") from None
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((2, 3, 4))
    check_rule(sum_backward, lambda x: x.sum(), [x3])
    check_rule(sum_backward, lambda x: x.sum(axis=1), [x3])
    check_rule(mean_backward, lambda x: x.mean(axis=-1, keepdims=True), [x3])
    check_rule(max_backward, lambda x: x.max(axis=0), [x3])
    check_rule(reshape_backward, lambda x: x.reshape(4, -1), [x3])
    check_rule(transpose_backward, lambda x: x.transpose(1, 2, 0), [x3])
    check_rule(getitem_backward, lambda x: x[1, :, ::2], [x3])
    t = Tensor([[1.0, 5.0, 5.0]], requires_grad=True)
    got = max_backward(np.array([1.0]), t.max(axis=1))[0]
    assert np.allclose(got, [[0, 0.5, 0.5]]), f"max of [[1, 5, 5]] along axis 1, grad 1: ties split evenly, expected [[0, 0.5, 0.5]], got {fmt(got)}"
    v = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    got = getitem_backward(np.ones(3), v[np.array([0, 0, 1])])[0]
    assert np.allclose(got, [2, 1, 0]), f"x[[0, 0, 1]] of a (3,) tensor with grad = ones: expected [2, 1, 0] (np.add.at), got {fmt(got)}"
print("Task 05.4 visible tests passed")

# %% [markdown]
# ## 7. Activations and the loss
#
# Module 02's activations record under their class name with `saved["module"]`
# (the activation object, so `Softmax`'s rule can read `module.axis`). With
# `x` the input, `y = out.data` the output and `g` the incoming gradient:
#
# | op | gradient of `x` | why |
# |---|---|---|
# | `ReLU` | `g * (x > 0)` | slope 1 where `x > 0`, 0 elsewhere (0 at `x = 0`, as PyTorch) |
# | `Sigmoid` | `g * y * (1 - y)` | `s' = s (1 - s)`: reuse the output |
# | `Tanh` | `g * (1 - y**2)` | `tanh' = 1 - tanh^2` |
# | `GELU` | `g * (0.5 (1 + t) + 0.5 x (1 - t**2) c (1 + 3 * 0.044715 x**2))` | with `c = sqrt(2/pi)`, `t = tanh(c (x + 0.044715 x**3))` |
# | `Softmax` | `y * (g - sum(g * y, axis, keepdims=True))` | Jacobian `diag(y) - y y^T`, applied without building it |
#
# Sigmoid and Tanh reuse the output the forward pass already computed: no
# second `exp`. Softmax's Jacobian along an axis of length `n` is `n x n`;
# the formula applies it in `O(n)` per row.
#
# **Cross-entropy** (Module 04) records `cross_entropy` with one input, the
# logits `(batch, classes)`, and saves `targets` (int64, `(batch,)`) and
# `probs` (the softmax of the logits, `(batch, classes)`). The loss is the mean
# over the batch of `-log probs[i, targets[i]]`, so with `g` the (0-d) incoming
# gradient:
#
# `g_logits = g * (probs - onehot(targets)) / batch`
#
# Worked example: one row, `probs = [0.1, 0.7, 0.2]`, target 1, `g = 1`:
# `g_logits = [0.1, -0.3, 0.2]`. The gradient pulls the true class up and the
# others down, and it is bounded: no `log`, no division by a small probability.
#
# ### Task 05.5: `ReLU Sigmoid Tanh GELU Softmax cross_entropy`
#
# Write the six rules (each returns a 1-tuple), each gradient in the input's
# dtype. The tests use inputs of several shapes, Softmax along different axes
# (`out.node.saved["module"].axis`), and cross-entropy on hand-made recorded
# losses (`record("cross_entropy", loss, (logits,), targets=..., probs=...)`).

# %% nbgrader={"grade": false, "grade_id": "activation_rules", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
@register_backward("ReLU")
def relu_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: g * (x > 0)
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    return (grad_for(x, grad * (x.data > 0)),)
    ### END SOLUTION


@register_backward("Sigmoid")
def sigmoid_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: g * y * (1 - y)
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    y = out.data
    return (grad_for(x, grad * y * (1 - y)),)
    ### END SOLUTION


@register_backward("Tanh")
def tanh_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: g * (1 - y**2)
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    y = out.data
    return (grad_for(x, grad * (1 - y * y)),)
    ### END SOLUTION


@register_backward("GELU")
def gelu_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: the derivative of the tanh approximation
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    v = x.data
    c = np.sqrt(2.0 / np.pi)
    t = np.tanh(c * (v + 0.044715 * v * v * v))
    d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
    return (grad_for(x, grad * d),)
    ### END SOLUTION


@register_backward("Softmax")
def softmax_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: y * (g - sum(g * y, axis, keepdims=True))
    ### BEGIN SOLUTION
    (x,) = out.node.inputs
    axis = out.node.saved["module"].axis
    y = out.data
    return (grad_for(x, y * (grad - (grad * y).sum(axis=axis, keepdims=True))),)
    ### END SOLUTION


@register_backward("cross_entropy")
def cross_entropy_backward(grad: np.ndarray, out: Tensor) -> tuple:
    # Task 05.5: g * (probs - onehot(targets)) / batch
    ### BEGIN SOLUTION
    (logits,) = out.node.inputs
    probs, targets = out.node.saved["probs"], out.node.saved["targets"]
    batch = probs.shape[0]
    d = np.array(probs, dtype=np.result_type(probs, grad), copy=True)
    d[np.arange(batch), targets] -= 1
    return (grad_for(logits, grad * d / batch),)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_05_5_activations", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.5 (grad_for relies on Task 05.1's unbroadcast)
from tinytorch_lib.testing import task

with task("05.5", uses={"05.1": "unbroadcast"}):
    from tinytorch_lib.activations import GELU, ReLU, Sigmoid, Softmax, Tanh

    try:
        assert unbroadcast(np.ones((2, 3)), (2, 3)).shape == (2, 3)
    except Exception as e:
        raise AssertionError(f"the rules return grad_for(...), which calls unbroadcast from Task 05.1, and "
                             f"unbroadcast(ones((2, 3)), (2, 3)) did not return shape (2, 3) ({e!r}): "
                             f"make Task 05.1's tests pass first") from None


    def ce_forward(logits, targets):
        """A cross-entropy op as Module 04 records it (saved targets and probs; mean over the batch)."""
        z = logits.data - logits.data.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = Tensor(-logp[np.arange(len(targets)), targets].mean())
        return record("cross_entropy", loss, (logits,), targets=targets, probs=np.exp(logp))


    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.01] = 0.5  # keep ReLU's kink away from the finite differences
    check_rule(relu_backward, ReLU(), [x])
    check_rule(sigmoid_backward, Sigmoid(), [x])
    check_rule(tanh_backward, Tanh(), [x])
    check_rule(gelu_backward, GELU(), [x])
    check_rule(softmax_backward, Softmax(axis=-1), [x])
    check_rule(cross_entropy_backward, lambda z: ce_forward(z, np.array([1, 0, 3])), [x])
    row = Tensor([[np.log(0.1), np.log(0.7), np.log(0.2)]], requires_grad=True)
    got = cross_entropy_backward(np.array(1.0), ce_forward(row, np.array([1])))[0]
    assert np.allclose(got, [[0.1, -0.3, 0.2]]), f"cross-entropy, probs [0.1, 0.7, 0.2], target 1: expected [[0.1, -0.3, 0.2]], got {fmt(got)}"
    f32 = Tensor(x.astype(np.float32), requires_grad=True)
    got = gelu_backward(np.ones((3, 4), dtype=np.float32), GELU()(f32))[0]
    assert got.dtype == np.float32, f"GELU of a float32 (3, 4) input: expected a float32 gradient, got {got.dtype}"
print("Task 05.5 visible tests passed")

# %% [markdown]
# ## 8. The engine
#
# `backward(tensor)` computes `d tensor / d leaf` for every **leaf** reachable
# from `tensor`: a tensor with `requires_grad=True` and no `node` (the
# weights, or an input you asked about). Intermediate results get no `.grad`
# (as in PyTorch), only leaves.
#
# **Topological order.** Walk from `tensor` through `node.inputs` and list
# every tensor that requires grad exactly once, each **after** all of its
# inputs (a depth-first search that appends a tensor when it leaves it). In
# reverse, each tensor comes before everything it was computed from, so by
# the time the engine reaches a tensor, every use of it has sent its share of
# the gradient. A graph can be thousands of operations deep (an RNN over a
# long sequence, or `y = y * 0.99` in a loop), deeper than Python's recursion
# limit (`sys.getrecursionlimit()`, usually 1,000): use a loop with an
# explicit stack, not recursion.
#
# ```
# y = x * x;  z = y + x           order: [x, y, z]   (x before y, both before z)
# reverse: z -> y gets g_z, x gets g_z;  y -> x gets 2 x g_y;  x is a leaf: x.grad = g_z + 2 x g_y
# ```
#
# **The pass.** Keep a dictionary from tensor (use `id(t)`) to the gradient
# received so far. Seed it with `grad` for `tensor`. Then for each tensor in
# reverse topological order:
#
# - a leaf: add its gradient into `t.grad` (`Tensor`, same shape and dtype as
#   `t`; a new one if `t.grad` is None, else the sum with the old one, so
#   gradients **accumulate across backward calls** until `zero_grad`);
# - otherwise: look up `BACKWARD_RULES[t.node.op]`, call it with the
#   gradient and `t`, pass the result and that gradient to the given
#   `check_rule_output(t, grads, g)` (it raises a clear error naming the rule
#   when the rule returns the wrong number of entries or a wrong shape, or
#   when the gradient it was given already had a wrong shape), and add each non-None entry into the dictionary entry
#   of its input (inputs that need no gradient are skipped).
#
# ### Task 05.6: `topological_order` and `backward`
#
# `topological_order(tensor)` returns the list described above (including
# `tensor`; only tensors that require grad), without recursion.
# `backward(tensor, grad=None)` runs the pass. Errors, each a `RuntimeError`
# except the last:
#
# - `tensor` does not require grad: `backward: the tensor does not require grad ...`;
# - `grad` is None and `tensor` has more than one element:
#   `backward: grad can be omitted only for a single-element tensor, got shape (2, 3); pass grad of that shape`
#   (with one element, the seed is 1 in the tensor's dtype and shape);
# - an op with no rule in `BACKWARD_RULES`: raise `RuntimeError(missing_rule_message(op))`
#   (given: it names the op and the module that should register it);
# - `grad` (an array, a Tensor or a number) whose shape differs from the
#   tensor's: `ValueError` naming both shapes.
#
# The tests use fake ops registered in the test cell, not your rules.

# %% tags=["export"]
# Ops of Modules 01-04 get their rules here; later modules register their own ops' rules in their files.
CORE_OPS = ("add", "sub", "mul", "div", "neg", "matmul", "sum", "mean", "max", "reshape", "transpose", "getitem",
            "ReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "cross_entropy")


def missing_rule_message(op: str) -> str:
    """Why op has no backward rule, and who should register it."""
    if op in CORE_OPS:
        who = "Module 05 (tinytorch_lib/autograd.py) registers it: finish and export Module 05"
    else:
        who = (f"the module that introduces {op!r} must register one in its own file with "
               f"@register_backward({op!r})")
    return f"backward: no backward rule for op {op!r}; {who}"


def _rule_name(op: str) -> str:
    """'add' -> "backward rule of 'add' (function _add_rule)": the function registered for op."""
    rule = BACKWARD_RULES.get(op)
    name = getattr(rule, "__qualname__", None) or type(rule).__name__
    return f"backward rule of {op!r} (function {name})"


def check_rule_output(out: Tensor, grads, grad=None) -> None:
    """Raise RuntimeError when a rule's result does not match out.node.inputs in number or shapes.

    grad: the gradient the rule was given; of another shape than `out`, the mistake came before the rule.
    """
    op, inputs = out.node.op, out.node.inputs
    if grad is not None and np.shape(grad) != out.shape:
        raise RuntimeError(f"backward: the gradient given to the {_rule_name(op)} has shape {np.shape(grad)}, but "
                           f"that op's output has shape {out.shape}: the mistake is before this rule, in the gradient "
                           "backward() was seeded with (check its shape: ValueError) or in the rule of the op after it")
    if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
        raise RuntimeError(f"{_rule_name(op)} returned {grads!r:.60} for {len(inputs)} input(s): "
                           f"expected a tuple with one np.ndarray or None per input")
    for k, (v, g) in enumerate(zip(inputs, grads)):
        if g is not None and needs_grad(v) and np.shape(g) != v.shape:
            raise RuntimeError(f"{_rule_name(op)} returned a gradient of shape {np.shape(g)} for input {k} "
                               f"of shape {v.shape}")


# %% nbgrader={"grade": false, "grade_id": "engine", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def topological_order(tensor: Tensor) -> list:
    """Every tensor that requires grad reachable from `tensor` (itself included), each after its inputs."""
    # Task 05.6: iterative depth-first search, append a tensor when all its inputs are done
    ### BEGIN SOLUTION
    order, seen = [], set()
    stack = [(tensor, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t.node is not None:
            for v in t.node.inputs:
                if needs_grad(v) and id(v) not in seen:
                    stack.append((v, False))
    return order
    ### END SOLUTION


def backward(tensor: Tensor, grad=None) -> None:
    """Accumulate d tensor / d leaf into leaf.grad for every leaf that requires grad.

    grad: the gradient of some scalar with respect to `tensor`, of its shape (None: 1, single-element only).
    """
    # Task 05.6: seed, then walk the reverse topological order calling the rules
    ### BEGIN SOLUTION
    if not isinstance(tensor, Tensor):
        raise TypeError(f"backward: expected a Tensor, got {type(tensor).__name__}")
    if not tensor.requires_grad:
        raise RuntimeError(f"backward: the tensor does not require grad (shape {tensor.shape}): no input had "
                           "requires_grad=True, or it was computed under no_grad()")
    if grad is None:
        if tensor.size != 1:
            raise RuntimeError(f"backward: grad can be omitted only for a single-element tensor, got shape "
                               f"{tensor.shape}; pass grad of that shape")
        grad = np.ones(tensor.shape, dtype=tensor.dtype)
    grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
    if grad.shape != tensor.shape:
        raise ValueError(f"backward: grad of shape {grad.shape} does not match the tensor's shape {tensor.shape}")
    pending = {id(tensor): grad}
    for t in reversed(topological_order(tensor)):
        g = pending.pop(id(t), None)
        if g is None:
            continue
        if t.node is None:
            g = np.array(g, dtype=t.dtype)  # a fresh copy, never a view of someone else's array
            t.grad = Tensor(g if t.grad is None else t.grad.data + g)
            continue
        rule = BACKWARD_RULES.get(t.node.op)
        if rule is None:
            raise RuntimeError(missing_rule_message(t.node.op))
        grads = rule(g, t)
        check_rule_output(t, grads, g)
        for v, gv in zip(t.node.inputs, grads):
            if gv is None or not needs_grad(v):
                continue
            pending[id(v)] = gv if id(v) not in pending else pending[id(v)] + gv
    ### END SOLUTION


# %% [markdown]
# Given: register your engine, so `Tensor.backward()` calls it (Module 01's
# seam). It sits in a cell of its own so it cannot be lost when you edit the
# cell above; run it after every change to `backward`.

# %% tags=["export"]
set_backward_engine(backward)

# %% nbgrader={"grade": true, "grade_id": "test_05_6_engine", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 05.6: fake ops with their own rules, so these tests need none of Tasks 05.1-05.5
from tinytorch_lib.testing import task

with task("05.6"):
    @register_backward("test_scale")
    def _scale_rule(grad, out):  # out = x * k
        return (grad * out.node.saved["k"],)


    @register_backward("test_add")
    def _add_rule(grad, out):  # out = a + b, same shapes
        return grad, grad


    def scale(x, k):
        return record("test_scale", Tensor(x.data * k), (x,), k=k)


    def plus(a, b):
        return record("test_add", Tensor(a.data + b.data), (a, b))


    x = Tensor([1.0, 2.0], requires_grad=True)
    y = scale(x, 3.0)
    z = plus(y, x)  # x reaches z along two paths
    order = topological_order(z)
    assert [id(t) for t in order] == [id(x), id(y), id(z)], \
        f"topological_order of z = plus(scale(x, 3), x): expected [x, y, z], got {len(order)} tensors {fmt([t.node.op if t.node else 'leaf' for t in order])}"
    backward(z, np.array([1.0, 1.0]))
    assert x.grad is not None and np.allclose(x.grad.data, [4.0, 4.0]), \
        f"z = 3x + x with grad [1, 1]: expected x.grad = [4, 4] (3 along one path, 1 along the other), got {fmt(x.grad)}"
    assert y.grad is None, "intermediate tensors get no .grad, only leaves"
    backward(z, np.array([1.0, 1.0]))
    assert np.allclose(x.grad.data, [8.0, 8.0]), f"a second backward adds to x.grad: expected [8, 8], got {fmt(x.grad.data)}"
    s = Tensor(2.0, requires_grad=True)
    scale(s, 5.0).backward()  # Tensor.backward() calls your engine; the seed is 1
    assert np.isclose(s.grad.item(), 5.0), f"scale(s, 5).backward() with a single element: expected s.grad = 5, got {fmt(s.grad)}"
    try:
        backward(scale(x, 2.0))
    except RuntimeError as e:
        assert "(2,)" in str(e), f"the error should name the shape (2,), got: {e}"
    else:
        raise AssertionError("backward() of a (2,) tensor without grad should raise RuntimeError")
    deep = Tensor([1.0], requires_grad=True)
    h = deep
    for _ in range(3000):
        h = scale(h, 1.0)
    try:
        backward(h)
    except RecursionError:
        raise AssertionError("a chain of 3000 scale(., 1) ops, deeper than Python's recursion limit: backward raised "
                             "RecursionError; use a loop with an explicit stack, not recursion") from None
    assert deep.grad is not None and np.allclose(deep.grad.data, [1.0]), f"a chain of 3000 scale(., 1) ops: expected grad [1], got {fmt(deep.grad)}"
    try:
        backward(scale(x, 2.0), np.ones(3))
    except ValueError as e:
        assert "(3,)" in str(e) and "(2,)" in str(e), f"grad (3,) for a (2,) tensor: the error should name both shapes, got: {e}"
    except Exception as e:
        raise AssertionError(f"backward(t, grad) with t of shape (2,) and grad np.ones(3): expected your backward to raise "
                             f"ValueError naming both shapes before running any rule, got {type(e).__name__}: {e}") from None
    else:
        raise AssertionError("backward(t, np.ones(3)) for t of shape (2,) should raise ValueError naming (3,) and (2,)")
print("Task 05.6 visible tests passed")

# %% [markdown]
# ## 9. The tiny graph of Section 1, through your engine
#
# The same `x`, `W`, `b` as Tensors; `L.backward()` fills `W.grad`, `b.grad`
# and `x.grad`, which should equal the hand computation of Section 1.

# %%
x = Tensor(x_np, requires_grad=True)
W = Tensor(W_np, requires_grad=True)
b = Tensor(b_np, requires_grad=True)
L = (x @ W + b).sum()
L.backward()
for name, t, hand in [("x", x, g_x), ("W", W, g_W), ("b", b, g_b)]:
    print(f"{name}.grad {t.grad.shape}: equals the hand computation: {np.allclose(t.grad.data, hand)}")

# %% [markdown]
# ## 10. Systems analysis
#
# ### Every rule against finite differences
#
# `gradcheck` runs each op through your engine in float64 and compares with
# central differences (`eps = 1e-6`; pass: `|autograd - fd| <= 1e-5 + 1e-3 |fd|`).
# Module 03's `Linear` and Module 04's losses are in the table too: they are
# built from these ops (and `cross_entropy`), so they need no rules of their
# own. Shapes include broadcasting, batched and 1-d matmul, and a repeated fancy
# index. ReLU's input keeps away from its kink at 0, and max's from ties,
# where the derivative does not exist and finite differences straddle it.

# %%
from tinytorch_lib.activations import GELU, ReLU, Sigmoid, Softmax, Tanh
from tinytorch_lib.layers import Linear
from tinytorch_lib.losses import CrossEntropyLoss, MSELoss


def linear_with(x, W, b):
    """Module 03's Linear (x @ W.T + b), with the weights gradcheck differentiates."""
    layer = Linear(W.shape[1], W.shape[0])
    layer.weight, layer.bias = W, b
    return layer(x)


rng = np.random.default_rng(0)
r = lambda *shape: rng.standard_normal(shape)
away = r(3, 4)
away[np.abs(away) < 0.05] = 0.5
cases = [
    ("add (2, 3) + (3,)", lambda a, b: a + b, [r(2, 3), r(3)]),
    ("sub (3, 1) - (2, 1, 4)", lambda a, b: a - b, [r(3, 1), r(2, 1, 4)]),
    ("mul (2, 3) * (2, 1)", lambda a, b: a * b, [r(2, 3), r(2, 1)]),
    ("div (2, 3) / (3,)", lambda a, b: a / b, [r(2, 3), rng.uniform(0.5, 2, 3)]),
    ("neg (2, 3)", lambda a: -a, [r(2, 3)]),
    ("matmul (2, 3) @ (3, 4)", lambda a, b: a @ b, [r(2, 3), r(3, 4)]),
    ("matmul (2, 2, 3) @ (3, 4)", lambda a, b: a @ b, [r(2, 2, 3), r(3, 4)]),
    ("matmul (3,) @ (3,)", lambda a, b: a @ b, [r(3), r(3)]),
    ("sum axis=1", lambda a: a.sum(axis=1), [r(2, 3, 4)]),
    ("mean axis=(0, 2)", lambda a: a.mean(axis=(0, 2)), [r(2, 3, 4)]),
    ("max axis=-1", lambda a: a.max(axis=-1), [r(3, 4)]),
    ("reshape (2, 6) -> (3, 4)", lambda a: a.reshape(3, 4), [r(2, 6)]),
    ("transpose (0, 2, 1)", lambda a: a.transpose(0, 2, 1), [r(2, 3, 4)]),
    ("getitem [[0, 2, 0]]", lambda a: a[np.array([0, 2, 0])], [r(3, 4)]),
    ("ReLU", ReLU(), [away]),
    ("Sigmoid", Sigmoid(), [r(3, 4)]),
    ("Tanh", Tanh(), [r(3, 4)]),
    ("GELU", GELU(), [r(3, 4)]),
    ("Softmax axis=0", Softmax(axis=0), [r(3, 4)]),
    ("Linear (4, 3) -> (4, 5)", linear_with, [r(4, 3), r(5, 3), r(5)]),
    ("MSELoss (4, 5), pred and target", lambda p, t: MSELoss()(p, t), [r(4, 5), r(4, 5)]),
    ("CrossEntropyLoss (4, 5)", lambda z: CrossEntropyLoss()(z, np.array([0, 3, 3, 1])), [r(4, 5)]),
    ("chain: Softmax(x @ W + b).max(axis=1).sum()", lambda x, W, b: Softmax()(x @ W + b).max(axis=1).sum(), [r(4, 3), r(3, 5), r(5)]),
]
print(f"{'op':<34} {'max abs error':>14} {'max rel error':>14}")
for name, fn, inputs in cases:
    res = gradcheck(fn, inputs)
    print(f"{name:<34} {res['max_abs']:14.2e} {res['max_rel']:14.2e}")

# %% [markdown]
# Errors of `1e-9` to `1e-11` are the finite differences' own error (rounding
# of `f` divided by `2 eps`), not the rules': a wrong rule is off by order 1,
# many orders of magnitude above the tolerance.
#
# ### Deep graphs
#
# A chain of 20,000 multiplications is far deeper than Python's recursion
# limit; the engine's explicit stack does not care.

# %%
import sys

w = Tensor(np.array([1.0]), requires_grad=True)  # float64: 1.00001 is not exact in float32
h = w
for _ in range(20_000):
    h = h * 1.00001
h.backward()
print(f"recursion limit {sys.getrecursionlimit()}, graph depth 20,000: "
      f"w.grad = {w.grad.item():.6f} (exact: 1.00001**20000 = {1.00001**20000:.6f})")

# %% [markdown]
# ### What does backward cost?
#
# An MLP-like chain, `256 -> 512 -> 512 -> 10`, batch 128, float32, ReLU
# between layers and a mean-squared loss. Per layer `(B, i) @ (i, o)` the
# forward pass does `2 B i o` FLOPs; the backward does `2 B i o` for `g_W`
# and another `2 B i o` for `g_x`, except in the first layer, whose input
# needs no gradient (Task 05.3 skips it). The cell counts those FLOPs from
# the shapes and times three things with `compare`: the forward under
# `no_grad` (nothing recorded), the forward with recording, and forward plus
# backward, in turns, so each ratio comes from neighbouring repeats and
# prints with its p10-p90 range.

# %%
from tinytorch_lib.timing import compare

sizes = [256, 512, 512, 10]
batch = 128
rng = np.random.default_rng(0)
params = []
for i, o in zip(sizes[:-1], sizes[1:]):
    params.append(Tensor((rng.standard_normal((i, o)) * np.sqrt(2 / i)).astype(np.float32), requires_grad=True))
    params.append(Tensor(np.zeros(o, dtype=np.float32), requires_grad=True))
inputs = Tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32))
target = Tensor(rng.standard_normal((batch, sizes[-1])).astype(np.float32))
relu = ReLU()


def mlp_loss(x, depth=None):
    h = x
    layers = list(zip(params[0::2], params[1::2]))
    for k, (W, b) in enumerate(layers):
        h = h @ W + b
        if k < len(layers) - 1:
            h = relu(h)
    d = h - target
    return (d * d).mean()


def forward_no_grad():
    with no_grad():
        return mlp_loss(inputs)


def forward_backward():
    zero_grad(params)
    mlp_loss(inputs).backward()


fwd_flops = sum(2 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:]))
bwd_flops = sum(2 * batch * i * o * (1 if k == 0 else 2) for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])))
# The three in turns (compare): a busy moment on a shared machine then slows one round of all three,
# and each ratio comes from neighbouring repeats.
sides = compare({"fwd": lambda: mlp_loss(inputs), "nograd": forward_no_grad, "fb": forward_backward})
t_fwd, t_nograd, t_fb = sides["fwd"], sides["nograd"], sides["fb"]
fb_over_fwd = sides.ratio("fb", "fwd")
print(f"forward, no_grad:     {t_nograd}")
print(f"forward, recording:   {t_fwd}")
print(f"forward + backward:   {t_fb}")
print(f"matmul FLOPs: forward {fwd_flops:,}, backward {bwd_flops:,} ({bwd_flops / fwd_flops:.2f}x the forward)")
print(f"in this run: backward alone ~ {fb_over_fwd.median - 1:.2f}x the forward "
      f"({fb_over_fwd.lo - 1:.2f}-{fb_over_fwd.hi - 1:.2f}; forward + backward {fb_over_fwd:.3g} the forward); "
      f"forward recording / forward no_grad: {sides.ratio('fwd', 'nograd'):.3g}")
if sides.noisy:
    print(sides.noisy)

# %% [markdown]
# The backward does 1.67x the forward's matmul FLOPs here (twice, except
# the first layer's `g_x`, which is skipped), so compare the measured ratio with the FLOP
# ratio printed above. Where they differ, the reasons are the ones Module 02
# measured: the backward also makes elementwise passes (ReLU's mask,
# unbroadcasting the bias gradient with a sum over the batch, adding
# gradients), it allocates a new array for every gradient (and copies each
# leaf's gradient once, so that no two `.grad` share memory; freeing them in
# `zero_grad` returns that memory to the system), and the transposed
# operands of `g @ W.T` and `x.T @ g` are read in a different memory order.
# Recording itself costs one small `Node` per op, next to the arithmetic of
# each op: the last ratio printed above says what it cost in this run. If a
# range is wide, the repeats disagreed (the `noisy` line says why): rerun the
# cell.
#
# ### What does the graph keep alive?
#
# After the forward pass, every recorded `Node` holds its inputs, so every
# intermediate result stays in memory until the loss is dropped: backward
# needs them (`x.T @ g` needs `x`; ReLU's rule needs its input). Under
# `no_grad` nothing is recorded and each intermediate is freed as soon as the
# next op has used it. Two measurements of the same thing: the bytes of all
# tensors reachable from the loss through its nodes (parameters and the input
# batch excluded: they exist anyway), and the bytes numpy still holds after
# the forward returns, traced by Python's `tracemalloc`.

# %%
import tracemalloc


def graph_bytes(loss) -> int:
    """nbytes of every non-leaf tensor and saved array reachable from `loss` (each counted once)."""
    seen, total, stack = set(), 0, [loss]
    while stack:
        t = stack.pop()
        if id(t) in seen or not isinstance(t, Tensor) or t.node is None:
            continue
        seen.add(id(t))
        total += t.nbytes + sum(v.nbytes for v in t.node.saved.values() if isinstance(v, np.ndarray))
        stack.extend(t.node.inputs)
    return total


def held_after(fn) -> int:
    """Bytes allocated by fn() and still held while its result is alive (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = fn()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del result
    return held


loss = mlp_loss(inputs)
print(f"reachable from the loss through the graph: {graph_bytes(loss):>10,} bytes")
del loss
print(f"held after the forward, recording:         {held_after(lambda: mlp_loss(inputs)):>10,} bytes (tracemalloc)")
print(f"held after the forward, no_grad:           {held_after(forward_no_grad):>10,} bytes (tracemalloc)")
print(f"parameters, for scale:                     {sum(p.nbytes for p in params):>10,} bytes")

# %% [markdown]
# Activation memory grows with depth and with the batch, and for large
# batches it is more than the weights: it is why training needs far more
# memory than inference, and why evaluation runs under `no_grad`. The plot
# measures it layer by layer on a deeper stack of `512 -> 512` layers.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import format_bytes, place_legend, plain_axis

depths = [1, 2, 4, 8, 12]
rng = np.random.default_rng(1)
deep_params = [Tensor((rng.standard_normal((512, 512)) * np.sqrt(2 / 512)).astype(np.float32), requires_grad=True)
               for _ in range(max(depths))]
x512 = Tensor(rng.standard_normal((batch, 512)).astype(np.float32))


def deep_forward(depth):
    h = x512
    for W in deep_params[:depth]:
        h = relu(h @ W)
    return h.sum()


def deep_no_grad(depth):
    with no_grad():
        return deep_forward(depth)


held_grad = [held_after(lambda d=d: deep_forward(d)) for d in depths]  # bytes
held_nograd = [held_after(lambda d=d: deep_no_grad(d)) for d in depths]
for d, g, n in zip(depths, held_grad, held_nograd):
    print(f"depth {d:2d}: recording {format_bytes(g):>8}, no_grad {format_bytes(n):>8}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(depths, held_grad, marker="o", label="recording (graph kept)")
ax.plot(depths, held_nograd, marker="s", label="no_grad")
ax.set_xlabel("layers (512 -> 512, batch 128, float32)")
plain_axis(ax, "y", "bytes")
ax.set_ylabel("memory held after forward (1 MB = 1,000,000 bytes)")
ax.set_title("The graph keeps every intermediate alive")
plt.tight_layout()
place_legend(ax)
plt.show()

# %% [markdown]
# Recording keeps two `(128, 512)` float32 arrays per layer (the matmul's
# output and ReLU's), 524,288 bytes (524 kB), so the held memory grows linearly with depth;
# under `no_grad` only the final scalar survives. Gradient checkpointing
# trades this memory for time by recomputing some intermediates during the
# backward pass instead of keeping them.
#
# ## Summary
#
# - A backward rule maps the gradient of an op's output to the gradients of
#   its inputs, each in the input's shape: broadcasting becomes a sum
#   (`unbroadcast`), a reduction becomes a broadcast, a matmul becomes two
#   matmuls, and a fancy index becomes a scatter-add.
# - The engine orders the graph topologically (with an explicit stack, so any
#   depth works) and accumulates: a tensor used twice gets the sum of both
#   contributions, and `.grad` adds up across `backward()` calls until
#   `zero_grad`.
# - Every rule is checked against float64 central finite differences;
#   `gradcheck` does the same for the rules later modules add.
# - Backward does up to twice the forward's matmul FLOPs (1.67x in the MLP
#   above, counted from the shapes); its time, measured and printed in
#   Section 10, also pays for elementwise passes and new arrays, so it can be
#   a larger multiple. The graph keeps every intermediate alive until the
#   loss is dropped; `no_grad` keeps none.
#
# Next: `tito module export 05`; Module 06 uses these gradients to update
# the parameters (`SGD`, `Adam`).
