# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 07: DataLoader
#
# Training does not look at a data set all at once. It walks through it in
# **batches**: take 32 images, compute the loss, update the weights, take the
# next 32. One pass over every image is an **epoch**. The code that cuts a
# data set into batches, in a fresh random order each epoch, is the data
# loader, and it runs in the innermost loop of training, so its cost is paid
# once per batch, thousands of times.
#
# This module loads the course's real data set, 1,797 handwritten digits
# (8 x 8 pixels, 10 classes), and builds the three pieces PyTorch users know:
#
# - `Dataset`: anything with `len(ds)` and `ds[i]`, one sample per index;
# - `TensorDataset`: a data set held as tensors whose first dimension is the
#   sample, `x (N, 64)` and `y (N,)`;
# - `DataLoader`: yields batches `(x (batch, 64), y (batch,))`, shuffled with
#   a seed so that every run sees the same orders.
#
# | task | what you build | points |
# |---|---|---|
# | 07.1 | `TensorDataset`: samples as rows of tensors, a clear error when lengths differ | 3 |
# | 07.2 | `load_digits`: the digits as a `TensorDataset`, scaled to [0, 1] | 4 |
# | 07.3 | `batch_slices`: cut `N` samples into batches, keep or drop the last one | 4 |
# | 07.4 | `shuffled_batches`: a seeded order that changes every epoch | 4 |
#
# The systems questions: how many bytes the data set takes in each dtype,
# what one batch costs no matter how many images it holds, and why shuffling
# is not free (a shuffled batch is a copy, a sequential one is a view).
#
# This module uses only Module 01's `Tensor`; Module 08 trains models with
# the `DataLoader` you build here.

# %% tags=["export"]
import numpy as np

import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short
from tinytorch_lib.tensor import Tensor

# %% [markdown]
# ## Which `Tensor` are you running on?
#
# `tinytorch_lib/tensor.py` is either the course reference or your own export
# of Module 01. When this notebook is autograded by the instructor, it always
# runs on the reference, so your grade here depends only on this module.

# %%
print(tinytorch_lib.origin("tensor"))

# %% [markdown]
# ## 1. Datasets
#
# A `Dataset` answers two questions: how many samples (`len(ds)`) and what is
# sample `i` (`ds[i]`, a tuple such as `(image, label)`). That is the whole
# contract, so a data set can be an array in memory, a folder of files, or
# something computed on the fly.
#
# The loader needs whole batches. The given base class has `get_batch(index)`,
# where `index` is a `slice` or an array of sample positions: by default it
# fetches the samples one at a time and stacks them with `np.stack`, so every
# `Dataset` works with the loader. A data set that can do better, by indexing
# all rows in one numpy operation, overrides it.
#
# Worked example: `Squares(5)` computes its samples; `get_batch` of positions
# `[0, 2, 4]` stacks three samples `x (2,)` into a batch `x (3, 2)`.

# %% tags=["export"]
class Dataset:
    """Base class: len(ds) samples; ds[i] is a tuple of Tensors (or values) for sample i."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, i):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def get_batch(self, index) -> tuple:
        """index: a slice or 1-d int array of positions -> tuple of Tensors, each (batch, ...).

        The default fetches one sample at a time and stacks them; subclasses may
        override it to fetch the whole batch in one step.
        """
        positions = range(len(self))[index] if isinstance(index, slice) else index
        samples = [self[int(i)] for i in positions]
        return tuple(Tensor(np.stack([Tensor(s[k]).data for s in samples])) for k in range(len(samples[0])))


# %%
class Squares(Dataset):
    """Sample i: x = [i, i^2] float32 (2,), y = i int64 ()."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return Tensor(np.array([i, i * i], dtype=np.float32)), Tensor(np.int64(i))


squares = Squares(5)
x, y = squares.get_batch(np.array([0, 2, 4]))
print(f"len(squares) = {len(squares)}; squares[3] = ({squares[3][0].data}, {squares[3][1].data})")
print(f"get_batch([0, 2, 4]): x {x.shape} {x.dtype} = {x.data.tolist()}, y {y.shape} {y.dtype} = {y.data.tolist()}")

