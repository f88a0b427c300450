"""Module 18's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`),
every expected value and comparison stays here: the tokens a cached generation must reproduce come
from Module 13's generate in the course's reference library, run here in the grader on the same weights.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import Plain, StudentError, check, requires, task_first


# tito/check_runner.py's encode sends arrays through np.ascontiguousarray, which makes a 0-d array 1-d and a numpy
# scalar not data at all (SandboxError "a scalar must be a 0-d array"), so a student's np.int64 where an int was
# expected would stop a check with a confusing message. Plain(s) is s whose value() answers with numpy scalars
# turned into Python numbers (inside lists, tuples and dicts too) by plain_, defined in the check's sandbox scope.


CACHE = "(lambda c: (tuple(c.keys.shape), tuple(c.values.shape), c.keys.dtype, c.values.dtype, c.keys is c.values, list(c.lengths), c.nbytes))({})"


@check("test_18_1_kvcache")
def kvcache(s):
    s = Plain(s)
    ks, vs, kd, vd, same, lengths, nbytes = s.value(CACHE.format("KVCache(2, 1, 4, 16, 8)"))
    assert ks == vs == (2, 1, 4, 16, 8), f"KVCache(2, 1, 4, 16, 8): expected keys and values of shape (2, 1, 4, 16, 8), got {fmt(ks)}, {fmt(vs)}"
    assert kd == vd == np.float32 and not same, f"keys and values: two separate float32 arrays, got {fmt(kd)}, {fmt(vd)}{fmt(' (the same array)' if same else '')}"
    assert lengths == [0, 0], f"a new cache holds 0 positions in every layer, got lengths {lengths}"
    assert nbytes == 2 * 2 * 1 * 4 * 16 * 8 * 4, f"KVCache(2, 1, 4, 16, 8) float32: expected nbytes 8192, got {nbytes!r}"
    s.run("c = KVCache(2, 1, 4, 16, 8)")
    got = s.value("(c.get_seq_length(), c.get_seq_length(1))")
    assert got == (0, 0), f"a new cache: get_seq_length() and get_seq_length(1) should be 0, got {fmt(got)}"
    s.run("c.lengths = [5, 3]")
    got = s.value("(c.get_seq_length(1), c.get_seq_length(0), c.get_seq_length())")
    assert got == (3, 5, 5), f"get_seq_length(1), (0) and () with lengths [5, 3]: expected (3, 5, 5), got {fmt(got)}"
    got = s.value("(lambda keys, values: (c.reset(), list(c.lengths), c.keys is keys, c.values is values)[1:])(c.keys, c.values)")
    assert got == ([0, 0], True, True), f"reset() sets the lengths to 0 and keeps the same arrays; got lengths {fmt(got[0])}, same arrays {got[1:]}"
    s.expect_error("KVCache(2, 1, 4, 0, 8)", "KVCache(2, 1, 4, 0, 8)", ("max_len", "0"))
    ks, _, kd, _, _, lengths, nbytes = s.value(CACHE.format("KVCache(3, 2, 2, 10, 4, dtype=np.float64)"))
    assert kd == np.float64 and ks == (3, 2, 2, 10, 4) and nbytes == 2 * 3 * 2 * 2 * 10 * 4 * 8, \
        f"KVCache(3, 2, 2, 10, 4, dtype=float64): expected float64 arrays (3, 2, 2, 10, 4) and nbytes 7680, got {fmt(kd)} {fmt(ks)}, nbytes {nbytes!r}"
    assert lengths == [0, 0, 0], f"3 layers: expected lengths [0, 0, 0], got {lengths}"
    _, _, kd, _, _, _, nbytes = s.value(CACHE.format("KVCache(1, 1, 1, 6, 2, dtype=np.float16)"))
    assert kd == np.float16 and nbytes == 2 * 6 * 2 * 2, f"KVCache(1, 1, 1, 6, 2, dtype=float16): expected nbytes 48 (from the arrays), got {fmt(kd)}, {nbytes!r}"
    for bad in ({"n_layers": 0}, {"batch": -1}, {"n_heads": 2.0}, {"head_dim": True}, {"max_len": "4"}):
        args = {"n_layers": 1, "batch": 1, "n_heads": 1, "max_len": 4, "head_dim": 2, **bad}
        name = next(iter(bad))
        s.expect_error("KVCache(**args)", f"KVCache({args})", (name,), args=args)


@check("test_18_2_update")
def update(s):
    s = Plain(s)
    # on a cache built without __init__ (Task 18.1), so that an unfinished update names Task 18.2 itself
    task_first(s, "bare = KVCache.__new__(KVCache)\n"
                  "bare.__dict__.update(n_layers=1, batch=1, n_heads=1, max_len=2, head_dim=1, lengths=[0],\n"
                  "                     keys=np.zeros((1, 1, 1, 2, 1)), values=np.zeros((1, 1, 1, 2, 1)))\n"
                  "bare.update(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), 0)", "18.2")
    requires(s, "(lambda c: (tuple(c.keys.shape), list(c.lengths)))(KVCache(2, 1, 2, 6, 3))",
             lambda r: r == ((2, 1, 2, 6, 3), [0, 0]), "KVCache(2, 1, 2, 6, 3) should hold keys (2, 1, 2, 6, 3) and lengths [0, 0]",
             "18.1", "18.2")
    s.run("c = KVCache(2, 1, 2, 6, 3)")
    rng = np.random.default_rng(0)
    k1, v1 = rng.standard_normal((1, 2, 4, 3)).astype(np.float32), rng.standard_normal((1, 2, 4, 3)).astype(np.float32)
    kind, ka, va = s.value("(lambda r: (type(r[0]).__name__, np.asarray(r[0].data), np.asarray(r[1].data)))(c.update(Tensor(k), Tensor(v), 1))",
                           k=k1, v=v1)
    assert kind == "Tensor" and ka.shape == (1, 2, 4, 3) and np.array_equal(ka, k1) and np.array_equal(va, v1), \
        f"update of an empty layer with k, v (1, 2, 4, 3) (Tensors): expected those keys and values back as Tensors, got {fmt(kind)} of shape {ka.shape}"
    lengths = s.value("list(c.lengths)")
    assert lengths == [0, 4], f"after 4 positions into layer 1: expected lengths [0, 4], got {lengths}"
    k2, v2 = rng.standard_normal((1, 2, 1, 3)).astype(np.float32), rng.standard_normal((1, 2, 1, 3)).astype(np.float32)
    kb, vb = s.value("(lambda r: (np.asarray(r[0].data), np.asarray(r[1].data)))(c.update(k, v, 1))", k=k2, v=v2)
    assert kb.shape == (1, 2, 5, 3) and np.array_equal(kb, np.concatenate([k1, k2], axis=2)) \
        and np.array_equal(vb, np.concatenate([v1, v2], axis=2)), \
        f"a second update with 1 position (arrays): expected the 5 keys and values so far (1, 2, 5, 3) in order, got shape {kb.shape}"
    got = s.value("(c.get_seq_length(1), c.get_seq_length(0))")
    assert got == (5, 0), f"expected lengths [0, 5], got get_seq_length(1), (0) = {fmt(got)}"
    stored = s.value("(c.keys[1, :, :, :5], c.values[1, :, :, :5], c.keys[0])")
    assert np.array_equal(stored[0], kb) and np.array_equal(stored[1], vb) and not stored[2].any(), \
        "update should write into keys[layer_idx, :, :, n:n + s_new] (and values) of the preallocated arrays, and leave layer 0 alone"
    s.expect_error("c.update(k[:, :, :2], v[:, :, :2], 1)", "update past max_len (layer 1 holds 5 of 6, 2 more)", ("5", "6", "2"), k=k1, v=v1)
    lengths = s.value("list(c.lengths)")
    assert lengths == [0, 5], f"a refused update must change nothing: lengths {lengths}"
    s.expect_error("c.update(k, v, 2)", "update with layer_idx 2 on a 2-layer cache", ("layer_idx", "2"), k=k2, v=v2)
    for kk, vv, what in (((1, 2, 1, 4), (1, 2, 1, 4), "head_dim 4"), ((1, 3, 1, 3), (1, 3, 1, 3), "3 heads"),
                         ((1, 2, 1, 3), (1, 2, 2, 3), "k and v differ"), ((2, 3), (2, 3), "2-d"),
                         ((2, 2, 1, 3), (2, 2, 1, 3), "batch 2"), ((1, 2, 0, 3), (1, 2, 0, 3), "no new position")):
        s.expect_error("c.update(np.zeros(ks), np.zeros(vs), 0)",
                       f"update with {what} (k {kk}, v {vv}) on a (batch 1, 2 heads, ., head_dim 3) cache", (str(kk),), ks=kk, vs=vv)
    lengths = s.value("list(c.lengths)")
    assert lengths == [0, 5], f"refused updates must change nothing: lengths {lengths}"
    s.expect_error("c.update(k, v, -1)", "update with layer_idx -1 (not wrap around to the last layer)", k=k2, v=v2)
    full = s.raises("c.update(k, v, 1)", k=k2, v=v2)
    assert full is None, f"1 more position into layer 1 holding 5 of 6 fills it exactly and should work; raised {full}"
    assert s.value("list(c.lengths)") == [0, 6], f"a layer filled to max_len 6: expected lengths [0, 6], got {s.value('list(c.lengths)')}"
    kc = s.value("(c.reset(), np.asarray(c.update(k, v, 1)[0].data))[1]", k=k2, v=v2)
    assert kc.shape == (1, 2, 1, 3) and np.array_equal(kc, k2), f"after reset(), update starts again at position 0: expected (1, 2, 1, 3), got {kc.shape}"
    # layers are independent; the returned keys are the cache's own memory
    k3 = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    got = s.value("(lambda r: (np.asarray(r[0].data), list(c.lengths), np.shares_memory(r[0].data, c.keys)))(c.update(k, k, 0))", k=k3)
    assert np.array_equal(got[0], k3) and got[1] == [2, 1], \
        f"2 positions into layer 0 after 1 into layer 1: expected layer 0's 2 keys back and lengths [2, 1], got {got[0].shape}, {fmt(got[1])}"
    assert got[2], "the returned keys should be a view of the cache's array (keys[layer_idx, :, :, :n + s_new]), not a copy"


def _reference():
    """Module 13 from the course's reference library, imported here in the grader (instructor code): the oracle."""
    from tinytorch_lib.transformer import GPT, generate
    return GPT, generate


