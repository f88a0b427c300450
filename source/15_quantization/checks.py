"""Module 15's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here (the reference formulas below run only here).
"""
from functools import partial

import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check, requires as shared_requires, task_first


# ---- the reference formulas, here in the grader -------------------------------------------------

def ref_params(lo, hi, bits=8, symmetric=True):
    lo, hi = np.minimum(np.asarray(lo, np.float64), 0.0), np.maximum(np.asarray(hi, np.float64), 0.0)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if symmetric:
        scale, zp = np.maximum(-lo, hi) / qmax, np.zeros(lo.shape)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zp = np.clip(np.round(qmin - lo / np.where(scale > 0, scale, 1.0)), qmin, qmax)
    scale = scale.astype(np.float32)
    return np.where(scale == 0, np.float32(1), scale).astype(np.float32), np.where(scale == 0, 0, zp).astype(np.int32)


def along(v, axis, ndim):
    v = np.asarray(v)
    if axis is None or v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def ref_quantize(x, bits=8, symmetric=True, axis=None):
    x = np.asarray(x, np.float32)
    if axis is None:
        lo, hi = x.min(), x.max()
    else:
        others = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        lo, hi = x.min(axis=others), x.max(axis=others)
    scale, zp = ref_params(lo, hi, bits, symmetric)
    a = None if axis is None else axis % x.ndim
    q = np.clip(np.round(x / along(scale, a, x.ndim)) + along(zp, a, x.ndim), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return q.astype(np.int8), scale, zp


def ref_qlinear(x, w_q, w_scale, s_x, z_x, bias):
    q_x = np.clip(np.round(x / s_x) + z_x, -128, 127).astype(np.int64)
    y = ((q_x - z_x) @ w_q.T.astype(np.int64)) * (s_x * w_scale)
    return y + bias if bias is not None else y


# tito/check_runner.py's encode sends arrays through np.ascontiguousarray, which makes a 0-d array 1-d and a
# numpy scalar not data at all ("a scalar must be a 0-d array"); a 0-d result (quantization_params of numbers,
# the scale of a per-tensor quantize_tensor) is therefore fetched as (tolist(), shape, dtype) and rebuilt here.
ARRAYS = "[(lambda a: (a.tolist(), tuple(a.shape), a.dtype))(np.asarray(v)) for v in ({expr})]"


def arrays(s, expr: str, **inputs) -> tuple:
    """The arrays of the tuple `expr` evaluates to, 0-d ones included, exactly (values, shape, dtype)."""
    got = s.value(ARRAYS.format(expr=expr), **inputs)
    return tuple(np.asarray(v, dtype=dtype).reshape(shape) for v, shape, dtype in got)


def wrap(a: np.ndarray) -> tuple:
    """An array (0-d included) as an input: (values, dtype), rebuilt in the sandbox by A (defined by UNWRAP)."""
    return np.asarray(a).tolist(), np.asarray(a).dtype


UNWRAP = "A = lambda p: np.asarray(p[0], dtype=p[1])"


def r4(a, digits=4) -> list:
    return np.round(np.asarray(a, np.float64), digits).tolist()


def _brief(v) -> str:
    if isinstance(v, np.ndarray):
        return f"got an array of shape {v.shape}, first values {r4(v.ravel()[:4])}"
    text = f"got {v!r}" if not isinstance(v, StudentError) else f"it raised {v.said}"
    return text if len(text) < 300 or isinstance(v, StudentError) else text[:300] + " ..."  # said keeps `at`


# The dependency hint words what came back with _brief.
requires = partial(shared_requires, describe=_brief)


# ---- Task 15.1 ---------------------------------------------------------------------------------

PARAMS = "quantization_params({args})"


@check("test_15_1_params")
def params(s):
    cases = [
        ("-1.0, 3.0, symmetric=False", dict(lo=-1.0, hi=3.0, symmetric=False), "affine 8-bit [-1, 3]: scale 4/255, zero_point -64"),
        ("-0.5, 2.54", dict(lo=-0.5, hi=2.54), "symmetric 8-bit [-0.5, 2.54]: scale 2.54 / 127 = 0.02, zero_point 0"),
        ("np.array([-1.0, 0.0, -4.0]), np.array([1.0, 0.0, 2.0])",
         dict(lo=np.array([-1.0, 0.0, -4.0]), hi=np.array([1.0, 0.0, 2.0])),
         "per-channel symmetric ranges [-1, 1], [0, 0], [-4, 2]: scales [1/127, 1 (width 0), 4/127]"),
        ("0.5, 2.0, symmetric=False", dict(lo=0.5, hi=2.0, symmetric=False), "affine [0.5, 2] widened to [0, 2]: scale 2/255, zero_point -128"),
        ("-1.0, 1.0, bits=4", dict(lo=-1.0, hi=1.0, bits=4), "symmetric 4-bit [-1, 1]: scale 1/7"),
        ("-3.0, -1.0, bits=4, symmetric=False", dict(lo=-3.0, hi=-1.0, bits=4, symmetric=False),
         "affine 4-bit [-3, -1] widened to [-3, 0]: scale 0.2, zero_point 7"),
        ("0.0, 0.0, symmetric=False", dict(lo=0.0, hi=0.0, symmetric=False), "range [0, 0]: scale 1, zero_point 0, shape ()"),
        ("0.0, 1e-44, symmetric=True", dict(lo=0.0, hi=1e-44, symmetric=True),
         "range [0, 1e-44], symmetric: the float32 scale rounds to 0, so scale 1, zero_point 0"),
        ("0.0, 1e-44, symmetric=False", dict(lo=0.0, hi=1e-44, symmetric=False),
         "range [0, 1e-44], affine: the float32 scale rounds to 0, so scale 1, zero_point 0"),
        ("-2.0, 6.0, bits=6, symmetric=False", dict(lo=-2.0, hi=6.0, bits=6, symmetric=False), "affine 6-bit [-2, 6]"),
    ]
    lo = np.array([-0.3, 0.2, -5.0, -1e-3]); hi = np.array([0.7, 0.9, -1.0, 2e-3])
    cases.append(("lo, hi, symmetric=False", dict(lo=lo, hi=hi, symmetric=False), f"per-channel affine ranges lo={lo}, hi={hi}"))
    for args, kw, how in cases:
        inputs = {"lo": kw["lo"], "hi": kw["hi"]} if args.startswith("lo, hi") else {}
        scale, zp = arrays(s, PARAMS.format(args=args), **inputs)
        want_s, want_z = ref_params(kw["lo"], kw["hi"], kw.get("bits", 8), kw.get("symmetric", True))
        call = f"quantization_params({args})"
        assert scale.dtype == np.float32 and zp.dtype == np.int32, \
            f"{call}: expected a float32 scale and an int32 zero_point, got {scale.dtype}, {zp.dtype}"
        assert scale.shape == want_s.shape and zp.shape == want_z.shape, \
            f"{call}: expected scale and zero_point of shape {want_s.shape}, got {scale.shape}, {zp.shape}"
        assert np.allclose(scale, want_s, rtol=1e-5) and np.array_equal(zp, want_z), \
            f"{call} ({how}): expected scale {want_s}, zero_point {want_z}; got {fmt(scale)}, {fmt(zp)}"
    s.expect_error("quantization_params(np.nan, 1.0)", "quantization_params(nan, 1.0)", ("NaN",))
    s.expect_error("quantization_params(-1.0, np.inf)", "quantization_params(-1, inf)")
    s.expect_error("quantization_params(np.array([0.0, -np.inf]), np.array([1.0, 1.0]))",
                   "quantization_params of per-channel ranges with lo = [0, -inf]")
    for bad in ("1", "9", "8.0"):
        s.expect_error(f"quantization_params(-1.0, 1.0, bits={bad})", f"quantization_params(-1, 1, bits={bad})", ("bits",))


# ---- Task 15.2 ---------------------------------------------------------------------------------

QT = "quantize_tensor(x, {kw})"


@check("test_15_2_quantize_tensor")
def quantize_tensor_(s):
    s.run(UNWRAP)
    task_first(s, "quantize_tensor(np.ones(3))", "15.2")
    requires(s, "[float(v) for v in quantization_params(-1.0, 3.0, symmetric=False)]",
             lambda r: np.isclose(r[0], 4 / 255) and r[1] == -64,
             "quantization_params(-1.0, 3.0, symmetric=False) did not return (4/255, -64)", "15.1", "15.2")
    x = np.array([-1.0, 0.0, 0.5, 3.0])
    q, sc, zp = arrays(s, QT.format(kw="symmetric=False"), x=x)
    assert q.dtype == np.int8 and q.tolist() == [-128, -64, -32, 127], \
        f"affine 8-bit of [-1, 0, 0.5, 3]: expected codes [-128, -64, -32, 127] (int8), got {q.tolist()} ({q.dtype})"
    back = s.value("dequantize_tensor(q, A(sc), A(zp))", q=q, sc=wrap(sc), zp=wrap(zp))
    assert back.dtype == np.float32 and np.allclose(back, (q.astype(np.int32) + 64) * np.float32(4 / 255), atol=1e-5), \
        f"dequantized (q + 64) * 4/255: expected about [-1.0039, 0, 0.5020, 2.9961] as float32, got {fmt(back)} ({back.dtype})"
    w = np.array([[0.1, -0.2, 0.05], [10.0, -5.0, 2.0]], dtype=np.float32)
    q, sc, zp = arrays(s, QT.format(kw="axis=0"), x=w)
    assert sc.shape == (2,) and np.allclose(sc, [0.2 / 127, 10.0 / 127]), \
        f"per-row symmetric of the (2, 3) weight {w.tolist()}: expected scales [0.2/127, 10/127], got {fmt(sc)}"
    back = s.value("dequantize_tensor(q, A(sc), A(zp), axis=0)", q=q, sc=wrap(sc), zp=wrap(zp))
    assert back.shape == w.shape and np.abs(back - w).max() <= sc.max() / 2 + 1e-6, \
        f"per-channel round trip of {w.tolist()}: error {np.abs(back - w).max() if back.shape == w.shape else back.shape} above scale / 2"
    q1, s1, _ = arrays(s, QT.format(kw=""), x=w)
    back1 = s.value("dequantize_tensor(q, A(sc), 0)", q=q1, sc=wrap(s1))
    assert np.abs(back1[0] - w[0]).max() > np.abs(back[0] - w[0]).max(), \
        "row 0 (small weights) should be represented better per channel than with one scale for the whole matrix"
    s.expect_error("quantize_tensor(x, axis=2)", "quantize_tensor with axis 2 on a (2, 3) array", ("2", "(2, 3)"), x=w)
    s.expect_error("quantize_tensor(x, axis=-3)", "quantize_tensor with axis -3 on a (2, 3) array", ("-3", "(2, 3)"), x=w)
    rng = np.random.default_rng(0)
    for shape, axis, sym in (((4, 3, 2, 2), 0, True), ((5, 7), -1, False), ((30,), None, False), ((3, 4), 1, True),
                             ((2, 6, 3), 1, False)):
        x = (rng.standard_normal(shape) * rng.uniform(0.1, 5)).astype(np.float32)
        q, sc, zp = arrays(s, QT.format(kw=f"symmetric={sym}, axis={axis}"), x=x)
        _, want_s, want_z = ref_quantize(x, 8, sym, axis)
        what = f"quantize_tensor of a random {shape} array, axis={axis}, symmetric={sym}"
        assert q.shape == x.shape and q.dtype == np.int8, f"{what}: expected int8 codes of shape {shape}, got {q.dtype} {q.shape}"
        assert sc.shape == want_s.shape and np.allclose(sc, want_s, rtol=1e-5) and np.array_equal(zp, want_z), \
            f"{what}: expected scales {want_s} and zero points {want_z} (one per channel along axis {fmt(axis)}), got {fmt(sc)}, {fmt(zp)}"
        back = s.value(f"dequantize_tensor(q, A(sc), A(zp), axis={axis})", q=q, sc=wrap(sc), zp=wrap(zp))
        bound = np.broadcast_to(along(want_s, None if axis is None else axis % x.ndim, x.ndim), x.shape) / 2
        err = np.abs(back - x)
        assert back.shape == x.shape and np.all(err <= bound * (1 + 1e-5) + 1e-7), \
            f"{what}: round-trip error {err.max():.3g} exceeds scale / 2 somewhere"
    q, sc, zp = arrays(s, QT.format(kw=""), x=np.zeros((2, 3)))
    back = s.value("dequantize_tensor(q, A(sc), A(zp))", q=q, sc=wrap(sc), zp=wrap(zp))
    assert np.all(q == 0) and np.all(back == 0), f"an all-zero (2, 3) tensor: codes 0 and exact zeros back, got codes {q.tolist()}, back {back.tolist()}"
    s.expect_error("quantize_tensor(np.zeros((0, 3)))", "quantize_tensor of an empty (0, 3) array")
    q, _, _ = arrays(s, QT.format(kw="bits=4"), x=np.array([-1.0, 1.0]))
    assert q.tolist() == [-7, 7], f"4-bit symmetric [-1, 1]: expected codes [-7, 7], got {q.tolist()}"
    q, _, _ = arrays(s, QT.format(kw="bits=3, symmetric=False"), x=np.array([0.0, 1.0, 2.0, 7.0]))
    want = ref_quantize(np.array([0.0, 1.0, 2.0, 7.0]), 3, False)[0]
    assert q.tolist() == want.tolist(), f"3-bit affine of [0, 1, 2, 7] (codes -4..3): expected {want.tolist()}, got {q.tolist()}"


# ---- Task 15.3 ---------------------------------------------------------------------------------

@check("test_15_3_observers")
def observers(s):
    task_first(s, "MinMaxObserver().observe(np.ones(2))", "15.3")
    s.run("m = MinMaxObserver(); m.observe(np.array([[0.5, -1.0], [2.0, 0.0]])); m.observe(Tensor([3.0, 1.0]))")
    got = s.value("tuple(float(v) for v in m.range())")
    assert got == (-1.0, 3.0), f"MinMaxObserver after [[0.5, -1], [2, 0]] and [3, 1]: expected (-1.0, 3.0), got {fmt(got)}"
    values = np.concatenate([np.linspace(-1, 1, 10_000), [50.0]])
    got = s.value("(lambda p: (p.observe(a), p.observe(b), tuple(float(v) for v in p.range()))[-1])(PercentileObserver(99.9))",
                  a=values[:5000], b=values[5000:])
    want = (np.percentile(values.astype(np.float32), 0.1), np.percentile(values.astype(np.float32), 99.9))
    assert np.allclose(got, want, atol=1e-4), \
        f"PercentileObserver(99.9) of 10,000 values in [-1, 1] and one 50 (in two observe calls): expected about ({want[0]:.4f}, {want[1]:.4f}), got {fmt(got)}"
    rng = np.random.default_rng(5)
    chunks = [rng.standard_normal(n).astype(np.float32) * 3 for n in (100, 37, 250)]
    got = s.value("(lambda p: ([p.observe(c) for c in chunks], tuple(float(v) for v in p.range()))[-1])(PercentileObserver(95.0))",
                  chunks=chunks)
    allv = np.concatenate(chunks)
    want = (np.percentile(allv, 5.0), np.percentile(allv, 95.0))
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6), \
        f"PercentileObserver(95) over 3 random batches: expected np.percentile of all values at 5 and 95, {fmt(want)}, got {fmt(got)}"
    got = s.value("(lambda m: ([m.observe(c) for c in chunks], tuple(float(v) for v in m.range()))[-1])(MinMaxObserver())",
                  chunks=chunks)
    assert np.allclose(got, (allv.min(), allv.max())), \
        f"MinMaxObserver over 3 random batches: expected ({fmt(allv.min())}, {fmt(allv.max())}), got {fmt(got)}"
    s.expect_error("MinMaxObserver().range()", "MinMaxObserver().range() before any observe", ("MinMaxObserver", "no values"))
    s.expect_error("PercentileObserver().range()", "PercentileObserver().range() before any observe", ("PercentileObserver",))
    for cls in ("MinMaxObserver", "PercentileObserver"):
        s.expect_error(f"{cls}().observe(np.array([1.0, np.nan]))", f"{cls}().observe([1.0, nan])")
        s.expect_error(f"{cls}().observe(np.array([np.inf, 1.0]))", f"{cls}().observe([inf, 1.0])")
    got = s.value("(lambda p: (p.observe(np.array([3.0, -2.0, 1.0])), tuple(float(v) for v in p.range()))[-1])(PercentileObserver(100))")
    assert got == (-2.0, 3.0), f"PercentileObserver(100) is min-max: of [3, -2, 1] expected (-2.0, 3.0), got {fmt(got)}"


