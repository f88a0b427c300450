"""Do the course's speedups hold on a busy machine? Milestone 06's Table 3 rows and Module 17's convolution
ladder, measured twice in one process: quiet, then with busy background processes this script starts and
always stops (also on an error or Ctrl+C).

    .venv/bin/python -m benchmarks.bench_under_load [--busy 4] [--tokens 128 256] [--batch 16]

Every side is timed with the course's `compare` (sides in turns, CPU time, one BLAS thread), so load that
arrives during a comparison hits both sides. Printed side by side: each speedup with its p10-p90 range,
quiet and loaded, and the change. Passes (exit 0) when
- no speedup moves by more than MAX_CHANGE (25%) under load,
- vectorize(GPT) keeps at least MIN_SPEEDUP (8x at 128 new tokens, 15x at 256) after the milestone's
  30-character prompt under load (its p10-p90 range may dip below; the median may not),
- the generated tokens are identical, cached and uncached, quiet and loaded.
Otherwise it prints each failed criterion and exits 1. "Quiet" is this machine as it is without our busy
processes; the load average before each half is printed beside it.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks" / "06_2018_mlperf"))

MAX_CHANGE = 0.25                    # a speedup may move by this share of its quiet value under load
MIN_SPEEDUP = {128: 8.0, 256: 15.0}  # vectorize(GPT), new tokens -> the KV cache's speedup under load
PROMPT = "And the LORD said unto Moses, "  # Milestone 06's prompt (30 characters)
BUSY_LOOP = "while True:\n    pass\n"


class BusyProcesses:
    """`n` processes spinning on the CPU while the block runs; stopped when it ends, however it ends."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                                               start_new_session=True))
        time.sleep(0.5)  # let them reach the scheduler
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def gpt_rows(tokens: list) -> tuple[list, dict]:
    """Table 3's rows on vectorize(GPT) after the milestone's prompt -> (rows, {new_tokens: generated ids})."""
    from mlperf_common import generation_row

    from tinytorch_lib.acceleration import vectorize
    from tinytorch_lib.kvcache import generate
    from tinytorch_lib.transformer import load_gpt

    model, tokenizer, _ = load_gpt()
    fast = vectorize(model)
    ids = tokenizer.encode(PROMPT)
    rows = [generation_row(fast, ids, n, row_seconds=3.0) for n in tokens]
    return rows, {n: generate(fast, ids, n).tolist() for n in tokens}


def conv_ladder(batch: int) -> list:
    """Module 17's convolution ladder on `batch` digits, every rung checked against the reference, then all
    timed in turns -> [{"rung", "ms", "ms_p90", "x_bottom", "x_bottom_lo", "x_bottom_hi"}]."""
    from mlperf_common import MAX_PAIRS, ratio_fields, time_fields

    from tinytorch_lib.acceleration import CONV_LADDER, TOLERANCE, conv2d_reference, relative_error
    from tinytorch_lib.dataloader import load_digits
    from tinytorch_lib.timing import compare

    x = load_digits("train", flatten=False).tensors[0].data[:batch]
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 1, 3, 3)) / 3).astype(np.float32)
    b = (rng.standard_normal(16) / 3).astype(np.float32)
    want = conv2d_reference(x, w, b, 1, 1)
    for name, fn in CONV_LADDER.items():
        err = relative_error(fn(x, w, b, 1, 1), want)
        if err > TOLERANCE:
            raise AssertionError(f"{name}: relative error {err:.2e} from the reference exceeds {TOLERANCE}")
    c = compare({name: (lambda fn=fn: fn(x, w, b, 1, 1)) for name, fn in CONV_LADDER.items()}, repeats=MAX_PAIRS)
    bottom = next(iter(CONV_LADDER))
    return [{"rung": name, **time_fields("ms", c[name]), **ratio_fields("x_bottom", c.ratio(bottom, name))}
            for name in CONV_LADDER]


def measure_all(tokens: list, batch: int) -> dict:
    load = os.getloadavg()[0]
    start = time.monotonic()
    rows, ids = gpt_rows(tokens)
    ladder = conv_ladder(batch)
    return {"load_before": load, "load_after": os.getloadavg()[0], "seconds": time.monotonic() - start,
            "gpt": rows, "tokens": ids, "ladder": ladder}


def fmt(r: dict, key: str) -> str:
    return f"{r[key]:.1f}x ({r[key + '_lo']:.1f}-{r[key + '_hi']:.1f})"