GPT_ARGS = {"small": dict(vocab_size=11, d_model=16, n_heads=2, n_layers=2, context=24, max_len=24, rng=3),
            "wide": dict(vocab_size=7, d_model=24, n_heads=3, n_layers=3, context=30, max_len=30, rng=8)}

BUILD = """
from tinytorch_lib.transformer import GPT
{name} = GPT(**kwargs)
{name}.load_state_dict(state)
"""


UPDATE_WORKS = ("(lambda c: (c.update(np.ones((1, 1, 2, 1)), np.ones((1, 1, 2, 1)), 0), "
                "np.asarray(c.update(np.full((1, 1, 1, 1), 2.0), np.ones((1, 1, 1, 1)), 0)[0].data).ravel().tolist(), list(c.lengths))[1:])"
                "(KVCache(1, 1, 1, 4, 1))")
UPDATE_OK = "KVCache(1, 1, 1, 4, 1): update of 2 positions, then of 1, should return all 3 keys so far and leave lengths [3]"


def requires_update(s, task_id: str) -> None:
    """Task `task_id` stores through KVCache.update: stop first, naming 18.1 and 18.2, if it does not append."""
    requires(s, UPDATE_WORKS, lambda r: r == ([1.0, 1.0, 2.0], [3]), UPDATE_OK, "18.1 and 18.2", task_id)


