"""Module 17: the convolution and attention ladders, the im2col and fused-attention backward rules, vectorize()."""
import copy

import numpy as np
import pytest
from hypothesis import assume, given, settings

from conv_cases import conv_arrays, conv_case, fits
from tinytorch_lib.acceleration import (ATTENTION_LADDER, CONV_LADDER, TOLERANCE, FastConv2d, FastMultiHeadAttention,
                                        attention_fused, conv2d_fast, conv2d_reference, im2col, relative_error,
                                        vectorize)
from tinytorch_lib.attention import MultiHeadAttention, scaled_dot_product_attention
from tinytorch_lib.autograd import gradcheck
from tinytorch_lib.kvcache import generate as generate_with_cache
from tinytorch_lib.layers import Linear, Sequential
from tinytorch_lib.spatial import Conv2d, conv2d, small_cnn
from tinytorch_lib.tensor import Tensor, no_grad
from tinytorch_lib.transformer import GPT, generate, load_gpt


@given(case=conv_case)
@settings(max_examples=60, deadline=None)
def test_every_conv_rung_equals_module_09(case):
    assume(fits(case))
    x, w, b = conv_arrays(case)
    want = conv2d_reference(x, w, b, case["stride"], case["padding"])
    for name, fn in CONV_LADDER.items():
        got = fn(x, w, b, case["stride"], case["padding"])
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert relative_error(got, want) < 1e-12, name      # float64: only summation order differs


@given(case=conv_case)
@settings(max_examples=40, deadline=None)
def test_im2col_rows_are_the_receptive_fields(case):
    assume(fits(case))
    x, w, _ = conv_arrays(case)
    s, p, kh, kw = case["stride"], case["padding"], case["kh"], case["kw"]
    cols = im2col(x, kh, kw, s, p)
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, h_out, w_out = x.shape[0], (x.shape[2] + 2 * p - kh) // s + 1, (x.shape[3] + 2 * p - kw) // s + 1
    assert cols.shape == (n * h_out * w_out, x.shape[1] * kh * kw)
    row = 0
    for b in range(n):
        for y in range(h_out):
            for z in range(w_out):
                assert np.array_equal(cols[row], xpad[b, :, y * s:y * s + kh, z * s:z * s + kw].reshape(-1))
                row += 1


