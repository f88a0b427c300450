"""The course's figure conventions: plain-number axes, one byte unit, legends clear of the data.

Hand-written course infrastructure (not exported from a notebook), like timing.py: the module
notebooks, Milestone 06 and the lecture demos all draw with it, so every figure reads the same way.

- **Plain numbers on log axes**: matplotlib labels a log axis `10^1` or `2^5`, and a short one
  `6x10^0`. Here a log axis gets ticks at 1-2-5 steps (or at the values you give, e.g. the
  lengths measured) labelled `32`, `992`, `20 ms`-style plain numbers, `2x`, `70 kB`, and its
  range reaches the next tick beyond the data, so every point lies between two labels.
- **One byte unit, decimal**: 1 kB = 1000 bytes, 1 MB = 1000 kB (SI, as the milestone's tables print
  raw bytes: 69,392 bytes reads 69.4 kB). Every memory figure uses `format_bytes`.
- **Legends clear of the data**: `place_legend` tries the usual corners and sides and keeps the
  first that covers no data point (lines sampled every few pixels, so a line crossing the box
  counts, and bars, texts and annotations); if none is free it makes room below (or above) the
  data, and only then goes outside, right of the axes.
- **Checked, not eyeballed**: `figure_problems(fig)` lists tick labels that are not plain numbers
  and legends that cover data; the tests assert it is empty for every figure.

    fig, ax = plt.subplots()
    ax.plot(lengths, ms, marker="o")
    log_axis(ax, "x", "count", ticks=lengths)   # 32 64 ... 992
    log_axis(ax, "y", "number")                 # 1 2 5 10 20 50 (ms in the label)
    place_legend(ax)
"""
from __future__ import annotations

import math
import re

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

KB = 1000  # bytes; kB, MB, GB are powers of 1000 everywhere in the course
UNITS = (("GB", KB**3), ("MB", KB**2), ("kB", KB), ("B", 1))


