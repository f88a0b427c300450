# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 04: Losses
#
# Training needs one number that says how wrong the model is, and whose
# gradient says which way to move every weight. That number is the **loss**.
# This module builds the two the course uses:
#
# | task | what you build | points | used for |
# |---|---|---|---|
# | 04.1 | `MSELoss`: mean squared error | 4 | regression, checking gradients |
# | 04.2 | `log_softmax`: log-probabilities without overflow | 4 | the core of cross-entropy |
# | 04.3 | `CrossEntropyLoss`: classification from logits and integer labels | 4 | every classifier here (Milestone 06's digits MLP and CNN) |
#
# Cross-entropy written from its textbook formula, `-log(softmax(z)[y])`,
# returns `inf` or `nan` as soon as a logit reaches about 89 in float32:
# `exp(89)` does not fit. A model that becomes confident during training
# produces such logits, and one `nan` in the loss turns every weight into
# `nan` at the next step. The systems analysis measures exactly where the
# naive formula breaks, and what the stable one costs.
#
# This module uses Modules 01-03 from `tinytorch_lib`.

# %% tags=["export"]
import numpy as np

from tinytorch_lib.tensor import Tensor, record

# %% [markdown]
# ## Which library are you running on?

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "activations", "layers"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## The shape of a loss
#
# A loss object is called like a function, `loss_fn(prediction, target)`, and
# returns a 0-d `Tensor` (one number) in the prediction's float dtype. The
# given base class `Loss` makes that call run `forward`.

# %% tags=["export"]
class Loss:
    """loss_fn(prediction, target) -> 0-d Tensor; subclasses define forward."""

    def __call__(self, prediction, target) -> Tensor:
        return self.forward(prediction, target)

    def forward(self, prediction, target) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _as_float_tensor(x) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    return x if x.dtype.kind == "f" else Tensor(x.data.astype(np.float32))


# %% [markdown]
# ## 1. Mean squared error
#
# `MSE = mean((pred - target)^2)` over every element. Worked example:
#
# ```
# pred   [[1.0, 2.0], [3.0, 4.0]]    (2, 2)
# target [[1.0, 0.0], [3.0, 1.0]]    (2, 2)
# d      [[0.0, 2.0], [0.0, 3.0]]    d * d = [[0, 4], [0, 9]]   mean = 13 / 4 = 3.25
# ```
#
# Build it **from `Tensor` operators**: `d = pred - target`, then
# `(d * d).mean()`. Each operator records itself, so Module 05's rules for
# `sub`, `mul` and `mean` give this loss its gradient with no extra code.
#
# Shapes must match exactly. Broadcasting would silently turn a `(4, 1)`
# prediction and a `(4,)` target into a `(4, 4)` difference: a loss that is
# wrong but looks like a number (PyTorch only warns). Refuse it.
#
# ### Task 04.1: `MSELoss`
#
# `forward(pred, target)`: `pred` is a float `Tensor` (the given line converts
# arrays and integers); `target` a `Tensor` or array-like. A target `Tensor` of
# `pred`'s dtype is used as it is, so when it requires grad the gradient flows
# into it too, as in PyTorch (`target.grad` is minus `pred.grad`); any other
# target (an array, a list, a `Tensor` of another dtype) is converted to a
# `Tensor` of `pred`'s dtype, and is then plain data. If the shapes differ,
# raise `ValueError` naming both, e.g.
# `MSELoss: pred shape (4, 1) and target shape (4,) differ`. Return
# `(d * d).mean()` with `d = pred - target`: a 0-d `Tensor` of `pred`'s dtype.

# %% nbgrader={"grade": false, "grade_id": "mse", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class MSELoss(Loss):
    """pred: (...) float, target: same shape -> 0-d Tensor, mean((pred - target)^2)."""

    def forward(self, pred, target) -> Tensor:
        pred = _as_float_tensor(pred)
        # Task 04.1: target as a Tensor of pred's dtype (a Tensor of that dtype as it is), check shapes, then (d * d).mean() with Tensor operators
        ### BEGIN SOLUTION
        if not (isinstance(target, Tensor) and target.dtype == pred.dtype):
            target = Tensor(target.data if isinstance(target, Tensor) else target, dtype=pred.dtype)
        if pred.shape != target.shape:
            raise ValueError(f"MSELoss: pred shape {pred.shape} and target shape {target.shape} differ")
        d = pred - target
        return (d * d).mean()
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_04_1_mse", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 04.1
from tinytorch_lib.testing import task