def test_float32_rungs_stay_float32_and_within_the_tolerance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
    w, b = rng.standard_normal((5, 3, 3, 3)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    want = conv2d_reference(x, w, b, 2, 1)
    for name, fn in CONV_LADDER.items():
        got = fn(x, w, b, 2, 1)
        assert got.dtype == np.float32 and relative_error(got, want) < TOLERANCE, name


@pytest.mark.parametrize("fn", list(CONV_LADDER.values()), ids=list(CONV_LADDER))
def test_bad_conv_arguments_give_module_09s_messages(fn):
    with pytest.raises(ValueError, match=r"expects input \(batch, 1, H, W\), got \(2, 3, 8, 8\)"):
        fn(np.zeros((2, 3, 8, 8)), np.zeros((16, 1, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        fn(np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 3, 3)), np.zeros(3))


def test_im2col_rejects_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match=r"input \(1, 1, 2, 2\) with padding 0 is smaller than the 3x3 kernel"):
        im2col(np.zeros((1, 1, 2, 2)), 3, 3)
    with pytest.raises(ValueError, match="batch, channels, H, W"):
        im2col(np.zeros((2, 2)), 1, 1)


@given(case=conv_case)
@settings(max_examples=25, deadline=None)
def test_conv2d_fast_backward_matches_gradcheck_and_module_09(case):
    assume(fits(case))
    x, w, b = conv_arrays(case)
    s, p = case["stride"], case["padding"]
    ins = [x, w] if b is None else [x, w, b]
    gradcheck(lambda *t: conv2d_fast(t[0], t[1], t[2] if len(t) > 2 else None, s, p), ins, atol=1e-6, rtol=1e-5)
    grads = []
    for op in (conv2d_fast, conv2d):
        ts = [Tensor(a.copy(), requires_grad=True) for a in ins]
        out = op(ts[0], ts[1], ts[2] if b is not None else None, s, p)
        (out * Tensor(np.arange(out.size, dtype=np.float64).reshape(out.shape) % 7)).sum().backward()
        grads.append([t.grad.data for t in ts])
    for got, want in zip(*grads):
        assert relative_error(got, want) < 1e-12


def test_conv2d_fast_leaves_inputs_without_grad_alone():
    x = Tensor(np.ones((1, 1, 4, 4), np.float32))
    w = Tensor(np.ones((2, 1, 3, 3), np.float32), requires_grad=True)
    conv2d_fast(x, w, None, 1, 1).sum().backward()
    assert x.grad is None and w.grad.shape == (2, 1, 3, 3) and w.grad.dtype == np.float32


@pytest.mark.parametrize("shape_q, shape_k, causal", [((2, 3, 5, 4), (2, 3, 5, 4), True),
                                                      ((1, 2, 3, 4), (1, 2, 8, 4), True),
                                                      ((2, 1, 6, 3), (2, 1, 4, 3), False)])
def test_attention_rungs_and_fused_backward_match_module_12(shape_q, shape_k, causal):
    rng = np.random.default_rng(1)
    q = rng.standard_normal(shape_q)
    k, v = rng.standard_normal(shape_k), rng.standard_normal(shape_k)
    with no_grad():
        want = scaled_dot_product_attention(q, k, v, causal=causal).data
    for name, fn in ATTENTION_LADDER.items():
        assert relative_error(fn(q, k, v, causal), want) < 1e-12, name
    gradcheck(lambda a, b_, c: attention_fused(a, b_, c, causal), [q, k, v], atol=1e-6, rtol=1e-5)
    g = rng.standard_normal(shape_q)
    grads = []
    for op in (attention_fused, lambda a, b_, c, causal: scaled_dot_product_attention(a, b_, c, causal=causal)):
        ts = [Tensor(a.copy(), requires_grad=True) for a in (q, k, v)]
        (op(*ts, causal) * Tensor(g)).sum().backward()
        grads.append([t.grad.data for t in ts])
    for got, ref in zip(*grads):
        assert relative_error(got, ref) < 1e-10


def test_vectorize_swaps_by_type_on_a_copy_and_keeps_state_dict_keys():
    cnn = small_cnn(channels=4, rng=np.random.default_rng(0))
    fast = vectorize(cnn)
    assert type(cnn[0]) is Conv2d and type(fast[0]) is FastConv2d
    assert list(fast.state_dict()) == list(cnn.state_dict())
    fast[0].weight.data[...] = 0
    assert np.any(cnn[0].weight.data != 0), "vectorize shares parameters with the original"
    gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=2, context=16, max_len=16, rng=0)
    fast_gpt = vectorize(gpt)
    kinds = {type(m).__name__ for _, m in fast_gpt.named_modules()}
    assert "FastMultiHeadAttention" in kinds and "MultiHeadAttention" not in kinds
    assert {type(m).__name__ for _, m in gpt.named_modules()} >= {"MultiHeadAttention"}


def test_vectorize_with_nothing_to_swap_names_the_layer_types():
    with pytest.raises(ValueError, match=r"vectorize: Sequential has no Conv2d or MultiHeadAttention layer to swap "
                                         r"\(its layers: Linear, Sequential\)"):
        vectorize(Sequential(Linear(3, 2, rng=0), Linear(2, 1, rng=1)))
    with pytest.raises(TypeError, match="expected a Module, got ndarray"):
        vectorize(np.zeros(3))
    twice = vectorize(vectorize(Conv2d(1, 2, 3, rng=0)))
    assert type(twice) is FastConv2d


def test_a_vectorized_model_trains_like_the_original():
    from tinytorch_lib.losses import CrossEntropyLoss
    from tinytorch_lib.optimizers import Adam
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    y = Tensor(rng.integers(0, 10, 16))
    models = [small_cnn(channels=4, rng=np.random.default_rng(0))]
    models.append(vectorize(models[0]))
    models[0] = copy.deepcopy(models[0])
    for _ in range(5):
        for m in models:
            m.opt = getattr(m, "opt", None) or Adam(m.parameters(), lr=1e-2)
            m.opt.zero_grad()
            CrossEntropyLoss()(m(x), y).backward()
            m.opt.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        assert relative_error(b.data, a.data) < 1e-4, name


