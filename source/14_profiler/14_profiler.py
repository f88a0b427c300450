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
import numpy as np

from tinytorch_lib.layers import Linear, Module
from tinytorch_lib.spatial import Conv2d
from tinytorch_lib.tensor import Tensor, no_grad
from tinytorch_lib.timing import cpu_clock, measure

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
# Every time this course prints comes from `tinytorch_lib.timing`
# (hand-written, not exported from a notebook). Each of its rules answers a
# way a naive `time.time()` around one call misleads:
#
# - **CPU time, not wall time.** A wall clock counts every moment between
#   start and stop, including the moments the operating system gave this
#   core to another program (a browser, a video call, the other students on
#   a shared hub). The process's CPU time (`time.process_time`) counts only
#   the moments our code ran. `measure` reports CPU time and keeps wall time
#   beside it (`wall_median`); `Timing.noisy` says when the two disagree.
# - **One BLAS thread** (threadpoolctl): numpy's matmul runs on a pool of
#   threads. On a busy machine one thread waits for another that is not
#   running, and a waiting BLAS thread spins: that spinning is CPU time too,
#   so a multi-threaded figure measures the machine's load, not the matmul.
#   Every result says how many threads it used.
# - **Comparisons in turns** (`compare`): the sides run A B A B ..., so a
#   burst of load hits both, and each ratio is taken from two neighbouring
#   repeats. A ratio prints as `9.2x (8.7-9.6)`: the median of the paired
#   ratios and their p10-p90 range.
# - **Warm-up calls** first (page faults, caches, lazy imports); **several
#   calls per repeat** (`number`, grown until one repeat lasts at least 2 ms)
#   so the clock's own cost does not dominate a call of microseconds;
#   **median and p90** of the repeats, so one interrupted repeat does not move
#   the figure and the p90 shows how much the figures moved.
#
# ```
# t = measure(lambda: model(x))        # Timing: median, p90 (CPU seconds), wall_median, threads, noisy
# print(t)                             # '1.23 ms (p90 1.31 ms, 7 x 100 calls, 1 BLAS thread)'
# c = compare({"slow": f, "fast": g})  # in turns
# print(c.ratio("slow", "fast"))       # '9.2x (8.7-9.6)'
# ```
#
# The cell below measures these rules on this machine: one 128x128 matmul at
# one and at two BLAS threads, first as the machine is, then while busy
# processes (one per core, started and stopped by the cell itself) compete
# for the cores; and a 128x128 against a 64x64 matmul timed in turns, in both
# conditions. (Under autograding the cell does not start the busy processes:
# it shows both clocks as the grader's machine is.)

# %%
import os
import subprocess
import sys

from tinytorch_lib.timing import compare, format_seconds, grading

mat = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32)
small = mat[:64, :64].copy()


def clocks_demo():
    one, two = measure(lambda: mat @ mat), measure(lambda: mat @ mat, threads=2)
    pair = compare({"128": lambda: mat @ mat, "64": lambda: small @ small})
    return one, two, pair


conditions = {"as the machine is": clocks_demo()}
if not grading():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        conditions[f"{len(busy)} busy processes"] = clocks_demo()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
print(f"{'condition':<20} {'BLAS threads':>12} {'CPU median':>11} {'wall median':>12} {'wall / CPU':>11}")
for cond, (one, two, pair) in conditions.items():
    for t in (one, two):
        print(f"{cond:<20} {t.threads:>12} {format_seconds(t.median):>11} {format_seconds(t.wall_median):>12} "
              f"{t.wall_median / t.median:>10.1f}x")
for cond, (one, two, pair) in conditions.items():
    print(f"{cond}: 2 BLAS threads cost {two.median / one.median:.3g}x the CPU time of 1; "
          f"128x128 / 64x64 in turns: {pair.ratio('128', '64')}")
    if one.noisy:
        print(f"  noisy flag, 1 thread: {one.noisy}")
if len(conditions) == 2:
    (q1, _, _), (b1, _, _) = conditions.values()
    print(f"in this run the busy processes moved the wall median {b1.wall_median / q1.wall_median:.2g}x "
          f"and the CPU median {b1.median / q1.median:.2g}x")

