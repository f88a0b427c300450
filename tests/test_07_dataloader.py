"""Library tests for tinytorch_lib.dataloader (Module 07) and the digits file, against numpy oracles."""
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch_lib
from tinytorch_lib.dataloader import (DataLoader, Dataset, TensorDataset, batch_slices, load_digits, read_digits,
                                      shuffled_batches)
from tinytorch_lib.tensor import Tensor


def oracle_chunks(order: np.ndarray, b: int, drop_last: bool) -> list:
    n = len(order)
    stop = n - n % b if drop_last else n
    return [order[s:min(s + b, n)] for s in range(0, stop, b)]


def labelled(n: int) -> TensorDataset:
    """x (n, 3) float32 whose row i is [i, i, i]; y (n,) int64 = i: batches show which samples they hold."""
    return TensorDataset(Tensor(np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1)),
                         Tensor(np.arange(n, dtype=np.int64)))


# ---- batching ----

@given(n=st.integers(1, 300), b=st.integers(1, 320), drop_last=st.booleans())
@settings(max_examples=150, deadline=None)
def test_batch_slices_match_the_oracle(n, b, drop_last):
    got = batch_slices(n, b, drop_last)
    assert all(isinstance(s, slice) for s in got)
    want = oracle_chunks(np.arange(n), b, drop_last)
    assert [np.arange(n)[s].tolist() for s in got] == [w.tolist() for w in want]


@pytest.mark.parametrize("n,b,drop_last,sizes", [(10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]),
                                                 (3, 5, True, []), (3, 5, False, [3]), (1437, 1437, False, [1437])])
def test_loader_batches_in_order_with_and_without_drop_last(n, b, drop_last, sizes):
    ds = labelled(n)
    loader = DataLoader(ds, batch_size=b, drop_last=drop_last)
    batches = list(loader)
    assert [len(y.data) for _, y in batches] == sizes
    assert len(loader) == len(sizes)
    if sizes:
        ys = np.concatenate([y.data for _, y in batches])
        np.testing.assert_array_equal(ys, np.arange(sum(sizes)))
        xs = np.concatenate([x.data for x, _ in batches])
        np.testing.assert_array_equal(xs, ds.tensors[0].data[:sum(sizes)])


def test_batches_have_model_shapes_and_dtypes():
    x, y = next(iter(DataLoader(load_digits("train"), batch_size=32)))
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((32, 64), np.float32, (32,), np.int64)
    x, y = next(iter(DataLoader(load_digits("test", flatten=False), batch_size=7)))
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((7, 1, 8, 8), np.float32, (7,), np.int64)


def test_in_order_batches_are_views_shuffled_batches_are_copies():
    ds = labelled(20)
    x, _ = next(iter(DataLoader(ds, batch_size=8)))
    assert np.shares_memory(x.data, ds.tensors[0].data)
    x, _ = next(iter(DataLoader(ds, batch_size=8, shuffle=True)))
    assert not np.shares_memory(x.data, ds.tensors[0].data)


