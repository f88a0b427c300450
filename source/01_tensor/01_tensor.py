# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 01: Tensor
#
# Every number a neural network touches lives in a tensor: the weights, the
# activations, the gradients, the quantized INT8 copy you will build in
# Module 15. This module builds `Tensor`, a thin wrapper around a numpy array
# that the rest of the course uses. It is thin on purpose: the interesting
# questions are systems questions.
#
# - **Bytes.** A 1000 x 1000 float32 matrix holds 4,000,000 bytes; the same
#   matrix in int8 holds 1,000,000. Quantization (Module 15) is only real if
#   the int8 tensor stays int8, so `Tensor` must keep the dtype it is given.
# - **Shapes.** Most bugs in ML code are shape bugs. Broadcasting silently
#   stretches arrays; when it cannot, the error should name both shapes.
# - **Cost.** `(n, k) @ (k, m)` costs `2 * n * k * m` floating-point
#   operations. You will measure how many of them per second this machine
#   actually does.
#
# | task | what you build | points |
# |---|---|---|
# | 01.1 | `Tensor`: wrap an array, keep its dtype, report shape and bytes | 4 |
# | 01.2 | `broadcast_shape`: numpy's broadcasting rule, by hand | 4 |
# | 01.3 | `elementwise`: `+ - * /` with broadcasting and clear errors | 4 |
# | 01.4 | `matmul`: `@` with an inner-dimension check | 4 |
# | 01.5 | `reduce`: `sum`, `mean`, `max` over an axis | 4 |
# | 01.6 | `reshape` and `transpose` | 4 |
#
# Work through the cells in order. Each task is a function with a
# `raise NotImplementedError(...)` line for you to replace (its message names
# the task); the cell after it tests it.
# When all tests pass, run `tito module export 01` to put your `Tensor` into
# `tinytorch_lib/tensor.py`, where the later modules import it.

# %% tags=["export"]
import numpy as np

# %%
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

# %% [markdown]
# ## 1. Data, dtype and bytes
#
# A numpy array is a block of memory plus a description of it: a **dtype**
# (how many bytes one element takes and how to read them) and a **shape**.
#
# | dtype | bytes per element | typical use |
# |---|---|---|
# | float64 | 8 | numpy's default; too big for deep learning |
# | float32 | 4 | training and inference default |
# | float16 | 2 | mixed-precision training, GPU inference |
# | int8 | 1 | quantized inference (Module 15) |
#
# `nbytes = size * itemsize`: a `(3, 4)` float32 tensor has 12 elements of 4
# bytes, 48 bytes in all.
#
# Python lists of floats become float64 in numpy. Deep-learning code almost
# never wants that, so our rule is:
#
# 1. if `dtype` is given, use it;
# 2. else if `data` is already a numpy array or numpy scalar (or a `Tensor`),
#    keep its dtype (`np.float64(2.5)` stays float64: numpy returns such
#    scalars from operations on 0-d arrays);
# 3. else (lists, Python numbers) let numpy infer, and turn float64 into float32.
#
# ### Task 01.1: the `Tensor` class
#
# Implement `__init__` (store the array in `self.data` following the rule above)
# and the properties `shape`, `dtype` and `nbytes`. Everything else in the class
# is given: the operators call the functions you write in Tasks 01.3-01.6, and
# `requires_grad`, `grad`, `node` and `backward` wait for Module 05.
#
# The tasks build on each other: every later test creates `Tensor`s, and
# Task 01.3 calls your `broadcast_shape` from Task 01.2. Work in order; when a
# test says it relies on an earlier task, make that task's tests pass first.

