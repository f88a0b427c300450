"""Module 12's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible cases
and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`), every
expected value and comparison stays here: the attention oracle, the per-head MultiHeadAttention oracle
(computed here from the layer's weights, fetched as data) and the finite differences that replace the
notebook's `gradcheck` (the sandbox only runs the student's forward and the engine's backward and sends
the gradients back).
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check, numerical_gradients, tensor_data

def attention_oracle(q, k, v, causal):
    """float64 numpy, with explicit loops over the mask: the definition."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    s_q, s_k = q.shape[2], k.shape[2]
    if causal:
        for i in range(s_q):
            for j in range(s_k):
                if j > s_k - s_q + i:
                    s[:, :, i, j] = -np.inf
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    return (w / w.sum(axis=-1, keepdims=True)) @ v


def attention_gradcheck(s, shapes, seed):
    """The student's causal attention, backward from a random output gradient in the sandbox; finite
    differences of the oracle here (what the notebook's gradcheck did, atol 1e-5, rtol 1e-3)."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    s_q = shapes[0][2]
    w = rng.standard_normal(shapes[0][:2] + (s_q, shapes[0][3]))
    what = f"gradient of causal attention, q {shapes[0]}, k {shapes[1]}, v {shapes[2]} float64"
    s.run("ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]\n"
          "out = scaled_dot_product_attention(*ts, causal=True)\n"
          "out.backward(w)", arrays=arrays, w=w)
    got = s.value("[None if t.grad is None else t.grad.data for t in ts]")
    want = numerical_gradients(lambda q, k, v: attention_oracle(q, k, v, True), arrays, w)
    for name, g, f in zip("qkv", got, want):
        assert g is not None, f"{what}: {name} got no gradient (build the attention from recorded Tensor operations)"
        assert g.shape == f.shape, f"{what}: the gradient of {name} has shape {g.shape}, expected {f.shape}"
        err = np.abs(g - f)
        bad = err > 1e-5 + 1e-3 * np.abs(f)
        if bad.any():
            at = tuple(int(n) for n in np.argwhere(bad)[0])
            raise AssertionError(f"{what}: the gradient of {name} at index {fmt(at)}: autograd {g[at]:.6g}, finite "
                                 f"differences {f[at]:.6g}")


@check("test_12_1_heads")
def heads(s):
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
    h = tensor_data(s, "split_heads of a (1, 2, 6) tensor into 2 heads", "split_heads(Tensor(x), 2)", x=x)
    assert h.shape == (1, 2, 2, 3), f"(1, 2, 6) into 2 heads: expected a (1, 2, 2, 3) Tensor, got shape {h.shape}"
    want = [[[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9, 10, 11]]]]
    assert np.array_equal(h, want), f"worked example, x = arange(12) as (1, 2, 6), 2 heads: expected {fmt(want)}, got {h.tolist()}"
    m = tensor_data(s, "merge_heads(split_heads(x, 2))", "merge_heads(split_heads(Tensor(x), 2))", x=x)
    assert m.shape == (1, 2, 6) and np.array_equal(m, x), f"merge_heads(split_heads(x, 2)) should give x back, got {m.tolist()}"
    s.expect_error("split_heads(Tensor(np.zeros((2, 3, 10))), 4)", "split_heads of a (2, 3, 10) tensor into 4 heads",
                   ("10", "4"))
    r = np.random.default_rng(0).standard_normal((3, 5, 12))
    for n_heads in (1, 3, 4, 12):
        ref = r.reshape(3, 5, n_heads, 12 // n_heads).transpose(0, 2, 1, 3)
        got = tensor_data(s, f"split_heads of (3, 5, 12) into {n_heads} heads", "split_heads(Tensor(r), n)", r=r, n=n_heads)
        assert got.shape == ref.shape and np.array_equal(got, ref), \
            f"(3, 5, 12) into {fmt(n_heads)} heads: expected shape {ref.shape} with head h = columns h*hd..(h+1)*hd-1, got shape {got.shape}"
        back = tensor_data(s, "merge_heads", "merge_heads(split_heads(Tensor(r), n))", r=r, n=n_heads)
        assert back.shape == r.shape and np.array_equal(back, r), \
            f"merge_heads(split_heads(x, {fmt(n_heads)})) should give the (3, 5, 12) x back"
    g = np.random.default_rng(1).standard_normal((3, 5, 12))
    s.run("t = Tensor(r, requires_grad=True); out = merge_heads(split_heads(t, 4))", r=r)
    assert s.value("out.node is not None"), \
        "split/merge should use recorded Tensor operations (reshape, transpose) so gradients flow"
    s.run("out.backward(g)", g=g)
    grad = s.value("None if t.grad is None else t.grad.data")
    assert grad is not None and grad.shape == r.shape and np.allclose(grad, g), \
        ("merge_heads(split_heads(x, 4)) is the identity, so its backward with a random output gradient g (3, 5, 12) "
         "should give x the gradient g" + (" (x.grad is None)" if grad is None else ""))
    for bad, code in [((5, 12), "split_heads(Tensor(np.zeros(bad)), 4)"), ((2, 5, 12), "merge_heads(Tensor(np.zeros(bad)))")]:
        s.expect_error(code, f"{code.split('(')[0]} of an input of shape {bad}", (str(bad),), bad=bad)


@check("test_12_2_causal_mask")
def mask(s):
    s.run("_out = causal_mask(4, 4)")
    kind, m = s.value("(type(_out).__name__, _out if isinstance(_out, np.ndarray) else None)")
    assert m is not None and m.dtype == bool and m.shape == (4, 4), \
        f"causal_mask(4, 4): expected a bool ndarray (4, 4), got {fmt(kind)} {getattr(m, 'dtype', '')} {getattr(m, 'shape', '')}"
    assert np.array_equal(m, np.tril(np.ones((4, 4), dtype=bool))), \
        f"causal_mask(4, 4): expected the lower triangle, got {m.astype(int).tolist()}"
    for s_q, s_k in [(1, 5), (2, 5), (3, 7), (7, 7), (1, 1), (5, 64)]:
        got = s.value("causal_mask(a, b)", a=s_q, b=s_k)
        ref = np.array([[j <= s_k - s_q + i for j in range(s_k)] for i in range(s_q)])
        assert isinstance(got, np.ndarray) and got.shape == (s_q, s_k) and np.array_equal(got, ref), \
            f"causal_mask({fmt(s_q)}, {fmt(s_k)}): expected {ref.astype(int).tolist()}, got " + \
            (f"{np.asarray(got).astype(int).tolist()}" if isinstance(got, np.ndarray) else repr(got))
    s.expect_error("causal_mask(5, 3)", "causal_mask(5, 3) (more queries than keys)", ("5", "3"))
    for bad in [(0, 3), (4, 2)]:
        s.expect_error("causal_mask(*bad)", f"causal_mask{bad}", bad=bad)


@check("test_12_3_sdpa")
def sdpa(s):
    try:
        m = s.value("causal_mask(2, 3)")
        shown = repr(m.astype(int).tolist()) if isinstance(m, np.ndarray) else repr(m)
    except StudentError as e:
        m, shown = e, f"raised {e.said}"
    ok = isinstance(m, np.ndarray) and m.shape == (2, 3) and np.array_equal(m, [[1, 1, 0], [1, 1, 1]])
    assert ok, (f"Task 12.3 calls causal_mask from Task 12.2, and causal_mask(2, 3) failed ({fmt(shown)}; expected "
                f"[[1, 1, 0], [1, 1, 1]]): make Task 12.2's tests pass first")
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    s.run("q, k, v = Tensor(qa), Tensor(ka), Tensor(va)", qa=q, ka=k, va=v)
    for causal in (True, False):
        got = tensor_data(s, f"attention of q, k, v (2, 3, 5, 4), causal={causal}",
                          "scaled_dot_product_attention(q, k, v, causal=causal)", causal=causal)
        want = attention_oracle(q, k, v, causal)
        assert got.shape == (2, 3, 5, 4), f"q, k, v (2, 3, 5, 4): expected a (2, 3, 5, 4) Tensor, got shape {got.shape}"
        assert np.allclose(got, want, atol=1e-10), \
            f"q, k, v (2, 3, 5, 4), causal={causal}: largest difference from the oracle {np.abs(got - want).max():.3g}"
    got = tensor_data(s, "attention of the last 2 queries", "scaled_dot_product_attention(Tensor(qa[:, :, 3:]), k, v)")
    assert got.shape == (2, 3, 2, 4) and np.allclose(got, attention_oracle(q, k, v, True)[:, :, 3:], atol=1e-10), \
        ("q of the last 2 positions (2, 3, 2, 4) against k, v (2, 3, 5, 4), causal: expected the last 2 rows of the "
         "full causal attention (the offset rule)")
    attention_gradcheck(s, [(1, 2, 3, 2)] * 3, seed=100)
    q2, k2, v2 = rng.standard_normal((3, 2, 2, 6)), rng.standard_normal((3, 2, 7, 6)), rng.standard_normal((3, 2, 7, 6))
    for causal in (True, False):
        got = tensor_data(s, "attention", "scaled_dot_product_attention(a, b, c, causal=causal)",
                          a=q2, b=k2, c=v2, causal=causal)
        assert got.shape == (3, 2, 2, 6) and np.allclose(got, attention_oracle(q2, k2, v2, causal), atol=1e-10), \
            f"q (3, 2, 2, 6), k, v (3, 2, 7, 6) given as numpy arrays, causal={causal}: differs from the oracle"
    f32 = [a.astype(np.float32) for a in (q, k, v)]
    got = tensor_data(s, "float32 attention", "scaled_dot_product_attention(*(Tensor(a) for a in f32))", f32=f32)
    assert got.dtype == np.float32, f"float32 q, k, v: expected a float32 output, got {got.dtype}"
    try:
        s.run('with np.errstate(over="raise", invalid="raise", divide="raise"):\n'
              '    fin = scaled_dot_product_attention(q, k, v).data')
    except StudentError as e:
        raise AssertionError(f"causal attention on (2, 3, 5, 4) under np.errstate(over/invalid/divide='raise') raised "
                             f"{e.said} (a NaN or overflow from the -inf mask?)") from None
    got = s.value("fin")
    assert np.isfinite(got).all(), "causal attention on (2, 3, 5, 4): expected finite outputs (no NaN from the -inf mask)"
    attention_gradcheck(s, [(1, 1, 2, 3), (1, 1, 4, 3), (1, 1, 4, 3)], seed=101)
    for bad in [((2, 3, 5, 4), (2, 3, 5, 8), (2, 3, 5, 8)), ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 5, 4)),
                ((3, 5, 4), (3, 5, 4), (3, 5, 4)), ((2, 3, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4))]:
        s.expect_error("scaled_dot_product_attention(*(np.zeros(s) for s in bad))",
                       f"q {bad[0]}, k {bad[1]}, v {bad[2]}", (str(bad[0]), str(bad[1])), bad=bad)
    s.expect_error("scaled_dot_product_attention(np.zeros((1, 1, 5, 4)), np.zeros((1, 1, 3, 4)), np.zeros((1, 1, 3, 4)))",
                   "causal attention with 5 queries and 3 keys")


# Given in the notebook (not exported): the ten-line cache of section 4, and a visible-test-style probe.
LIST_CACHE = '''
class ListCache:
    def __init__(self):
        self.keys, self.values = {}, {}

    def update(self, k, v, layer_idx):
        if layer_idx in self.keys:
            self.keys[layer_idx] = np.concatenate([self.keys[layer_idx], k.data], axis=2)
            self.values[layer_idx] = np.concatenate([self.values[layer_idx], v.data], axis=2)
        else:
            self.keys[layer_idx], self.values[layer_idx] = k.data, v.data
        return Tensor(self.keys[layer_idx]), Tensor(self.values[layer_idx])

    def get_seq_length(self, layer_idx=0):
        return self.keys[layer_idx].shape[2] if layer_idx in self.keys else 0


class CountingCache(ListCache):
    def __init__(self):
        super().__init__()
        self.calls = []

    def update(self, k, v, layer_idx):
        self.calls.append((layer_idx, tuple(k.shape), tuple(v.shape)))
        return super().update(k, v, layer_idx)


class ZeroAttention(MultiHeadAttention):
    def attend(self, q, k, v):
        self.attended = getattr(self, "attended", []) + [(tuple(q.shape), tuple(k.shape), tuple(v.shape))]
        return Tensor(np.zeros(q.shape, dtype=np.float32))


def weights_of(mha):
    return {n: (getattr(mha, n).weight.data, getattr(mha, n).bias.data) for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
'''


def mha_oracle(weights, n_heads, x):
    """float64 numpy: the same layer, written out with explicit per-head loops, from its weights."""
    def lin(name, a):
        w, b = weights[name]
        return a @ w.astype(np.float64).T + b.astype(np.float64)
    x = x.astype(np.float64)
    q, k, v = lin("q_proj", x), lin("k_proj", x), lin("v_proj", x)
    batch, seq, d_model = x.shape
    hd = d_model // n_heads
    out = np.zeros((batch, seq, d_model))
    for b in range(batch):
        for h in range(n_heads):
            cols = slice(h * hd, (h + 1) * hd)
            sc = q[b, :, cols] @ k[b, :, cols].T / np.sqrt(hd)
            sc[np.triu_indices(seq, 1)] = -np.inf
            w = np.exp(sc - sc.max(axis=1, keepdims=True))
            out[b, :, cols] = (w / w.sum(axis=1, keepdims=True)) @ v[b, :, cols]
    return lin("out_proj", out)


@check("test_12_4_mha")
def mha(s):
    error = s.raises("scaled_dot_product_attention(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))\n"
                     "merge_heads(split_heads(np.zeros((1, 2, 4)), 2))")
    assert error is None or error.type != "NotImplementedError", \
        (f"Task 12.4 calls split_heads (Task 12.1) and scaled_dot_product_attention (Task 12.3), and one failed "
         f"({error.said}): make their tests pass first")
    s.run(LIST_CACHE)
    s.run("mha = MultiHeadAttention(16, 4, rng=0)")
    names = s.value("[n for n, _ in mha.named_children()]")
    assert names == ["q_proj", "k_proj", "v_proj", "out_proj"], f"children: got {names}"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    y = tensor_data(s, "MultiHeadAttention(16, 4) on (2, 6, 16) float32", "mha(Tensor(x))", x=x)
    assert y.shape == (2, 6, 16) and y.dtype == np.float32, \
        f"MultiHeadAttention(16, 4) on (2, 6, 16) float32: expected a (2, 6, 16) float32 Tensor, got {y.shape} {y.dtype}" \
        + (" (float64: a numpy float64 scalar, such as 1 / np.sqrt(d), promotes float32 in Task 12.3; use float(...))"
           if y.dtype == np.float64 else "")
    weights = s.value("weights_of(mha)")
    want = mha_oracle(weights, 4, x)
    assert np.allclose(y, want, atol=1e-5), \
        f"(2, 6, 16) input: largest difference from the float64 per-head oracle {np.abs(y - want).max():.3g}"
    for t in range(5):  # causality: change the input at positions t + 1..; outputs at positions <= t must not move
        x2 = x.copy()
        x2[:, t + 1:] = rng.standard_normal(x2[:, t + 1:].shape)
        y2 = tensor_data(s, "mha", "mha(Tensor(x2))", x2=x2)
        assert np.array_equal(y2[:, :t + 1], y[:, :t + 1]), \
            f"changing positions {t + 1}.. changed the output at a position <= {t}: attention is not causal"
    s.run("cache = ListCache(); steps = [mha(Tensor(x[:, i:i + 1]), cache=cache).data for i in range(6)]", x=x)
    n, steps = s.value("(cache.get_seq_length(0), steps)")
    assert n == 6, f"after 6 one-token steps the cache should hold 6 positions for layer 0, got {n}"
    got = np.concatenate(steps, axis=1)
    assert np.allclose(got, y, atol=1e-5), \
        f"token by token with a cache vs the whole sequence: largest difference {np.abs(got - y).max():.3g}"
    s.expect_error("mha(Tensor(np.zeros((2, 5, 8), dtype=np.float32)))", "MultiHeadAttention(16, 4) on x (2, 5, 8)",
                   ("(2, 5, 8)",))
    # the attend seam: a subclass's attend must be what forward attends through
    s.run("probe = ZeroAttention(8, 2, rng=0); out = probe(Tensor(np.ones((1, 3, 8), dtype=np.float32))).data")
    out, bias, attended = s.value("(out, probe.out_proj.bias.data, getattr(probe, 'attended', []))")
    assert attended == [((1, 2, 3, 4),) * 3] and np.allclose(out, np.broadcast_to(bias, (1, 3, 8))), \
        (f"a subclass whose attend() returns zeros, on x (1, 3, 8) with 2 heads: forward should call self.attend(q, k, v) "
         f"once with q, k, v (1, 2, 3, 4) and use its result (output = out_proj's bias); attend got {attended}")
    s.run("mha = MultiHeadAttention(12, 3, rng=5)")
    x = rng.standard_normal((3, 7, 12)).astype(np.float32)
    whole = tensor_data(s, "MultiHeadAttention(12, 3) on (3, 7, 12)", "mha(Tensor(x))", x=x)
    assert np.allclose(whole, mha_oracle(s.value("weights_of(mha)"), 3, x), atol=1e-5), \
        "MultiHeadAttention(12, 3) on (3, 7, 12): differs from the float64 oracle"
    s.run("cache = CountingCache()\n"
          "parts = [mha(Tensor(x[:, :4]), cache=cache, layer_idx=2).data]\n"
          "parts += [mha(Tensor(x[:, i:i + 1]), cache=cache, layer_idx=2).data for i in range(4, 7)]", x=x)
    calls, parts = s.value("(cache.calls, parts)")
    assert [c[0] for c in calls] == [2, 2, 2, 2], \
        f"a prompt of 4 tokens then 3 single tokens: cache.update should be called once per forward with layer_idx=2, got calls {calls}"
    assert calls[0][1] == (3, 3, 4, 4) and calls[1][1] == (3, 3, 1, 4), \
        f"update should receive the new tokens' keys (batch, heads, seq, head_dim): got {[c[1] for c in calls]}"
    assert np.allclose(np.concatenate(parts, axis=1), whole, atol=1e-5), \
        "a prompt of 4 then 3 single tokens through the cache should equal the whole 7-token run"
    s.run("xt = Tensor(x, requires_grad=True); mha(xt).sum().backward()", x=x)
    grads = s.value("[(n, tuple(p.shape), None if p.grad is None else tuple(p.grad.shape)) for n, p in mha.named_parameters()]")
    bad = [(n, shape, g) for n, shape, g in grads if g != shape]
    assert grads and not bad, \
        f"a backward pass should give every parameter a gradient of its shape; (name, shape, gradient shape): {fmt(bad or grads)}"
    s.expect_error("MultiHeadAttention(10, 4)", "MultiHeadAttention(10, 4)", ("10", "4"))
