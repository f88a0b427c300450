# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 14: Profiling
#
# Before optimizing a model, find out where its time and bytes go. Engineers
# who skip this step speed up the part that did not matter. This module
# builds a `Profiler` for any `Module`: parameters and real bytes per layer,
# analytic FLOPs per layer (with the formulas, checked against hand counts),
# the memory of one forward pass's activations, each layer's share of the
# time measured through Module 03's hooks, and latency and throughput
# measured the way MLPerf reports them. Modules 15-18 and Milestone 06 use it
# to decide what to optimize and to check what an optimization bought.
#
# | task | what you build | points |
# |---|---|---|
# | 14.1 | `linear_flops`, `conv2d_flops`, `attention_flops`: the formulas | 4 |
# | 14.2 | `Profiler.run`: per-layer self time and shapes through hooks | 4 |
# | 14.3 | `latency` and `throughput`: SingleStream and Offline | 4 |

# %% tags=["export"]
import time

import numpy as np

from tinytorch_lib.layers import Linear, Module
from tinytorch_lib.spatial import Conv2d
from tinytorch_lib.tensor import Tensor, no_grad
from tinytorch_lib.timing import measure

# %% [markdown]
# ## Which library files are you running on?
#
# Each file below is either the course reference or your own export of an
# earlier module. When this notebook is autograded by the instructor it always
# runs on the reference, so your grade here depends only on this module's
# work. `tito module reset NN` puts a reference file back.

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "layers", "spatial", "attention", "transformer", "training"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. The course's one timer, and why it looks the way it does
#
# Every time this course prints comes from `tinytorch_lib.timing.measure`
# (hand-written, not exported from a notebook). Each of its rules answers a
# way a naive `time.time()` around one call misleads:
#
# - **Warm-up calls** first: the first call pays for page faults, caches and
#   lazy imports.
# - **Several calls per repeat** (`number`, grown until one repeat lasts at
#   least 2 ms): a call of a few microseconds is otherwise dominated by the
#   timer's own overhead.
# - **Repeats, then median and p90**: one interrupted repeat moves a mean but
#   not a median; the p90 (MLPerf's tail latency) shows how noisy the machine
#   was. A p90 far above the median means: rerun.
# - **BLAS threads held fixed** (default 1, through threadpoolctl): numpy's
#   matmul uses a thread pool; on a shared 2-core machine two threads can wait
#   on each other and make a 1 ms matmul take 16 ms. Every result says how
#   many threads it used.
#
# ```
# t = measure(lambda: model(x), repeats=7)   # Timing(median, p90, min, max, repeats, number, threads)
# print(t)                                   # '1.23 ms (p90 1.31 ms, 7 x 100 calls, 1 BLAS thread)'
# ```
#
# A profiler adds per-layer timing on top: it cannot time each layer with
# `measure` separately (a layer's input comes from the layer before), so it
# times one whole forward pass at a time with clocks started and stopped by
# hooks, repeats that pass, and takes each layer's median.

# %% [markdown]
# ## 2. Counting work: FLOPs per layer
#
# A FLOP here is one floating-point multiply or add; a multiply-add counts 2.
# For an input with `N` rows (all leading axes together):
#
# ```
# Linear(in, out):        2 * N * in * out            (+ N * out for the bias)
# Conv2d(c_in, c_out, kh x kw), output (B, c_out, H', W'):
#                         2 * B * c_out * H' * W' * c_in * kh * kw   (+ B * c_out * H' * W' for the bias)
# attention core, q (B, h, s_q, d), k and v (B, h, s_k, d):
#     scores q @ k^T:      2 * B * h * s_q * s_k * d
#     softmax:             5 * B * h * s_q * s_k      (max, subtract, exp, sum, divide: one each per score)
#     weights @ v:         2 * B * h * s_q * s_k * d
# elementwise (ReLU, add, ...): 1 per output element
# ```
#
# Worked example: `Linear(64, 128)` on a batch of 32 is `2 * 32 * 64 * 128 = 524,288`
# multiply-add FLOPs plus `32 * 128 = 4,096` bias adds: 528,384.
#
# FLOPs say how much arithmetic a layer needs, not how long it takes: the
# same FLOPs run at very different speeds depending on how the data moves
# (Module 02's elementwise passes, Module 17's kernels). The profiler shows
# both columns so you can compare them.
#
# ### Task 14.1: the formulas
#
# - `linear_flops(n_rows, in_features, out_features, bias=True) -> int`
# - `conv2d_flops(batch, c_in, c_out, kh, kw, h_out, w_out, bias=True) -> int`
# - `attention_flops(batch, heads, s_q, s_k, head_dim) -> int`: the three
#   lines above summed (projections are `Linear` layers, counted there).
#
# Each returns a Python `int`. A negative size is a `ValueError` naming it.

