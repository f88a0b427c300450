"""Milestone 06's figures, drawn from its tables (the rows the notebooks print and save as JSON).

Not part of the library: it measures nothing. Each function takes rows as they are written to
results/06_2018_mlperf/*.json and returns a Figure, so a figure can be redrawn from a saved table
and tested without a run (tests/test_figures.py). Conventions: tinytorch_lib/plotting.py.

Spread, when a table row has it: a time field `f` with `f_p90` (or the older `p90_ms_without` /
`p90_ms_with`) gets an error bar up to its p90; a speedup `s` with `s_lo` / `s_hi` (p10-p90 of the
paired ratios) gets an error bar over that range. Rows without them are drawn without bars.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.cm import ScalarMappable
from matplotlib.lines import Line2D
from mlperf_common import plt

from tinytorch_lib.plotting import (format_bytes, format_number, format_percent, format_ratio, label_points,
                                    log_axis, mark_point, place_legend, plain_axis)

FLOOR = "99% of FP32"
MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}  # precision: the marker's shape, in every panel
COLORS = {"fp32": "tab:gray", "fp16": "tab:blue", "int8": "tab:green"}
# Lines that may lie on top of each other (FP16 keeps FP32's accuracy): wide and pale under narrow and dark.
LINES = {"fp32": dict(lw=4.5, alpha=0.45, ms=11, mfc="none"), "fp16": dict(lw=2.2, alpha=0.8, ms=7, mfc="none"),
         "int8": dict(lw=1.0, alpha=1.0, ms=5)}
SCOPES = {"global": ("-", "global (one threshold)"), "magnitude": ("--", "per layer (same share each)")}


def chosen_text(model: dict, floor: str = FLOOR) -> str | None:
    """'int8_global80: 12.5x smaller, -0.83 pt' for the configuration chosen at `floor`, against the FP32 file."""
    best = model["chosen"][floor]["best"]
    if best is None:
        return None
    ratio = model["base_bytes"] / best["bytes"]
    points = (best["accuracy"] - model["base_accuracy"]) * 100
    return f"chosen ({floor} floor): {best['config']}\n{format_ratio(ratio)} smaller, {points:+.2f} pt"


def _pareto(tried: list) -> list:
    front, best_acc = [], -1.0
    for t in sorted(tried, key=lambda t: (t["bytes"], -t["accuracy"])):  # smallest first: keep each new record
        if t["accuracy"] > best_acc:
            front.append(t)
            best_acc = t["accuracy"]
    return front


def compression_curves(models: dict):
    """models: {name: {"base_bytes", "base_accuracy", "search": [rows], "chosen": {floor: {"floor", "best"}}}}
    (table2_static.json's "models"). Top: accuracy vs file bytes, every configuration; bottom: accuracy
    vs sparsity per precision and pruning scope. -> Figure."""
    sparsities = sorted({t["sparsity"] for m in models.values() for t in m["search"]})
    shade = {s: i + 0.5 for i, s in enumerate(sparsities)}  # one colour per sparsity tried, evenly spaced
    cmap = ListedColormap(plt.get_cmap("viridis_r")(np.linspace(0, 1, len(sparsities))))
    norm = BoundaryNorm(np.arange(len(sparsities) + 1), len(sparsities))
    fig, axes = plt.subplots(2, len(models), figsize=(6.4 * len(models), 9.2), squeeze=False)
    legends = {}  # axes -> legend handles, placed once the layout is final
    for col, (name, m) in enumerate(models.items()):
        tried, base_pct = m["search"], m["base_accuracy"] * 100
        floors = [(f, v["floor"] * 100, ls) for (f, v), ls in zip(m["chosen"].items(), ("--", ":"))]
        best = m["chosen"][FLOOR]["best"]

        ax = axes[0, col]  # accuracy vs bytes: shape = precision, colour = sparsity, hollow = per-layer scope
        for t in tried:
            color = cmap(norm(shade[t["sparsity"]]))
            hollow = t["method"] == "magnitude"
            ax.scatter([t["bytes"]], [t["accuracy"] * 100], marker=MARKERS[t["bits"]], s=42, linewidths=1.4,
                       facecolors="none" if hollow else [color], edgecolors=[color], zorder=3)
        front = _pareto(tried)
        ax.plot([t["bytes"] for t in front], [t["accuracy"] * 100 for t in front], color="black", lw=0.8, zorder=2)
        for floor_name, value, ls in floors:
            ax.axhline(value, color="tab:red", ls=ls, lw=1)
        log_axis(ax, "x", "bytes")
        ax.set_xlabel("file bytes on disk (log scale; 1 kB = 1000 bytes)")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title(f"{name.upper()}: accuracy vs file bytes (FP32 file: {format_bytes(m['base_bytes'])})")
        ax.grid(True, which="major", alpha=0.25)
        text = chosen_text(m)
        if text:
            mark_point(ax, best["bytes"], best["accuracy"] * 100, text)
        handles = ([Line2D([], [], ls="", marker=MARKERS[b], color="dimgray", label=b.upper())
                    for b in MARKERS if any(t["bits"] == b for t in tried)]
                   + [Line2D([], [], ls="", marker="o", color="dimgray", label="filled: global or unpruned"),
                      Line2D([], [], ls="", marker="o", mfc="none", color="dimgray", label="hollow: per-layer pruning")]
                   + [Line2D([], [], color="black", lw=0.8, label="Pareto front")]
                   + [Line2D([], [], color="tab:red", ls=ls, label=f"floor: {f} ({format_percent(round(v, 2))})")
                      for f, v, ls in floors])
        legends[ax] = handles
        cbar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, pad=0.01, fraction=0.04)
        cbar.set_ticks([shade[s] for s in sparsities])
        cbar.set_ticklabels([format_number(s * 100) for s in sparsities])
        cbar.set_label("weights removed (%)")

        ax = axes[1, col]  # accuracy vs sparsity: one line per precision and scope
        dense = {t["bits"]: t for t in tried if t["method"] == "none"}
        methods = [mth for mth in SCOPES if any(t["method"] == mth for t in tried)]
        for method in methods:
            for bits in MARKERS:
                pts = sorted([t for t in tried if t["bits"] == bits and t["method"] == method]
                             + ([dense[bits]] if bits in dense else []), key=lambda t: t["sparsity"])
                if len(pts) < 2 and not any(t["method"] == method for t in pts):
                    continue
                ax.plot([t["sparsity"] * 100 for t in pts], [t["accuracy"] * 100 for t in pts], ls=SCOPES[method][0],
                        marker=MARKERS[bits], color=COLORS[bits], **LINES[bits])
        for floor_name, value, ls in floors:
            ax.axhline(value, color="tab:red", ls=ls, lw=1)
        if best is not None:
            mark_point(ax, best["sparsity"] * 100, best["accuracy"] * 100, f"chosen: {best['config']}")
        ax.set_xticks([s * 100 for s in sparsities], [format_number(s * 100) for s in sparsities])
        ax.set_xlabel("weights removed (%), pruned + fine-tuned")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title(f"{name.upper()}: accuracy vs sparsity (FP32 unpruned: {format_percent(round(base_pct, 2))})")
        ax.grid(True, which="major", alpha=0.25)
        legends[ax] = (
            [Line2D([], [], marker=MARKERS[b], color=COLORS[b], label=b.upper(), **LINES[b]) for b in MARKERS
             if b in dense or any(t["bits"] == b for t in tried)]
            + [Line2D([], [], ls=SCOPES[mth][0], color="black", label=SCOPES[mth][1]) for mth in methods]
            + [Line2D([], [], color="tab:red", ls=ls, label=f"floor: {f}") for f, _, ls in floors])
    fig.tight_layout()
    for ax, handles in legends.items():
        place_legend(ax, handles=handles)
    return fig


# What the profile's other layer kinds do in the GPT (their own time: what their children do not).
KIND_NAMES = {"LayerNorm": "LayerNorm", "MLP": "GELU (MLP's own ops)", "TransformerBlock": "residual adds (blocks' own)",
              "Embedding": "token embedding", "SinusoidalPositionalEncoding": "positions",
              "GPT": "GPT's own ops"}


def generation_profile(shares: list):
    """shares: table3_generation.json's "profile" rows (length, forward_ms, attention_share, linear_share and,
    when measured, other_shares {kind: share}). One stacked bar per length: where one pass's time goes. -> Figure."""
    parts = {"attention core (MultiHeadAttention's own)": ("tab:red", [s["attention_share"] for s in shares]),
             "Linear layers": ("tab:blue", [s["linear_share"] for s in shares])}
    rest = [1 - s["attention_share"] - s["linear_share"] for s in shares]
    if all("other_shares" in s for s in shares):
        kinds = sorted({k for s in shares for k in s["other_shares"]}, key=lambda k: -max(s["other_shares"].get(k, 0)
                                                                                         for s in shares))
        big = [k for k in kinds if max(s["other_shares"].get(k, 0) for s in shares) >= 0.02]
        small = [k for k in kinds if k not in big]
        palette = iter(["tab:orange", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink"])
        for k in big:
            parts[KIND_NAMES.get(k, k)] = (next(palette, "lightgray"), [s["other_shares"].get(k, 0) for s in shares])
        if small:
            names = ", ".join(KIND_NAMES.get(k, k) for k in small)
            parts[f"under 2% each:\n{names}"] = ("lightgray", [sum(s["other_shares"].get(k, 0) for k in small)
                                                              for s in shares])
    else:
        parts["rest (the other layers' own time)"] = ("lightgray", rest)
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    x = np.arange(len(shares))
    bottom = np.zeros(len(shares))
    for label, (color, values) in parts.items():
        values = np.array(values) * 100
        ax.bar(x, values, 0.6, bottom=bottom, color=color, label=label, edgecolor="white", linewidth=0.5)
        for xi, b, v in zip(x, bottom, values):
            if v >= 6:
                ax.text(xi, b + v / 2, f"{v:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if color not in ("lightgray", "tab:olive", "tab:cyan") else "black")
        bottom += values
    for xi, s in zip(x, shares):
        ax.text(xi, 101, f"{format_number(s['forward_ms'])} ms", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [format_number(s["length"]) for s in shares])
    ax.set_ylim(0, 110)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel("sequence length n (tokens); above each bar: one pass, ms (CPU time)")
    ax.set_ylabel("% of one forward pass")
    ax.set_title("One generation step without a cache: where the time goes")
    fig.tight_layout()
    place_legend(ax, make_room=False)  # the bars fill 0-100%: beside them, not below zero
    return fig


def _p90_err(rows: list, field: str, older: str):
    """Upward error bars to each row's p90 (field_p90, or the older name), or None if the rows have none."""
    p90 = [r.get(f"{field}_p90", r.get(older)) for r in rows]
    if any(v is None for v in p90):
        return None
    med = np.array([r[field] for r in rows])
    return np.array([np.zeros(len(rows)), np.maximum(np.array(p90) - med, 0)])


def _range_err(rows: list, field: str):
    """Error bars over each row's p10-p90 range (field_lo, field_hi), or None if the rows have none."""
    if not rows or not all(f"{field}_lo" in r and f"{field}_hi" in r for r in rows):
        return None
    mid = np.array([r[field] for r in rows])
    return np.array([np.maximum(mid - [r[f"{field}_lo"] for r in rows], 0),
                     np.maximum(np.array([r[f"{field}_hi"] for r in rows]) - mid, 0)])


def generation_speedup(table3: list, table3_as_trained: list, cache_memory: list, table3_long_prompt=None):
    """table3_generation.json's rows: time per token and speedup against new tokens, cache bytes against
    positions. -> Figure (three panels)."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.6))
    series = [(table3, "vectorize(GPT)", "-", None), (table3_as_trained, "as trained", "--", "none")]
    for rows, label, ls, mfc in series:
        if not rows:
            continue
        x = [r["new_tokens"] for r in rows]
        for field, older, color, marker, what in (("ms_per_token_without", "p90_ms_without", "tab:blue", "o", "without cache"),
                                                  ("ms_per_token_with", "p90_ms_with", "tab:orange", "s", "with KV cache")):
            ax1.errorbar(x, [r[field] for r in rows], yerr=_p90_err(rows, field, older), color=color, ls=ls,
                         marker=marker, mfc=mfc, ms=6 if mfc else 5, capsize=2, label=f"{what}, {label}")
    xs = sorted({r["new_tokens"] for rows, *_ in series for r in rows})
    log_axis(ax1, "x", "count", ticks=xs, base=2)
    log_axis(ax1, "y", "number")
    ax1.set_xlabel("new tokens (log scale)")
    ax1.set_ylabel("ms per token, median (log scale)")
    ax1.set_title("Time per token (bars: to p90)" if any(ax1.containers) else "Time per token")
    ax1.grid(True, which="major", alpha=0.25)

    speed = [(table3, "vectorize(GPT), 30-char prompt" if table3 else "", "-", "o", None),
             (table3_as_trained, "as trained", "--", "o", "none")]
    if table3_long_prompt:
        p = table3_long_prompt[0]["prompt_tokens"]
        speed.append((table3_long_prompt, f"vectorize(GPT), {p}-token prompt", ":", "D", None))
    for rows, label, ls, marker, mfc in speed:
        if not rows:
            continue
        x, y = [r["new_tokens"] for r in rows], [r["speedup"] for r in rows]
        ax2.errorbar(x, y, yerr=_range_err(rows, "speedup"), color="tab:green", ls=ls, marker=marker, mfc=mfc,
                     capsize=2, label=label)
        if rows is table3 or not table3:  # the main series: every value; the others: their last one, to the right
            label_points(ax2, x, y, "ratio", color="darkgreen", offset=(0, -11))  # below: the other series lie above
        else:
            label_points(ax2, x[-1:], y[-1:], "ratio", color="darkgreen", offset=(6, 3), ha="left")
    xs = sorted({r["new_tokens"] for rows, *_ in speed for r in rows})
    log_axis(ax2, "x", "count", ticks=xs, base=2)
    log_axis(ax2, "y", "ratio")
    ax2.set_xlabel("new tokens (log scale)")
    ax2.set_ylabel("speedup, without / with cache (log scale)")
    spread = any(_range_err(rows, "speedup") is not None for rows, *_ in speed)
    ax2.set_title("Speedup, identical tokens" + (" (bars: p10-p90)" if spread else ""))
    ax2.grid(True, which="major", alpha=0.25)

    pos, nbytes = [m["length"] for m in cache_memory], [m["bytes"] for m in cache_memory]
    ax3.plot(pos, nbytes, marker="o", color="tab:purple")
    label_points(ax3, pos, nbytes, "bytes", color="indigo", offset=(-3, 6), ha="right")
    log_axis(ax3, "x", "count", ticks=pos, base=2)
    log_axis(ax3, "y", "bytes")
    ax3.set_xlabel("cached positions (log scale)")
    ax3.set_ylabel("cache size (log scale; 1 kB = 1000 bytes)")
    ax3.set_title("KV cache memory (measured nbytes)")
    ax3.grid(True, which="major", alpha=0.25)
    fig.tight_layout()
    for ax in (ax1, ax2):
        place_legend(ax)
    return fig


def batching_int8(table3c: list, cache_memory: list):
    """table3_generation.json's "table3c" rows (cache, batch, tokens_per_s(+_p90)) and "table3c_cache_memory"
    (length, float32, int8 bytes): throughput against batch size per cache, beside batch 1 without a cache;
    cache bytes against length. -> Figure (two panels)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {"float32": ("tab:orange", "s", "float32 cache"), "int8": ("tab:green", "^", "int8 cache")}
    batches = sorted({r["batch"] for r in table3c if r["cache"] in style})
    for kind, (color, marker, label) in style.items():
        rows = sorted((r for r in table3c if r["cache"] == kind), key=lambda r: r["batch"])
        if not rows:
            continue
        x, y = [r["batch"] for r in rows], [r["tokens_per_s"] for r in rows]
        low = [r.get("tokens_per_s_p90", r["tokens_per_s"]) for r in rows]
        ax1.errorbar(x, y, yerr=[np.maximum(np.array(y) - low, 0), np.zeros(len(y))], color=color, marker=marker,
                     capsize=2, label=label)
        label_points(ax1, x, y, "number", color=color, offset=(0, -12))  # below: the legend may sit above
    for r in table3c:
        if r["cache"] == "none":
            ax1.axhline(r["tokens_per_s"], color="tab:blue", ls="--",
                        label=f"batch 1, no cache ({format_number(r['tokens_per_s'])} tokens/s)")
    log_axis(ax1, "x", "count", ticks=batches, base=2)
    ax1.set_xlim(batches[0] / 1.5, batches[-1] * 1.5)  # room for the first and last values' labels
    log_axis(ax1, "y", "number")
    ax1.set_xlabel("batch size B (prompts per step, log scale)")
    ax1.set_ylabel("tokens per second (log scale)")
    ax1.set_title("Offline throughput (bars: down to the p90 time's rate)")
    ax1.grid(True, which="major", alpha=0.25)

    pos = [m["length"] for m in cache_memory]
    for kind, (color, marker, label) in style.items():
        nbytes = [m[kind] for m in cache_memory]
        ax2.plot(pos, nbytes, marker=marker, color=color, label=label)
        label_points(ax2, pos[-1:], nbytes[-1:], "bytes", color=color, offset=(-4, 6), ha="right")
    log_axis(ax2, "x", "count", ticks=pos, base=2)
    log_axis(ax2, "y", "bytes")
    ax2.set_xlabel("cached positions, one sequence (log scale)")
    ax2.set_ylabel("cache size, measured nbytes (log scale; 1 kB = 1000 bytes)")
    ax2.set_title("KV cache memory: float32 and int8 (scales counted)")
    ax2.grid(True, which="major", alpha=0.25)
    fig.tight_layout()
    for ax in (ax1, ax2):
        place_legend(ax)
    return fig
