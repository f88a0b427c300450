# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Milestone 06, part 2: generation speedup with YOUR KV cache
#
# Your GPT (Module 13, trained on the corpus by `make gpt`) writes text one
# character at a time. Without a cache, step `t` runs the whole model on all
# `t` tokens so far, although only the last position's logits are used: the
# keys and values of positions `0 .. t-1` are recomputed at every step. The
# work per step grows with `t`, so a sequence of `T` tokens costs `O(T^2)`
# token-passes. With your `KVCache` (Module 18), each step runs the model on
# one new token and attends over the stored keys and values: `O(T)` in total
# for the projections and MLPs, and attention reads the cache once per step.
#
# Same loop as part 1: **measure** where generation spends its time,
# **optimize** with the cache, **validate** that the tokens are identical and
# time both sides in the same run, **repeat** over lengths.
#
# Runs as a notebook, or as a script from this folder:
# `python 02_generation_speedup.py` (add `--quick` for the short version the
# tests run). Tables go to `results/06_2018_mlperf/` as JSON, plots as PNG.

# %%
import time

import numpy as np

import tinytorch_lib
from mlperf_common import QUICK, plt, print_table, save_figure, save_json

for line in tinytorch_lib.check_ready("tensor", "activations", "layers", "autograd", "training", "tokenization",
                                      "embeddings", "attention", "transformer", "profiler", "kvcache"):
    print(line)

from tinytorch_lib.kvcache import KVCache, generate  # noqa: E402
from tinytorch_lib.timing import measure  # noqa: E402
from tinytorch_lib.transformer import load_gpt  # noqa: E402

model, tokenizer, meta = load_gpt()
print(f"\nGPT: {model.extra_repr()}; validation loss {meta['val_loss']:.3f} nats/char "
      f"(unigram baseline {meta['unigram_val_loss']:.3f}), as measured when it was trained")
PROMPT = "And the LORD said unto Moses, "
prompt_ids = tokenizer.encode(PROMPT)
print(f"prompt: {PROMPT!r} ({len(prompt_ids)} tokens)" + ("   [quick run: short generations]" if QUICK else ""))
