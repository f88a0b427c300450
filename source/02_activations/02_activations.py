# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 02: Activations
#
# A stack of linear layers is still one linear map: `W2 (W1 x) = (W2 W1) x`.
# The nonlinearity between layers is what lets a network bend a decision
# boundary. This module builds the five activations the course uses:
#
# | task | activation | formula | used in |
# |---|---|---|---|
# | 02.1 | ReLU | `max(0, x)` | MLPs and CNNs (Milestone 06) |
# | 02.2 | Sigmoid | `1 / (1 + e^-x)` | gates, binary outputs |
# | 02.3 | Tanh, GELU | `tanh(x)`; `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` | GELU in the transformer (Module 13) |
# | 02.4 | Softmax | `e^x_i / sum_j e^x_j` | class probabilities, attention (Module 12) |
#
# Activations are cheap in FLOPs but not free: they read and write every
# element, and in numpy each operation in a formula is one more full pass over
# the array. ReLU is one pass; GELU chains about ten. And two of them
# overflow if written the textbook way: `exp(1000)` is `inf` in float32.
# Writing them to be **numerically stable** is the real task here.
#
# This module builds on Module 01: it imports `Tensor` from `tinytorch_lib`.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.tensor import Tensor, record

# %% [markdown]
# ## Which `Tensor` are you running on?
#
# `tinytorch_lib/tensor.py` is either the course reference or your own export
# of Module 01 (`tito module export 01`). The cell below says which. When this
# notebook is autograded by the instructor, it always runs on the reference,
# so your grade here depends only on this module's work. If your own export
# is unfinished and gets in the way, `tito module reset 01` puts the reference
# back (your Module 01 notebook is untouched).

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

print(tinytorch_lib.origin("tensor"))

# %% [markdown]
# ## The shape of an activation
#
# Every activation maps a `Tensor` to a `Tensor` of the **same shape**,
# element by element (Softmax is the exception: it normalises along one axis).
# The given base class `Activation` makes each one callable, `relu(x)`, and
# turns integer input into float32 so `Sigmoid()(Tensor([1, 2]))` works. You
# write `forward`, working on the numpy array `x.data`; keep the input's float
# dtype (float32 in, float32 out). `__call__` also passes the result through
# `record` (Module 01's seam), under the class name (`"ReLU"`, ...), so
# Module 05 can register a backward rule for each activation.

