"""What both Milestone 06 notebooks share: run mode, results folder, plots that work in a notebook and a script.

Not part of the library: it holds no optimization, only the plumbing of the two runs.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # a script writes PNGs; no window

import matplotlib.pyplot as plt  # noqa: E402

import tinytorch_lib  # noqa: E402



def _unfinished_without_traceback(kind, error, traceback) -> None:
    """A script stopped by tinytorch_lib.check_ready prints its message alone (module, task, the command
    to run); every other error keeps its traceback. (In a notebook, IPython does the same.)"""
    if issubclass(kind, tinytorch_lib.Unfinished):
        print(f"{kind.__name__}: {error}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, traceback)


if not IN_NOTEBOOK:
    sys.excepthook = _unfinished_without_traceback

# MLPERF_QUICK=1 (or --quick): smaller sweeps and fewer tokens, for the test suite. Every figure is
# still measured; the run says it was quick.
QUICK = os.environ.get("MLPERF_QUICK") == "1" or "--quick" in sys.argv


def results_dir() -> Path:
    """results/06_2018_mlperf/ at the repository root ($MLPERF_RESULTS overrides it); created if missing."""
    default = Path(tinytorch_lib.__file__).resolve().parent.parent / "results" / "06_2018_mlperf"
    folder = Path(os.environ.get("MLPERF_RESULTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_json(name: str, data) -> Path:
    path = results_dir() / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def save_figure(fig, name: str) -> Path:
    """Write fig as PNG; in a notebook it is also shown inline."""
    path = results_dir() / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)
    return path


def print_table(rows: list[dict], columns: list[tuple]) -> None:
    """columns: (key, header, format spec, or a function (row, key) -> text such as show_ratio); one line
    per row, aligned."""
    def cell(r, k, f):
        return f(r, k) if callable(f) else format(r[k], f)

    widths = [max(len(h), *(len(cell(r, k, f)) for r in rows)) for k, h, f in columns]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths)))
    for r in rows:
        print("  ".join(cell(r, k, f).ljust(w) for (k, _, f), w in zip(columns, widths)))


# Every figure keeps its spread beside it, in the tables and in the JSON, under fixed names:
# a speedup X (a Ratio from paired repeats) as X, X_lo, X_hi (p10-p90 of the pairs); a time X as X
# (median of the repeats) and X_p90; a throughput X as X (from the median time) and X_p90 (from the
# p90 time: what the slow repeats managed).

def ratio_fields(name: str, ratio) -> dict:
    """A Ratio -> {name: median, name_lo: p10, name_hi: p90}."""
    return {name: ratio.median, f"{name}_lo": ratio.lo, f"{name}_hi": ratio.hi}


def time_fields(name: str, timing, scale: float = 1e3) -> dict:
    """A Timing -> {name: median * scale, name_p90: p90 * scale} (scale 1e3: milliseconds)."""
    return {name: timing.median * scale, f"{name}_p90": timing.p90 * scale}


def rate_fields(name: str, items: int, timing) -> dict:
    """`items` per call of a Timing -> {name: items per second at the median, name_p90: at the p90 time}."""
    return {name: items / timing.median, f"{name}_p90": items / timing.p90}


def show_ratio(row: dict, name: str, spec: str = ".1f") -> str:
    """'9.2x (8.7-9.6)' from row[name], row[name_lo], row[name_hi]."""
    return f"{row[name]:{spec}}x ({row[name + '_lo']:{spec}}-{row[name + '_hi']:{spec}})"


def show_time(row: dict, name: str, spec: str = ".2f") -> str:
    """'1.23 (p90 1.31)' from row[name] and row[name_p90]."""
    return f"{row[name]:{spec}} (p90 {row[name + '_p90']:{spec}})"


def show_rate(row: dict, name: str, spec: str = ",.0f") -> str:
    """'27,585 (p90 25,100)': the rate at the median time, and at the p90 time."""
    return f"{row[name]:{spec}} (p90 {row[name + '_p90']:{spec}})"


CLAIMS: list = []


def claim(text: str, holds: bool, evidence: str) -> bool:
    """A sentence of the notebook's text checked against this run's numbers: printed with the numbers,
    as holding or not, and kept for the JSON ({"text", "holds", "evidence"})."""
    CLAIMS.append({"text": text, "holds": bool(holds), "evidence": evidence})
    print(f"{'holds' if holds else 'DOES NOT HOLD in this run'}: {text} ({evidence})")
    return bool(holds)


def busy_note(comparison) -> None:
    """Print the timing helper's one-line warning when a comparison ran on a busy or noisy machine."""
    if comparison.noisy:
        print(f"  note: {comparison.noisy}")


