"""Module 15: quantization parameters, round trips, observers, int8 layers and quantize() on the digit models."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinytorch_lib import data_dir
from tinytorch_lib.activations import ReLU
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.layers import Linear, Sequential
from tinytorch_lib.quantization import (HalfLinear, MinMaxObserver, PercentileObserver, QuantizedConv2d,
                                        QuantizedLinear, dequantize_tensor, model_arch, quantization_params,
                                        quantize, quantize_tensor)
from tinytorch_lib.profiler import model_bytes
from tinytorch_lib.spatial import Conv2d, conv2d
from tinytorch_lib.tensor import Tensor
from tinytorch_lib.training import evaluate, load_model, save_model

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=finite),
       st.sampled_from([None, 0, 1, -1]), st.booleans(), st.integers(2, 8))
def test_round_trip_error_is_at_most_half_a_step(x, axis, symmetric, bits):
    q, scale, zp = quantize_tensor(x, bits=bits, symmetric=symmetric, axis=axis)
    assert q.dtype == np.int8 and q.shape == x.shape
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    back = dequantize_tensor(q, scale, zp, axis=axis)
    s = np.asarray(scale, dtype=np.float64)
    if axis is not None:
        shape = [1, 1]
        shape[axis] = -1
        s = s.reshape(shape)
    assert np.all(np.abs(back.astype(np.float64) - x) <= s / 2 * (1 + 1e-5) + 1e-6)


def test_zero_is_exact_in_affine_and_symmetric():
    for sym in (True, False):
        q, s, z = quantize_tensor(np.array([0.3, 0.0, 2.7, -0.1]), symmetric=sym)
        assert dequantize_tensor(q, s, z)[1] == 0.0


def test_params_against_hand_values():
    s, z = quantization_params(-1.0, 3.0, symmetric=False)
    assert np.isclose(s, 4 / 255) and z == -64
    s, z = quantization_params(np.array([0.0, -2.0]), np.array([0.0, 1.0]))
    assert np.allclose(s, [1.0, 2 / 127]) and np.all(z == 0)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("symmetric", [True, False])
def test_a_range_too_narrow_for_a_float32_scale_gets_scale_1(symmetric):
    # 1e-44 / 127 is positive in float64 and rounds to 0 in float32; x / 0 would be 0 / 0 = NaN codes.
    s, z = quantization_params(0.0, 1e-44, symmetric=symmetric)
    assert s.dtype == np.float32 and s == 1.0 and z == 0
    x = np.array([0.0, 1e-44, 0.0], dtype=np.float32)
    q, scale, zp = quantize_tensor(x, symmetric=symmetric)
    assert np.array_equal(q, [0, 0, 0]) and scale == 1.0
    assert np.allclose(dequantize_tensor(q, scale, zp), x, atol=1e-40)


@pytest.mark.parametrize("lo, hi, bits", [(np.nan, 1.0, 8), (0.0, np.inf, 8), (-1.0, 1.0, 1), (-1.0, 1.0, 9)])
def test_bad_ranges_and_bits_are_clear_errors(lo, hi, bits):
    with pytest.raises(ValueError, match="NaN or infinity|bits"):
        quantization_params(lo, hi, bits=bits)


def test_axis_out_of_range_and_empty_input():
    with pytest.raises(ValueError, match=r"axis 3 is out of range for shape \(2, 3\)"):
        quantize_tensor(np.ones((2, 3)), axis=3)
    with pytest.raises(ValueError, match="empty"):
        quantize_tensor(np.ones((0,)))


def test_observers():
    m = MinMaxObserver()
    for part in (np.array([1.0, -2.0]), np.array([[5.0]])):
        m.observe(part)
    assert m.range() == (-2.0, 5.0)
    p = PercentileObserver(99.0)
    values = np.concatenate([np.linspace(0, 1, 1000), [1000.0]])
    p.observe(values)
    assert p.range()[1] < 1.5
    for obs in (MinMaxObserver(), PercentileObserver()):
        with pytest.raises(ValueError, match="no values observed"):
            obs.range()
        with pytest.raises(ValueError, match="NaN or infinity"):
            obs.observe([np.inf])


def test_quantized_linear_is_the_integer_formula_and_stores_int8():
    rng = np.random.default_rng(0)
    lin = Linear(20, 7, rng=1)
    x = rng.uniform(0, 2, (5, 20)).astype(np.float32)
    q = QuantizedLinear.from_float(lin, (0.0, 2.0))
    s_x, z_x = float(q.input_scale.data[0]), int(q.input_zero_point.data[0])
    qx = np.clip(np.round(x / s_x) + z_x, -128, 127).astype(np.int64)
    want = (qx - z_x) @ q.weight_q.data.astype(np.int64).T * (s_x * q.weight_scale.data.astype(np.float64)) + lin.bias.data
    assert np.allclose(q(x).data, want, rtol=1e-5, atol=1e-6)
    assert q.state_dict()["weight_q"].dtype == np.int8
    assert model_bytes(q) == 20 * 7 + 7 * 4 + 4 + 4 + 7 * 4


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1)])
def test_quantized_conv_matches_float_conv_closely(stride, padding):
    rng = np.random.default_rng(2)
    conv = Conv2d(3, 5, 3, stride=stride, padding=padding, rng=3)
    x = rng.uniform(0, 1, (2, 3, 9, 9)).astype(np.float32)
    q = QuantizedConv2d.from_float(conv, (0.0, 1.0))
    ref = conv2d(x, conv.weight, conv.bias, stride, padding).data
    assert q(x).shape == ref.shape
    assert np.abs(q(x).data - ref).max() < 0.02 * np.abs(ref).max()


def test_quantize_leaves_the_original_and_removes_hooks():
    net = Sequential(Linear(4, 6, rng=0), ReLU(), Linear(6, 2, rng=1))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    q = quantize(net, [np.random.default_rng(0).uniform(0, 1, (8, 4)).astype(np.float32)])
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())
    assert type(net[0]) is Linear and type(q[0]) is QuantizedLinear
    assert not any(m._forward_pre_hooks for _, m in list(net.named_modules()) + list(q.named_modules()))
    assert type(quantize(net, dtype="fp16")[2]) is HalfLinear


@pytest.mark.parametrize("kwargs, pattern", [({"calibration_data": []}, "empty"), ({"dtype": "int2"}, "int2"),
                                             ({"calibration_data": [np.full((1, 4), np.nan, np.float32)]}, "NaN")])
def test_quantize_bad_input(kwargs, pattern):
    net = Sequential(Linear(4, 2, rng=0))
    with pytest.raises(ValueError, match=pattern):
        quantize(net, **kwargs)
    assert not net[0]._forward_pre_hooks


@pytest.mark.parametrize("name, flatten", [("mlp", True), ("cnn", False)])
def test_trained_models_int8_is_3_5x_smaller_within_half_a_point_and_reloads(tmp_path, name, flatten):
    model, _ = load_model(data_dir(f"{name}_digits.npz") / f"{name}_digits.npz")
    train_x = load_digits("train", flatten=flatten).tensors[0].data
    test = load_digits("test", flatten=flatten)
    q = quantize(model, [train_x[:128], train_x[128:256]])
    assert model_bytes(model) / model_bytes(q) >= 3.5
    base = evaluate(model, DataLoader(test, batch_size=360))
    acc = evaluate(q, DataLoader(test, batch_size=360))
    assert acc >= base - 0.005, (base, acc)
    path = tmp_path / "q.npz"
    save_model(path, q, model_arch(q))
    back, _ = load_model(path)
    assert np.array_equal(back(test.tensors[0]).data, q(test.tensors[0]).data)
    assert model_bytes(back) == model_bytes(q)


def test_loading_a_quantized_file_into_the_wrong_architecture_names_the_keys(tmp_path):
    net = Sequential(Linear(4, 6, rng=0), ReLU(), Linear(6, 2, rng=1))
    q = quantize(net, [np.ones((2, 4), np.float32)])
    other = quantize(Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1)), [np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"shape mismatch: .*'0.weight_q' is \(3, 4\) in the model, \(6, 4\) in the state"):
        other.load_state_dict(q.state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        net.load_state_dict(q.state_dict())


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weights_that_cannot_be_stored_are_clear_errors(dtype, bad):
    net = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    net[2].weight.data[1, 0] = bad
    # calibration runs the float model first: inf * 0 in its last matmul is NaN (a numpy warning, expected)
    with pytest.raises(ValueError, match=r"Linear's weight \(2, 3\) holds 1 NaN or infinite"), \
            np.errstate(invalid="ignore"):
        quantize(net, [np.ones((2, 4), np.float32)], dtype=dtype)


def test_fp16_refuses_weights_above_65504_instead_of_storing_inf():
    conv = Sequential(Conv2d(1, 2, 3, rng=0))
    conv[0].weight.data[0, 0, 0, 0] = 1e5
    with pytest.raises(ValueError, match="above float16's largest value 65504"):
        quantize(conv, dtype="fp16")
    conv[0].weight.data[0, 0, 0, 0] = 6e4
    assert np.isfinite(quantize(conv, dtype="fp16")[0].weight.data).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_int8_layers_refuse_nan_and_inf_inputs_alike_naming_the_layer(bad):
    lin, conv = Linear(3, 2, rng=0), Conv2d(1, 2, 3, rng=0)
    x = np.ones((1, 3), dtype=np.float32)
    x[0, 1] = bad
    with pytest.raises(ValueError, match=r"QuantizedLinear.*NaN or infinite"):
        QuantizedLinear.from_float(lin, (0.0, 2.0))(Tensor(x))
    img = np.ones((1, 1, 4, 4), dtype=np.float32)
    img[0, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=r"QuantizedConv2d.*NaN or infinite"):
        QuantizedConv2d.from_float(conv, (0.0, 2.0))(Tensor(img))


def test_half_linear_checks_the_input_width_like_linear():
    with pytest.raises(ValueError, match=r"HalfLinear\(3, 2\): expected input of shape \(\.\.\., 3\), got \(2, 4\)"):
        HalfLinear.from_float(Linear(3, 2, rng=0))(Tensor(np.ones((2, 4), dtype=np.float32)))


def test_all_zero_calibration_data_is_refused_not_given_scale_one():
    net = Sequential(Linear(8, 4, rng=0), ReLU(), Linear(4, 2, rng=1))
    with pytest.raises(ValueError, match=r"input range \[0, 0\]"):
        quantize(net, [np.zeros((4, 8), dtype=np.float32)])
