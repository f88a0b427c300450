"""Module 14's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import Plain, StudentError, check


# tito/check_runner.py's encode sends arrays through np.ascontiguousarray, which makes a 0-d array 1-d and a numpy
# scalar not data at all (SandboxError "a scalar must be a 0-d array"), so a student's np.int64 where an int was
# expected would stop a check with a confusing message. Plain(s) is s whose value() answers with numpy scalars
# turned into Python numbers (inside lists, tuples and dicts too) by plain_, defined in the check's sandbox scope.


def linear(n, i, o, bias=True):
    return 2 * n * i * o + (n * o if bias else 0)


def conv(b, ci, co, kh, kw, h, w, bias=True):
    return 2 * b * co * h * w * ci * kh * kw + (b * co * h * w if bias else 0)


def attention(b, h, sq, sk, d):
    return 4 * b * h * sq * sk * d + 5 * b * h * sq * sk


def int_result(s, call: str):
    """(type name, value) of `call`, so that a float or numpy int is reported as such."""
    return s.value(f"(lambda v: (type(v).__name__, v if isinstance(v, (int, float)) else repr(v)))({call})")


@check("test_14_1_flops")
def flops(s):
    s = Plain(s)
    cases = [
        ("linear_flops(32, 64, 128)", linear(32, 64, 128), "2*32*64*128 + 32*128 = 528,384"),
        ("linear_flops(32, 64, 128, bias=False)", linear(32, 64, 128, False), "2*32*64*128 = 524,288"),
        ("conv2d_flops(1, 1, 16, 3, 3, 8, 8)", conv(1, 1, 16, 3, 3, 8, 8), "2*16*64*9 + 16*64 = 19,456"),
        ("attention_flops(1, 4, 10, 10, 32)", attention(1, 4, 10, 10, 32), "2*400*32 + 5*400 + 2*400*32 = 53,200"),
        ("conv2d_flops(2, 3, 5, 2, 4, 6, 7, bias=False)", conv(2, 3, 5, 2, 4, 6, 7, False),
         "2 * B * c_out * H' * W' * c_in * kh * kw, no bias"),
        ("attention_flops(2, 3, 1, 50, 8)", attention(2, 3, 1, 50, 8), "one query against 50 keys (a cached step)"),
        ("linear_flops(0, 5, 5)", 0, "zero rows: 0 FLOPs"),
        ("linear_flops(3, 7, 5, bias=False)", linear(3, 7, 5, False), "2*3*7*5 = 210"),
        ("conv2d_flops(4, 2, 3, 5, 5, 10, 12)", conv(4, 2, 3, 5, 5, 10, 12), "with the bias adds"),
    ]
    for call, want, how in cases:
        kind, got = int_result(s, call)
        assert kind == "int" and got == want, f"{call}: expected {want:,} ({how}), an int; got {got!r} ({fmt(kind)})"
    s.expect_error("linear_flops(-1, 2, 3)", "linear_flops(-1, 2, 3) (a negative n_rows)", ("n_rows",))
    s.expect_error("conv2d_flops(1, 1, 1, 1, 1, 1, -2)", "conv2d_flops(1, 1, 1, 1, 1, 1, -2) (a negative w_out)")
    s.expect_error("attention_flops(1, 1, 1, 1, 2.0)", "attention_flops(1, 1, 1, 1, 2.0) (a float head_dim)")


RECORDS = """{name: {k: (tuple(v) if k.endswith('_shape') else v) for k, v in r.items() if k != 'module'}
              for name, r in {prof}.records.items()}"""

NET = """
from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Sequential
net = Sequential(Linear(8, 16, rng=0), ReLU(), Linear(16, 4, rng=1))
x = Tensor(np.ones((5, 8), dtype=np.float32))
"""


def hooks_left(s, model: str) -> list:
    return s.value(f"[n for n, m in {model}.named_modules() if m._forward_pre_hooks or m._forward_hooks]")


@check("test_14_2_profiler_run")
def profiler_run(s):
    s = Plain(s)
    s.run(NET)
    try:
        got = s.value("linear_flops(5, 8, 16)")
    except StudentError as e:
        got = e
        own = s.raises("Profiler(net).run(x)")
        if own is not None and "14.2" in own.message:
            raise own  # Task 14.2 itself is not done yet: say that first
    assert got == linear(5, 8, 16), (f"Task 14.2's records count FLOPs with linear_flops from Task 14.1, and "
                                     f"linear_flops(5, 8, 16) did not return {linear(5, 8, 16)} ({got!r}): "
                                     f"make Task 14.1's tests pass first")
    want = s.value("net(x).data")
    s.run("prof = Profiler(net); out = prof.run(x)")
    records = s.value(RECORDS.replace("{prof}", "prof"))
    kind, shape, grad = s.value("(type(out).__name__, getattr(out, 'shape', None), getattr(out, 'requires_grad', None))")
    assert kind == "Tensor" and shape == (5, 4), f"run should return the model's output, a (5, 4) Tensor; got {fmt(kind)} {shape}"
    assert np.allclose(s.value("out.data"), want), "run should return the model's output for x, unchanged"
    assert set(records) == {"", "0", "1", "2"}, \
        f"Sequential(Linear, ReLU, Linear): records for the root '' and layers 0, 1, 2 expected, got {sorted(records)}"
    assert records["0"]["flops"] == linear(5, 8, 16), \
        f"layer 0, Linear(8, 16) on 5 rows: expected {fmt(linear(5, 8, 16))} FLOPs, got {records['0']['flops']}"
    assert records["2"]["out_shape"] == (5, 4), f"layer 2 output: expected (5, 4), got {records['2'].get('out_shape')}"
    assert all(r["calls"] == 1 for r in records.values()), \
        f"one run: every module called once, got calls {({n: r['calls'] for n, r in records.items()})}"
    parts = sum(r["self_s"] for r in records.values())
    assert abs(parts - records[""]["total_s"]) < 1e-6, \
        f"self times should add up to the root's total time: {parts} vs {records['']['total_s']}"
    assert not hooks_left(s, "net"), f"every hook should be removed after run; left on {fmt(hooks_left(s, 'net'))}"
    assert grad is False, f"run should not record a graph (no_grad): out.requires_grad is {fmt(grad)}"
    # the model raises: hooks still removed, the error reaches the caller
    s.run("""