# %% [markdown]
# Read the wall column against the CPU column: the wall time moves with
# whatever else runs, the CPU time much less (it still moves a little: the
# other programs also evict our data from the shared caches). The two-thread
# rows show why the course holds BLAS at one thread: on a busy machine their
# CPU time counts threads waiting for each other. And the ratio of the two
# matmuls, timed in turns, comes out about the same in both conditions,
# because each pair of repeats saw the same machine. When `noisy` is set, a
# CPU-time figure and a ratio still hold; a wall time does not.
#
# A profiler adds per-layer timing on top: it cannot time each layer with
# `measure` separately (a layer's input comes from the layer before), so it
# times one whole forward pass at a time with clocks started and stopped by
# hooks, repeats that pass, and takes each layer's median. Its clocks read
# CPU time too (`timing.cpu_clock`), for the same reason: a wall clock
# charges a layer for every moment the machine ran something else while
# that layer was running, and on a busy machine that moves a layer's share
# of a pass from a few percent to most of it, one pass to the next.
# Reading the CPU clock costs more than reading the wall clock (a system
# call), and the hooks read it four times per module per pass; that is part
# of the bookkeeping the profiler takes out of the layers' times (Section 3).

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
# that ran inside it. The self times of all modules add up to the root's
# total time.
#
# The hooks' own bookkeeping (pushing and popping the stack, counting FLOPs,
# recording shapes) takes time too, and it runs while the parent's clock is
# running. Left in, it would be charged to the parents, most of all to the
# root. So `_start` and `_stop` time themselves and take that time out of
# every module's total: it is kept apart in `overhead_s`, beside
# `hook_calls`. What the profiler cannot time from inside (Module 03's
# `__call__` looping over the hooks and calling them) stays in the parents'
# self times; the last section measures both parts.
#
# The arithmetic of self time, with made-up round figures:
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
        self._stack = []    # [name, start time, children's total time, hook time inside this module]
        self.overhead_s = 0.0   # time spent inside _start and _stop: measured, and charged to no module
        self.hook_calls = 0

    def _start(self, name, module, args) -> None:
        """Given: push a clock for this module. The time this bookkeeping takes is charged to no module."""
        entered = cpu_clock()
        parent = self._stack[-1] if self._stack else None
        entry = [name, 0.0, 0.0, 0.0]
        self._stack.append(entry)
        entry[1] = started = cpu_clock()
        self._hook_time(started - entered, parent)

    def _stop(self, name, module, args, output) -> None:
        """Given: pop the clock; total = elapsed - hook time inside; self time = total - children;
        credit the total to the parent. The bookkeeping is timed and charged to no module."""
        entered = cpu_clock()
        _, start, children, hooks_inside = self._stack.pop()
        total = entered - start - hooks_inside
        r = self.records.setdefault(name, {"module": module, "calls": 0, "self_s": 0.0, "total_s": 0.0, "flops": 0})
        r["calls"] += 1
        r["self_s"] += max(total - children, 0.0)
        r["total_s"] += total
        r["flops"] += layer_flops(module, args, output)
        r["in_shape"] = _shape(args[0]) if args else ()
        r["out_shape"] = _shape(output)
        r["out_bytes"] = int(getattr(output, "nbytes", 0))
        parent = self._stack[-1] if self._stack else None
        if parent:
            parent[2] += total
            parent[3] += hooks_inside
        self._hook_time(cpu_clock() - entered, parent)

    def _hook_time(self, seconds: float, parent) -> None:
        """Given: count one hook's bookkeeping as overhead, and take it out of the parent's time."""
        self.overhead_s += seconds
        self.hook_calls += 1
        if parent:
            parent[3] += seconds

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
        self.overhead_s = 0.0
        self.hook_calls = 0


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

    from tinytorch_lib.plotting import place_legend

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
    fig.tight_layout()
    place_legend(ax)
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
#   rises, because per-call overhead (Python, numpy dispatch) is paid once
#   per batch instead of once per image. Past a few dozen images the gain can
#   flatten or even reverse (larger arrays, more memory traffic per call);
#   the lines above show by how much on this machine.
# - **The root's self time** (`(root)`, the `Sequential`) is its loop over
#   the children and Module 03's hook dispatch for each of them; the
#   profiler's own bookkeeping is not in it (it is in `overhead_s`). The last
#   cell measures both.
#
# ### The GPT: attention's share against the sequence length
#
# One forward pass of your trained GPT at several sequence lengths (a
# generation step without a cache runs exactly this). The profiler splits the
# time between the projections and MLPs (`Linear`, work per position, `O(n)`)
# and the attention core (`MultiHeadAttention`'s self time: scores and
# weighted sums, `O(n^2)`). The FLOPs shares are counts: the attention
# core's share of the FLOPs grows with `n` on any machine. The time shares
# are measured, pass by pass: each line prints the median share over the
# profiled passes and the lowest and highest pass.

# %%
from tinytorch_lib.tokenization import load_corpus
from tinytorch_lib.transformer import load_gpt

gpt, tok, _ = load_gpt()
ids = tok.encode(load_corpus("val")[:1024])
lengths = [32, 64, 128] if grading else [32, 128, 256, 512, 1024]
shares = []


def pass_shares(model, x):
    """One profiled pass: (total s, attention core's share of time, Linear layers' share, attention's share of FLOPs)."""
    prof = Profiler(model)
    prof.run(x)
    rec = prof.records.values()
    total = prof.records[""]["total_s"]
    kind = lambda names: [r for r in rec if type(r["module"]).__name__ in names]
    flops = sum(r["flops"] for r in rec if not r["module"]._modules) + sum(
        r["flops"] for r in kind(("MultiHeadAttention",)))
    return (total, sum(r["self_s"] for r in kind(("MultiHeadAttention",))) / total,
            sum(r["self_s"] for r in kind(("Linear",))) / total,
            sum(r["flops"] for r in kind(("MultiHeadAttention",))) / flops)