with task("04.1"):
    loss = MSELoss()(Tensor([[1.0, 2.0], [3.0, 4.0]]), Tensor([[1.0, 0.0], [3.0, 1.0]]))
    assert isinstance(loss, Tensor) and loss.shape == (), f"MSELoss should return a 0-d Tensor, got {loss!r}"
    assert np.isclose(loss.item(), 3.25), f"MSE of pred [[1, 2], [3, 4]] and target [[1, 0], [3, 1]]: expected 13 / 4 = 3.25, got {fmt(loss.item())}"
    assert loss.dtype == np.float32, f"float32 pred: expected a float32 loss, got {loss.dtype}"
    assert np.isclose(MSELoss()(Tensor([1.0, 2.0]), [1.0, 4.0]).item(), 2.0), "a plain list as target: MSE([1, 2], [1, 4]) = 2"
    try:
        MSELoss()(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))
    except ValueError as e:
        assert "(4, 1)" in str(e) and "(4,)" in str(e), f"the error should name both shapes (4, 1) and (4,), got: {e}"
    else:
        raise AssertionError("MSELoss on pred (4, 1) and target (4,) should raise ValueError, not broadcast to (4, 4)")
    p = Tensor([[1.0, 2.0]], requires_grad=True)
    t = Tensor([[0.0, 4.0]], requires_grad=True)
    seen, stack = [], [MSELoss()(p, t)]
    while stack:  # every Tensor the loss was computed from (Module 05's backward walks the same graph)
        node = getattr(stack.pop(), "node", None)
        for x in (node.inputs if node is not None else ()):
            seen.append(x)
            stack.append(x)
    assert any(x is t for x in seen), (
        "pred [[1, 2]] and target [[0, 4]], both float32 Tensors with requires_grad=True: the target Tensor is not in "
        "the loss's graph, so no gradient can reach it (PyTorch gives target.grad = -pred.grad); use a target Tensor of "
        "pred's dtype as it is, not a copy")
print("Task 04.1 visible tests passed")

# %% [markdown]
# ## 2. Log-softmax, stably
#
# A classifier outputs **logits** `z` (one score per class, any real number).
# Softmax turns them into probabilities, and cross-entropy needs the log of
# the probability of the true class. Take the log first, on paper:
#
# ```
# log softmax(z)_i = z_i - log(sum_j exp(z_j))
# ```
#
# The term `log(sum_j exp(z_j))` is the **log-sum-exp**. Computed as written,
# `exp(z_j)` overflows. Shift by `m = max_j z_j` (Module 02's trick, now
# inside a log):
#
# ```
# log(sum_j exp(z_j)) = m + log(sum_j exp(z_j - m))      every exponent <= 0, one of them exactly 0
# ```
#
# so the sum is between 1 and the number of classes: no overflow, and no
# `log(0)`. Worked example:
#
# ```
# z = [1000, 1001, 1002]       m = 1002      z - m = [-2, -1, 0]
# log-sum-exp = 1002 + log(e^-2 + e^-1 + 1) = 1002 + 0.4076 = 1002.4076
# log_softmax = z - 1002.4076 = [-2.4076, -1.4076, -0.4076]
# ```
#
# ### Task 04.2: `log_softmax`
#
# `log_softmax(logits)` on a numpy array `(..., classes)`, along the last
# axis, by the shifted formula. Keep the input's float dtype (float32 in,
# float32 out). No `inf`, `nan` or overflow warning for finite logits of any
# size (the tests raise on overflow). This is a numpy helper: it works on
# arrays, not Tensors; Task 04.3 records the loss for autograd as one op.

# %% nbgrader={"grade": false, "grade_id": "log_softmax", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(..., classes) float -> (..., classes) same dtype: z - max - log(sum(exp(z - max))), along the last axis."""
    # Task 04.2: shift by the max along the last axis (keepdims), then subtract the log of the sum of exps
    ### BEGIN SOLUTION
    z = np.asarray(logits)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_04_2_log_softmax", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 04.2
