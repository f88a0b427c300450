"""Module 16's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here (the reference masks below run only here).
"""
from functools import partial

import numpy as np

from tinytorch_lib import fmt
from tito.checks import Plain, StudentError, check, requires as shared_requires, task_first


# tito/check_runner.py's encode sends arrays through np.ascontiguousarray, which makes a 0-d array 1-d and a numpy
# scalar not data at all (SandboxError "a scalar must be a 0-d array"), so a student's np.int64 where an int was
# expected would stop a check with a confusing message. Plain(s) is s whose value() answers with numpy scalars
# turned into Python numbers (inside lists, tuples and dicts too) by plain_, defined in the check's sandbox scope.


def ref_magnitude(w, amount):
    w = np.asarray(w)
    keep = np.ones(w.size, bool)
    keep[np.argsort(np.abs(w), axis=None, kind="stable")[:min(int(round(amount * w.size)), max(w.size - 1, 0))]] = False
    return keep.reshape(w.shape)


def ref_structured(w, amount):
    w = np.asarray(w)
    norms = np.sqrt((w.reshape(w.shape[0], -1).astype(np.float64) ** 2).sum(axis=1))
    keep = np.ones(w.shape[0], bool)
    keep[np.argsort(norms, kind="stable")[:min(int(round(amount * w.shape[0])), max(w.shape[0] - 1, 0))]] = False
    return np.broadcast_to(keep.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape).copy()


def array_shape_brief(got) -> str:
    """What came back, for requires(): an array by its shape."""
    brief = f"it raised {got.said}" if isinstance(got, StudentError) else \
        (f"got an array of shape {got.shape}" if isinstance(got, np.ndarray) else f"got {got!r}")
    return brief if isinstance(got, StudentError) else brief[:300]  # said is short and keeps `at`


# The dependency hint words what came back with array_shape_brief.
requires = partial(shared_requires, describe=array_shape_brief)


MASK = "(lambda m: (type(m).__name__, np.asarray(m)))({call})"