# %% [markdown]
# ### Task 07.1: `TensorDataset`
#
# When the whole data set fits in memory, as the digits do, keep it as
# tensors whose **first dimension is the sample**: images
# `x (N, 64)` and labels `y (N,)`. Sample `i` is row `i` of every tensor.
#
# ```
# ds = TensorDataset(x (6, 2), y (6,))
# len(ds)            -> 6
# ds[2]              -> (x[2] (2,), y[2] ())
# ds[np.array([5, 0])] -> (x (2, 2), y (2,))     rows 5 and 0, in that order
# ds[1:4]            -> (x (3, 2), y (3,))
# ```
#
# Implement `__init__`, `__len__` and `__getitem__`:
#
# - `__init__(*tensors)`: one or more tensors; a numpy array is wrapped in
#   `Tensor` (which keeps its dtype). Store them as a tuple of `Tensor`s in
#   `self.tensors`. If their first dimensions differ, raise `ValueError`
#   naming every length, e.g.
#   `TensorDataset: tensors must have the same first dimension (one row per sample), got lengths [5, 4]`.
# - `__len__`: the common first dimension.
# - `__getitem__(index)`: a tuple with one `Tensor` per stored tensor, each
#   indexed by `index` along its first dimension. `index` may be an int, a
#   slice or an int array: `Tensor.__getitem__` (Module 01) handles all three.
#
# Because `__getitem__` already takes a slice or an index array, the given
# `get_batch` just calls it: one numpy indexing operation per tensor per
# batch, instead of one per sample.

# %% nbgrader={"grade": false, "grade_id": "tensor_dataset", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class TensorDataset(Dataset):
    """TensorDataset(x (N, ...), y (N,), ...): sample i is (x[i], y[i], ...)."""

    def __init__(self, *tensors):
        # Task 07.1: store the tensors (as Tensors) in self.tensors; first dimensions must match
        ### BEGIN SOLUTION
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        if any(t.ndim == 0 for t in tensors):
            raise ValueError(f"TensorDataset: every tensor needs a first dimension, got shapes "
                             f"{[t.shape for t in tensors]}")
        lengths = [t.shape[0] for t in tensors]
        if len(set(lengths)) > 1:
            raise ValueError(f"TensorDataset: tensors must have the same first dimension (one row per sample), "
                             f"got lengths {lengths}")
        self.tensors = tensors
        ### END SOLUTION

    def __len__(self) -> int:
        # Task 07.1: the number of samples
        ### BEGIN SOLUTION
        return self.tensors[0].shape[0]
        ### END SOLUTION

    def __getitem__(self, index) -> tuple:
        # Task 07.1: one Tensor per stored tensor, indexed along the first dimension
        ### BEGIN SOLUTION
        return tuple(t[index] for t in self.tensors)
        ### END SOLUTION

    def get_batch(self, index) -> tuple:
        """index: a slice or int array -> (x (batch, ...), y (batch,), ...) in one indexing step."""
        return self[index]


# %% nbgrader={"grade": true, "grade_id": "test_07_1_tensor_dataset", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 07.1
from tinytorch_lib.testing import task

with task("07.1"):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    ds = TensorDataset(Tensor(x), Tensor(y))
    assert len(ds) == 6, f"len(TensorDataset(x (6, 2), y (6,))): expected 6, got {len(ds)}"
    sample = ds[2]
    assert isinstance(sample, tuple) and len(sample) == 2, f"ds[2] should be a tuple (x[2], y[2]), got {sample!r}"
    assert all(isinstance(t, Tensor) for t in sample), f"ds[2] should hold Tensors, got {[type(t).__name__ for t in sample]}"
    assert np.array_equal(sample[0].data, [4.0, 5.0]) and sample[1].data == 2, \
        f"ds[2] of x = arange(12).reshape(6, 2), y = [0, 1, 2, 0, 1, 2]: expected ([4, 5], 2), got ({fmt(sample[0].data)}, {fmt(sample[1].data)})"
    bx, by = ds[np.array([5, 0])]
    assert bx.shape == (2, 2) and by.shape == (2,), f"ds[np.array([5, 0])]: expected shapes (2, 2) and (2,), got {bx.shape}, {by.shape}"
    assert np.array_equal(bx.data, [[10, 11], [0, 1]]) and np.array_equal(by.data, [2, 0]), \
        f"ds[np.array([5, 0])]: expected rows 5 then 0, x [[10, 11], [0, 1]], y [2, 0]; got {bx.data.tolist()}, {by.data.tolist()}"
    try:
        TensorDataset(Tensor(np.zeros((5, 3))), Tensor(np.zeros(4)))
    except ValueError as e:
        assert "5" in str(e) and "4" in str(e), f"the error should name both lengths 5 and 4, got: {e}"
    else:
        raise AssertionError("TensorDataset(x (5, 3), y (4,)) should raise ValueError: 5 samples vs 4 labels")
print("Task 07.1 visible tests passed")

