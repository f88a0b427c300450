"""Library tests for tinytorch_lib.layers (Module 03): the Module tree, its seams, Linear and Dropout.

Oracles: float64 numpy for Linear, hand counts for parameters, explicit names for the tree."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import (Dropout, Lambda, Linear, Module, Parameter, Sequential, manual_seed)
from tinytorch_lib.tensor import BACKWARD_RULES, Tensor, no_grad


class Block(Module):
    """fc (Linear) then a scale parameter, with a buffer: the kinds of things later modules build."""

    def __init__(self, n_in, n_out, rng=0):
        super().__init__()
        self.fc = Linear(n_in, n_out, rng=rng)
        self.scale = Parameter(np.ones(n_out, dtype=np.float32))
        self.register_buffer("mask", np.ones((n_out, n_in), dtype=bool))

    def forward(self, x):
        return self.fc(x) * self.scale


def mlp(seed=0):
    manual_seed(seed)
    return Sequential(Linear(64, 128), ReLU(), Linear(128, 64), ReLU(), Linear(64, 10))


# ---- Parameter and tracking ----

def test_parameter_is_a_tensor_that_requires_grad():
    p = Parameter(np.zeros((2, 3), dtype=np.float32))
    assert isinstance(p, Tensor) and p.requires_grad and p.shape == (2, 3) and p.dtype == np.float32
    assert Parameter([1.0, 2.0]).dtype == np.float32


def test_attributes_are_tracked_in_assignment_order():
    b = Block(3, 2)
    assert list(b._modules) == ["fc"] and list(b._parameters) == ["scale"] and list(b._buffers) == ["mask"]
    # like PyTorch: module by module in named_modules() order, so the root's own parameters come first
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert [n for n, _ in b.named_buffers()] == ["mask"]
    assert [n for n, _ in b.named_modules()] == ["", "fc"]
    b.fc = Linear(3, 2, bias=False, rng=1)  # replacing keeps the slot
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight"]
    b.scale = None  # a plain value untracks the name
    assert [n for n, _ in b.named_parameters()] == ["fc.weight"]
    del b.fc
    assert b.named_modules() == [("", b)]


def test_assigning_before_super_init_says_what_to_do():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter([1.0])
            super().__init__()

    with pytest.raises(AttributeError, match=r"Bad: call super\(\)\.__init__\(\) before assigning 'w'"):
        Bad()


def test_buffers_accept_tensors_and_arrays_and_reject_parameters():
    b = Block(3, 2)
    b.mask = np.zeros((2, 3), dtype=bool)  # reassigning a buffer keeps it a buffer
    assert isinstance(b.mask, Tensor) and b._buffers["mask"] is b.mask and b.mask.dtype == bool
    with pytest.raises(TypeError, match="buffer"):
        b.register_buffer("p", Parameter([1.0]))
    with pytest.raises(TypeError, match="list"):
        b.register_buffer("q", [1.0])
    with pytest.raises(ValueError, match="already a parameter"):
        b.register_buffer("scale", Tensor([1.0]))
    with pytest.raises(ValueError, match="without '.'"):
        b.register_buffer("a.b", Tensor([1.0]))


# ---- traversal ----

def test_named_modules_parameters_buffers_on_a_nested_tree():
    net = Sequential(Block(4, 3), Sequential(ReLU(), Block(3, 2)))
    assert [n for n, _ in net.named_modules()] == ["", "0", "0.fc", "1", "1.0", "1.1", "1.1.fc"]
    assert isinstance(net.get_submodule("1.0"), Lambda)
    assert [n for n, _ in net.named_parameters()] == ["0.scale", "0.fc.weight", "0.fc.bias",
                                                      "1.1.scale", "1.1.fc.weight", "1.1.fc.bias"]
    assert [n for n, _ in net.named_buffers()] == ["0.mask", "1.1.mask"]
    assert [n for n, _ in net.named_modules(prefix="m")][:2] == ["m", "m.0"]
    assert net.parameters()[1] is net[0].fc.weight
    assert net.children() == [net[0], net[1]] and len(net.modules()) == 7


def test_shared_modules_and_tied_parameters_are_listed_once():
    shared = Linear(2, 2, rng=0)
    net = Sequential(shared, ReLU(), shared)
    assert [n for n, _ in net.named_modules()] == ["", "0", "1"]
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    tied = Sequential(Linear(2, 2, rng=0), Linear(2, 2, rng=1))
    tied[1].weight = tied[0].weight
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_mlp_parameter_count_matches_the_hand_count():
    model = mlp()
    assert sum(p.size for p in model.parameters()) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 17226
    assert sum(p.nbytes for p in model.parameters()) == 17226 * 4


# ---- hooks ----

def test_hooks_follow_pytorch_semantics():
    lin = Linear(3, 2, rng=0)
    x = Tensor(np.ones((1, 3), dtype=np.float32))
    plain = lin(x).data.copy()
    seen = []
    h1 = lin.register_forward_pre_hook(lambda m, args: args[0] * 2)          # not a tuple: wrapped
    h2 = lin.register_forward_pre_hook(lambda m, args: seen.append(("pre", args[0].data.sum())))
    h3 = lin.register_forward_hook(lambda m, args, out: seen.append(("post", args[0].data.sum())))
    h4 = lin.register_forward_hook(lambda m, args, out: out * 0)
    got = lin(x).data
    assert seen == [("pre", 6.0), ("post", 6.0)]
    np.testing.assert_array_equal(got, np.zeros_like(plain))
    for h in (h1, h2, h3, h4):
        h.remove()
        h.remove()  # removing twice is harmless
    np.testing.assert_array_equal(lin(x).data, plain)
    with pytest.raises(TypeError, match="callable"):
        lin.register_forward_hook("not a function")


def test_kwargs_reach_forward_and_every_layer_of_a_sequential_can_be_timed():
    class Kw(Module):
        def forward(self, x, position=0):
            return x + position

    assert Kw()(Tensor([1.0]), position=5).data.tolist() == [6.0]
    model = mlp()
    order = []
    handles = [m.register_forward_hook(lambda m, a, o, name=name: order.append(name))
               for name, m in model.named_modules()]
    model(Tensor(np.zeros((2, 64), dtype=np.float32)))
    assert order == ["0", "1", "2", "3", "4", ""]
    for h in handles:
        h.remove()
    assert all(not m._forward_hooks for m in model.modules())


# ---- get/set submodule ----

def test_get_and_set_submodule_swap_a_layer_in_place():
    model = mlp()
    x = Tensor(np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32))
    before = model(x).data.copy()
    old = model.get_submodule("2")
    new = Linear(128, 64, rng=5)
    new.load_state_dict(old.state_dict())
    model.set_submodule("2", new)
    assert model[2] is new and list(model._modules) == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(model(x).data, before)
    nested = Sequential(Block(4, 3))
    assert nested.get_submodule("0.fc") is nested[0].fc
    nested.set_submodule("0.fc", Linear(4, 3, bias=False, rng=0))
    assert nested[0].fc.bias is None


@pytest.mark.parametrize("path, missing, where", [("5", "'5'", "the root"), ("0.fc.x", "'x'", "'0.fc'"),
                                                  ("0.nope", "'nope'", "'0'")])
def test_bad_paths_name_the_missing_part_and_what_exists(path, missing, where):
    net = Sequential(Block(4, 3))
    with pytest.raises(AttributeError) as e:
        net.get_submodule(path)
    assert missing in str(e.value) and where in str(e.value)
    with pytest.raises(AttributeError):
        net.set_submodule(path, Linear(1, 1))
    if path == "0.nope":
        assert "['fc']" in str(e.value)


def test_set_submodule_rejects_non_modules_and_the_root():
    net = Sequential(Linear(2, 2))
    with pytest.raises(TypeError, match="Module"):
        net.set_submodule("0", np.eye(2))
    with pytest.raises(ValueError):
        net.set_submodule("", Linear(2, 2))


# ---- state_dict ----

def test_state_dict_is_a_copy_of_parameters_then_buffers():
    b = Block(3, 2)
    sd = b.state_dict()
    assert list(sd) == ["scale", "fc.weight", "fc.bias", "mask"]
    assert all(isinstance(v, np.ndarray) for v in sd.values()) and sd["mask"].dtype == bool
    b.fc.weight.data += 1
    assert not np.array_equal(sd["fc.weight"], b.fc.weight.data)


def test_load_state_dict_round_trips_into_the_same_objects():
    src, dst = mlp(0), mlp(1)
    params = dst.parameters()
    dst.load_state_dict(src.state_dict())
    assert all(a is b for a, b in zip(params, dst.parameters()))
    for (n, a), (_, b) in zip(src.named_parameters(), dst.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    x = Tensor(np.ones((2, 64), dtype=np.float32))
    np.testing.assert_array_equal(src(x).data, dst(x).data)


def test_load_state_dict_error_names_every_problem_and_changes_nothing():
    model = mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = model.state_dict()
    del bad["4.bias"]
    bad["4.b"] = np.zeros(10)
    bad["0.weight"] = np.zeros((64, 128))
    bad["2.bias"] = np.full(64, 7.0)
    with pytest.raises(ValueError) as e:
        model.load_state_dict(bad)
    msg = str(e.value)
    assert "missing keys ['4.bias']" in msg and "unexpected keys ['4.b']" in msg
    assert "'0.weight' is (128, 64) in the model, (64, 128) in the state" in msg
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")


def test_deepcopy_gives_an_independent_model():
    model = mlp()
    clone = copy.deepcopy(model)
    clone[0].weight.data[...] = 0
    assert np.abs(model[0].weight.data).sum() > 0
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]


# ---- train / eval / zero_grad ----

def test_train_eval_are_recursive_and_zero_grad_clears_every_grad():
    net = Sequential(Block(2, 2), Sequential(Dropout(0.5)))
    assert net.eval() is net and all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    for p in net.parameters():
        p.grad = Tensor(np.ones(p.shape, dtype=p.dtype))
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ---- Linear ----

@given(batch=st.integers(1, 5), n_in=st.integers(1, 9), n_out=st.integers(1, 9), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_linear_matches_float64_numpy(batch, n_in, n_out, seed):
    lin = Linear(n_in, n_out, rng=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((batch, n_in))
    got = lin(Tensor(x.astype(np.float32)))
    want = x @ lin.weight.data.astype(np.float64).T + lin.bias.data
    assert got.shape == (batch, n_out) and got.dtype == np.float32
    np.testing.assert_allclose(got.data, want, rtol=1e-4, atol=1e-5)
    bound = 1 / np.sqrt(n_in)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.bias.data).max() <= bound


def test_linear_init_is_pytorch_default_and_seeded():
    r = np.random.default_rng(3)
    lin = Linear(16, 4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(lin.weight.data, r.uniform(-0.25, 0.25, (4, 16)).astype(np.float32))
    np.testing.assert_array_equal(lin.bias.data, r.uniform(-0.25, 0.25, (4,)).astype(np.float32))
    np.testing.assert_array_equal(Linear(16, 4, rng=3).weight.data, lin.weight.data)  # an int seed works too
    manual_seed(11)
    w1 = Linear(8, 8).weight.data.copy()
    w2 = Linear(8, 8).weight.data.copy()
    manual_seed(11)
    np.testing.assert_array_equal(Linear(8, 8).weight.data, w1)
    assert not np.array_equal(w1, w2)
    big = Linear(1000, 100, rng=0).weight.data.astype(np.float64)
    assert abs(big.var() - 1 / (3 * 1000)) < 0.05 / (3 * 1000), "U(-b, b) has variance b^2 / 3"


def test_linear_is_recorded_for_autograd_and_batches_leading_dims():
    lin = Linear(3, 2, rng=0)
    y = lin(Tensor(np.ones((4, 5, 3), dtype=np.float32)))
    assert y.shape == (4, 5, 2) and y.node.op == "add" and y.node.inputs[0].node.op == "matmul"
    with no_grad():
        assert lin(Tensor(np.ones((1, 3), dtype=np.float32))).node is None
    assert lin(Tensor([[1, 2, 3]])).dtype == np.float32  # integer input becomes float32


@pytest.mark.parametrize("shape", [(2, 4), (4,), (2, 3, 1)])
def test_linear_wrong_input_names_in_features_and_shape(shape):
    with pytest.raises(ValueError, match=rf"Linear\(3, 2\): expected input of shape \(\.\.\., 3\), got {re_shape(shape)}"):
        Linear(3, 2, rng=0)(Tensor(np.ones(shape, dtype=np.float32)))


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("args", [(0, 3), (3, -1), (2.5, 3), (True, 3)])
def test_linear_rejects_bad_sizes(args):
    with pytest.raises(ValueError, match="positive int"):
        Linear(*args)


def test_bad_rng_is_a_clear_error():
    with pytest.raises(TypeError, match="Generator"):
        Linear(2, 2, rng="seed")


# ---- Sequential ----

def test_sequential_indexing_and_wrapping():
    model = mlp()
    assert len(model) == 5 and model[-1] is model[4] and isinstance(model[1], Lambda)
    assert [type(m).__name__ for m in model] == ["Linear", "Lambda", "Linear", "Lambda", "Linear"]
    assert isinstance(model[1:3], Sequential) and model[1:3][1] is model[2]
    with pytest.raises(IndexError, match="5 modules: index 5"):
        model[5]
    with pytest.raises(TypeError, match="item 1"):
        Sequential(Linear(2, 2), 3)
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    h = np.maximum(x @ model[0].weight.data.T + model[0].bias.data, 0)
    h = np.maximum(h @ model[2].weight.data.T + model[2].bias.data, 0)
    want = h @ model[4].weight.data.T + model[4].bias.data
    np.testing.assert_allclose(model(Tensor(x)).data, want, rtol=1e-5, atol=1e-5)
    assert "Linear(in_features=64, out_features=128, bias=True)" in repr(model) and "Lambda(ReLU())" in repr(model)


# ---- Dropout ----

@given(p=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_dropout_is_inverted_and_seeded(p, seed):
    x = Tensor(np.ones((50, 40), dtype=np.float32))
    y = Dropout(p, rng=np.random.default_rng(seed))(x)
    keep = np.random.default_rng(seed).random((50, 40)) >= p
    np.testing.assert_allclose(y.data, keep / np.float32(1 - p), rtol=1e-6)
    assert y.dtype == np.float32
    # the mean is preserved in expectation: 2000 values, a loose 6-sigma bound
    sigma = np.sqrt(p / (1 - p) / x.size)
    assert abs(y.data.mean() - 1) < 6 * sigma + 1e-6


def test_dropout_eval_is_identity_and_p_is_checked():
    x = Tensor(np.ones(5, dtype=np.float32))
    d = Dropout(0.3)
    assert d.eval()(x) is x and Dropout(0)(x) is x
    for bad in (1.0, 1.5, -0.01, "0.5", None, True):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            Dropout(bad)


def test_dropout_records_its_mask_and_its_backward_rule_is_registered():
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    y = Dropout(0.5, rng=1)(x)
    assert y.node.op == "dropout" and y.node.inputs == (x,)
    mask = y.node.saved["mask"]
    np.testing.assert_array_equal(y.data, x.data * mask)
    grad = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    (gx,) = BACKWARD_RULES["dropout"](grad, y)
    np.testing.assert_array_equal(gx, grad * mask)


def test_dropout_draws_a_new_mask_every_call_even_with_an_int_seed():
    x = Tensor(np.ones(200, dtype=np.float32))
    d = Dropout(0.5, rng=0)
    assert not np.array_equal(d(x).data, d(x).data)
    np.testing.assert_array_equal(Dropout(0.5, rng=0)(x).data, Dropout(0.5, rng=0)(x).data)


def test_dropout_uses_the_shared_generator_when_rng_is_none():
    x = Tensor(np.ones(100, dtype=np.float32))
    manual_seed(4)
    a = Dropout(0.5)(x).data
    manual_seed(4)
    np.testing.assert_array_equal(Dropout(0.5)(x).data, a)