from tinytorch_lib.testing import task

with task("04.2"):
    z = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    got = log_softmax(z)
    want = np.log(np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum())
    assert isinstance(got, np.ndarray) and got.shape == (1, 3), f"log_softmax of a (1, 3) array: expected a (1, 3) np.ndarray, got {type(got).__name__} {np.shape(got)}"
    assert np.allclose(got, want, atol=1e-6), f"log_softmax([[1, 2, 3]]): expected {fmt(want)}, got {fmt(got)}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    two = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)  # two rows: needs keepdims=True
    got2 = log_softmax(two)
    want2 = np.array([want, np.full(3, -np.log(3.0))])
    assert np.shape(got2) == (2, 3) and np.allclose(got2, want2, atol=1e-6), \
        f"log_softmax([[1, 2, 3], [0, 0, 0]]): expected {want2.round(4).tolist()} (each row on its own; keepdims=True), got {fmt(got2)}"
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # an overflow fails this test
        big = log_softmax(np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32))
    assert np.allclose(big, [[-2.4076, -1.4076, -0.4076]], atol=1e-3), f"log_softmax([[1000, 1001, 1002]]): expected [[-2.4076, -1.4076, -0.4076]], got {fmt(big)}"
print("Task 04.2 visible tests passed")

# %% [markdown]
# ## 3. Cross-entropy from logits and integer labels
#
# For a batch of `N` rows of logits `(N, C)` and labels `y` (`N` integers in
# `[0, C)`), cross-entropy is the mean over the batch of minus the
# log-probability of the true class:
#
# ```
# loss = -(1/N) * sum_n log_softmax(z_n)[y_n]
#
# logits [[2.0, 1.0, 0.1],      log_softmax [[-0.417, -1.417, -2.317],    labels [0, 2]
#         [0.5, 2.5, 0.3]]                   [-2.220, -0.220, -2.420]]
# picked: -0.417 (row 0, class 0) and -2.420 (row 1, class 2)   loss = (0.417 + 2.420) / 2 = 1.4185
# ```
#
# Pick the entries with fancy indexing: `logp[np.arange(N), y]`.
#
# **Labels are checked**, because a wrong label does not crash numpy: `-1`
# silently picks the last class, and a float label array fails deep inside
# indexing. Check, in this order, each with a `ValueError`:
#
# 1. the labels have an integer dtype (`kind` `"i"` or `"u"`), e.g.
#    `CrossEntropyLoss: targets must be integer class labels, got dtype float64`;
# 2. their shape is `(N,)`, e.g.
#    `CrossEntropyLoss: logits (4, 10) need targets of shape (4,), got (5,)`;
# 3. every label is in `[0, C)`; name the first bad one, where it is, and `C`:
#    `CrossEntropyLoss: label 10 at index 3 is outside [0, 10) (10 classes)`.
#
# **Recording for autograd.** The loss is computed in numpy, so it is recorded
# as one op, `"cross_entropy"`, with what its gradient needs saved. The
# gradient with respect to the logits is `(softmax(z) - onehot(y)) / N`, so
# save `targets` (the labels as an `int64` array `(N,)`) and `probs`
# (`softmax(z) = exp(logp)`, `(N, C)`, the logits' dtype):
#
# ```
# return record("cross_entropy", Tensor(loss), (logits,), targets=labels, probs=probs)
# ```
#
# ### Task 04.3: `CrossEntropyLoss`
#
# `forward(logits, targets)`: `logits` a float `Tensor` `(N, C)` (the given
# lines convert and check it), `targets` a `Tensor`, array or list of ints.
# Check the labels as above, compute `logp` with your `log_softmax`, and
# return the mean loss as a 0-d `Tensor` of the logits' dtype, recorded as
# above.

