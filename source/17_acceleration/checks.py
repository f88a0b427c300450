"""Module 17's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here: the convolution, im2col, attention and gradient
oracles below are numpy in float64, and the models of Task 17.6 are checked against the course's
reference library run here, in the grader (never the student's copy of it in the sandbox).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinytorch_lib import fmt
from tito.checks import StudentError, check, requires, task_first

TOLERANCE = 1e-5


def relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max() if want.size else 0.0
    diff = np.abs(got - want).max() if want.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def pad(x, p):
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (p, p), (p, p)))


def ref_conv(x, w, b=None, s=1, p=0):
    win = sliding_window_view(pad(x, p), w.shape[2:], axis=(2, 3))[:, :, ::s, ::s]   # (n, c, ho, wo, kh, kw)
    out = np.einsum("nchwij,ocij->nohw", win, np.asarray(w, np.float64))
    return out if b is None else out + np.asarray(b, np.float64).reshape(1, -1, 1, 1)


def ref_im2col(x, kh, kw, s, p):
    n, c, h, w = x.shape
    xp = pad(x, p)
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    return np.array([[xp[b, ch, y * s + i, z * s + j] for ch in range(c) for i in range(kh) for j in range(kw)]
                     for b in range(n) for y in range(ho) for z in range(wo)]).astype(x.dtype)


def first_difference(got, want, x_shape, kh, kw, s, p):
    h_out, w_out = (x_shape[2] + 2 * p - kh) // s + 1, (x_shape[3] + 2 * p - kw) // s + 1
    r, col = (int(v) for v in np.argwhere(got != want)[0])
    b, y, z = r // (h_out * w_out), r // w_out % h_out, r % w_out
    ch, i, j = col // (kh * kw), col // kw % kh, col % kw
    return (f"first difference at row {r} (image {b}, output position ({y}, {z})), column {col} (channel {ch}, "
            f"kernel offset ({i}, {j})): expected {want[r, col]:.4g}, got {got[r, col]:.4g}")


def ref_attention(q, k, v, causal=True, weights=False):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s_q, s_k = q.shape[2], k.shape[2]
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    if causal:
        visible = np.arange(s_k)[None, :] <= np.arange(s_q)[:, None] + (s_k - s_q)
        scores = np.where(visible, scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return (p @ v, p) if weights else p @ v


def ref_conv_backward(x, w, b, s, p, g):
    """(dx, dw, db) of out = conv(x, w) + b for upstream g, float64."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    kh, kw = w.shape[2:]
    h, wd = x.shape[2:]
    ho, wo = g.shape[2:]
    win = sliding_window_view(pad(x, p), (kh, kw), axis=(2, 3))[:, :, ::s, ::s][:, :, :ho, :wo]
    dw = np.einsum("nchwij,nohw->ocij", win, g)
    dxp = np.zeros(pad(x, p).shape)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + s * ho:s, j:j + s * wo:s] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j])
    return dxp[:, :, p:p + h, p:p + wd], dw, (None if b is None else g.sum(axis=(0, 2, 3)))


IM2COL_ROW = "np.asarray(im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2))[0].tolist()"
X_EX = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)
W_EX = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
ARRAY = "(lambda r: (type(r).__name__, np.asarray(r)))({call})"