# %% nbgrader={"grade": false, "grade_id": "tensor_class", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Tensor:
    """An n-dimensional array with a fixed dtype.

    data: array-like, numpy array or Tensor -> self.data: np.ndarray
    requires_grad, grad, node: for autograd (Module 05); see section 8.
    """

    requires_grad = False  # given: Module 05 computes gradients of tensors that set this
    grad = None            # given: the gradient, a Tensor of the same shape, after backward()
    node = None            # given: how this tensor was computed (a Node), when recorded

    def __init__(self, data, dtype=None, requires_grad=False):
        # Task 01.1: store the data as an np.ndarray in self.data (dtype rule above)
        ### BEGIN SOLUTION
        if isinstance(data, Tensor):
            data = data.data
        if dtype is not None:
            self.data = np.asarray(data, dtype=dtype)
        elif isinstance(data, (np.ndarray, np.generic)):
            self.data = np.asarray(data)
        else:
            self.data = np.asarray(data)
            if self.data.dtype == np.float64:
                self.data = self.data.astype(np.float32)
        ### END SOLUTION
        self.requires_grad = bool(requires_grad)  # given

    @property
    def shape(self) -> tuple:
        # Task 01.1: the shape as a tuple of ints
        ### BEGIN SOLUTION
        return tuple(self.data.shape)
        ### END SOLUTION

    @property
    def dtype(self) -> np.dtype:
        # Task 01.1: the numpy dtype of the stored array
        ### BEGIN SOLUTION
        return self.data.dtype
        ### END SOLUTION

    @property
    def nbytes(self) -> int:
        # Task 01.1: bytes actually stored (size * bytes per element)
        ### BEGIN SOLUTION
        return int(self.data.nbytes)
        ### END SOLUTION

    # ---- given: small helpers ----
    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        return self.data.item()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> "Tensor":
        return record("getitem", Tensor(self.data[index]), (self,), index=index)

    def detach(self) -> "Tensor":
        """The same data, cut off from the graph (no gradient flows through it)."""
        return Tensor(self.data)

    def backward(self, grad=None) -> None:
        """Gradients of this tensor with respect to every tensor that requires them (Module 05)."""
        run_backward(self, grad)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data.tolist()}, shape={self.shape}, dtype={self.dtype}{flag})"

    # ---- given: operators, built on the task functions below ----
    # Each one reports what it computed through record() (section 8), so that
    # Module 05 can add gradients without changing this file.
    def __add__(self, other):
        return record("add", elementwise(np.add, "add", self, other), (self, other))

    def __radd__(self, other):
        return record("add", elementwise(np.add, "add", other, self), (other, self))

    def __sub__(self, other):
        return record("sub", elementwise(np.subtract, "sub", self, other), (self, other))

    def __rsub__(self, other):
        return record("sub", elementwise(np.subtract, "sub", other, self), (other, self))

    def __mul__(self, other):
        return record("mul", elementwise(np.multiply, "mul", self, other), (self, other))

    def __rmul__(self, other):
        return record("mul", elementwise(np.multiply, "mul", other, self), (other, self))

    def __truediv__(self, other):
        return record("div", elementwise(np.true_divide, "div", self, other), (self, other))

    def __rtruediv__(self, other):
        return record("div", elementwise(np.true_divide, "div", other, self), (other, self))

    def __neg__(self):
        return record("neg", Tensor(-self.data), (self,))

    def __matmul__(self, other):
        return record("matmul", matmul(self, other), (self, other))

    def sum(self, axis=None, keepdims=False):
        return record("sum", reduce(self, "sum", axis, keepdims), (self,), axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return record("mean", reduce(self, "mean", axis, keepdims), (self,), axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return record("max", reduce(self, "max", axis, keepdims), (self,), axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return record("reshape", reshape(self, *shape), (self,))

    def transpose(self, *axes):
        return record("transpose", transpose(self, *axes), (self,), axes=axes)

    @property
    def T(self):
        return self.transpose()


# %% nbgrader={"grade": true, "grade_id": "test_01_1_tensor", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.1
from tinytorch_lib.testing import task

with task("01.1"):
    t = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert isinstance(t.data, np.ndarray), f"self.data should be an np.ndarray, got {type(t.data).__name__}"
    assert t.shape == (2, 3), f"shape: expected (2, 3), got {t.shape}"
    assert t.dtype == np.float32, f"a list of Python floats should become float32, got {t.dtype}"
    assert t.nbytes == 24, f"nbytes of a (2, 3) float32 tensor: expected 6 * 4 = 24, got {t.nbytes}"

    q = Tensor(np.array([1, -2, 127], dtype=np.int8))
    assert q.dtype == np.int8, f"an int8 array must stay int8 (Module 15 depends on it), got {q.dtype}"
    assert q.nbytes == 3, f"nbytes of 3 int8 values: expected 3, got {q.nbytes}"

    h = Tensor([1, 2, 3], dtype=np.float16)
    assert h.dtype == np.float16 and h.nbytes == 6, f"dtype=float16: expected float16 and 6 bytes, got {h.dtype}, {h.nbytes}"
print("Task 01.1 visible tests passed")

# %% [markdown]
# ### Given: how operators report to autograd
#
# Module 05 will compute gradients, and Modules 09-13 add operations with
# gradients of their own (convolution, attention, ...). None of them edits
# this file: every operator of `Tensor` passes its result through
# `record(op, out, inputs, **saved)`. When gradients are off, or no input has
# `requires_grad=True`, it returns `out` unchanged. Otherwise it attaches a
# `Node` saying how `out` was made, e.g. `Node("mul", (a, 2), {})` for
# `a * 2`. Module 05 registers one backward rule per op name with
# `register_backward("mul")` and walks these nodes in `backward()`. This is
# the same design as PyTorch's dispatcher: operations are looked up by name,
# so later code adds behaviour by registering, not by replacing functions.
# You write nothing here; read it once.

# %% tags=["export"]
class Node:
    """How a tensor was computed: `op` applied to `inputs` (Tensors or numbers), plus `saved` values."""

    __slots__ = ("op", "inputs", "saved")

    def __init__(self, op: str, inputs: tuple, saved: dict):
        self.op, self.inputs, self.saved = op, inputs, saved

    def __repr__(self) -> str:
        return f"Node({self.op!r}, inputs={len(self.inputs)}, saved={sorted(self.saved)})"


# op name -> rule(grad_out: np.ndarray, out: Tensor) -> one np.ndarray (or None) per input of out.node
BACKWARD_RULES: dict = {}
# Autograd's switches: gradients on or off (no_grad), and the backward() engine Module 05 registers.
AUTOGRAD = {"enabled": True, "engine": None}


def record(op: str, out: "Tensor", inputs: tuple, **saved) -> "Tensor":
    """Attach Node(op, inputs, saved) to `out` when gradients are on and an input requires grad."""
    if AUTOGRAD["enabled"] and any(isinstance(t, Tensor) and t.requires_grad for t in inputs):
        out.requires_grad = True
        out.node = Node(op, tuple(inputs), saved)
    return out


def register_backward(op: str):
    """Decorator: `fn` is the backward rule of `op` (registering again replaces the rule)."""
    def register(fn):
        BACKWARD_RULES[op] = fn
        return fn
    return register


def set_backward_engine(fn) -> None:
    """Module 05 registers its backward(tensor, grad) here; Tensor.backward() calls it."""
    AUTOGRAD["engine"] = fn


class no_grad:
    """`with no_grad():` nothing inside is recorded (evaluation, optimizer updates)."""

    def __enter__(self):
        self._was = AUTOGRAD["enabled"]
        AUTOGRAD["enabled"] = False

    def __exit__(self, *exc):
        AUTOGRAD["enabled"] = self._was


def run_backward(tensor: "Tensor", grad=None) -> None:
    """Tensor.backward(): run the registered engine, importing Module 05's when none is registered yet."""
    if AUTOGRAD["engine"] is None:
        try:
            import tinytorch_lib.autograd  # noqa: F401  (registers its engine and backward rules)
        except ModuleNotFoundError as e:
            if e.name != "tinytorch_lib.autograd":
                raise
            raise RuntimeError("backward() needs Module 05 (autograd), and tinytorch_lib/autograd.py is "
                               f"not there ({e}): export Module 05 first (`tito module export 05`)") from None
    if AUTOGRAD["engine"] is None:
        raise RuntimeError("backward(): tinytorch_lib.autograd registered no engine (set_backward_engine)")
    AUTOGRAD["engine"](tensor, grad)


# %% [markdown]
# ## 2. Broadcasting
#
# `x + b` with `x: (batch, features)` and a bias `b: (features,)` works because
# numpy **broadcasts**: it lines the shapes up from the right and, dimension by
# dimension, the sizes must be equal or one of them must be 1 (a missing
# dimension counts as 1). The result takes the larger size.
#
# ```
# x      (32, 10)        a   (8, 1, 5)        p  (3, 4)
# b          (10,)       b      (6, 1)        q  (4, 3)
# x + b  (32, 10)        a+b (8, 6, 5)        p+q  error: 4 vs 3
# ```
#
# A size-1 dimension is not copied: numpy reads the same element again
# (its stride is 0). Broadcasting a bias over a batch costs no memory.
#
# ### Task 01.2: `broadcast_shape`
#
# Return the broadcast shape of two shapes, or raise `ValueError` naming both
# shapes and the sizes that clash, in the form
# `shapes (3, 4) and (4, 3) cannot broadcast: 4 vs 3` (Task 01.3 puts the
# operation's name in front of this message). Implement the rule yourself; do
# not call `np.broadcast_shapes`.

# %% nbgrader={"grade": false, "grade_id": "broadcast_shape", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def broadcast_shape(shape_a: tuple, shape_b: tuple) -> tuple:
    """(8, 1, 5), (6, 1) -> (8, 6, 5); raises ValueError when incompatible."""
    # Task 01.2: align from the right; sizes must match or one must be 1
    ### BEGIN SOLUTION
    a, b = tuple(shape_a), tuple(shape_b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for da, db in zip(a, b):
        if da != db and da != 1 and db != 1:
            raise ValueError(f"shapes {tuple(shape_a)} and {tuple(shape_b)} cannot broadcast: {da} vs {db}")
        out.append(max(da, db) if da != 0 and db != 0 else 0)
    return tuple(out)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_01_2_broadcast", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.2
from tinytorch_lib.testing import task

with task("01.2"):
    for a, b, want in [((32, 10), (10,), (32, 10)), ((8, 1, 5), (6, 1), (8, 6, 5)), ((), (3,), (3,))]:
        got = broadcast_shape(a, b)
        assert got == want, f"broadcast_shape({fmt(a)}, {b}): expected {fmt(want)}, got {fmt(got)}"
    try:
        broadcast_shape((3, 4), (4, 3))
    except ValueError as e:
        assert "(3, 4)" in str(e) and "(4, 3)" in str(e), f"the error should name both shapes, got: {e}"
    else:
        raise AssertionError("broadcast_shape((3, 4), (4, 3)) should raise ValueError")
print("Task 01.2 visible tests passed")

# %% [markdown]
# ## 3. Elementwise operations
#
# `+ - * /` apply one scalar operation per output element. The given class
# routes them all through one function, `elementwise(op, name, a, b)`, where
# `op` is a numpy ufunc such as `np.add`. Either side may be a Python number
# (`2 * t`). numpy 2 treats a Python number as a "weak" scalar that adopts the
# array's dtype, so `int8 tensor + 3` stays int8; a 0-d int64 *array* would
# not be weak and would promote the result to int64.
#
# `Tensor` has these four operators, `-t`, `@`, `sum`/`mean`/`max`, `reshape`,
# `transpose` and indexing, and deliberately nothing else: no `exp`, `log`,
# `sqrt` or `**`. Every differentiable operation needs a backward rule (Module
# 05), so the set stays small. Where a later module needs a function of its
# own (a sigmoid, a log-softmax, a layer norm), it computes it in numpy on
# `.data` and records the result as one operation with its own rule (Modules
# 02, 04, 13). For a square, write `t * t`.
#
# ### Task 01.3: `elementwise`
#
# Take the arrays of both sides (a Python number stays a Python number, so
# numpy keeps the tensor's dtype), check the shapes with your
# `broadcast_shape` (its `ValueError` should say which operation failed,
# e.g. `add: shapes (3, 4) and (4, 3) cannot broadcast: 4 vs 3`), then
# return a `Tensor` of `op(x, y)`.

# %% nbgrader={"grade": false, "grade_id": "elementwise", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def elementwise(op, name: str, a, b) -> Tensor:
    """op(a, b) with broadcasting; a, b: Tensor or number -> Tensor of the broadcast shape."""
    # Task 01.3: check shapes with broadcast_shape, then apply op to the arrays
    ### BEGIN SOLUTION
    def operand(v):
        if isinstance(v, Tensor):
            return v.data
        if isinstance(v, (bool, int, float)):
            return v  # a Python number stays "weak": int8 tensor + 3 stays int8
        return Tensor(v).data

    x, y = operand(a), operand(b)
    try:
        broadcast_shape(np.shape(x), np.shape(y))
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return Tensor(op(x, y))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_01_3_elementwise", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.3 (they rely on Task 01.2's broadcast_shape)
from tinytorch_lib.testing import task

with task("01.3", uses={"01.1": "Tensor", "01.2": "broadcast_shape"}):
    try:
        assert broadcast_shape((2, 3), (3,)) == (2, 3)
    except Exception as e:
        raise AssertionError(f"Task 01.3 calls broadcast_shape from Task 01.2, and broadcast_shape((2, 3), (3,)) "
                             f"did not return (2, 3) ({e!r}): make Task 01.2's tests pass first") from None
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    bias = Tensor([10.0, 20.0, 30.0])
    got = (x + bias).data
    assert np.allclose(got, [[11, 22, 33], [14, 25, 36]]), f"(2, 3) + (3,): got {fmt(got)}"
    assert np.allclose((x * 2).data, [[2, 4, 6], [8, 10, 12]]), "Tensor * number"
    assert np.allclose((1 - x).data, [[0, -1, -2], [-3, -4, -5]]), "number - Tensor (reflected)"
    assert np.allclose((x / Tensor([[2.0], [4.0]])).data, [[0.5, 1, 1.5], [1, 1.25, 1.5]]), "(2, 3) / (2, 1)"
    try:
        Tensor(np.zeros((3, 4))) + Tensor(np.zeros((4, 3)))
    except ValueError as e:
        assert "(3, 4)" in str(e) and "(4, 3)" in str(e), f"the error should name both shapes, got: {e}"
    else:
        raise AssertionError("(3, 4) + (4, 3) should raise ValueError")
print("Task 01.3 visible tests passed")

# %% [markdown]
# ## 4. Matrix multiplication
#
# `C = A @ B` with `A: (n, k)` and `B: (k, m)` gives `C: (n, m)`, where
# `C[i, j] = sum_p A[i, p] * B[p, j]`: `k` multiplies and `k` adds per output,
# so **`2 * n * k * m` FLOPs** in all. A linear layer is one matmul; a
# transformer is mostly matmuls. Leading dimensions are batch dimensions:
# `(b, n, k) @ (b, k, m) -> (b, n, m)` (numpy's `np.matmul` does this).
#
# ### Task 01.4: `matmul`
#
# Both operands need at least 1 dimension. If the inner dimensions differ,
# raise `ValueError` in the form
# `matmul: (3, 4) @ (5, 2): inner dimensions 4 and 5 differ`. Otherwise return
# `Tensor(np.matmul(a.data, b.data))`.

# %% nbgrader={"grade": false, "grade_id": "matmul", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """(..., n, k) @ (..., k, m) -> (..., n, m); a 1-d operand is a vector."""
    # Task 01.4: check the inner dimensions, then multiply
    ### BEGIN SOLUTION
    a, b = Tensor(a), Tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: {a.shape} @ {b.shape}: operands need at least 1 dimension")
    inner_a = a.shape[-1]
    inner_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if inner_a != inner_b:
        raise ValueError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {inner_a} and {inner_b} differ")
    return Tensor(np.matmul(a.data, b.data))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_01_4_matmul", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.4
from tinytorch_lib.testing import task

with task("01.4", uses={"01.1": "Tensor"}):
    A = Tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (3, 2)
    B = Tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]])     # (2, 3)
    C = A @ B
    assert C.shape == (3, 3), f"(3, 2) @ (2, 3): expected shape (3, 3), got {C.shape}"
    assert np.allclose(C.data, [[1, 2, 8], [3, 4, 18], [5, 6, 28]]), f"wrong product: {fmt(C.data)}"
    try:
        Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 2)))
    except ValueError as e:
        assert "(3, 4)" in str(e) and "(5, 2)" in str(e) and "4" in str(e) and "5" in str(e), \
            f"the error should name both shapes and the inner dimensions, got: {e}"
    else:
        raise AssertionError("(3, 4) @ (5, 2) should raise ValueError")
