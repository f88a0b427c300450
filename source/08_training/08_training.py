# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 08: Training
#
# Modules 03-07 gave you every part: layers, a loss, gradients, an optimizer
# and batches of real digit images. This module puts them in the loop that
# every deep-learning framework runs, and ends with a trained model saved to
# one file that the optimization modules (14-18) and Milestone 06 load.
#
# ```
# for epoch in range(epochs):
#     for x, y in loader:              # x (batch, 64) float32, y (batch,) int64
#         optimizer.zero_grad()        # gradients accumulate: clear last step's
#         loss = loss_fn(model(x), y)  # forward: logits (batch, 10) -> scalar
#         loss.backward()              # autograd: d loss / d every parameter
#         optimizer.step()             # update the parameters in place
#     accuracy = evaluate(model, test_loader)   # held-out data, no gradients
# ```
#
# The systems questions: how long an epoch takes and where the time goes
# (forward, backward, update), how many bytes a trained model really is on
# disk, and how much a result depends on the random seed.
#
# | task | what you build | points |
# |---|---|---|
# | 08.1 | `accuracy`: the fraction of correct predictions | 3 |
# | 08.2 | `train_epoch`: one pass over the training data, stopping on a NaN loss | 5 |
# | 08.3 | `evaluate`: held-out accuracy without recording gradients | 4 |
# | 08.4 | `save_model` / `load_model`: architecture + weights in one file | 4 |
#
# This module imports Modules 01-07 from `tinytorch_lib`.

# %% tags=["export"]
import importlib
import io
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from tinytorch_lib.layers import Module, Sequential
from tinytorch_lib.tensor import Tensor, no_grad

# %% [markdown]
# ## Which library are you running on?

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

for name in ("tensor", "activations", "layers", "losses", "autograd", "optimizers", "dataloader"):
    print(tinytorch_lib.origin(name))

# %% [markdown]
# ## 1. Accuracy
#
# A classifier outputs **logits** `(batch, classes)`: one score per class. The
# prediction is the class with the largest score, `argmax` along the last
# axis; accuracy is the fraction of predictions equal to the labels.
#
# ```
# logits [[2.0, 0.1, -1.0],      argmax -> [0,
#         [0.3, 0.2,  4.0]]                 2]     labels [0, 1] -> accuracy 0.5
# ```
#
# ### Task 08.1: `accuracy`
#
# `logits`: a `Tensor` `(batch, classes)`; `labels`: a `Tensor` of integers
# `(batch,)`. Return a Python `float` in `[0, 1]`. Different batch sizes are a
# `ValueError` naming both shapes, e.g.
# `accuracy: logits (4, 10) and labels (3,) have different batch sizes`.

# %% nbgrader={"grade": false, "grade_id": "accuracy", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def accuracy(logits: Tensor, labels: Tensor) -> float:
    """logits (batch, classes), labels (batch,) int -> fraction of rows whose argmax equals the label."""
    # Task 08.1: argmax over the last axis, compare with the labels, average
    ### BEGIN SOLUTION
    if logits.shape[:1] != labels.shape[:1] or labels.ndim != 1:
        raise ValueError(f"accuracy: logits {logits.shape} and labels {labels.shape} have different batch sizes")
    return float((logits.data.argmax(axis=-1) == labels.data).mean())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_08_1_accuracy", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 08.1
from tinytorch_lib.testing import task

with task("08.1"):
    logits = Tensor([[2.0, 0.1, -1.0], [0.3, 0.2, 4.0]])
    got = accuracy(logits, Tensor(np.array([0, 1])))
    assert isinstance(got, float), f"accuracy should return a Python float, got {type(got).__name__}"
    assert got == 0.5, f"accuracy([[2, 0.1, -1], [0.3, 0.2, 4]], labels [0, 1]): expected 0.5, got {fmt(got)}"
    try:
        accuracy(Tensor(np.zeros((4, 10))), Tensor(np.zeros(3, dtype=np.int64)))
    except ValueError as e:
        assert "(4, 10)" in str(e) and "(3,)" in str(e), f"the error should name both shapes, got: {e}"
    else:
        raise AssertionError("accuracy of logits (4, 10) and labels (3,) should raise ValueError")
