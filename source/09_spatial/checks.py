"""Module 09's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value, oracle and comparison stays here: the convolution and pooling oracles are the
notebook's loop definitions, run here; the gradients of a convolution are its exact adjoint (the same
loops, accumulating), which is what the notebook's central differences approximate.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check


# Sandbox helpers. `arrays` turns a result into data: for each item, None or (type name, shape, dtype,
# values flattened); tito's data encoding returns a 0-d array as shape (1,), so shapes travel apart.
# hand_built_conv / hand_built_pool are the visible tests' helpers, with the recorded output's values
# passed in (computed here) instead of computed by the oracle in the sandbox.
HELPERS = '''
def arrays(items):
    out = []
    for a in items:
        if a is None:
            out.append(None)
            continue
        d = a.data if hasattr(a, "node") else a
        d = d if isinstance(d, np.ndarray) else np.asarray(d)
        out.append((f"{type(a).__module__}.{type(a).__qualname__}", d.shape, d.dtype, d.reshape(-1)))
    return out


def hand_built_conv(x, w, b, s, p, values, need=(True, True, True)):
    ins = (Tensor(x, requires_grad=need[0]), Tensor(w, requires_grad=need[1]),
           None if b is None else Tensor(b, requires_grad=need[2]))
    return record("conv2d", Tensor(values), ins, stride=s, padding=p)


def hand_built_pool(x, k, s, values):
    return record("maxpool2d", Tensor(values), (Tensor(x, requires_grad=True),), kernel_size=k, stride=s)
'''
TENSOR = "tinytorch_lib.tensor.Tensor"


def helpers(s):
    s.run(HELPERS)


def unpack(item):
    """(type, shape, dtype, values) from `arrays` -> (type, array of that shape); (None, None) for None."""
    if item is None:
        return None, None
    kind, shape, _, values = item
    return kind, values.reshape(shape)


def conv2d_loops(x, weight, bias=None, stride=1, padding=0):
    """The notebook's definition, seven Python loops, float64."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, h_out, w_out))
    for b in range(n):
        for oc in range(o):
            for y in range(h_out):
                for xx in range(w_out):
                    total = 0.0 if bias is None else float(bias[oc])
                    for ic in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = y * stride + i - padding, xx * stride + j - padding
                                if 0 <= row < h and 0 <= col < w:
                                    total += weight[oc, ic, i, j] * x[b, ic, row, col]
                    out[b, oc, y, xx] = total
    return out


def conv2d_adjoint(x, weight, stride, padding, g):
    """d sum(g * conv(x, w, b)) / d(x, w, b), exactly: the loops of conv2d_loops, accumulating (float64)."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    dx, dw, db = np.zeros(x.shape), np.zeros(weight.shape), g.sum(axis=(0, 2, 3)).astype(np.float64)
    for b in range(n):
        for oc in range(o):
            for y in range(g.shape[2]):
                for xx in range(g.shape[3]):
                    gv = g[b, oc, y, xx]
                    for i in range(kh):
                        for j in range(kw):
                            row, col = y * stride + i - padding, xx * stride + j - padding
                            if 0 <= row < h and 0 <= col < w:
                                dx[b, :, row, col] += gv * weight[oc, :, i, j]
                                dw[oc, :, i, j] += gv * x[b, :, row, col]
    return dx, dw, db


def pool_loops(x, k, s):
    """The notebook's definition: max of each window, and the (row, col) of the first max in row-major order."""
    n, c, h, w = x.shape
    h_out, w_out = (h - k) // s + 1, (w - k) // s + 1
    out, where = np.zeros((n, c, h_out, w_out)), {}
    for idx in np.ndindex(n, c, h_out, w_out):
        b, ch, y, xx = idx
        window = x[b, ch, y * s:y * s + k, xx * s:xx * s + k]
        out[idx] = window.max()
        r, q = divmod(int(np.argmax(window)), k)
        where[idx] = (b, ch, y * s + r, xx * s + q)
    return out, where


def close(got, want, **tolerance) -> bool:
    return got is not None and got.shape == want.shape and bool(np.allclose(got, want, **tolerance))


