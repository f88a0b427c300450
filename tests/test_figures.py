"""The course's figures (issue 23): plain-number log axes, one byte unit, the chosen configuration
annotated, legends clear of the data. Checked on matplotlib's text objects and display
coordinates, not on pixels, by rendering each figure from small synthetic tables.
"""
import re
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from tinytorch_lib.plotting import (  # noqa: E402
    covered_points, figure_problems, format_bytes, format_number, format_ratio, log_axis, nice_log_ticks,
    place_legend)
from tito.modules import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "notebooks" / "06_2018_mlperf"))
import mlperf_plots  # noqa: E402


def tick_texts(axis) -> list[str]:
    """The labels of the major ticks inside the view (after a draw)."""
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]


def all_texts(fig) -> list[str]:
    """Every text the figure shows: titles, labels, tick labels, legends, annotations."""
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def one_unit(fig) -> None:
    """Memory is in decimal units only (1 kB = 1000 bytes), as in the tables and the demos."""
    binary = [t for t in all_texts(fig) if re.search(r"\b(KiB|MiB|GiB|KB)\b", t)]
    assert not binary, binary


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# -- the shared module: tinytorch_lib/plotting.py ----------------------------------------------------

@pytest.mark.parametrize("value, text", [(32, "32"), (992, "992"), (1024, "1,024"), (0.5, "0.5"), (0.00012, "0.00012"),
                                         (12.46, "12.5"), (2.0000001, "2"), (0, "0")])
