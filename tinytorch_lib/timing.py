"""The course's one timing helper: every time a notebook, benchmark or milestone shows is measured here.

Hand-written course infrastructure (not exported from a notebook); Module 14
explains it and builds the Profiler on it.

Why each rule:
- **CPU time, not wall time, is the figure**: students share machines (a class
  hub, a laptop with a browser and a video call). Wall-clock time counts the
  moments the operating system gave our core to someone else; the process's CPU
  time (`time.process_time`) does not. Measured here, a 128x128 matmul at one
  BLAS thread: wall median 151 -> 554 us when 4 busy loops start, CPU time
  74 -> 97 us. Every Timing keeps wall time beside it, and says when the two
  disagree (`noisy`).
- **BLAS threads held at one** (threadpoolctl): numpy's matmul uses a thread
  pool. With two threads on a busy two-core machine one thread waits for the
  other, and CPU time then also counts the spinning. One thread makes runs
  comparable; every result says how many threads it used.
- **Interleaved comparisons**: `compare` times the sides of a comparison in
  turns (A B A B ...), so a burst of load hits both, and takes each ratio from
  one pair of neighbouring repeats.
- **Warm-up**: the first call pays for page faults, caches and lazy imports.
- **Several calls per repeat**: a call of a few microseconds is dominated by
  the clock's own cost unless it is repeated; `number` grows until one repeat
  takes about `MIN_REPEAT_SECONDS`.
- **Median with a spread, not a mean**: one interrupted run should not move
  the figure; p90 (MLPerf's tail metric) or the p10-p90 range of a ratio shows
  how much the figure moved.

    t = measure(lambda: a @ b)
    t.median, t.p90            # CPU seconds per call
    print(t)                   # '1.23 ms (p90 1.31 ms, 7 x 100 calls, 1 BLAS thread)'
    c = compare({"loop": slow, "vectorized": fast})
    print(c.ratio("loop", "vectorized"))   # '9.2x (8.7-9.6)': median and p10-p90 of paired ratios

Under nbgrader (it sets NBGRADER_EXECUTION while autograding or validating) the
timings only fill ungraded systems-analysis cells, and every graded submission
would repeat them: `measure` then takes GRADING_REPEATS repeats (unless the caller gives
`repeats`) of at least GRADING_REPEAT_SECONDS, so grading time goes to the tests. Its Timing
says how many repeats it took; a student running the notebook gets the full count,
and TINYTORCH_TIMING=full in the environment keeps the full count under nbgrader too.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

MIN_REPEAT_SECONDS = 2e-3  # grow `number` until one repeat takes at least this long
MAX_NUMBER = 1_000_000
GRADING_REPEATS = 2             # repeats under nbgrader (NBGRADER_EXECUTION set)
GRADING_REPEAT_SECONDS = 2e-4   # and MIN_REPEAT_SECONDS under nbgrader
NOISY_WALL_OVER_CPU = 1.5       # wall time this many times CPU time: other programs share our core
NOISY_P90_OVER_MEDIAN = 1.5     # slow repeats this many times the typical one


def cpu_clock() -> float:
    """Seconds of CPU time this process has used (all its threads): the clock every figure is taken from."""
    return time.process_time()


def wall_clock() -> float:
    return time.perf_counter()


def grading() -> bool:
    """True while nbgrader runs the notebook (autograde, validate) unless TINYTORCH_TIMING=full:
    measure lightly."""
    return bool(os.environ.get("NBGRADER_EXECUTION")) and os.environ.get("TINYTORCH_TIMING") != "full"


@contextmanager
def blas_threads(n: int | None):
    """Hold numpy's BLAS thread pool at `n` threads inside the block (None: leave it as it is)."""
    if n is None:
        yield
        return
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"blas_threads: expected a thread count >= 1 or None, got {n!r}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def current_blas_threads() -> int:
    """How many threads numpy's BLAS would use now."""
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else 1


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one measured function: CPU time (the figure), wall time beside it."""

    median: float
    p90: float
    min: float
    max: float
    repeats: int   # how many repeats were timed (after warm-up)
    number: int    # calls per repeat
    threads: int   # BLAS threads while timing
    wall_median: float | None = None   # wall-clock seconds per call (None: not recorded)
    wall_p90: float | None = None
    samples: tuple = ()                # CPU seconds per call of each repeat, in the order timed

    @property
    def spread(self) -> float:
        """(p90 - median) / median: 0.05 means the slow runs were 5% slower than the typical one."""
        return (self.p90 - self.median) / self.median if self.median > 0 else 0.0

    @property
    def noisy(self) -> str | None:
        """One line saying why this figure is less sure than usual and what to do, or None."""
        if self.wall_median and self.median > 0 and self.wall_median > NOISY_WALL_OVER_CPU * self.median:
            return (f"busy machine: wall time {format_seconds(self.wall_median)} is "
                    f"{self.wall_median / self.median:.1f}x the CPU time {format_seconds(self.median)} "
                    "(other programs share this CPU). CPU-time figures and ratios still hold; "
                    "wall times do not. Close other programs for wall-clock figures.")
        if self.median > 0 and self.p90 > NOISY_P90_OVER_MEDIAN * self.median:
            return (f"noisy run: the slow repeats took {self.p90 / self.median:.1f}x the typical one; "
                    "rerun, or give more repeats, before trusting small differences.")
        return None

    def __str__(self) -> str:
        plural = "s" if self.threads != 1 else ""
        return (f"{format_seconds(self.median)} (p90 {format_seconds(self.p90)}, {self.repeats} x {self.number} "
                f"calls, {self.threads} BLAS thread{plural})")


@dataclass(frozen=True)
class Ratio:
    """A speedup or slowdown taken from paired repeats: the median and the p10-p90 range of the pairs."""

    median: float
    lo: float
    hi: float

    def __float__(self) -> float:
        return self.median

    def __format__(self, spec: str) -> str:
        spec = spec or ".3g"
        return f"{self.median:{spec}}x ({self.lo:{spec}}-{self.hi:{spec}})"

    def __str__(self) -> str:
        return format(self, ".3g")


def ratio_of(num: Timing, den: Timing) -> Ratio:
    """num / den from repeats timed in turns (compare's Timings: the i-th repeats are neighbours).
    Timings measured apart give one figure with no range (lo = hi = median ratio)."""
    if len(num.samples) and len(num.samples) == len(den.samples):
        r = np.array(num.samples) / np.maximum(np.array(den.samples), 1e-12)
        return Ratio(float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90)))
    m = num.median / den.median if den.median > 0 else float("inf")
    return Ratio(m, m, m)


@dataclass(frozen=True)
class Comparison:
    """Timings of several functions measured in turns; c["name"] is one Timing."""

    timings: dict

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def ratio(self, slow: str, fast: str) -> Ratio:
        """How many times `fast` is quicker than `slow` (time of slow / time of fast), with its p10-p90 range."""
        return ratio_of(self.timings[slow], self.timings[fast])

    @property
    def noisy(self) -> str | None:
        for name, t in self.timings.items():
            if t.noisy:
                return f"{name}: {t.noisy}"
        return None


def format_seconds(s: float) -> str:
    """0.00123 -> '1.23 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _check(repeats, warmup, number):
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure: need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    if number is not None and number < 1:
        raise ValueError(f"measure: number must be >= 1, got {number}")


def _calibrate(fn, min_seconds: float) -> int:
    """Calls per repeat: doubled until one repeat takes min_seconds of CPU time (or 50x that of wall
    time, for a function that mostly waits)."""
    number = 1
    while number < MAX_NUMBER:
        w0, c0 = wall_clock(), cpu_clock()
        for _ in range(number):
            fn()
        if cpu_clock() - c0 >= min_seconds or wall_clock() - w0 >= 50 * min_seconds:
            break
        number *= 2
    return number


def _one_repeat(fn, number: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call over `number` calls."""
    w0, c0 = wall_clock(), cpu_clock()
    for _ in range(number):
        fn()
    c1, w1 = cpu_clock(), wall_clock()
    return (c1 - c0) / number, (w1 - w0) / number


def _timing(cpu: list, wall: list, repeats: int, number: int, threads: int) -> Timing:
    a, w = np.array(cpu), np.array(wall)
    return Timing(median=float(np.median(a)), p90=float(np.percentile(a, 90)), min=float(a.min()),
                  max=float(a.max()), repeats=repeats, number=number, threads=threads,
                  wall_median=float(np.median(w)), wall_p90=float(np.percentile(w, 90)),
                  samples=tuple(float(x) for x in a))


def _defaults(repeats):
    if repeats is None:  # the default: 7, or GRADING_REPEATS under nbgrader; an explicit count is kept
        repeats = GRADING_REPEATS if grading() else 7
    return repeats, (GRADING_REPEAT_SECONDS if grading() else MIN_REPEAT_SECONDS)


def measure(fn, *, repeats: int | None = None, warmup: int = 1, number: int | None = None,
            threads: int | None = 1) -> Timing:
    """Time `fn()`: `warmup` untimed calls, then `repeats` timed repeats of `number` calls each.

    Returns CPU seconds per call (median, p90, min, max) with wall seconds beside them.
    number=None picks it: doubled until one repeat takes MIN_REPEAT_SECONDS of CPU time.
    threads: BLAS threads held fixed while timing (None: leave numpy's default).
    Under nbgrader (see grading()) GRADING_REPEATS repeats unless `repeats` is given (a graded test may
    ask for a count), calibrated to GRADING_REPEAT_SECONDS.
    """
    repeats, min_seconds = _defaults(repeats)
    _check(repeats, warmup, number)
    with blas_threads(threads):
        used = current_blas_threads()
        for _ in range(warmup):
            fn()
        if number is None:
            number = _calibrate(fn, min_seconds)
        cpu, wall = zip(*[_one_repeat(fn, number) for _ in range(repeats)])
    return _timing(list(cpu), list(wall), repeats, number, used)


def compare(fns: dict, *, repeats: int | None = None, warmup: int = 1, number: int | None = None,
            threads: int | None = 1) -> Comparison:
    """Time several functions in turns: repeat i of every function runs before repeat i+1 of any,
    the order rotating each round (A B C, B C A, ...), so all sides see the same machine.

        c = compare({"no cache": lambda: gen(False), "cache": lambda: gen(True)})
        c["cache"].median             # CPU seconds per call
        c.ratio("no cache", "cache")  # Ratio: '9.2x (8.7-9.6)'

    number=None calibrates each function on its own (a fast side gets more calls per repeat).
    """
    if not fns:
        raise ValueError("compare: give at least one function, as {'name': fn, ...}")
    repeats, min_seconds = _defaults(repeats)
    _check(repeats, warmup, number)
    names = list(fns)
    with blas_threads(threads):
        used = current_blas_threads()
        for name in names:
            for _ in range(warmup):
                fns[name]()
        numbers = {n: (number if number is not None else _calibrate(fns[n], min_seconds)) for n in names}
        cpu = {n: [] for n in names}
        wall = {n: [] for n in names}
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                c, w = _one_repeat(fns[name], numbers[name])
                cpu[name].append(c)
                wall[name].append(w)
    return Comparison({n: _timing(cpu[n], wall[n], repeats, numbers[n], used) for n in names})