def output_shape(s, x_shape, w_shape, **kw):
    """conv2d_output_shape's result as (container type, item types, values)."""
    call = f"conv2d_output_shape({x_shape}, {w_shape}{''.join(f', {k}={v}' for k, v in kw.items())})"
    s.run(f"r = conv2d_output_shape(xs, ws, **kw)", xs=x_shape, ws=w_shape, kw=kw)
    kind = s.value("type(r).__name__")
    items = s.value("[type(v).__name__ for v in r]") if kind in ("tuple", "list") else []
    values = s.value("tuple(int(v) for v in r)") if kind in ("tuple", "list") else None
    return call, kind, items, values


@check("test_09_1_output_shape")
def output_shape_(s):
    for x_shape, w_shape, st, p, want in [((2, 1, 8, 8), (16, 1, 3, 3), 1, 1, (2, 16, 8, 8)),
                                          ((2, 1, 8, 8), (16, 1, 3, 3), 1, 0, (2, 16, 6, 6)),
                                          ((4, 3, 8, 8), (5, 3, 3, 3), 2, 0, (4, 5, 3, 3)),
                                          ((1, 2, 7, 5), (3, 2, 7, 2), 1, 0, (1, 3, 1, 4)),
                                          ((3, 2, 9, 11), (4, 2, 3, 5), 2, 1, (3, 4, 5, 5)),
                                          ((1, 1, 2, 2), (1, 1, 3, 3), 1, 1, (1, 1, 2, 2))]:
        call, kind, items, values = output_shape(s, x_shape, w_shape, stride=st, padding=p)
        note = " (padding makes the 2x2 input fit)" if x_shape == (1, 1, 2, 2) else ""
        assert kind == "tuple" and values == want, \
            f"{call}{note}: expected the tuple {fmt(want)}, got " + (f"the {fmt(kind)} {fmt(values)}" if values is not None else f"a {fmt(kind)}")
    s.run("r = conv2d_output_shape(np.array([1, 1, 5, 5]), (2, 1, 3, 3))")
    kind = s.value("type(r).__name__")
    items = s.value("[type(v).__name__ for v in r]") if kind in ("tuple", "list") else []
    assert kind == "tuple" and items == ["int"] * 4, \
        f"conv2d_output_shape(np.array([1, 1, 5, 5]), (2, 1, 3, 3)): expected a tuple of Python ints, got a {fmt(kind)} of {items}"
    for x_shape, w_shape, p in [((2, 3, 8, 8), (16, 1, 3, 3), 0), ((2, 1, 2, 2), (16, 1, 3, 3), 0),
                                ((1, 8, 8), (4, 1, 3, 3), 0), ((1, 1, 8, 2), (2, 1, 3, 3), 0)]:
        s.expect_error("conv2d_output_shape(xs, ws, padding=p)", f"conv2d_output_shape({x_shape}, {w_shape}, padding={p})",
                       (str(w_shape), str(x_shape)), xs=x_shape, ws=w_shape, p=p)
    for kw in ({"stride": 0}, {"padding": -1}):
        s.expect_error("conv2d_output_shape((1, 1, 5, 5), (2, 1, 3, 3), **kw)",
                       f"conv2d_output_shape((1, 1, 5, 5), (2, 1, 3, 3), {', '.join(f'{k}={v}' for k, v in kw.items())})",
                       kw=kw)