def test_format_number_is_plain(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("value, text", [(512, "512 B"), (1000, "1 kB"), (1500, "1.5 kB"), (69_392, "69.4 kB"),
                                         (70_000, "70 kB"), (999_999, "1 MB"), (1_500_000, "1.5 MB")])
def test_bytes_are_decimal_units(value, text):
    assert format_bytes(value) == text


def test_ratio_and_log_ticks():
    assert format_ratio(12.46) == "12.5x" and format_ratio(2) == "2x"
    assert nice_log_ticks(1000, 70_000) == [1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]
    assert nice_log_ticks(0.3, 27)[-1] == 50  # the range reaches a label beyond the largest value
    assert nice_log_ticks(0.001, 1000) == [0.001, 0.01, 0.1, 1, 10, 100, 1000]  # crowded: decades only


def test_log_axis_labels_plain_numbers_and_reaches_past_the_data():
    fig, ax = plt.subplots()
    ax.plot([32, 64, 128, 256, 512, 992], [1.1, 2, 4, 8, 16, 27], marker="o", label="without cache")
    log_axis(ax, "x", "count", ticks=[32, 64, 128, 256, 512, 992])
    log_axis(ax, "y", "number")
    place_legend(ax)
    assert figure_problems(fig) == []
    assert tick_texts(ax.xaxis) == ["32", "64", "128", "256", "512", "992"]
    assert tick_texts(ax.yaxis)[-1] == "50" and "20" in tick_texts(ax.yaxis)


def test_figure_problems_finds_matplotlib_default_log_labels_and_a_legend_on_the_data():
    fig, ax = plt.subplots()
    x = [1, 2, 5, 10, 20, 50, 100]
    ax.plot(x, x, marker="o", label="a line through every corner")
    ax.plot(x, [100 / v for v in x], marker="o", label="and the other diagonal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.legend(loc="center")
    problems = figure_problems(fig)
    assert any("2^" in p for p in problems) and any("10^" in p for p in problems), problems
    assert any("legend covers" in p for p in problems), problems
    place_legend(ax)  # nowhere free inside: it goes outside
    assert covered_points(ax) == 0


# -- Milestone 06: its figures, drawn from tables shaped like its JSON -----------------------------------

def synthetic_static(methods=("magnitude", "global"), bits=("fp32", "fp16", "int8"),
                     sparsities=(0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95)):
    """table2_static.json's "models", with numbers shaped like a real run (bytes, accuracies)."""
    models = {}
    for name, base_bytes, base_acc, n_params in (("mlp", 69_392, 0.975, 17_000), ("cnn", 12_345, 0.9694, 2_730)):
        tried = []
        for method in methods:
            for s in sparsities:
                if s == 0 and method != methods[0]:
                    continue
                for b in bits:
                    per = {"fp32": 4, "fp16": 2, "int8": 1}[b]
                    size = int(n_params * ((1 - s) * per + (s > 0) / 8) * 0.9 + 400)
                    drop = {0: 0, 0.5: 0.1, 0.7: 0.3, 0.8: 0.6, 0.85: 0.9, 0.9: 1.6, 0.95: 4.5}[s]
                    drop *= 1.4 if method == "magnitude" else 1.0
                    acc = base_acc - (drop + (0.28 if b == "int8" else 0)) / 100
                    label = f"{b}_{'dense' if s == 0 else f'{method}{int(s * 100)}'}"
                    tried.append({"config": label, "bits": b, "sparsity": s, "method": "none" if s == 0 else method,
                                  "path": f"/tmp/{name}_{label}.ttc", "bytes": size, "accuracy": round(acc * 360) / 360})
        chosen = {}
        for floor_name, floor in (("99% of FP32", 0.99 * base_acc), ("FP32 - 0.5 points", base_acc - 0.005)):
            ok = sorted((t for t in tried if t["accuracy"] >= floor), key=lambda t: t["bytes"])
            chosen[floor_name] = {"floor": floor, "best": ok[0] if ok else None, "bound_by": "accuracy"}
        models[name] = {"base_bytes": base_bytes, "base_accuracy": base_acc, "search": tried, "chosen": chosen}
    return models


def synthetic_generation(spread=False, long=True):
    """table3_generation.json's rows, shaped like a real run; spread=True adds the _p90 / _lo / _hi fields."""
    def rows(ns, prompt, slope):
        out = []
        for n in ns:
            without, with_ = 0.9 + slope * n, 0.25 + 0.0002 * n
            r = {"prompt_tokens": prompt, "new_tokens": n, "ms_per_token_without": without, "ms_per_token_with": with_,
                 "speedup": without / with_, "identical": True, "p90_ms_without": without * 1.1, "p90_ms_with": with_ * 1.2}
            if spread:
                r.update({"ms_per_token_without_p90": without * 1.15, "ms_per_token_with_p90": with_ * 1.3,
                          "speedup_lo": without / with_ * 0.9, "speedup_hi": without / with_ * 1.08})
            out.append(r)
        return out
    profile = [{"length": n, "forward_ms": 0.02 * n + 0.0004 * n * n, "attention_share": a, "linear_share": l,
                "other_shares": {"LayerNorm": 0.6 * (1 - a - l), "MLP": 0.25 * (1 - a - l), "TransformerBlock": 0.1 * (1 - a - l),
                                 "Embedding": 0.03 * (1 - a - l), "SinusoidalPositionalEncoding": 0.01 * (1 - a - l),
                                 "GPT": 0.01 * (1 - a - l)}}
               for n, a, l in ((32, 0.05, 0.8), (128, 0.12, 0.75), (256, 0.25, 0.62), (512, 0.45, 0.45), (1024, 0.66, 0.28))]
    return {"profile": profile, "table3": rows([32, 64, 128, 256, 512, 992], 30, 0.027),
            "table3_as_trained": rows([32, 128, 256], 30, 0.03), "table3_long_prompt": rows([32, 128, 256], 256, 0.05) if long else [],
            "cache_memory": [{"length": n, "bytes": 1024 * n, "formula": 1024 * n} for n in (64, 128, 256, 512, 1024)]}


def test_compression_curves_mark_the_chosen_configuration_and_tell_points_apart():
    models = synthetic_static()
    fig = mlperf_plots.compression_curves(models)
    assert figure_problems(fig) == []
    one_unit(fig)
    texts = all_texts(fig)
    for name, m in models.items():
        best = m["chosen"]["99% of FP32"]["best"]
        want = f"{format_ratio(m['base_bytes'] / best['bytes'])} smaller, {(best['accuracy'] - m['base_accuracy']) * 100:+.2f} pt"
        assert any(want in t and best["config"] in t for t in texts), (want, texts)
    top = [ax for ax in fig.axes if "file bytes" in ax.get_title()]
    bottom = [ax for ax in fig.axes if "sparsity" in ax.get_title()]
    assert len(top) == len(bottom) == 2
    for ax in top:
        labels = tick_texts(ax.xaxis)
        assert labels and all(re.fullmatch(r"[\d.,]+ (B|kB|MB)", t) for t in labels), labels
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert {"FP32", "FP16", "INT8", "hollow: per-layer pruning"} <= set(legend), legend
        faces = {bool(np.asarray(c.get_facecolor()).size) for c in ax.collections if len(c.get_offsets()) == 1}
        assert faces == {True, False}  # filled (global) and hollow (per-layer) points
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "weights removed (%)"]  # the sparsity colour scale
    assert [t.get_text() for t in bars[0].get_yticklabels()] == ["0", "50", "70", "80", "85", "90", "95"]
    for ax in bottom:  # FP32 and FP16 lie on each other: told apart by width and marker
        styles = {(line.get_linewidth(), line.get_marker()) for line in ax.get_lines() if line.get_marker() in "os^"}
        assert len({w for w, _ in styles}) >= 3 and {m for _, m in styles} == {"o", "s", "^"}, styles
        assert any(t.get_text().startswith("chosen: ") for t in ax.texts)


def test_compression_curves_quick_shape_one_scope_two_precisions():
    fig = mlperf_plots.compression_curves(synthetic_static(methods=("global",), bits=("fp32", "int8"),
                                                           sparsities=(0.0, 0.5, 0.8)))
    assert figure_problems(fig) == []
    assert sum("smaller" in t for t in all_texts(fig)) == 2


def test_generation_profile_says_what_the_rest_of_the_time_is():
    data = synthetic_generation()
    fig = mlperf_plots.generation_profile(data["profile"])
    assert figure_problems(fig) == []
    ax = fig.axes[0]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    for part in ("attention core", "Linear layers", "LayerNorm", "GELU", "residual adds", "token embedding"):
        assert part in legend, legend
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "128", "256", "512", "1,024"]
    assert sum(t.get_text().endswith(" ms") for t in ax.texts) == len(data["profile"])
    tops = {}
    for patch in ax.patches:
        x = round(patch.get_x(), 3)
        tops[x] = max(tops.get(x, 0), patch.get_y() + patch.get_height())
    assert all(abs(v - 100) < 1e-6 for v in tops.values()), tops  # the parts add up to the whole pass
    for row in data["profile"]:
        del row["other_shares"]  # a table from before the rest was measured by kind
    legend = [t.get_text() for t in mlperf_plots.generation_profile(data["profile"]).axes[0].get_legend().get_texts()]
    assert any(t.startswith("rest") for t in legend), legend