@check("test_16_1_masks")
def masks(s):
    s = Plain(s)
    w = np.array([[0.9, -0.1, 0.3], [-0.05, 0.7, -0.2]], dtype=np.float32)
    kind, m = s.value(MASK.format(call="magnitude_mask(w, 0.5)"), w=w)
    assert kind == "ndarray" and m.dtype == bool and m.shape == (2, 3), f"expected a bool (2, 3) mask, got {fmt(kind)} {m.dtype} {m.shape}"
    assert m.tolist() == [[True, False, True], [False, True, False]], \
        f"magnitude_mask({w.tolist()}, 0.5): expected [[T, F, T], [F, T, F]], got {m.tolist()}"
    _, m = s.value(MASK.format(call="magnitude_mask(w, 0.0)"), w=w)
    assert m.shape == (2, 3) and m.all(), f"amount 0 keeps every weight, got {m.tolist()}"
    _, m = s.value(MASK.format(call="structured_mask(w, 0.5)"), w=w)
    assert m.dtype == bool and m.tolist() == [[True, True, True], [False, False, False]], \
        f"structured_mask of rows with norms 0.955 and 0.732, amount 0.5: expected row 1 removed (a bool mask), got {m.tolist()}"
    s.expect_error("magnitude_mask(w, 1.0)", "magnitude_mask with amount 1.0", ("amount", "1.0"), w=w)
    ties = np.ones((4, 5), dtype=np.float32)
    _, m = s.value(MASK.format(call="magnitude_mask(w, 0.35)"), w=ties)
    assert (~m).sum() == 7, f"20 equal weights, amount 0.35: exactly round(7.0) = 7 removed, got {fmt((~m).sum())}"
    assert (~m).ravel()[:7].all(), f"ties are removed in position order (stable sort): expected the first 7 removed, got {m.tolist()}"
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    conv[4] *= 0.01
    conv[1] *= 0.1
    _, sm = s.value(MASK.format(call="structured_mask(w, 0.34)"), w=conv)
    kept = [bool(sm[o].all()) for o in range(6)] if sm.shape == conv.shape else sm.shape
    assert sm.shape == (6, 2, 3, 3) and kept == [True, False, True, True, False, True], \
        f"6 filters (6, 2, 3, 3), filters 4 and 1 smallest, amount 0.34 (round(2.04) = 2 removed): got kept {kept}"
    assert all(sm[o].all() or not sm[o].any() for o in range(6)), "structured: each filter kept or removed whole"
    for shape, amount in (((9, 7), 0.3), ((50,), 0.73), ((3, 4, 5), 0.5)):
        x = rng.standard_normal(shape).astype(np.float32)
        _, m = s.value(MASK.format(call=f"magnitude_mask(w, {amount})"), w=x)
        want = ref_magnitude(x, amount)
        assert m.shape == want.shape and np.array_equal(m, want), \
            f"magnitude_mask of a random {shape} array, amount {fmt(amount)}: expected the {fmt(int(round(amount * x.size)))} smallest |w| removed, " \
            f"got {fmt((~m).sum())} removed, {int((m != want).sum()) if m.shape == want.shape else m.shape} positions differ"
    x = rng.standard_normal((10, 4)).astype(np.float32) * rng.uniform(0.1, 3, (10, 1)).astype(np.float32)
    _, m = s.value(MASK.format(call="structured_mask(w, 0.45)"), w=x)
    want = ref_structured(x, 0.45)
    assert np.array_equal(m, want), \
        f"structured_mask of a (10, 4) weight, amount 0.45: expected rows {np.flatnonzero(~want[:, 0]).tolist()} removed (smallest L2 norms), got {m.tolist()}"
    for bad in ("-0.1", "1.5", "'half'"):
        s.expect_error(f"structured_mask(w, {bad})", f"structured_mask with amount {bad}", w=conv)
    s.expect_error("magnitude_mask(w, True)", "magnitude_mask with amount True (a bool is not an amount)", w=w)
    for w_, amount in ((np.arange(1, 11, dtype=np.float32), 0.96), (rng.standard_normal((3, 3)).astype(np.float32), 0.99)):
        _, m = s.value(MASK.format(call=f"magnitude_mask(w, {amount})"), w=w_)
        assert int(m.sum()) == 1, (f"magnitude_mask of {fmt(w_.size)} weights, amount {fmt(amount)}: round({amount * w_.size:.3g}) "
                                   f"removes all, capped at {w_.size - 1}: expected 1 kept, got {int(m.sum())}")
    for shape, amount in (((2, 30), 0.75), ((3, 2, 3, 3), 0.9)):
        w_ = rng.standard_normal(shape).astype(np.float32)
        _, m = s.value(MASK.format(call=f"structured_mask(w, {amount})"), w=w_)
        want = ref_structured(w_, amount)
        assert np.array_equal(m, want), (f"structured_mask of a {shape} weight, amount {fmt(amount)}: never every channel; "
                                         f"expected channels kept {want.reshape(shape[0], -1)[:, 0].tolist()}, got "
                                         f"{m.reshape(shape[0], -1)[:, 0].tolist() if m.shape == shape else m.shape}")


NET = """
from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Sequential
from tinytorch_lib.optimizers import SGD
net = Sequential(Linear(10, 20, rng=0), ReLU(), Linear(20, 5, rng=1))
net[0].weight.data[...] = w0; net[2].weight.data[...] = w2
"""


def sparsity_of(ws):
    return [float((w == 0).mean()) for w in ws]