print("Task 08.1 visible tests passed")

# %% [markdown]
# ## 2. One epoch
#
# An **epoch** is one pass over the training set, in batches. Four lines per
# batch, in this order, and each one matters:
#
# 1. `optimizer.zero_grad()`: `backward()` **adds** into `.grad` (so a tensor
#    used twice gets both contributions); without clearing, step `t` would
#    use the sum of all gradients so far.
# 2. `loss = loss_fn(model(x), y)`: the forward pass records the graph.
# 3. `loss.backward()`: gradients of the loss for every parameter.
# 4. `optimizer.step()`: move every parameter against its gradient.
#
# A **NaN loss** means the run is lost (a learning rate too large, an
# overflow): every later step would only spread the NaN into every weight.
# Stop at once and say where, e.g.
# `train_epoch: the loss is nan at epoch 3, batch 17: the run diverged (try a smaller learning rate)`.
#
# ### Task 08.2: `train_epoch`
#
# Put the model in training mode (`model.train()`), run the four steps for
# every batch of `loader`, and return the **mean loss per sample** over the
# epoch: each batch's loss (a mean over its samples) weighted by its number
# of samples, so a short last batch counts for what it is. If a batch's loss
# is not finite (`nan` or `inf`), raise `FloatingPointError` naming the epoch
# and the batch number (counting from 0).

# %% nbgrader={"grade": false, "grade_id": "train_epoch", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def train_epoch(model: Module, loss_fn, optimizer, loader, epoch: int = 0) -> float:
    """One pass over `loader`: zero_grad, forward, loss, backward, step per batch -> mean loss per sample."""
    # Task 08.2: the four steps per batch; stop on a non-finite loss
    ### BEGIN SOLUTION
    model.train()
    total, count = 0.0, 0
    for i, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        value = float(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"train_epoch: the loss is {value} at epoch {epoch}, batch {i}: "
                                     f"the run diverged (try a smaller learning rate)")
        loss.backward()
        optimizer.step()
        total += value * len(x)
        count += len(x)
    return total / count
    ### END SOLUTION


# %% [markdown]
# The test below trains a small model on a toy problem with `Linear`,
# `CrossEntropyLoss` and `SGD` from `tinytorch_lib` (under the instructor's
# autograder always the course reference; here, whatever the first cell
# printed), so only your loop is being tested.

# %% nbgrader={"grade": true, "grade_id": "test_08_2_train_epoch", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 08.2
from tinytorch_lib.testing import task

with task("08.2"):
    from tinytorch_lib.dataloader import DataLoader, TensorDataset
    from tinytorch_lib.layers import Linear, manual_seed
    from tinytorch_lib.losses import CrossEntropyLoss
    from tinytorch_lib.optimizers import SGD

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((96, 4)).astype(np.float32)
    ys = (xs[:, 0] + xs[:, 1] > 0).astype(np.int64)  # a linearly separable toy problem, 2 classes
    toy = DataLoader(TensorDataset(Tensor(xs), Tensor(ys)), batch_size=40, shuffle=True, seed=0)  # batches 40, 40, 16
    manual_seed(0)
    toy_model = Linear(4, 2)
    opt = SGD(toy_model.parameters(), lr=0.5)
    losses = [train_epoch(toy_model, CrossEntropyLoss(), opt, toy, epoch=e) for e in range(5)]
    assert all(isinstance(v, float) for v in losses), f"train_epoch should return a float, got {fmt(losses)}"
    assert losses[-1] < losses[0] * 0.7, f"5 epochs of SGD(lr=0.5) on a separable toy problem: expected the loss to fall by 30%, got {fmt(losses)}"
    assert toy_model.training, "train_epoch should leave the model in training mode (model.train())"
    toy_model.eval()
    train_epoch(toy_model, CrossEntropyLoss(), SGD(toy_model.parameters(), lr=1e-30), toy)
    assert toy_model.training, "train_epoch on a model in eval mode: it should put the model in training mode (model.train())"
    bad = Linear(4, 2, rng=1)
    bad.weight.data[...] = np.nan
    try:
        train_epoch(bad, CrossEntropyLoss(), SGD(bad.parameters(), lr=0.1), toy, epoch=7)
    except FloatingPointError as e:
        assert "epoch 7" in str(e) and "batch 0" in str(e), f"a NaN loss in epoch 7, batch 0: the error should name 'epoch 7' and 'batch 0', got: {e}"
    else:
        raise AssertionError("a model with NaN weights gives a NaN loss in epoch 7, batch 0: train_epoch should raise FloatingPointError")

    # The mean is per sample: with lr=0 nothing changes, so the epoch loss equals the loss on all 96 samples.
    frozen = DataLoader(TensorDataset(Tensor(xs), Tensor(ys)), batch_size=40)
    want = CrossEntropyLoss()(toy_model(Tensor(xs)), Tensor(ys)).item()
    got = train_epoch(toy_model, CrossEntropyLoss(), SGD(toy_model.parameters(), lr=1e-30), frozen)
    assert abs(got - want) < 1e-5, f"mean loss per sample over batches of 40, 40, 16: expected {want:.6f} (each batch's loss weighted by its size), got {got:.6f}"
