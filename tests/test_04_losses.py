"""Library tests for tinytorch_lib.losses (Module 04), against float64 numpy and log-sum-exp oracles."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch_lib.losses import CrossEntropyLoss, MSELoss, log_softmax
from tinytorch_lib.tensor import Tensor


def lse_cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    """The oracle: float64 log-sum-exp minus the true logit, averaged."""
    z = z.astype(np.float64)
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return float((lse - z[np.arange(len(y)), y]).mean())


logit_batches = st.tuples(st.integers(1, 6), st.integers(1, 8)).flatmap(
    lambda nc: st.tuples(hnp.arrays(np.float64, nc, elements=st.floats(-1e4, 1e4, allow_nan=False)),
                         hnp.arrays(np.int64, nc[0], elements=st.integers(0, nc[1] - 1))))


# ---- MSELoss ----

@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                    elements=st.floats(-1e3, 1e3, allow_nan=False)), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_mse_matches_float64_numpy(x, seed):
    t = np.random.default_rng(seed).standard_normal(x.shape) * 100
    got = MSELoss()(Tensor(x), t)
    assert got.shape == () and got.dtype == np.float64
    np.testing.assert_allclose(got.item(), np.mean((x - t) ** 2), rtol=1e-12, atol=1e-12)


def test_mse_keeps_float32_and_is_built_from_recorded_operators():
    p = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    out = MSELoss()(p, np.zeros((2, 3)))
    assert out.dtype == np.float32 and out.item() == 1.0
    assert out.node.op == "mean" and out.node.inputs[0].node.op == "mul"
    assert out.node.inputs[0].node.inputs[0].node.op == "sub"
    assert MSELoss()(Tensor([1, 2]), [1, 4]).dtype == np.float32  # integer predictions become float32


@pytest.mark.parametrize("a, b", [((4, 1), (4,)), ((2, 3), (3, 2)), ((3,), ())])
def test_mse_refuses_to_broadcast_and_names_both_shapes(a, b):
    with pytest.raises(ValueError, match=rf"MSELoss: pred shape {_re(a)} and target shape {_re(b)} differ"):
        MSELoss()(Tensor(np.zeros(a)), np.zeros(b))


def _re(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# ---- log_softmax ----

@given(z=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                    elements=st.floats(-1e4, 1e4, allow_nan=False)), shift=st.floats(-1e3, 1e3))
@settings(max_examples=80, deadline=None)
def test_log_softmax_is_normalised_shift_invariant_and_never_overflows(z, shift):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        lp = log_softmax(z)
    assert lp.shape == z.shape and lp.dtype == np.float64 and (lp <= 1e-12).all()
    np.testing.assert_allclose(np.exp(lp).sum(axis=-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(log_softmax(z + shift), lp, atol=1e-6 * (1 + np.abs(lp)).max())


def test_log_softmax_worked_example_and_dtype():
    got = log_softmax(np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[-2.40760596, -1.40760596, -0.40760596]], rtol=1e-5)


# ---- CrossEntropyLoss ----

@given(batch=logit_batches)
@settings(max_examples=80, deadline=None)
def test_cross_entropy_matches_the_log_sum_exp_oracle(batch):
    z, y = batch
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = CrossEntropyLoss()(Tensor(z), y)
    assert got.shape == () and got.dtype == np.float64 and np.isfinite(got.item()) and got.item() >= -1e-9
    np.testing.assert_allclose(got.item(), lse_cross_entropy(z, y), rtol=1e-9, atol=1e-9)


@given(batch=logit_batches, shift=st.floats(-1e3, 1e3))
@settings(max_examples=60, deadline=None)
def test_cross_entropy_is_shift_invariant_per_row(batch, shift):
    z, y = batch
    rows = np.random.default_rng(0).uniform(-1, 1, (len(y), 1)) * shift
    a = CrossEntropyLoss()(Tensor(z), y).item()
    b = CrossEntropyLoss()(Tensor(z + rows), y).item()
    assert abs(a - b) <= 1e-6 * (1 + abs(a))


def test_cross_entropy_of_logits_1e4_is_finite_in_float32():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = CrossEntropyLoss()(Tensor(z), [2, 0])
    assert loss.dtype == np.float32 and np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), lse_cross_entropy(z, np.array([2, 0])), rtol=1e-6)


def test_uniform_logits_give_log_classes():
    for c in (2, 10, 100):
        assert np.isclose(CrossEntropyLoss()(Tensor(np.zeros((5, c))), np.arange(5) % c).item(), np.log(c))


def test_cross_entropy_records_the_op_with_targets_and_probs():
    """The contract Module 05's backward rule is written against (source/AUTHORING.md)."""
    r = np.random.default_rng(1)
    z = Tensor(r.standard_normal((6, 4)).astype(np.float32), requires_grad=True)
    y = np.array([0, 3, 1, 1, 2, 0], dtype=np.int32)
    out = CrossEntropyLoss()(z, Tensor(y))
    assert out.node.op == "cross_entropy" and out.node.inputs == (z,)
    t, p = out.node.saved["targets"], out.node.saved["probs"]
    assert t.dtype == np.int64 and t.shape == (6,) and np.array_equal(t, y)
    assert p.shape == (6, 4) and p.dtype == np.float32
    e = np.exp(z.data.astype(np.float64) - z.data.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    # the gradient the saved values imply, (probs - onehot) / N, equals finite differences of the loss
    grad = (p - np.eye(4)[t]) / 6
    z64, eps = z.data.astype(np.float64), 1e-6
    for i, j in [(0, 0), (1, 3), (4, 1)]:
        zp, zm = z64.copy(), z64.copy()
        zp[i, j] += eps
        zm[i, j] -= eps
        fd = (lse_cross_entropy(zp, y) - lse_cross_entropy(zm, y)) / (2 * eps)
        assert abs(fd - grad[i, j]) < 1e-5
    assert CrossEntropyLoss()(Tensor(z.data), y).node is None  # nothing requires grad: not recorded


@pytest.mark.parametrize("labels, pattern", [
    (np.array([0, 1, 4]), r"label 4 at index 2 is outside \[0, 4\) \(4 classes\)"),
    (np.array([-1, 0, 0]), r"label -1 at index 0 is outside \[0, 4\)"),
    (np.array([0.0, 1.0, 2.0]), r"integer class labels, got dtype float64"),
    (np.array([True, False, True]), r"integer class labels, got dtype bool"),
    (np.array([0, 1]), r"logits \(3, 4\) need targets of shape \(3,\), got \(2,\)"),
    (np.array([[0], [1], [2]]), r"need targets of shape \(3,\), got \(3, 1\)"),
])
def test_bad_labels_are_named(labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        CrossEntropyLoss()(Tensor(np.zeros((3, 4), dtype=np.float32)), labels)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (0, 3)])
def test_logits_must_be_a_nonempty_batch_of_rows(shape):
    with pytest.raises(ValueError, match=rf"expected logits of shape \(batch, classes\).*got {_re(shape)}"):
        CrossEntropyLoss()(Tensor(np.zeros(shape)), np.zeros(shape[0] if shape else 0, dtype=int))
