"""Library tests for tinytorch_lib.spatial (Module 09): Conv2d, MaxPool2d, Flatten.

Forward passes against plain-Python-loop oracles (float64), backward rules against
float64 central finite differences and a loop oracle for max-pool routing.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conv_cases import conv_arrays, conv_case, fits
from tinytorch_lib.spatial import (Conv2d, Flatten, MaxPool2d, conv2d, conv2d_backward, conv2d_output_shape,
                                   max_pool2d, maxpool2d_backward, small_cnn)
from tinytorch_lib.tensor import BACKWARD_RULES, Tensor, no_grad


# ---- oracles ----

def conv_loops(x, w, b, stride, padding):
    """out[n, o, y, x] = b[o] + sum_{c,i,j} w[o, c, i, j] * xpad[n, c, y*s + i, x*s + j], seven loops."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for a in range(n):
        for oc in range(o):
            for y in range(ho):
                for z in range(wo):
                    s = 0.0 if b is None else b[oc]
                    for ic in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                s += w[oc, ic, i, j] * xp[a, ic, y * stride + i, z * stride + j]
                    out[a, oc, y, z] = s
    return out


def pool_loops(x, k, s):
    """Window maxima, and for each window the index of its first maximum in row-major order."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out, winner = np.zeros((n, c, ho, wo)), {}
    for idx in np.ndindex(n, c, ho, wo):
        a, ch, y, z = idx
        window = x[a, ch, y * s:y * s + k, z * s:z * s + k]
        out[idx] = window.max()
        r, q = divmod(int(np.argmax(window)), k)
        winner[idx] = (a, ch, y * s + r, z * s + q)
    return out, winner


def central_differences(f, arrays, h=1e-5):
    """d f(*arrays) / d arrays[k][idx] for every k and idx, float64 central differences."""
    grads = []
    for k, arr in enumerate(arrays):
        d = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            d[idx] = (f(*plus) - f(*minus)) / (2 * h)
        grads.append(d)
    return grads


# ---- shapes of a convolution ----

def test_output_shape_table():
    assert conv2d_output_shape((2, 1, 8, 8), (16, 1, 3, 3), 1, 1) == (2, 16, 8, 8)
    assert conv2d_output_shape((2, 1, 8, 8), (16, 1, 3, 3), 1, 0) == (2, 16, 6, 6)
    assert conv2d_output_shape((4, 3, 8, 8), (5, 3, 3, 3), 2, 0) == (4, 5, 3, 3)
    assert conv2d_output_shape((1, 2, 7, 5), (3, 2, 7, 2), 1, 0) == (1, 3, 1, 4)
    assert conv2d_output_shape((1, 1, 2, 2), (1, 1, 3, 3), 1, 1) == (1, 1, 2, 2)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, names", [
    ((2, 3, 8, 8), (16, 1, 3, 3), {}, ["(16, 1, 3, 3)", "(2, 3, 8, 8)", "(batch, 1, H, W)"]),
    ((2, 1, 2, 2), (16, 1, 3, 3), {}, ["(16, 1, 3, 3)", "(2, 1, 2, 2)", "3x3"]),
    ((1, 1, 8, 2), (2, 1, 3, 3), {}, ["(2, 1, 3, 3)", "(1, 1, 8, 2)"]),
    ((1, 8, 8), (4, 1, 3, 3), {}, ["(4, 1, 3, 3)", "(1, 8, 8)"]),
    ((1, 1, 8, 8), (4, 1, 3, 3), {"stride": 0}, ["stride=0"]),
    ((1, 1, 8, 8), (4, 1, 3, 3), {"padding": -1}, ["padding=-1"]),
    ((1, 1, 8, 8), (4, 3, 3), {}, ["(4, 3, 3)"]),
])
def test_output_shape_errors_name_expected_and_given(x_shape, w_shape, kwargs, names):
    with pytest.raises(ValueError) as e:
        conv2d_output_shape(x_shape, w_shape, **kwargs)
    for name in names:
        assert name in str(e.value), f"{name!r} missing from {str(e.value)!r}"


# ---- conv2d forward ----

@given(case=conv_case)
@settings(max_examples=60, deadline=None)
def test_conv2d_matches_the_loop_oracle(case):
    assume(fits(case))
    x, w, b = conv_arrays(case)
    got = conv2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), case["stride"], case["padding"])
    want = conv_loops(x, w, b, case["stride"], case["padding"])
    assert got.shape == want.shape == conv2d_output_shape(x.shape, w.shape, case["stride"], case["padding"])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-12)


def test_conv2d_worked_example_and_dtypes():
    x = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
    got = conv2d(x, w)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.data[0, 0], [[6, 8], [12, 14]])
    assert conv2d(np.ones((1, 1, 3, 3), dtype=np.int64), w).dtype == np.float32, "integer input becomes float32"


def test_conv2d_bad_shapes_are_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(4, 1, 3, 3\).*\(1, 3, 8, 8\)"):
        conv2d(rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((4, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"\(4, 1, 3, 3\).*\(4,\).*\(3,\)"):
        conv2d(rng.standard_normal((1, 1, 8, 8)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(3))
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\)"):
        Conv2d(1, 4, 3)(Tensor(np.zeros((1, 1, 2, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"expects input \(batch, 3, H, W\), got \(2, 1, 8, 8\)"):
        Conv2d(3, 4, 3)(Tensor(np.zeros((2, 1, 8, 8), dtype=np.float32)))
    with pytest.raises(ValueError, match="stride"):
        Conv2d(1, 4, 3, stride=0)


def test_conv2d_records_its_node_only_when_needed():
    x = Tensor(np.ones((1, 2, 5, 5), dtype=np.float32), requires_grad=True)
    layer = Conv2d(2, 3, 3, stride=2, padding=1, rng=np.random.default_rng(0))
    out = layer(x)
    assert out.node.op == "conv2d" and out.node.saved == {"stride": 2, "padding": 1}
    assert out.node.inputs[0] is x and out.node.inputs[1] is layer.weight and out.node.inputs[2] is layer.bias
    assert BACKWARD_RULES["conv2d"] is conv2d_backward and BACKWARD_RULES["maxpool2d"] is maxpool2d_backward
    with no_grad():
        assert layer(x).node is None
    assert Conv2d(2, 3, 3, bias=False)(x).node.inputs[2] is None


# ---- conv2d backward ----

@given(case=conv_case)
@settings(max_examples=40, deadline=None)
def test_conv2d_backward_matches_central_differences(case):
    assume(fits(case))
    x, w, b = conv_arrays(case)
    s, p = case["stride"], case["padding"]
    ins = (Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), None if b is None else Tensor(b, requires_grad=True))
    out = conv2d(*ins, stride=s, padding=p)
    g = np.random.default_rng(case["seed"] + 1).standard_normal(out.shape)
    dx, dw, db = conv2d_backward(g, out)

    def loss(x_, w_, b_=None):
        return float((g * conv_loops(x_, w_, b_, s, p)).sum())

    want = central_differences(loss, [x, w] + ([] if b is None else [b]))
    np.testing.assert_allclose(dx, want[0], atol=1e-6)
    np.testing.assert_allclose(dw, want[1], atol=1e-6)
    if b is None:
        assert db is None
    else:
        np.testing.assert_allclose(db, want[2], atol=1e-6)
    assert dx.shape == x.shape and dw.shape == w.shape


def test_conv2d_backward_gives_none_to_inputs_without_grad():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    for flags in [(False, True, True), (True, False, False), (False, False, True)]:
        ins = [Tensor(a, requires_grad=f) for a, f in zip((x, w, rng.standard_normal(3)), flags)]
        out = conv2d(*ins, stride=1, padding=1)
        g = rng.standard_normal(out.shape)
        got = conv2d_backward(g, out)
        full = conv2d_backward(g, conv2d(*[Tensor(t.data, requires_grad=True) for t in ins], stride=1, padding=1))
        for f, a, b in zip(flags, got, full):
            assert (a is None) == (not f)
            if f:
                np.testing.assert_allclose(a, b)


def test_conv2d_backward_keeps_float32():
    rng = np.random.default_rng(0)
    layer = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = Tensor(rng.standard_normal((2, 2, 5, 5)).astype(np.float32), requires_grad=True)
    out = layer(x)
    grads = conv2d_backward(np.ones(out.shape, dtype=np.float32), out)
    assert [g.dtype for g in grads] == [np.float32] * 3
    np.testing.assert_allclose(grads[2], 2 * 25.0)


# ---- max pooling ----

pool_case = st.fixed_dictionaries({
    "n": st.integers(1, 2), "c": st.integers(1, 3), "h": st.integers(1, 7), "w": st.integers(1, 7),
    "k": st.integers(1, 3), "stride": st.one_of(st.none(), st.integers(1, 3)), "ties": st.booleans(),
    "seed": st.integers(0, 2**16),
})


def _pool_input(case):
    rng = np.random.default_rng(case["seed"])
    shape = (case["n"], case["c"], case["h"], case["w"])
    return rng.integers(0, 3, shape).astype(np.float64) if case["ties"] else rng.standard_normal(shape)


@given(case=pool_case)
@settings(max_examples=80, deadline=None)
def test_max_pool_forward_and_backward_match_the_loop_oracle(case):
    k, s = case["k"], case["k"] if case["stride"] is None else case["stride"]
    assume(case["h"] >= k and case["w"] >= k)
    x = _pool_input(case)
    out = max_pool2d(Tensor(x, requires_grad=True), k, case["stride"])
    want, winner = pool_loops(x, k, s)
    np.testing.assert_array_equal(out.data, want)
    assert out.node.op == "maxpool2d" and out.node.saved == {"kernel_size": k, "stride": s}
    g = np.random.default_rng(case["seed"] + 1).standard_normal(out.shape)
    (dx,) = maxpool2d_backward(g, out)
    routed = np.zeros_like(x)
    for idx, pos in winner.items():
        routed[pos] += g[idx]
    np.testing.assert_allclose(dx, routed, atol=1e-12)
    np.testing.assert_allclose(dx.sum(), g.sum(), atol=1e-9)


def test_max_pool_backward_matches_central_differences_without_ties():
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 2 * 6 * 5).reshape(2, 2, 6, 5) / 10.0  # distinct values: the max is differentiable
    for k, s in [(2, 2), (3, 1), (2, 3)]:
        out = max_pool2d(Tensor(x, requires_grad=True), k, s)
        g = rng.standard_normal(out.shape)
        (dx,) = maxpool2d_backward(g, out)
        (want,) = central_differences(lambda a: float((g * pool_loops(a, k, s)[0]).sum()), [x], h=1e-4)
        np.testing.assert_allclose(dx, want, atol=1e-8)


def test_max_pool_ties_go_to_the_first_in_row_major_order():
    x = Tensor(np.array([[[[0, 7, 7], [7, 1, 7], [7, 7, 0]]]], dtype=np.float32), requires_grad=True)
    out = max_pool2d(x, 2, 1)  # four overlapping windows, each with several 7s
    np.testing.assert_array_equal(out.data[0, 0], [[7, 7], [7, 7]])
    (dx,) = maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32), out)
    np.testing.assert_array_equal(dx[0, 0], [[0, 1 + 2, 0], [3, 0, 4], [0, 0, 0]])
    assert dx.dtype == np.float32


def test_max_pool_errors_and_layer():
    for bad in ((2, 3, 1, 1), (3, 4, 4), (1, 1, 4, 1)):
        with pytest.raises(ValueError, match=str(bad).replace("(", r"\(").replace(")", r"\)")):
            max_pool2d(np.zeros(bad), 2)
    with pytest.raises(ValueError, match="stride"):
        max_pool2d(np.zeros((1, 1, 4, 4)), 2, 0)
    pool = MaxPool2d(2)
    assert pool.stride == 2 and list(pool.parameters()) == []
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = pool(Tensor(x))
    assert got.shape == (2, 3, 4, 4) and got.dtype == np.float32
    np.testing.assert_array_equal(got.data, x.reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5)))


# ---- Flatten, the layers, the small CNN ----

def test_flatten():
    x = Tensor(np.arange(24.0).reshape(2, 3, 2, 2), requires_grad=True)
    got = Flatten()(x)
    assert got.shape == (2, 12) and got.node.op == "reshape"
    np.testing.assert_array_equal(got.data, np.arange(24.0).reshape(2, 12))
    assert Flatten()(Tensor(np.zeros((4, 7)))).shape == (4, 7)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        Flatten()(Tensor(np.zeros(5)))


def test_conv2d_layer_parameters_and_init():
    layer = Conv2d(3, 8, (3, 2), stride=2, padding=1, rng=np.random.default_rng(0))
    assert layer.weight.shape == (8, 3, 3, 2) and layer.bias.shape == (8,)
    assert layer.weight.dtype == np.float32 and layer.weight.requires_grad
    bound = 1 / np.sqrt(3 * 3 * 2)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [name for name, _ in Conv2d(3, 8, 3, bias=False).named_parameters()] == ["weight"]
    a = Conv2d(1, 4, 3, rng=np.random.default_rng(5)).weight.data
    np.testing.assert_array_equal(a, Conv2d(1, 4, 3, rng=np.random.default_rng(5)).weight.data)
    out = layer(Tensor(np.zeros((2, 3, 8, 8), dtype=np.float32)))
    assert out.shape == (2, 8, 4, 5) and out.dtype == np.float32


def test_small_cnn_shapes_and_parameters():
    model = small_cnn(channels=8, rng=np.random.default_rng(0))
    kinds = [type(getattr(m, "fn", m)).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert sum(p.size for p in model.parameters()) == 8 * 9 + 8 + 8 * 16 * 10 + 10
    assert sum(p.size for p in small_cnn(rng=np.random.default_rng(0)).parameters()) == 16 * 10 + 256 * 10 + 10
    logits = model(Tensor(np.zeros((3, 1, 8, 8), dtype=np.float32)))
    assert logits.shape == (3, 10) and logits.dtype == np.float32


# ---- through Module 05's engine ----

@given(case=conv_case)
@settings(max_examples=25, deadline=None)
def test_conv2d_backward_through_the_engine_matches_gradcheck(case):
    from tinytorch_lib.autograd import check_rule, gradcheck
    assume(fits(case))
    x, w, b = conv_arrays(case)
    s, p = case["stride"], case["padding"]
    if b is None:
        gradcheck(lambda x_, w_: conv2d(x_, w_, None, s, p), [x, w], atol=1e-6, rtol=1e-5)
    else:
        gradcheck(lambda x_, w_, b_: conv2d(x_, w_, b_, s, p), [x, w, b], atol=1e-6, rtol=1e-5)
        check_rule(conv2d_backward, lambda x_, w_, b_: conv2d(x_, w_, b_, s, p), [x, w, b])


def test_small_cnn_backward_end_to_end():
    from tinytorch_lib.activations import ReLU
    from tinytorch_lib.autograd import gradcheck
    rng = np.random.default_rng(0)
    model = small_cnn(channels=4, rng=rng)
    x = Tensor(rng.standard_normal((5, 1, 8, 8)).astype(np.float32))
    out = model(x)
    (out * Tensor(rng.standard_normal(out.shape).astype(np.float32))).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == np.float32, name
    assert x.grad is None, "a batch of images does not require grad"

    def chain(x_, w, b, w_lin, b_lin):
        return Flatten()(max_pool2d(ReLU()(conv2d(x_, w, b, 1, 1)), 2)) @ w_lin.T + b_lin

    gradcheck(chain, [rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4),
                      rng.standard_normal((10, 64)), rng.standard_normal(10)])