print("Task 01.4 visible tests passed")

# %% [markdown]
# ## 5. Reductions
#
# A reduction collapses an axis: `x.sum(axis=0)` of a `(batch, features)`
# tensor is `(features,)`; with `keepdims=True` it is `(1, features)`, which
# still broadcasts against `x` (that is how softmax subtracts a row maximum in
# Module 02). `axis=None` reduces everything to a 0-d tensor.
#
# ### Task 01.5: `reduce`
#
# `kind` is `"sum"`, `"mean"` or `"max"`. `axis` is `None` (everything), one
# int, or a tuple of ints (`axis=(0, 2)` of a `(3, 4, 5)` tensor gives `(4,)`),
# as in numpy. An axis outside the tensor (for a 2-d tensor, valid axes are
# -2..1) raises `ValueError` naming the axis and the shape, e.g.
# `sum: axis 2 is out of range for shape (2, 3)`; an unknown `kind` raises
# `ValueError` too.

# %% nbgrader={"grade": false, "grade_id": "reduce", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def reduce(a: Tensor, kind: str, axis=None, keepdims: bool = False) -> Tensor:
    """Sum, mean or max over `axis` (None: all; an int; a tuple of ints).

    (2, 3) axis=1 -> (2,); keepdims -> (2, 1); (3, 4, 5) axis=(0, 2) -> (4,).
    """
    # Task 01.5: validate kind and axis, then reduce with numpy
    ### BEGIN SOLUTION
    ops = {"sum": np.sum, "mean": np.mean, "max": np.max}
    if kind not in ops:
        raise ValueError(f"reduce: unknown kind {kind!r}; expected one of {sorted(ops)}")
    axes = axis if isinstance(axis, tuple) else (() if axis is None else (axis,))
    for ax in axes:
        if not -a.ndim <= ax < a.ndim:
            raise ValueError(f"{kind}: axis {ax} is out of range for shape {a.shape}")
    return Tensor(ops[kind](a.data, axis=axis, keepdims=keepdims))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_01_5_reduce", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.5
