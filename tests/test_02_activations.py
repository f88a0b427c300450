"""Library tests for tinytorch_lib.activations (Module 02), against float64 formulas."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp
from hypothesis import strategies as st

from tinytorch_lib.activations import GELU, ReLU, Sigmoid, Softmax, Tanh
from tinytorch_lib.tensor import Tensor

finite = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.floats(-1e4, 1e4, allow_nan=False))

ORACLES = {
    ReLU: lambda x: np.maximum(x, 0),
    Sigmoid: lambda x: 0.5 * (1 + np.tanh(x / 2)),
    Tanh: np.tanh,
    GELU: lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
}


@pytest.mark.parametrize("act", list(ORACLES), ids=lambda a: a.__name__)
@given(x=finite)
@settings(max_examples=60, deadline=None)
def test_elementwise_activations_match_oracle_without_warnings(act, x):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = act()(Tensor(x))
    assert got.shape == x.shape and got.dtype == np.float64
    with np.errstate(over="ignore"):  # the oracle's own x**3 may overflow; inf/large is fine there
        want = ORACLES[act](x)
    np.testing.assert_allclose(got.data, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", [ReLU, Sigmoid, Tanh, GELU, Softmax])
def test_float32_in_float32_out_and_ints_become_float32(act):
    assert act()(Tensor(np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4))).dtype == np.float32
    assert act()(Tensor([[1, 2, 3]])).dtype == np.float32


@given(x=finite, shift=st.floats(-1e3, 1e3))
@settings(max_examples=60, deadline=None)
def test_softmax_is_a_distribution_and_shift_invariant(x, shift):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = Softmax(axis=-1)(Tensor(x)).data
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-9)
    assert (p >= 0).all()
    np.testing.assert_allclose(Softmax()(Tensor(x + shift)).data, p, atol=1e-9)


def test_softmax_of_large_logits_has_no_nan():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = Softmax()(Tensor([[1000.0, 1001.0, 1002.0]])).data
    np.testing.assert_allclose(p, [[0.09003057, 0.24472847, 0.66524096]], rtol=1e-6)


def test_softmax_axis_and_bad_axis():
    r = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_allclose(Softmax(axis=1)(Tensor(r)).data.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match=r"axis 3 .*\(2, 3, 4\)"):
        Softmax(axis=3)(Tensor(r))


def test_activations_accept_arrays_and_keep_shape():
    assert ReLU()(np.array([[-1.0, 2.0]])).shape == (1, 2)
