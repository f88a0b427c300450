"""Module 16: pruning masks, prune(), sparse formats and save_compressed on the digit models."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinytorch_lib import data_dir
from tinytorch_lib.activations import ReLU
from tinytorch_lib.compression import (from_bitmask, from_csr, load_compressed, magnitude_mask, make_permanent,
                                       prune, save_compressed, sparsity, structured_mask, to_bitmask, to_csr)
from tinytorch_lib.dataloader import DataLoader, load_digits
from tinytorch_lib.layers import Linear, Sequential
from tinytorch_lib.optimizers import Adam
from tinytorch_lib.quantization import quantize
from tinytorch_lib.spatial import Conv2d
from tinytorch_lib.tensor import Tensor
from tinytorch_lib.training import evaluate, load_model

sparse_floats = st.one_of(st.just(0.0), st.floats(-100, 100, allow_nan=False, width=32))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=sparse_floats))
def test_both_formats_round_trip_exactly(w):
    bits, values = to_bitmask(w)
    assert np.array_equal(from_bitmask(bits, values, w.shape, w.dtype), w)
    assert bits.nbytes == -(-w.size // 8) and values.size == np.count_nonzero(w)
    v, idx, ptr = to_csr(w)
    assert np.array_equal(from_csr(v, idx, ptr, w.shape), w)
    assert ptr[-1] == np.count_nonzero(w) and len(ptr) == w.shape[0] + 1


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(1, 60), elements=st.floats(-10, 10, allow_nan=False, width=32)),
       st.floats(0, 0.99))
def test_magnitude_mask_removes_exactly_the_rounded_count_of_smallest(w, amount):
    m = magnitude_mask(w, amount)
    k = min(round(amount * w.size), w.size - 1)  # rounding never removes every weight
    assert (~m).sum() == k
    if 0 < k < w.size:
        assert np.abs(w[~m]).max() <= np.abs(w[m]).min()


def test_structured_mask_removes_whole_filters_by_norm():
    w = np.ones((5, 2, 3, 3), np.float32)
    w[[1, 3]] *= 0.1
    m = structured_mask(w, 0.4)
    assert [bool(m[o].all()) for o in range(5)] == [True, False, True, False, True]


def test_rounding_never_removes_every_weight_or_channel():
    assert magnitude_mask(np.arange(1, 11, dtype=np.float32), 0.96).sum() == 1
    p = prune(Sequential(Linear(30, 2, rng=0), ReLU(), Linear(2, 3, rng=1)), 0.75, "structured")
    assert p[0].weight_mask.data.any(axis=1).sum() == 1


@pytest.mark.parametrize("amount", [-0.1, 1.0, 2, "0.5", True])
def test_bad_amounts_are_clear_errors(amount):
    with pytest.raises(ValueError, match="amount"):
        prune(Sequential(Linear(3, 2, rng=0)), amount)


def test_masks_survive_fine_tuning_and_make_permanent_bakes_them_in():
    net = Sequential(Linear(8, 16, rng=0), ReLU(), Linear(16, 3, rng=1))
    p = prune(net, 0.7, "global")
    opt = Adam(p.parameters(), lr=0.1)
    x = Tensor(np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32))
    for _ in range(3):
        opt.zero_grad()
        p(x).sum().backward()
        opt.step()
    make_permanent(p)
    assert abs(sparsity(p)["total"] - 0.7) < 0.01
    assert "0.weight_mask" not in p.state_dict() and not p[0]._forward_pre_hooks
    assert sparsity(net)["total"] == 0.0  # the original is untouched


def test_structured_pruning_leaves_the_output_layer_whole():
    net = Sequential(Conv2d(1, 8, 3, rng=0), ReLU(), Linear(8, 4, rng=1))
    p = prune(net, 0.5, "structured")
    assert (p[0].weight.data.reshape(8, -1) == 0).all(axis=1).sum() == 4
    assert sparsity(p)["2"] == 0.0


def test_prune_errors():
    with pytest.raises(ValueError, match="method"):
        prune(Sequential(Linear(3, 2, rng=0)), 0.5, "random")
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        prune(Sequential(ReLU()), 0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        save_compressed("/tmp/never-written.ttc", prune(Sequential(Linear(3, 2, rng=0)), 0.5))


def test_not_a_compressed_file(tmp_path):
    (tmp_path / "x.ttc").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a file written by save_compressed"):
        load_compressed(tmp_path / "x.ttc")
    with pytest.raises(FileNotFoundError):
        load_compressed(tmp_path / "missing.ttc")


@pytest.mark.parametrize("name, flatten", [("mlp", True), ("cnn", False)])
def test_pruned_int8_file_loads_to_the_same_outputs_and_is_smaller(tmp_path, name, flatten):
    model, _ = load_model(data_dir(f"{name}_digits.npz") / f"{name}_digits.npz")
    te = load_digits("test", flatten=flatten)
    tr = load_digits("train", flatten=flatten)
    q = quantize(make_permanent(prune(model, 0.8, "global")), [tr.tensors[0].data[:128]])
    size = save_compressed(tmp_path / "m.ttc", q)
    back, _ = load_compressed(tmp_path / "m.ttc")
    assert np.array_equal(back(te.tensors[0]).data, q(te.tensors[0]).data)
    assert size == (tmp_path / "m.ttc").stat().st_size
    dense = sum(a.nbytes for a in model.state_dict().values())
    assert dense / size > 5  # 80% + int8 + bitmask + lzma, before fine-tuning
    assert evaluate(back, DataLoader(te, batch_size=360)) == evaluate(q, DataLoader(te, batch_size=360))


@pytest.mark.parametrize("name, flatten", [("mlp", True), ("cnn", False)])
def test_bench_four_bit_levels_keep_zeros_load_back_exactly_and_shrink_the_file(tmp_path, name, flatten):
    from benchmarks.bench_compression import fewer_levels
    model, _ = load_model(data_dir(f"{name}_digits.npz") / f"{name}_digits.npz")
    te, tr = load_digits("test", flatten=flatten), load_digits("train", flatten=flatten)
    pruned = make_permanent(prune(model, 0.8, "global"))
    q8 = quantize(pruned, [tr.tensors[0].data[:128]])
    q4 = fewer_levels(quantize(pruned, [tr.tensors[0].data[:128]]), pruned, 4)
    for key, a in q4.state_dict().items():
        if key.endswith("weight_q"):
            assert a.dtype == np.int8 and a.min() >= -8 and a.max() <= 7, (key, a.min(), a.max())
            w = pruned.get_submodule(key.rsplit(".", 1)[0]).weight.data
            assert np.all(a[w == 0] == 0), f"{key}: a pruned weight got a nonzero 4-bit code"
    size8, size4 = save_compressed(tmp_path / "q8.ttc", q8), save_compressed(tmp_path / "q4.ttc", q4)
    back, _ = load_compressed(tmp_path / "q4.ttc")
    assert np.array_equal(back(te.tensors[0]).data, q4(te.tensors[0]).data)
    assert size4 < size8, (size4, size8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["dense", "bitmask"]), st.integers(0, 9), st.integers(-8, 7),
                          st.integers(-128, 127), st.booleans()), min_size=1, max_size=5))
def test_4_bit_packing_gives_back_the_exact_header_and_blob(specs):
    from tinytorch_lib.compression import _from_nibbles, _rewrite_values, _to_nibbles
    rng = np.random.default_rng(len(specs))
    arrays, parts, offset = {}, [], 0
    for i, (fmt, n, lo4, lo8, fits) in enumerate(specs):
        values = rng.integers(-8, 8, n) if fits else np.append(rng.integers(-8, 8, n), lo8)
        values = values.astype(np.int8) if i % 2 == 0 else values.astype(np.float32)   # float32 values stay as they are
        e = {"dtype": values.dtype.str, "shape": [values.size], "offset": offset, "format": fmt}
        if fmt == "bitmask":
            bits = rng.integers(0, 256, 3).astype(np.uint8).tobytes()
            chunk = bits + values.tobytes()
            e.update(nbits=3, nvalues=int(values.size))
        else:
            chunk = values.tobytes()
            e.update(nbytes=len(chunk))
        arrays[f"{i}.w"] = e
        parts.append(chunk)
        offset += len(chunk)
    header, blob = {"arch": {}, "meta": {}, "arrays": arrays}, b"".join(parts)
    packed_header, packed = _rewrite_values(header, blob, _to_nibbles)
    assert len(packed) <= len(blob)
    assert _rewrite_values(packed_header, packed, _from_nibbles) == (header, blob)


def test_4_bit_codes_are_stored_two_per_byte_and_load_back_exactly(tmp_path):
    net = Sequential(Linear(16, 9, rng=0), ReLU(), Linear(9, 3, rng=1))
    x = np.random.default_rng(0).uniform(0, 1, (8, 16)).astype(np.float32)
    q = quantize(make_permanent(prune(net, 0.6, "global")), [x])
    size8 = save_compressed(tmp_path / "q8.ttc", q)
    for layer in (q[0], q[2]):
        layer.weight_q.data[...] = np.clip(layer.weight_q.data // 16, -8, 7)
    layer.weight_q.data[0, 0] = -8
    size4 = save_compressed(tmp_path / "q4.ttc", q)
    back, _ = load_compressed(tmp_path / "q4.ttc")
    for key, a in q.state_dict().items():
        assert np.array_equal(back.state_dict()[key], a) and back.state_dict()[key].dtype == a.dtype, key
    assert size4 < size8
    assert np.array_equal(back(Tensor(x)).data, q(Tensor(x)).data)