# %% [markdown]
# ## 2. The digits
#
# The course's data set is the UCI *Optical Recognition of Handwritten
# Digits* (Alpaydin and Kaynak, 1998, CC BY 4.0), as bundled with
# scikit-learn: 1,797 images of 8 x 8 pixels, each pixel the count of "on"
# pixels in a 4 x 4 block of a 32 x 32 scan, so a whole number 0..16.
# `data/digits.npz` holds them as uint8, with one fixed, stratified split
# (every digit keeps its share of each part): 1,437 images to train on, 360
# held out to test on. Everything in the course uses this split, so accuracy
# figures are comparable. `data/README.md` says where the file came from and
# how it was made.
#
# The given `read_digits()` finds the file from the package's location
# (`tinytorch_lib.data_dir()`, not the working directory: the autograder runs
# notebooks from another folder), checks it, and returns its arrays:
#
# | key | dtype | shape | content |
# |---|---|---|---|
# | `images` | uint8 | (1797, 8, 8) | pixel values 0..16 |
# | `labels` | uint8 | (1797,) | the digit 0..9 |
# | `train_index` | uint16 | (1437,) | rows of the training split |
# | `test_index` | uint16 | (360,) | rows of the test split |
#
# A missing or damaged file stops with a message that says what to do; there
# is no made-up fallback data.

# %% tags=["export"]
DIGITS_FILE = "digits.npz"
DIGITS_ARRAYS = {  # key -> (shape, dtype, largest allowed value)
    "images": ((1797, 8, 8), np.uint8, 16),
    "labels": ((1797,), np.uint8, 9),
    "train_index": ((1437,), np.uint16, 1796),
    "test_index": ((360,), np.uint16, 1796),
}


def read_digits() -> dict:
    """The arrays of data/digits.npz (table above), checked; raises if missing or corrupt."""
    path = tinytorch_lib.data_dir(DIGITS_FILE) / DIGITS_FILE
    fix = f"restore it with `git checkout data/{DIGITS_FILE}` (data/README.md says how it was made)"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except Exception as e:
        raise ValueError(f"{path} is corrupt, numpy cannot read it ({type(e).__name__}: {e}): {fix}") from None
    for key, (shape, dtype, top) in DIGITS_ARRAYS.items():
        a = arrays.get(key)
        if a is None or a.shape != shape or a.dtype != dtype or a.max() > top:
            got = "missing" if a is None else f"{a.dtype} {a.shape}, max {a.max()}"
            raise ValueError(f"{path} is corrupt: '{key}' should be {np.dtype(dtype).name} {shape} "
                             f"with values <= {top}, got {got}: {fix}")
    both = np.concatenate([arrays["train_index"], arrays["test_index"]])
    if not np.array_equal(np.sort(both), np.arange(1797)):
        raise ValueError(f"{path} is corrupt: the train and test indices should split rows 0..1796: {fix}")
    return arrays


# %%
raw = read_digits()
print(f"{tinytorch_lib.data_dir(DIGITS_FILE) / DIGITS_FILE}")
print("first image, pixel values 0..16 (label", raw["labels"][0], "):")
print(raw["images"][0])

# %% [markdown]
# ### Task 07.2: `load_digits`
#
# Turn a split into a `TensorDataset(x, y)` that a model can eat:
#
# 1. `split` is `"train"` or `"test"`; anything else raises `ValueError`
#    naming the allowed values. Take the rows `raw[f"{split}_index"]`, in
#    that order, of `images` and `labels`.
# 2. `x`: float32. With `normalize=True` (the default) divide by 16 so the
#    pixels lie in [0, 1] (inputs of order 1 keep a network's first
#    activations of order 1); with `normalize=False` keep the values 0..16.
# 3. `x`'s shape: `(N, 64)` with `flatten=True` (the default, for an MLP),
#    `(N, 1, 8, 8)` with `flatten=False` (one channel, for the CNN in
#    Module 09).
# 4. `y`: the labels as int64, shape `(N,)` (loss functions index with
#    them, and int64 is what PyTorch's cross-entropy expects).
#
# ```
# load_digits("train")                 -> x (1437, 64) float32 in [0, 1], y (1437,) int64
# load_digits("test", flatten=False)   -> x (360, 1, 8, 8) float32,      y (360,) int64
# ```
#
# This task returns a `TensorDataset`, so it needs Task 07.1.

# %% nbgrader={"grade": false, "grade_id": "load_digits", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def load_digits(split: str = "train", flatten: bool = True, normalize: bool = True) -> TensorDataset:
    """"train" (1437) or "test" (360) -> TensorDataset(x, y).

    x: (N, 64) if flatten else (N, 1, 8, 8), float32, pixels / 16 in [0, 1] if normalize else 0..16
    y: (N,) int64, the digit 0..9
    """
    # Task 07.2: pick the split's rows, convert to float32, scale, reshape; labels as int64
    ### BEGIN SOLUTION
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    raw = read_digits()
    rows = raw[f"{split}_index"]
    x = raw["images"][rows].astype(np.float32)
    if normalize:
        x /= 16.0
    x = x.reshape(len(rows), 64) if flatten else x.reshape(len(rows), 1, 8, 8)
    y = raw["labels"][rows].astype(np.int64)
    return TensorDataset(Tensor(x), Tensor(y))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_07_2_load_digits", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 07.2 (they rely on Task 07.1's TensorDataset)