# %% nbgrader={"grade": false, "grade_id": "cross_entropy", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class CrossEntropyLoss(Loss):
    """logits: (batch, classes) float, targets: (batch,) int in [0, classes) -> 0-d Tensor, mean over the batch.

    Recorded as op "cross_entropy" with saved targets (int64, (batch,)) and probs ((batch, classes), softmax).
    """

    def forward(self, logits, targets) -> Tensor:
        logits = _as_float_tensor(logits)
        if logits.ndim != 2 or logits.shape[0] == 0:
            raise ValueError(f"CrossEntropyLoss: expected logits of shape (batch, classes) with batch >= 1, "
                             f"got {logits.shape}")
        labels = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
        # Task 04.3: check dtype, shape and range of labels; logp = log_softmax; mean of -logp[n, y_n]; record
        ### BEGIN SOLUTION
        n, c = logits.shape
        if labels.dtype.kind not in "iu":
            raise ValueError(f"CrossEntropyLoss: targets must be integer class labels, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"CrossEntropyLoss: logits {logits.shape} need targets of shape ({n},), got {labels.shape}")
        bad = np.flatnonzero((labels < 0) | (labels >= c))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"CrossEntropyLoss: label {labels[i]} at index {i} is outside [0, {c}) ({c} classes)")
        labels = labels.astype(np.int64)
        logp = log_softmax(logits.data)
        loss = -logp[np.arange(n), labels].mean()
        return record("cross_entropy", Tensor(np.asarray(loss, dtype=logits.dtype)), (logits,),
                      targets=labels, probs=np.exp(logp))
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_04_3_cross_entropy", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 04.3
from tinytorch_lib.testing import task

with task("04.3", uses={"04.2": "log_softmax"}):
    logits = Tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    loss = CrossEntropyLoss()(logits, np.array([0, 2]))
    assert isinstance(loss, Tensor) and loss.shape == (), f"CrossEntropyLoss should return a 0-d Tensor, got {loss!r}"
    assert np.isclose(loss.item(), 1.4185, atol=1e-3), f"logits [[2, 1, 0.1], [0.5, 2.5, 0.3]], labels [0, 2]: expected 1.4185, got {fmt(loss.item())}"
    assert loss.dtype == np.float32, f"float32 logits: expected a float32 loss, got {loss.dtype}"
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = CrossEntropyLoss()(Tensor([[1e4, 0.0, -1e4]]), [1])
    assert np.isfinite(big.item()) and np.isclose(big.item(), 1e4), f"logits [[1e4, 0, -1e4]], label 1: expected a finite loss of 1e4, got {fmt(big.item())}"
    for bad, needle in [(np.array([0, 3]), "3"), (np.array([0.0, 1.0]), "float64"), (np.array([0, 1, 2]), "(3,)")]:
        try:
            CrossEntropyLoss()(logits, bad)
        except ValueError as e:
            assert needle in str(e), f"labels {bad.tolist()} ({bad.dtype}) for logits (2, 3): the error should mention {needle!r}, got: {e}"
        else:
            raise AssertionError(f"labels {bad.tolist()} ({bad.dtype}) for logits (2, 3) should raise ValueError")
print("Task 04.3 visible tests passed")

# %% [markdown]
# ## 4. Systems analysis
#
# ### Where the naive formula breaks
#
# The same logits at growing scale, float32 (the training dtype): the naive
# `-log(softmax(z)[y])`, your stable loss, and a float64 log-sum-exp
# reference. numpy's warnings are silenced for the naive version so the
# results, not warnings, show what happens.

# %%
rng = np.random.default_rng(0)
base = rng.standard_normal((8, 10)).astype(np.float32)
labels = rng.integers(0, 10, 8)


def naive_cross_entropy(z, y):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return float(-np.log(p[np.arange(len(y)), y]).mean())


def reference_cross_entropy(z, y):  # float64 log-sum-exp
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float((lse - z[np.arange(len(y)), y]).mean())


print(f"{'logit scale':>11} {'max |z|':>9} {'naive':>12} {'stable (yours)':>15} {'float64 ref':>13}")
for scale in (1, 10, 30, 100, 1000, 10000):
    z = base * scale
    stable = CrossEntropyLoss()(Tensor(z), labels).item()
    print(f"{scale:>11} {np.abs(z).max():9.1f} {naive_cross_entropy(z, labels):12.4g} {stable:15.6g} "
          f"{reference_cross_entropy(z, labels):13.6g}")
print(f"float32 exp overflows above log(float32 max) = {np.log(np.finfo(np.float32).max):.2f}")
row, label = np.array([[80.0, 0.0, -120.0]], dtype=np.float32), np.array([2])
print(f"one row [80, 0, -120], label 2 (no overflow, 80 < 88.7): naive {naive_cross_entropy(row, label)}, "
      f"stable {CrossEntropyLoss()(Tensor(row), label).item():g}, float64 ref {reference_cross_entropy(row, label):g}")