# %% nbgrader={"grade": false, "grade_id": "flops", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def _sizes(where: str, **sizes) -> None:
    """Given: every size must be an int >= 0."""
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{where}: {name} must be an int >= 0, got {v!r}")


def linear_flops(n_rows: int, in_features: int, out_features: int, bias: bool = True) -> int:
    """2 * N * in * out multiply-add FLOPs, + N * out bias adds."""
    _sizes("linear_flops", n_rows=n_rows, in_features=in_features, out_features=out_features)
    # Task 14.1
    ### BEGIN SOLUTION
    return int(2 * n_rows * in_features * out_features + (n_rows * out_features if bias else 0))
    ### END SOLUTION


def conv2d_flops(batch: int, c_in: int, c_out: int, kh: int, kw: int, h_out: int, w_out: int, bias: bool = True) -> int:
    """2 * B * c_out * H' * W' * c_in * kh * kw, + B * c_out * H' * W' bias adds."""
    _sizes("conv2d_flops", batch=batch, c_in=c_in, c_out=c_out, kh=kh, kw=kw, h_out=h_out, w_out=w_out)
    # Task 14.1
    ### BEGIN SOLUTION
    outputs = batch * c_out * h_out * w_out
    return int(2 * outputs * c_in * kh * kw + (outputs if bias else 0))
    ### END SOLUTION


def attention_flops(batch: int, heads: int, s_q: int, s_k: int, head_dim: int) -> int:
    """q @ k^T, softmax (5 per score), weights @ v."""
    _sizes("attention_flops", batch=batch, heads=heads, s_q=s_q, s_k=s_k, head_dim=head_dim)
    # Task 14.1
    ### BEGIN SOLUTION
    scores = batch * heads * s_q * s_k
    return int(2 * scores * head_dim + 5 * scores + 2 * scores * head_dim)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_14_1_flops", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 14.1
from tinytorch_lib.testing import task

with task("14.1"):
    got = linear_flops(32, 64, 128)
    assert got == 528_384 and isinstance(got, int), f"linear_flops(32, 64, 128): expected 2*32*64*128 + 32*128 = 528,384 (an int), got {got!r}"
    assert linear_flops(32, 64, 128, bias=False) == 524_288, f"without bias: expected 524,288, got {linear_flops(32, 64, 128, bias=False)}"
    got = conv2d_flops(1, 1, 16, 3, 3, 8, 8)
    assert got == 2 * 16 * 64 * 9 + 16 * 64, f"conv2d_flops(1 image, 1 -> 16 channels, 3x3, 8x8 output): expected 19,456, got {fmt(got)}"
    got = attention_flops(1, 4, 10, 10, 32)
    assert got == 4 * 100 * (4 * 32 + 5), f"attention_flops(1, 4 heads, 10 x 10, d=32): expected 2*400*32 + 5*400 + 2*400*32 = 53,200, got {fmt(got)}"
    try:
        linear_flops(-1, 2, 3)
    except ValueError as e:
        assert "n_rows" in str(e), f"a negative n_rows: the error should name it, got: {e}"
    else:
        raise AssertionError("linear_flops(-1, 2, 3) should raise ValueError")
print("Task 14.1 visible tests passed")

# %% [markdown]
# Given: `layer_flops(module, inputs, output)` picks the formula for one
# layer from the shapes the profiler records (Linear, Conv2d, the attention
# core of `MultiHeadAttention` (profiled without a cache), LayerNorm at 8
# FLOPs per element, pooling, GELU, residual adds and other elementwise work
# at 1 per element; embedding lookups and reshapes at 0). `MultiHeadAttention`'s own entry counts only its core; its
# four projections are `Linear` children, counted as such.

# %% tags=["export"]
def _shape(v) -> tuple:
    return tuple(v.shape) if hasattr(v, "shape") else tuple(np.shape(v))