from tinytorch_lib.testing import task

with task("07.2", uses={"07.1": "TensorDataset"}):
    try:
        assert len(TensorDataset(Tensor(np.zeros((3, 2))), Tensor(np.zeros(3)))) == 3
    except Exception as e:
        raise AssertionError(f"Task 07.2 returns a TensorDataset from Task 07.1, and len(TensorDataset(x (3, 2), y (3,))) "
                             f"did not return 3 ({e!r}): make Task 07.1's tests pass first") from None
    train = load_digits("train")
    assert isinstance(train, TensorDataset), f"load_digits should return a TensorDataset, got {type(train).__name__}"
    x, y = train.tensors
    assert len(train) == 1437, f'len(load_digits("train")): expected 1437, got {len(train)}'
    assert x.shape == (1437, 64) and x.dtype == np.float32, f'load_digits("train") x: expected (1437, 64) float32, got {x.shape} {x.dtype}'
    assert y.shape == (1437,) and y.dtype == np.int64, f'load_digits("train") y: expected (1437,) int64, got {y.shape} {y.dtype}'
    assert x.data.min() == 0.0 and x.data.max() == 1.0, f"normalize=True: pixels should span [0, 1], got [{fmt(x.data.min())}, {fmt(x.data.max())}]"
    assert sorted(set(y.data.tolist())) == list(range(10)), f"labels should be the digits 0..9, got {sorted(set(y.data.tolist()))}"
    test = load_digits("test", flatten=False)
    assert test.tensors[0].shape == (360, 1, 8, 8), f'load_digits("test", flatten=False) x: expected (360, 1, 8, 8), got {test.tensors[0].shape}'
    assert test.tensors[1].shape == (360,), f'load_digits("test") y: expected (360,), got {test.tensors[1].shape}'
    try:
        load_digits("validation")
    except ValueError as e:
        assert "train" in str(e) and "test" in str(e), f"the error should name the allowed splits, got: {e}"
    else:
        raise AssertionError('load_digits("validation") should raise ValueError: the splits are "train" and "test"')
print("Task 07.2 visible tests passed")

# %% [markdown]
# ## 3. The DataLoader
#
# The loader turns a data set into a stream of batches. It decides only
# **which samples** go into each batch; fetching them is the data set's
# `get_batch`. The `DataLoader` below is given; it needs two functions, which
# are your next two tasks.
#
# ```
# loader = DataLoader(load_digits("train"), batch_size=32, shuffle=True, seed=0)
# len(loader)                  -> 45 batches: 44 of 32 images and a last one of 29
# for x, y in loader: ...      -> x (32, 64) float32, y (32,) int64
# ```
#
# - `shuffle=False`: batches in order, each described by a `slice` (Task 07.3).
# - `shuffle=True`: each epoch a new random order, each batch an index array
#   (Task 07.4).
# - `drop_last=True`: a last batch smaller than `batch_size` is skipped.
#   Some code wants every batch the same size (a shape-specialised kernel,
#   a batch statistic computed over few samples); the price is that those
#   samples are not seen that epoch.
#
# Every `iter(loader)` (every `for` loop over it) starts a new epoch and
# increases `loader.epoch`; `set_epoch(e)` jumps to epoch `e`, for example
# when training resumes from a checkpoint.

