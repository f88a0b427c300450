"""Module 08's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value, oracle and comparison stays here: the training oracle is a numpy float64
replay of the same linear model, loss and SGD steps from the weights the sandbox started with, and
the saved file comes back as bytes and is read here.
"""
import io
import json

import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check


IMPORTS = '''
from tinytorch_lib.dataloader import DataLoader, TensorDataset
from tinytorch_lib.layers import Dropout, Linear, manual_seed
from tinytorch_lib.losses import CrossEntropyLoss
from tinytorch_lib.optimizers import SGD
'''


def toy_data():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((96, 4)).astype(np.float32)
    ys = (xs[:, 0] + xs[:, 1] > 0).astype(np.int64)
    return xs, ys


def cross_entropy(logits, y):
    """Mean cross-entropy (float64) and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    grad = np.exp(logp)
    grad[np.arange(n), y] -= 1
    return loss, grad / n


def train_oracle(w, b, xs, ys, lr, orders, batch):
    """SGD on a linear model y = x W^T + b with cross-entropy, in float64: the epoch losses (mean per
    sample) and the final W, b. orders: each epoch's sample order."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    xs = xs.astype(np.float64)
    losses = []
    for order in orders:
        total = 0.0
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            loss, g = cross_entropy(xs[rows] @ w.T + b, ys[rows])
            total += loss * len(rows)
            w, b = w - lr * (g.T @ xs[rows]), b - lr * g.sum(axis=0)
        losses.append(total / len(order))
    return losses, w, b


@check("test_08_1_accuracy")
def accuracy_(s):
    logits = np.array([[2.0, 0.1, -1.0], [0.3, 0.2, 4.0]], dtype=np.float32)
    s.run("a = accuracy(Tensor(logits), Tensor(np.array([0, 1])))", logits=logits)
    kind = s.value("type(a).__name__")
    assert kind == "float", f"accuracy should return a Python float, got {fmt(kind)}"
    got = s.value("a")
    assert got == 0.5, f"accuracy([[2, 0.1, -1], [0.3, 0.2, 4]], labels [0, 1]): expected 0.5, got {fmt(got)}"
    s.expect_error("accuracy(Tensor(np.zeros((4, 10))), Tensor(np.zeros(3, dtype=np.int64)))",
                   "accuracy of logits (4, 10) and labels (3,)", ("(4, 10)", "(3,)"))
    rng = np.random.default_rng(0)
    big = rng.standard_normal((50, 7)).astype(np.float32)
    lab = rng.integers(0, 7, 50)
    want = float((big.argmax(axis=1) == lab).mean())
    got = s.value("float(accuracy(Tensor(big), Tensor(lab)))", big=big, lab=lab)
    assert abs(got - want) < 1e-12, \
        f"accuracy of random logits (50, 7) and random labels 0..6: expected {fmt(want)}, got {got!r}"
    got = s.value("float(accuracy(Tensor(big), Tensor(lab)))", big=big, lab=big.argmax(axis=1))
    assert got == 1.0, f"accuracy of random logits (50, 7) with labels equal to their argmax: expected 1.0, got {got!r}"
    lab = np.array([3, 1, 0, 2])
    got = s.value("float(accuracy(Tensor(big), Tensor(lab)))", big=big[:4], lab=lab)
    want = float((big[:4].argmax(axis=1) == lab).mean())
    assert got == want, f"accuracy of random logits (4, 7), labels {lab.tolist()}: expected {fmt(want)}, got {got!r}"