@check("test_16_2_prune")
def prune_(s):
    s = Plain(s)
    rng = np.random.default_rng(16)
    w0, w2 = rng.standard_normal((20, 10)).astype(np.float32), rng.standard_normal((5, 20)).astype(np.float32)
    s.run(NET, w0=w0, w2=w2)
    task_first(s, "prune(net, 0.5)", "16.2")
    probe = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    requires(s, "np.asarray(magnitude_mask(w, 0.4))", lambda m: np.array_equal(m, ref_magnitude(probe, 0.4)),
             "magnitude_mask of a random (6, 5) weight, amount 0.4, did not remove exactly its 12 smallest |w|",
             "16.1", "16.2", w=probe)
    s.run("p = prune(net, 0.6)")
    got = s.value("(net[0].weight.data, 'weight_mask' in net[0]._buffers, net[0]._forward_pre_hooks == {} or not net[0]._forward_pre_hooks)")
    assert np.array_equal(got[0], w0) and not got[1] and got[2], "prune must leave the original model unchanged (work on copy.deepcopy(model))"
    pw0, pw2 = s.value("(p[0].weight.data, p[2].weight.data)")
    sp = sparsity_of((pw0, pw2))
    assert abs(sp[0] - 0.6) < 1e-9 and abs(sp[1] - 0.6) < 1e-9, f"magnitude 0.6: expected each layer 60% zeros, got layers 0 and 2: {fmt(sp)}"
    want0, want2 = ref_magnitude(w0, 0.6), ref_magnitude(w2, 0.6)
    assert np.array_equal(pw0 != 0, want0) and np.array_equal(pw2 != 0, want2), \
        "magnitude 0.6: each layer should lose its own 60% of smallest |w| (magnitude_mask of its weight)"
    masks = s.value("{k: v for k, v in p.state_dict().items() if k.endswith('weight_mask')}")
    assert set(masks) == {"0.weight_mask", "2.weight_mask"} and all(m.dtype == bool for m in masks.values()), \
        f"the masks should be bool buffers in state_dict, 0.weight_mask and 2.weight_mask; got {({k: str(v.dtype) for k, v in masks.items()})}"
    assert np.array_equal(masks["0.weight_mask"], want0), "0.weight_mask should be True where the weight is kept"
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    s.run("opt = SGD(p.parameters(), lr=0.5); p(Tensor(x)).sum().backward(); opt.step(); p(Tensor(x))", x=x)
    after = s.value("p[0].weight.data")
    assert (after[~want0] == 0).all(), "after an optimizer step and a forward pass, pruned weights must be 0 again (the mask and its hook)"
    s.run("g = prune(net, 0.5, 'global')")
    gw = s.value("[l.weight.data for _, l in prunable_layers(g)]")
    total = sum(int((w == 0).sum()) for w in gw) / sum(w.size for w in gw)
    assert abs(total - 0.5) < 1e-9, f"global 0.5: expected 50% zeros over all weights, got {fmt(total)}"
    keep = ref_magnitude(np.concatenate([w0.ravel(), w2.ravel()]), 0.5)
    assert np.array_equal(np.concatenate([w.ravel() for w in gw]) != 0, keep), \
        "global 0.5: the 50% smallest |w| over both layers together should be removed"
    s.expect_error("prune(net, 0.5, 'random')", "prune with method 'random'", ("random",))
    # global over layers of different scales
    big = rng.uniform(-0.15, 0.15, (10, 40)).astype(np.float32)
    small = rng.uniform(-0.3, 0.3, (4, 10)).astype(np.float32) * 100
    s.run("""
big, small = Linear(40, 10, rng=2), Linear(10, 4, rng=3)
big.weight.data[...] = wb; small.weight.data[...] = ws
g2 = prune(Sequential(big, ReLU(), small), 0.5, 'global')
""", wb=big, ws=small)
    gw, gm = s.value("([l.weight.data for _, l in prunable_layers(g2)], [l.weight_mask.data for _, l in prunable_layers(g2)])")
    sp = sparsity_of(gw)
    assert sp[1] == 0.0 and abs(sp[0] - 0.55) < 1e-9, \
        f"global 0.5 over Linear(40, 10) and a Linear(10, 4) of 100x larger weights: expected 220 of layer 0's 400 removed (0.55) and none of layer 2's, got {fmt(sp)}"
    assert sum(int((~m).sum()) for m in gm) == 220, "global 0.5 of 440 weights: exactly 220 removed"
    s.run("st = prune(net, 0.25, 'structured')")
    sw0, sw2 = s.value("(st[0].weight.data, st[2].weight.data)")
    rows = (sw0 == 0).all(axis=1)
    assert rows.sum() == 5 and (sw2 == 0).mean() == 0.0, \
        f"structured 0.25: 5 of layer 0's 20 rows removed, the last layer untouched; got {fmt(rows.sum())} rows, last layer {(sw2 == 0).mean():.2f} zeros"
    assert np.array_equal(~rows, ref_structured(w0, 0.25)[:, 0]), "structured 0.25: the 5 rows of smallest L2 norm should be removed"
    units = s.value("int(prune(Sequential(Linear(30, 2, rng=0), ReLU(), Linear(2, 3, rng=1)), 0.75, 'structured')[0]"
                    ".weight_mask.data.any(axis=1).sum())")
    assert units == 1, f"prune(Linear(30, 2), ReLU, Linear(2, 3)), 0.75, 'structured'): layer 0 should keep 1 of its 2 units, got {units}"
    s.run("perm = make_permanent(prune(net, 0.6))")
    got = s.value("('weight_mask' in perm[0]._buffers, bool(perm[0]._forward_pre_hooks), perm[0].weight.data)")
    assert not got[0] and not got[1] and abs((got[2] == 0).mean() - 0.6) < 1e-9, "make_permanent: hooks and masks gone, zeros kept"
    s.expect_error("prune(Sequential(ReLU()), 0.5)", "prune of a model without Linear or Conv2d")
    s.expect_error("prune(net, 1.0)", "prune(net, 1.0)")
    s.expect_error("prune(net, -0.2, 'global')", "prune(net, -0.2, 'global')")