def layer_flops(module: Module, inputs: tuple, output) -> int:
    """Analytic FLOPs of one call of `module` (its own work, not its children's)."""
    kinds = {c.__name__ for c in type(module).__mro__}    # a subclass (Module 17's FastGPT) counts as its base
    out_shape = _shape(output)
    n_out = int(np.prod(out_shape, dtype=np.int64)) if out_shape else 1
    if isinstance(module, Linear):
        return linear_flops(n_out // module.out_features, module.in_features, module.out_features,
                            module.bias is not None)
    if isinstance(module, Conv2d):
        b, c_out, h, w = out_shape
        kh, kw = module.kernel_size
        return conv2d_flops(b, module.in_channels, c_out, kh, kw, h, w, module.bias is not None)
    if "MultiHeadAttention" in kinds:  # without a cache: every query against every key of the same input
        b, s_q, _ = _shape(inputs[0])
        return attention_flops(b, module.n_heads, s_q, s_q, module.head_dim)
    if "LayerNorm" in kinds:
        return 8 * n_out
    if "MLP" in kinds:  # its own work is the GELU on the 4 x wider hidden layer
        return 4 * n_out
    if "TransformerBlock" in kinds:  # two residual adds
        return 2 * n_out
    if kinds & {"Embedding", "Flatten", "Dropout", "Sequential", "GPT"}:
        return 0
    return n_out  # ReLU (in a Lambda), MaxPool2d, positional encodings, ...


# %% [markdown]
# ## 3. Per-layer time through hooks
#
# The profiler registers on every module a forward **pre-hook** that starts
# a clock and a forward **hook** that stops it (Module 03's seam; the model's
# code is not touched). Modules nest: a `TransformerBlock`'s time includes its
# `LayerNorm`s, its attention and its MLP. To attribute every microsecond
# once, the profiler keeps a **stack** of running modules and computes each
# one's **self time**: its total time minus the total time of the children
# that ran inside it. The self times of all modules add up to the time of the
# whole forward pass (up to the hooks' own cost).
#
# The hook API (Module 03, named as in PyTorch):
#
# | call | the hook is called | returns |
# |---|---|---|
# | `handle = module.register_forward_pre_hook(fn)` | `fn(module, args)` before `forward` (`args`: the tuple of positional arguments) | a handle |
# | `handle = module.register_forward_hook(fn)` | `fn(module, args, output)` after `forward` | a handle |
# | `handle.remove()` | takes that hook off the module | |
#
# A hook that returns `None` changes nothing (the profiler's hooks only
# record); hooks are called only through `module(...)`, not `module.forward(...)`.
#
# ```
# GPT          total 2.0 ms   self 0.1 ms
#   blocks.0   total 0.9 ms   self 0.1 ms   (the residual adds)
#     attn     total 0.5 ms   self 0.3 ms   (split heads, scores, softmax, weighted sum)
#       q_proj total 0.05 ms  self 0.05 ms
#       ...
# ```
#
# ### Task 14.2: `Profiler.run`
#
# `Profiler(model)` is given its bookkeeping. `run(*args)` must:
#
# 1. for every `(name, module)` of `self.model.named_modules()`, register a
#    pre-hook calling `self._start(name, module, args)` and a hook calling
#    `self._stop(name, module, args, output)` (both given: they keep the stack,
#    the self times, the shapes and FLOPs in `self.records`);
# 2. run `self.model(*args)` under `no_grad()`;
# 3. remove every hook, also when the model raises (`try` / `finally`);
# 4. return the model's output.

# %% nbgrader={"grade": false, "grade_id": "profiler_run", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Profiler:
    """Per-layer parameters, bytes, FLOPs and self time of a Module, measured through forward hooks."""

    def __init__(self, model: Module):
        if not isinstance(model, Module):
            raise TypeError(f"Profiler: expected a Module, got {type(model).__name__}")
        self.model = model
        self.records = {}   # name -> {"module", "calls", "self_s", "total_s", "flops", "in_shape", "out_shape", "out_bytes"}
        self._stack = []    # [name, start time, time spent in children]

    def _start(self, name, module, args) -> None:
        """Given: push a clock for this module."""
        self._stack.append([name, time.perf_counter(), 0.0])

    def _stop(self, name, module, args, output) -> None:
        """Given: pop the clock; self time = total - children; credit the total to the parent."""
        _, start, children = self._stack.pop()
        total = time.perf_counter() - start
        if self._stack:
            self._stack[-1][2] += total
        r = self.records.setdefault(name, {"module": module, "calls": 0, "self_s": 0.0, "total_s": 0.0, "flops": 0})
        r["calls"] += 1
        r["self_s"] += total - children
        r["total_s"] += total
        r["flops"] += layer_flops(module, args, output)
        r["in_shape"] = _shape(args[0]) if args else ()
        r["out_shape"] = _shape(output)
        r["out_bytes"] = int(getattr(output, "nbytes", 0))

    def run(self, *args):
        """One forward pass of the model with every module timed; returns the model's output."""
        # Task 14.2: register both hooks on every module; run under no_grad; remove the hooks in finally
        ### BEGIN SOLUTION
        handles = []
        try:
            for name, module in self.model.named_modules():
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, name=name: self._start(name, m, a)))
                handles.append(module.register_forward_hook(
                    lambda m, a, out, name=name: self._stop(name, m, a, out)))
            with no_grad():
                return self.model(*args)
        finally:
            for h in handles:
                h.remove()
            self._stack.clear()
        ### END SOLUTION

    def reset(self) -> None:
        self.records = {}


