# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Demo: the KV cache's advantage grows with the sequence
#
# Without a cache, generating token t runs the model over all t positions again; with Module 18's
# `KVCache`, each step runs one position and reads the keys and values stored by the steps before.
# Move the number of generated tokens, and see, for the course's character-level GPT
# (`data/gpt_corpus.npz`, greedy decoding from a fixed prompt), either as trained (every layer
# runs its `Tensor` operations) or as `vectorize(gpt)` (Module 17: the same weights and logits,
# each block one fused numpy pass under `no_grad`):
#
# - **time per token** with and without the cache: the CPU time of the whole
#   `generate(model, prompt, n, use_cache=...)` call divided by n (the cached side includes its
#   prefill of the prompt), both sides timed in turns by the course's `compare`;
# - **the speedup**: the median of the paired ratios, with their p10-p90 range (the bars);
# - in the table, **the cache's memory** (`KVCache(...).nbytes` for the prompt plus n positions)
#   and **the tokens**, identical both ways.
#
# Timing every length takes minutes (512 tokens without the cache take seconds per run), so the
# table is **stored**, measured ahead by `make demos` (`demo_measure.py`), and drawn at once.
# **measure live** times the current setting again on this machine now and draws it beside the
# stored point (x marks): a different number then comes with the machine's state that explains it.

# %%
from demo_common import show_first

FIRST = {"tokens": 32, "model_kind": "vectorize(gpt)"}  # the controls' first setting
show_first("kvcache", FIRST)  # the stored first figure, at once

# %%
import html
import time

import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import App, control, describe_stored, first_png, load_stored, plain_log_ticks, row, value
from demo_measure import LENGTHS, LIBRARIES, cache_bytes, kv_repeats, time_kv
from tinytorch_lib.plotting import format_bytes

tinytorch_lib.check_ready(*LIBRARIES["kvcache"])  # stops naming the first unfinished task
STORED = load_stored("kvcache")
LIVE = {}  # (model, n) -> time_kv's row, from the measure-live button
MODELS = ["vectorize(gpt)", "as trained"]
TABLE = STORED["data"]["table"] if STORED else {m: {} for m in MODELS}
PROMPT_TOKENS = STORED["data"]["prompt_tokens"] if STORED else 30