def conv_cases(s, fn: str, seed: int):
    kind, got = s.value(ARRAY.format(call=f"{fn}(x, w)"), x=X_EX, w=W_EX)
    assert kind == "ndarray" and got.shape == (1, 1, 2, 2), \
        f"{fmt(fn)}, worked example (1, 1, 3, 3) input 1..9, (1, 1, 2, 2) filter [[1, 0], [0, 1]]: expected an array (1, 1, 2, 2), got {fmt(kind)} {got.shape}"
    assert np.array_equal(got[0, 0], [[6, 8], [12, 14]]), f"{fmt(fn)}, worked example: expected [[6, 8], [12, 14]], got {got[0, 0].tolist()}"
    assert got.dtype == np.float32, f"{fmt(fn)}: float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(seed)
    cases = []
    for shape_x, shape_w, st, p in [((2, 3, 6, 7), (4, 3, 3, 3), 1, 1), ((2, 2, 7, 7), (3, 2, 3, 2), 2, 0)]:
        cases.append((rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0]), st, p, ""))
    xr, wr = rng.standard_normal((3, 2, 9, 5)), rng.standard_normal((5, 2, 2, 3))
    for st, p in [(1, 0), (2, 1), (3, 2)]:
        cases.append((xr, wr, None, st, p, ", bias None"))
    d32, w32 = rng.standard_normal((4, 1, 8, 8)).astype(np.float32), rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    cases.append((d32, w32, np.ones(16, np.float32), 1, 1, " (a digit-shaped float32 batch)"))
    for x, w, b, st, p, note in cases:
        what = f"{fn}: x {x.shape} {x.dtype}, weight {w.shape}{note}, stride={st}, padding={p}"
        got = s.value(f"np.asarray({fn}(x, w, b, {st}, {p}))", x=x, w=w, b=b)
        want = ref_conv(x, w, b, st, p)
        assert got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}"
        err = relative_error(got, want)
        assert err < TOLERANCE, f"{what}: relative error {err:.2e} from Module 09's conv2d (need < 1e-5)"
        want_dtype = np.result_type(x.dtype, w.dtype)
        assert got.dtype == want_dtype, f"{what}: expected dtype {want_dtype} (np.result_type of x and weight), got {got.dtype}"


@check("test_17_1_positions")
def positions(s):
    conv_cases(s, "conv2d_positions", 0)


@check("test_17_2_im2col")
def im2col_(s):
    kind, got = s.value(ARRAY.format(call="im2col(x, 2, 2)"), x=X_EX)
    want = np.array([[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]], dtype=np.float32)
    assert kind == "ndarray" and got.shape == (4, 4), f"worked example (1, 1, 3, 3), 2x2 kernel: expected an array (4, 4), got {fmt(kind)} {got.shape}"
    assert np.array_equal(got, want), f"worked example: expected\n{fmt(want)}\ngot\n{fmt(got)}"
    assert got.dtype == np.float32, f"float32 input: cols should be float32, got {got.dtype}"
    row = s.value(IM2COL_ROW)
    assert row == [0, 1, 3, 4, 9, 10, 12, 13], \
        (f"two channels 0..8 and 9..17 (1, 2, 3, 3), 2x2 kernel: the first row holds channel 0's 2x2 patch, then channel 1's: "
         f"expected [0, 1, 3, 4, 9, 10, 12, 13], got {row} (columns run over (channel, kernel row, kernel column))")
    rng = np.random.default_rng(1)
    for shape_x, kh, kw, st, p in [((2, 3, 5, 6), 3, 3, 1, 1), ((2, 2, 7, 7), 3, 2, 2, 0), ((3, 2, 9, 5), 2, 3, 3, 2),
                                   ((1, 1, 2, 2), 3, 3, 1, 1), ((2, 4, 4, 4), 1, 1, 1, 0)]:
        xr = rng.standard_normal(shape_x)
        want = ref_im2col(xr, kh, kw, st, p)
        got = s.value(f"np.asarray(im2col(x, {kh}, {kw}, {st}, {p}))", x=xr)
        what = f"x {shape_x}, kernel {kh}x{kw}, stride={st}, padding={p}"
        assert got.shape == want.shape, f"{what}: expected cols {want.shape}, got {got.shape}"
        assert np.array_equal(got, want), f"{what}: cols differ from the definition; " + first_difference(got, want, shape_x, kh, kw, st, p)
    dtype = s.value("im2col(x, 3, 3).dtype", x=rng.standard_normal((1, 2, 4, 4)))
    assert dtype == np.float64, f"float64 input: cols should be float64, got {dtype}"