@check("test_08_2_train_epoch")
def train_epoch_(s):
    s.run(IMPORTS)
    xs, ys = toy_data()
    s.run("toy = DataLoader(TensorDataset(Tensor(xs), Tensor(ys)), batch_size=40, shuffle=True, seed=0)\n"
          "manual_seed(0)\n"
          "toy_model = Linear(4, 2)\n"
          "w0, b0 = toy_model.weight.data.copy(), toy_model.bias.data.copy()\n"
          "opt = SGD(toy_model.parameters(), lr=0.5)\n"
          "losses = [train_epoch(toy_model, CrossEntropyLoss(), opt, toy, epoch=e) for e in range(5)]",
          xs=xs, ys=ys)
    kinds, losses = s.value("[type(v).__name__ for v in losses]"), s.value("losses")
    assert kinds == ["float"] * 5, f"train_epoch should return a float, got {kinds}"
    w0, b0 = s.value("w0"), s.value("b0")
    orders = [np.random.default_rng([0, e]).permutation(96) for e in range(5)]
    want, w, b = train_oracle(w0, b0, xs, ys, 0.5, orders, 40)
    case = "5 epochs of SGD(lr=0.5) on the separable toy problem (96 samples, shuffled batches of 40, 40, 16)"
    assert losses[-1] < losses[0] * 0.7, f"{case}: expected the loss to fall by 30%, got {fmt(losses)}"
    assert np.allclose(losses, want, rtol=1e-4, atol=1e-5), \
        f"{case}: expected epoch losses (mean per sample) {np.round(want, 5).tolist()}, got {np.round(losses, 5).tolist()}"
    got_w, got_b = s.value("toy_model.weight.data"), s.value("toy_model.bias.data")
    assert np.allclose(got_w, w, atol=1e-4) and np.allclose(got_b, b, atol=1e-4), \
        f"{case}: the weights after training differ from zero_grad, forward, backward, step on every batch"
    training = s.value("toy_model.training")
    assert training is True, "train_epoch should leave the model in training mode (model.train())"

    s.run("frozen = DataLoader(TensorDataset(Tensor(xs), Tensor(ys)), batch_size=40)\n"
          "w1, b1 = toy_model.weight.data.copy(), toy_model.bias.data.copy()\n"
          "toy_model.eval()\n"
          "got = train_epoch(toy_model, CrossEntropyLoss(), SGD(toy_model.parameters(), lr=1e-30), frozen)",
          xs=xs, ys=ys)
    w1, b1 = s.value("w1").astype(np.float64), s.value("b1").astype(np.float64)
    want = cross_entropy(xs @ w1.T + b1, ys)[0]
    kind, got = s.value("type(got).__name__"), s.value("float(got)")
    assert kind == "float" and abs(got - want) < 1e-5, \
        f"lr 1e-30 (nothing changes), batches of 40, 40, 16: the mean loss per sample should be the loss on all 96 " \
        f"samples, {want:.6f} (each batch's loss weighted by its size), got {got!r}"
    training = s.value("toy_model.training")
    assert training is True, "train_epoch should put the model in training mode (model.train()): it was in eval mode"

    s.run("manual_seed(1)\n"
          "bad = Linear(4, 2)\n"
          "bad.weight.data[...] = np.nan")
    s.expect_error("train_epoch(bad, CrossEntropyLoss(), SGD(bad.parameters(), lr=0.1), frozen, epoch=7)",
                   "a model with NaN weights gives a NaN loss in epoch 7, batch 0: train_epoch",
                   ("epoch 7", "batch 0"), error="FloatingPointError")
    s.run("manual_seed(2)\n"
          "a = Linear(4, 2)\n"
          "wa, ba = a.weight.data.copy(), a.bias.data.copy()\n"
          "oa = SGD(a.parameters(), lr=0.1)\n"
          "for e in range(2):\n"
          "    train_epoch(a, CrossEntropyLoss(), oa, frozen, epoch=e)")
    wa, ba = s.value("wa"), s.value("ba")
    _, w, b = train_oracle(wa, ba, xs, ys, 0.1, [np.arange(96)] * 2, 40)
    got_w, got_b = s.value("a.weight.data"), s.value("a.bias.data")
    assert np.allclose(got_w, w, atol=1e-5) and np.allclose(got_b, b, atol=1e-5), \
        "2 epochs of SGD(lr=0.1) over batches of 40, 40, 16 (not shuffled): weights differ from " \
        "zero_grad/forward/backward/step per batch (is zero_grad called before every batch?)"