def report(quiet: dict, loaded: dict, busy: int) -> list[str]:
    """Print both halves side by side; return the failed criteria (empty: pass)."""
    failures = []
    print(f"\nquiet: load average {quiet['load_before']:.1f} before, {quiet['seconds']:.0f} s wall;  "
          f"{busy} busy processes: load {loaded['load_before']:.1f} -> {loaded['load_after']:.1f}, "
          f"{loaded['seconds']:.0f} s wall")
    print(f"\nTable 3, vectorize(GPT), {PROMPT!r} prompt: ms per token (p90) and the KV cache's speedup (p10-p90)")
    print(f"  {'new tokens':>10}  {'without, quiet':>16} {'loaded':>16}  {'with, quiet':>14} {'loaded':>14}  "
          f"{'speedup, quiet':>18} {'loaded':>18} {'change':>7}  identical")
    pairs = []
    for q, l in zip(quiet["gpt"], loaded["gpt"]):
        change = l["speedup"] / q["speedup"] - 1
        same = q["identical"] and l["identical"] and quiet["tokens"][q["new_tokens"]] == loaded["tokens"][l["new_tokens"]]
        print(f"  {q['new_tokens']:>10}  "
              f"{q['ms_per_token_without']:>6.2f} (p90 {q['ms_per_token_without_p90']:5.2f}) "
              f"{l['ms_per_token_without']:>6.2f} (p90 {l['ms_per_token_without_p90']:5.2f})  "
              f"{q['ms_per_token_with']:>4.2f} (p90 {q['ms_per_token_with_p90']:4.2f}) "
              f"{l['ms_per_token_with']:>4.2f} (p90 {l['ms_per_token_with_p90']:4.2f})  "
              f"{fmt(q, 'speedup'):>18} {fmt(l, 'speedup'):>18} {change:>+7.0%}  {same}")
        pairs.append((f"GPT speedup at {q['new_tokens']} new tokens", q["speedup"], l["speedup"]))
        want = MIN_SPEEDUP.get(q["new_tokens"])
        if want is not None and l["speedup"] < want:
            failures.append(f"vectorize(GPT) at {l['new_tokens']} new tokens: {fmt(l, 'speedup')} under load, "
                            f"below the {want:g}x it must keep")
        if not same:
            failures.append(f"{q['new_tokens']} new tokens: the generated tokens differ (cached/uncached or "
                            "quiet/loaded)")
    print("\nModule 17's convolution ladder, x bottom (how many times faster than pure Python loops, p10-p90)")
    print(f"  {'rung':<31} {'ms, quiet':>18} {'loaded':>18}  {'x bottom, quiet':>20} {'loaded':>20} {'change':>7}")
    for q, l in zip(quiet["ladder"], loaded["ladder"]):
        change = l["x_bottom"] / q["x_bottom"] - 1
        print(f"  {q['rung']:<31} {q['ms']:>7.3f} (p90 {q['ms_p90']:6.3f}) {l['ms']:>7.3f} (p90 {l['ms_p90']:6.3f})  "
              f"{fmt(q, 'x_bottom'):>20} {fmt(l, 'x_bottom'):>20} {change:>+7.0%}")
        if q["rung"] != quiet["ladder"][0]["rung"]:
            pairs.append((f"conv ladder, {q['rung']} x bottom", q["x_bottom"], l["x_bottom"]))
    for name, q, l in pairs:
        if abs(l / q - 1) > MAX_CHANGE:
            failures.append(f"{name}: {q:.1f}x quiet, {l:.1f}x loaded, a change of {l / q - 1:+.0%} "
                            f"(more than {MAX_CHANGE:.0%})")
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=4, help="busy background processes for the loaded half")
    ap.add_argument("--tokens", type=int, nargs="+", default=[128, 256], help="Table 3 rows (new tokens)")
    ap.add_argument("--batch", type=int, default=16, help="digits per batch for the convolution ladder")
    args = ap.parse_args(argv)

    import tinytorch_lib  # noqa: F401  (holds numpy's BLAS at one thread)
    from tinytorch_lib.timing import current_blas_threads

    print(f"{os.cpu_count()} cores, {current_blas_threads()} BLAS thread; quiet half first", flush=True)
    quiet = measure_all(args.tokens, args.batch)
    print(f"quiet half done in {quiet['seconds']:.0f} s; starting {args.busy} busy processes", flush=True)
    busy = BusyProcesses(args.busy)
    # SIGTERM ends the run like Ctrl+C does, so the busy processes are stopped on the way out
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with busy:
            loaded = measure_all(args.tokens, args.batch)
    finally:
        busy.stop()
        signal.signal(signal.SIGTERM, previous)
    failures = report(quiet, loaded, args.busy)
    if failures:
        print("\nFAIL:")
        for f in failures:
            print(f"  {f}")
        return 1
    print(f"\npass: no speedup moved by more than {MAX_CHANGE:.0%} under load, vectorize(GPT) kept "
          + ", ".join(f"{v:g}x at {k}" for k, v in MIN_SPEEDUP.items() if k in args.tokens)
          + " new tokens, and the tokens are identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
