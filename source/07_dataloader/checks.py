"""Module 07's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value, oracle and comparison stays here (the digits oracle reads data/digits.npz here).
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check
from tito.modules import ROOT


TENSOR = "tinytorch_lib.tensor.Tensor"
# Sandbox helpers: `Squares` is the notebook's given (visible) example data set; `described` turns what
# the student's code returned into data (type names, and the arrays of Tensors); `slices` does the same
# for a list of batch indices (slices as (type, start, stop, step)).
HELPERS = '''
class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return Tensor(np.array([i, i * i], dtype=np.float32)), Tensor(np.int64(i))


def described(v):
    t = type(v)
    if t in (tuple, list):
        return {"type": t.__name__, "items": [described(i) for i in v]}
    d = getattr(v, "data", None)
    ok = isinstance(d, np.ndarray) and d.dtype.kind in "biuf"
    return {"type": f"{t.__module__}.{t.__qualname__}", "shape": d.shape if ok else None,
            "data": d.reshape(-1) if ok else None}


def slices(got):
    return [(type(x).__name__, getattr(x, "start", None), getattr(x, "stop", None), getattr(x, "step", None))
            for x in got]
'''


def helpers(s):
    s.run(HELPERS)


def tensors(got, what: str, n: int, containers=("tuple",)) -> list:
    """The arrays of a described tuple of n Tensors; AssertionError saying what came back otherwise."""
    assert got["type"] in containers and len(got.get("items", ())) == n, \
        f"{what} should be a tuple of {n} Tensors, got a {fmt(got['type'])}" + \
        (f" of {len(got['items'])}" if "items" in got else "")
    kinds = [i["type"] for i in got["items"]]
    assert all(k == TENSOR for k in kinds), f"{what} should hold Tensors, got {kinds}"
    return [i["data"].reshape(i["shape"]) for i in got["items"]]


def digits():
    with np.load(ROOT / "data" / "digits.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@check("test_07_1_tensor_dataset")
def tensor_dataset(s):
    helpers(s)
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    s.run("ds = TensorDataset(Tensor(x), Tensor(y))", x=x, y=y)
    n = s.value("len(ds)")
    assert n == 6, f"len(TensorDataset(x (6, 2), y (6,))): expected 6, got {n}"
    sx, sy = tensors(s.value("described(ds[2])"), "ds[2]", 2)
    assert np.array_equal(sx, [4.0, 5.0]) and np.array_equal(sy, 2), \
        f"ds[2] of x = arange(12).reshape(6, 2), y = [0, 1, 2, 0, 1, 2]: expected ([4, 5], 2), got ({fmt(sx)}, {fmt(sy)})"
    bx, by = tensors(s.value("described(ds[np.array([5, 0])])"), "ds[np.array([5, 0])]", 2)
    assert bx.shape == (2, 2) and by.shape == (2,), \
        f"ds[np.array([5, 0])]: expected shapes (2, 2) and (2,), got {bx.shape}, {by.shape}"
    assert np.array_equal(bx, [[10, 11], [0, 1]]) and np.array_equal(by, [2, 0]), \
        f"ds[np.array([5, 0])]: expected rows 5 then 0, x [[10, 11], [0, 1]], y [2, 0]; got {bx.tolist()}, {by.tolist()}"
    s.expect_error("TensorDataset(Tensor(np.zeros((5, 3))), Tensor(np.zeros(4)))",
                   "TensorDataset(x (5, 3), y (4,)) (5 samples vs 4 labels)", ("5", "4"))

    a = np.arange(40, dtype=np.uint8).reshape(10, 2, 2)
    b = np.arange(10, dtype=np.int64) * 3
    c = np.linspace(0, 1, 10, dtype=np.float64)
    made = "TensorDataset(a, Tensor(b), c) with a uint8 array a (10, 2, 2), an int64 Tensor b (10,), a float64 array c (10,)"
    s.run("ds3 = TensorDataset(a, Tensor(b), c)", a=a, b=b, c=c)
    n = s.value("len(ds3)")
    assert n == 10, f"{made}: len should be 10, got {n}"
    stored = s.value("described(ds3.tensors)")
    assert stored["type"] == "tuple" and all(i["type"] == TENSOR for i in stored.get("items", ())), \
        f"{made}: self.tensors should be a tuple of Tensors (numpy arrays wrapped), got a {fmt(stored['type'])} of " \
        f"{fmt([i['type'] for i in stored.get('items', ())])}"
    dtypes = [i["data"].dtype if i["data"] is not None else None for i in stored["items"]]
    assert dtypes == [np.uint8, np.int64, np.float64], \
        f"{made}: dtypes must be kept: expected uint8, int64, float64, got {dtypes}"
    got = tensors(s.value("described(ds3[1:4])"), "ds3[1:4]", 3)
    assert [g.shape for g in got] == [(3, 2, 2), (3,), (3,)], \
        f"{made}: ds3[1:4] should have shapes (3, 2, 2), (3,), (3,), got {[g.shape for g in got]}"
    assert np.array_equal(got[0], a[1:4]) and np.array_equal(got[1], b[1:4]) and np.array_equal(got[2], c[1:4]), \
        f"{made}: ds3[1:4] should hold rows 1, 2, 3 of each tensor"
    idx = np.array([9, 3, 3, 0])
    got = tensors(s.value("described(ds3[idx])", idx=idx), "ds3[np.array([9, 3, 3, 0])]", 3)
    assert all(np.array_equal(g, w[idx]) for g, w in zip(got, (a, b, c))), \
        f"{made}: ds3[np.array([9, 3, 3, 0])] should hold rows 9, 3, 3, 0 of each tensor (repeats included)"
    got = tensors(s.value("described(ds3.get_batch(slice(2, 5)))"), "ds3.get_batch(slice(2, 5))", 3)
    assert np.array_equal(got[1], b[2:5]), f"{made}: get_batch(slice(2, 5)) should give rows 2..4, got {fmt(got[1])}"
    for shapes in [((3, 2), (3,), (7,)), ((2,), (9, 2))]:
        lengths = [sh[0] for sh in shapes]
        s.expect_error("TensorDataset(*[np.zeros(sh) for sh in shapes])",
                       f"TensorDataset of arrays of shapes {', '.join(map(str, shapes))} (lengths {lengths})",
                       tuple(str(n) for n in lengths), shapes=list(shapes))


@check("test_07_2_load_digits")
def load_digits_(s):
    helpers(s)
    try:
        n = s.value("len(TensorDataset(Tensor(np.zeros((3, 2))), Tensor(np.zeros(3))))")
        problem = None if n == 3 else f"got {n!r}"
    except StudentError as e:
        problem = f"{e.said}"
    assert problem is None, (f"Task 07.2 returns a TensorDataset from Task 07.1, and len(TensorDataset(x (3, 2), "
                             f"y (3,))) did not return 3 ({problem}): make Task 07.1's tests pass first")
    raw = digits()
    got = {}
    for split in ("train", "test"):
        for flatten in (True, False):
            for normalize in (True, False):
                call = f'load_digits("{split}", flatten={flatten}, normalize={normalize})'
                s.run(f"d = {call}")
                kind = s.value("f'{type(d).__module__}.{type(d).__qualname__}'")
                assert kind == "tinytorch_lib.dataloader.TensorDataset", \
                    f"{call} should return a TensorDataset, got {fmt(kind)}"
                n = s.value("len(d)")
                want_n = len(raw[f"{split}_index"])
                assert n == want_n, f"len({call}): expected {want_n}, got {n}"
                got[split, flatten, normalize] = tensors(s.value("described(d.tensors)"), f"{call}.tensors", 2,
                                                         ("tuple", "list"))
    for split in ("train", "test"):
        rows = raw[f"{split}_index"]
        n = len(rows)
        for flatten in (True, False):
            for normalize in (True, False):
                call = f'load_digits("{split}", flatten={flatten}, normalize={normalize})'
                x, y = got[split, flatten, normalize]
                shape = (n, 64) if flatten else (n, 1, 8, 8)
                assert x.shape == shape and x.dtype == np.float32, \
                    f"{call} x: expected {shape} float32, got {x.shape} {x.dtype}"
                assert y.shape == (n,) and y.dtype == np.int64, f"{call} y: expected ({n},) int64, got {y.shape} {y.dtype}"
                if normalize:
                    assert x.min() == 0.0 and x.max() == 1.0, \
                        f"{call}: normalize=True: pixels should span [0, 1], got [{x.min()}, {x.max()}]"
                want = raw["images"][rows].astype(np.float32) / (np.float32(16) if normalize else np.float32(1))
                assert np.array_equal(x, want.reshape(shape)), \
                    f"{call}: x should be images[{fmt(split)}_index]{fmt(' / 16' if normalize else ' (values 0..16)')}, " \
                    f"rows in index order, shape {shape}"
                assert sorted(set(y.tolist())) == list(range(10)), \
                    f"{call}: labels should be the digits 0..9, got {sorted(set(y.tolist()))}"
                assert np.array_equal(y, raw["labels"][rows]), f"{call}: y should be labels[{fmt(split)}_index], in index order"
    s.expect_error('load_digits("validation")', 'load_digits("validation") (the splits are "train" and "test")',
                   ("train", "test"))


@check("test_07_3_batch_slices")
def batch_slices_(s):
    helpers(s)

    def sliced(n, b, drop):
        try:
            return s.value("slices(batch_slices(n, b, drop))", n=n, b=b, drop=drop)
        except StudentError as e:
            raise AssertionError(f"batch_slices({n}, {b}, drop_last={fmt(drop)}) raised {e.said}") from None

    def want(n, b, drop):
        return [("slice", start, min(start + b, n), None) for start in range(0, n - n % b if drop else n, b)]

    def shown(got):
        return [f"slice({a}, {b})" if t == "slice" and c is None else f"slice({a}, {b}, {c})" if t == "slice"
                else f"a {t}, not a slice" for t, a, b, c in got]

    for n, b, drop, why in [(10, 4, False, ""), (10, 4, True, ""), (8, 4, True, " (4 divides 8)"),
                            (3, 5, True, " (no full batch, no batch)"), (3, 5, False, " (one short batch)")]:
        got = sliced(n, b, drop)
        assert got == want(n, b, drop), \
            f"batch_slices({n}, {b}, drop_last={fmt(drop)}){why}: expected {shown(want(n, b, drop))}, got {shown(got)}"
    got = sliced(1437, 32, False)
    assert got == want(1437, 32, False), \
        f"batch_slices(1437, 32): expected 45 slices ending with slice(1408, 1437), got {len(got)} ending with " \
        f"{shown(got[-1:])}"
    helpers_ok = s.value("[(x.shape, y.shape) for x, y in DataLoader(Squares(10), batch_size=4)]")
    assert helpers_ok == [((4, 2), (4,)), ((4, 2), (4,)), ((2, 2), (2,))], \
        f"DataLoader(Squares(10), batch_size=4): expected x, y shapes ((4, 2), (4,)) twice then ((2, 2), (2,)), got {fmt(helpers_ok)}"
    labels = s.value("[y.data.tolist() for _, y in DataLoader(Squares(10), batch_size=4, drop_last=True)]")
    assert labels == [[0, 1, 2, 3], [4, 5, 6, 7]], \
        f"drop_last=True, 10 samples, batch 4: expected labels [[0..3], [4..7]], got {labels}"
    rng = np.random.default_rng(7)
    for _ in range(200):
        n, b, drop = int(rng.integers(1, 60)), int(rng.integers(1, 70)), bool(rng.integers(2))
        got = sliced(n, b, drop)
        assert all(g[0] == "slice" for g in got), f"batch_slices({n}, {b}, {fmt(drop)}) should return slices, got {shown(got)}"
        assert got == want(n, b, drop), \
            f"batch_slices({n}, {b}, drop_last={fmt(drop)}): expected {shown(want(n, b, drop))}, got {shown(got)}"


@check("test_07_4_shuffled_batches")
def shuffled_batches_(s):
    helpers(s)

    def batches(n, b, drop, seed, epoch):
        call = f"shuffled_batches({n}, {b}, {drop}, seed={seed}, epoch={epoch})"
        try:
            got = s.value("[np.asarray(g) for g in shuffled_batches(n, b, drop, seed=seed, epoch=epoch)]",
                          n=n, b=b, drop=drop, seed=seed, epoch=epoch)
        except StudentError as e:
            raise AssertionError(f"{call} raised {e.said}") from None
        return call, got

    def want(n, b, drop, seed, epoch):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        return [order[start:min(start + b, n)] for start in range(0, n - n % b if drop else n, b)]

    call, got = batches(10, 4, False, 0, 0)
    assert [len(g) for g in got] == [4, 4, 2], f"{call}: expected batch sizes [4, 4, 2], got {[len(g) for g in got]}"
    flat = np.concatenate(got)
    order = np.random.default_rng([0, 0]).permutation(10)
    assert np.array_equal(flat, order), \
        f"seed=0, epoch=0: expected np.random.default_rng([0, 0]).permutation(10) = {order.tolist()} cut into batches, " \
        f"got {flat.tolist()}"
    again = np.concatenate(batches(10, 4, False, 0, 0)[1])
    assert np.array_equal(again, flat), f"the same (seed, epoch) must give the same order: {flat.tolist()} then {again.tolist()}"
    other = np.concatenate(batches(10, 4, False, 0, 1)[1])
    assert sorted(other.tolist()) == list(range(10)) and not np.array_equal(other, flat), \
        f"epoch 1 should be a different permutation of 0..9 than epoch 0 ({flat.tolist()}), got {other.tolist()}"
    call, dropped = batches(10, 4, True, 0, 0)
    assert [len(g) for g in dropped] == [4, 4], f"{call}: expected sizes [4, 4], got {[len(g) for g in dropped]}"
    s.run("loader = DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)\n"
          "first = np.concatenate([y.data for _, y in loader])\n"
          "second = np.concatenate([y.data for _, y in loader])\n"
          "fresh = np.concatenate([y.data for _, y in DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)])")
    first, second, fresh = s.value("first"), s.value("second"), s.value("fresh")
    assert sorted(first.tolist()) == list(range(10)), f"one shuffled epoch should hold every sample once, got labels {first.tolist()}"
    assert np.array_equal(first, np.concatenate(want(10, 4, False, 3, 0))), \
        f"DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3): epoch 0 should be default_rng([3, 0]).permutation(10), " \
        f"got labels {first.tolist()}"
    assert not np.array_equal(first, second), f"two epochs of one loader gave the same order {first.tolist()}"
    assert np.array_equal(first, fresh), f"a new loader with the same seed should repeat epoch 0: {first.tolist()} vs {fresh.tolist()}"

    for n, b, drop, seed, epoch in [(1437, 32, False, 0, 5), (1437, 128, True, 11, 0), (7, 3, False, 2, 9),
                                    (360, 360, False, 1, 2)]:
        call, got = batches(n, b, drop, seed, epoch)
        expected = want(n, b, drop, seed, epoch)
        assert len(got) == len(expected) and all(g.shape == w.shape and np.array_equal(g, w) for g, w in zip(got, expected)), \
            f"{call} differs from default_rng([{fmt(seed)}, {fmt(epoch)}]).permutation({n}) cut in order into batches of {b}" + \
            (f": expected {len(expected)} batches, got {len(got)}" if len(got) != len(expected) else "")
        kinds = sorted({g.dtype.kind for g in got})
        assert kinds == ["i"], f"{call}: batches should be int arrays, got dtypes {sorted({str(g.dtype) for g in got})}"
    a = np.concatenate(batches(50, 10, False, 1, 0)[1])
    b = np.concatenate(batches(50, 10, False, 2, 0)[1])
    assert not np.array_equal(a, b), "shuffled_batches(50, 10, False, seed=1 / seed=2, epoch=0): different seeds " \
                                     "should give different orders"