# %% tags=["export"]
class Activation:
    """Base class: `act(x)` calls `act.forward(x)` on a float Tensor of any shape.

    The result is recorded as op `type(self).__name__` with saved `module=self`.
    """

    def __call__(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.dtype.kind != "f":
            x = Tensor(x.data.astype(np.float32))
        return record(type(self).__name__, self.forward(x), (x,), module=self)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# %% [markdown]
# ### Task 02.1: ReLU
#
# `relu(x) = max(0, x)`, elementwise. `[-2, 0, 3] -> [0, 0, 3]`.

# %% nbgrader={"grade": false, "grade_id": "relu", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class ReLU(Activation):
    """x: (...) float -> (...) same dtype, max(0, x)."""

    def forward(self, x: Tensor) -> Tensor:
        # Task 02.1: max(0, x) elementwise, same dtype
        ### BEGIN SOLUTION
        return Tensor(np.maximum(x.data, 0).astype(x.dtype, copy=False))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_02_1_relu", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 02.1
from tinytorch_lib.testing import task

with task("02.1"):
    x = Tensor([[-2.0, 0.0, 3.0], [1.5, -0.5, 7.0]])
    y = ReLU()(x)
    assert isinstance(y, Tensor), f"ReLU should return a Tensor, got {type(y).__name__}"
    assert y.shape == (2, 3), f"shape: expected (2, 3), got {y.shape}"
    assert np.array_equal(y.data, [[0, 0, 3], [1.5, 0, 7]]), f"ReLU([[-2, 0, 3], [1.5, -0.5, 7]]): got {fmt(y.data)}"
    assert y.dtype == np.float32, f"float32 in should give float32 out, got {y.dtype}"
    y64 = ReLU()(Tensor(np.array([[-1.0, 0.5]])))  # a float64 input
    assert y64.dtype == np.float64, f"ReLU() of a float64 input: keep the input's float dtype, expected float64, got {y64.dtype}"
print("Task 02.1 visible tests passed")

# %% [markdown]
# ### Task 02.2: Sigmoid, without overflow
#
# The textbook form `1 / (1 + exp(-x))` computes `exp(1000)` for `x = -1000`:
# that overflows to `inf` (numpy warns, and the warning is noise in a training
# log). Both halves can be written so the exponent is never positive:
#
# ```
# x >= 0:  1 / (1 + exp(-x))        exp(-x) <= 1
# x <  0:  exp(x) / (1 + exp(x))    exp(x)  <  1
# ```
#
# Use `z = exp(-|x|)` once and pick the formula per element with `np.where`.
# Worked example: `sigmoid(0) = 0.5`, `sigmoid(-1000) = 0`, `sigmoid(1000) = 1`,
# with no warning.

# %% nbgrader={"grade": false, "grade_id": "sigmoid", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Sigmoid(Activation):
    """x: (...) float -> (...) same dtype, in (0, 1); never overflows."""

    def forward(self, x: Tensor) -> Tensor:
        # Task 02.2: stable sigmoid, z = exp(-|x|)
        ### BEGIN SOLUTION
        z = np.exp(-np.abs(x.data))
        out = np.where(x.data >= 0, 1 / (1 + z), z / (1 + z))
        return Tensor(out.astype(x.dtype, copy=False))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_02_2_sigmoid", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 02.2
from tinytorch_lib.testing import task

with task("02.2"):
    y = Sigmoid()(Tensor([0.0, 2.0, -2.0]))
    want = 1 / (1 + np.exp(-np.array([0.0, 2.0, -2.0])))
    assert np.allclose(y.data, want, atol=1e-6), f"sigmoid([0, 2, -2]): expected {fmt(want)}, got {fmt(y.data)}"
    with np.errstate(over="raise", invalid="raise"):  # an overflow fails this test
        big = Sigmoid()(Tensor([-1000.0, 1000.0]))
    assert np.allclose(big.data, [0.0, 1.0]), f"sigmoid([-1000, 1000]): expected [0, 1], got {fmt(big.data)}"
    assert big.dtype == np.float32, f"float32 in should give float32 out, got {big.dtype}"
    y64 = Sigmoid()(Tensor(np.array([[-1.0, 0.5]])))  # a float64 input
    assert y64.dtype == np.float64, f"Sigmoid() of a float64 input: keep the input's float dtype, expected float64, got {y64.dtype}"
print("Task 02.2 visible tests passed")

# %% [markdown]
# ### Task 02.3: Tanh and GELU
#
# `Tanh` is `np.tanh` (already stable). GELU, the transformer's activation,
# weights `x` by how likely a standard normal is below it; GPT-2 and BERT use
# the tanh approximation:
#
# `gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`
#
# Worked example: `gelu(0) = 0`, `gelu(1) = 0.8412`, `gelu(-1) = -0.1588`:
# unlike ReLU, small negative inputs leak through.
#
# A dtype pitfall: `np.sqrt(2 / np.pi)` is a float64 numpy scalar, and numpy
# lets a numpy scalar's dtype take part in promotion, so
# `float32 array * np.float64(0.79...)` is float64 (a plain Python float would
# not promote). The result would be twice as many bytes as the input. Convert
# the constant to the input's dtype first (`.astype(v.dtype)`), or cast the
# result back.

# %% nbgrader={"grade": false, "grade_id": "tanh_gelu", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Tanh(Activation):
    """x: (...) float -> (...) same dtype, in (-1, 1)."""

    def forward(self, x: Tensor) -> Tensor:
        # Task 02.3: tanh elementwise
        ### BEGIN SOLUTION
        return Tensor(np.tanh(x.data))
        ### END SOLUTION


class GELU(Activation):
    """x: (...) float -> (...) same dtype; the tanh approximation."""

    def forward(self, x: Tensor) -> Tensor:
        # Task 02.3: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        ### BEGIN SOLUTION
        v = x.data
        c = np.sqrt(2.0 / np.pi).astype(v.dtype)
        out = 0.5 * v * (1 + np.tanh(c * (v + 0.044715 * v * v * v)))
        return Tensor(out.astype(x.dtype, copy=False))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_02_3_tanh_gelu", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 02.3
from tinytorch_lib.testing import task

with task("02.3"):
    t = Tanh()(Tensor([-1.0, 0.0, 1.0]))
    assert np.allclose(t.data, np.tanh([-1.0, 0.0, 1.0]), atol=1e-6), f"tanh([-1, 0, 1]): got {fmt(t.data)}"
    g = GELU()(Tensor([0.0, 1.0, -1.0]))
    assert np.allclose(g.data, [0.0, 0.8412, -0.1588], atol=1e-4), f"gelu([0, 1, -1]): expected [0, 0.8412, -0.1588], got {fmt(g.data)}"
    assert g.dtype == np.float32 and t.dtype == np.float32, f"float32 in should give float32 out, got {g.dtype}, {t.dtype}"
    y64 = GELU()(Tensor(np.array([[-1.0, 0.5]])))  # a float64 input
    assert y64.dtype == np.float64, f"GELU() of a float64 input: keep the input's float dtype, expected float64, got {y64.dtype}"
print("Task 02.3 visible tests passed")

# %% [markdown]
# ### Task 02.4: Softmax along an axis
#
# Softmax turns a row of scores (logits) into probabilities that sum to 1.
# Adding a constant to every logit does not change the result:
# `e^(x_i - c) / sum_j e^(x_j - c) = e^x_i / sum_j e^x_j`. Choosing
# `c = max(x)` makes the largest exponent `e^0 = 1`, so nothing overflows.
#
# ```
# logits [1000, 1001, 1002]   naive: exp -> [inf, inf, inf] -> nan
#          - max -> [-2, -1, 0]  exp -> [0.135, 0.368, 1] -> / 1.503 -> [0.090, 0.245, 0.665]
# ```
#
# `Softmax(axis=-1)` normalises along `axis`. Use `keepdims=True` in the max and
# the sum so the `(batch, 1)` results broadcast against `(batch, classes)`.

# %% nbgrader={"grade": false, "grade_id": "softmax", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Softmax(Activation):
    """x: (..., n) float -> (..., n) same dtype; sums to 1 along `axis`."""

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        # Task 02.4: subtract the max along self.axis, exponentiate, normalise
        ### BEGIN SOLUTION
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} is out of range for shape {x.shape}")
        shifted = x.data - x.data.max(axis=self.axis, keepdims=True)
        e = np.exp(shifted)
        return Tensor((e / e.sum(axis=self.axis, keepdims=True)).astype(x.dtype, copy=False))
        ### END SOLUTION

    def __repr__(self) -> str:
        return f"Softmax(axis={self.axis})"