@check("test_17_3_conv2d_im2col")
def conv_im2col(s):
    task_first(s, "conv2d_im2col(x, w)", "17.3", x=X_EX, w=W_EX)
    requires(s, IM2COL_ROW, lambda r: r == [0, 1, 3, 4, 9, 10, 12, 13],
             "the first row of im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2) should be [0, 1, 3, 4, 9, 10, 12, 13]",
             "17.2", "17.3")
    conv_cases(s, "conv2d_im2col", 2)


@check("test_17_4_attention")
def attention(s):
    q1 = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
    v1 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32)
    kind, got = s.value(ARRAY.format(call="attention_batched(q, q, v, causal=True)"), q=q1, v=v1)
    assert kind == "ndarray" and got.shape == (1, 1, 2, 2), f"q = k (1, 1, 2, 2): expected an array (1, 1, 2, 2), got {fmt(kind)} {got.shape}"
    assert np.allclose(got[0, 0, 0], [1.0, 2.0]), f"causal: query 0 sees only key 0, so its output is v[0] = [1, 2]; got {fmt(got[0, 0, 0])}"
    assert np.allclose(got, ref_attention(q1, q1, v1), atol=1e-6), f"q = k = [[1, 0], [0, 1]], v = [[1, 2], [3, 4]], causal: got {got.tolist()}"
    assert got.dtype == np.float32, f"float32 in should give float32 out, got {got.dtype}"
    rng = np.random.default_rng(3)
    cases = [((2, 4, 6, 8), (2, 4, 6, 8), True, np.float32), ((1, 2, 5, 4), (1, 2, 5, 4), False, np.float32),
             ((2, 2, 3, 4), (2, 2, 7, 4), True, np.float32), ((3, 1, 1, 5), (3, 1, 9, 5), True, np.float64),
             ((1, 3, 4, 2), (1, 3, 6, 2), False, np.float64)]
    for shape_q, shape_k, causal, dtype in cases:
        qr = rng.standard_normal(shape_q).astype(dtype)
        kr, vr = (rng.standard_normal(shape_k).astype(dtype) for _ in range(2))
        got = s.value(f"np.asarray(attention_batched(q, k, v, {causal}))", q=qr, k=kr, v=vr)
        want = ref_attention(qr, kr, vr, causal)
        what = f"q {shape_q}, k, v {shape_k} ({np.dtype(dtype).name}), causal={causal}"
        assert got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}"
        err = relative_error(got, want)
        assert err < TOLERANCE, f"{what}: relative error {err:.2e} from Module 12"
        assert got.dtype == dtype, f"{what}: the output's dtype should be the inputs' ({np.dtype(dtype).name}), got {got.dtype}"
    qr = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    kr, vr = (rng.standard_normal((2, 2, 7, 4)).astype(np.float32) for _ in range(2))
    out, weights = s.value("tuple(np.asarray(a) for a in attention_batched(q, k, v, causal=True, return_weights=True))", q=qr, k=kr, v=vr)
    want_out, want_w = ref_attention(qr, kr, vr, True, weights=True)
    assert weights.shape == (2, 2, 3, 7) and np.allclose(weights.sum(-1), 1, atol=1e-6), \
        f"return_weights: expected weights (2, 2, 3, 7) whose rows sum to 1, got {weights.shape}"
    assert np.all(weights[:, :, 0, 5:] == 0), "q (2, 2, 3, 4), k (2, 2, 7, 4), causal: query 0 sits at position 4 and must give keys 5, 6 weight 0"
    assert np.allclose(weights, want_w, atol=1e-6) and relative_error(out, want_out) < TOLERANCE, \
        "return_weights=True: expected (out, weights), the softmax of the scaled, masked scores and weights @ v"
    big = (rng.standard_normal((1, 2, 4, 8)) * 30).astype(np.float32)
    got = s.value("np.asarray(attention_batched(b, b, b))", b=big)
    assert np.isfinite(got).all(), "scores around +-1000 (q = k, entries * 30): the softmax must stay finite (subtract the row maximum)"
    assert relative_error(got, ref_attention(big, big, big)) < TOLERANCE, "scores around +-1000 (q = k = v, entries * 30): wrong output"