from tinytorch_lib.testing import task

with task("01.5", uses={"01.1": "Tensor"}):
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert np.isclose(x.sum().item(), 21.0), f"sum of everything: expected 21, got {fmt(x.sum())}"
    assert np.allclose(x.sum(axis=0).data, [5, 7, 9]), f"sum(axis=0): got {fmt(x.sum(axis=0).data)}"
    assert x.mean(axis=1, keepdims=True).shape == (2, 1), f"mean(axis=1, keepdims=True): got shape {x.mean(axis=1, keepdims=True).shape}"
    assert np.allclose(x.max(axis=-1).data, [3, 6]), f"max(axis=-1): got {fmt(x.max(axis=-1).data)}"
    try:
        x.sum(axis=2)
    except ValueError as e:
        assert "2" in str(e) and "(2, 3)" in str(e), f"the error should name the axis and the shape, got: {e}"
    else:
        raise AssertionError("sum(axis=2) of a (2, 3) tensor should raise ValueError")
print("Task 01.5 visible tests passed")

# %% [markdown]
# ## 6. Memory layout: reshape and transpose
#
# A `(2, 3)` float32 array is 6 numbers in one row-major block. Its
# **strides** say how many bytes to step per index: `(12, 4)` (next row: 3
# elements of 4 bytes; next column: 4 bytes).
#
# - `reshape` to `(3, 2)` keeps the block and changes the description: no copy.
#   `-1` means "whatever size makes the element count match", so `(2, 3)`
#   reshaped to `(-1,)` is `(6,)`. A shape with a different element count is
#   an error.
# - `transpose` swaps the strides to `(4, 12)`: also no copy, but the result is
#   no longer contiguous, so a later `reshape` of it must copy.
#
# ### Task 01.6: `reshape` and `transpose`
#
# `reshape(a, *shape)` accepts `reshape(t, 3, 2)` and `reshape(t, (3, 2))`,
# allows one `-1`, and raises `ValueError` naming both shapes when the element
# counts differ. `transpose(a, *axes)` with no axes reverses all axes (for 2-d:
# the usual transpose); with axes it permutes them.