def format_number(x: float) -> str:
    """A plain number, no exponent: 32 -> '32', 1024 -> '1,024', 0.5 -> '0.5', 0.00012 -> '0.00012'."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    if abs(x) >= 1 and abs(x - round(x)) < 1e-9 * abs(x):
        return f"{int(round(x)):,}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))  # 3 significant digits
    text = f"{round(x, digits):,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_bytes(n: float) -> str:
    """Bytes with a decimal unit, 3 significant digits: 512 -> '512 B', 70000 -> '70 kB', 1.5e6 -> '1.5 MB'."""
    for name, size in UNITS:
        value = float(f"{abs(n) / size:.3g}")  # round first: 999,999 bytes is '1 MB', not '1,000 kB'
        if value >= 1 or size == 1:
            return f"{'-' if n < 0 else ''}{format_number(value)} {name}"
    raise AssertionError("unreachable")


def format_ratio(x: float) -> str:
    """A speedup or compression ratio: 2 -> '2x', 12.46 -> '12.5x'."""
    return f"{format_number(x)}x"


def format_percent(x: float) -> str:
    """A percentage already in percent: 97.5 -> '97.5%'."""
    return f"{format_number(x)}%"


FORMATS = {"number": format_number, "count": format_number, "bytes": format_bytes, "ratio": format_ratio,
           "percent": format_percent}


def nice_log_ticks(lo: float, hi: float, steps=(1, 2, 5)) -> list[float]:
    """1-2-5 ticks from the last one at or below lo to the first one at or above hi (lo, hi > 0).

    More than 8 ticks: only the 1s of each decade (and the ends), so labels never crowd."""
    if not (lo > 0 and hi > 0):
        raise ValueError(f"a log axis needs positive values, got the range {lo} .. {hi}")
    lo, hi = min(lo, hi), max(lo, hi)
    candidates = sorted(s * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
                        for s in steps)
    below = [c for c in candidates if c <= lo * (1 + 1e-9)]
    above = [c for c in candidates if c >= hi * (1 - 1e-9)]
    first, last = below[-1], above[0]
    ticks = [c for c in candidates if first <= c <= last]
    if len(ticks) > 8 and steps != (1,):
        ends = {ticks[0], ticks[-1]}
        ticks = sorted(ends | {c for c in ticks if abs(math.log10(c) - round(math.log10(c))) < 1e-9})
    return ticks


def _data_range(ax, axis: str) -> tuple[float, float]:
    """The positive data limits of the axes along x or y (what was plotted, not the view)."""
    lim = ax.dataLim.intervalx if axis == "x" else ax.dataLim.intervaly
    vals = [v for v in lim if np.isfinite(v) and v > 0]
    if not vals:
        raise ValueError(f"log_axis({axis!r}): plot the data first (no positive values on this axis yet)")
    return min(vals), max(vals)


def log_axis(ax, axis: str = "x", kind: str = "number", ticks=None, base: float = 10) -> list[float]:
    """Make `axis` of `ax` logarithmic with plain labels; call after plotting. -> the ticks used.

    kind: 'number'/'count' (32, 992), 'bytes' (70 kB), 'ratio' (2x), 'percent'. ticks: the values to
    label (e.g. the lengths measured); default 1-2-5 steps covering the data. The view reaches the
    outer ticks, so every point has a labelled value on each side."""
    fmt = FORMATS[kind]
    lo, hi = _data_range(ax, axis)
    ticks = sorted(float(t) for t in ticks) if ticks is not None else nice_log_ticks(lo, hi)
    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    a.set_major_locator(FixedLocator(ticks))
    a.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))
    a.set_minor_formatter(NullFormatter())
    pad = (max(hi, ticks[-1]) / min(lo, ticks[0])) ** 0.03  # 3% of the decades shown, each side
    (ax.set_xlim if axis == "x" else ax.set_ylim)(min(lo, ticks[0]) / pad, max(hi, ticks[-1]) * pad)
    return ticks


def plain_axis(ax, axis: str = "y", kind: str = "bytes") -> None:
    """A linear axis labelled with plain numbers of `kind` (e.g. bytes as '500 kB', '1 MB')."""
    fmt = FORMATS[kind]
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))


def label_points(ax, xs, ys, kind: str = "number", color=None, offset=(0, 6), fontsize: float = 7, texts=None,
                 ha: str = "center") -> list:
    """Write each point's value next to it (above by default; offset in points). -> the Text objects."""
    fmt = FORMATS[kind]
    out = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        out.append(ax.annotate(texts[i] if texts is not None else fmt(y), (x, y), textcoords="offset points",
                               xytext=offset, ha=ha, va="bottom" if offset[1] >= 0 else "top",
                               fontsize=fontsize, color=color))
    return out