BOTH = """
def gradients(x, w, b, s, p, g, needs):
    ins = tuple(None if a is None else Tensor(a, requires_grad=r) for a, r in zip((x, w, b), needs))
    out = record("conv2d_im2col", Tensor(conv2d_reference(x, w, b, s, p)), ins, stride=s, padding=p)
    got = conv2d_im2col_backward(g, out)
    if not isinstance(got, tuple):
        return type(got).__name__
    return tuple(None if a is None else np.asarray(a) for a in got)
"""


@check("test_17_5_backward")
def backward(s):
    s.run(BOTH)
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    task_first(s, "gradients(x, w, b, 1, 1, np.ones((2, 3, 5, 5)), (True, True, True))", "17.5", x=x, w=w, b=b)
    requires(s, IM2COL_ROW, lambda r: r == [0, 1, 3, 4, 9, 10, 12, 13],
             "the first row of im2col(np.arange(18.0).reshape(1, 2, 3, 3), 2, 2) should be [0, 1, 3, 4, 9, 10, 12, 13]",
             "17.2", "17.5")
    cases = []
    for shape_x, shape_w, st, p in [((2, 2, 5, 5), (3, 2, 3, 3), 1, 1), ((1, 2, 7, 6), (2, 2, 2, 3), 2, 0)]:
        x, w, b = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        cases.append((x, w, b, st, p, (True, True, True)))
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 3, 2))
    for st, p in [(2, 1), (3, 0), (1, 2)]:
        cases.append((x, w, None, st, p, (True, True, False)))
    for x, w, b, st, p, needs in cases:
        g = rng.standard_normal(ref_conv(x, w, None, st, p).shape)
        what = f"x {x.shape}, weight {w.shape}{'' if b is not None else ', no bias'}, stride={st}, padding={p}"
        got = s.value(f"gradients(x, w, b, {st}, {p}, g, {needs})", x=x, w=w, b=b, g=g)
        assert isinstance(got, tuple) and len(got) == 3, f"{what}: expected a tuple (dx, dweight, dbias), got {got!r:.80}"
        want = ref_conv_backward(x, w, b, st, p, g)
        if b is None:
            assert got[2] is None, f"{what}: dbias should be None, got {got[2]!r:.60}"
        for name, gv, wv in zip(("dx", "dweight", "dbias"), got, want):
            if wv is None:
                continue
            assert gv is not None and gv.shape == wv.shape, f"{what}: {name} should have shape {wv.shape}, got {None if gv is None else gv.shape}"
            err = relative_error(gv, wv)
            assert err < TOLERANCE, f"{what}: {name} differs from Module 09's rule by {err:.2e} (relative)"
    x32, w32, b32 = (a.astype(np.float32) for a in (rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)))
    g32 = np.ones((2, 4, 8, 8), dtype=np.float32)
    got = s.value("gradients(x, w, b, 1, 1, g, (True, True, True))", x=x32, w=w32, b=b32, g=g32)
    dtypes = [None if a is None else a.dtype for a in got]
    assert dtypes == [np.float32] * 3, f"float32 inputs (2, 1, 8, 8), weight (4, 1, 3, 3): gradients should be float32, got {dtypes}"
    want = ref_conv_backward(x32, w32, b32, 1, 1, g32)
    assert all(relative_error(a, b) < TOLERANCE for a, b in zip(got, want)), "float32 inputs: wrong gradients"
    got = s.value("gradients(x, w, b, 1, 1, g, (False, True, False))", x=x32, w=w32, b=b32, g=g32)
    assert got[0] is None and got[2] is None and got[1] is not None and got[1].shape == (4, 1, 3, 3), \
        f"x and bias with requires_grad=False: expected (None, dweight (4, 1, 3, 3), None), got {tuple(None if a is None else a.shape for a in got)}"
    assert relative_error(got[1], want[1]) < TOLERANCE, "x and bias with requires_grad=False: dweight is wrong"