def sandbox_models(s) -> tuple:
    """Module 13's reference generate, and the GPT_ARGS models (reference GPTs here, the same weights built in
    the student's process as `small`, `wide`, ...)."""
    GPT, generate_without_cache = _reference()
    models = {}
    for name, kwargs in GPT_ARGS.items():
        models[name] = GPT(**kwargs)
        s.run(BUILD.format(name=name), kwargs=kwargs,
              state={k: np.array(v) for k, v in models[name].state_dict().items()})
    return generate_without_cache, models


@check("test_18_3_generate")
def generate_(s):
    s = Plain(s)
    generate_without_cache, models = sandbox_models(s)
    task_first(s, "generate(small, [1], 1)", "18.3")
    requires_update(s, "18.3")
    small, wide = models["small"], models["wide"]
    prompt = np.array([1, 4, 2, 7])
    want = generate_without_cache(small, prompt, 12)
    fast = s.value("(lambda r: (type(r).__name__, np.asarray(r)))(generate(small, p, 12))", p=prompt)
    assert fast[0] == "ndarray" and fast[1].dtype == np.int64 and fast[1].shape == (16,), \
        f"generate(prompt of 4, 12 new): expected an int64 array of 16 ids, got {fmt(fast[0])} {fast[1].dtype} {fast[1].shape}"
    assert fast[1].tolist() == want.tolist(), \
        f"greedy, random GPT(11, 16, 2 heads, 2 layers), prompt {prompt.tolist()}: with the cache {fast[1].tolist()}, Module 13's generate gives {want.tolist()}"
    slow = s.value("np.asarray(generate(small, p, 12, use_cache=False))", p=prompt)
    assert slow.tolist() == want.tolist(), f"use_cache=False should be Module 13's generate: expected {want.tolist()}, got {slow.tolist()}"
    want = generate_without_cache(small, prompt, 12, temperature=1.0, seed=5)
    got = s.value("np.asarray(generate(small, p, 12, temperature=1.0, seed=5))", p=prompt)
    assert got.tolist() == want.tolist(), \
        f"sampling at temperature 1 with seed 5: with the cache {got.tolist()}, without {want.tolist()} (the draws must match Module 13's one for one)"
    calls = s.value("""(lambda calls: (lambda h: (generate(small, p, 5), h.remove(), calls)[-1])(
        small.register_forward_hook(lambda m, args, out: calls.append(tuple(np.shape(np.asarray(getattr(args[0], 'data', args[0]))))))))([])""",
                    p=prompt)
    assert calls == [(1, 4), (1, 1), (1, 1), (1, 1), (1, 1)], \
        (f"5 new tokens after a prompt of 4: expected 5 model calls of input shapes [(1, 4), (1, 1), (1, 1), (1, 1), (1, 1)] "
         f"(a prefill of the whole prompt, then one position per step, none after the last token); got {len(calls)} calls: {calls}")
    modes = s.value("""(lambda modes: (lambda h: (small.train(), generate(small, p, 3), h.remove(), modes)[-1])(
        small.register_forward_hook(lambda m, args, out: modes.append(bool(m.training)))))([])""", p=prompt)
    assert modes and not any(modes), f"generate should run the model in eval mode: model.training during its calls was {modes}"
    fits = s.value("len(generate(small, p, 20))", p=prompt)
    assert fits == 24, f"4 prompt + 20 new tokens = 24 positions, exactly max_len 24, fit in the cache: expected 24 ids, got {fmt(fits)}"
    s.expect_error("generate(small, p, 21)", "generate with 4 prompt + 21 new tokens on max_len 24", ("24", "25"), p=prompt)
    assert s.value("small.training") is True, "generate should put the model's training mode back (small was in training mode)"
    s.run("small.eval(); generate(small, p, 3)", p=prompt)
    assert s.value("small.training") is False, "generate should put the model's training mode back (small was in eval mode)"
    s.run("small.train()")
    for kw in ({}, {"temperature": 0.8, "top_k": 3, "seed": 1}, {"temperature": 1.5, "seed": 2}):
        want = generate_without_cache(wide, np.array([3]), 29, **kw)
        got = s.value("np.asarray(generate(wide, np.array([3]), 29, **kw))", kw=kw)
        assert got.tolist() == want.tolist(), \
            f"GPT(7, 24, 3 heads, 3 layers), prompt [3], 29 new tokens (to max_len 30), {kw}: cached tokens {got.tolist()} differ from uncached {want.tolist()}"
    want = generate_without_cache(wide, np.array([3]), 1)
    got = s.value("np.asarray(generate(wide, [3], 1))")
    assert got.tolist() == want.tolist(), f"one new token after [3]: expected {want.tolist()} (same as without the cache), got {got.tolist()}"
    for kwargs, word in (({"prompt_ids": []}, "empty"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_k": 99}, "top_k")):
        args = {"prompt_ids": [1], "max_new_tokens": 3, **kwargs}
        s.expect_error("generate(small, **args)", f"generate({args})", (word,), args=args)




@check("test_18_4_generate_batch")
def generate_batch_(s):
    s = Plain(s)
    generate_without_cache, models = sandbox_models(s)
    task_first(s, "generate_batch(small, [[1]], 1)", "18.4")
    requires_update(s, "18.4")
    small, wide = models["small"], models["wide"]
    prompts = np.array([[1, 4, 2, 7], [0, 0, 9, 3], [5, 10, 1, 1]])
    kind, got = s.value("(lambda r: (type(r).__name__, np.asarray(r)))(generate_batch(small, p, 10))", p=prompts)
    assert kind == "ndarray" and got.dtype == np.int64 and got.shape == (3, 14), \
        f"generate_batch(3 prompts of 4, 10 new): expected an int64 array (3, 14), got {fmt(kind)} {got.dtype} {got.shape}"
    for row, p in zip(got, prompts):
        alone = generate_without_cache(small, p, 10)
        assert row.tolist() == alone.tolist(), f"prompt {p.tolist()} in a batch of 3: {row.tolist()}; Module 13's generate alone: {alone.tolist()}"
    rng = np.random.default_rng(4)
    for batch, n, new in ((5, 3, 27), (1, 1, 29), (2, 29, 1), (4, 6, 8)):   # wide: max_len 30, up to it
        p = rng.integers(0, 7, size=(batch, n))
        got = s.value("np.asarray(generate_batch(wide, p.tolist(), new))", p=p, new=new)
        want = np.stack([generate_without_cache(wide, row, new) for row in p])
        assert got.shape == want.shape and np.array_equal(got, want), \
            (f"GPT(7, 24, 3 heads, 3 layers), {batch} prompts of {n} (as lists), {new} new tokens: expected rows "
             f"{fmt(want)}, got {fmt(got)}")
    calls = s.value("""(lambda calls: (lambda h: (small.train(), generate_batch(small, p, 4), h.remove(), calls)[-1])(
        small.register_forward_hook(lambda m, args, out: calls.append((tuple(np.shape(np.asarray(getattr(args[0], 'data', args[0])))), bool(m.training))))))([])""",
                    p=prompts[:2])
    want = [(2, 4), (2, 1), (2, 1), (2, 1)]
    assert [c[0] for c in calls] == [tuple(w) for w in want], \
        f"2 prompts of 4, 4 new tokens: expected model calls of input shapes {want} (one prefill, then one position of every row per step); got {[c[0] for c in calls]}"
    assert not any(c[1] for c in calls), "generate_batch should run the model in eval mode"
    assert s.value("small.training") is True, "generate_batch should put the model's training mode back (small was in training mode)"
    s.run("small.eval(); generate_batch(small, p, 2)", p=prompts)
    assert s.value("small.training") is False, "generate_batch should put the model's training mode back (small was in eval mode)"
    sizes = s.value("""(lambda sizes: (generate_batch(wide, p, 5, cache_class=type('Recorded', (KVCache,), {
        '__init__': lambda self, *a, **k: (sizes.append(list(__import__('inspect').signature(KVCache).bind(*a, **k).arguments.values())),
                                           KVCache.__init__(self, *a, **k))[1]})), sizes)[1])([])""",
                    p=np.ones((4, 7), dtype=np.int64))
    assert sizes == [[3, 4, 3, 12, 8]], \
        f"4 prompts of 7 + 5 new tokens on GPT(3 layers, 3 heads, d_model 24): expected one cache_class(3, 4, 3, 12, 8), got calls {sizes}"
    s.expect_error("generate_batch(small, p, 21)", "generate_batch with 4 prompt + 21 new tokens on max_len 24", ("24", "25"), p=prompts)
    fits = s.value("np.asarray(generate_batch(small, p, 20)).shape", p=prompts)
    assert tuple(fits) == (3, 24), f"4 prompt + 20 new tokens = 24 positions, exactly max_len 24: expected (3, 24), got {fmt(fits)}"


@check("test_18_5_int8_cache")
def int8_cache(s):
    from tinytorch_lib.quantization import quantize_tensor
    s = Plain(s)
    task_first(s, "Int8KVCache(1, 1, 1, 2, 1).nbytes", "18.5")
    requires_update(s, "18.5")
    shapes = "(lambda c: (tuple(c.keys.shape), c.keys.dtype, c.values.dtype, tuple(c.key_scales.shape), tuple(c.value_scales.shape), c.key_scales.dtype, c.value_scales.dtype, c.nbytes, list(c.lengths)))({})"
    for args in ((2, 1, 2, 6, 4), (3, 2, 1, 5, 7)):
        ks, kd, vd, ss, vs, sd, svd, nbytes, lengths = s.value(shapes.format(f"Int8KVCache{args}"))
        layers, batch, heads, max_len, hd = args
        want = 2 * layers * batch * heads * max_len * hd + 2 * 2 * layers * batch * heads * max_len
        assert ks == args and kd == vd == np.int8, f"Int8KVCache{args}: expected int8 keys and values {args}, got {fmt(kd)} {fmt(ks)}"
        assert ss == vs == args[:4] and sd == svd == np.float16, \
            f"Int8KVCache{args}: expected float16 key_scales and value_scales {args[:4]}, got {fmt(sd)} {fmt(ss)}, {fmt(svd)} {fmt(vs)}"
        assert nbytes == want, f"Int8KVCache{args}: expected nbytes {want} (int8 codes and float16 scales), got {nbytes!r}"
        assert lengths == [0] * layers, f"Int8KVCache{args}: a new cache holds 0 positions, got lengths {lengths}"
    s.run("c = Int8KVCache(2, 2, 3, 7, 5)")
    rng = np.random.default_rng(1)
    written = {0: [], 1: []}
    for layer, size, scale in ((1, 3, 1.0), (0, 2, 30.0), (1, 1, 0.01), (1, 2, 5.0), (0, 5, 1.0)):
        k = (rng.standard_normal((2, 3, size, 5)) * scale).astype(np.float32)
        v = (rng.standard_normal((2, 3, size, 5)) * scale * 2).astype(np.float32)
        if layer == 0 and size == 2:
            k[0, 1] = 0.0                      # a row of zeros: scale 1, codes 0
        kind, dtype, ka, va = s.value("(lambda r: (type(r[0]).__name__, r[0].data.dtype, np.asarray(r[0].data), np.asarray(r[1].data)))(c.update(Tensor(k), v, layer))",
                                      k=k, v=v, layer=layer)
        written[layer].append((k, v))
        allk = np.concatenate([w[0] for w in written[layer]], axis=2)
        allv = np.concatenate([w[1] for w in written[layer]], axis=2)
        assert kind == "Tensor" and dtype == np.float32 and ka.shape == allk.shape, \
            f"update of {size} positions into layer {layer}: expected float32 Tensors {allk.shape}, got {fmt(kind)} {fmt(dtype)} {ka.shape}"
        for got, x, what in ((ka, allk, "keys"), (va, allv, "values")):
            step = np.abs(x).max(axis=-1, keepdims=True) / 127
            assert np.all(np.abs(got - x) <= 0.6 * step + 1e-12), \
                f"layer {layer}, {what} so far {x.shape}: dequantized values should be within 0.6 of a step (max |x| of the row / 127); worst {fmt(np.abs(got - x).max())}"
    for layer in (0, 1):
        k = np.concatenate([w[0] for w in written[layer]], axis=2)
        v = np.concatenate([w[1] for w in written[layer]], axis=2)
        n = k.shape[2]
        codes, kscale, vcodes, vscale = s.value(f"(c.keys[{layer}, :, :, :{n}], c.key_scales[{layer}, :, :, :{n}], c.values[{layer}, :, :, :{n}], c.value_scales[{layer}, :, :, :{n}])")
        for x, q_got, s_got, what in ((k, codes, kscale, "keys"), (v, vcodes, vscale, "values")):
            q, sc, _ = quantize_tensor(x.reshape(-1, 5), axis=0)
            assert np.array_equal(q_got, q.reshape(x.shape)), f"layer {layer}: {what}[{layer}, :, :, :{n}] should hold quantize_tensor's codes of each (batch, head, position) row"
            assert np.array_equal(s_got, sc.reshape(x.shape[:3]).astype(np.float16)), f"layer {layer}: the {what}' scales should be quantize_tensor's per-row scales, as float16"
    assert s.value("list(c.lengths)") == [7, 6], f"after 7 positions into layer 0 and 6 into layer 1: expected lengths [7, 6], got {s.value('list(c.lengths)')}"
    before = s.value("(c.key_scales.copy(), c.value_scales.copy(), c.keys.copy(), list(c.lengths))")
    s.expect_error("c.update(k, k, 1)", "update of 2 positions into layer 1 holding 6 of 7", ("6", "7", "2"), k=np.ones((2, 3, 2, 5), np.float32))
    s.expect_error("c.update(k, k, 2)", "update with layer_idx 2 on a 2-layer cache", ("layer_idx",), k=np.ones((2, 3, 1, 5), np.float32))
    s.expect_error("c.update(k, k[:, :2], 1)", "update with k (2, 3, 1, 5) and v (2, 2, 1, 5)", (), k=np.ones((2, 3, 1, 5), np.float32))
    after = s.value("(c.key_scales.copy(), c.value_scales.copy(), c.keys.copy(), list(c.lengths))")
    assert all(np.array_equal(a, b) for a, b in zip(before[:3], after[:3])) and before[3] == after[3], \
        "a refused update must change nothing: codes, scales and lengths as they were"
    got = s.value("(c.reset(), list(c.lengths), tuple(np.asarray(c.update(k, k, 0)[0].data).shape))[1:]", k=np.ones((2, 3, 1, 5), np.float32))
    assert got == ([0, 0], (2, 3, 1, 5)), f"reset() then 1 position: expected lengths [0, 0] after reset and (2, 3, 1, 5) back, got {fmt(got)}"
    ratio = s.value("KVCache(2, 1, 4, 1024, 32).nbytes / Int8KVCache(2, 1, 4, 1024, 32).nbytes")
    assert abs(ratio - 128 / 34) < 1e-9, f"course GPT shape (2 layers, 4 heads, 1024 positions, head_dim 32): expected float32 / int8 bytes = 128 / 34, got {fmt(ratio)}"