# How long each side-by-side comparison is timed: CPU seconds of timed repeats per row (a short, cheap
# row gets more pairs, so its spread is as narrow as a long row's), and the fewest and most pairs.
ROW_SECONDS = 1.0 if QUICK else 2.0
MIN_PAIRS, MAX_PAIRS = 5, 15


def pairs_for(seconds_per_pair: float, row_seconds: float = ROW_SECONDS) -> int:
    """Timed pairs for a comparison whose two sides together take `seconds_per_pair` CPU seconds."""
    return int(min(MAX_PAIRS, max(MIN_PAIRS, round(row_seconds / max(seconds_per_pair, 1e-9)))))


def generation_row(model, prompt_ids, new_tokens: int, row_seconds: float = ROW_SECONDS) -> dict:
    """Greedy generation of `new_tokens` without and with the KV cache, timed in turns (compare): one
    untimed run of each side (warm-up, and the cost that sets the number of pairs), then pairs.

    -> {"prompt_tokens", "new_tokens", "ms_per_token_without"(+_p90), "ms_per_token_with"(+_p90),
        "speedup"(+_lo, _hi: p10-p90 of the paired ratios), "pairs", "identical", "noisy"}."""
    import numpy as np

    from tinytorch_lib.kvcache import generate
    from tinytorch_lib.timing import compare, cpu_clock

    tokens = {}

    def run(use_cache: bool):
        tokens[use_cache] = generate(model, prompt_ids, new_tokens, use_cache=use_cache)

    start = cpu_clock()
    run(False)
    run(True)
    pairs = pairs_for(cpu_clock() - start, row_seconds)
    c = compare({"without": lambda: run(False), "with": lambda: run(True)}, repeats=pairs, warmup=0, number=1)
    return {"prompt_tokens": int(len(prompt_ids)), "new_tokens": new_tokens,
            **time_fields("ms_per_token_without", c["without"], 1e3 / new_tokens),
            **time_fields("ms_per_token_with", c["with"], 1e3 / new_tokens),
            **ratio_fields("speedup", c.ratio("without", "with")), "pairs": pairs,
            "identical": bool(np.array_equal(tokens[False], tokens[True])), "noisy": c.noisy}


TABLE3_COLUMNS = [("prompt_tokens", "prompt", "d"), ("new_tokens", "new tokens", "d"),
                  ("ms_per_token_without", "without cache ms/token", show_time),
                  ("ms_per_token_with", "with KV cache ms/token", show_time),
                  ("speedup", "speedup (p10-p90)", show_ratio), ("pairs", "pairs", "d"),
                  ("identical", "tokens identical", "")]


def inference_sides(models: dict, inputs, single_stream: bool) -> dict:
    """name -> a function running one MLPerf query on that model: one image (SingleStream) or all of
    `inputs` as one batch (Offline), under no_grad."""
    from tinytorch_lib.tensor import Tensor, no_grad

    batch = Tensor(inputs[:1] if single_stream else inputs)

    def query(model):
        def run():
            with no_grad():
                model(batch)
        return run

    return {name: query(model) for name, model in models.items()}


def mlperf_compare(models: dict, inputs, repeats: int = MAX_PAIRS) -> dict:
    """SingleStream (one image) and Offline (all of `inputs` in one batch) of each model, timed in turns
    (compare; a repeat is several queries when one is short) -> {"single": Comparison, "offline": Comparison,
    "images": len(inputs)}. With one model, its own Timings (no ratio to take)."""
    from tinytorch_lib.timing import blas_threads, compare

    out = {"images": len(inputs)}
    with blas_threads(1):
        for mode in ("single", "offline"):
            out[mode] = compare(inference_sides(models, inputs, mode == "single"), repeats=repeats, warmup=2)
    return out


def mlperf_row(name: str, result: dict) -> dict:
    """One model's SingleStream ms (p50 and p90) and Offline images/s (at the median and p90 time)."""
    single, offline = result["single"][name], result["offline"][name]
    return {"p50_ms": single.median * 1e3, "p90_ms": single.p90 * 1e3, "p50_ms_p90": single.p90 * 1e3,
            **rate_fields("offline_images_per_s", result["images"], offline)}


MLPERF_COLUMNS = [("p50_ms", "SingleStream p50 ms", ".3f"), ("p90_ms", "SingleStream p90 ms", ".3f"),
                  ("offline_images_per_s", "Offline images/s (p90)", show_rate)]