def _reference():
    """The course's reference library, imported here in the grader (instructor code): the oracle for whole models."""
    from tinytorch_lib.attention import MultiHeadAttention
    from tinytorch_lib.layers import Sequential
    from tinytorch_lib.spatial import Conv2d, small_cnn
    from tinytorch_lib.tensor import Tensor, no_grad
    from tinytorch_lib.transformer import GPT
    return dict(MultiHeadAttention=MultiHeadAttention, Sequential=Sequential, Conv2d=Conv2d, small_cnn=small_cnn,
                Tensor=Tensor, no_grad=no_grad, GPT=GPT)


def state_of(model) -> dict:
    return {k: np.array(v) for k, v in model.state_dict().items()}


def classes(s, model: str, *names: str) -> list:
    """'module.Class' of each named submodule of `model` in the sandbox, compared here (not there)."""
    return s.value(f"[(lambda t: t.__module__ + '.' + t.__qualname__)(type({model}.get_submodule(n))) for n in names]",
                   names=list(names))


FAST = "tinytorch_lib.acceleration."
CONV, MHA = "tinytorch_lib.spatial.Conv2d", "tinytorch_lib.attention.MultiHeadAttention"


@check("test_17_6_vectorize")
def vectorize_(s):
    ref = _reference()
    Tensor = ref["Tensor"]
    s.run("from tinytorch_lib.spatial import small_cnn\nfrom tinytorch_lib.layers import Sequential")
    task_first(s, "vectorize(small_cnn(channels=2, rng=0))", "17.6")
    requires(s, "np.asarray(conv2d_im2col(x, w))[0, 0].tolist()", lambda r: r == [[6, 8], [12, 14]],
             "conv2d_im2col of the worked example should give [[6, 8], [12, 14]] (FastConv2d computes with it)",
             "17.3", "17.6", x=X_EX, w=W_EX)
    cnn = ref["small_cnn"](channels=4, rng=np.random.default_rng(0))
    state = state_of(cnn)
    s.run("cnn_small = small_cnn(channels=4, rng=0); cnn_small.load_state_dict(state); fast_small = vectorize(cnn_small)",
          state=state)
    assert s.value("fast_small is not cnn_small"), "vectorize must return a new model"
    got = classes(s, "cnn_small", "0")[0]
    assert got == CONV, f"the original model's layer '0' must stay a Conv2d, got {fmt(got)}"
    got = classes(s, "fast_small", "0")[0]
    assert got == FAST + "FastConv2d", f"small_cnn's layer '0': expected FastConv2d in the new model, got {fmt(got)}"
    assert s.value("fast_small.get_submodule('0').weight is not cnn_small.get_submodule('0').weight"), \
        "the new model must hold copies of the parameters (deepcopy), not the original's"
    xb = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    weights = np.arange(50, dtype=np.float32).reshape(5, 10)
    want = cnn(Tensor(xb))
    got = s.value("fast_small(Tensor(x)).data", x=xb)
    err = relative_error(got, want.data)
    assert got.shape == (5, 10) and err < TOLERANCE, f"small_cnn(channels=4) on a (5, 1, 8, 8) batch: vectorized output differs by {err:.2e} (relative)"
    cnn.zero_grad()
    (cnn(Tensor(xb)) * Tensor(weights)).sum().backward()
    want = {name: p.grad.data for name, p in cnn.named_parameters()}
    got = s.value("""(lambda m: (m.zero_grad(), (m(Tensor(x)) * Tensor(wt)).sum().backward(),
                     {n: p.grad.data for n, p in m.named_parameters()})[-1])(fast_small)""", x=xb, wt=weights)
    assert set(got) == set(want), f"the vectorized model's parameters should be the original's: {sorted(want)}, got {sorted(got)}"
    for name in want:
        err = relative_error(got[name], want[name])
        assert err < TOLERANCE, f"gradient of {name}: vectorized model differs by {err:.2e} (relative)"
    after = s.value("cnn_small.state_dict()")
    assert all(np.array_equal(after[k], v) for k, v in state.items()), "vectorize changed the original model's parameters"
    # the root is a layer to swap
    mha = ref["MultiHeadAttention"](8, 2, rng=0)
    s.run("mha = MultiHeadAttention(8, 2, rng=0); mha.load_state_dict(state); fast_mha = vectorize(mha)", state=state_of(mha))
    got = classes(s, "fast_mha", "")[0], classes(s, "mha", "")[0]
    assert got[0] == FAST + "FastMultiHeadAttention", \
        f"vectorize(MultiHeadAttention(8, 2)): the model itself is a layer to swap; expected a FastMultiHeadAttention, got {fmt(got[0])}"
    assert got[1] == MHA, f"vectorize of a bare MultiHeadAttention changed the original's class to {fmt(got[1])}"
    xa = np.random.default_rng(2).standard_normal((2, 5, 8)).astype(np.float32)
    err = relative_error(s.value("fast_mha(Tensor(x)).data", x=xa), mha(Tensor(xa)).data)
    assert err < TOLERANCE, f"MultiHeadAttention(8, 2) on (2, 5, 8): vectorized output differs by {err:.2e}"
    # nothing to swap
    s.expect_error("vectorize(small_cnn(channels=2, rng=0)[3:])", "vectorize of Sequential(Flatten, Linear) (nothing to swap)",
                   ("Sequential", "Flatten", "Linear"))
    s.run("again = vectorize(fast_small)")
    got = s.value("again is not fast_small"), classes(s, "again", "0")[0]
    assert got == (True, FAST + "FastConv2d"), \
        f"vectorize of an already vectorized model: expected a new copy with its FastConv2d, got {fmt('a copy' if got[0] else 'the same object')} with {fmt(got[1])}"
    s.run("nested = Sequential(Sequential(Conv2d(1, 2, 3, rng=0)), Conv2d(2, 3, 1, rng=1)); fast_nested = vectorize(nested)")
    got = classes(s, "fast_nested", "0.0", "1")
    assert got == [FAST + "FastConv2d"] * 2, f"nested Conv2d layers ('0.0' and '1'): both must be swapped for FastConv2d, got {fmt(got)}"
    got = classes(s, "nested", "0.0")[0]
    assert got == CONV, f"the original nested model must keep its Conv2d, got {fmt(got)}"
    # a GPT: the root first, then the layers in it
    gpt = ref["GPT"](vocab_size=11, d_model=8, n_heads=2, n_layers=2, context=16, max_len=16, rng=0)
    s.run("""
small_gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=2, context=16, max_len=16, rng=0)
small_gpt.load_state_dict(state)
fast_gpt_small = vectorize(small_gpt)
""", state=state_of(gpt))
    names = ("", "blocks.0", "blocks.1.attn", "blocks.1", "blocks.0.attn")
    swapped = classes(s, "fast_gpt_small", *names)
    want = [FAST + c for c in ("FastGPT", "FastTransformerBlock", "FastMultiHeadAttention", "FastTransformerBlock",
                               "FastMultiHeadAttention")]
    assert swapped == want, \
        f"vectorize(GPT(d_model=8, n_layers=2)): the root, 'blocks.0' and 'blocks.1.attn' should be FastGPT, FastTransformerBlock, FastMultiHeadAttention (the root first, then the others in it), got {dict(zip(names, swapped))}"
    got = classes(s, "small_gpt", "", "blocks.0")
    assert got == ["tinytorch_lib.transformer.GPT", "tinytorch_lib.transformer.TransformerBlock"], \
        f"vectorize changed the original GPT's layers: they are now {fmt(got)}"
    gids = np.random.default_rng(3).integers(0, 11, size=(2, 7))
    with ref["no_grad"]():
        want = gpt(gids).data
    got = s.value("(lambda c: (c.__enter__(), fast_gpt_small(ids).data, c.__exit__(None, None, None))[1])(no_grad())", ids=gids)
    err = relative_error(got, want)
    assert got.shape == want.shape and err < TOLERANCE, f"GPT(d_model=8) on ids of shape (2, 7), under no_grad: vectorized logits differ by {err:.2e}"
    s.expect_error("vectorize(np.zeros(3))", "vectorize(np.zeros(3))", error="TypeError")