# %% nbgrader={"grade": true, "grade_id": "test_02_4_softmax", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 02.4
from tinytorch_lib.testing import task

with task("02.4"):
    p = Softmax()(Tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    assert p.shape == (2, 3), f"shape: expected (2, 3), got {p.shape}"
    assert np.allclose(p.data.sum(axis=-1), 1.0), f"each row should sum to 1, got {fmt(p.data.sum(axis=-1))}"
    assert np.allclose(p.data[1], 1 / 3), f"equal logits give equal probabilities, got {fmt(p.data[1])}"
    with np.errstate(over="raise", invalid="raise"):  # an overflow fails this test
        big = Softmax()(Tensor([[1000.0, 1001.0, 1002.0]]))
    assert not np.isnan(big.data).any(), f"logits of 1000 gave NaN: {fmt(big.data)}"
    assert np.allclose(big.data, [[0.0900, 0.2447, 0.6652]], atol=1e-4), f"softmax([1000, 1001, 1002]): got {fmt(big.data)}"
    y64 = Softmax()(Tensor(np.array([[-1.0, 0.5]])))  # a float64 input
    assert y64.dtype == np.float64, f"Softmax() of a float64 input: keep the input's float dtype, expected float64, got {y64.dtype}"
print("Task 02.4 visible tests passed")

# %% [markdown]
# ## Systems analysis: what do activations cost?
#
# ### Stability, measured
#
# The naive softmax next to yours on the same logits (numpy's warnings are
# silenced in the naive one so the result, not the warning, is what you see).

# %%
logits = np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
print("naive softmax :", naive)
print("stable softmax:", Softmax()(Tensor(logits)).data)

# %% [markdown]
# ### Time per element
#
# Each activation on one million float32 values, timed with the course's
# `compare` (CPU time, the five in turns, median of several runs, BLAS
# threads held fixed), all in this cell; each ratio to ReLU comes from
# neighbouring repeats and prints with its p10-p90 range. Before you read the table: the cost of an elementwise function is
# **not** its number of arithmetic operations. What decides it:
#
# - **passes over memory**: every numpy operation in a formula reads its
#   inputs and writes a new 4 MB array; `np.where(c, a, b)` needs both `a`
#   and `b` computed in full first;
# - **fresh allocations**: each temporary is new memory, and the first touch
#   of new pages costs the operating system time;
# - **the routine behind each operation**: `np.tanh` and `np.exp` are single
#   compiled loops that use SIMD instructions; some routines are much slower
#   than their formula suggests (see `x**3` below).

# %%
from tinytorch_lib.timing import compare

x = Tensor(np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32))
acts = [ReLU(), Sigmoid(), Tanh(), GELU(), Softmax()]
timed = compare({repr(a): (lambda a=a: a(x)) for a in acts})
timings = timed.timings
print(f"{'activation':<16} {'ms / 1M':>8} {'p90 ms':>7} {'ns / element':>13} {'vs ReLU (p10-p90)':>19}")
for name, t in timings.items():
    print(f"{name:<16} {t.median * 1e3:8.2f} {t.p90 * 1e3:7.2f} {t.median * 1e9 / x.size:13.2f} "
          f"{format(timed.ratio(name, 'ReLU()'), '.2g'):>19}")