print("Task 08.2 visible tests passed")

# %% [markdown]
# ## 3. Held-out evaluation
#
# Accuracy on the data a model was trained on says how well it memorised;
# accuracy on a **held-out** split it never saw says how well it learned.
# The digits data set has one fixed split (1,437 train / 360 test) used
# everywhere in this course, so every accuracy you see is comparable.
#
# Evaluation needs no gradients. Inside `with no_grad():` no graph is
# recorded, so no intermediate arrays are kept alive for a backward pass
# that will never come. And `model.eval()` switches layers that behave
# differently in training (Dropout) to inference behaviour.
#
# ### Task 08.3: `evaluate`
#
# Return the accuracy over every batch of `loader` (correct predictions over
# all samples, not the mean of per-batch accuracies: a short last batch counts
# for its size). Run the model in eval mode under `no_grad()`, and put the
# model back in the mode it was in before (`model.training` says which).

# %% nbgrader={"grade": false, "grade_id": "evaluate", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def evaluate(model: Module, loader) -> float:
    """Accuracy of `model` over every sample of `loader`, without gradients, in eval mode."""
    # Task 08.3: eval mode + no_grad, count correct predictions, restore the mode
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    correct, count = 0, 0
    try:
        with no_grad():
            for x, y in loader:
                correct += accuracy(model(x), y) * len(y)
                count += len(y)
    finally:
        model.train(was_training)
    return round(correct) / count
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_08_3_evaluate", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 08.3
from tinytorch_lib.testing import task

with task("08.3", uses={"08.1": "accuracy"}):
    from tinytorch_lib.layers import Dropout

    xs3 = np.eye(5, dtype=np.float32)[np.arange(10) % 5] * 10  # one-hot rows, 10 samples
    ys3 = np.array([0, 1, 2, 3, 4, 0, 1, 2, 0, 0])  # 8 of 10 labels follow the hot position; both misses in the last batch
    loader3 = DataLoader(TensorDataset(Tensor(xs3), Tensor(ys3)), batch_size=4)  # batches 4, 4, 2
    identity = Sequential(Dropout(0.5))  # logits = input in eval mode
    got = evaluate(identity, loader3)
    assert abs(got - 0.8) < 1e-9, f"10 one-hot samples, 8 labelled by their hot position, batches 4, 4, 2 (the last holds both misses): expected 8/10 = 0.8, got {fmt(got)}"
    assert identity.training, "evaluate should put a model that was training back in training mode"
    identity.eval()
    evaluate(identity, loader3)
    assert not identity.training, "evaluate should leave a model that was in eval mode in eval mode (put back the mode it had)"
    probe, nodes = Linear(5, 5, rng=4), []
    probe.register_forward_hook(lambda mod, args, out: nodes.append(out.node))
    evaluate(probe, loader3)
    assert nodes and all(n is None for n in nodes), \
        f"evaluate should run under no_grad(): the outputs of Linear(5, 5) recorded a graph (out.node of each batch: {nodes})"