def test_the_vectorized_gpt_generates_the_same_tokens_with_and_without_the_cache():
    gpt, tok, _ = load_gpt()
    fast = vectorize(gpt)
    prompt = tok.encode("And God said")
    want = generate(gpt, prompt, 24)
    assert np.array_equal(generate(fast, prompt, 24), want)
    assert np.array_equal(generate_with_cache(fast, prompt, 24), want)
    ids = np.tile(np.asarray(prompt), (2, 4))
    with no_grad():
        assert relative_error(fast(ids).data, gpt(ids).data) < TOLERANCE


def test_fast_attention_keeps_module_12s_shape_check():
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, seq, 8\)"):
        vectorize(MultiHeadAttention(8, 2, rng=0))(np.zeros((2, 5, 6), np.float32))
    assert isinstance(vectorize(MultiHeadAttention(8, 2, rng=0)), FastMultiHeadAttention)


def _random_gpts():
    for vocab, d, heads, layers in ((11, 8, 2, 1), (17, 12, 3, 2), (5, 16, 4, 3)):
        yield GPT(vocab_size=vocab, d_model=d, n_heads=heads, n_layers=layers, context=24, max_len=24, rng=d)


def test_the_fused_pass_is_taken_under_no_grad_and_equals_the_layered_one(monkeypatch):
    from tinytorch_lib import acceleration
    calls = []
    real = acceleration.block_inference
    monkeypatch.setattr(acceleration, "block_inference", lambda *a, **k: calls.append(1) or real(*a, **k))
    for gpt in _random_gpts():
        fast = vectorize(gpt)
        assert [type(fast).__name__, type(fast.blocks[0]).__name__] == ["FastGPT", "FastTransformerBlock"]
        ids = np.random.default_rng(gpt.d_model).integers(0, gpt.vocab_size, size=(2, 9))
        calls.clear()
        with no_grad():
            want, got = gpt(ids).data, fast(ids).data
        assert len(calls) == gpt.n_layers, "under no_grad the vectorized GPT runs every block fused"
        assert relative_error(got, want) < TOLERANCE
        calls.clear()
        fast(ids)                                     # gradients on: the layered path, which records the graph
        assert calls == []


def test_fused_steps_with_the_cache_equal_the_full_forward_and_generate_the_same_tokens():
    from tinytorch_lib.kvcache import KVCache
    for gpt in _random_gpts():
        fast = vectorize(gpt)
        ids = np.random.default_rng(1).integers(0, gpt.vocab_size, size=20)
        cache = KVCache(gpt.n_layers, 1, gpt.n_heads, gpt.max_len, gpt.d_model // gpt.n_heads)
        with no_grad():
            full = gpt(ids[None, :]).data[0]
            prefill = fast(ids[None, :5], cache=cache).data[0]
            steps = [fast(ids[None, t:t + 1], cache=cache).data[0, -1] for t in range(5, 20)]
        assert relative_error(np.vstack([prefill, *steps]), full) < TOLERANCE
        for seed in (None, 4):
            temperature = 0.0 if seed is None else 0.8
            want = generate(gpt, ids[:3], 15, temperature=temperature, seed=seed)
            assert np.array_equal(generate_with_cache(fast, ids[:3], 15, temperature=temperature, seed=seed), want)
            assert np.array_equal(generate(fast, ids[:3], 15, temperature=temperature, seed=seed), want)


def test_a_hooked_or_swapped_child_sends_the_block_back_to_the_layered_path(monkeypatch):
    from tinytorch_lib import acceleration
    from tinytorch_lib.compression import prune
    from tinytorch_lib.profiler import profile
    from tinytorch_lib.quantization import quantize
    gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=2, context=16, max_len=16, rng=0)
    ids = np.random.default_rng(2).integers(0, 11, size=(1, 6))
    calls = []
    real = acceleration.block_inference
    monkeypatch.setattr(acceleration, "block_inference", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = vectorize(gpt)
    seen = []
    handle = fast.blocks[1].mlp.fc.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    with no_grad():
        got = fast(ids).data
    assert seen == [(1, 6, 32)], "a hook on a child must run"
    assert calls == [1], "only the hooked block runs layer by layer; the other stays fused"
    handle.remove()
    with no_grad():
        assert relative_error(got, gpt(ids).data) < TOLERANCE
    calls.clear()
    rows = profile(fast, ids, repeats=1)          # Module 14 times every layer through hooks
    assert {"Linear", "LayerNorm"} <= {r["kind"] for r in rows} and calls == []
    plain = profile(gpt, ids, repeats=1)
    assert [r["flops"] for r in rows] == [r["flops"] for r in plain], "FastGPT's layers count as their base classes"
    for changed, reference in ((prune(fast, 0.5), prune(gpt, 0.5)),      # Modules 16 and 15 on the vectorized GPT
                               (quantize(fast, dtype="fp16"), quantize(gpt, dtype="fp16"))):
        calls.clear()
        with no_grad():
            assert relative_error(changed(ids).data, reference(ids).data) < 1e-3
        assert calls == []


@pytest.mark.parametrize("ids, pattern", [(np.array([[1, 11]]), "id 11 .* out of range"),
                                          (np.array([[1.0]]), "ids must be integers"),
                                          (np.zeros((1, 17), np.int64), "do not fit in max_len 16"),
                                          (np.array([1, 2]), r"expected ids of shape \(batch, seq\)")])
def test_unusual_ids_take_the_layered_path_and_its_clear_errors(ids, pattern):
    fast = vectorize(GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=1, context=16, max_len=16, rng=0))
    with no_grad(), pytest.raises(ValueError, match=pattern):
        fast(ids)