# ---- Task 15.4 ---------------------------------------------------------------------------------

QLINEAR = """
ql = QuantizedLinear(w_q.shape[1], w_q.shape[0], per_channel=per_channel, bias=bias is not None)
ql.weight_q.data[...] = w_q
ql.weight_scale.data[...] = w_scale
ql.input_scale.data[...] = s_x
ql.input_zero_point.data[...] = z_x
if bias is not None:
    ql.bias.data[...] = bias
"""


def qlinear_case(weight, bias, input_range, per_channel=True):
    """The buffers from_float would store (computed here), as inputs for QLINEAR."""
    w_q, w_scale, _ = ref_quantize(weight, axis=0 if per_channel else None)
    s_x, z_x = ref_params(*input_range, symmetric=False)
    return dict(w_q=w_q, w_scale=np.atleast_1d(w_scale).astype(np.float32), s_x=np.atleast_1d(s_x),
                z_x=np.atleast_1d(z_x), bias=None if bias is None else np.asarray(bias, np.float32),
                per_channel=per_channel)


FORWARD = "(lambda y: (type(y).__name__, np.asarray(getattr(y, 'data', y))))(ql(Tensor(x)))"


@check("test_15_4_quantized_linear")
def quantized_linear(s):
    weight = np.array([[1.0, -0.5, 0.25], [0.0, 2.0, -1.0]], dtype=np.float32)
    bias = np.array([0.1, -0.2], dtype=np.float32)
    case = qlinear_case(weight, bias, (0.0, 2.0))
    s.run(QLINEAR, **case)
    x = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 2.0]], dtype=np.float32)
    kind, got = s.value(FORWARD, x=x)
    want = x @ weight.T + bias
    assert kind == "Tensor" and got.shape == (2, 2) and got.dtype == np.float32, \
        f"QuantizedLinear(3, 2) of x (2, 3): expected a float32 Tensor (2, 2), got {fmt(kind)} {got.shape} {got.dtype}"
    assert np.allclose(got, want, atol=0.02), \
        f"x = {x.tolist()}, weight {weight.tolist()}, bias [0.1, -0.2], input range (0, 2): expected about {r4(want)} (the float layer), got {r4(got)}"
    for bad in ("np.nan", "np.inf", "-np.inf"):
        s.expect_error(f"ql(Tensor(np.array([[1.0, {bad}, 0.0]], dtype=np.float32)))",
                       f"QuantizedLinear(3, 2) on input [[1, {bad}, 0]] (int8 has no NaN)", ("QuantizedLinear", "NaN"))
    exact = ref_qlinear(x, case["w_q"], case["w_scale"], case["s_x"], case["z_x"], bias)
    assert np.allclose(got, exact, rtol=1e-5, atol=1e-6), \
        f"x = {x.tolist()}: the integer formula (q_x - z_x) @ q_w.T * s_x * s_w + bias gives {r4(exact, 5)}, got {r4(got, 5)}"
    nbytes = s.value("{k: int(v.nbytes) for k, v in ql.state_dict().items()}")
    assert sum(nbytes.values()) == 6 + 8 + 4 + 4 + 8, \
        f"stored: weight_q 6 bytes, weight_scale 8, input_scale 4, input_zero_point 4, bias 8; got {nbytes}"
    s.expect_error("ql(Tensor(np.ones((2, 4))))", "QuantizedLinear(3, 2) on input (2, 4)", ("(2, 4)",))
    rng = np.random.default_rng(3)
    big_w = rng.uniform(-0.125, 0.125, (32, 64)).astype(np.float32)
    big_b = rng.uniform(-0.125, 0.125, 32).astype(np.float32)
    xs = rng.uniform(0, 1, (16, 64)).astype(np.float32)
    for per_channel, tol in ((True, 0.05), (False, 0.1)):
        case = qlinear_case(big_w, big_b, (0.0, 1.0), per_channel)
        s.run(QLINEAR, **case)
        kind, got = s.value("(lambda y: (type(y).__name__, np.asarray(getattr(y, 'data', y))))(ql(x))", x=xs)
        what = f"QuantizedLinear(64, 32, per_channel={per_channel}) on 16 random inputs in [0, 1] (given as an array)"
        exact = ref_qlinear(xs, case["w_q"], case["w_scale"], case["s_x"], case["z_x"], big_b)
        assert got.shape == (16, 32) and np.allclose(got, exact, rtol=1e-5, atol=1e-6), \
            f"{what}: expected the integer formula (q_x - z_x) @ q_w.T * s_x * s_w + bias, max difference " \
            f"{np.abs(got - exact).max() if got.shape == exact.shape else got.shape}"
        assert np.abs(got - (xs @ big_w.T + big_b)).max() < tol, f"{what}: int8 should be within {fmt(tol)} of float"
    case = qlinear_case(rng.uniform(-1, 1, (2, 4)).astype(np.float32), None, (0.0, 1.0))
    s.run(QLINEAR, **case)
    kind, got = s.value(FORWARD, x=np.ones((1, 4), np.float32))
    exact = ref_qlinear(np.ones((1, 4), np.float32), case["w_q"], case["w_scale"], case["s_x"], case["z_x"], None)
    assert got.shape == (1, 2) and np.allclose(got, exact, rtol=1e-5, atol=1e-6), \
        f"a QuantizedLinear(4, 2) without bias on ones (1, 4): expected {r4(exact, 5)}, got {r4(got, 5)}"
    # codes outside the calibrated range are clipped, with an affine zero point != 0
    case = qlinear_case(weight, bias, (-1.0, 1.0))
    s.run(QLINEAR, **case)
    xo = np.array([[5.0, -3.0, 0.5]], dtype=np.float32)
    _, got = s.value(FORWARD, x=xo)
    exact = ref_qlinear(xo, case["w_q"], case["w_scale"], case["s_x"], case["z_x"], bias)
    assert np.allclose(got, exact, rtol=1e-5, atol=1e-6), \
        f"input range (-1, 1), x = {xo.tolist()} (outside the range: codes clipped to [-128, 127]): expected {r4(exact, 5)}, got {r4(got, 5)}"


