"""Module 13 library tests: tinytorch_lib/transformer.py against float64 finite differences, hand-built
references and the shipped model (data/gpt_corpus.npz)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch_lib import data_dir
from tinytorch_lib.autograd import gradcheck
from tinytorch_lib.embeddings import sinusoidal_positions
from tinytorch_lib.layers import Module
from tinytorch_lib.tensor import Tensor, no_grad
from tinytorch_lib.tokenization import load_corpus
from tinytorch_lib.transformer import (GPT, GPT_FILE, MLP, LayerNorm, TransformerBlock, generate, layer_norm,
                                       load_gpt, next_token, save_gpt)


def to_float64(module: Module) -> Module:
    """Every parameter and buffer of `module` in float64, in place (for finite differences)."""
    for _, t in module.named_parameters() + module.named_buffers():
        t.data = t.data.astype(np.float64)
    return module


def numpy_layer_norm(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * w + b


# ---- LayerNorm ----

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(2, 9), st.integers(0, 10_000))
def test_layer_norm_matches_float64_numpy(batch, dim, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((batch, 3, dim)) * 4 + 2, rng.standard_normal(dim), rng.standard_normal(dim)
    got = layer_norm(Tensor(x), Tensor(w), Tensor(b))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.data, numpy_layer_norm(x, w, b), atol=1e-10)


def test_layer_norm_module_starts_as_plain_normalisation_in_float32():
    ln = LayerNorm(6)
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    y = ln(Tensor(x))
    assert y.dtype == np.float32 and y.shape == (2, 4, 6)
    np.testing.assert_allclose(y.data.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(y.data.std(-1), 1, atol=1e-3)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 8)])
def test_layer_norm_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(len(shape))
    dim = shape[-1]
    report = gradcheck(lambda x, w, b: layer_norm(x, w, b), [rng.standard_normal(shape) * 3,
                                                           rng.standard_normal(dim), rng.standard_normal(dim)])
    assert report["max_abs"] < 1e-6


def test_layer_norm_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        LayerNorm(4)(Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="dim"):
        LayerNorm(0)


# ---- MLP and block ----

def test_mlp_is_linear_gelu_linear():
    mlp = MLP(8, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    h = x @ mlp.fc.weight.data.T + mlp.fc.bias.data
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    want = h @ mlp.proj.weight.data.T + mlp.proj.bias.data
    np.testing.assert_allclose(mlp(Tensor(x)).data, want, atol=1e-5)
    assert mlp.fc.weight.shape == (32, 8) and mlp.proj.weight.shape == (8, 32)


def test_block_matches_a_hand_built_pre_ln_block():
    block = TransformerBlock(8, 2, rng=0)
    x = Tensor(np.random.default_rng(2).standard_normal((2, 5, 8)).astype(np.float32))
    h = x.data + block.attn(block.ln1(x)).data
    want = h + block.mlp(block.ln2(Tensor(h))).data
    np.testing.assert_allclose(block(x).data, want, atol=1e-5)


def test_block_gradients_match_float64_finite_differences():
    block = to_float64(TransformerBlock(8, 2, rng=0))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 8))
    w = rng.standard_normal((2, 4, 8))
    gradcheck(lambda t: block(t), [x])  # d out / d x
    # d loss / d parameter for a few entries of every parameter, by central differences
    block.zero_grad()  # gradcheck above accumulated into the parameters
    xt = Tensor(x)
    (block(xt) * Tensor(w)).sum().backward()
    eps = 1e-6
    for name, p in block.named_parameters():
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = float((block(xt).data * w).sum())
            flat[i] = old - eps
            down = float((block(xt).data * w).sum())
            flat[i] = old
            fd = (up - down) / (2 * eps)
            got = p.grad.data.reshape(-1)[i]
            assert abs(got - fd) <= 1e-5 + 1e-4 * abs(fd), f"{name}[{i}]: autograd {got:.8g}, finite differences {fd:.8g}"


# ---- GPT ----

def small_gpt(**kw):
    return GPT(**dict(dict(vocab_size=13, d_model=16, n_heads=2, n_layers=2, context=16, max_len=32, rng=0), **kw))


def test_gpt_shapes_and_parameter_names():
    gpt = small_gpt()
    logits = gpt(np.zeros((3, 7), dtype=np.int64))
    assert logits.shape == (3, 7, 13) and logits.dtype == np.float32
    names = [n for n, _ in gpt.named_parameters()]
    assert names[0] == "tok_emb.weight" and names[-2:] == ["lm_head.weight", "lm_head.bias"]
    assert "blocks.1.attn.q_proj.weight" in names and "blocks.0.mlp.fc.weight" in names and "ln_f.weight" in names
    # 12 d^2 + 13 d per block (4 attention Linears with bias, 2 MLP Linears, 2 LayerNorms), d = 16
    d, v = 16, 13
    want = v * d + 2 * (12 * d * d + 13 * d) + 2 * d + d * v + v
    assert sum(p.size for p in gpt.parameters()) == want


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10), st.integers(0, 10_000))
def test_gpt_is_causal(t, seed):
    gpt = small_gpt()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 13, (2, 12))
    b = a.copy()
    b[:, t + 1:] = rng.integers(0, 13, (2, 11 - t))
    b[:, t + 1] = (a[:, t + 1] + 1) % 13  # token t + 1 surely changes
    with no_grad():
        la, lb = gpt(a).data, gpt(b).data
    np.testing.assert_array_equal(la[:, :t + 1], lb[:, :t + 1])
    assert np.abs(la[:, t + 1] - lb[:, t + 1]).max() > 0


class ListCache:
    """The simplest cache through Module 12's seam: keeps every layer's keys and values in a list."""

    def __init__(self):
        self.k, self.v = {}, {}

    def get_seq_length(self, layer_idx=0):
        return 0 if layer_idx not in self.k else self.k[layer_idx].shape[2]

    def update(self, k, v, layer_idx):
        if layer_idx in self.k:
            k = Tensor(np.concatenate([self.k[layer_idx].data, k.data], axis=2))
            v = Tensor(np.concatenate([self.v[layer_idx].data, v.data], axis=2))
        self.k[layer_idx], self.v[layer_idx] = k, v
        return k, v


def test_gpt_passes_the_cache_and_the_position_offset_through_every_block():
    gpt = small_gpt()
    ids = np.random.default_rng(5).integers(0, 13, (1, 9))
    with no_grad():
        whole = gpt(ids).data
        cache = ListCache()
        steps = [gpt(ids[:, :4], cache=cache).data] + [gpt(ids[:, i:i + 1], cache=cache).data for i in range(4, 9)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-5)
    assert sorted(cache.k) == [0, 1]


def test_gpt_uses_sinusoidal_positions_sized_max_len():
    gpt = small_gpt()
    assert gpt.pos.pe.shape == (32, 16)
    np.testing.assert_allclose(gpt.pos.pe.data, sinusoidal_positions(32, 16))
    assert not any(n.startswith("pos") for n, _ in gpt.named_parameters())


def test_gpt_errors_are_clear():
    gpt = small_gpt()
    with pytest.raises(ValueError, match=r"\(5,\)"):
        gpt(np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="float32"):
        gpt(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="32"):
        gpt(np.zeros((1, 33), dtype=np.int64))
    with pytest.raises(ValueError, match="13"):
        gpt(np.array([[1, 13]]))  # Module 11's Embedding names the vocabulary size
    with pytest.raises(ValueError, match="context"):
        GPT(13, context=64, max_len=32)
    with pytest.raises(ValueError):
        GPT(13, d_model=10, n_heads=4)  # Module 12: d_model % n_heads != 0


# ---- generation ----

def test_greedy_generation_is_deterministic_and_follows_the_argmax():
    gpt = small_gpt()
    a = generate(gpt, [1, 2, 3], 10)
    b = generate(gpt, np.array([1, 2, 3]), 10)
    assert a.dtype == np.int64 and a.shape == (13,) and a[:3].tolist() == [1, 2, 3]
    assert a.tolist() == b.tolist()
    with no_grad():
        for n in range(3, 13):  # each new token is the argmax of the logits after the sequence before it
            assert a[n] == int(np.argmax(gpt(a[None, :n]).data[0, -1]))


def test_seeded_sampling_is_reproducible_and_top_k_limits_the_choices():
    gpt = small_gpt()
    a = generate(gpt, [4], 30, temperature=1.5, seed=11)
    assert a.tolist() == generate(gpt, [4], 30, temperature=1.5, seed=11).tolist()
    assert a.tolist() != generate(gpt, [4], 30, temperature=1.5, seed=12).tolist()
    assert generate(gpt, [4], 8, temperature=0.9, top_k=1, seed=3).tolist() == generate(gpt, [4], 8).tolist()
    logits = np.array([0.0, 5.0, 1.0, 4.0, -2.0])
    picks = {next_token(logits, 2.0, 2, np.random.default_rng(s)) for s in range(300)}
    assert picks == {1, 3}


def test_generation_runs_past_the_training_context_up_to_max_len_by_cropping():
    gpt = small_gpt()
    out = generate(gpt, list(range(13)) * 2, 20)  # 26 + 20 > max_len 32: the window slides
    assert out.shape == (46,)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"prompt_ids": []}, "empty"),
    ({"prompt_ids": [[1, 2]]}, "empty"),
    ({"prompt_ids": [0] * 33}, "33 tokens.*32"),
    ({"prompt_ids": [0, 13]}, "13 at position 1"),
    ({"prompt_ids": [0.5]}, "integers"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 2.0}, "max_new_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": 0}, r"top_k must be in \[1, 13\]"),
    ({"top_k": 14}, r"top_k must be in \[1, 13\]"),
])
def test_generate_rejects_bad_input_clearly(kwargs, pattern):
    args = dict({"prompt_ids": [1], "max_new_tokens": 3}, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        generate(small_gpt(), **args)


def test_generate_restores_the_training_mode():
    gpt = small_gpt()
    generate(gpt, [1], 2)
    assert gpt.training
    gpt.eval()
    generate(gpt, [1], 2)
    assert not gpt.training


# ---- saving and the shipped model ----

def test_save_gpt_and_load_gpt_round_trip(tmp_path):
    from tinytorch_lib.tokenization import CharTokenizer

    tok = CharTokenizer("abcdefghijklm")
    gpt = small_gpt()
    size = save_gpt(tmp_path / "g.npz", gpt, tok, {"note": 1})
    assert size == (tmp_path / "g.npz").stat().st_size
    model, tok2, meta = load_gpt(tmp_path / "g.npz")
    assert isinstance(model, GPT) and model.config() == gpt.config() and meta["note"] == 1
    assert tok2.decode(tok2.encode("cab")) == "cab"
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(model(ids).data, gpt(ids).data)


def test_the_shipped_gpt_loads_and_beats_the_unigram_baseline():
    data_dir(GPT_FILE)  # a clear FileNotFoundError when data/gpt_corpus.npz is missing (make gpt)
    gpt, tok, meta = load_gpt()
    assert gpt.config() == {"vocab_size": tok.vocab_size, "d_model": 128, "n_heads": 4, "n_layers": 2,
                            "context": 256, "max_len": 1024}
    train, val = load_corpus("train"), load_corpus("val")
    ids = tok.encode(val[:402]).reshape(2, 201)  # 400 predictions, two windows from the start of the validation split
    with no_grad():
        logits = gpt(ids[:, :-1]).data.astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    model_loss = -np.take_along_axis(logp, ids[:, 1:, None], axis=-1).mean()
    freq = np.bincount(tok.encode(train), minlength=tok.vocab_size) / len(train)
    unigram = -np.log(freq[ids[:, 1:]]).mean()
    assert model_loss < unigram - 1.0, f"validation loss {model_loss:.3f} vs unigram {unigram:.3f} nats/char"
    assert meta["val_loss"] < meta["unigram_val_loss"]
    long = tok.encode(val[:1024])[None, :]  # the same weights run at max_len 1024
    with no_grad():
        assert np.isfinite(gpt(long).data).all()
