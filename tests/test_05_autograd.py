"""Library tests for tinytorch_lib.autograd (Module 05).

Oracle: float64 central finite differences (eps = 1e-6) through `gradcheck`, which passes when
|autograd - fd| <= 1e-5 + 1e-3 * |fd| for every element; hand-computed float64 backprop for an MLP.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch_lib import autograd
from tinytorch_lib.activations import GELU, ReLU, Sigmoid, Softmax, Tanh
from tinytorch_lib.autograd import (CORE_OPS, backward, check_rule, gradcheck, no_grad, topological_order,
                                    unbroadcast, zero_grad)
from tinytorch_lib.tensor import AUTOGRAD, BACKWARD_RULES, Tensor, record, register_backward

FD = dict(atol=1e-5, rtol=1e-3)  # gradcheck's defaults, stated once


def rand(rng, shape, low=None, high=None):
    if low is not None:
        return rng.uniform(low, high, shape)
    return rng.standard_normal(shape)


# ---- unbroadcast ----

@st.composite
def broadcast_pair(draw):
    """(input shape, broadcast shape): the input's shape after dropping leading axes and shrinking some to 1."""
    out = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    drop = draw(st.integers(0, len(out)))
    kept = out[drop:]
    shrink = draw(st.lists(st.booleans(), min_size=len(kept), max_size=len(kept)))
    return tuple(1 if s else d for d, s in zip(kept, shrink)), out


@given(pair=broadcast_pair(), seed=st.integers(0, 2**16))
@settings(max_examples=150, deadline=None)
def test_unbroadcast_is_the_adjoint_of_broadcasting(pair, seed):
    shape, out = pair
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(out)
    got = unbroadcast(g, shape)
    assert np.shape(got) == shape
    # <broadcast(v), g> == <v, unbroadcast(g)> for every v: the defining property of the backward of broadcasting
    v = rng.standard_normal(shape)
    np.testing.assert_allclose(np.sum(np.broadcast_to(v, out) * g), np.sum(v * got), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("grad_shape, shape", [((2, 3), (4,)), ((3,), (2, 3)), ((2, 3), (2, 4))])
def test_unbroadcast_names_both_shapes_when_impossible(grad_shape, shape):
    with pytest.raises(ValueError, match=r"unbroadcast: a gradient of shape .* cannot come from broadcasting shape"):
        unbroadcast(np.ones(grad_shape), shape)


# ---- every op against finite differences ----

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@given(pair=broadcast_pair(), swap=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_elementwise_ops_with_broadcasting(op, pair, swap, seed):
    small, big = pair
    a_shape, b_shape = (big, small) if swap else (small, big)
    rng = np.random.default_rng(seed)
    a, b = rand(rng, a_shape), rand(rng, b_shape, 0.5, 2.0) * rng.choice([-1, 1], b_shape)
    fn = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[op]
    gradcheck(fn, [a, b], **FD)


@pytest.mark.parametrize("fn", [lambda a: a * 2.5, lambda a: 2.5 * a, lambda a: 1 - a, lambda a: a - 3,
                                lambda a: 3 / a, lambda a: a / 4, lambda a: a + 1, lambda a: -a],
                         ids=["a*k", "k*a", "k-a", "a-k", "k/a", "a/k", "a+k", "neg"])
def test_ops_with_a_python_number(fn):
    rng = np.random.default_rng(0)
    gradcheck(fn, [rand(rng, (2, 3), 0.5, 2.0)], **FD)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((2, 3), (3, 4)), ((3,), (3, 4)), ((4, 3), (3,)), ((5,), (5,)), ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)), ((4, 3), (2, 3, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((3,), (2, 3, 4)), ((2, 4, 3), (3,)),
])
def test_matmul(a_shape, b_shape):
    rng = np.random.default_rng(0)
    gradcheck(lambda a, b: a @ b, [rand(rng, a_shape), rand(rng, b_shape)], **FD)