print("Task 08.3 visible tests passed")

# %% [markdown]
# ## 4. One file for a trained model
#
# A trained model is its **architecture** (which layers, what sizes) plus its
# **weights** (`state_dict()`). Later notebooks must rebuild the model from
# the file alone, so both go in it. Our format is a `.npz` (numpy's zip of
# arrays, readable without pickle, so loading a file cannot run code):
#
# | entry | holds |
# |---|---|
# | `__arch__` | JSON text: `{"layers": [["layers.Linear", {"in_features": 64, "out_features": 128}], ["activations.ReLU", {}], ...], "meta": {...}}` |
# | one entry per `state_dict` key | the array, in its stored dtype |
#
# Each layer is named by `file.Class` inside `tinytorch_lib` with the keyword
# arguments of its constructor; `build_model(arch)` (given) imports and
# constructs them in order inside a `Sequential`. `meta` holds what the
# trainer wants to remember (seed, epochs, held-out accuracy).
#
# Loading must refuse a file that does not fit: if the weights do not match
# the architecture, `load_state_dict` already names the missing, unexpected
# and mis-shaped keys; a file that is not a model file says so.

# %% tags=["export"]
def build_model(arch: dict) -> Sequential:
    """{"layers": [["layers.Linear", {...}], ["activations.ReLU", {}], ...]} -> Sequential of those layers."""
    if not isinstance(arch, dict) or not isinstance(arch.get("layers"), list):
        raise ValueError(f"build_model: expected {{'layers': [[name, kwargs], ...]}}, got {arch!r}")
    layers = []
    for i, spec in enumerate(arch["layers"]):
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[0], str)
                and spec[0].count(".") == 1 and isinstance(spec[1], dict)):
            raise ValueError(f"build_model: layer {i} is {spec!r}; expected ['file.Class', {{keyword: value}}]")
        file, cls = spec[0].split(".")
        module = importlib.import_module(f"tinytorch_lib.{file}")
        if not hasattr(module, cls):
            raise ValueError(f"build_model: layer {i}: tinytorch_lib/{file}.py has no {cls}")
        layers.append(getattr(module, cls)(**spec[1]))
    return Sequential(*layers)


# %% [markdown]
# ### Task 08.4: `save_model` and `load_model`
#
# `save_model(path, model, arch, meta=None)` writes `np.savez(path, __arch__=..., **state)`
# where `__arch__` is `json.dumps({"layers": arch["layers"], "meta": meta or {}})`
# and `state` is `model.state_dict()`. It returns the file's size in bytes
# (`os.path.getsize`). The file is written at exactly `path`, whatever its
# suffix: given a file *name* without `.npz`, `np.savez` appends `.npz`
# (`"model"` becomes `model.npz`, and `os.path.getsize("model")` then fails),
# so open the file yourself and give `np.savez` the open file:
# `with open(path, "wb") as f: np.savez(f, ...)`.
#
# `load_model(path)` reads the file with `np.load(path, allow_pickle=False)`,
# rebuilds the model with `build_model`, loads the weights with
# `load_state_dict`, and returns `(model, meta)`. A missing file is a
# `FileNotFoundError` naming the path; a file without `__arch__` (or one that
# is not a `.npz` at all) is a `ValueError` naming the path and saying it is not
# a model file written by `save_model`.

# %% nbgrader={"grade": false, "grade_id": "save_load", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def save_model(path, model: Module, arch: dict, meta: dict | None = None) -> int:
    """Write architecture + state_dict to one .npz file; returns its size in bytes."""
    # Task 08.4: __arch__ JSON + one array per state_dict key
    ### BEGIN SOLUTION
    state = model.state_dict()
    if "__arch__" in state:
        raise ValueError("save_model: a state_dict key is called '__arch__'")
    text = json.dumps({"layers": arch["layers"], "meta": meta or {}})
    with open(path, "wb") as f:
        np.savez(f, __arch__=np.array(text), **state)
    return os.path.getsize(path)
    ### END SOLUTION