@check("test_09_2_conv2d")
def conv2d_(s):
    helpers(s)
    try:
        got = s.value("tuple(int(v) for v in conv2d_output_shape((2, 1, 8, 8), (16, 1, 3, 3), 1, 1))")
        problem = None if got == (2, 16, 8, 8) else f"got {got}"
    except StudentError as e:
        problem = f"{e.said}"
    assert problem is None, (f"Task 09.2 calls conv2d_output_shape from Task 09.1, and conv2d_output_shape((2, 1, 8, 8), "
                             f"(16, 1, 3, 3), 1, 1) did not return (2, 16, 8, 8) ({problem}): make Task 09.1's tests pass first")
    x = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
    (kind, shape, dtype, values), = s.value("arrays([conv2d(x, w)])", x=x, w=w)
    assert kind == TENSOR, f"conv2d should return a Tensor, got {fmt(kind)}"
    assert shape == (1, 1, 2, 2) and np.array_equal(values, [6, 8, 12, 14]), \
        f"worked example, 3x3 input 1..9, filter [[1, 0], [0, 1]]: expected [[6, 8], [12, 14]] of shape (1, 1, 2, 2), " \
        f"got {values.reshape(shape).tolist()} of shape {shape}"
    assert dtype == np.float32, f"float32 in should give float32 out, got {dtype}"

    rng = np.random.default_rng(0)
    for shape_x, shape_w, st, p in [((2, 3, 6, 7), (4, 3, 3, 3), 1, 1), ((2, 2, 7, 7), (3, 2, 3, 2), 2, 0)]:
        xr, wr, br = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        want = conv2d_loops(xr, wr, br, stride=st, padding=p)
        _, got = unpack(s.value("arrays([conv2d(Tensor(x), Tensor(w), Tensor(b), stride=st, padding=p)])[0]",
                                x=xr, w=wr, b=br, st=st, p=p))
        case = f"random float64 x {shape_x}, weight {shape_w}, bias ({shape_w[0]},), stride={st}, padding={p}"
        assert got.shape == want.shape, f"{case}: expected shape {want.shape}, got {got.shape}"
        assert np.allclose(got, want, atol=1e-10), \
            f"{case}: largest difference from the loop oracle {np.abs(got - want).max():.3g}"
    xr, wr = rng.standard_normal((3, 2, 9, 5)), rng.standard_normal((5, 2, 2, 3))
    for st, p in [(1, 0), (2, 1), (3, 2)]:
        want = conv2d_loops(xr, wr, None, st, p)
        _, got = unpack(s.value("arrays([conv2d(x, w, None, st, p)])[0]", x=xr, w=wr, st=st, p=p))
        case = f"random float64 x (3, 2, 9, 5), weight (5, 2, 2, 3), bias None, stride={st}, padding={p}"
        assert got.shape == want.shape, f"{case}: expected shape {want.shape}, got {got.shape}"
        assert np.allclose(got, want, atol=1e-10), \
            f"{case}: differs from the loop oracle by up to {np.abs(got - want).max():.3g}"
    (_, _, dtype, _), = s.value("arrays([conv2d(x, w)])", x=xr.astype(np.float32), w=wr.astype(np.float32))
    assert dtype == np.float32, f"float32 x (3, 2, 9, 5) and weight (5, 2, 2, 3): expected a float32 output, got {dtype}"
    (_, _, dtype, _), = s.value("arrays([conv2d(x, w)])", x=xr, w=wr)
    assert dtype == np.float64, f"float64 x (3, 2, 9, 5) and weight (5, 2, 2, 3): expected a float64 output, got {dtype}"
    s.expect_error("conv2d(x, w)", "conv2d of input (1, 3, 8, 8) with weight (4, 1, 3, 3) (wrong channel count)",
                   ("(4, 1, 3, 3)", "(1, 3, 8, 8)"), x=rng.standard_normal((1, 3, 8, 8)), w=rng.standard_normal((4, 1, 3, 3)))


def backward_of(s, what: str):
    """conv2d_backward(g, out) in the sandbox: its three results as (type, array) pairs (None for None)."""
    s.run("got = conv2d_backward(g, out)")
    kind, n = s.value("(type(got).__name__, len(got) if isinstance(got, (tuple, list)) else -1)")
    assert kind == "tuple" and n == 3, \
        f"{what}: expected a tuple (dx, dweight, dbias), got a {fmt(kind)}" + (f" of length {n}" if n >= 0 else "")
    return [unpack(item) for item in s.value("arrays(got)")]