# %% [markdown]
# Two failures show up. When the largest logit of a row passes about 88.7,
# `exp` is `inf` and `inf / inf` is `nan`. Before that, when the true class's
# logit is far below the largest, its probability **underflows** to 0 and
# `-log(0)` is `inf`, although the true loss is a perfectly ordinary number
# (the float64 column). The stable loss never forms the probability of the
# true class: it subtracts logits, which stay finite.
#
# ### The first loss of an untrained classifier
#
# With logits near 0, softmax is close to uniform, every class gets about
# `1/C`, and the loss is about `-log(1/C) = log(C)`: `log(10) = 2.303` for
# the digits. That makes it the first check when training starts: a first
# loss far from `log(C)` means the initial logits are large (a bad
# initialisation, unscaled inputs) before any learning has happened. Larger
# random logits raise the expected loss: on random labels the model is then
# confidently wrong about as often as right, and a wrong confident guess
# costs more than a right one saves.
#
# Measured on 2,000 random labels: random logits of growing spread, and the
# untrained Milestone MLP (Module 03) on random inputs.

# %%
from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Linear, Sequential, manual_seed

y_rand = rng.integers(0, 10, 2000)
print(f"log(10) = {np.log(10):.4f}")
print(f"{'logits':<34} {'std of logits':>13} {'loss':>8}")
for spread in (0.01, 0.1, 1.0, 3.0, 10.0):
    z = (rng.standard_normal((2000, 10)) * spread).astype(np.float32)
    print(f"{'random, N(0, ' + str(spread) + '^2)':<34} {z.std():13.3f} {CrossEntropyLoss()(Tensor(z), y_rand).item():8.4f}")
manual_seed(0)
mlp = Sequential(Linear(64, 128), ReLU(), Linear(128, 64), ReLU(), Linear(64, 10))
z = mlp(Tensor(rng.uniform(0, 1, (2000, 64)).astype(np.float32))).data
print(f"{'untrained MLP 64-128-64-10':<34} {z.std():13.3f} {CrossEntropyLoss()(Tensor(z), y_rand).item():8.4f}")

# %% [markdown]
# ### What the loss costs
#
# Time of both losses against the batch size (10 classes for cross-entropy,
# `(batch, 10)` predictions for MSE), and the price of stability: the naive
# cross-entropy next to the stable one on the same batch. The three are timed
# in turns (`compare`: CPU time, ratios from neighbouring repeats, with their
# p10-p90 range).

# %%
from tinytorch_lib.timing import compare

mse, ce = MSELoss(), CrossEntropyLoss()
batches = [16, 64, 256, 1024, 4096]
loss_rows, noisy = [], None
print(f"{'batch':>6} {'MSE':>10} {'cross-ent.':>11} {'naive CE':>10} {'CE / naive (p10-p90)':>21} {'CE ns/row':>10}")
for n in batches:
    z = Tensor(rng.standard_normal((n, 10)).astype(np.float32))
    t = Tensor(rng.standard_normal((n, 10)).astype(np.float32))
    y = rng.integers(0, 10, n)
    c = compare({"mse": lambda: mse(z, t), "ce": lambda: ce(z, y), "naive": lambda: naive_cross_entropy(z.data, y)},
                repeats=5)
    t_mse, t_ce, t_naive = c["mse"], c["ce"], c["naive"]
    noisy = noisy or (c.noisy and f"batch {n}, {c.noisy}")
    loss_rows.append((n, t_mse.median, t_ce.median, t_naive.median))
    print(f"{n:>6} {t_mse.median * 1e6:7.1f} us {t_ce.median * 1e6:8.1f} us {t_naive.median * 1e6:7.1f} us "
          f"{format(c.ratio('ce', 'naive'), '.2g'):>21} {t_ce.median * 1e9 / n:10.1f}")
print(f"(CPU time, medians of {t_ce.repeats} repeats; BLAS threads: {t_ce.threads})")
if noisy:
    print(noisy)