@st.composite
def reduction(draw):
    shape = draw(shapes)
    kind = draw(st.sampled_from(["none", "int", "neg", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(0, len(shape) - 1))
    elif kind == "neg":
        axis = draw(st.integers(-len(shape), -1))
    else:
        axis = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@given(case=reduction(), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_reductions(op, case, seed):
    shape, axis, keepdims = case
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) / 7.0  # distinct: no ties for max
    gradcheck(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), [x], **FD)


def test_max_splits_the_gradient_evenly_among_ties():
    x = Tensor([[1.0, 5.0, 5.0], [2.0, 2.0, 2.0]], requires_grad=True)
    x.max(axis=1).backward(np.array([1.0, 3.0]))
    np.testing.assert_allclose(x.grad.data, [[0, 0.5, 0.5], [1, 1, 1]])
    y = Tensor(np.ones((2, 2)), requires_grad=True)
    y.max().backward()
    np.testing.assert_allclose(y.grad.data, 0.25)


@given(shape=shapes, seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_reshape_and_transpose(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    perm = tuple(int(p) for p in rng.permutation(len(shape)))
    gradcheck(lambda t: t.reshape(-1), [x], **FD)
    gradcheck(lambda t: t.transpose(*perm), [x], **FD)
    gradcheck(lambda t: t.transpose(perm), [x], **FD)
    gradcheck(lambda t: t.transpose(), [x], **FD)
    gradcheck(lambda t: t.T.reshape(*reversed(shape)), [x], **FD)


@pytest.mark.parametrize("index", [1, (slice(None), 2), (slice(None, None, 2),), np.array([0, 0, 2, 0]),
                                   (np.array([1, 1, 0]), np.array([3, 3, 3])), np.array([True, False, True]),
                                   (Ellipsis, -1)],
                         ids=["int", "slice-col", "step", "repeated-fancy", "2d-fancy-repeats", "mask", "ellipsis"])
def test_getitem_scatter_adds(index):
    rng = np.random.default_rng(0)
    gradcheck(lambda t: t[index], [rng.standard_normal((3, 4))], **FD)


def test_getitem_repeated_index_adds_every_occurrence():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 1])].sum().backward()
    np.testing.assert_allclose(x.grad.data, [2, 1, 0])


def away_from_zero(x):
    return np.where(np.abs(x) < 1e-3, 0.5, x)


@pytest.mark.parametrize("act", [ReLU, Sigmoid, Tanh, GELU], ids=lambda a: a.__name__)
@given(x=hnp.arrays(np.float64, shapes, elements=st.floats(-6, 6)))
@settings(max_examples=30, deadline=None)
def test_activations(act, x):
    gradcheck(act(), [away_from_zero(x)], **FD)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data())
@settings(max_examples=30, deadline=None)
def test_softmax_along_any_axis(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(len(shape)).standard_normal(shape) * 3
    gradcheck(Softmax(axis=axis), [x], **FD)


def test_activation_gradients_keep_float32():
    x = Tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4) + 0.01, requires_grad=True)
    for act in (ReLU(), Sigmoid(), Tanh(), GELU(), Softmax()):
        x.grad = None
        (act(x) * Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))).sum().backward()
        assert x.grad.dtype == np.float32 and x.grad.shape == (3, 4), act


# ---- cross_entropy, as Module 04 records it ----

def cross_entropy_as_specified(logits, targets):
    """The spec in source/AUTHORING.md: inputs (logits,), saved targets int64 (batch,) and probs (batch, classes),
    loss = mean over the batch of -log probs[i, targets[i]]."""
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = Tensor(-logp[np.arange(len(targets)), targets].mean())
    return record("cross_entropy", loss, (logits,), targets=np.asarray(targets, dtype=np.int64), probs=np.exp(logp))


@given(batch=st.integers(1, 5), classes=st.integers(2, 5), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_cross_entropy_rule(batch, classes, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, batch)
    gradcheck(lambda z: cross_entropy_as_specified(z, targets), [rng.standard_normal((batch, classes)) * 3], **FD)


def test_cross_entropy_gradient_by_hand():
    z = Tensor(np.log([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]]).astype(np.float32), requires_grad=True)
    cross_entropy_as_specified(z, [1, 0]).backward()
    np.testing.assert_allclose(z.grad.data, np.array([[0.1, -0.3, 0.2], [-0.5, 0.25, 0.25]]) / 2, atol=1e-6)
    assert z.grad.dtype == np.float32


def test_every_rule_alone_against_finite_differences():
    """check_rule calls each registered rule directly (no engine) on one recorded op."""
    rng = np.random.default_rng(3)
    cases = {"add": (lambda a, b: a + b, [rng.standard_normal((2, 3)), rng.standard_normal(3)]),
             "matmul": (lambda a, b: a @ b, [rng.standard_normal((2, 2, 3)), rng.standard_normal((3, 4))]),
             "Softmax": (Softmax(axis=0), [rng.standard_normal((3, 4))])}
    for op, (fn, arrays) in cases.items():
        check_rule(BACKWARD_RULES[op], fn, arrays)


# ---- the engine ----

def test_every_core_op_has_a_rule_and_the_engine_is_registered():
    assert set(CORE_OPS) <= set(BACKWARD_RULES), sorted(set(CORE_OPS) - set(BACKWARD_RULES))
    assert AUTOGRAD["engine"] is backward
    assert autograd.no_grad is no_grad


def test_a_tensor_used_twice_gets_the_sum():
    x = Tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, -4.0, 6.0])
    y = Tensor([2.0], requires_grad=True)
    z = y * 3
    (z * z + z + y).sum().backward()  # d/dy (9y^2 + 3y + y) = 18y + 4
    np.testing.assert_allclose(y.grad.data, [40.0])


