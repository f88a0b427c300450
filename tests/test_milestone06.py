"""Milestone 06 end to end in its quick mode: the invariants, not the timings.

Each part runs as the script a student runs (from its folder), with MLPERF_QUICK=1 and the
results in a temporary folder. Checked: every size is the length of a file that exists,
accuracies are those of the loaded files on the 360 held-out images, the chosen model keeps
its floor, cached tokens equal uncached ones, the JSON and PNG files exist, and a library
file with an unfinished stub stops the run naming the module and task.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tito import grading
from tito.modules import ROOT

FOLDER = ROOT / "notebooks" / "06_2018_mlperf"
pytestmark = pytest.mark.pipeline


def run_part(script: str, results: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLPERF_QUICK="1", MLPERF_RESULTS=str(results), MPLBACKEND="Agg")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, script], cwd=FOLDER, env=env, capture_output=True, text=True, timeout=600)


def run_and_read(tmp_path_factory, script: str, table: str) -> tuple:
    """Runs a part in quick mode into its own results folder -> (folder, stdout, the JSON table it wrote)."""
    results = tmp_path_factory.mktemp(Path(script).stem)
    proc = run_part(script, results)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results, proc.stdout, json.loads((results / table).read_text())


@pytest.fixture(scope="module")
def part1(tmp_path_factory):
    return run_and_read(tmp_path_factory, "01_optimization_olympics.py", "table2_static.json")


def test_part1_sizes_are_files_on_disk_and_accuracies_are_the_loaded_files(part1):
    from tinytorch_lib.compression import load_compressed
    from tinytorch_lib.dataloader import DataLoader, load_digits
    from tinytorch_lib.training import evaluate, load_model

    results, out, data = part1
    assert data["test_images"] == 360 and data["quick"] is True
    for name, flatten in (("mlp", True), ("cnn", False)):
        m = data["models"][name]
        rows = m["table2"] + m["search"]
        for r in rows:
            assert Path(r["path"]).stat().st_size == r["bytes"], r
        test = DataLoader(load_digits("test", flatten=flatten), batch_size=360)
        base = m["table2"][0]
        assert evaluate(load_model(base["path"])[0], test) == base["accuracy"] == m["base_accuracy"]
        for r in m["table2"][1:]:
            assert evaluate(load_compressed(r["path"])[0], test) == r["accuracy"], r
        floor = m["chosen"]["99% of FP32"]
        assert floor["best"]["accuracy"] >= floor["floor"] >= 0.99 * m["base_accuracy"] - 1e-12
        assert floor["best"]["bytes"] == min(t["bytes"] for t in m["search"] if t["accuracy"] >= floor["floor"])
        assert m["table2"][1]["bytes"] < base["bytes"] / 3  # INT8 is really stored as int8
    assert data["cnn_vectorize_logit_error"] < 1e-5
    plain, fast = data["cnn_vectorize"]
    assert plain["accuracy"] == fast["accuracy"] == data["models"]["cnn"]["base_accuracy"]
    assert (results / "compression_curves.png").stat().st_size > 10_000
    assert "Table 2, static optimization: MLP" in out and "Table 2, static optimization: CNN" in out


@pytest.fixture(scope="module")
def part2(tmp_path_factory):
    return run_and_read(tmp_path_factory, "02_generation_speedup.py", "table3_generation.json")


def test_part2_tokens_identical_memory_measured_and_files_written(part2):
    results, out, data = part2
    assert data["table3"] and all(r["identical"] for r in data["table3"])
    assert data["table3_as_trained"] and all(r["identical"] for r in data["table3_as_trained"])
    assert {r["new_tokens"] for r in data["table3_as_trained"]} <= {r["new_tokens"] for r in data["table3"]}
    assert data["table3_long_prompt"] and all(r["identical"] for r in data["table3_long_prompt"])
    assert data["table3_long_prompt"][0]["prompt_tokens"] > data["table3"][0]["prompt_tokens"]
    assert all(r["ms_per_token_with"] > 0 and r["ms_per_token_without"] > 0 for r in data["table3"])
    assert all(m["bytes"] == m["formula"] for m in data["cache_memory"])
    assert data["profile"] and all(0 < p["attention_share"] < 1 for p in data["profile"])
    for png in ("generation_profile.png", "generation_speedup.png"):
        assert (results / png).stat().st_size > 10_000
    assert "Table 3, generation" in out


def test_an_unfinished_stub_stops_the_run_naming_module_and_task(tmp_path):
    lib = grading.reference_library(tmp_path) / "tinytorch_lib"
    path = lib / "kvcache.py"
    text = path.read_text()
    stub = ("raise NotImplementedError('Module 18 (kvcache), Task 18.2, kvcache_update: not implemented yet. "
            "Fill it in in your notebook, then run `tito module export 18`.')")
    text, n = re.subn(r"(def kvcache_update\(.*?\n(?:    .*\n)*?    v = .*\n)", rf"\1    {stub}\n", text, count=1)
    assert n == 1
    path.write_text(text)
    proc = run_part("02_generation_speedup.py", tmp_path / "results", pythonpath=str(tmp_path))
    assert proc.returncode != 0
    assert "Module 18 (kvcache), Task 18.2, kvcache_update" in proc.stderr, proc.stderr[-2000:]
    assert "tito module export 18" in proc.stderr and not (tmp_path / "results" / "table3_generation.json").exists()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