@check("test_09_3_conv2d_backward")
def conv2d_backward_(s):
    helpers(s)
    rng = np.random.default_rng(1)
    for shape_x, shape_w, st, p in [((2, 2, 4, 4), (3, 2, 3, 3), 1, 1), ((1, 2, 5, 4), (2, 2, 2, 3), 2, 0)]:
        x, w, b = rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])
        values = conv2d_loops(x, w, b, st, p)
        g = rng.standard_normal(values.shape)
        s.run("out = hand_built_conv(x, w, b, st, p, values)", x=x, w=w, b=b, st=st, p=p, values=values, g=g)
        case = f"x {shape_x}, weight {shape_w}, stride={st}, padding={p}"
        got = backward_of(s, case)
        for name, (kind, gv), wv in zip(("dx", "dweight", "dbias"), got, conv2d_adjoint(x, w, st, p, g)):
            assert gv is not None and gv.shape == wv.shape, \
                f"{case}: {name} should have shape {wv.shape}, got {None if gv is None else gv.shape}"
            assert kind == "builtins.ndarray" or kind == "numpy.ndarray", f"{case}: {name} should be an np.ndarray, got {fmt(kind)}"
            assert np.allclose(gv, wv, atol=1e-5), \
                f"{case}: {name} differs from the loop oracle's exact gradient (what finite differences approximate) by {np.abs(gv - wv).max():.3g}"

    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 3, 2))
    for st, p in [(2, 1), (3, 0), (1, 2)]:
        values = conv2d_loops(x, w, None, st, p)
        g = rng.standard_normal(values.shape)
        s.run("out = hand_built_conv(x, w, None, st, p, values)", x=x, w=w, st=st, p=p, values=values, g=g)
        case = f"x (2, 3, 6, 5), weight (2, 3, 3, 2), no bias, stride={st}, padding={p}"
        (_, dx), (_, dw), (kind, db) = backward_of(s, case)
        assert kind is None, f"{case}: dbias should be None, got a {fmt(kind)}"
        want_dx, want_dw, _ = conv2d_adjoint(x, w, st, p, g)
        assert close(dx, want_dx, atol=1e-5), f"{case}: dx differs from the loop oracle's exact gradient (what finite differences approximate)" + \
            ("" if dx is None or dx.shape != want_dx.shape else f" by up to {np.abs(dx - want_dx).max():.3g}") + \
            (f" (expected shape {want_dx.shape}, got {None if dx is None else dx.shape})" if dx is None or dx.shape != want_dx.shape else "")
        assert close(dw, want_dw, atol=1e-5), f"{case}: dweight differs from the loop oracle's exact gradient (what finite differences approximate)" + \
            ("" if dw is None or dw.shape != want_dw.shape else f" by up to {np.abs(dw - want_dw).max():.3g}") + \
            (f" (expected shape {want_dw.shape}, got {None if dw is None else dw.shape})" if dw is None or dw.shape != want_dw.shape else "")

    x32, w32, b32 = (a.astype(np.float32) for a in (rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)),
                                                    rng.standard_normal(3)))
    values = conv2d_loops(x32, w32, b32, 1, 1).astype(np.float32)
    ones = np.ones(values.shape, dtype=np.float32)
    s.run("out = hand_built_conv(x, w, b, 1, 1, values)", x=x32, w=w32, b=b32, values=values, g=ones)
    case = "float32 x (1, 2, 5, 5), weight (3, 2, 3, 3), bias (3,), padding 1, all-ones grad"
    got = backward_of(s, case)
    dtypes = [None if a is None else a.dtype for _, a in got]
    assert dtypes == [np.float32] * 3, f"{case}: gradients should be float32, got {dtypes}"
    assert close(got[2][1], np.full(3, 25.0)), f"{case}: dbias should be 25 per channel, got {fmt(got[2][1])}"
    want_dx, want_dw, _ = conv2d_adjoint(x32.astype(np.float64), w32.astype(np.float64), 1, 1, ones.astype(np.float64))
    assert close(got[0][1], want_dx, atol=1e-4) and close(got[1][1], want_dw, atol=1e-4), \
        f"{case}: dx or dweight differs from the loop oracle's exact gradient (what finite differences approximate)"
    s.run("out = hand_built_conv(x, w, b, 1, 1, values, need=(False, True, False))", x=x32, w=w32, b=b32, values=values)
    case = "x and bias with requires_grad=False (weight True), float32 x (1, 2, 5, 5), weight (3, 2, 3, 3), padding 1"
    got = backward_of(s, case)
    shapes = [None if a is None else a.shape for _, a in got]
    assert shapes == [None, (3, 2, 3, 3), None], f"{case}: expected (None, dweight (3, 2, 3, 3), None), got shapes {shapes}"
    assert close(got[1][1], want_dw, atol=1e-4), f"{case}: dweight differs from the loop oracle's exact gradient (what finite differences approximate)"