# %% nbgrader={"grade": true, "grade_id": "test_14_2_profiler_run", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 14.2
from tinytorch_lib.testing import task

with task("14.2", uses={"14.1": "linear_flops"}):
    from tinytorch_lib.activations import ReLU
    from tinytorch_lib.layers import Sequential

    net = Sequential(Linear(8, 16, rng=0), ReLU(), Linear(16, 4, rng=1))
    prof = Profiler(net)
    x = Tensor(np.ones((5, 8), dtype=np.float32))
    out = prof.run(x)
    assert isinstance(out, Tensor) and out.shape == (5, 4), f"run should return the model's output (5, 4), got {getattr(out, 'shape', out)}"
    assert set(prof.records) == {"", "0", "1", "2"}, f"records for the root '' and layers 0, 1, 2 expected, got {sorted(prof.records)}"
    assert prof.records["0"]["flops"] == linear_flops(5, 8, 16) and prof.records["2"]["out_shape"] == (5, 4), \
        f"layer 0: expected {linear_flops(5, 8, 16)} FLOPs, got {prof.records['0']['flops']}; layer 2 output (5, 4), got {prof.records['2'].get('out_shape')}"
    root = prof.records[""]
    parts = sum(r["self_s"] for r in prof.records.values())
    assert abs(parts - root["total_s"]) < 1e-6, f"self times should add up to the root's total time: {parts} vs {fmt(root['total_s'])}"
    assert all(not m._forward_pre_hooks and not m._forward_hooks for _, m in net.named_modules()), "every hook should be removed after run"
    assert not out.requires_grad, "run should not record a graph (no_grad)"


    class Boom(Module):
        def forward(self, x):
            raise RuntimeError("boom")


    broken = Sequential(Linear(8, 16, rng=0), Boom())
    try:
        Profiler(broken).run(x)
    except RuntimeError:
        pass
    else:
        raise AssertionError("a model whose forward raises RuntimeError('boom'): run should let the error through")
    left = [name or "(root)" for name, m in broken.named_modules() if m._forward_pre_hooks or m._forward_hooks]
    assert not left, f"hooks must be removed also when the model raises (try / finally); hooks left on {left}"
print("Task 14.2 visible tests passed")

# %% [markdown]
# ## 4. Latency and throughput, the MLPerf way
#
# MLPerf Inference reports a model under named **scenarios**. Two of them
# fit one machine:
#
# - **SingleStream**: one sample at a time, as a phone answering one user.
#   The metric is the **p90 latency** of one query: 90% of queries are at
#   least this fast.
# - **Offline**: all samples available at once, as a nightly batch job. The
#   metric is **throughput**, samples per second, at whatever batch size
#   runs best.
#
# The two disagree on purpose: batching raises throughput (one big matmul
# uses the hardware better than many small ones) and can make each sample
# wait longer.
#
# ### Task 14.3: `latency` and `throughput`
#
# - `latency(model, sample, repeats=20) -> Timing`: `measure` of one forward
#   pass of `model(sample)` under `no_grad()`, with `repeats` repeats,
#   `warmup=2` and `number=1` (one query per timed call, as SingleStream
#   does).
# - `throughput(model, inputs, batch_size, repeats=5) -> float`: samples per
#   second of running the whole `inputs` (first axis = samples) through the
#   model in batches of `batch_size` (the last may be smaller), under
#   `no_grad()`: `len(inputs) / measure(..., repeats=repeats, number=1).median`.
#   `batch_size < 1` is a `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "latency", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def latency(model: Module, sample, repeats: int = 20):
    """SingleStream: Timing of one forward pass (median, p90, ...)."""
    # Task 14.3
    ### BEGIN SOLUTION
    def one():
        with no_grad():
            model(sample)

    return measure(one, repeats=repeats, warmup=2, number=1)
    ### END SOLUTION