BITMASK = "(lambda r: (np.asarray(r[0]), np.asarray(r[1])))(to_bitmask(x))"
CSR = "(lambda r: tuple(np.asarray(a) for a in r))(to_csr(x))"


@check("test_16_3_formats")
def formats(s):
    s = Plain(s)
    w = np.array([[0, 5, 0, 0], [0, 0, 7, 8]], dtype=np.float32)
    bits, values = s.value(BITMASK, x=w)
    assert bits.dtype == np.uint8 and bits.tolist() == [0x43] and values.tolist() == [5, 7, 8], \
        f"to_bitmask of {w.tolist()}: expected bits [0x43] (uint8) and values [5, 7, 8], got {bits.tolist()} ({bits.dtype}), {values.tolist()}"
    back = s.value("np.asarray(from_bitmask(b, v, shape))", b=bits, v=values, shape=w.shape)
    assert back.dtype == np.float32 and np.array_equal(back, w), f"from_bitmask: expected {w.tolist()} float32, got {back.tolist()} ({back.dtype})"
    v, idx, ptr = s.value(CSR, x=w)
    assert v.tolist() == [5, 7, 8] and idx.tolist() == [1, 2, 3] and ptr.tolist() == [0, 1, 3], \
        f"to_csr of {w.tolist()}: expected values [5, 7, 8], indices [1, 2, 3], indptr [0, 1, 3], got {v.tolist()}, {idx.tolist()}, {ptr.tolist()}"
    assert idx.dtype == np.int16 and ptr.dtype == np.int32, f"expected int16 indices and int32 indptr, got {idx.dtype}, {ptr.dtype}"
    back = s.value("np.asarray(from_csr(v, i, p, shape))", v=v, i=idx, p=ptr, shape=w.shape)
    assert np.array_equal(back, w), f"from_csr should rebuild {w.tolist()} exactly, got {back.tolist()}"
    rng = np.random.default_rng(1)
    for shape, dtype in (((7, 13), np.float32), ((3, 2, 3, 3), np.int8), ((1, 1), np.float64), ((5, 9), np.float16)):
        x = (rng.standard_normal(shape) * 10).astype(dtype)
        x[rng.random(shape) < 0.7] = 0
        name = f"a random {shape} {np.dtype(dtype).name} array, 70% zeros"
        b, vals = s.value(BITMASK, x=x)
        assert b.nbytes == -(-x.size // 8) and np.array_equal(b, np.packbits((x != 0).ravel())), \
            f"to_bitmask of {name}: expected {x.size} bits packed into {fmt(-(-x.size // 8))} bytes (np.packbits of w != 0), got {b.nbytes} bytes"
        assert vals.dtype == x.dtype and np.array_equal(vals, x[x != 0]), \
            f"to_bitmask of {name}: values should be the {fmt(np.count_nonzero(x))} nonzeros in row-major order, as {x.dtype}; got {fmt(vals.size)} of {vals.dtype}"
        y = s.value("np.asarray(from_bitmask(b, v, shape, dtype))", b=b, v=vals, shape=shape, dtype=np.dtype(dtype))
        assert y.dtype == dtype and np.array_equal(y, x), f"bitmask round trip of {name} is not exact"
        if len(shape) == 2:
            y = s.value("np.asarray(from_csr(*to_csr(x), shape))", x=x, shape=shape)
            assert np.array_equal(y, x), f"CSR round trip of {name} is not exact"
            v, idx, ptr = s.value(CSR, x=x)
            rows, cols = np.nonzero(x)
            assert np.array_equal(idx, cols) and np.array_equal(ptr, np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])), \
                f"to_csr of {name}: indices should be the column numbers, indptr the running count of nonzeros per row"
    zero = np.zeros((3, 4), dtype=np.float32)
    y = s.value("np.asarray(from_csr(*to_csr(x), x.shape))", x=zero)
    _, _, ptr = s.value(CSR, x=zero)
    assert np.array_equal(y, zero) and ptr.tolist() == [0, 0, 0, 0], f"an all-zero (3, 4) matrix: indptr [0, 0, 0, 0] and zeros back, got indptr {ptr.tolist()}"
    s.expect_error("to_csr(np.ones((2, 2, 2)))", "to_csr of a 3-d array", ("(2, 2, 2)",))
    dtype = s.value("to_csr(np.ones((1, 40000), dtype=np.float32))[1].dtype")
    assert dtype == np.int32, f"more than 32768 columns (1, 40000): int32 indices expected, got {dtype}"