@check("test_08_3_evaluate")
def evaluate_(s):
    s.run(IMPORTS)
    xs3 = np.eye(5, dtype=np.float32)[np.arange(10) % 5] * 10
    ys3 = np.array([0, 1, 2, 3, 4, 0, 1, 2, 0, 0])
    s.run("loader3 = DataLoader(TensorDataset(Tensor(xs3), Tensor(ys3)), batch_size=4)\n"
          "identity = Sequential(Dropout(0.5))", xs3=xs3, ys3=ys3)
    case = ("10 one-hot samples, 8 labelled by their hot position, batches 4, 4, 2 (the last holds both misses), "
            "model Sequential(Dropout(0.5))")
    got = s.value("float(evaluate(identity, loader3))")
    assert abs(got - 0.8) < 1e-9, f"{case}: expected 8/10 = 0.8, got {got!r}"
    training = s.value("identity.training")
    assert training is True, "evaluate should put a model that was training back in training mode"
    s.run("identity.eval()")
    got = s.value("float(evaluate(identity, loader3))")
    assert abs(got - 0.8) < 1e-9, f"{case}, in eval mode: expected 0.8, got {got!r}"
    training = s.value("identity.training")
    assert training is False, "evaluate should leave a model that was in eval mode in eval mode"
    s.run("manual_seed(4)\n"
          "probe = Linear(5, 5)\n"
          "probe.weight.requires_grad = True\n"
          "seen = []\n"
          "probe.register_forward_hook(lambda m, args, out: seen.append(out.node))\n"
          "got = evaluate(probe, loader3)")
    nodes = s.value("[type(n).__name__ for n in seen]")
    assert nodes and all(n == "NoneType" for n in nodes), \
        f"evaluate should run under no_grad(): the outputs of Linear(5, 5) recorded a graph (out.node: {nodes})"
    w, b = s.value("probe.weight.data").astype(np.float64), s.value("probe.bias.data").astype(np.float64)
    want = float(((xs3 @ w.T + b).argmax(axis=1) == ys3).mean())
    got = s.value("float(got)")
    assert abs(got - want) < 1e-9, \
        f"the same 10 samples through a random Linear(5, 5), batches 4, 4, 2: expected accuracy {fmt(want)}, got {got!r}"


ARCH = {"layers": [["layers.Linear", {"in_features": 4, "out_features": 3}], ["activations.ReLU", {}],
                   ["layers.Linear", {"in_features": 3, "out_features": 2}]]}


def forward(state, x):
    """The ARCH model in numpy (float64)."""
    h = np.maximum(x @ state["0.weight"].T.astype(np.float64) + state["0.bias"], 0)
    return h @ state["2.weight"].T.astype(np.float64) + state["2.bias"]