# %% nbgrader={"grade": false, "grade_id": "reshape_transpose", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def reshape(a: Tensor, *shape) -> Tensor:
    """(2, 3) -> reshape(a, 3, -1) -> (3, 2); the element count must not change."""
    # Task 01.6: resolve a single -1, check the element count, reshape
    ### BEGIN SOLUTION
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: {a.shape} -> {shape}: at most one -1")
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    if -1 in shape:
        if known == 0 or a.size % known:
            raise ValueError(f"reshape: cannot reshape {a.shape} ({a.size} elements) into {shape}")
        shape = tuple(a.size // known if s == -1 else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != a.size:
        raise ValueError(f"reshape: cannot reshape {a.shape} ({a.size} elements) into {shape}")
    return Tensor(a.data.reshape(shape))
    ### END SOLUTION


def transpose(a: Tensor, *axes) -> Tensor:
    """(2, 3) -> (3, 2); with axes, (b, s, h, d) transpose(a, 0, 2, 1, 3) -> (b, h, s, d)."""
    # Task 01.6: reverse the axes, or permute them as given
    ### BEGIN SOLUTION
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    if axes and sorted(a_ % a.ndim for a_ in axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {a.ndim} axes of {a.shape}")
    return Tensor(np.transpose(a.data, axes or None))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_01_6_layout", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 01.6
from tinytorch_lib.testing import task

with task("01.6", uses={"01.1": "Tensor"}):
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert x.reshape(3, 2).shape == (3, 2), f"reshape(3, 2): got {x.reshape(3, 2).shape}"
    assert x.reshape((6,)).shape == (6,), "reshape((6,)) with a tuple"
    assert x.reshape(-1, 2).shape == (3, 2), f"reshape(-1, 2): expected (3, 2), got {x.reshape(-1, 2).shape}"
    assert np.array_equal(x.T.data, [[0, 3], [1, 4], [2, 5]]), f"x.T: got {fmt(x.T.data)}"
    try:
        x.reshape(4, 2)
    except ValueError as e:
        assert "(2, 3)" in str(e) and "(4, 2)" in str(e), f"the error should name both shapes, got: {e}"
    else:
        raise AssertionError("reshape of 6 elements into (4, 2) should raise ValueError")
print("Task 01.6 visible tests passed")

# %% [markdown]
# ## 7. Systems analysis: what did we build?
#
# Nothing below is assumed: every number is measured on this machine, now.
#
# ### Bytes per dtype
#
# One million elements in each dtype, stored and counted with your `nbytes`.

# %%
n = 1_000_000
print(f"{'dtype':>8} | {'nbytes':>10} | bytes/element | vs float32")
base = Tensor(np.zeros(n, dtype=np.float32)).nbytes
for dt in (np.float64, np.float32, np.float16, np.int8):
    t = Tensor(np.zeros(n, dtype=dt))
    print(f"{np.dtype(dt).name:>8} | {t.nbytes:>10,} | {t.nbytes / t.size:>13.0f} | {t.nbytes / base:>9.2f}x")

# %% [markdown]
# ### Views versus copies
#
# Transpose changes strides, not memory; reshaping the transposed result has
# to copy. `np.shares_memory` tells which is which.

# %%
x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
xt = x.T
print("x strides (bytes):       ", x.data.strides)
print("x.T strides (bytes):     ", xt.data.strides, "- same memory:", np.shares_memory(x.data, xt.data))
flat = xt.reshape(-1)
print("x.T.reshape(-1) shares memory with x:", np.shares_memory(x.data, flat.data), "(a copy was needed)")

# %% [markdown]
# ### Matmul: FLOPs against time
#
# A first ladder (Module 17 climbs it further): a plain Python triple loop
# against your `matmul`, which calls numpy's compiled kernel. Both compute
# the same `2 * n^3` FLOPs and are checked against each other.
#
# Every time in this course comes from one helper, `measure` in
# `tinytorch_lib/timing.py` (Module 14 explains it and measures why): a
# warm-up call, several timed repeats of the **CPU time** the process used
# (time other programs took on the machine is not counted; wall time is kept
# beside it), the **median** (one interrupted run does not move it) and the
# **p90** (how slow the slow runs were). It holds numpy's BLAS thread pool at
# one thread while timing: on a machine that is also doing something else,
# two BLAS threads wait on each other, and the waiting counts as CPU time
# too. Each result says how many threads it used. `compare` times two
# functions in turns and gives their ratio with its p10-p90 range.

# %%
from tinytorch_lib.timing import compare, measure


def naive_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, k = a.shape
    m = b.shape[1]
    c = np.zeros((n, m), dtype=a.dtype)
    for i in range(n):
        for j in range(m):
            s = 0.0
            for p in range(k):
                s += a[i, p] * b[p, j]
            c[i, j] = s
    return c


rng = np.random.default_rng(0)
a32 = rng.standard_normal((48, 48)).astype(np.float32)
b32 = rng.standard_normal((48, 48)).astype(np.float32)
assert np.allclose(naive_matmul(a32, b32), matmul(Tensor(a32), Tensor(b32)).data, atol=1e-3)
ladder = compare({"loops": lambda: naive_matmul(a32, b32), "matmul": lambda: matmul(Tensor(a32), Tensor(b32))})
t_naive, t_fast = ladder["loops"], ladder["matmul"]
print(f"n=48 python loops: {t_naive}")
print(f"n=48 your matmul:  {t_fast}")
print(f"in this run your matmul was {ladder.ratio('loops', 'matmul'):,.0f} faster (median and p10-p90 of paired repeats)")
if ladder.noisy:
    print(ladder.noisy)

sizes = [64, 128, 256, 512]
gflops, noisy = [], None
print(f"\n{'n':>5} {'FLOPs':>13} {'median':>10} {'p90':>10} {'GFLOP/s':>8}")
for n in sizes:
    a = Tensor(rng.standard_normal((n, n)).astype(np.float32))
    b = Tensor(rng.standard_normal((n, n)).astype(np.float32))
    t = measure(lambda: a @ b, repeats=5)
    gflops.append(2 * n**3 / t.median / 1e9)
    print(f"{n:5d} {2 * n**3:>13,} {t.median * 1e3:8.3f} ms {t.p90 * 1e3:7.3f} ms {gflops[-1]:8.1f}")
    noisy = noisy or (t.noisy and f"n={n}: {t.noisy}")
print(f"(BLAS threads while timing: {t.threads})")
if noisy:
    print(noisy)

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import label_points, log_axis

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(sizes, gflops, marker="o")
label_points(ax, sizes, gflops)
ax.set_ylim(0, max(gflops) * 1.2)
log_axis(ax, "x", "count", ticks=sizes, base=2)
ax.set_xlabel("matrix size n (n x n float32, log scale)")
ax.set_ylabel("throughput (GFLOP/s)")
ax.set_title("Measured matmul throughput on this machine")
plt.tight_layout()
plt.show()

# %% [markdown]
# The Python loop pays the interpreter's cost (fetch, type check, box a
# float) for every one of the `2 * 48^3` FLOPs; the compiled kernel uses SIMD
# instructions and keeps blocks of both matrices in cache, which is where
# the large factor printed above comes from.
#
# Throughput is not a constant of the machine. At small `n` a fixed per-call
# cost (Python, allocating the result) is a large share of the time; at larger
# `n` the kernel's blocking pays off. Where the curve flattens depends on the
# CPU's caches, so look at your own plot rather than expecting a shape. If a
# point's p90 is far above its median, the repeats disagreed (the cell then
# prints a `noisy` line): rerun the cell. (With one BLAS thread, this measures one core;
# `measure(fn, threads=2)` would use both.)
#
# ## Summary
#
# - `Tensor` keeps its dtype, so `nbytes` is what is really stored: int8 is a
#   quarter of float32.
# - Broadcasting lines shapes up from the right; incompatible shapes fail with
#   both shapes in the message.
# - A matmul is `2 * n * k * m` FLOPs; how fast they run depends on size.
#
# Next: `tito module export 01`, then Module 02 builds activations on this
# `Tensor`.