# %% tags=["export"]
class DataLoader:
    """Batches of a Dataset: for x, y in DataLoader(ds, batch_size=32, shuffle=True, seed=0): ...

    Each batch is dataset.get_batch(index): for a TensorDataset of x (N, ...) and y (N,),
    x (batch, ...) and y (batch,) in the stored dtypes (load_digits: float32 and int64).
    The last batch holds N % batch_size samples unless drop_last. shuffle: epoch e's
    order is np.random.default_rng([seed, e]).permutation(N) (Task 07.4).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 32, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a whole number >= 1, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty (len 0), there is nothing to batch")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0  # the epoch the next iter() starts

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def batches(self, epoch: int) -> list:
        """The index of each batch of `epoch`: slices in order, or index arrays when shuffling."""
        n = len(self.dataset)
        if self.shuffle:
            return shuffled_batches(n, self.batch_size, self.drop_last, self.seed, epoch)
        return batch_slices(n, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = self.batches(self.epoch)  # decided now, so an epoch is fixed when it starts
        self.epoch += 1
        return (self.dataset.get_batch(index) for index in order)

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")


# %% [markdown]
# ### Task 07.3: `batch_slices`
#
# Cut positions `0..n-1` into consecutive batches of `batch_size`, each a
# `slice(start, stop)`. The last batch holds what is left (`n % batch_size`
# samples) unless `drop_last` is true, in which case it is left out. When
# `batch_size` divides `n` there is no short batch and `drop_last` changes
# nothing.
#
# ```
# batch_slices(10, 4, drop_last=False) -> [slice(0, 4), slice(4, 8), slice(8, 10)]
# batch_slices(10, 4, drop_last=True)  -> [slice(0, 4), slice(4, 8)]
# batch_slices(1437, 32, False)        -> 45 slices, the last slice(1408, 1437) of 29 samples
# ```
#
# Why slices and not lists of positions: `x[8:10]` on a numpy array is a
# **view**, a new description of the same memory (no bytes copied), while
# `x[[8, 9]]` copies the rows. The systems analysis measures the difference.

# %% nbgrader={"grade": false, "grade_id": "batch_slices", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def batch_slices(n: int, batch_size: int, drop_last: bool = False) -> list:
    """n samples -> [slice(0, b), slice(b, 2b), ...]; the last one shorter, or dropped if drop_last."""
    # Task 07.3: consecutive slices of batch_size; keep or drop the short last one
    ### BEGIN SOLUTION
    stop = n - n % batch_size if drop_last else n
    return [slice(start, min(start + batch_size, n)) for start in range(0, stop, batch_size)]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_07_3_batch_slices", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 07.3
from tinytorch_lib.testing import task

with task("07.3"):
    got = batch_slices(10, 4, drop_last=False)
    assert got == [slice(0, 4), slice(4, 8), slice(8, 10)], \
        f"batch_slices(10, 4, drop_last=False): expected [slice(0, 4), slice(4, 8), slice(8, 10)], got {fmt(got)}"
    got = batch_slices(10, 4, drop_last=True)
    assert got == [slice(0, 4), slice(4, 8)], f"batch_slices(10, 4, drop_last=True): expected [slice(0, 4), slice(4, 8)], got {fmt(got)}"
    got = batch_slices(8, 4, drop_last=True)
    assert got == [slice(0, 4), slice(4, 8)], f"batch_slices(8, 4, drop_last=True): 4 divides 8, expected [slice(0, 4), slice(4, 8)], got {fmt(got)}"
    got = batch_slices(1437, 32)
    assert len(got) == 45 and got[-1] == slice(1408, 1437), \
        f"batch_slices(1437, 32): expected 45 slices ending with slice(1408, 1437), got {len(got)} ending with {fmt(got[-1] if got else None)}"
    loader = DataLoader(Squares(10), batch_size=4)
    shapes = [(x.shape, y.shape) for x, y in loader]
    assert shapes == [((4, 2), (4,)), ((4, 2), (4,)), ((2, 2), (2,))], \
        f"DataLoader(Squares(10), batch_size=4): expected x, y shapes ((4, 2), (4,)) twice then ((2, 2), (2,)), got {shapes}"
    labels = [y.data.tolist() for _, y in DataLoader(Squares(10), batch_size=4, drop_last=True)]
    assert labels == [[0, 1, 2, 3], [4, 5, 6, 7]], f"drop_last=True, 10 samples, batch 4: expected labels [[0..3], [4..7]], got {labels}"
print("Task 07.3 visible tests passed")

# %% [markdown]
# ### Task 07.4: `shuffled_batches`
#
# A model that sees the digits in the same order every epoch can learn the
# order (all the zeros, then all the ones) instead of the digits, so training
# shuffles. Two requirements pull against each other: the order must
# **change every epoch**, and a run must be **reproducible** (same seed, same
# orders, same trained model). The rule that gives both: epoch `e`'s order
# depends only on `(seed, e)`,
#
# ```
# order = np.random.default_rng([seed, epoch]).permutation(n)
# ```
#
# (`default_rng` accepts a list of ints as its seed; `[0, 1]` and `[1, 0]`
# are different streams). No generator state carries over between epochs,
# so resuming at epoch 7 gives exactly the order an uninterrupted run gives.
#
# Cut `order` into batches with the same rule as Task 07.3 (you may call
# `batch_slices`): consecutive chunks of `batch_size`, the last one shorter
# or dropped with `drop_last`. Return the chunks, each a 1-d int array of
# sample positions.
#
# ```
# shuffled_batches(10, 4, False, seed=0, epoch=0) -> 3 arrays of 4, 4 and 2 positions;
#                                                    together a permutation of 0..9
# epoch=1                                          -> a different permutation
# same (seed, epoch) again                         -> the same arrays
# ```
#
# With `drop_last=True`, which samples are left out changes from epoch to
# epoch, so over many epochs all of them are seen.

# %% nbgrader={"grade": false, "grade_id": "shuffled_batches", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def shuffled_batches(n: int, batch_size: int, drop_last: bool, seed: int, epoch: int) -> list:
    """n samples -> [int array (batch_size,), ...] in epoch `epoch`'s seeded random order."""
    # Task 07.4: permutation from default_rng([seed, epoch]), cut like batch_slices
    ### BEGIN SOLUTION
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[s] for s in batch_slices(n, batch_size, drop_last)]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_07_4_shuffled_batches", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 07.4
from tinytorch_lib.testing import task