def throughput(model: Module, inputs, batch_size: int, repeats: int = 5) -> float:
    """Offline: samples per second over all `inputs`, in batches of `batch_size`."""
    # Task 14.3
    ### BEGIN SOLUTION
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"throughput: batch_size must be an int >= 1, got {batch_size!r}")
    data = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)

    def everything():
        with no_grad():
            for i in range(0, len(data), batch_size):
                model(Tensor(data[i:i + batch_size]))

    return len(data) / measure(everything, repeats=repeats, warmup=1, number=1).median
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_14_3_latency", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 14.3
from tinytorch_lib.testing import task

with task("14.3"):
    calls = []


    class Counting(Module):
        def forward(self, x):
            calls.append(x.shape)
            return x


    t = latency(Counting(), Tensor(np.ones((1, 3))), repeats=4)
    assert hasattr(t, "median") and hasattr(t, "p90") and t.repeats == 4 and t.number == 1, \
        f"latency(..., repeats=4): expected a Timing of 4 repeats of 1 call, got {t}"
    assert len(calls) == 6, f"2 warm-up calls + 4 timed calls expected, the model was called {len(calls)} times"
    calls.clear()
    rate = throughput(Counting(), np.ones((10, 3), np.float32), batch_size=4, repeats=2)
    assert calls[:3] == [(4, 3), (4, 3), (2, 3)], f"10 samples in batches of 4: expected batch shapes (4, 3), (4, 3), (2, 3), got {calls[:3]}"
    assert isinstance(rate, float) and rate > 0, f"throughput should be a positive float (samples / second), got {rate!r}"
    try:
        throughput(Counting(), np.ones((4, 3)), batch_size=0)
    except ValueError as e:
        assert "batch_size" in str(e), f"batch_size 0: the error should name batch_size, got: {e}"
    else:
        raise AssertionError("throughput with batch_size 0 should raise ValueError")
print("Task 14.3 visible tests passed")

# %% [markdown]
# ## 5. The report (given)
#
# `profile(model, *args, repeats=5)` runs the profiler `repeats` times, and
# returns one row per module that has no children (a leaf) or does work of
# its own (`MultiHeadAttention`'s core, an `MLP`'s GELU, a residual add),
# with: parameters, bytes stored (its own `state_dict` arrays), FLOPs per
# pass, output bytes (activation memory), and median self time per pass.
# `print_report` sorts by time and prints shares; `plot_report` draws the
# bottleneck chart.

# %% tags=["export"]
def count_parameters(model: Module) -> int:
    """Number of trainable values."""
    return int(sum(p.data.size for p in model.parameters()))


def model_bytes(model: Module) -> int:
    """Bytes of every array the model stores (parameters and buffers, its state_dict)."""
    return int(sum(a.nbytes for a in model.state_dict().values()))


def layer_kind(module: Module) -> str:
    """The class name a report shows; a Lambda (Sequential's wrapper of a Module 02 activation) shows its function's."""
    fn = getattr(module, "fn", None) if type(module).__name__ == "Lambda" else None
    return type(fn).__name__ if fn is not None else type(module).__name__


def _own_arrays(module: Module) -> list:
    return [t.data for t in list(module._parameters.values()) + list(module._buffers.values()) if t is not None]


def profile(model: Module, *args, repeats: int = 5) -> list:
    """Rows {name, kind, params, bytes, flops, out_bytes, self_ms, self_p90_ms} per module that does work."""
    runs = []
    for _ in range(repeats):
        prof = Profiler(model)
        prof.run(*args)
        runs.append(prof.records)
    rows = []
    for name, r in runs[0].items():
        module = r["module"]
        own = _own_arrays(module)
        times = np.array([run[name]["self_s"] for run in runs]) * 1e3
        if module._modules and r["flops"] == 0 and not own and np.median(times) < 1e-3:
            continue
        rows.append({"name": name or "(root)", "kind": layer_kind(module),
                     "params": int(sum(p.data.size for p in module._parameters.values() if p is not None)),
                     "bytes": int(sum(a.nbytes for a in own)), "flops": r["flops"] // r["calls"],
                     "out_bytes": r.get("out_bytes", 0), "self_ms": float(np.median(times)),
                     "self_p90_ms": float(np.percentile(times, 90))})
    return rows