def setup(fig):
    ax1, ax2 = fig.subplots(1, 2)
    a = {"ax1": ax1, "ax2": ax2, "lines": [], "ranges": {}, "speed": {}}
    for m in MODELS:
        rows = [TABLE[m].get(str(n)) for n in LENGTHS]
        ns = [n for n, r in zip(LENGTHS, rows) if r]
        for side, color, marker in (("without", "#4477aa", "o"), ("with", "#ee6677", "s")):
            label = f"{side} cache" if m == MODELS[0] else None
            (line,) = ax1.plot(ns, [r[side] * 1e3 for r in rows if r], marker=marker, ms=5, color=color, label=label)
            a["lines"].append((m, line))
        (sp,) = ax2.plot(ns, [r["speedup"][0] for r in rows if r], marker="o", ms=5, color="#228833")
        a["speed"][m] = sp
        a["ranges"][m] = ax2.vlines(ns, [r["speedup"][1] for r in rows if r], [r["speedup"][2] for r in rows if r],
                                    color="#228833", lw=3)
    (live1,) = ax1.plot([], [], ls="none", marker="x", ms=12, mew=2.5, color="black", label="live")
    (point1,) = ax1.plot([], [], "o", ms=16, mfc="none", mec="black", mew=2.5, ls="none", label="now")
    (live2,) = ax2.plot([], [], ls="none", marker="x", ms=12, mew=2.5, color="black")
    live2_range = ax2.vlines([], [], [], color="black", lw=1.5)
    (point2,) = ax2.plot([], [], "o", ms=16, mfc="none", mec="black", mew=2.5)
    ax2.axhline(1, color="gray", lw=1, ls="--")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax.xaxis, [1, 4, 16, 64, 256])
        ax.set_xlim(0.7, 750)
        ax.set_xlabel("new tokens")
    plain_log_ticks(ax1.yaxis, [0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
    plain_log_ticks(ax2.yaxis, [0.5, 1, 2, 5, 10, 20])
    ax1.set_ylim(0.2, 120)
    ax2.set_ylim(0.4, 40)
    ax1.set_ylabel("CPU ms per token")
    ax2.set_ylabel("speedup (without / with)")
    ax1.legend(loc="upper left", ncols=2, handlelength=1.5, columnspacing=1)
    ax1.set_title(" ")
    ax2.set_title(" ")
    a.update(live1=live1, point1=point1, live2=live2, live2_range=live2_range, point2=point2)
    a["dynamic"] = [ax1.title, ax2.title, *[l for _, l in a["lines"]], *a["speed"].values(), *a["ranges"].values(),
                    live1, live2, live2_range, point1, point2, ax1.get_legend()]
    fig.art.update(a)


def shown(n: int, model_kind: str) -> tuple:
    """(row, where) for this setting: the live measurement if there is one, else the stored row."""
    if (model_kind, n) in LIVE:
        return LIVE[(model_kind, n)], "live"
    return TABLE[model_kind].get(str(n)), "stored"


def draw(fig, tokens: int, model_kind: str) -> None:
    a, n = fig.art, tokens
    for m, line in a["lines"]:
        line.set_alpha(1 if m == model_kind else 0.25)
        line.set_linewidth(3 if m == model_kind else 1)
    for m in MODELS:
        a["speed"][m].set_alpha(1 if m == model_kind else 0.25)
        a["speed"][m].set_linewidth(3 if m == model_kind else 1)
        a["ranges"][m].set_alpha(0.8 if m == model_kind else 0.15)
    live = [(k[1], r) for k, r in LIVE.items() if k[0] == model_kind]
    a["live1"].set_data([k for k, r in live for _ in (0, 1)], [r[s] * 1e3 for k, r in live for s in ("without", "with")])
    a["live2"].set_data([k for k, _ in live], [r["speedup"][0] for _, r in live])
    a["live2_range"].set_segments([[(k, r["speedup"][1]), (k, r["speedup"][2])] for k, r in live])
    r = TABLE[model_kind].get(str(n))
    a["point1"].set_data([n, n] if r else [], [r["without"] * 1e3, r["with"] * 1e3] if r else [])
    a["point2"].set_data([n] if r else [], [r["speedup"][0]] if r else [])
    a["ax1"].set_title(f"time per token, {model_kind}")
    a["ax2"].set_title("speedup of the cache" + (" (x: live)" if live else ""))


def speedup_text(r: dict) -> str:
    return f"{r['speedup'][0]:.1f}x (p10-p90 {r['speedup'][1]:.1f}-{r['speedup'][2]:.1f})"


def table(tokens: int, model_kind: str) -> str:
    n = tokens
    r, where = shown(n, model_kind)
    stored = TABLE[model_kind].get(str(n))
    if r is None:
        return "<p>Nothing stored for this setting yet: press <b>measure live</b>.</p>"
    text = html.escape(r["text"] if len(r["text"]) <= 90 else r["text"][:90] + " ...").replace("\n", "&#8629;")
    compare_line = ""
    if where == "live" and stored:
        compare_line = f"; stored {speedup_text(stored)}"
    return ("<table>"
            + row(["setting", value("tokens", f"{n}") + " new tokens after a " + f"{PROMPT_TOKENS}-token prompt, "
                   + value("model", model_kind) + f" ({where})"])
            + row(["CPU ms per token", "without cache " + value("without", f"{r['without'] * 1e3:.2f}")
                   + ", with cache " + value("with", f"{r['with'] * 1e3:.2f}")])
            + row(["speedup", value("speedup", f"{r['speedup'][0]:.1f}x")
                   + f" (p10-p90 {r['speedup'][1]:.1f}-{r['speedup'][2]:.1f}{compare_line})"])
            + row(["KV cache memory", value("cache-bytes", f"{cache_bytes(PROMPT_TOKENS + n):,}")
                   + f" bytes for {PROMPT_TOKENS + n} positions ({format_bytes(cache_bytes(PROMPT_TOKENS + n))})"])
            + row(["tokens identical", value("identical", "yes" if r["identical"] else "NO") + f": <code>{text}</code>"])
            + "</table>")


def status(tokens: int, model_kind: str) -> str:
    r, where = shown(tokens, model_kind)
    line = describe_stored(STORED, *LIBRARIES["kvcache"])
    if where == "live":
        why = f" {r['noisy']}" if r.get("noisy") else ""
        line = (f"<b>Measured live</b> at {r['when']} (load {r['load']}): {speedup_text(r)}; the curves are the stored "
                f"table.{why} " + line)
    return line


def measure(values: dict, progress) -> None:
    n, m = values["tokens"], values["model_kind"]
    stored = TABLE[m].get(str(n))
    guess = f", about {(stored['without'] + stored['with']) * n * (kv_repeats(n) + 1):.0f} s of CPU" if stored else ""
    progress(f"{n} tokens, {m}: {kv_repeats(n)} runs per side, in turns{guess} ...")
    r = time_kv(m, n)
    import os
    r.update(when=time.strftime("%H:%M:%S"), load=f"{os.getloadavg()[0]:.1f}")
    LIVE[(m, n)] = r


controls = {"tokens": control(W.SelectionSlider(options=LENGTHS, value=FIRST["tokens"], description="new tokens"), "tokens"),
            "model_kind": control(W.ToggleButtons(options=MODELS, value=FIRST["model_kind"], description="model"),
                                  "model_kind")}
app = App([[controls["tokens"], controls["model_kind"]]], controls, setup, draw, table, status, measure=measure,
          first=first_png("kvcache", FIRST),
          note="Stored: the whole timing table (every length, both ways, both models). On every change: the stored "
               "row of the setting and the cache's bytes. Measure live: the current setting, timed now.")
display(app.box)

# %% [markdown]
# What to look for:
#
# - Without the cache the time per token grows with the length (each step reruns every position);
#   with it, it stays nearly flat, so the speedup grows with the number of tokens.
# - For a few tokens the cache does not pay: its prefill and bookkeeping cost about what it saves.
# - Switch the model. With the cache a step is one position, and the model as trained spends most
#   of it on per-operation overhead, which the fused pass removes. Without the cache each step is
#   mostly arithmetic over every position, which both models do (the fused attention also gains at
#   the longest lengths). The speedup is the ratio of the two: compare the two green curves.
# - The memory grows linearly: 2 (keys and values) x layers x heads x positions x head_dim x 4
#   bytes. This is the price of the speed, and at large models and long contexts it is what limits
#   the batch size.