def mark_point(ax, x, y, text: str, color: str = "tab:red", xytext=None):
    """Ring a chosen point and annotate it with `text` and an arrow. -> the annotation (a Text).

    xytext: the text's offset in points; default: 55 points towards the middle of the axes, so the
    text stays inside them (call it once the axes' limits are final)."""
    ax.scatter([x], [y], s=160, facecolors="none", edgecolors=color, linewidths=2, zorder=5)
    if xytext is None:
        ax.get_xlim(), ax.get_ylim()  # apply any pending autoscaling before reading positions
        fx, fy = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))
        xytext = (55 if fx < 0.5 else -55, -45 if fy > 0.5 else 45)
    return ax.annotate(text, (x, y), textcoords="offset points", xytext=xytext, fontsize=8, color=color,
                       ha="left" if xytext[0] > 0 else "right", va="top" if xytext[1] < 0 else "bottom",
                       arrowprops={"arrowstyle": "->", "color": color}, zorder=6,
                       bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": color, "alpha": 0.9})


def _renderer(fig):
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure (the demos): give it an Agg canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def data_points(ax, step: float = 4.0) -> np.ndarray:
    """Display coordinates (pixels) of everything plotted in ax: markers, scatter points, error bars,
    bars, texts, and points every `step` pixels along each line, so a line crossing a box counts. -> (n, 2)."""
    pts = [np.empty((0, 2))]

    def along(xy):
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy) < 2:
            return xy
        out = [xy[:1]]
        for a, b in zip(xy[:-1], xy[1:]):
            n = max(1, int(np.hypot(*(b - a)) // step))
            out.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
        return np.concatenate(out)

    for line in ax.get_lines():
        if line.get_visible():
            xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
            pts.append(xy if line.get_linestyle() in ("None", "", " ") else along(xy))  # markers only: no line
    for patch in ax.patches:  # bars: their whole area, on a grid `step` pixels apart
        if patch.get_visible():
            box = patch.get_window_extent()
            xs = np.linspace(box.x0, box.x1, max(2, int(box.width // step) + 1))
            ys = np.linspace(box.y0, box.y1, max(2, int(box.height // step) + 1))
            pts.append(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2))
    renderer = _renderer(ax.figure)
    for text in ax.texts:  # annotations and value labels: a legend must not hide them either
        if text.get_visible() and text.get_text():
            box = text.get_window_extent(renderer)
            pts.append(np.array([[box.x0, box.y0], [box.x1, box.y1], [box.x0, box.y1], [box.x1, box.y0],
                                 [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]]))
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        offsets = np.asarray(coll.get_offsets(), float)
        if len(offsets) and not (len(offsets) == 1 and np.all(offsets == 0)):
            pts.append(coll.get_offset_transform().transform(offsets))
        for path in coll.get_paths() if not len(offsets) or np.all(offsets == 0) else ():
            pts.append(along(coll.get_transform().transform(path.vertices)))  # error bars, fills
    return np.concatenate(pts)


def covered_points(ax, legend=None) -> int:
    """How many of ax's data points (see data_points) the legend's box covers."""
    legend = legend or ax.get_legend()
    if legend is None:
        return 0
    box = legend.get_window_extent(_renderer(ax.figure))
    pts = data_points(ax)
    inside = (pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)
    return int(inside.sum())


LOCATIONS = ("upper left", "upper right", "lower right", "lower left", "center right", "center left",
             "upper center", "lower center", "center")


def _widen(ax, frac: float, below: bool) -> None:
    """Extend ax's y range by `frac` of its span (in its own scale) below or above the data."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        span = math.log10(hi / lo) * frac
        ax.set_ylim(lo / 10**span, hi) if below else ax.set_ylim(lo, hi * 10**span)
    else:
        span = (hi - lo) * frac
        ax.set_ylim(lo - span, hi) if below else ax.set_ylim(lo, hi + span)


def place_legend(ax, handles=None, labels=None, make_room: bool = True, **kwargs):
    """A legend at the first location that covers no data. None free: with make_room, the y range grows
    below the data (then above) until a lower (upper) location is free; else, or still none, the legend
    goes outside, right of the axes.

    Call it last, after the axes' data, scales and limits are final (and after tight_layout if the
    figure uses it: the axes' size decides what the box covers). -> the Legend."""
    if handles is not None:
        kwargs["handles"] = handles
    if labels is not None:
        kwargs["labels"] = labels
    kwargs.setdefault("fontsize", 7)
    for loc in LOCATIONS:
        legend = ax.legend(loc=loc, **kwargs)
        if covered_points(ax, legend) == 0:
            return legend
    if make_room and ax.get_ylim()[0] < ax.get_ylim()[1]:
        ylim = ax.get_ylim()
        for below, locs in ((True, ("lower right", "lower left", "lower center")),
                            (False, ("upper right", "upper left", "upper center"))):
            for frac in (0.25, 0.5, 0.8):
                ax.set_ylim(ylim)
                _widen(ax, frac, below)
                for loc in locs:
                    legend = ax.legend(loc=loc, **kwargs)
                    if covered_points(ax, legend) == 0:
                        return legend
        ax.set_ylim(ylim)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


NOT_PLAIN = re.compile(r"[$^×]|\\times|\de[+-]?\d")  # mathtext, powers, 'x10', '1e+03'


def figure_problems(fig) -> list[str]:
    """What breaks the conventions above, one line each (empty: none): a tick label or offset text
    that is not a plain number (`10^3`, `2^5`, `6x10^0`, `1e+03`) and a legend covering data."""
    _renderer(fig)
    fig.canvas.draw()
    problems = []
    for i, ax in enumerate(fig.axes):
        name = ax.get_title() or f"axes {i}"
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t.get_text() for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)]
            labels.append(axis.get_offset_text().get_text())
            for text in labels:
                if NOT_PLAIN.search(text):
                    problems.append(f"{name}: {axis.axis_name} tick label {text!r} is not a plain number")
        if ax.get_legend() is not None and (n := covered_points(ax)):
            problems.append(f"{name}: the legend covers {n} data points")
    return problems