@pytest.mark.parametrize("spread", [True, False])
def test_generation_speedup_labels_every_value_and_draws_spread_when_the_table_has_it(spread):
    data = synthetic_generation(spread=spread)
    fig = mlperf_plots.generation_speedup(data["table3"], data["table3_as_trained"], data["cache_memory"],
                                          data["table3_long_prompt"])
    assert figure_problems(fig) == []
    one_unit(fig)
    time_ax, speed_ax, mem_ax = fig.axes
    assert tick_texts(time_ax.xaxis) == tick_texts(speed_ax.xaxis) == ["32", "64", "128", "256", "512", "992"]
    slowest = max(r["ms_per_token_without"] for r in data["table3"])
    labels = [float(t) for t in tick_texts(time_ax.yaxis)]
    assert slowest > 20 and max(labels) >= slowest, labels  # the time axis is labelled past its largest value
    assert all(t.endswith("x") for t in tick_texts(speed_ax.yaxis))
    shown = {t.get_text() for t in speed_ax.texts}
    assert {format_ratio(r["speedup"]) for r in data["table3"]} <= shown, shown
    assert all(re.fullmatch(r"[\d.,]+ (kB|MB)", t) for t in tick_texts(mem_ax.yaxis))
    assert {format_bytes(m["bytes"]) for m in data["cache_memory"]} <= {t.get_text() for t in mem_ax.texts}
    bars = [c for c in speed_ax.containers if c.has_yerr]
    if spread:
        assert "p10-p90" in speed_ax.get_title() and len(bars) == 3
        segments = bars[0].lines[2][0].get_segments()
        lo_hi = [(seg[0][1], seg[1][1]) for seg in segments]
        assert np.allclose(lo_hi, [(r["speedup_lo"], r["speedup_hi"]) for r in data["table3"]])
        tops = [seg[1][1] for seg in [c for c in time_ax.containers if c.has_yerr][0].lines[2][0].get_segments()]
        assert np.allclose(tops, [r["ms_per_token_without_p90"] for r in data["table3"]])
    else:
        assert not bars and "p10-p90" not in speed_ax.get_title()


