"""Module 14: FLOP formulas against hand counts, the hook profiler, latency and throughput."""
import numpy as np
import pytest

from tinytorch_lib import data_dir
from tinytorch_lib.activations import ReLU
from tinytorch_lib.attention import MultiHeadAttention
from tinytorch_lib.layers import Linear, Module, Sequential
from tinytorch_lib.profiler import (Profiler, attention_flops, conv2d_flops, count_parameters, latency, layer_flops,
                                    linear_flops, model_bytes, profile, throughput)
from tinytorch_lib.spatial import Conv2d
from tinytorch_lib.tensor import Tensor
from tinytorch_lib.training import load_model
from tinytorch_lib.transformer import GPT


def test_linear_flops_equal_a_loop_count():
    n, i, o = 3, 5, 4
    count = 0
    for _ in range(n):
        for _ in range(o):
            count += 2 * i + 1  # i multiplies, i adds into the sum, one bias add
    assert linear_flops(n, i, o) == count
    assert linear_flops(n, i, o, bias=False) == count - n * o


def test_conv2d_flops_equal_a_loop_count():
    b, c_in, c_out, k, h, w = 2, 3, 4, 3, 5, 6
    count = sum(2 * c_in * k * k + 1 for _ in range(b * c_out * h * w))
    assert conv2d_flops(b, c_in, c_out, k, k, h, w) == count


def test_attention_flops_equal_a_count_of_the_operations():
    b, h, s_q, s_k, d = 1, 2, 3, 5, 4
    qk = b * h * s_q * s_k * (2 * d)
    av = b * h * s_q * s_k * (2 * d)
    softmax = 5 * b * h * s_q * s_k
    assert attention_flops(b, h, s_q, s_k, d) == qk + av + softmax


@pytest.mark.parametrize("fn, args, name", [(linear_flops, (1, -1, 1), "in_features"),
                                            (conv2d_flops, (1, 1, 1, 1, 1, 1.5, 1), "h_out"),
                                            (attention_flops, (True, 1, 1, 1, 1), "batch")])
def test_bad_sizes_are_named(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


def test_profiler_records_every_module_self_times_add_up_and_hooks_go():
    x = Tensor(np.ones((2, 1, 4, 4), np.float32))

    class Flat(Module):
        def forward(self, t):
            return t.reshape(t.shape[0], -1)

    net = Sequential(Conv2d(1, 2, 3, padding=1, rng=0), ReLU(), Flat(), Linear(32, 3, rng=1))
    prof = Profiler(net)
    out = prof.run(x)
    assert out.shape == (2, 3)
    assert prof.records["0"]["flops"] == conv2d_flops(2, 1, 2, 3, 3, 4, 4)
    assert prof.records["3"]["flops"] == linear_flops(2, 32, 3)
    total = prof.records[""]["total_s"]
    assert abs(sum(r["self_s"] for r in prof.records.values()) - total) < 1e-6
    assert all(r["self_s"] >= 0 for r in prof.records.values())
    assert not any(m._forward_hooks or m._forward_pre_hooks for _, m in net.named_modules())


def test_gpt_attention_flops_and_report_rows():
    gpt = GPT(vocab_size=11, d_model=16, n_heads=2, n_layers=1, context=20, max_len=20, rng=0)
    ids = np.arange(12)[None, :] % 11
    rows = profile(gpt, ids, repeats=2)
    attn = [r for r in rows if r["kind"] == "MultiHeadAttention"]
    assert len(attn) == 1 and attn[0]["flops"] == attention_flops(1, 2, 12, 12, 8)
    lin = [r for r in rows if r["kind"] == "Linear"]
    assert len(lin) == 4 + 2 + 1  # q, k, v, out; fc, proj; lm_head
    assert sum(r["params"] for r in rows) == count_parameters(gpt)


def test_layer_flops_of_attention_without_cache():
    mha = MultiHeadAttention(8, 2, rng=0)
    x = np.zeros((3, 5, 8), np.float32)
    assert layer_flops(mha, (x,), np.zeros((3, 5, 8))) == attention_flops(3, 2, 5, 5, 4)


def test_bytes_and_parameters_of_the_trained_mlp():
    mlp, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
    assert count_parameters(mlp) == 17_226
    assert model_bytes(mlp) == 17_226 * 4


def test_latency_and_throughput():
    net = Sequential(Linear(4, 4, rng=0))
    t = latency(net, Tensor(np.ones((1, 4), np.float32)), repeats=3)
    assert t.repeats == 3 and t.number == 1 and t.median > 0
    assert throughput(net, np.ones((10, 4), np.float32), batch_size=3, repeats=2) > 0
    with pytest.raises(ValueError, match="batch_size"):
        throughput(net, np.ones((10, 4), np.float32), batch_size=0)


def test_profiler_rejects_a_non_module():
    with pytest.raises(TypeError, match="Module"):
        Profiler(lambda x: x)


def test_report_rows_name_an_activation_by_its_class_not_lambda():
    net = Sequential(Linear(4, 8, rng=0), ReLU(), Linear(8, 2, rng=1))
    assert type(net[1]).__name__ == "Lambda"  # Sequential wraps Module 02's activations
    kinds = {r["name"]: r["kind"] for r in profile(net, Tensor(np.ones((3, 4), np.float32)), repeats=2)}
    assert kinds["0"] == kinds["2"] == "Linear" and kinds["1"] == "ReLU", kinds