def test_generic_dataset_is_fetched_one_sample_at_a_time_and_stacked():
    class Squares(Dataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return Tensor(np.array([i, i * i], dtype=np.float32)), Tensor(np.int64(i))

    batches = list(DataLoader(Squares(), batch_size=3))
    assert [x.shape for x, _ in batches] == [(3, 2), (3, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][0].data, [[3, 9], [4, 16], [5, 25]])
    assert batches[0][1].dtype == np.int64
    shuffled = np.concatenate([y.data for _, y in DataLoader(Squares(), batch_size=3, shuffle=True)])
    assert sorted(shuffled.tolist()) == list(range(7))


# ---- shuffling ----

@given(n=st.integers(1, 200), b=st.integers(1, 64), drop_last=st.booleans(), seed=st.integers(0, 2**32 - 1),
       epoch=st.integers(0, 1000))
@settings(max_examples=100, deadline=None)
def test_shuffled_batches_follow_the_stated_rule(n, b, drop_last, seed, epoch):
    got = shuffled_batches(n, b, drop_last, seed, epoch)
    want = oracle_chunks(np.random.default_rng([seed, epoch]).permutation(n), b, drop_last)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype.kind == "i"
        np.testing.assert_array_equal(g, w)


def test_every_sample_exactly_once_per_epoch_in_a_new_order_each_epoch():
    ds = labelled(1437)
    loader = DataLoader(ds, batch_size=128, shuffle=True, seed=5)
    orders = []
    for epoch in range(4):
        ys = np.concatenate([y.data for _, y in loader])
        np.testing.assert_array_equal(np.sort(ys), np.arange(1437))  # each sample exactly once
        orders.append(ys)
        assert loader.epoch == epoch + 1
    assert len({o.tobytes() for o in orders}) == 4, "each epoch should have its own order"
    assert not np.array_equal(orders[0], np.arange(1437))


def test_shuffle_is_reproducible_from_the_seed_and_resumable():
    first = [np.concatenate([y.data for _, y in loader]) for loader in [DataLoader(labelled(50), 8, shuffle=True, seed=1)]
             for _ in range(3)]
    again = DataLoader(labelled(50), 8, shuffle=True, seed=1)
    for want in first:
        np.testing.assert_array_equal(np.concatenate([y.data for _, y in again]), want)
    resumed = DataLoader(labelled(50), 8, shuffle=True, seed=1)
    resumed.set_epoch(2)
    np.testing.assert_array_equal(np.concatenate([y.data for _, y in resumed]), first[2])
    other = DataLoader(labelled(50), 8, shuffle=True, seed=2)
    assert not np.array_equal(np.concatenate([y.data for _, y in other]), first[0])


def test_shuffled_drop_last_skips_different_samples_each_epoch():
    loader = DataLoader(labelled(10), batch_size=4, shuffle=True, drop_last=True, seed=0)
    skipped = []
    for _ in range(5):
        ys = np.concatenate([y.data for _, y in loader])
        assert len(ys) == 8 and len(set(ys.tolist())) == 8
        skipped.append(frozenset(range(10)) - set(ys.tolist()))
    assert len(set(skipped)) > 1


# ---- TensorDataset ----

def test_tensor_dataset_indexing_matches_numpy():
    a = np.arange(60, dtype=np.uint8).reshape(10, 3, 2)
    b = np.arange(10, dtype=np.int64)
    ds = TensorDataset(a, Tensor(b))
    assert len(ds) == 10 and all(isinstance(t, Tensor) for t in ds.tensors)
    assert ds.tensors[0].dtype == np.uint8
    for index in (3, slice(2, 7), np.array([9, 0, 0, 4])):
        x, y = ds[index]
        np.testing.assert_array_equal(x.data, a[index])
        np.testing.assert_array_equal(y.data, b[index])


def test_tensor_dataset_length_mismatch_names_the_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\[5, 4\]"):
        TensorDataset(Tensor(np.zeros((5, 3))), Tensor(np.zeros(4)))


# ---- the digits ----

def test_split_sizes_dtypes_shapes_and_values():
    raw = read_digits()
    for split, n in (("train", 1437), ("test", 360)):
        ds = load_digits(split)
        x, y = ds.tensors
        assert len(ds) == n and x.shape == (n, 64) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        rows = raw[f"{split}_index"]
        np.testing.assert_array_equal(x.data, raw["images"][rows].reshape(n, 64).astype(np.float64) / 16)
        np.testing.assert_array_equal(y.data, raw["labels"][rows])
        assert x.data.min() == 0 and x.data.max() == 1
        img = load_digits(split, flatten=False, normalize=False).tensors[0]
        assert img.shape == (n, 1, 8, 8) and img.dtype == np.float32 and img.data.max() == 16
    assert raw["images"].shape == (1797, 8, 8) and raw["images"].dtype == np.uint8


def test_split_is_disjoint_complete_and_stratified():
    raw = read_digits()
    train, test = raw["train_index"].astype(int), raw["test_index"].astype(int)
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    labels = raw["labels"]
    per_class = np.bincount(labels, minlength=10)
    test_per_class = np.bincount(labels[test], minlength=10)
    assert np.all(np.abs(test_per_class - per_class * 360 / 1797) < 1), test_per_class  # each digit keeps its share


def test_bad_split_and_bad_batch_size_are_clear_errors():
    with pytest.raises(ValueError, match=r"'train' or 'test'.*'validation'"):
        load_digits("validation")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1"):
            DataLoader(labelled(4), batch_size=bad)


def test_data_file_matches_the_sha256_in_the_readme():
    folder = tinytorch_lib.data_dir("digits.npz")
    readme = (folder / "README.md").read_text()
    stated = re.search(r"sha256 `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256((folder / "digits.npz").read_bytes()).hexdigest() == stated


def test_data_dir_is_found_beside_the_package_not_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYTORCH_DATA", raising=False)
    assert tinytorch_lib.data_dir() == Path(tinytorch_lib.__file__).resolve().parent.parent / "data"
    code = "from tinytorch_lib.dataloader import load_digits; import sys; print(len(load_digits('test')), 'sklearn' in sys.modules)"
    package_parent = str(Path(tinytorch_lib.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k != "TINYTORCH_DATA"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=package_parent))
    assert proc.stdout.split() == ["360", "False"], proc.stderr  # no scikit-learn needed


def test_missing_data_folder_or_file_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*git checkout data/"):
        load_digits()
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "digits.npz")) + r" is missing.*git checkout"):
        load_digits("test")


def test_corrupt_data_file_is_a_clear_error_never_a_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYTORCH_DATA", raising=False)
    shipped = tinytorch_lib.data_dir("digits.npz") / "digits.npz"
    with np.load(shipped) as f:
        arrays = {k: f[k] for k in f.files}
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path))
    (tmp_path / "digits.npz").write_bytes(shipped.read_bytes()[:5000])  # truncated
    with pytest.raises(ValueError, match=r"digits.npz is corrupt.*git checkout data/digits.npz"):
        load_digits()
    np.savez(tmp_path / "digits.npz", **dict(arrays, images=arrays["images"][:100]))
    with pytest.raises(ValueError, match=r"corrupt: 'images' should be uint8 \(1797, 8, 8\)"):
        load_digits()
    np.savez(tmp_path / "digits.npz", **{k: v for k, v in arrays.items() if k != "labels"})
    with pytest.raises(ValueError, match=r"corrupt: 'labels' should be .* got missing"):
        load_digits()
    np.savez(tmp_path / "digits.npz", **dict(arrays, test_index=arrays["train_index"][:360]))
    with pytest.raises(ValueError, match=r"corrupt: the train and test indices"):
        load_digits("test")