# ---- Task 15.5 ---------------------------------------------------------------------------------

NET = """
from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Sequential
net = Sequential(Linear(8, 16, rng=0), ReLU(), Linear(16, 4, rng=1))
net[0].weight.data[...] = w0; net[0].bias.data[...] = b0
net[2].weight.data[...] = w2; net[2].bias.data[...] = b2
"""


def mlp_float(x, w0, b0, w2, b2):
    return np.maximum(x @ w0.T + b0, 0) @ w2.T + b2


KINDS = "[type(m).__name__ for m in {m}]"
HOOKS = "[n for n, m in {m}.named_modules() if m._forward_pre_hooks or m._forward_hooks]"


@check("test_15_5_quantize")
def quantize_(s):
    rng = np.random.default_rng(15)
    w0, b0 = (rng.uniform(-0.35, 0.35, (16, 8)).astype(np.float32), rng.uniform(-0.35, 0.35, 16).astype(np.float32))
    w2, b2 = (rng.uniform(-0.25, 0.25, (4, 16)).astype(np.float32), rng.uniform(-0.25, 0.25, 4).astype(np.float32))
    s.run(NET, w0=w0, b0=b0, w2=w2, b2=b2)
    task_first(s, "quantize(Sequential(Linear(2, 2, rng=0)), dtype='fp16')", "15.5")
    requires(s, "(lambda o: (o.observe(np.array([2.0, -1.0])), tuple(float(v) for v in o.range()))[-1])(MinMaxObserver())",
             lambda r: r == (-1.0, 2.0), "MinMaxObserver after observe([2, -1]) did not give the range (-1.0, 2.0)", "15.3", "15.5")
    probe = qlinear_case(w0, b0, (0.0, 1.0))
    requires(s, "(lambda lin: (lin.weight.data.__setitem__(Ellipsis, w0), lin.bias.data.__setitem__(Ellipsis, b0), "
                "QuantizedLinear.from_float(lin, (0.0, 1.0))(Tensor(x)).data)[-1])(Linear(8, 16, rng=0))",
             lambda r: np.allclose(r, ref_qlinear(np.full((2, 8), 0.5, np.float32), probe["w_q"], probe["w_scale"],
                                                  probe["s_x"], probe["z_x"], b0), rtol=1e-5, atol=1e-6),
             "QuantizedLinear.from_float(Linear(8, 16), (0, 1)) applied to 0.5s did not give the int8 formula's output",
             "15.1, 15.2 and 15.4 (from_float uses quantization_params and quantize_tensor)", "15.5",
             x=np.full((2, 8), 0.5, np.float32), w0=w0, b0=b0)
    calib = [np.random.default_rng(k).uniform(0, 1, (32, 8)).astype(np.float32) for k in range(3)]
    s.run("q8 = quantize(net, calib)", calib=calib)
    kinds = s.value(KINDS.format(m="q8"))
    assert kinds[0] == kinds[2] == "QuantizedLinear" and len(kinds) == 3, \
        f"quantize(Linear, ReLU, Linear): expected layers 0 and 2 to become QuantizedLinear, got {kinds}"
    kinds = s.value(KINDS.format(m="net"))
    assert kinds[0] == kinds[2] == "Linear", \
        f"quantize must leave the original model unchanged (work on copy.deepcopy(model)): its layers became {kinds}"
    orig = s.value("(net[0].weight.data, net[0].bias.data, net[2].weight.data, net[2].bias.data)")
    assert all(np.array_equal(a, b) for a, b in zip(orig, (w0, b0, w2, b2))), \
        "quantize must leave the original model's weights unchanged (work on copy.deepcopy(model))"
    left = s.value(HOOKS.format(m="net")) + s.value(HOOKS.format(m="q8"))
    assert not left, f"every calibration hook should be removed; left on {left}"
    x = calib[0]
    got = s.value("q8(Tensor(x)).data", x=x)
    assert np.abs(got - mlp_float(x, w0, b0, w2, b2)).max() < 0.05, \
        "the int8 model should be within 0.05 of the float model on calibration inputs"
    allx = np.concatenate(calib)
    scales = s.value("(float(q8.get_submodule('0').input_scale.data[0]), float(q8.get_submodule('2').input_scale.data[0]))")
    relu_out = np.maximum(allx @ w0.T + b0, 0)
    assert np.isclose(scales[0], allx.max() / 255, rtol=1e-4), \
        f"layer 0's input range is the calibration inputs' [0, {allx.max():.5g}]: expected input_scale {allx.max() / 255:.5g}, got {scales[0]:.5g}"
    assert np.isclose(scales[1], relu_out.max() / 255, rtol=1e-4), \
        f"layer 2's input range comes from the ReLU outputs it saw: expected input_scale {relu_out.max() / 255:.5g}, got {scales[1]:.5g}"
    s.run("h16 = quantize(net, dtype='fp16')")
    kind, dtype = s.value("(type(h16[0]).__name__, h16[0].weight.dtype)")
    assert kind == "HalfLinear" and dtype == np.float16, f"fp16: Linear -> HalfLinear with float16 weights, got {fmt(kind)} {dtype}"
    s.expect_error("quantize(net, calibration_data=[])", "quantize(net, calibration_data=[])", ("empty",))
    s.expect_error("quantize(net, dtype='int4')", "quantize(net, dtype='int4')", ("int4",))
    # a CNN, per tensor
    imgs = [np.random.default_rng(k).uniform(0, 1, (8, 1, 5, 5)).astype(np.float32) for k in range(2)]
    s.run("""
from tinytorch_lib.spatial import Flatten
cnn = Sequential(Conv2d(1, 4, 3, padding=1, rng=0), ReLU(), Flatten(), Linear(4 * 5 * 5, 3, rng=1))
qc = quantize(cnn, imgs, per_channel=False)
""", imgs=imgs)
    kinds = s.value(KINDS.format(m="qc"))
    assert kinds[0] == "QuantizedConv2d" and kinds[3] == "QuantizedLinear", \
        f"Sequential(Conv2d, ReLU, Flatten, Linear): Conv2d and Linear both swapped, got {kinds}"
    shape = s.value("tuple(qc[0].weight_scale.shape)")
    assert shape == (1,), f"per_channel=False: one weight scale per layer, got weight_scale of shape {shape}"
    diff = s.value("float(np.abs(qc(Tensor(x)).data - cnn(Tensor(x)).data).max())", x=imgs[0])
    assert diff < 0.1, f"int8 CNN within 0.1 of float on calibration images, got a difference of {diff:.3g}"
    # another observer
    got = s.value("float(quantize(net, calib, observer=lambda: PercentileObserver(99.0)).get_submodule('0').input_scale.data[0])",
                  calib=calib)
    want = np.percentile(allx, 99.0) / 255
    assert np.isclose(got, want, rtol=1e-4) and got < scales[0], \
        f"observer=lambda: PercentileObserver(99.0): layer 0's input scale should come from the 99th percentile, {want:.5g}, got {got:.5g}"
    s.expect_error("quantize(Sequential(ReLU()), calib)", "quantize of a model without Linear or Conv2d", ("Linear",), calib=calib)
    s.expect_error("quantize(net, [np.full((2, 8), np.nan, dtype=np.float32)])", "quantize with calibration inputs holding NaN")
    left = s.value(HOOKS.format(m="net"))
    assert not left, f"hooks must be removed also when calibration fails; left on {left}"