SETUP = """
import tempfile
from pathlib import Path
from tinytorch_lib.activations import ReLU
from tinytorch_lib.layers import Sequential
tmp = Path(tempfile.mkdtemp())
net = Sequential(Linear(30, 40, rng=0), ReLU(), Linear(40, 10, rng=1))
net[0].weight.data[...] = w0; net[2].weight.data[...] = w2
pruned = make_permanent(prune(net, 0.8))
"""


@check("test_16_4_save_load")
def save_load(s):
    s = Plain(s)
    rng = np.random.default_rng(164)
    w0, w2 = rng.uniform(-0.2, 0.2, (40, 30)).astype(np.float32), rng.uniform(-0.2, 0.2, (10, 40)).astype(np.float32)
    s.run(SETUP.replace("pruned = make_permanent(prune(net, 0.8))\n", ""), w0=w0, w2=w2)
    task_first(s, "save_compressed(tmp / 't.ttc', net)", "16.4")
    requires(s, "[float((l.weight.data == 0).mean()) for _, l in prunable_layers(make_permanent(prune(net, 0.8)))]",
             lambda sp: np.allclose(sp, [0.8, 0.8]), "make_permanent(prune(net, 0.8)) did not leave each layer 80% zeros", "16.2", "16.4")
    requires(s, "(lambda r: (r[0].tolist(), r[1].tolist()))(to_bitmask(np.array([[0, 5, 0, 0], [0, 0, 7, 8]], np.float32)))",
             lambda r: r == ([0x43], [5, 7, 8]), "to_bitmask([[0, 5, 0, 0], [0, 0, 7, 8]]) did not give ([0x43], [5, 7, 8])", "16.3", "16.4")
    s.run(SETUP, w0=w0, w2=w2)
    size, on_disk = s.value("(save_compressed(tmp / 'p.ttc', pruned, lzma=False), (tmp / 'p.ttc').stat().st_size)")
    assert size == on_disk, f"save_compressed should return the file's size {fmt(on_disk)}, got {size!r}"
    x = np.random.default_rng(0).uniform(0, 1, (5, 30)).astype(np.float32)
    s.run("loaded, meta = load_compressed(tmp / 'p.ttc')")
    got, want = s.value("(loaded(Tensor(x)).data, pruned(Tensor(x)).data)", x=x)
    assert got.shape == want.shape and np.array_equal(got, want), "the loaded model should give exactly the pruned model's outputs"
    state = s.value("pruned.state_dict()")
    loaded = s.value("loaded.state_dict()")
    assert set(loaded) == set(state) and all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items()), \
        f"every array of state_dict should come back exactly (values, dtype, shape): {sorted(state)} saved, {sorted(loaded)} loaded"
    dense = sum(a.nbytes for a in state.values())
    assert size < 0.5 * dense, f"80% pruned, bitmask + float32 values, no lzma: expected under half of the {dense:,} dense bytes, got {size:,}"
    entries, blob_len = s.value("(lambda hb: ({k: (e['format'], e['dtype'], tuple(e['shape'])) for k, e in hb[0]['arrays'].items()}, len(hb[1])))"
                                "(_unpack((tmp / 'p.ttc').read_bytes()))")
    want_entries = {k: ("bitmask" if v.ndim >= 2 and (v == 0).mean() >= 0.5 else "dense", v.dtype.str, v.shape) for k, v in state.items()}
    assert entries == want_entries, \
        f"header entries (format, dtype, shape): expected {want_entries} (bitmask where ndim >= 2 and at least half zeros), got {fmt(entries)}"
    want_blob = sum(-(-v.size // 8) + int(np.count_nonzero(v)) * v.itemsize if entries[k][0] == "bitmask" else v.nbytes
                    for k, v in state.items())
    assert blob_len == want_blob, f"the blob should hold the packed bits and nonzero values of bitmask entries and the raw bytes of dense ones: {want_blob:,} bytes expected, got {blob_len:,}"
    s.expect_error("save_compressed(tmp / 'm.ttc', prune(net, 0.5))", "save_compressed of a model with pruning masks", ("make_permanent",))
    # pruned + int8, with lzma and meta
    s.run("""
from tinytorch_lib.quantization import quantize
q = quantize(pruned, [x])
qsize = save_compressed(tmp / 'q.ttc', q, meta={'note': 'pruned + int8'})
q2, meta2 = load_compressed(tmp / 'q.ttc')
""", x=x)
    got, want, meta2, qsize = s.value("(q2(Tensor(x)).data, q(Tensor(x)).data, meta2, qsize)", x=x)
    assert np.array_equal(got, want) and meta2 == {"note": "pruned + int8"}, \
        f"pruned + int8 with lzma: same outputs and meta after loading; meta {meta2!r}, outputs {fmt('equal' if np.array_equal(got, want) else 'different')}"
    codes, orig = s.value("(q2[0].weight_q.data, q[0].weight_q.data)")
    assert codes.dtype == np.int8 and np.array_equal(codes, orig), f"int8 codes come back as int8, exactly; got {codes.dtype}"
    assert isinstance(qsize, int) and qsize < size, f"int8 + lzma ({qsize:,} bytes) should be smaller than float32 bitmask without lzma ({size:,})"
    dw = rng.standard_normal((2, 3)).astype(np.float32)
    got = s.value("""(lambda m: (m[0].weight.data.__setitem__(Ellipsis, dw), save_compressed(tmp / 'd.ttc', m),
                                 load_compressed(tmp / 'd.ttc')[0][0].weight.data)[-1])(Sequential(Linear(3, 2, rng=0)))""", dw=dw)
    assert np.array_equal(got, dw), "a dense model (Linear(3, 2), no zeros) round-trips too"
    s.run("(tmp / 'bad.ttc').write_bytes(b'not a model')")
    s.expect_error("load_compressed(tmp / 'bad.ttc')", "load_compressed of a file that is not a model")
