"""Generation with and without the KV cache on the course GPT: ms per token, speedup, identical tokens.

    .venv/bin/python -m benchmarks.bench_kvcache [--tokens 32 64 128 256 512 992] [--repeats 5]
                                                 [--plain-tokens 32 128 256]
                                                 [--long-prompt 256] [--long-tokens 32 128 256]

Both sides generate greedily from the same prompt (a 30-character one, then 256 characters of the
validation text: without a cache every step reruns the prompt too) with `tinytorch_lib.kvcache.generate`
(use_cache=True / False), timed side by side by Module 18's `time_generation` (the course's
`measure`, one BLAS thread, per length). The model is `vectorize(gpt)` (Module 17: one fused pass per
block under no_grad) on both sides, then the GPT as trained (layer by layer) on both sides, whose
cached step is mostly per-operation overhead. A speedup counts only if the tokens are
identical; the table says whether they are. It also checks the cached step's logits
against a full forward at every position of a 1024-character text (max |difference|),
and the cache's nbytes against 2 x layers x heads x length x head_dim x 4.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tinytorch_lib.acceleration import vectorize
from tinytorch_lib.kvcache import KVCache, time_generation
from tinytorch_lib.tensor import no_grad
from tinytorch_lib.tokenization import load_corpus
from tinytorch_lib.transformer import load_gpt

PROMPT = "And the LORD said unto Moses, "


def max_logit_difference(model, ids: np.ndarray) -> float:
    """Largest |cached - full| over every position's logits, one token at a time after a 1-token prefill."""
    cache = KVCache(model.n_layers, 1, model.n_heads, model.max_len, model.d_model // model.n_heads)
    with no_grad():
        full = model(ids[None, :]).data[0]  # causal: row t is the full forward's logits at position t
        worst = 0.0
        for t in range(len(ids)):
            step = model(ids[None, t:t + 1], cache=cache).data[0, -1]
            worst = max(worst, float(np.abs(step - full[t]).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 64, 128, 256, 512, 992])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side up to 256 tokens (1 beyond)")
    parser.add_argument("--plain-tokens", type=int, nargs="+", default=[32, 128, 256],
                        help="new-token counts for the GPT as trained (layer by layer)")
    parser.add_argument("--long-prompt", type=int, default=256,
                        help="also time a prompt of this many validation-text characters (0: skip)")
    parser.add_argument("--long-tokens", type=int, nargs="+", default=[32, 128, 256])
    args = parser.parse_args()
    model, tok, _ = load_gpt()
    fast = vectorize(model)
    print(f"GPT d_model {model.d_model}, {model.n_layers} layers, {model.n_heads} heads, max_len {model.max_len}; "
          f"greedy; 1 BLAS thread")
    print(f"{'model':>14} {'prompt':>6} {'new tokens':>10} {'no cache ms/token':>18} {'cache ms/token':>15} "
          f"{'speedup':>8} {'identical':>10}")
    start = time.perf_counter()
    short = tok.encode(PROMPT)
    runs = [("vectorize(GPT)", fast, short, args.tokens), ("as trained", model, short, args.plain_tokens)]
    if args.long_prompt:
        runs.append(("vectorize(GPT)", fast, tok.encode(load_corpus("val")[:args.long_prompt]), args.long_tokens))
    for name, m, prompt, counts in runs:
        for n in counts:
            r = time_generation(m, prompt, n, repeats=args.repeats if n <= 256 else 1)
            print(f"{name:>14} {len(prompt):>6} {n:>10} {r['without'].median / n * 1e3:>18.2f} "
                  f"{r['with'].median / n * 1e3:>15.2f} {r['speedup']:>7.1f}x {'yes' if r['identical'] else 'NO':>10}",
                  flush=True)
    text = load_corpus("val")[:model.max_len]
    for name, m in (("vectorize(GPT)", fast), ("as trained", model)):
        diff = max_logit_difference(m, tok.encode(text))
        print(f"{name}: logits, cached step vs full forward, all {len(text)} positions of a validation text: "
              f"max |difference| {diff:.2e} ({'within' if diff < 1e-4 else 'NOT within'} 1e-4)")
    hd = model.d_model // model.n_heads
    for length in (256, 1024):
        c = KVCache(model.n_layers, 1, model.n_heads, length, hd)
        print(f"cache for {length} positions: {c.nbytes:,} bytes; formula 2 x {model.n_layers} x {model.n_heads} x "
              f"{length} x {hd} x 4 = {2 * model.n_layers * model.n_heads * length * hd * 4:,}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