with task("07.4", uses={"07.3": "batch_slices"}):
    got = shuffled_batches(10, 4, False, seed=0, epoch=0)
    sizes = [len(b) for b in got]
    assert sizes == [4, 4, 2], f"shuffled_batches(10, 4, False, seed=0, epoch=0): expected batch sizes [4, 4, 2], got {sizes}"
    flat = np.concatenate(got)
    want = np.random.default_rng([0, 0]).permutation(10)
    assert np.array_equal(flat, want), \
        f"seed=0, epoch=0: expected np.random.default_rng([0, 0]).permutation(10) = {want.tolist()} cut into batches, got {flat.tolist()}"
    again = np.concatenate(shuffled_batches(10, 4, False, seed=0, epoch=0))
    assert np.array_equal(again, flat), f"the same (seed, epoch) must give the same order: {flat.tolist()} then {again.tolist()}"
    other = np.concatenate(shuffled_batches(10, 4, False, seed=0, epoch=1))
    assert sorted(other.tolist()) == list(range(10)) and not np.array_equal(other, flat), \
        f"epoch 1 should be a different permutation of 0..9 than epoch 0 ({flat.tolist()}), got {other.tolist()}"
    dropped = shuffled_batches(10, 4, True, seed=0, epoch=0)
    assert [len(b) for b in dropped] == [4, 4], f"drop_last=True, n=10, batch 4: expected sizes [4, 4], got {[len(b) for b in dropped]}"
    loader = DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)
    first = np.concatenate([y.data for _, y in loader])
    second = np.concatenate([y.data for _, y in loader])
    fresh = np.concatenate([y.data for _, y in DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)])
    assert sorted(first.tolist()) == list(range(10)), f"one shuffled epoch should hold every sample once, got labels {first.tolist()}"
    assert not np.array_equal(first, second), f"two epochs of one loader gave the same order {first.tolist()}"
    assert np.array_equal(first, fresh), f"a new loader with the same seed should repeat epoch 0: {first.tolist()} vs {fresh.tolist()}"
print("Task 07.4 visible tests passed")

# %% [markdown]
# ### All together
#
# The loader over the training digits: each batch has the shapes and dtypes a
# model expects, and one epoch visits each of the 1,437 images exactly once.

# %%
train = load_digits("train")
loader = DataLoader(train, batch_size=128, shuffle=True, seed=0)
x, y = next(iter(loader))
print(loader)
print(f"{len(loader)} batches per epoch; first batch: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}")
print("first labels of epoch 0:", y.data[:12].tolist())
seen = np.concatenate([y.data for _, y in DataLoader(train, batch_size=128)])
assert np.array_equal(seen, train.tensors[1].data)
print("labels per digit in one epoch:", np.bincount(seen, minlength=10).tolist())

# %% [markdown]
# ## 4. Systems analysis: what does feeding the model cost?
#
# Every figure below is measured in the cell that prints it.
#
# ### Bytes per dtype
#
# The pixels are whole numbers 0..16: they fit in one byte each. The model
# computes in float32, and numpy's default float is float64. The real
# `nbytes` of all 1,797 images in each:

# %%
import os

images = read_digits()["images"]
print(f"{'dtype':<8} {'bytes, 1,797 images':>20} {'bytes / image':>14} {'vs uint8':>9}")
for dtype in (np.uint8, np.float32, np.float64):
    a = images.astype(dtype)
    print(f"{np.dtype(dtype).name:<8} {a.nbytes:>20,} {a.nbytes // len(a):>14} {a.nbytes / images.nbytes:>8.0f}x")
path = tinytorch_lib.data_dir(DIGITS_FILE) / DIGITS_FILE
print(f"{DIGITS_FILE} on disk: {os.path.getsize(path):,} bytes (uint8 images, labels, both index arrays, zip headers)")
print(f"load_digits('train') x: {train.tensors[0].nbytes:,} bytes, y: {train.tensors[1].nbytes:,} bytes")