# %% [markdown]
# At small batches both losses cost a fixed few microseconds of Python and
# numpy call overhead (the label checks, creating `Tensor`s, recording);
# per-row cost only settles at large batches. The stable version does a few
# more passes than the naive one (the max, the subtraction, the `exp` for
# `probs`), but if the gap in your table is far larger than a few passes,
# the reason is not arithmetic. Take one batch apart:

# %%
z = rng.standard_normal((4096, 10)).astype(np.float32)
z_t = np.ascontiguousarray(z.T)  # the same numbers stored as (10, 4096)
assert np.array_equal(z.max(axis=1), z_t.max(axis=0))
steps = {
    "np.exp(z)                (40,960 values)": lambda: np.exp(z),
    "z.sum(axis=1)            (4,096 rows of 10)": lambda: z.sum(axis=1),
    "z.max(axis=1)            (4,096 rows of 10)": lambda: z.max(axis=1),
    "z_t.max(axis=0)          (same max, stored (10, 4096))": lambda: z_t.max(axis=0),
    "log_softmax(z)           (yours)": lambda: log_softmax(z),
}
timed_steps = compare(steps)
step_times = timed_steps.timings
for name, t in step_times.items():
    print(f"{name:<56} {t.median * 1e6:8.1f} us  (p90 {t.p90 * 1e6:.1f} us)")
max_rows, max_cols = (name for name in steps if ".max(" in name)
print(f"in this run, the same maxima along the last axis of 10 / stored (10, 4096): "
      f"{timed_steps.ratio(max_rows, max_cols):.2g}")
if timed_steps.noisy:
    print(timed_steps.noisy)

# %% [markdown]
# The same 40,960 maxima, two layouts. numpy reduces along the reduced axis
# in an inner loop; along a last axis of only 10 elements that loop restarts
# 4,096 times, each start paying setup and too short for SIMD. Stored as
# `(10, 4096)`, the same reduction becomes 9 elementwise `maximum` passes over
# 4,096 contiguous values, which vectorize. Which axis you reduce over can
# matter more than which operation you run (here `max` also takes a slower
# path than `sum`, because it has to propagate `nan`). The clear version
# stays the reference; Module 17 builds faster variants and checks them
# against it. Next to a forward pass of the MLP (Module 03's table), the loss
# is small either way.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import log_axis, place_legend

try:  # what the timing cell above measured; it stops early when a task it needs is unfinished
    ready = len(loss_rows) == len(batches)
except NameError:
    ready = False
if not ready:
    print("Plot skipped: the timing cell above did not finish. It needs Task 04.1 (MSELoss) and Tasks 04.2-04.3 (log_softmax, CrossEntropyLoss): finish them, then rerun "
          "that cell and this one.")
else:
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ns = [r[0] for r in loss_rows]
    for col, label in ((1, "MSELoss"), (2, "CrossEntropyLoss (stable)"), (3, "naive cross-entropy")):
        ax.plot(ns, [r[col] * 1e9 / r[0] for r in loss_rows], marker="o", label=label)
    log_axis(ax, "x", "count", ticks=ns, base=2)
    log_axis(ax, "y", "number")
    ax.grid(True, which="major", alpha=0.25)
    ax.set_xlabel("batch size (rows of 10 values, log scale)")
    ax.set_ylabel("time per row (ns, log scale)")
    ax.set_title("Loss cost per row vs batch size")
    plt.tight_layout()
    place_legend(ax)
    plt.show()

# %% [markdown]
# Takeaway: per-row cost drops steeply with batch size as the fixed per-call
# overhead is shared; at large batches the stable loss pays mostly for
# reductions along a short axis, not for its extra arithmetic.
#
# ## Summary
#
# - `MSELoss` is three `Tensor` operators, so autograd differentiates it for
#   free; it refuses mismatched shapes instead of broadcasting.
# - `log_softmax` shifts by the row maximum, so cross-entropy of logits of
#   `1e4` is finite where the textbook formula gives `inf` or `nan`.
# - `CrossEntropyLoss` checks its labels and records one op with `targets`
#   and `probs` saved: Module 05's gradient is `(probs - onehot) / N`.
# - A first loss near `log(C)` is the sign of a sane initialisation.
#
# Next: `tito module export 04`; Module 05 computes the gradients of these
# losses through every layer built so far.
