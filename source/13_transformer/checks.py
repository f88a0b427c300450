"""Module 13's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible cases
and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`), every
expected value and comparison stays here: LayerNorm and its finite-difference gradients (in place of
the notebook's `check_rule`), the stand-in arithmetic of the block and GPT tests, the sinusoidal table,
the greedy chain of the bigram stand-in and the sampling frequencies. The stand-ins the visible tests
define (Scale, AddBlock, Doubler, FakeCache, Bigram, recorded_layer_norm) are defined in the sandbox as
the notebook defines them; what they record comes back as data. A Tensor cannot cross, so the sandbox
sends back `.data`.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check, numerical_gradients, tensor_data

def ln(x, w, b, eps):
    """LayerNorm over the last axis, float64."""
    x = np.asarray(x, dtype=np.float64)
    m = x.mean(-1, keepdims=True)
    var = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(var + eps) * w + b


@check("test_13_1_layer_norm")
def layer_norm_(s):
    xa = np.array([[1.0, 2.0, 3.0, 6.0]], dtype=np.float32)
    s.run("x = Tensor(xa)", xa=xa)
    got = tensor_data(s, "layer_norm of a (1, 4) input",
                      "layer_norm(x, Tensor(np.ones(4, np.float32)), Tensor(np.zeros(4, np.float32)), eps=0.0)")
    want = ln(xa, 1.0, 0.0, 0.0)
    assert got.shape == (1, 4), f"layer_norm of a (1, 4) input: expected a (1, 4) Tensor, got shape {got.shape}"
    assert got.dtype == np.float32, f"layer_norm of float32 input: expected float32, got {got.dtype}"
    assert np.allclose(got, want, atol=1e-5), \
        f"layer_norm([1, 2, 3, 6]), eps=0: expected {want.round(4).tolist()}, got {got.round(4).tolist()}"
    wt, bt = np.array([2.0, 1.0, 1.0, 0.5], np.float32), np.full(4, 10.0, np.float32)
    got = tensor_data(s, "layer_norm with weight and bias", "layer_norm(x, Tensor(wt), Tensor(bt), eps=0.0)", wt=wt, bt=bt)
    want2 = want * wt + bt
    assert got.shape == (1, 4) and np.allclose(got, want2, atol=1e-5), \
        f"weight [2, 1, 1, 0.5], bias 10: expected {want2.round(4).tolist()}, got {got.round(4).tolist()}"
    s.expect_error("layer_norm(Tensor(np.zeros((2, 3), np.float32)), Tensor(np.ones(4)), Tensor(np.zeros(4)))",
                   "layer_norm of a (2, 3) input with dim 4", ("(2, 3)", "4"))
    s.run("w = Tensor(np.ones(4, np.float32), requires_grad=True)\n"
          "out = layer_norm(x, w, Tensor(np.zeros(4, np.float32)))")
    op = s.value("None if out.node is None else out.node.op")
    assert op == "layer_norm", f"layer_norm should record op 'layer_norm' when weight requires grad, recorded {op!r}"
    inputs, mine = s.value("([id(t) for t in out.node.inputs], [id(x), id(w)])")
    assert inputs[:2] == mine, "record the inputs as (x, weight, bias): the recorded inputs are not x and weight"
    shapes = s.value("{k: np.shape(out.node.saved[k]) for k in ('xhat', 'rstd') if k in out.node.saved}")
    assert shapes.get("rstd") == (1, 1), f"saved rstd for a (1, 4) input: expected shape (1, 1), got {shapes.get('rstd')}"
    assert shapes.get("xhat") == (1, 4), f"saved xhat for a (1, 4) input: expected the input's shape (1, 4), got {shapes.get('xhat')}"
    rng = np.random.default_rng(13)
    xb = rng.standard_normal((2, 5, 8)) * 3 + 1
    wb, bb = rng.standard_normal(8), rng.standard_normal(8)
    got = tensor_data(s, "layer_norm of a float64 (2, 5, 8) input",
                      "layer_norm(Tensor(xb, requires_grad=True), Tensor(wb), Tensor(bb), eps=1e-5)", xb=xb, wb=wb, bb=bb)
    ref = ln(xb, wb, bb, 1e-5)
    assert got.dtype == np.float64 and got.shape == (2, 5, 8) and np.allclose(got, ref, atol=1e-10), \
        f"layer_norm of a float64 (2, 5, 8) input, eps=1e-5: expected float64 equal to numpy's, got {got.dtype} {got.shape}" + \
        (f", largest difference {np.abs(got - ref).max():.3g}" if got.shape == ref.shape else "")
    saved = s.value("(_out.node.saved.get('xhat'), _out.node.saved.get('rstd')) if _out.node is not None else None")
    assert saved is not None, "layer_norm of a (2, 5, 8) input that requires grad recorded no node (use record(...))"
    m = xb.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((xb - m) ** 2).mean(-1, keepdims=True) + 1e-5)
    assert np.shape(saved[0]) == (2, 5, 8) and np.shape(saved[1]) == (2, 5, 1) and np.allclose(saved[1], rstd) \
        and np.allclose(saved[0], (xb - m) * rstd), \
        "saved rstd and xhat for a (2, 5, 8) input: expected rstd = 1 / sqrt(var + eps) of shape (2, 5, 1) and " \
        "xhat = (x - mean) * rstd of shape (2, 5, 8)"
    const = tensor_data(s, "layer_norm of a constant input", "layer_norm(Tensor(np.full((3, 4), 7.0, np.float32)), "
                        "Tensor(np.ones(4, np.float32)), Tensor(np.zeros(4, np.float32)))")
    assert np.all(np.isfinite(const)) and np.allclose(const, 0), \
        f"a constant row with eps=1e-5 should give 0, got {const.tolist()}"


RECORDED_LAYER_NORM = '''
def recorded_layer_norm(x, w, b, eps=1e-5):
    mean = x.data.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x.data - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x.data - mean) * rstd
    return record("layer_norm", Tensor(xhat * w.data + b.data), (x, w, b), xhat=xhat, rstd=rstd)
'''


def rule_check(s, arrays, seed):
    """What the notebook's check_rule did: the rule on the recorded op with a random output gradient,
    against finite differences of LayerNorm (here), atol 1e-6, rtol 1e-5."""
    w = np.random.default_rng(seed).standard_normal(arrays[0].shape)
    what = f"layer_norm_backward on inputs of shapes {[a.shape for a in arrays]}"
    s.run("ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]\nout = recorded_layer_norm(*ts)", arrays=arrays)
    try:
        got = s.value("layer_norm_backward(g, out)", g=w)
    except StudentError as e:
        if e.type == "NotImplementedError":
            raise
        raise AssertionError(f"{what}: the rule raised {e.said}") from None
    assert isinstance(got, tuple) and len(got) == 3, \
        f"{what}: expected a tuple (dx, dweight, dbias), got {type(got).__name__} {got!r:.80}"
    want = numerical_gradients(lambda x, wt, b: ln(x, wt, b, 1e-5), arrays, w)
    for name, g, f in zip(("dx", "dweight", "dbias"), got, want):
        assert isinstance(g, np.ndarray), f"{what}: {name}: expected an np.ndarray, got {type(g).__name__}"
        assert g.shape == f.shape, f"{what}: {name}: expected shape {f.shape}, got {g.shape}"
        assert g.dtype == np.float64, f"{what}: {name}: float64 inputs, expected dtype float64, got {g.dtype}"
        bad = np.abs(g - f) > 1e-6 + 1e-5 * np.abs(f)
        if bad.any():
            at = tuple(int(n) for n in np.argwhere(bad)[0])
            raise AssertionError(f"{what}: {name} at index {fmt(at)}: expected {f[at]:.6g} (finite differences), got "
                                 f"{g[at]:.6g}; expected {name} {np.round(f, 4).tolist()!s:.200}")


@check("test_13_2_layer_norm_backward")
def layer_norm_backward_(s):
    s.run(RECORDED_LAYER_NORM)
    rng = np.random.default_rng(0)
    xs, ws, bs = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    rule_check(s, [xs, ws, bs], seed=0)
    s.run("out = recorded_layer_norm(Tensor(xs, requires_grad=True), Tensor(ws), Tensor(bs))", xs=xs, ws=ws, bs=bs)
    got = s.value("layer_norm_backward(np.ones((3, 5)), out)")
    assert isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dweight, dbias), got {type(got).__name__}"
    dx, dw, db = got
    assert dw is None and db is None, \
        f"weight and bias do not require grad here: expected None for both, got {type(dw).__name__}, {type(db).__name__}"
    assert isinstance(dx, np.ndarray) and dx.shape == (3, 5), f"dx of a (3, 5) input: expected an ndarray (3, 5), got {dx!r:.80}"
    assert np.allclose(dx.sum(-1), 0, atol=1e-10), f"each row of dx should sum to 0 (a constant shift changes nothing), got {fmt(dx.sum(-1))}"
    rng = np.random.default_rng(3)
    rule_check(s, [rng.standard_normal((2, 3, 4)) * 5, rng.standard_normal(4), rng.standard_normal(4)], seed=3)
    x32 = rng.standard_normal((2, 6)).astype(np.float32)
    s.run("o32 = recorded_layer_norm(Tensor(x32, requires_grad=True), Tensor(np.ones(6, np.float32), requires_grad=True),"
          " Tensor(np.zeros(6, np.float32), requires_grad=True))", x32=x32)
    grads = s.value("layer_norm_backward(np.ones((2, 6), np.float32), o32)")
    kinds = [getattr(g, "dtype", type(g).__name__) for g in grads] if isinstance(grads, tuple) else grads
    assert isinstance(grads, tuple) and len(grads) == 3 and all(isinstance(g, np.ndarray) and g.dtype == np.float32 for g in grads), \
        f"float32 inputs (2, 6), weight and bias (6,): expected float32 gradients, got {kinds}"
    assert grads[2].shape == (6,) and np.allclose(grads[2], 2.0), \
        f"dbias of a (2, 6) input with grad 1: expected 2 per feature, got {fmt(grads[2])}"
    assert grads[1].shape == (6,) and grads[0].shape == (2, 6), \
        f"float32 (2, 6) input: expected dx (2, 6) and dweight (6,), got {grads[0].shape} and {grads[1].shape}"


SCALE = '''
class Scale(Module):
    def __init__(self, c):
        super().__init__()
        self.c, self.kwargs = c, None

    def forward(self, x, **kwargs):
        self.kwargs = kwargs
        return x * self.c


def scaled_block(cs):
    block = TransformerBlock(4, 2, rng=0)
    for name, c in zip(("ln1", "attn", "ln2", "mlp"), cs):
        block.set_submodule(name, Scale(c))
    return block
'''


@check("test_13_3_transformer_block")
def block(s):
    s.run(SCALE)
    xa = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    s.run("block = scaled_block((2.0, 3.0, 5.0, 7.0))")
    got = tensor_data(s, "the block with stand-ins", 'block(Tensor(xa), cache="the-cache", layer_idx=3)', xa=xa)
    h = xa + 3 * 2 * xa   # x + attn(ln1(x)) = 7x
    want = h + 7 * 5 * h  # h + mlp(ln2(h)) = 36 h = 252 x
    assert got.shape == (1, 2, 4), f"a (1, 2, 4) input: expected a (1, 2, 4) output, got {got.shape}"
    assert np.allclose(got, want), (f"with ln1 = 2x, attn = 3x, ln2 = 5x, mlp = 7x the block should give "
                                    f"h = x + 3(2x) = 7x, out = h + 7(5h) = 252x; for x = 1 expected 252, got {got[0, 0, 1]}")
    kwargs = s.value("block.attn.kwargs")
    assert kwargs == {"cache": "the-cache", "layer_idx": 3}, \
        f"attn should get cache=..., layer_idx=... as keywords; it got {kwargs}"
    xr = np.random.default_rng(0).standard_normal((2, 3, 4))
    s.run("block2 = scaled_block((1.5, -1.0, 0.5, 4.0)); xr = Tensor(xa, requires_grad=True)", xa=xr)
    got = tensor_data(s, "the block with stand-ins", "block2(xr)")
    h = xr * (1 + 1.5 * -1.0)
    assert got.shape == (2, 3, 4) and np.allclose(got, h * (1 + 0.5 * 4.0)), \
        "ln1 = 1.5x, attn = -x, ln2 = 0.5x, mlp = 4x on a (2, 3, 4) input: expected out = h * 3 with h = -0.5 x"
    kwargs = s.value("block2.attn.kwargs")
    assert kwargs == {"cache": None, "layer_idx": 0}, f"defaults: attn should get cache=None, layer_idx=0, got {kwargs}"
    assert s.value("_out.node is not None"), "the residual sums should be recorded (use Tensor +)"
    g = np.random.default_rng(1).standard_normal((2, 3, 4))
    error = s.raises("_out.backward(g)", g=g)
    grad = None if error else s.value("None if xr.grad is None else xr.grad.data")
    assert grad is not None and np.allclose(grad, -1.5 * g), \
        ("the block with ln1 = 1.5x, attn = -x, ln2 = 0.5x, mlp = 4x is out = -1.5 x, so backward with a gradient g "
         "should give x the gradient -1.5 g: both residual sums must be recorded Tensor additions" +
         (f" (backward raised {error.said})" if error else " (x.grad is None)" if grad is None else ""))


STAND_INS = '''
class AddBlock(Module):
    def __init__(self, c):
        super().__init__()
        self.c, self.kwargs = c, None

    def forward(self, x, **kwargs):
        self.kwargs = kwargs
        return x + self.c


class Doubler(Module):
    def forward(self, x):
        return x * 2.0


class FakeCache:
    def __init__(self, n):
        self.n = n

    def get_seq_length(self, layer_idx=0):
        return self.n


gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=3, context=16, max_len=32, rng=0)
gpt.set_submodule("ln_f", Doubler())
for i in range(3):
    gpt.set_submodule(f"blocks.{i}", AddBlock(10.0 ** i))


def block_kwargs():
    """What each stand-in block was called with, as data: {keyword: value, or the cache's type and length}."""
    seen = []
    for i in range(3):
        kw = dict(gpt.blocks[i].kwargs or {})
        if kw.get("cache") is not None:
            kw["cache"] = (type(kw["cache"]).__name__, kw["cache"].n)
        seen.append(kw)
    return seen
'''


def sinusoid(max_len: int, dim: int) -> np.ndarray:
    table = np.zeros((max_len, dim))
    for j in range(dim):
        angle = np.arange(max_len) / 10000.0 ** (2 * (j // 2) / dim)
        table[:, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return table


@check("test_13_4_gpt")
def gpt(s):
    s.run(STAND_INS)
    emb, head_w, head_b = s.value("(gpt.tok_emb.weight.data, gpt.lm_head.weight.data, gpt.lm_head.bias.data)")
    pe = sinusoid(32, 8)

    def expected(ids, offset):
        x = emb.astype(np.float64)[ids] + pe[offset:offset + ids.shape[1]]
        return (2 * (x + 111)) @ head_w.T + head_b

    ids = np.array([[1, 4, 2], [0, 10, 3]])
    got = tensor_data(s, "GPT on ids (2, 3)", "gpt(ids)", ids=ids)
    assert got.shape == (2, 3, 11), f"ids (2, 3), vocab 11: expected logits (2, 3, 11), got {got.shape}"
    assert np.allclose(got, expected(ids, 0), atol=1e-4), \
        "logits differ from lm_head(ln_f(blocks(tok_emb(ids) + pe[0:3]))) (blocks stand-ins add 1, 10, 100; ln_f doubles)"
    kwargs = s.value("block_kwargs()")
    assert [k.get("layer_idx") for k in kwargs] == [0, 1, 2], \
        f"block i should get layer_idx=i, got {[k.get('layer_idx') for k in kwargs]}"
    got = tensor_data(s, "GPT with a cache", "gpt(ids[:, :1], cache=FakeCache(5))")
    assert got.shape == (2, 1, 11) and np.allclose(got, expected(ids[:, :1], 5), atol=1e-4), \
        "with a cache holding 5 positions, the new token's position is 5 (pe[5])"
    kwargs = s.value("block_kwargs()")
    assert [k.get("cache") for k in kwargs] == [("FakeCache", 5)] * 3, \
        f"the cache should be passed to every block (as cache=...): the blocks got {[k.get('cache') for k in kwargs]}"
    for bad in (np.array([1, 2, 3]), np.zeros((1, 0), dtype=np.int64)):
        s.expect_error("gpt(bad)", f"GPT on ids of shape {bad.shape}", (str(bad.shape),), bad=bad)
    s.expect_error("gpt(np.zeros((1, 4), dtype=np.int64), cache=FakeCache(30))",
                   "4 tokens after 30 cached positions with max_len 32 (positions 30..33)", ("32", "33"))
    s.expect_error("gpt(np.zeros((1, 4), dtype=np.float32))", "GPT on float32 ids", ("float32",))
    got = tensor_data(s, "GPT on ids given as a Tensor", "gpt(Tensor(ids))")
    assert got.shape == (2, 3, 11) and np.allclose(got, expected(ids, 0), atol=1e-4), \
        "ids given as a Tensor should work like an array"
    got = tensor_data(s, "GPT on 32 tokens", "gpt(np.zeros((1, 32), dtype=np.int64))")
    assert got.shape == (1, 32, 11), f"32 tokens fit in max_len 32: expected logits (1, 32, 11), got {got.shape}"


BIGRAM = '''
class Bigram(Module):
    def __init__(self, table, max_len=8):
        super().__init__()
        self.table, self.vocab_size, self.max_len = table, table.shape[0], max_len
        self.shapes, self.modes = [], []

    def forward(self, ids, cache=None):
        ids = np.asarray(ids)
        self.shapes.append(tuple(ids.shape))
        self.modes.append(self.training)
        return Tensor(self.table[ids])
'''


def greedy(table, prompt, n, max_len=8):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(np.argmax(table[ids[-max_len:][-1]])))
    return ids


@check("test_13_5_generate")
def generate_(s):
    s.run(BIGRAM)
    chain = np.full((5, 5), -1.0, dtype=np.float32)
    for t, nxt in enumerate([2, 3, 4, 1, 0]):  # 0 -> 2 -> 4 -> 0 ..., 1 -> 3 -> 1 ...
        chain[t, nxt] = 1.0
    s.run("model = Bigram(chain)", chain=chain)
    s.run("_out = generate(model, [0], 5)")
    kind, got = s.value("(type(_out).__name__, _out if isinstance(_out, np.ndarray) else None)")
    assert got is not None and got.dtype == np.int64, \
        f"generate should return an int64 np.ndarray, got {fmt(kind)} {getattr(got, 'dtype', '')}"
    want = greedy(chain, [0], 5)
    assert got.tolist() == want, f"greedy from [0] with the chain 0->2->4->0: expected {fmt(want)}, got {got.tolist()}"
    shapes, modes, training = s.value("(model.shapes, model.modes, model.training)")
    assert shapes == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5)], f"each step runs the whole sequence so far as (1, n): got shapes {shapes}"
    assert training and modes == [False] * 5, \
        f"generate should run the model in eval mode and put training mode back: modes during the calls {modes}, after {fmt(training)}"
    s.run("model.shapes = []; generate(model, [1, 3, 1, 3, 1, 3, 1], 3)")
    shapes = s.value("model.shapes")
    assert shapes == [(1, 7), (1, 8), (1, 8)], f"max_len 8: the window is cropped to the last 8 tokens; got shapes {shapes}"
    logits = np.array([0.0, 1.0, 3.0, 2.0])
    got = s.value("next_token(logits, 0.0)", logits=logits)
    assert got == 2, f"next_token greedy on [0, 1, 3, 2]: expected 2, got {got!r}"
    draws = s.value("[next_token(logits, 1.0, 2, np.random.default_rng(i)) for i in range(200)]", logits=logits)
    assert set(draws) == {2, 3}, f"top_k=2 on [0, 1, 3, 2], 200 draws: only ids 2 and 3 may be drawn (both should be), got {sorted(set(draws))}"
    a, b = s.value("(lambda flat: (generate(flat, [0], 20, temperature=1.0, seed=7), "
                   "generate(flat, [0], 20, temperature=1.0, seed=7)))(Bigram(np.zeros((5, 5), dtype=np.float32)))")
    a, b = np.asarray(a), np.asarray(b)
    assert a.tolist() == b.tolist(), f"sampling with seed 7 twice should give the same ids: {a.tolist()} vs {b.tolist()}"
    assert len(a) == 21 and len(set(a[1:].tolist())) > 1, f"sampling 20 ids from uniform scores should not repeat one id 20 times: {a.tolist()}"
    for kwargs, word in (({"prompt_ids": []}, "empty"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_k": 6}, "top_k"),
                         ({"prompt_ids": list(range(5)) * 2}, "10"), ({"prompt_ids": [0, 1, 9]}, "9"),
                         ({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k")):
        args = {"prompt_ids": [0], "max_new_tokens": 3, **kwargs}
        s.expect_error("generate(model, **args)", f"generate(model, **{args}) (the bigram stand-in, vocab 5, max_len 8)",
                       (word,), args=args)
    got = s.value("generate(model, np.array([1]), 4, top_k=1, temperature=0.7, seed=0)")
    assert np.asarray(got).tolist() == greedy(chain, [1], 4), \
        f"top_k=1 sampling is greedy: from [1] expected {fmt(greedy(chain, [1], 4))}, got {np.asarray(got).tolist()}"
    got = s.value("generate(model, Tensor(np.array([1])), 2)")
    assert np.asarray(got).tolist() == greedy(chain, [1], 2), \
        f"a Tensor prompt should work like a list: from Tensor([1]) expected {fmt(greedy(chain, [1], 2))}, got {np.asarray(got).tolist()}"
    p = np.log(np.array([0.1, 0.2, 0.7]))
    draws = s.value("[next_token(p, 1.0, None, np.random.default_rng(i)) for i in range(600)]", p=p)
    counts = np.bincount(np.asarray(draws, dtype=np.int64), minlength=3)
    assert len(counts) == 3 and abs(counts[2] / 600 - 0.7) < 0.08, \
        f"temperature 1 on probabilities [0.1, 0.2, 0.7], 600 draws: id 2 should be drawn ~70% of the time, got {fmt(counts / 600)}"
    draws = s.value("[next_token(p, 0.25, None, np.random.default_rng(i)) for i in range(300)]", p=p)
    sharp = np.bincount(np.asarray(draws, dtype=np.int64), minlength=3)
    assert len(sharp) == 3 and sharp[2] / 300 > 0.95, \
        f"temperature 0.25 sharpens [0.1, 0.2, 0.7], 300 draws: id 2 should be drawn > 95% of the time, got {fmt(sharp / 300)}"
