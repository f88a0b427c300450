"""Library tests for tinytorch_lib.tensor (Module 01), against numpy float64 oracles."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch_lib.tensor import Tensor, broadcast_shape, matmul, reshape, transpose


@pytest.mark.parametrize("dtype, itemsize", [(np.float64, 8), (np.float32, 4), (np.float16, 2), (np.int8, 1)])
def test_dtype_is_kept_and_nbytes_are_real(dtype, itemsize):
    t = Tensor(np.zeros((10, 7), dtype=dtype))
    assert t.dtype == dtype
    assert t.nbytes == 70 * itemsize == t.data.nbytes


def test_python_floats_become_float32_and_ints_stay_integer():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"
    assert Tensor([1, 2], dtype=np.float16).dtype == np.float16
    assert Tensor(Tensor(np.int8(3))).dtype == np.int8


def test_int8_arithmetic_stays_int8():
    q = Tensor(np.array([1, 2, 3], dtype=np.int8))
    assert (q + 1).dtype == np.int8
    assert (2 * q).dtype == np.int8
    assert (q - q).dtype == np.int8


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)


@given(shapes, shapes)
@settings(max_examples=300, deadline=None)
def test_broadcast_shape_matches_numpy(a, b):
    try:
        want = np.broadcast_shapes(a, b)
    except ValueError:
        with pytest.raises(ValueError, match=r"cannot broadcast"):
            broadcast_shape(a, b)
    else:
        assert broadcast_shape(a, b) == want


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4), st.sampled_from("+-*/"))
@settings(max_examples=100, deadline=None)
def test_elementwise_matches_float64_oracle(shapes, op):
    rng = np.random.default_rng(0)
    a = np.asarray(rng.uniform(1, 2, shapes.input_shapes[0]))
    b = np.asarray(rng.uniform(1, 2, shapes.input_shapes[1]))
    got = eval(f"Tensor(a) {op} Tensor(b)").data
    assert got.shape == shapes.result_shape
    np.testing.assert_allclose(got, eval(f"a {op} b"), rtol=1e-12)


def test_elementwise_shape_error_names_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"add: .*\(3, 4\).*\(4, 3\)"):
        Tensor(np.zeros((3, 4))) + Tensor(np.zeros((4, 3)))


def test_matmul_against_float64_and_error_message():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b, rtol=1e-12)
    with pytest.raises(ValueError, match=r"matmul: \(3, 4\) @ \(5, 2\): inner dimensions 4 and 5 differ"):
        matmul(Tensor(np.ones((3, 4))), Tensor(np.ones((5, 2))))
    with pytest.raises(ValueError):
        matmul(Tensor(3.0), Tensor(np.ones(3)))


@pytest.mark.parametrize("kind", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
def test_reductions_match_numpy(kind, axis):
    r = np.random.default_rng(2).standard_normal((3, 4, 5))
    got = getattr(Tensor(r), kind)(axis=axis, keepdims=True)
    np.testing.assert_allclose(got.data, getattr(r, kind)(axis=axis, keepdims=True), rtol=1e-12)


def test_reduction_bad_axis_names_axis_and_shape():
    with pytest.raises(ValueError, match=r"axis 2 .*\(2, 3\)"):
        Tensor(np.ones((2, 3))).sum(axis=2)


def test_reshape_and_transpose():
    x = Tensor(np.arange(24, dtype=np.int8).reshape(2, 3, 4))
    assert reshape(x, 4, -1).shape == (4, 6) and reshape(x, 4, -1).dtype == np.int8
    assert x.reshape((24,)).shape == (24,)
    np.testing.assert_array_equal(transpose(x, 0, 2, 1).data, np.transpose(x.data, (0, 2, 1)))
    assert x.T.shape == (4, 3, 2)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(5, 5\)"):
        x.reshape(5, 5)
    with pytest.raises(ValueError):
        x.reshape(-1, -1)
    with pytest.raises(ValueError):
        x.transpose(0, 0, 1)