# %% [markdown]
# The digits are tiny in any dtype. The ratio is what carries over to large
# data sets: storing pixels as uint8 and converting one batch at a time keeps
# a quarter of the float32 bytes in memory (an eighth of float64).
#
# ### Time per epoch against batch size
#
# One epoch, iterating over the 1,437 training images and doing nothing with
# the batches, timed with `measure` for batch sizes 1 to 1,437, in order
# (`shuffle=False`, each batch a slice) and shuffled (each batch an index
# array).
#
# What one batch costs, whatever its size: a step of the loader's generator,
# a call to `get_batch`, one numpy indexing per tensor, two new `Tensor`
# objects. Call that the per-batch overhead. A shuffled batch also copies its
# rows (256 bytes per image in float32); a slice copies nothing. So the
# epoch costs about (number of batches) x (overhead) + (bytes copied) /
# (copy speed), plus what starting an epoch costs (the generator, and for a
# shuffled epoch the permutation). The five batch sizes of each column are
# timed in turns (`compare`), so a burst of load hits them all.

# %%
from tinytorch_lib.timing import measure


def one_epoch(loader):
    for batch in loader:
        pass


from tinytorch_lib.timing import compare

batch_sizes = [1, 8, 32, 128, 1437]
in_order = compare({b: (lambda ld=DataLoader(train, batch_size=b): one_epoch(ld)) for b in batch_sizes}, repeats=5)
# every call of a shuffled loader is a new epoch, a new order
shuffled = compare({b: (lambda ld=DataLoader(train, batch_size=b, shuffle=True): one_epoch(ld)) for b in batch_sizes},
                   repeats=5)