def pool_backward(s, what: str, **inputs):
    """maxpool2d_backward(g, out) in the sandbox: dx as an array (None for None)."""
    s.run("got = maxpool2d_backward(g, out)", **inputs)
    kind, n = s.value("(type(got).__name__, len(got) if isinstance(got, (tuple, list)) else -1)")
    assert kind == "tuple" and n == 1, \
        f"{what}: maxpool2d_backward should return a one-element tuple (dx,), got a {fmt(kind)}" + (f" of length {n}" if n >= 0 else "")
    return unpack(s.value("arrays(got)")[0])[1]


@check("test_09_4_maxpool")
def maxpool(s):
    helpers(s)
    x = np.array([[[[1, 3, 2, 0], [4, 2, 5, 1], [9, 0, 7, 8], [6, 6, 1, 3]]]], dtype=np.float32)
    (kind, shape, dtype, values), = s.value("arrays([max_pool2d(x, 2)])", x=x)
    assert kind == TENSOR and shape == (1, 1, 2, 2), \
        f"max_pool2d of a (1, 1, 4, 4) input, k=2: expected a Tensor (1, 1, 2, 2), got a {fmt(kind)} of shape {shape}"
    assert np.array_equal(values, [4, 5, 9, 8]), f"worked example: expected [[4, 5], [9, 8]], got {values.reshape(2, 2).tolist()}"
    assert dtype == np.float32, f"float32 in should give float32 out, got {dtype}"
    rng = np.random.default_rng(2)
    xr = rng.standard_normal((2, 3, 7, 6))
    for k, st in [(2, None), (3, 2), (2, 1)]:
        want = pool_loops(xr, k, k if st is None else st)[0]
        _, got = unpack(s.value("arrays([max_pool2d(x, k, st)])[0]", x=xr, k=k, st=st))
        assert got.shape == want.shape and np.array_equal(got, want), \
            f"random (2, 3, 7, 6) input, kernel_size={k}, stride={fmt(st)}: expected shape {want.shape}, got {got.shape}" + \
            (" (and different values)" if got.shape == want.shape else "")
    (_, _, dtype, _), = s.value("arrays([max_pool2d(x, 2)])", x=rng.standard_normal((1, 1, 4, 4)).astype(np.float32))
    assert dtype == np.float32, f"max_pool2d of a float32 (1, 1, 4, 4) input: expected float32 out, got {dtype}"
    for shape in [(2, 3, 1, 1), (3, 4, 4), (1, 1, 4, 1)]:
        s.expect_error("max_pool2d(np.zeros(shape), 2)", f"max_pool2d of a {shape} input with a 2x2 window",
                       (str(shape),), shape=shape)
    for k, st in [(0, None), (2, 0)]:
        s.expect_error("max_pool2d(np.zeros((1, 1, 4, 4)), k, st)",
                       f"max_pool2d of a (1, 1, 4, 4) input with kernel_size={k}, stride={st}", k=k, st=st)

    # backward, on outputs built here (with numpy's max), after the forward was checked
    s.run("out = hand_built_pool(x, 2, 2, values)", x=x, values=pool_loops(x, 2, 2)[0].astype(np.float32))
    dx = pool_backward(s, "backward of the worked example", g=np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32))
    want = np.zeros((4, 4), dtype=np.float32)
    want[1, 0], want[1, 2], want[2, 0], want[2, 3] = 1, 2, 3, 4
    assert dx is not None and dx.shape == (1, 1, 4, 4) and np.array_equal(dx[0, 0], want), \
        f"backward of the worked example, grad [[1, 2], [3, 4]]: expected\n{fmt(want)}\ngot\n{fmt(dx)}"
    ones = np.ones((1, 1, 2, 2), dtype=np.float32)
    s.run("out = hand_built_pool(x, 2, 2, values)", x=ones, values=np.ones((1, 1, 1, 1), dtype=np.float32))
    dx = pool_backward(s, "a 2x2 window of ones, grad 5", g=np.full((1, 1, 1, 1), 5.0, dtype=np.float32))
    assert dx is not None and dx.shape == (1, 1, 2, 2) and np.array_equal(dx[0, 0], [[5, 0], [0, 0]]), \
        f"a 2x2 window of ones, grad 5: expected [[5, 0], [0, 0]] (first max), got {fmt(None if dx is None else dx[0, 0])}"
    for k, st in [(2, 2), (3, 1), (2, 3)]:
        xi = rng.integers(0, 3, (2, 2, 7, 8)).astype(np.float64)
        values, where = pool_loops(xi, k, st)
        g = rng.standard_normal(values.shape)
        s.run("out = hand_built_pool(x, k, st, values)", x=xi, k=k, st=st, values=values)
        case = f"(2, 2, 7, 8) input with values 0-2 (many ties), kernel_size={k}, stride={st}"
        dx = pool_backward(s, case, g=g)
        want = np.zeros_like(xi)
        for idx, pos in where.items():
            want[pos] += g[idx]
        assert close(dx, want), f"{case}: gradient not routed to each window's first max" + \
            (f" (expected dx of shape {want.shape}, got {None if dx is None else dx.shape})" if dx is None or dx.shape != want.shape else "")
        assert np.isclose(dx.sum(), g.sum()), \
            f"{case}: every output's gradient lands once: dx.sum() {dx.sum():.4f} != grad.sum() {g.sum():.4f}"