# -- the module notebooks' plot cells, run on made-up measurements ----------------------------------------
# Each plot cell is run from the paragraph of its first figure (the measurements before it are replaced by
# the values below, shaped like what the notebook measures) up to its last plt.show().

def _timing(median):
    from types import SimpleNamespace
    return SimpleNamespace(median=median, p90=median * 1.2, threads=1)


def _module_fakes() -> dict:
    """Per module: the names its plot cells read, with values shaped like a real run."""
    from types import SimpleNamespace

    import tinytorch_lib.activations as activations
    from tinytorch_lib.dataloader import load_digits
    from tinytorch_lib.embeddings import sinusoidal_positions
    from tinytorch_lib.tensor import Tensor

    ns = [1, 4, 16, 64, 256]
    gpt = SimpleNamespace(n_layers=2, n_heads=4, d_model=128,
                          state_dict=lambda: {"w": np.zeros(430_000, np.float32), "pos": np.zeros(131_072, np.float32)},
                          parameters=lambda: [SimpleNamespace(data=np.zeros(430_000, np.float32))])
    ladder = ["pure Python loops", "loop over positions", "loop over offsets (Module 09)", "im2col + matmul",
              "sliding windows + tensordot"]
    conv = {b: [{"rung": r, "timing": _timing(40e-3 * b / 3**i), "x_bottom": 3.0**i} for i, r in enumerate(ladder)]
            for b in (1, 16, 64)}
    return {
        "01_tensor": {"sizes": [64, 128, 256, 512], "gflops": [3.1, 12.5, 24.0, 31.7]},
        "03_layers": {"rows": [(n, 40e-6 + 3e-6 * n, 25e-6 + 2.5e-6 * n) for n in ns], "batches": ns},
        "04_losses": {"loss_rows": [(n, 4e-6 + 2e-8 * n, 9e-6 + 8e-8 * n, 7e-6 + 9e-8 * n) for n in ns], "batches": ns},
        "05_autograd": {"depths": [1, 2, 4, 8, 12], "held_grad": [524_288 * 2 * d for d in (1, 2, 4, 8, 12)],
                        "held_nograd": [262_144] * 5},
        "06_optimizers": {"problems": {"axis-aligned": None, "rotated": None}, "steps": 500, "kappa": 1000.0,
                          "methods": {"SGD": None, "SGD momentum 0.9": None, "Adam": None},
                          "curves": {(p, m): (0.01, np.logspace(3, -12 + i, 500)) for p in ("axis-aligned", "rotated")
                                     for i, m in enumerate(("SGD", "SGD momentum 0.9", "Adam"))}},
        "07_dataloader": {"load_digits": load_digits, "batch_sizes": [1, 8, 32, 128, 1437],
                          "rows": [(b, -(-1437 // b), _timing(0.3 / b**0.8 + 1e-3), _timing(0.35 / b**0.8 + 2e-3))
                                   for b in (1, 8, 32, 128, 1437)]},
        "08_training": {"history": {"loss": list(np.linspace(2.2, 0.1, 15)), "train_acc": list(np.linspace(0.4, 1, 15)),
                                    "test_acc": list(np.linspace(0.4, 0.96, 15))}},
        "09_spatial": {"batches": ns, "python_gflops": 0.004,
                       "sweep": {"forward": [0.2, 0.6, 1.1, 1.4, 1.5], "backward": [0.1, 0.4, 0.8, 1.0, 1.1],
                                 "matmul, same FLOPs": [0.5, 2, 6, 12, 18]}},
        "10_tokenization": {"tokenizers": {"char (65)": SimpleNamespace(vocab_size=65),
                                           **{f"BPE {v}": SimpleNamespace(vocab_size=v) for v in (256, 320, 384, 512, 768)}},
                            "val_ids": dict(zip(["char (65)", *[f"BPE {v}" for v in (256, 320, 384, 512, 768)]],
                                                [[0] * n for n in (40_000, 40_000, 30_000, 27_000, 24_000, 21_000)])),
                            "merge_counts": [32, 64, 128, 256], "BPE_TEXT": "x" * 65_536, "TRAIN_PIECE": "x" * 32_768,
                            "train_times": {m: _timing(0.01 * m) for m in (32, 64, 128, 256)}},
        "02_activations": {"Tensor": Tensor, **{k: getattr(activations, k) for k in ("ReLU", "Sigmoid", "Tanh", "GELU")}},
        "11_embeddings": {"sinusoidal_positions": sinusoidal_positions},
        "12_attention": {"lengths": [64, 128, 256, 512, 1024], "slope_all": 1.8,
                         "times": [2e-4 * (n / 64) ** 1.8 for n in (64, 128, 256, 512, 1024)],
                         "score_bytes": [16 * n * n for n in (64, 128, 256, 512, 1024)]},
        "13_transformer": {"lengths": [16, 64, 128, 256, 512],
                           "step_times": [_timing(t / 1e3) for t in (1.2, 2.5, 4.0, 8.1, 17.0)]},
        "14_profiler": {"shares": [(n, 0.05 * n, min(0.7, n / 1500), 0.75 - min(0.5, n / 2000), min(0.6, n / 1800))
                                   for n in (32, 128, 256, 512, 1024)]},
        "15_quantization": {"results": {name: [("FP32", 4 * p, 4 * p + 300, 0.975, None, True),
                                               ("FP16", 2 * p, 2 * p + 300, 0.975, None, True),
                                               ("INT8 per-tensor", p, p + 900, 0.97, None, True),
                                               ("INT8 per-channel", p + 500, p + 1400, 0.972, None, True)]
                                        for name, p in (("mlp", 17_000), ("cnn", 2_730))}},
        "16_compression": {"EPOCHS": 10, "base_acc": 0.975,
                           "sweep": [(s, 0.975 - s**6 * 0.5, 0.975 - s**8 * 0.1) for s in (0, 0.5, 0.7, 0.8, 0.9, 0.95)]},
        "17_acceleration": {"CONV_LADDER": dict.fromkeys(ladder), "batches": [1, 16, 64], "conv_tables": conv,
                            "TOLERANCE": 1e-5},
        "18_kvcache": {"rows": [(n, 1e-3 + 3e-5 * n, 4e-4, True) for n in (16, 64, 128, 256, 512)], "gpt": gpt},
    }


def plot_cells(module: str) -> list[str]:
    """The code of each plot cell of source/<module>/<module>.py, from the paragraph of its first figure to
    its last plt.show()."""
    text = (ROOT / "source" / module / f"{module}.py").read_text()
    cells = []
    for cell in re.split(r"(?m)^# %%.*\n", text):
        lines = cell.splitlines()
        starts = [i for i, line in enumerate(lines) if "plt.subplots(" in line and not line.startswith(" " * 8)]
        ends = [i for i, line in enumerate(lines) if "plt.show()" in line]
        if not starts or not ends or "def " in cell.split("plt.subplots(")[0].splitlines()[-1]:
            continue
        start = starts[0]
        while start > 0 and lines[start - 1].strip():  # the figure's paragraph (an `if` around it included)
            start -= 1
        cells.append("\n".join(lines[start:ends[-1] + 1]).replace("plt.show()", "pass"))
    return cells


# Module 06's loss falls 15 decades to rounding error: its y axis keeps powers of ten (10^-12 would read
# 0.000000000001). Every other log axis is in plain numbers.
POWERS_OF_TEN_OK = {"06_optimizers"}


@pytest.mark.parametrize("module", sorted(_module_fakes()))
def test_module_plot_cells_follow_the_conventions(module):
    import tinytorch_lib.plotting as plotting
    from tinytorch_lib.kvcache import KVCache

    cells = plot_cells(module)
    assert cells, f"no plot cell found in {module}"
    for code in cells:
        plt.close("all")
        names = {"np": np, "plt": plt, "KVCache": KVCache, **vars(plotting), **_module_fakes()[module]}
        exec(compile(code, f"{module} plot cell", "exec"), names)
        figs = [plt.figure(n) for n in plt.get_fignums()]
        assert figs
        for fig in figs:
            problems = figure_problems(fig)
            if module in POWERS_OF_TEN_OK:
                problems = [p for p in problems if "y tick label '$\\\\mathdefault{10^" not in p]
            assert problems == [], problems
            one_unit(fig)


def test_profiler_plot_report_keeps_its_legend_off_the_bars():
    from tinytorch_lib.profiler import plot_report

    rows = [{"name": f"layers.{i}", "kind": "Linear" if i % 2 == 0 else "ReLU", "self_ms": 1.0 / (i + 1),
             "bytes": 4000 * (i % 2 == 0) * (5 - i)} for i in range(6)]
    fig = plot_report(rows, "MLP: where time and bytes go (batch 32)")
    assert figure_problems(fig) == []


def synthetic_table3c(batches=(1, 8, 32, 64)) -> tuple:
    """Table 3c rows and cache memory shaped like 02_generation_speedup.py's, made up."""
    rows = [{"cache": "none", "batch": 1, "tokens_per_s": 170.0, "tokens_per_s_p90": 160.0}]
    for kind, per_step in (("float32", 3e-4), ("int8", 6e-4)):
        for b in batches:
            rate = b / (per_step * (1 + b / 16))
            rows.append({"cache": kind, "batch": b, "tokens_per_s": rate, "tokens_per_s_p90": rate * 0.93})
    memory = [{"length": n, "float32": 2048 * n, "int8": 544 * n} for n in (64, 128, 256, 512, 1024)]
    return rows, memory


@pytest.mark.parametrize("batches", [(1, 8, 32, 64), (1, 8)])
def test_batching_int8_draws_both_caches_beside_the_baseline_and_their_bytes(batches):
    rows, memory = synthetic_table3c(batches)
    fig = mlperf_plots.batching_int8(rows, memory)
    assert figure_problems(fig) == []
    one_unit(fig)
    rate_ax, mem_ax = fig.axes
    assert tick_texts(rate_ax.xaxis) == [str(b) for b in batches]
    legend = [t.get_text() for t in rate_ax.get_legend().get_texts()]
    assert legend and {"float32 cache", "int8 cache", "batch 1, no cache (170 tokens/s)"} <= set(legend), legend
    shown = {t.get_text() for t in rate_ax.texts}
    assert {format_number(r["tokens_per_s"]) for r in rows if r["cache"] != "none"} <= shown, shown
    assert all(re.fullmatch(r"[\d.,]+ (kB|MB)", t) for t in tick_texts(mem_ax.yaxis))
    assert {format_bytes(memory[-1]["float32"]), format_bytes(memory[-1]["int8"])} <= {t.get_text() for t in mem_ax.texts}