def _fused_and_layered(model, ids):
    """(logits of the fused pass under no_grad, logits of the layered path: gradients on) of one model."""
    with no_grad():
        fused = model(ids).data
    return fused, model(ids).data


def test_packed_qkv_follows_writes_to_the_weights_and_unpacks_when_an_array_is_replaced():
    from tinytorch_lib.acceleration import packed_qkv
    from tinytorch_lib.losses import CrossEntropyLoss
    from tinytorch_lib.optimizers import SGD
    gpt = GPT(vocab_size=13, d_model=12, n_heads=3, n_layers=2, context=16, max_len=16, rng=5)
    fast = vectorize(gpt)
    ids = np.random.default_rng(6).integers(0, 13, size=(2, 7))
    attn = fast.blocks[0].attn
    assert all(packed_qkv(b.attn) is not None for b in fast.blocks), "vectorize packs q, k, v of each attention"
    assert gpt.blocks[0].attn.q_proj.weight.data.base is None, "the original model is unchanged"
    attn.k_proj.weight.data[:, :4] *= -3.0                 # in place: the packed array sees it
    attn.v_proj.bias.data += 0.5
    assert packed_qkv(attn) is not None
    fused, layered = _fused_and_layered(fast, ids)
    assert relative_error(fused, layered) < TOLERANCE
    with no_grad():
        assert relative_error(fused, gpt(ids).data) > 1e-3, "the writes changed the model"
    opt = SGD(fast.parameters(), lr=0.5)                   # a training step updates p.data in place
    logits = fast(ids)
    CrossEntropyLoss()(logits.reshape(-1, 13), Tensor(np.roll(ids, 1).reshape(-1))).backward()
    opt.step()
    assert packed_qkv(attn) is not None
    fused, layered = _fused_and_layered(fast, ids)
    assert relative_error(fused, layered) < TOLERANCE
    attn.q_proj.weight.data = attn.q_proj.weight.data * 2  # a new array: that attention runs unpacked
    assert packed_qkv(attn) is None and packed_qkv(fast.blocks[1].attn) is not None
    fused, layered = _fused_and_layered(fast, ids)
    assert relative_error(fused, layered) < TOLERANCE
    twin = copy.deepcopy(fast)                             # a copy's arrays share no memory: unpacked, still right
    twin.blocks[1].attn.q_proj.weight.data[:] = 0.0
    assert packed_qkv(twin.blocks[1].attn) is None
    fused, layered = _fused_and_layered(twin, ids)
    assert relative_error(fused, layered) < TOLERANCE
    assert np.any(fast.blocks[1].attn.q_proj.weight.data != 0), "the copy's write left the original alone"


