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


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec); one line per row, aligned."""
    widths = [max(len(h), *(len(format(r[k], f)) for r in rows)) for k, h, f in columns]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths)))
    for r in rows:
        print("  ".join(format(r[k], f).ljust(w) for (k, _, f), w in zip(columns, widths)))
