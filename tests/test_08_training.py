"""Library tests for tinytorch_lib.training (Module 08): the loop, evaluation, the model file."""
import os

import numpy as np
import pytest

from tinytorch_lib.dataloader import DataLoader, TensorDataset
from tinytorch_lib.layers import Dropout, Linear, Sequential, manual_seed
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import SGD, Adam
from tinytorch_lib.tensor import Tensor
from tinytorch_lib.training import (MLP_ARCH, accuracy, build_model, evaluate, fit, load_model, progress_wanted,
                                    save_model, train_epoch)


def toy(n=96, batch=40, shuffle=True):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    return DataLoader(TensorDataset(Tensor(x), Tensor(y)), batch_size=batch, shuffle=shuffle, seed=0), x, y


def test_accuracy_matches_numpy_and_checks_batch_sizes():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((33, 5)), rng.integers(0, 5, 33)
    assert accuracy(Tensor(logits), Tensor(labels)) == pytest.approx((logits.argmax(1) == labels).mean(), abs=1e-12)
    with pytest.raises(ValueError, match=r"\(4, 10\).*\(3,\)"):
        accuracy(Tensor(np.zeros((4, 10))), Tensor(np.zeros(3, dtype=np.int64)))


def test_train_epoch_learns_and_returns_the_mean_loss_per_sample():
    loader, x, y = toy()
    manual_seed(0)
    model = Linear(4, 2)
    opt = SGD(model.parameters(), lr=0.5)
    losses = [train_epoch(model, CrossEntropyLoss(), opt, loader, e) for e in range(6)]
    assert losses[-1] < 0.5 * losses[0], losses
    # With a negligible learning rate the epoch's mean equals the loss over all samples at once.
    frozen, _, _ = toy(shuffle=False)
    want = CrossEntropyLoss()(model(Tensor(x)), Tensor(y)).item()
    assert train_epoch(model, CrossEntropyLoss(), SGD(model.parameters(), lr=1e-30), frozen) == pytest.approx(want, rel=1e-5)


def test_a_nan_loss_stops_training_naming_epoch_and_batch():
    loader, _, _ = toy()
    model = Linear(4, 2)
    model.weight.data[0, 0] = np.inf
    with pytest.raises(FloatingPointError, match=r"epoch 4, batch 0.*smaller learning rate"), np.errstate(invalid="ignore"):
        train_epoch(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), loader, epoch=4)


def test_evaluate_counts_samples_restores_the_mode_and_records_nothing():
    x = np.eye(5, dtype=np.float32)[np.arange(10) % 5] * 10
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2, 0, 0])
    loader = DataLoader(TensorDataset(Tensor(x), Tensor(y)), batch_size=4)
    model = Sequential(Dropout(0.9))
    assert evaluate(model, loader) == pytest.approx(0.8) and model.training
    model.eval()
    assert evaluate(model, loader) == pytest.approx(0.8) and not model.training
    lin = Linear(5, 5)
    outs = []
    lin.register_forward_hook(lambda m, args, out: outs.append(out))
    evaluate(lin, loader)
    assert outs and all(o.node is None and not o.requires_grad for o in outs)


def test_save_load_round_trip_keeps_outputs_dtypes_and_meta(tmp_path):
    manual_seed(5)
    model = build_model(MLP_ARCH)
    path = tmp_path / "mlp.npz"
    size = save_model(path, model, MLP_ARCH, meta={"test_acc": 0.97, "seed": 5})
    assert size == os.path.getsize(path)
    loaded, meta = load_model(path)
    assert meta == {"test_acc": 0.97, "seed": 5}
    x = Tensor(np.random.default_rng(0).random((7, 64), dtype=np.float32))
    np.testing.assert_array_equal(loaded(x).data, model(x).data)
    state = model.state_dict()
    assert all(loaded.state_dict()[k].dtype == v.dtype for k, v in state.items())
    # The file is the arrays plus a small container: within 5 KB of the raw bytes.
    assert 0 < size - sum(a.nbytes for a in state.values()) < 5000


def test_load_model_refuses_files_that_do_not_fit(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_model(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a zip")
    with pytest.raises(ValueError, match="junk.npz is not a model file written by save_model"):
        load_model(junk)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(ValueError, match="plain.npz has no __arch__"):
        load_model(plain)
    # Weights of another architecture: load_state_dict names the mismatch.
    other = {"layers": [["layers.Linear", {"in_features": 64, "out_features": 32}]]}
    wrong = tmp_path / "wrong.npz"
    save_model(wrong, build_model(MLP_ARCH), other)
    with pytest.raises(ValueError, match="load_state_dict"):
        load_model(wrong)


@pytest.mark.parametrize("arch, match", [
    ({"layer": []}, "expected"),
    ({"layers": [["Linear", {}]]}, "file.Class"),
    ({"layers": [["layers.Nope", {}]]}, "has no Nope"),
])
def test_build_model_errors_name_the_problem(arch, match):
    with pytest.raises(ValueError, match=match):
        build_model(arch)


def test_fit_keeps_a_history_per_epoch_and_is_seeded():
    loader, _, _ = toy()
    histories = []
    for _ in range(2):
        manual_seed(3)
        model = Linear(4, 2)
        histories.append(fit(model, CrossEntropyLoss(), Adam(model.parameters(), lr=0.05), loader, loader, epochs=3,
                             progress=False))
    h = histories[0]
    assert {k: len(v) for k, v in h.items()} == {"loss": 3, "train_acc": 3, "test_acc": 3, "seconds": 3}
    assert h["loss"] == histories[1]["loss"], "same seed, same data order: the same losses"


def test_progress_bars_are_off_under_autograding_and_tests(monkeypatch):
    assert progress_wanted() is False  # PYTEST_CURRENT_TEST is set here
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("TINYTORCH_PROGRESS", "1")
    assert progress_wanted() is True
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert progress_wanted() is False


@pytest.mark.parametrize("filename, flatten", [("mlp_digits.npz", True), ("cnn_digits.npz", False)])
def test_shipped_models_load_and_score_what_their_file_says(filename, flatten):
    """data/*_digits.npz (made by `make models`): the held-out accuracy measured now is the one recorded."""
    from tinytorch_lib import data_dir
    from tinytorch_lib.dataloader import load_digits

    model, meta = load_model(data_dir(filename) / filename)
    measured = evaluate(model, DataLoader(load_digits("test", flatten=flatten), batch_size=360))
    assert measured == pytest.approx(meta["test_accuracy"], abs=1.5 / 360), (filename, measured, meta)
    assert measured >= 0.95, f"{filename}: held-out accuracy {measured:.4f}; retrain with `make models`"
