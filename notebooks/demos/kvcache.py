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
# - **time per token** with and without the cache: the time of the whole
#   `tinytorch_lib.kvcache.generate(model, prompt, n, use_cache=...)` call divided by n (the
#   cached side includes its prefill of the prompt), median of repeated runs, both sides timed
#   together by Module 18's `time_generation` (the course's `measure`, one BLAS thread);
# - **the speedup** on the curve over all lengths, with the current point;
# - **the cache's memory**: `KVCache(...).nbytes` for the prompt plus n positions (and for the
#   `max_len` positions `generate` preallocates);
# - **the tokens** both ways, which must be identical.
#
# Up to 64 tokens the current point is **measured live** when the slider moves (3 runs per side).
# Longer runs take seconds without the cache, so 128-512 tokens come from a **table measured at
# start-up** for both models (one run without the cache, three with it, about 20 s); the demo labels which
# one you see. The curves are that start-up measurement at every length, the other model's faded.

# %%
import ipywidgets as W
import numpy as np
from IPython.display import display

import tinytorch_lib
from demo_common import QUICK, app, control, figure, row, value

for line in tinytorch_lib.check_ready("transformer", "acceleration", "kvcache"):
    print(line)

from tinytorch_lib.acceleration import vectorize  # noqa: E402
from tinytorch_lib.kvcache import KVCache, time_generation  # noqa: E402
from tinytorch_lib.transformer import load_gpt  # noqa: E402

model, tokenizer, _ = load_gpt()
MODELS = {"vectorize(gpt)": vectorize(model), "as trained": model}
PROMPT = tokenizer.encode("And the LORD said unto Moses, ")
LIVE = [1, 2, 4, 8, 16, 24, 32, 48, 64]             # measured when the slider moves
TABLE = [128, 256] if QUICK else [128, 256, 512]     # measured once, at start-up
HEAD_DIM = model.d_model // model.n_heads


def cache_bytes(positions: int) -> int:
    return KVCache(model.n_layers, 1, model.n_heads, positions, HEAD_DIM).nbytes


def run(which: str, n: int, repeats: int) -> dict:
    """Generate n tokens both ways with MODELS[which], timed side by side by Module 18's time_generation."""
    r = time_generation(MODELS[which], PROMPT, n, repeats=repeats)
    return {"n": n, "without": r["without"].median / n, "with": r["with"].median / n, "speedup": r["speedup"],
            "identical": r["identical"], "tokens": r["tokens"]}


START = {which: {n: run(which, n, 3 if n in LIVE else 1) for n in LIVE + TABLE} for which in MODELS}
print(f"GPT: {model.n_layers} layers, {model.n_heads} heads, d_model {model.d_model}, max_len {model.max_len}; "
      f"prompt {len(PROMPT)} tokens. Start-up curves measured at {len(LIVE + TABLE)} lengths for each model"
      + (" (quick run: table up to 256 tokens)" if QUICK else ""))
assert all(r["identical"] for rows in START.values() for r in rows.values()), "cached and uncached generation differ"


# %%
def redraw(tokens: int, model_kind: str) -> tuple:
    n = tokens
    live = n in LIVE
    r = run(model_kind, n, 3) if live else START[model_kind][n]
    other = next(k for k in MODELS if k != model_kind)
    source = "measured now (3 runs per side)" if live else "from the start-up table (1 run without the cache, 3 with it)"

    fig = figure(12, 3.8)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    lengths = sorted(START[model_kind])
    for which, alpha, style in ((model_kind, 1.0, "-"), (other, 0.35, "--")):
        tag = "" if which == model_kind else f", {which}"
        ax1.plot(lengths, [START[which][k]["without"] * 1e3 for k in lengths], style, marker="o", ms=3,
                 color="#4477aa", alpha=alpha, label="without cache" + tag)
        ax1.plot(lengths, [START[which][k]["with"] * 1e3 for k in lengths], style, marker="s", ms=3,
                 color="#ee6677", alpha=alpha, label="with KV cache" + tag)
    ax1.plot([n, n], [r["without"] * 1e3, r["with"] * 1e3], "o", ms=11, mfc="none", mec="black", mew=2,
             label="current setting")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("new tokens")
    ax1.set_ylabel("ms per token")
    ax1.set_title("Time per token (lines: start-up)")
    ax1.legend(fontsize=7)

    ax2.plot(lengths, [START[model_kind][k]["speedup"] for k in lengths], marker="o", ms=3, color="#228833",
             label=model_kind)
    ax2.plot(lengths, [START[other][k]["speedup"] for k in lengths], "--", marker="o", ms=3, color="#228833",
             alpha=0.35, label=other)
    ax2.legend(fontsize=7)
    ax2.plot([n], [r["speedup"]], "o", ms=11, mfc="none", mec="black", mew=2)
    ax2.axhline(1, color="gray", lw=1, ls="--")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("new tokens")
    ax2.set_ylabel("speedup (without / with)")
    ax2.set_title("Speedup of the cache (line: start-up)")

    positions = np.arange(1, model.max_len + 1, 16)
    ax3.plot(positions, [cache_bytes(int(p)) / 1e3 for p in positions], color="#aa3377")
    ax3.plot([len(PROMPT) + n], [cache_bytes(len(PROMPT) + n) / 1e3], "o", ms=11, mfc="none", mec="black", mew=2)
    ax3.set_xlabel("positions held (prompt + new tokens)")
    ax3.set_ylabel("KVCache nbytes (KB)")
    ax3.set_title("Cache memory (KVCache.nbytes)")

    text = {k: tokenizer.decode(v[len(PROMPT):].tolist()) for k, v in r["tokens"].items()}
    shown = {k: (t if len(t) <= 160 else t[:160] + " ...").replace("&", "&amp;").replace("<", "&lt;")
             .replace("\n", "&#8629;") for k, t in text.items()}
    html = ("<table>"
            + row(["new tokens", value("tokens", f"{n}") + f" after a {len(PROMPT)}-token prompt; {source}"])
            + row(["model", value("model", model_kind) + " (both sides of the comparison)"])
            + row(["ms per token", "without cache " + value("without", f"{r['without'] * 1e3:.2f}")
                   + ", with cache " + value("with", f"{r['with'] * 1e3:.2f}")])
            + row(["speedup", value("speedup", f"{r['speedup']:.1f}x")])
            + row(["KV cache memory", value("cache-bytes", f"{cache_bytes(len(PROMPT) + n):,}")
                   + f" bytes for {len(PROMPT) + n} positions; generate() preallocates max_len "
                   + f"{model.max_len}: {cache_bytes(model.max_len):,} bytes"])
            + row(["tokens identical", value("identical", "yes" if r["identical"] else "NO")
                   + f" ({len(PROMPT)} prompt + {n} new tokens, the same {len(r['tokens'][True])} ids each way)"])
            + row(["without cache", f"<code>{shown[False]}</code>"])
            + row(["with cache", f"<code>{shown[True]}</code>"])
            + "</table>")
    return html, fig


controls = {"tokens": control(W.SelectionSlider(options=LIVE + TABLE, value=32, description="new tokens"), "tokens"),
            "model_kind": control(W.ToggleButtons(options=list(MODELS), value="vectorize(gpt)", description="model"),
                                  "model_kind")}
box, result, plot = app(controls, redraw, f"Computed at start-up: the curves (every length, both ways, both models). "
                        f"On every change: up to {LIVE[-1]} tokens measured live; {', '.join(map(str, TABLE))} tokens "
                        "shown from the start-up table.")
display(box)

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