def read_npz(raw: np.ndarray, what: str) -> dict:
    try:
        with np.load(io.BytesIO(raw.tobytes()), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:
        raise AssertionError(f"{what} is not an .npz file numpy can read without pickle ({type(e).__name__}: {e})") from None


@check("test_08_4_save_load")
def save_load(s):
    s.run(IMPORTS + "import os, tempfile\ntmp = tempfile.mkdtemp()")
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    s.run("manual_seed(3)\n"
          "m = build_model(arch)\n"
          "path = os.path.join(tmp, 'm.npz')\n"
          "size = save_model(path, m, arch, meta={'seed': 3})\n"
          "raw = np.frombuffer(open(path, 'rb').read(), dtype=np.uint8)", arch=ARCH)
    state = s.value("dict(m.state_dict())")
    raw, size = s.value("raw"), s.value("size")
    assert size == raw.size, f"save_model should return the file size {fmt(raw.size)}, got {size!r}"
    stored = read_npz(raw, "the file save_model(path, model, arch, meta={'seed': 3}) wrote")
    assert set(stored) == {"__arch__", *state}, \
        f"the file should hold __arch__ and the state_dict keys {sorted(state)}, got {sorted(stored)}"
    try:
        arch = json.loads(str(stored["__arch__"]))
    except ValueError as e:
        raise AssertionError(f"__arch__ should be JSON text, got {str(stored['__arch__'])[:80]!r} ({e})") from None
    assert arch == {"layers": ARCH["layers"], "meta": {"seed": 3}}, \
        f"__arch__ should be json.dumps({{'layers': arch['layers'], 'meta': meta}}), got {str(stored['__arch__'])[:200]}"
    for k, v in state.items():
        assert stored[k].dtype == v.dtype and np.array_equal(stored[k], v), \
            f"entry {k!r} should be the state_dict array in its own dtype ({v.dtype} {v.shape}), got {stored[k].dtype} {stored[k].shape}"
    s.run("m2, meta = load_model(path)")
    meta = s.value("meta")
    assert meta == {"seed": 3}, f"meta written as {{'seed': 3}}, read back as {meta!r}"
    want = forward(state, x.astype(np.float64))
    got = s.value("m2(Tensor(x)).data", x=x)
    assert got.shape == (5, 2) and np.allclose(got, want, atol=1e-5), \
        "the loaded model gives different outputs on the same (5, 4) input than the saved one"
    s.expect_error("load_model(os.path.join(tmp, 'missing.npz'))", "load_model of a missing file missing.npz",
                   ("missing.npz",), error="FileNotFoundError")
    for name in ("model", "weights.bin"):
        error = s.raises(f"bare = os.path.join(tmp, {name!r})\nsize = save_model(bare, m, arch)")
        assert error is None, (f"save_model to a path without .npz ({name!r}) raised {error and error.type}: "
                               f"{error and error.message}; np.savez appends .npz to a file name: give it an open file")
        written, size, files = s.value("(os.path.exists(bare), size, sorted(os.listdir(tmp)))")
        assert written and size == s.value("os.path.getsize(bare)"), \
            f"save_model(path {name!r}): the file should be written at exactly that path and its size returned; files written: {fmt(files)}"

    # load_model on a file written here, in save_model's documented format
    rng = np.random.default_rng(30)
    weights = {"0.weight": rng.standard_normal((3, 4)), "0.bias": rng.standard_normal(3),
               "2.weight": rng.standard_normal((2, 3)), "2.bias": rng.standard_normal(2)}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    buffer = io.BytesIO()
    np.savez(buffer, __arch__=np.array(json.dumps({"layers": ARCH["layers"], "meta": {"epochs": 7, "acc": 0.5}})),
             **weights)
    s.run("given = os.path.join(tmp, 'given.npz')\n"
          "open(given, 'wb').write(data.tobytes())\n"
          "m3, meta3 = load_model(given)", data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    meta = s.value("meta3")
    assert meta == {"epochs": 7, "acc": 0.5}, \
        f"load_model of a model file with meta {{'epochs': 7, 'acc': 0.5}}: meta read back as {meta!r}"
    got = s.value("m3(Tensor(x)).data", x=x)
    want = forward(weights, x.astype(np.float64))
    assert got.shape == (5, 2) and np.allclose(got, want, atol=1e-5), \
        "load_model of a model file with random weights: the model's outputs on a (5, 4) input are not those of " \
        "build_model(arch) with the file's weights"

    junk = np.frombuffer(b"not a zip file at all", dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, w=np.zeros(3))
    plain = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
    for name, data, what in [("junk.npz", junk, "a file that is not a zip"), ("plain.npz", plain, "an .npz without __arch__")]:
        s.run(f"bad = os.path.join(tmp, '{name}')\n"
              "open(bad, 'wb').write(data.tobytes())", data=data)
        s.expect_error("load_model(bad)", f"load_model of {name} ({what})", (name, "save_model"))
    s.run("size = save_model(path, m, arch)\n"
          "raw = np.frombuffer(open(path, 'rb').read(), dtype=np.uint8)", arch=ARCH)
    stored = read_npz(s.value("raw"), "the file save_model(path, model, arch) wrote")
    assert set(stored) == {"__arch__", *state}, \
        f"the file should hold __arch__ and the state_dict keys {sorted(state)}, got {sorted(stored)}"
    assert str(stored["__arch__"]).startswith("{"), f"__arch__ should be JSON text, got {str(stored['__arch__'])[:80]!r}"
    assert json.loads(str(stored["__arch__"])).get("meta") == {}, \
        f"save_model without meta should write meta {{}}, got {str(stored['__arch__'])[:200]}"
    assert stored["0.weight"].dtype == np.float32, \
        f"weights are stored in their own dtype (float32), got {stored['0.weight'].dtype}"