def test_the_fusability_decision_is_remembered_until_a_hook_or_a_child_changes(monkeypatch):
    from tinytorch_lib import acceleration
    from tinytorch_lib.activations import ReLU
    gpt = GPT(vocab_size=11, d_model=8, n_heads=2, n_layers=2, context=16, max_len=16, rng=3)
    fast = vectorize(gpt)
    ids = np.random.default_rng(4).integers(0, 11, size=(1, 6))
    checks, calls = [], []
    real_check, real_block = acceleration.gpt_layers_fusable, acceleration.block_inference
    monkeypatch.setattr(acceleration, "gpt_layers_fusable", lambda m: checks.append(1) or real_check(m))
    monkeypatch.setattr(acceleration, "block_inference", lambda *a, **k: calls.append(1) or real_block(*a, **k))

    def run():
        checks.clear(), calls.clear()
        fused, layered = _fused_and_layered(fast, ids)
        assert relative_error(fused, layered) < TOLERANCE
        return len(checks), len(calls)

    assert run() == (1, 2) and run() == (0, 2), "checked once, then remembered"
    seen = []
    handle = fast.blocks[0].attn.v_proj.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    assert run() == (1, 1) and seen, "a new hook: checked again; the hooked block runs its layers and the hook"
    handle.remove()
    assert run() == (1, 2)
    fast.blocks[1].mlp.act = ReLU()                         # a plain attribute, not a submodule
    assert run() == (1, 1)
    with no_grad():
        assert relative_error(fast(ids).data, gpt(ids).data) > 1e-4, "ReLU, not GELU, ran in block 1"
    fast.blocks[1].mlp.act = gpt.blocks[1].mlp.act
    assert run() == (1, 2)
    mlp = fast.blocks[0].mlp
    fast.blocks[0].set_submodule("mlp", Sequential(mlp.fc, ReLU(), mlp.proj))
    assert run() == (1, 1), "a swapped child: that block runs layer by layer"
    fast.blocks[0].set_submodule("mlp", mlp)
    assert run() == (1, 2)
    fast.set_submodule("lm_head", Linear(8, 11, rng=9))     # a new plain Linear: still fused, with its weights
    assert run() == (1, 2)


def test_one_query_attention_is_the_last_row_of_causal_attention():
    from tinytorch_lib.acceleration import attention_batched, attention_reference, one_query_attention
    rng = np.random.default_rng(8)
    for batch, heads, s_k, d in ((1, 4, 1, 32), (2, 3, 9, 4), (3, 1, 30, 8)):
        q = rng.standard_normal((batch, heads, 1, d)).astype(np.float32)
        k, v = (rng.standard_normal((batch, heads, s_k, d)).astype(np.float32) for _ in range(2))
        got = one_query_attention(q, k, v)
        assert got.dtype == np.float32 and np.array_equal(got, attention_batched(q, k, v, causal=True))
        assert relative_error(got, attention_reference(q, k, v, causal=True)) < TOLERANCE
    with pytest.raises(ValueError, match=r"expected q \(batch, heads, 1, d\)"):
        one_query_attention(k, k, v)


def test_fused_cached_steps_on_a_batch_equal_the_full_forward():
    from tinytorch_lib.kvcache import KVCache
    gpt = GPT(vocab_size=17, d_model=12, n_heads=3, n_layers=2, context=24, max_len=24, rng=12)
    fast = vectorize(gpt)
    ids = np.random.default_rng(9).integers(0, 17, size=(3, 12))
    cache = KVCache(gpt.n_layers, 3, gpt.n_heads, gpt.max_len, gpt.d_model // gpt.n_heads)
    with no_grad():
        full = gpt(ids).data
        steps = [fast(ids[:, :4], cache=cache).data] + [fast(ids[:, t:t + 1], cache=cache).data for t in range(4, 12)]
    assert relative_error(np.concatenate(steps, axis=1), full) < TOLERANCE