def load_model(path) -> tuple:
    """A file written by save_model -> (model, meta)."""
    # Task 08.4: read __arch__, build_model, load_state_dict
    ### BEGIN SOLUTION
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_model: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # not an .npz (ValueError: pickled data)
        raise ValueError(f"load_model: {path} is not a model file written by save_model ({e})") from None
    if "__arch__" not in arrays:
        raise ValueError(f"load_model: {path} has no __arch__ entry: not a model file written by save_model")
    arch = json.loads(str(arrays.pop("__arch__")))
    state = arrays
    model = build_model(arch)
    model.load_state_dict(state)
    return model, arch.get("meta", {})
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_08_4_save_load", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 08.4
from tinytorch_lib.testing import task

with task("08.4"):
    import tempfile

    arch = {"layers": [["layers.Linear", {"in_features": 4, "out_features": 3}], ["activations.ReLU", {}],
                       ["layers.Linear", {"in_features": 3, "out_features": 2}]]}
    manual_seed(3)
    m = build_model(arch)
    x = Tensor(np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        size = save_model(path, m, arch, meta={"seed": 3})
        assert size == os.path.getsize(path), f"save_model should return the file size {fmt(os.path.getsize(path))}, got {size}"
        m2, meta = load_model(path)
        assert meta == {"seed": 3}, f"meta written as {{'seed': 3}}, read back as {meta}"
        assert np.array_equal(m2(x).data, m(x).data), "the loaded model gives different outputs on the same (5, 4) input"
        try:
            load_model(os.path.join(tmp, "missing.npz"))
        except FileNotFoundError as e:
            assert "missing.npz" in str(e), f"the error should name the path, got: {e}"
        else:
            raise AssertionError("load_model of a missing file should raise FileNotFoundError")
        bare = os.path.join(tmp, "model")  # no .npz suffix
        try:
            size = save_model(bare, m, arch)
        except OSError as e:
            raise AssertionError(f"save_model to a path without .npz ({bare!r}) raised {type(e).__name__}: {e}; "
                                 "np.savez appends .npz to a file name: give it an open file") from None
        assert os.path.exists(bare) and size == os.path.getsize(bare), \
            f"save_model(path without .npz): the file should be written at exactly that path; files written: {sorted(os.listdir(tmp))}"
        assert np.array_equal(load_model(bare)[0](x).data, m(x).data), "a model saved at a path without .npz should load back the same"
print("Task 08.4 visible tests passed")

# %% [markdown]
# ## 5. Training the digit MLP
#
# The model Milestone 06 optimizes: 64 pixels -> 128 -> 64 -> 10 classes,
# ReLU between layers. A given `fit` runs your `train_epoch` and `evaluate`
# for a number of epochs with a progress bar (hidden under autograding and in
# tests) and keeps a history. It sets the loader's epoch before each pass, so
# a run is reproduced exactly by its seed.

# %% tags=["export"]
def progress_wanted() -> bool:
    """Progress bars for people: off under nbgrader (NBGRADER_EXECUTION), pytest, or TINYTORCH_PROGRESS=0."""
    if os.environ.get("NBGRADER_EXECUTION") or os.environ.get("PYTEST_CURRENT_TEST"):
        return False
    return os.environ.get("TINYTORCH_PROGRESS", "1") != "0"


def fit(model: Module, loss_fn, optimizer, train_loader, test_loader, epochs: int,
        progress: bool | None = None) -> dict:
    """Train for `epochs`; returns {"loss": [...], "train_acc": [...], "test_acc": [...], "seconds": [...]}."""
    from tqdm.auto import tqdm

    history = {"loss": [], "train_acc": [], "test_acc": [], "seconds": []}
    bar = tqdm(range(epochs), desc="training", unit="epoch",
               disable=not (progress_wanted() if progress is None else progress))
    for epoch in bar:
        train_loader.set_epoch(epoch)  # epoch e's shuffle is the same in every run with this seed
        start = time.perf_counter()
        history["loss"].append(train_epoch(model, loss_fn, optimizer, train_loader, epoch))
        history["seconds"].append(time.perf_counter() - start)
        history["train_acc"].append(evaluate(model, train_loader))
        history["test_acc"].append(evaluate(model, test_loader))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", test_acc=f"{history['test_acc'][-1]:.3f}")
    return history


MLP_ARCH = {"layers": [["layers.Linear", {"in_features": 64, "out_features": 128}], ["activations.ReLU", {}],
                       ["layers.Linear", {"in_features": 128, "out_features": 64}], ["activations.ReLU", {}],
                       ["layers.Linear", {"in_features": 64, "out_features": 10}]]}

# %%
from tinytorch_lib.dataloader import load_digits
from tinytorch_lib.optimizers import Adam

train_set, test_set = load_digits("train"), load_digits("test")
train_loader = DataLoader(train_set, batch_size=32, shuffle=True, seed=0)
test_loader = DataLoader(test_set, batch_size=360)
print(f"train {len(train_set)} images, test {len(test_set)}; x {train_set.tensors[0].shape} float32, y int64")

manual_seed(0)
mlp = build_model(MLP_ARCH)
history = fit(mlp, CrossEntropyLoss(), Adam(mlp.parameters(), lr=1e-3), train_loader, test_loader, epochs=15)
print(f"{'epoch':>5} {'loss':>7} {'train acc':>10} {'test acc':>9} {'seconds':>8}")
for e in range(len(history["loss"])):
    print(f"{e:5d} {history['loss'][e]:7.4f} {history['train_acc'][e]:10.3f} {history['test_acc'][e]:9.3f} "
          f"{history['seconds'][e]:8.3f}")

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import place_legend

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax1.plot(history["loss"], marker="o")
ax1.set_xlabel("epoch")
ax1.set_ylabel("training loss (cross-entropy, nats)")
ax1.set_title("Loss per epoch")
ax2.plot(history["train_acc"], marker="o", label="train (seen)")
ax2.plot(history["test_acc"], marker="o", label="test (held out)")
ax2.set_xlabel("epoch")
ax2.set_ylabel("accuracy (fraction correct)")
ax2.set_title("Accuracy: the gap is memorisation")
plt.tight_layout()
place_legend(ax2)
plt.show()

# %% [markdown]
# ## 6. Systems analysis: where does a training step's time go?
#
# One batch of 32, split into its parts and timed in turns with the course's
# `compare` (CPU time; ratios from neighbouring repeats, with their p10-p90
# range): the forward pass with and without recording the graph, the
# backward pass alone (run again on one recorded graph: it only adds into
# `.grad`), and the optimizer's update. Counting FLOPs, a Linear layer's
# backward does two matmuls (gradients for the input and for the weight) for
# the forward's one, so about twice the forward; at this small size the
# per-operation overheads of Python and numpy weigh as much as the FLOPs, so
# read your own numbers rather than expecting 2x.

# %%
from tinytorch_lib.timing import blas_threads, compare, format_seconds

x32, y32 = next(iter(DataLoader(train_set, batch_size=32)))
loss_fn = CrossEntropyLoss()
probe = build_model(MLP_ARCH)  # a copy, so timing the updates leaves the trained mlp as it is
probe.load_state_dict(mlp.state_dict())
opt = Adam(probe.parameters(), lr=1e-3)


def forward():
    return loss_fn(probe(x32), y32)


graph = forward()


def forward_no_grad():
    with no_grad():
        forward()


parts = compare({"forward": forward, "backward": graph.backward, "step": opt.step, "no_grad": forward_no_grad})
t_fwd, t_bwd, t_step, t_nograd = parts["forward"], parts["backward"], parts["step"], parts["no_grad"]
print(f"forward, no_grad:      {t_nograd}")
print(f"forward (recording):   {t_fwd}")
print(f"backward:              {t_bwd}")
print(f"optimizer step (Adam): {t_step}")
print(f"backward / forward, in this run: {parts.ratio('backward', 'forward')}")
if parts.noisy:
    print(parts.noisy)
per_step = t_fwd.median + t_bwd.median + t_step.median


def epoch_with(threads):
    def run():
        with blas_threads(threads):
            train_epoch(probe, loss_fn, opt, train_loader)
    return run


epochs = compare({"1 thread": epoch_with(1), "2 threads": epoch_with(2)}, repeats=3, threads=None)
epoch_1, epoch_2 = epochs["1 thread"], epochs["2 threads"]
print(f"\none epoch = {len(train_loader)} steps; the parts add up to {len(train_loader) * per_step * 1e3:.1f} ms")
for label, t in epochs.timings.items():
    print(f"measured epoch, {label:<9}: CPU {format_seconds(t.median)} (p90 {format_seconds(t.p90)}), "
          f"wall {format_seconds(t.wall_median)}")
print(f"in this run, 2 threads / 1 thread: CPU time {epochs.ratio('2 threads', '1 thread')}, "
      f"wall time {epoch_2.wall_median / epoch_1.wall_median:.2f}x (medians)")

# %% [markdown]
# The parts, each timed alone in a tight loop, usually add up to less than
# the measured epoch. In a tight loop the same arrays stay in cache and freed
# memory is handed straight back; in an epoch every step touches a new batch
# (Module 07's indexing copy), builds a new graph and allocates new gradient
# arrays. The gap is the cost of the loop as it really runs; Module 14's
# profiler measures the steps in place. For matrices this small, a second BLAS thread has
# little to share: splitting a `(32, 64) @ (64, 128)` product saves little,
# and when another program is busy on the second core the thread waits for
# it, spinning. CPU time counts the work of both threads (and the spinning),
# so the CPU ratio says how much more computing the epoch cost with two; the
# wall ratio says whether it finished sooner, and on a busy machine that one
# moves from run to run. Nothing in this course trains large enough models
# for more threads to pay; Milestone 06 times inference with one.
#
# %% [markdown]
# ### What does a trained model weigh?
#
# The bytes of every array in the `state_dict`, against the size of the file
# `save_model` wrote: the difference is the `.npz` container (a zip directory
# and one small header per array) and the JSON architecture.

# %%
with tempfile.TemporaryDirectory() as tmp:
    file_bytes = save_model(os.path.join(tmp, "mlp.npz"), mlp, MLP_ARCH, meta={"test_acc": history["test_acc"][-1]})
state = mlp.state_dict()
array_bytes = sum(a.nbytes for a in state.values())
params = sum(a.size for a in state.values())
print(f"{'entry':<10} {'shape':>12} {'dtype':>8} {'bytes':>8}")
for k, a in state.items():
    print(f"{k:<10} {str(a.shape):>12} {str(a.dtype):>8} {a.nbytes:8,}")
print(f"{params:,} parameters, {array_bytes:,} bytes of float32 arrays; file {file_bytes:,} bytes "
      f"({file_bytes - array_bytes:,} bytes of container and architecture)")

# %% [markdown]
# ### How much does the seed matter?
#
# One run is one sample. Three seeds (weights and shuffling), a few epochs
# each, same everything else: the spread is how far apart two honest runs
# of the same recipe land. A difference between two methods smaller than this
# spread is not a difference.

# %%
finals = []
for seed in (1, 2, 3):
    manual_seed(seed)
    model = build_model(MLP_ARCH)
    loader = DataLoader(train_set, batch_size=32, shuffle=True, seed=seed)
    h = fit(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3), loader, test_loader, epochs=8)
    finals.append(h["test_acc"][-1])
    print(f"seed {seed}: held-out accuracy after 8 epochs {finals[-1]:.3f}")
print(f"spread over seeds: {min(finals):.3f} to {max(finals):.3f} ({(max(finals) - min(finals)) * 360:.0f} of 360 test images)")

# %% [markdown]
# ## Summary
#
# - The loop is four lines per batch; `zero_grad` exists because gradients
#   accumulate, and a NaN loss stops the run where it happened.
# - Evaluation runs in eval mode under `no_grad`, on a held-out split.
# - A trained model is an architecture plus a `state_dict`; its size on disk
#   is the bytes of its arrays plus a small container.
# - One seed is one sample: compare methods by more than the seed spread.
#
# The course's trained MLP and CNN (`data/mlp_digits.npz`,
# `data/cnn_digits.npz`) were made with this loop by `make models`; Modules
# 14-18 and Milestone 06 load them with `load_model`. Next: `tito module
# export 08`; Module 09 adds convolution.