def test_gradients_accumulate_across_backward_calls_until_zero_grad():
    w = Tensor([1.0, 2.0], requires_grad=True)
    for k in range(1, 4):
        (w * 3).sum().backward()
        np.testing.assert_allclose(w.grad.data, [3.0 * k, 3.0 * k])
    zero_grad([w])
    assert w.grad is None
    (w * 5).sum().backward()
    np.testing.assert_allclose(w.grad.data, [5.0, 5.0])


def test_only_leaves_get_grad_in_their_own_shape_and_dtype_as_fresh_arrays():
    w = Tensor(np.ones((3, 1), dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    h = w * Tensor(np.ones((2, 3, 4), dtype=np.float64)) + b  # promoted to float64, broadcast to (2, 3, 4)
    h.sum().backward()
    assert w.grad.shape == (3, 1) and w.grad.dtype == np.float32
    assert b.grad.shape == (4,) and b.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad.data, 8.0)
    np.testing.assert_allclose(b.grad.data, 6.0)
    assert h.grad is None
    assert w.grad.data.flags.writeable and b.grad.data.flags.writeable
    assert not np.shares_memory(w.grad.data, b.grad.data)


def test_constants_and_no_grad_are_not_differentiated():
    x = Tensor([1.0, 2.0])
    w = Tensor([3.0, 4.0], requires_grad=True)
    (x * w).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(w.grad.data, [1.0, 2.0])
    with no_grad():
        y = w * 2
    assert y.node is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_mlp_matches_hand_written_float64_backprop():
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    W1, b1, W2, b2 = rng.standard_normal((5, 6)), rng.standard_normal(6), rng.standard_normal((6, 3)), rng.standard_normal(3)
    params = [Tensor(p, requires_grad=True) for p in (W1, b1, W2, b2)]
    h = ReLU()(Tensor(X) @ params[0] + params[1])
    d = h @ params[2] + params[3] - Tensor(T)
    (d * d).mean().backward()
    # by hand
    z1 = X @ W1 + b1
    a1 = np.maximum(z1, 0)
    dd = 2 * (a1 @ W2 + b2 - T) / d.size
    gW2, gb2 = a1.T @ dd, dd.sum(0)
    dz1 = (dd @ W2.T) * (z1 > 0)
    gW1, gb1 = X.T @ dz1, dz1.sum(0)
    for p, want in zip(params, (gW1, gb1, gW2, gb2)):
        np.testing.assert_allclose(p.grad.data, want, rtol=1e-10, atol=1e-12)


def test_a_whole_network_against_finite_differences():
    rng = np.random.default_rng(1)

    def net(x, W1, b1, W2):
        h = Tanh()(x @ W1 + b1)
        p = Softmax(axis=-1)(GELU()(h) @ W2)
        return (p.max(axis=-1) + p.mean(axis=0)[0]).sum() / 3

    gradcheck(net, [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5),
                    rng.standard_normal((5, 2))], **FD)


def test_deep_graph_needs_no_recursion():
    x = Tensor(np.array([1.0]), requires_grad=True)
    h = x
    for _ in range(5000):
        h = h * 1.0
    h.backward()
    np.testing.assert_allclose(x.grad.data, [1.0])
    assert len(topological_order(h)) == 5001


def test_topological_order_puts_every_tensor_after_its_inputs_once():
    a = Tensor(np.ones(3), requires_grad=True)
    b = a * 2
    c = b + a
    d = c * b + Tensor(np.ones(3))
    order = topological_order(d)
    assert len(order) == len({id(t) for t in order}) == 5  # a, b, c, c*b, d (the constant is not listed)
    pos = {id(t): k for k, t in enumerate(order)}
    for t in order:
        for v in (t.node.inputs if t.node else ()):
            if isinstance(v, Tensor) and v.requires_grad:
                assert pos[id(v)] < pos[id(t)]


# ---- clear errors ----

def test_omitting_grad_for_a_non_scalar_names_the_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"single-element .*\(2, 3\)"):
        (x * 2).backward()


def test_a_grad_of_the_wrong_shape_names_both_shapes():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        backward(x * 2, np.ones(3))


def test_a_missing_rule_names_the_op_and_who_registers_it(monkeypatch):
    x = Tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no backward rule for op 'conv9d'.*register_backward\('conv9d'\)"):
        record("conv9d", Tensor([2.0]), (x,)).backward()
    monkeypatch.delitem(BACKWARD_RULES, "mul")
    with pytest.raises(RuntimeError, match=r"'mul'.*Module 05"):
        (x * 2).backward()