def print_report(rows: list, top: int | None = None) -> None:
    """Rows sorted by median self time, with shares of time, FLOPs and bytes."""
    total_t = sum(r["self_ms"] for r in rows) or 1.0
    total_f = sum(r["flops"] for r in rows) or 1
    total_b = sum(r["bytes"] for r in rows) or 1
    print(f"{'layer':<26} {'kind':<20} {'params':>9} {'bytes':>10} {'FLOPs':>13} {'out bytes':>11} "
          f"{'self ms':>8} {'time':>6} {'FLOPs':>6} {'bytes':>6}")
    for r in sorted(rows, key=lambda r: -r["self_ms"])[:top]:
        print(f"{r['name'][:26]:<26} {r['kind'][:20]:<20} {r['params']:>9,} {r['bytes']:>10,} {r['flops']:>13,} "
              f"{r['out_bytes']:>11,} {r['self_ms']:>8.3f} {r['self_ms'] / total_t:>6.1%} "
              f"{r['flops'] / total_f:>6.1%} {r['bytes'] / total_b:>6.1%}")


def plot_report(rows: list, title: str, top: int = 10):
    """Bar chart: share of time and share of bytes for the `top` layers by time."""
    import matplotlib.pyplot as plt

    top_rows = sorted(rows, key=lambda r: -r["self_ms"])[:top]
    total_t = sum(r["self_ms"] for r in rows) or 1.0
    total_b = sum(r["bytes"] for r in rows) or 1
    labels = [f"{r['name']} ({r['kind']})" for r in top_rows][::-1]
    y = np.arange(len(top_rows))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top_rows) + 1.2))
    ax.barh(y + 0.2, [r["self_ms"] / total_t * 100 for r in top_rows][::-1], height=0.4, label="share of time")
    ax.barh(y - 0.2, [r["bytes"] / total_b * 100 for r in top_rows][::-1], height=0.4, label="share of bytes stored")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("% of the model's total")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

# %% [markdown]
# ## 6. Systems analysis: profiling your trained models
#
# ### The digit MLP and CNN
#
# Your trained models, one batch of 32 held-out images, median over 5
# profiled passes (one BLAS thread):

# %%
import os

import matplotlib.pyplot as plt

from tinytorch_lib import data_dir
from tinytorch_lib.dataloader import load_digits
from tinytorch_lib.timing import blas_threads
from tinytorch_lib.training import load_model

grading = bool(os.environ.get("NBGRADER_EXECUTION"))
models = {}
with blas_threads(1):
    for name, flatten in (("mlp", True), ("cnn", False)):
        model, _ = load_model(data_dir(f"{name}_digits.npz") / f"{name}_digits.npz")
        x = load_digits("test", flatten=flatten).tensors[0]
        models[name] = (model, x)
        rows = profile(model, Tensor(x.data[:32]), repeats=5)
        # Activations: each layer's output once. The root's output is its last layer's output (one array),
        # so only modules without children count.
        leaves = {n for n, m in model.named_modules() if not m._modules}
        print(f"\n{name.upper()}: {count_parameters(model):,} parameters, {model_bytes(model):,} bytes stored; "
              f"activations of one pass of 32 images (every layer's output, once): "
              f"{sum(r['out_bytes'] for r in rows if r['name'] in leaves):,} bytes")
        print_report(rows)
        single = latency(model, Tensor(x.data[:1]), repeats=10 if grading else 50)
        print(f"SingleStream (1 image): median {single.median * 1e3:.3f} ms, p90 {single.p90 * 1e3:.3f} ms")
        for bs in (1, 32, 360):
            print(f"Offline, batch {bs:>3}: {throughput(model, x.data, bs, repeats=2 if grading else 5):>10,.0f} images/s")
        plot_report(rows, f"{name.upper()}: where time and bytes go (batch 32)")
        plt.show()