class Boom(Module):
    def forward(self, x):
        raise RuntimeError("boom")

bad = Sequential(Linear(2, 2, rng=0), Boom())
""")
    error = s.raises("Profiler(bad).run(Tensor(np.ones((1, 2), np.float32)))")
    assert error is not None and error.type == "RuntimeError", \
        f"a model whose forward raises RuntimeError: run should let it through, got {error.said if error else 'nothing raised'}"
    left = hooks_left(s, "bad")
    assert not left, f"hooks must be removed also when the model raises (try / finally); left on modules {left}"
    # two runs accumulate
    s.run("p2 = Profiler(net); p2.run(x); p2.run(x)")
    records = s.value(RECORDS.replace("{prof}", "p2"))
    assert records.get("0", {}).get("calls") == 2 and records["0"]["flops"] == 2 * linear(5, 8, 16), \
        f"two runs of one Profiler should accumulate calls and FLOPs: layer 0 expected 2 calls, {fmt(2 * linear(5, 8, 16))} FLOPs, got {records.get('0')}"
    assert records["0"]["self_s"] <= records["0"]["total_s"] + 1e-12 and records[""]["self_s"] < records[""]["total_s"], \
        "a leaf's self time equals its total; the root's self time excludes its children"
    # a second model, nested: every module of named_modules gets hooks
    s.run("""
deep = Sequential(Sequential(Linear(3, 6, rng=2), ReLU()), Linear(6, 2, rng=3))
pd = Profiler(deep); od = pd.run(Tensor(np.ones((7, 3), np.float32)))
""")
    records = s.value(RECORDS.replace("{prof}", "pd"))
    assert set(records) == {"", "0", "0.0", "0.1", "1"}, \
        f"nested Sequential: records for '', '0', '0.0', '0.1', '1' expected (every module of named_modules), got {sorted(records)}"
    assert records["0.0"]["flops"] == linear(7, 3, 6) and records["1"]["out_shape"] == (7, 2), \
        f"nested Sequential: layer 0.0 expected {fmt(linear(7, 3, 6))} FLOPs, got {records['0.0']['flops']}"
    assert not hooks_left(s, "deep"), "every hook should be removed after run (nested model)"


COUNTING = """
calls = []

class Counting(Module):
    def forward(self, x):
        calls.append(tuple(x.shape))
        return x
"""


@check("test_14_3_latency")
def latency_(s):
    s = Plain(s)
    s.run(COUNTING)
    s.run("t = latency(Counting(), Tensor(np.ones((1, 3))), repeats=4)")
    fields = s.value("(hasattr(t, 'median') and hasattr(t, 'p90'), getattr(t, 'repeats', None), getattr(t, 'number', None))")
    assert fields == (True, 4, 1), \
        f"latency(..., repeats=4): expected a Timing of 4 repeats of 1 call (median, p90, repeats, number), got {fmt(s.value('str(t)'))}"
    n = s.value("len(calls)")
    assert n == 6, f"latency(..., repeats=4): 2 warm-up calls + 4 timed calls expected, the model was called {n} times"
    s.run("calls.clear(); t = latency(Counting(), Tensor(np.ones((1, 3))), repeats=3)")
    n, reps = s.value("(len(calls), t.repeats)")
    assert (n, reps) == (5, 3), f"latency(..., repeats=3): expected 3 repeats and 2 + 3 = 5 calls, got {fmt(reps)} repeats, {n} calls"
    s.run("calls.clear(); rate = throughput(Counting(), np.ones((10, 3), np.float32), batch_size=4, repeats=2)")
    calls, kind, rate = s.value("(calls, type(rate).__name__, rate if isinstance(rate, (int, float)) else None)")
    assert calls[:3] == [(4, 3), (4, 3), (2, 3)], \
        f"10 samples in batches of 4: expected batch shapes (4, 3), (4, 3), (2, 3), got {calls[:3]}"
    assert kind == "float" and rate > 0, f"throughput should be a positive float (samples / second), got {rate!r} ({fmt(kind)})"
    assert len(calls) == 9, f"10 samples in batches of 4, warmup 1 + 2 repeats: expected 3 x 3 = 9 calls, got {len(calls)}"
    s.expect_error("throughput(Counting(), np.ones((4, 3)), batch_size=0)", "throughput with batch_size 0", ("batch_size",))
    s.run("calls.clear(); throughput(Counting(), Tensor(np.ones((3, 2), np.float32)), batch_size=8, repeats=1)")
    calls = s.value("calls")
    assert calls[:1] == [(3, 2)], f"a Tensor of 3 samples, batch_size 8 (larger than the data): one batch of all 3 samples, got {calls[:1]}"
    assert len(calls) == 2, f"warmup 1 + 1 repeat of one batch: expected 2 calls, got {len(calls)}"