print(f"bytes read + written per call: {2 * x.nbytes:,} (input and output, float32); "
      f"BLAS threads: {timings['ReLU()'].threads}")
if timed.noisy:
    print(timed.noisy)

# %% [markdown]
# Read your table with the list above. Sigmoid as written here is `np.abs`,
# `np.exp`, two divisions (both branches), a comparison and `np.where`: six or
# more full passes, each with a new temporary. Tanh is one compiled pass, so
# it can land close to ReLU (whose `np.maximum` plus `astype` is itself two
# passes) or even below it. GELU chains about ten passes. Whatever ordering
# your machine shows, the reasons are those three bullets, not the formulas'
# FLOP counts.
#
# ### Where does Sigmoid's time go?
#
# If Sigmoid stands out, take it apart. `np.where` picks per element between
# two arrays; on random-sign input the choice flips unpredictably, and a CPU
# that guesses the outcome of each branch to keep its pipeline full guesses
# wrong about half the time. The same call on the same values sorted (all
# negatives first) makes the choice predictable. And the identity
# `sigmoid(x) = 0.5 * (1 + tanh(x / 2))` gives a stable sigmoid with no
# branch at all.

# %%
v = x.data
z = np.exp(-np.abs(v))
sorted_v = np.sort(v, axis=None).reshape(v.shape)
assert np.allclose(0.5 * (1 + np.tanh(0.5 * v)), Sigmoid()(x).data, atol=1e-6)
parts = compare({"where random": lambda: np.where(v >= 0, z, z), "where sorted": lambda: np.where(sorted_v >= 0, z, z),
                 "yours": lambda: Sigmoid()(x), "tanh form": lambda: 0.5 * (1 + np.tanh(0.5 * v))})
print(f"np.where, random signs:  {parts['where random']}")
print(f"np.where, sorted input:  {parts['where sorted']}  (random / sorted, in this run: "
      f"{parts.ratio('where random', 'where sorted'):.2g})")
print(f"your Sigmoid:            {parts['yours']}")
print(f"0.5 * (1 + tanh(x / 2)): {parts['tanh form']}  (yours / tanh form, in this run: "
      f"{parts.ratio('yours', 'tanh form'):.2g})")
if parts.noisy:
    print(parts.noisy)

# %% [markdown]
# The formula that is clearest on paper is not the fastest in numpy. Both
# sigmoids are stable; the tanh form avoids the branch and most of the
# temporaries. Module 17 does this systematically: keep the clear version as
# the reference, and check every faster one against it.
#
# ### One line, two costs: `x**3` against `x * x * x`
#
# Both give the cube. `x**3` calls numpy's general `power` routine, which
# handles any exponent; `x * x * x` is two multiplies. Measured side by side:

# %%
assert np.allclose(v**3, v * v * v, rtol=1e-5)
cube = compare({"x**3": lambda: v**3, "x*x*x": lambda: v * v * v})
print(f"x**3:  {cube['x**3']}")
print(f"x*x*x: {cube['x*x*x']}")
print(f"in this run x**3 / x*x*x: {cube.ratio('x**3', 'x*x*x'):.2g} (1M float32, in turns)")
if cube.noisy:
    print(cube.noisy)

# %% [markdown]
# If the ratio is large, it is the routine, not the arithmetic: numpy's float32
# `power` calls a general C `powf` for each element (it has to handle any real
# exponent), while `*` is a vectorized loop that does several elements per
# instruction. That measurement is why the GELU reference writes `v * v * v`.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import place_legend

grid = Tensor(np.linspace(-4, 4, 401, dtype=np.float32))
fig, ax = plt.subplots(figsize=(5, 3))
for act in (ReLU(), Sigmoid(), Tanh(), GELU()):
    ax.plot(grid.data, act(grid).data, label=repr(act)[:-2])
ax.set_xlabel("input x")
ax.set_ylabel("activation(x)")
ax.set_title("Activations on [-4, 4]: GELU lets small negatives through")
plt.tight_layout()
place_legend(ax)
plt.show()

# %% [markdown]
# ## Summary
#
# - Sigmoid and softmax overflow when written from the textbook formula;
#   rewriting them so every exponent is `<= 0` costs nothing and removes the
#   failure.
# - Activations are elementwise. ReLU costs a pass or two over memory; every extra
#   operation in the formula is another pass (and a temporary array), and
#   some operations (`power`) are far slower than others. The tables above
#   measure both; Module 17 swaps slow kernels for faster ones the same way.
#
# Next: `tito module export 02`; Module 03 stacks `Linear` layers with these
# activations in between.