# %% [markdown]
# What to read in these tables:
#
# - **Bytes** sit in the `Linear` layers (and the conv filters, far fewer):
#   that is what Module 15 quantizes and Module 16 prunes.
# - **Time** does not follow FLOPs. Compare the CNN's convolution and its
#   `Linear` in the time and FLOPs columns: Module 09's convolution loops over
#   kernel offsets in Python and runs one einsum per offset, where a `Linear`
#   is a single BLAS call, so a convolution FLOP costs far more time. Module
#   17 rewrites it.
# - **Offline vs SingleStream**: from batch 1 to batch 32 the throughput
#   rises many times over, because per-call overhead (Python, numpy
#   dispatch) is paid once per batch instead of once per image. Past a few
#   dozen images the gain can flatten or even reverse (larger arrays, more
#   memory traffic per call); the lines above show which on this machine.
# - **The root's self time** (`(root)`, the `Sequential`) is mostly the
#   hooks' own cost and the loop over children; the last cell measures it.
#
# ### The GPT: attention's share grows with the sequence
#
# One forward pass of your trained GPT at several sequence lengths (a
# generation step without a cache runs exactly this). The profiler splits the
# time between the projections and MLPs (`Linear`, work per position, `O(n)`)
# and the attention core (`MultiHeadAttention`'s self time: scores and
# weighted sums, `O(n^2)`).

# %%
from tinytorch_lib.tokenization import load_corpus
from tinytorch_lib.transformer import load_gpt

gpt, tok, _ = load_gpt()
ids = tok.encode(load_corpus("val")[:1024])
lengths = [32, 64, 128] if grading else [32, 128, 256, 512, 1024]
shares = []
with blas_threads(1):
    for n in lengths:
        rows = profile(gpt, ids[None, :n], repeats=2 if grading else 3)
        total = sum(r["self_ms"] for r in rows)
        attn = sum(r["self_ms"] for r in rows if r["kind"] == "MultiHeadAttention")
        lin = sum(r["self_ms"] for r in rows if r["kind"] == "Linear")
        attn_f = sum(r["flops"] for r in rows if r["kind"] == "MultiHeadAttention")
        shares.append((n, total, attn / total, lin / total, attn_f / sum(r["flops"] for r in rows)))
        print(f"n = {n:5d}: forward {total:8.2f} ms; attention core {attn / total:6.1%} of time "
              f"({attn_f / sum(r['flops'] for r in rows):5.1%} of FLOPs); Linear layers {lin / total:6.1%}")

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot([s[0] for s in shares], [s[2] * 100 for s in shares], marker="o", label="attention core, % of time")
ax.plot([s[0] for s in shares], [s[4] * 100 for s in shares], marker="s", label="attention core, % of FLOPs")
ax.plot([s[0] for s in shares], [s[3] * 100 for s in shares], marker="^", label="Linear layers, % of time")
ax.set_xscale("log", base=2)
ax.set_xlabel("sequence length n (tokens)")
ax.set_ylabel("% of one forward pass")
ax.set_title("GPT: attention's share grows with the sequence")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The Linear layers' work grows like `n` (every position through the same
# matrices), the attention core's like `n^2` (every position against every
# earlier one), so past some length attention takes over: the measured
# shares show where on this machine. That is the work a KV cache (Module
# 18) stops repeating during generation, and the reason long-context models
# need cheaper attention.
#
# ### What profiling costs
#
# The hooks themselves take time (Module 03 measured about a microsecond per
# hook call). Compare one forward pass with and without the profiler:

# %%
mlp, mlp_x = models["mlp"]
batch = Tensor(mlp_x.data[:32])
with no_grad():
    plain = measure(lambda: mlp(batch), repeats=7)
profiled = measure(lambda: Profiler(mlp).run(batch), repeats=7)
print(f"MLP, batch 32: plain {plain}; profiled {profiled}; "
      f"the profiler adds {(profiled.median - plain.median) * 1e6:.0f} us per pass ({profiled.median / plain.median:.1f}x)")

# %% [markdown]
# On a model whose layers each take microseconds, the profiler's overhead is
# of the same size as the work: use its per-layer times for shares and
# rankings, and `latency` (no hooks) for absolute numbers.
#
# ## Summary
#
# - One timer for the course: warm-up, repeats, median and p90, BLAS threads
#   fixed.
# - FLOPs from formulas, checked against hand counts; time from hooks, as
#   self time per module so that everything is counted once.
# - SingleStream p90 latency and Offline throughput answer different
#   questions; batching trades the first for the second.
# - Measured here: bytes live in the Linear layers, time in the convolution
#   (CNN) and, as sequences grow, in attention (GPT). Modules 15-18 attack
#   exactly these.
#
# Next: `tito module export 14`.