@check("test_09_5_flatten_cnn")
def flatten_cnn(s):
    helpers(s)
    (kind, shape, _, values), = s.value("arrays([Flatten()(Tensor(np.arange(24.0).reshape(2, 3, 2, 2)))])")
    assert kind == TENSOR and shape == (2, 12), f"Flatten of a (2, 3, 2, 2) tensor: expected a Tensor (2, 12), got a {fmt(kind)} {shape}"
    assert np.array_equal(values.reshape(shape)[1], np.arange(12.0, 24.0)), \
        f"Flatten keeps row-major order: expected row 1 = 12..23, got {values.reshape(shape)[1]}"
    (kind, shape, _, _), = s.value("arrays([Flatten()(Tensor(np.zeros((4, 7))))])")
    assert shape == (4, 7), f"Flatten of a (4, 7) tensor: expected (4, 7), got {shape}"
    s.expect_error("Flatten()(Tensor(np.zeros(5)))", "Flatten of a (5,) tensor", ("(5,)",))

    s.run("model = small_cnn(channels=8, rng=np.random.default_rng(0))\n"
          "conv = model.get_submodule('0')")
    kind = s.value("f'{type(model).__module__}.{type(model).__qualname__}'")
    assert kind == "tinytorch_lib.layers.Sequential", f"small_cnn should return a Sequential, got {fmt(kind)}"
    kind, shape, padding = s.value("(f'{type(conv).__module__}.{type(conv).__qualname__}', "
                                   "tuple(getattr(getattr(conv, 'weight', None), 'shape', ())), getattr(conv, 'padding', None))")
    assert kind == "tinytorch_lib.spatial.Conv2d" and shape == (8, 1, 3, 3) and padding == 1, \
        f"layer 0 of small_cnn(channels=8) should be Conv2d(1, 8, 3, padding=1), got a {fmt(kind)} with weight {shape}, padding {fmt(padding)}"
    n_params = s.value("sum(int(p.size) for p in model.parameters())")
    assert n_params == 8 * 9 + 8 + 128 * 10 + 10, f"small_cnn(channels=8): expected 1370 parameters, got {n_params}"
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    try:
        (_, shape, dtype, logits), = s.value("arrays([model(Tensor(x))])", x=x)
    except StudentError as e:
        if e.type == "NotImplementedError":
            raise AssertionError(f"the CNN runs conv2d (Task 09.2) and max_pool2d (Task 09.4): make their tests pass "
                                 f"first ({e.message})") from None
        raise
    assert shape == (3, 10) and dtype == np.float32, \
        f"small_cnn(channels=8) on (3, 1, 8, 8) float32: expected (3, 10) float32, got {shape} {dtype}"
    state = s.value("dict(model.state_dict())")
    want = cnn_forward(state, x.astype(np.float64))
    assert np.allclose(logits.reshape(shape), want, atol=1e-4), \
        "small_cnn(channels=8) on a random (3, 1, 8, 8) input: the logits differ from Conv2d(padding=1), ReLU, " \
        "MaxPool2d(2), Flatten, Linear applied with the model's own weights (the CNN runs your conv2d, Task 09.2, and " \
        "max_pool2d, Task 09.4: if their tests fail, make them pass first)"

    n_params = s.value("sum(int(p.size) for p in small_cnn(rng=np.random.default_rng(3)).parameters())")
    assert n_params == 16 * 10 + 256 * 10 + 10, f"small_cnn() with the default channels=16: expected 2730 parameters, got {n_params}"
    (_, shape, _, _), = s.value("arrays([small_cnn(channels=4, classes=3, rng=np.random.default_rng(0))"
                                "(np.zeros((2, 1, 8, 8), dtype=np.float32))])")
    assert shape == (2, 3), f"small_cnn(channels=4, classes=3) on (2, 1, 8, 8): expected (2, 3), got {shape}"
    names = s.value("[type(getattr(m, 'fn', m)).__name__ for m in small_cnn(rng=np.random.default_rng(3))]")
    assert names == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"], \
        f"small_cnn's layers should be Conv2d, ReLU, MaxPool2d, Flatten, Linear in that order, got {names}"
    a = s.value("small_cnn(channels=4, rng=np.random.default_rng(7)).get_submodule('0').weight.data")
    b = s.value("small_cnn(channels=4, rng=np.random.default_rng(7)).get_submodule('0').weight.data")
    assert np.array_equal(a, b), "small_cnn(rng=np.random.default_rng(7)) twice: the same seed should give the same conv weights"
    state = s.value("dict(small_cnn(channels=4, rng=np.random.default_rng(7)).state_dict())")
    want = seeded_cnn_state(4, 10, 7)
    mismatched = sorted(k for k in want if k not in state or state[k].shape != want[k].shape
                        or not np.array_equal(state[k], want[k]))
    assert not mismatched, \
        f"small_cnn(channels=4, rng=np.random.default_rng(7)): {fmt(mismatched)} differ from Conv2d(1, 4, 3, padding=1, rng=rng) " \
        f"then Linear(64, 10, rng=rng) drawing from that one generator (pass rng to both layers, after resolve_rng)"


def cnn_forward(state, x):
    """small_cnn's forward in numpy (float64) from its state_dict."""
    h = conv2d_loops(x, state["0.weight"].astype(np.float64), state["0.bias"].astype(np.float64), 1, 1)
    h = pool_loops(np.maximum(h, 0), 2, 2)[0].reshape(len(x), -1)
    return h @ state["4.weight"].T.astype(np.float64) + state["4.bias"]


def seeded_cnn_state(channels, classes, seed):
    """The weights of small_cnn(channels, classes, rng=np.random.default_rng(seed)): Conv2d's draws, then Linear's."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(9)
    state = {"0.weight": rng.uniform(-bound, bound, (channels, 1, 3, 3)).astype(np.float32),
             "0.bias": rng.uniform(-bound, bound, channels).astype(np.float32)}
    bound = 1.0 / np.sqrt(16 * channels)
    state["4.weight"] = rng.uniform(-bound, bound, size=(classes, 16 * channels)).astype(np.float32)
    state["4.bias"] = rng.uniform(-bound, bound, size=(classes,)).astype(np.float32)
    return state