with blas_threads(1):
    for n in lengths:
        x = ids[None, :n]
        pass_shares(gpt, x)  # warm-up
        runs = np.array([pass_shares(gpt, x) for _ in range(3 if grading else 5)])
        total, attn, lin, attn_f = np.median(runs, axis=0)
        shares.append((n, total * 1e3, attn, lin, attn_f))
        print(f"n = {n:5d}: forward {total * 1e3:8.2f} ms; attention core {attn:6.1%} of time "
              f"({runs[:, 1].min():.0%}-{runs[:, 1].max():.0%}), {attn_f:5.1%} of FLOPs; "
              f"Linear layers {lin:6.1%} ({runs[:, 2].min():.0%}-{runs[:, 2].max():.0%})")
print(f"in this run, from n = {lengths[0]} to n = {lengths[-1]} the attention core's share of the time went from "
      f"{shares[0][2]:.0%} to {shares[-1][2]:.0%}, of the FLOPs from {shares[0][4]:.0%} to {shares[-1][4]:.0%}")

from tinytorch_lib.plotting import log_axis, place_legend  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot([s[0] for s in shares], [s[2] * 100 for s in shares], marker="o", label="attention core, % of time")
ax.plot([s[0] for s in shares], [s[4] * 100 for s in shares], marker="s", label="attention core, % of FLOPs")
ax.plot([s[0] for s in shares], [s[3] * 100 for s in shares], marker="^", label="Linear layers, % of time")
ax.plot([s[0] for s in shares], [(1 - s[2] - s[3]) * 100 for s in shares], marker="v", color="gray",
        label="rest, % of time: LayerNorm, GELU,\nresidual adds, embeddings")
log_axis(ax, "x", "count", ticks=[s[0] for s in shares], base=2)
ax.set_ylim(0, 100)
ax.set_xlabel("sequence length n (tokens, log scale)")
ax.set_ylabel("% of one forward pass")
ax.set_title("GPT: attention's share of one forward pass by sequence length")
plt.tight_layout()
place_legend(ax)
plt.show()

# %% [markdown]
# The Linear layers' work grows like `n` (every position through the same
# matrices), the attention core's like `n^2` (every position against every
# earlier one), so its share of the FLOPs grows with `n` on any machine.
# Its share of the time need not follow step by step: at short lengths each
# of its numpy calls is mostly fixed cost, and a share also moves with
# everything else in the pass, so it can dip before it climbs. At the longest
# lengths the `n^2` work dominates; the lines above say what this run
# measured. That is the work a KV cache (Module 18) stops repeating during
# generation, and the reason long-context models need cheaper attention.
#
# ### What profiling costs
#
# The hooks themselves take time. One forward pass of the MLP with and
# without the profiler, timed in turns; the profiler also says how much of
# that it measured in its own bookkeeping (`overhead_s`, charged to no
# module). The rest is Module 03's hook dispatch and the clock reads, which
# land in the parents' self times, and the root's self time is printed
# beside it.

# %%
mlp, mlp_x = models["mlp"]
batch = Tensor(mlp_x.data[:32])


def plain_pass():
    with no_grad():
        mlp(batch)


probe = Profiler(mlp)
with_without = compare({"plain": plain_pass, "profiled": lambda: probe.run(batch)})
plain, profiled = with_without["plain"], with_without["profiled"]
probe.reset()
passes = 20
for _ in range(passes):
    probe.run(batch)
added = profiled.median - plain.median
bookkeeping = probe.overhead_s / passes
root_share = probe.records[""]["self_s"] / probe.records[""]["total_s"]
print(f"MLP, batch 32: plain {plain}; profiled {profiled}")
print(f"in this run the profiler adds {format_seconds(added)} per pass: "
      f"{with_without.ratio('profiled', 'plain')} the plain pass")
print(f"its bookkeeping, timed inside the hooks (CPU time, charged to no module): {format_seconds(bookkeeping)} per pass, "
      f"{probe.hook_calls // passes} hook calls, {format_seconds(probe.overhead_s / probe.hook_calls)} per call")
print(f"the other {format_seconds(added - bookkeeping)} per pass (hook dispatch, clock reads) stay in the modules' "
      f"self times; the root's self time is {root_share:.0%} of the time charged to modules")
if with_without.noisy:
    print(with_without.noisy)

# %% [markdown]
# On a model whose layers each take microseconds, the profiler's overhead is
# of the same size as the work. Its bookkeeping is taken out of the layers'
# times, but the hook dispatch it cannot time stays in the parents: use its
# per-layer times for shares and rankings of layers that do real work, and
# `latency` (no hooks) for absolute numbers.
#
# ## Summary
#
# - One timer for the course: CPU time (wall time beside it), one BLAS
#   thread, comparisons in turns, warm-up, repeats, median and p90; measured
#   above with and without other programs competing for the cores.
# - FLOPs from formulas, checked against hand counts; time from hooks, as
#   self time per module so that everything is counted once.
# - SingleStream p90 latency and Offline throughput answer different
#   questions; batching trades the first for the second.
# - Measured here: bytes live in the Linear layers, time in the convolution
#   (CNN) and, as sequences grow, in attention (GPT). Modules 15-18 attack
#   exactly these.
#
# Next: `tito module export 14`.