rows = [(b, -(-len(train) // b), in_order[b], shuffled[b]) for b in batch_sizes]
print(f"{'batch':>6} {'batches':>8} {'in order ms':>12} {'us / batch':>11} {'shuffled ms':>12} {'us / batch':>11}")
for b, nb, seq, shuf in rows:
    print(f"{b:>6} {nb:>8} {seq.median * 1e3:>12.3f} {seq.median * 1e6 / nb:>11.2f} "
          f"{shuf.median * 1e3:>12.3f} {shuf.median * 1e6 / nb:>11.2f}")
print(f"batch 1, in order: {rows[0][2]}")
print(f"in this run, batches of 1 against batches of 128: {rows[0][1] / rows[3][1]:.0f}x the batches took "
      f"{in_order.ratio(1, 128)} the time in order, {shuffled.ratio(1, 128)} shuffled")
for kind, c in (("in order", in_order), ("shuffled", shuffled)):
    if c.noisy:
        print(f"{kind}, batch {c.noisy}")

# %% [markdown]
# Read the `us / batch` columns down. From 1 to 128 images a batch, the
# number of batches falls 120-fold and the epoch time falls with it (the
# ratio is printed under the table): most of the time is the per-batch
# overhead. The columns are not exactly flat, and need not be: a few
# microseconds a batch move with the machine's load and caches, and at 1,437
# images there is one batch, so the per-epoch cost (and, shuffled, the
# permutation and the copy of every row) is all that column divides.
# Where a column grows with the batch size, the bytes are showing: a
# shuffled batch copies its rows, an in-order batch does not.
# A real training step adds a forward and a backward pass per batch, another
# per-batch cost; Module 08 measures it.
#
# Two costs in the shuffled column are not copies. Each shuffled epoch starts
# by drawing its permutation (timed on its own below): a per-epoch cost, which
# a single batch of 1,437 carries alone. And indexing with an array, even for
# one row, takes numpy's general indexing path (check every position, allocate
# the result), which costs more than a slice before a byte is copied.
#
# ### Shuffling: a copy, not a view
#
# One batch of 128 rows, taken as a slice and as an index array, and the
# permutation itself:

# %%
xs = train.tensors[0].data
perm = np.random.default_rng([0, 0]).permutation(len(xs))
view, copy = xs[0:128], xs[perm[:128]]
print(f"xs[0:128]         shares memory with xs: {np.shares_memory(view, xs)}; bytes copied: 0")
print(f"xs[perm[:128]]    shares memory with xs: {np.shares_memory(copy, xs)}; bytes copied: {copy.nbytes:,}")
indexing = compare({"view": lambda: xs[0:128], "copy": lambda: xs[perm[:128]],
                    "all view": lambda: xs[0:len(xs)], "all copy": lambda: xs[perm]})
t_view, t_copy, t_all_view, t_all_copy = (indexing[k] for k in ("view", "copy", "all view", "all copy"))
t_perm = measure(lambda: np.random.default_rng([0, 1]).permutation(len(xs)))
print(f"slice of 128 rows:          {t_view}")
print(f"index array, 128 rows:      {t_copy}  ({indexing.ratio('copy', 'view'):.2g} the slice)")
print(f"slice, all 1,437 rows:      {t_all_view}")
print(f"index array, all 1,437 rows: {t_all_copy}  ({xs.nbytes:,} bytes copied, "
      f"{xs.nbytes / t_all_copy.median / 1e9:.1f} GB/s)")
print(f"one epoch's permutation:    {t_perm}")
print(f"in this run, 1,437 rows against 128 by index array: {indexing.ratio('all copy', 'copy'):.2g}; "
      f"by slice: {indexing.ratio('all view', 'view'):.2g}")
if indexing.noisy:
    print(indexing.noisy)

# %% [markdown]
# A slice makes numpy write a new shape and start address, whatever the
# number of rows. An index array makes it read each position and copy each
# row, so its cost grows with the rows it copies: compare the four lines
# above. That is why loaders shuffle the positions, as here, and not the
# stored data: one permutation of 1,437 integers per epoch, and each batch
# copies only its own rows.
#
# ### One sample at a time
#
# The base `Dataset.get_batch` fetches samples one by one and stacks them;
# `TensorDataset` indexes whole batches. The same data, the same batches:

# %%
class OneAtATime(Dataset):
    """The training digits, fetched one sample at a time (the base class's get_batch)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


slow = DataLoader(OneAtATime(train), batch_size=128)
fast = DataLoader(train, batch_size=128)
assert all(np.array_equal(a.data, b.data) for (a, _), (b, _) in zip(slow, fast))
fetching = compare({"one at a time": lambda: one_epoch(slow), "whole batches": lambda: one_epoch(fast)}, repeats=5)
print(f"one sample at a time: {fetching['one at a time']}")
print(f"whole batches:        {fetching['whole batches']}")
print(f"in this run, one at a time took {fetching.ratio('one at a time', 'whole batches'):.3g} the time, "
      f"for the same {len(train):,} images in {len(fast)} batches")
if fetching.noisy:
    print(fetching.noisy)

# %% [markdown]
# The per-batch overhead of the first table, paid per **sample** instead:
# 1,437 Python-level fetches and a stack per batch. This is why a data set
# that lives in memory should index batches in one step.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import log_axis, place_legend

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(batch_sizes, [seq.median * 1e3 for _, _, seq, _ in rows], marker="o", label="in order (slices, views)")
ax.plot(batch_sizes, [shuf.median * 1e3 for _, _, _, shuf in rows], marker="s", label="shuffled (index arrays, copies)")
log_axis(ax, "x", "count", ticks=batch_sizes)
log_axis(ax, "y", "number")
ax.grid(True, which="major", alpha=0.25)
ax.set_xlabel("batch size (images per batch, log scale)")
ax.set_ylabel("time per epoch (ms, median, log scale)")
ax.set_title("One epoch of the 1,437 training digits")
plt.tight_layout()
place_legend(ax)
plt.show()
print(f"Takeaway: the same 1,437 images took {in_order.ratio(1, 1437):.0f} the time in {rows[0][1]:,} batches of 1 "
      f"as in one batch of 1,437 (in order, this run): the loader's cost is per batch.")

# %% [markdown]
# ### What the digits look like
#
# The first training image of each digit, drawn from the `(N, 1, 8, 8)` form
# the CNN will use (pixel values 0..1, dark is high).

# %%
images_4d = load_digits("train", flatten=False)
xs4, ys4 = images_4d.tensors[0].data, images_4d.tensors[1].data
fig, axes = plt.subplots(2, 5, figsize=(6, 2.8))
for digit, ax in enumerate(axes.flat):
    i = int(np.flatnonzero(ys4 == digit)[0])
    ax.imshow(xs4[i, 0], cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"label {ys4[i]} (row {i})", fontsize=8)
    ax.axis("off")
fig.suptitle("Training digits, 8 x 8 pixels")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - A `Dataset` is `len` and `[i]`; a `TensorDataset` keeps samples as rows
#   of tensors and fetches a whole batch with one indexing operation.
# - The digits: 1,797 images, one fixed stratified split of 1,437 / 360, found
#   from the package's location and checked when loaded; uint8 on disk,
#   float32 in [0, 1] for the model.
# - The `DataLoader` cuts an epoch into slices (views) or, shuffled, into
#   index arrays (copies); epoch `e`'s order depends only on `(seed, e)`, so it
#   changes every epoch and a run can be repeated or resumed exactly.
# - The loader's cost is paid per batch (and per sample, if a data set fetches
#   one at a time): the tables above measure both.
#
# Next: `tito module export 07`; Module 08 trains the first digit classifier
# with this loader.