def test_a_broken_rule_is_reported_with_its_op(monkeypatch):
    x = Tensor(np.ones(3), requires_grad=True)
    monkeypatch.setitem(BACKWARD_RULES, "broken_count", lambda g, out: (g, g))
    with pytest.raises(RuntimeError, match=r"'broken_count' \(function .*\) returned .* for 1 input"):
        record("broken_count", Tensor(x.data * 2), (x,)).backward(np.ones(3))
    monkeypatch.setitem(BACKWARD_RULES, "broken_shape", lambda g, out: (g.sum(keepdims=True),))
    with pytest.raises(RuntimeError, match=r"'broken_shape' \(function .*\) returned a gradient of shape \(1,\) for input 0 of shape \(3,\)"):
        record("broken_shape", Tensor(x.data * 2), (x,)).backward(np.ones(3))


def test_gradcheck_catches_a_wrong_rule_and_names_the_input(monkeypatch):
    monkeypatch.setitem(BACKWARD_RULES, "wrong_square", None)  # restored (removed) after the test

    @register_backward("wrong_square")
    def wrong(grad, out):
        (a,) = out.node.inputs
        return (grad * a.data,)  # forgot the factor 2

    with pytest.raises(AssertionError, match=r"gradcheck: input 1 \(shape \(3,\)\)"):
        gradcheck(lambda b, a: b + record("wrong_square", Tensor(a.data ** 2), (a,)),
                  [np.ones(3), np.array([1.0, 2.0, 3.0])])


def test_gradcheck_reports_its_errors_and_refuses_an_unrecorded_output():
    res = gradcheck(lambda a: (a * a).sum(), [np.array([1.0, 2.0])])
    assert set(res) == {"max_abs", "max_rel", "per_input"} and res["max_abs"] < 1e-6 and len(res["per_input"]) == 1
    with pytest.raises(RuntimeError, match="recorded no graph"):
        gradcheck(lambda a: Tensor(a.data * 2), [np.ones(2)])


# ---- Modules 03 and 04 are built from these ops (and cross_entropy) ----

def test_linear_against_finite_differences():
    from tinytorch_lib.layers import Linear

    def linear_with(x, W, b):
        layer = Linear(W.shape[1], W.shape[0])
        layer.weight, layer.bias = W, b
        return layer(x)

    rng = np.random.default_rng(0)
    gradcheck(linear_with, [rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)], **FD)
    gradcheck(linear_with, [rng.standard_normal((2, 4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)], **FD)


def test_linear_parameters_get_float32_gradients_of_their_shape():
    from tinytorch_lib.layers import Linear

    layer = Linear(3, 4, rng=0)
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    layer(x).sum().backward()
    assert layer.weight.grad.shape == (4, 3) and layer.weight.grad.dtype == np.float32
    assert layer.bias.grad.shape == (4,) and layer.bias.grad.dtype == np.float32
    np.testing.assert_allclose(layer.weight.grad.data, 2.0)
    np.testing.assert_allclose(layer.bias.grad.data, 2.0)


@given(batch=st.integers(1, 5), classes=st.integers(2, 5), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_module_04_losses_against_finite_differences(batch, classes, seed):
    from tinytorch_lib.losses import CrossEntropyLoss, MSELoss

    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, batch)
    gradcheck(lambda z: CrossEntropyLoss()(z, targets), [rng.standard_normal((batch, classes)) * 3], **FD)
    goal = rng.standard_normal((batch, classes))
    gradcheck(lambda p: MSELoss()(p, goal), [rng.standard_normal((batch, classes))], **FD)


def test_cross_entropy_of_module_04_matches_the_hand_made_spec():
    from tinytorch_lib.losses import CrossEntropyLoss

    rng = np.random.default_rng(2)
    z = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    a, b = Tensor(z, requires_grad=True), Tensor(z, requires_grad=True)
    CrossEntropyLoss()(a, y).backward()
    cross_entropy_as_specified(b, y).backward()
    np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=1e-12, atol=1e-15)


def test_a_few_sgd_steps_on_a_sequential_lower_the_loss():
    from tinytorch_lib.layers import Linear, Sequential
    from tinytorch_lib.losses import CrossEntropyLoss

    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((64, 4)).astype(np.float32))
    y = (x.data[:, 0] + x.data[:, 1] > 0).astype(np.int64)
    model = Sequential(Linear(4, 16, rng=1), ReLU(), Linear(16, 2, rng=2))
    loss_fn = CrossEntropyLoss()
    losses = []
    for _ in range(30):
        zero_grad(model.parameters())
        loss = loss_fn(model(x), y)
        loss.backward()
        losses.append(loss.item())
        with no_grad():
            for p in model.parameters():
                p.data -= 0.5 * p.grad.data
    assert losses[-1] < 0.5 * losses[0], losses
