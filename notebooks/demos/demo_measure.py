"""What the lecture demos compute, and the measurements they store ahead (`make demos`).

    python demo_measure.py                   # every demo's stored/<demo>.json (a few minutes)
    python demo_measure.py kvcache pruning   # some of them
    python demo_measure.py --first           # only the stored first figures (after editing a demo)

Every function runs on the library in tinytorch_lib/ (the course reference or your exports);
every timing is the course's `compare` (CPU time, sides in turns, one BLAS thread). A demo's
"measure live" button calls the same functions. progress(text) is told what is being measured.
"""
from __future__ import annotations

import copy
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

LIBRARIES = {"quantization": ("training", "dataloader", "quantization", "profiler", "compression"),
             "pruning": ("training", "dataloader", "compression"),
             "kvcache": ("transformer", "acceleration", "kvcache"),
             "vectorization": ("training", "dataloader", "spatial", "acceleration")}


def _quiet(text: str) -> None:
    pass


@lru_cache(maxsize=None)
def digits_mlp():
    """The trained digit MLP and the 360 held-out test images (one batch)."""
    from tinytorch_lib import data_dir
    from tinytorch_lib.dataloader import DataLoader, load_digits
    from tinytorch_lib.training import load_model

    model, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
    return model, DataLoader(load_digits("test", flatten=True), batch_size=360)


# ---------------------------------------------------------------- quantization

SCHEMES = {"per-tensor symmetric": (False, True), "per-tensor affine": (False, False),
           "per-channel symmetric": (True, True), "per-channel affine": (True, False)}
BITS = list(range(2, 9))


def pack_codes(q: np.ndarray, bits: int) -> np.ndarray:
    """int8 codes in [-2^(bits-1), 2^(bits-1)-1] -> uint8, `bits` bits per code (ceil(size*bits/8) bytes)."""
    u = (q.astype(np.int16).ravel() + 2 ** (bits - 1)).astype(np.uint8)    # 0 .. 2^bits - 1
    return np.packbits(np.unpackbits(u[:, None], axis=1)[:, 8 - bits:])     # keep the low `bits` bits


def unpack_codes(packed: np.ndarray, bits: int, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape))
    low = np.unpackbits(packed, count=n * bits).reshape(n, bits)
    u = np.packbits(np.pad(low, ((0, 0), (8 - bits, 0))), axis=1).ravel()
    return (u.astype(np.int16) - 2 ** (bits - 1)).astype(np.int8).reshape(shape)


@lru_cache(maxsize=None)
def quantize_model(bits: int, scheme: str) -> dict:
    """Quantize every Linear weight (per channel: one scale per output row, axis 0); real bytes, error, accuracy."""
    from tinytorch_lib.compression import prunable_layers
    from tinytorch_lib.quantization import dequantize_tensor, quantize_tensor
    from tinytorch_lib.training import evaluate

    per_channel, symmetric = SCHEMES[scheme]
    model, test = digits_mlp()
    axis = 0 if per_channel else None
    new = copy.deepcopy(model)
    stored = {"codes, bit-packed": 0, "codes, int8 buffer": 0, "scales (float32)": 0,
              "zero points (int32)": 0, "biases (float32)": 0}
    sq_err, sq_w, max_err, n = 0.0, 0.0, 0.0, 0
    codes = {}
    for (name, layer), (_, copy_layer) in zip(prunable_layers(model), prunable_layers(new)):
        w = layer.weight.data
        q, scale, zero = quantize_tensor(w, bits=bits, symmetric=symmetric, axis=axis)
        packed = pack_codes(q, bits)
        assert np.array_equal(unpack_codes(packed, bits, q.shape), q), "bit packing lost a code"
        w_hat = dequantize_tensor(q, scale, zero, axis=axis)
        copy_layer.weight.data = w_hat
        codes[name] = (q, scale, zero, w_hat)
        stored["codes, bit-packed"] += packed.nbytes
        stored["codes, int8 buffer"] += q.nbytes
        stored["scales (float32)"] += scale.nbytes
        stored["zero points (int32)"] += 0 if symmetric else zero.nbytes
        stored["biases (float32)"] += layer.bias.data.nbytes
        err = np.abs(w.astype(np.float64) - w_hat)
        sq_err, sq_w, max_err, n = (sq_err + (err ** 2).sum(), sq_w + (w.astype(np.float64) ** 2).sum(),
                                    max(max_err, float(err.max())), n + w.size)
    total = (stored["codes, bit-packed"] + stored["scales (float32)"] + stored["zero points (int32)"]
             + stored["biases (float32)"])
    return {"accuracy": evaluate(new, test), "rms_error": float(np.sqrt(sq_err / n)),
            "relative_error": float(np.sqrt(sq_err / sq_w)), "max_error": max_err,
            "stored": stored, "bytes": total, "codes": codes}


def measure_quantization(progress=_quiet) -> dict:
    """Accuracy at every bit width and scheme (the curves), FP32 accuracy and bytes."""
    from tinytorch_lib.profiler import model_bytes
    from tinytorch_lib.training import evaluate

    model, test = digits_mlp()
    curves = {}
    for scheme in SCHEMES:
        progress(f"{scheme}, 2-8 bits")
        curves[scheme] = [quantize_model(b, scheme)["accuracy"] for b in BITS]
    return {"bits": BITS, "curves": curves, "fp32_accuracy": evaluate(model, test), "fp32_bytes": model_bytes(model)}


# ---------------------------------------------------------------- pruning

METHODS = {"unstructured": "magnitude", "structured": "structured"}  # label -> prune(method=...)
PERCENTS = list(range(0, 100, 5))
_SCRATCH = tempfile.TemporaryDirectory(prefix="pruning-demo-")  # removed when the process exits


@lru_cache(maxsize=None)
def prune_model(percent: int, kind: str) -> dict:
    """Prune, make permanent, store three ways (each checked by converting back), write the file; accuracy."""
    from tinytorch_lib.compression import (from_bitmask, from_csr, make_permanent, prunable_layers, prune,
                                           save_compressed, to_bitmask, to_csr)
    from tinytorch_lib.compression import sparsity as zero_fraction
    from tinytorch_lib.training import evaluate

    model, test = digits_mlp()
    pruned = make_permanent(prune(model, percent / 100, METHODS[kind]))
    dense = bitmask = csr = 0
    for _, layer in prunable_layers(pruned):
        w = layer.weight.data
        bits, values = to_bitmask(w)
        assert np.array_equal(from_bitmask(bits, values, w.shape), w), "bitmask round trip changed the weights"
        v, idx, ptr = to_csr(w)
        assert np.array_equal(from_csr(v, idx, ptr, w.shape), w), "CSR round trip changed the weights"
        dense, bitmask, csr = dense + w.nbytes, bitmask + bits.nbytes + values.nbytes, csr + v.nbytes + idx.nbytes + ptr.nbytes
    file_bytes = save_compressed(Path(_SCRATCH.name) / f"mlp-{kind}-{percent}.ttc", pruned)
    return {"first_layer": prunable_layers(pruned)[0][1].weight.data, "accuracy": evaluate(pruned, test),
            "sparsity": zero_fraction(pruned)["total"], "dense": dense, "bitmask": bitmask, "csr": csr,
            "file": file_bytes}


def measure_pruning(progress=_quiet) -> dict:
    """File bytes and accuracy at 0-95% sparsity, both methods (the curves)."""
    curves = {}
    for kind in METHODS:
        progress(f"{kind}, 0-95% sparsity")
        curves[kind] = [{"percent": p, "file": prune_model(p, kind)["file"], "accuracy": prune_model(p, kind)["accuracy"]}
                        for p in PERCENTS]
    return {"curves": curves}


# ---------------------------------------------------------------- KV cache

PROMPT_TEXT = "And the LORD said unto Moses, "
LENGTHS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


@lru_cache(maxsize=None)
def gpt():
    """-> (models {"vectorize(gpt)", "as trained"}, tokenizer, prompt ids)."""
    from tinytorch_lib.acceleration import vectorize
    from tinytorch_lib.transformer import load_gpt

    model, tokenizer, _ = load_gpt()
    return {"vectorize(gpt)": vectorize(model), "as trained": model}, tokenizer, tokenizer.encode(PROMPT_TEXT)


def cache_bytes(positions: int) -> int:
    from tinytorch_lib.kvcache import KVCache

    models, _, _ = gpt()
    m = models["as trained"]
    return KVCache(m.n_layers, 1, m.n_heads, positions, m.d_model // m.n_heads).nbytes


def kv_repeats(n: int) -> int:
    return 7 if n <= 16 else 5 if n <= 64 else 3


def time_kv(which: str, n: int, repeats: int | None = None) -> dict:
    """Generate n tokens without and with the cache, timed in turns by the course's compare (CPU time)."""
    from tinytorch_lib.kvcache import generate
    from tinytorch_lib.timing import compare

    models, tokenizer, prompt = gpt()
    tokens = {}

    def run(use_cache: bool):
        tokens[use_cache] = generate(models[which], prompt, n, use_cache=use_cache)

    c = compare({"without": lambda: run(False), "with": lambda: run(True)}, repeats=repeats or kv_repeats(n),
                warmup=1 if n <= 64 else 0, number=1)
    ratio = c.ratio("without", "with")
    return {"n": n, "without": c["without"].median / n, "with": c["with"].median / n,
            "without_wall": c["without"].wall_median / n, "with_wall": c["with"].wall_median / n,
            "speedup": [ratio.median, ratio.lo, ratio.hi], "repeats": c["with"].repeats,
            "identical": bool(np.array_equal(tokens[False], tokens[True])),
            "text": tokenizer.decode(tokens[True][len(prompt):].tolist()), "noisy": c.noisy}


def measure_kvcache(progress=_quiet) -> dict:
    table = {}
    for which in ("vectorize(gpt)", "as trained"):
        table[which] = {}
        for n in LENGTHS:
            progress(f"{which}, {n} new tokens")
            table[which][str(n)] = time_kv(which, n)
    models, tokenizer, prompt = gpt()
    m = models["as trained"]
    return {"prompt_tokens": len(prompt), "layers": m.n_layers, "heads": m.n_heads, "d_model": m.d_model,
            "max_len": m.max_len, "lengths": LENGTHS, "table": table}


# ---------------------------------------------------------------- vectorization (the convolution ladder)

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PYTHON_MAX = 8  # largest batch the pure-Python rung runs at (at 256 one call takes about half a second)


@lru_cache(maxsize=None)
def digits_conv():
    """The first layer of the trained digit CNN and the held-out images (360, 1, 8, 8) float32."""
    from tinytorch_lib import data_dir
    from tinytorch_lib.dataloader import load_digits
    from tinytorch_lib.training import load_model

    cnn, _ = load_model(data_dir("cnn_digits.npz") / "cnn_digits.npz")
    return cnn[0], load_digits("test", flatten=False).tensors[0].data


def rungs() -> list:
    from tinytorch_lib.acceleration import CONV_LADDER
    return list(CONV_LADDER)


def time_conv(batch: int, repeats: int = 5) -> dict:
    """Every rung at this batch, each checked against the reference, then timed in turns (CPU time)."""
    from tinytorch_lib.acceleration import CONV_LADDER, TOLERANCE, conv2d_reference, relative_error
    from tinytorch_lib.timing import compare

    conv, images = digits_conv()
    args = (images[:batch], conv.weight.data, conv.bias.data, conv.stride, conv.padding)
    want = conv2d_reference(*args)
    ladder = {name: fn for name, fn in CONV_LADDER.items() if batch <= PYTHON_MAX or name != rungs()[0]}
    errors = {}
    for name, fn in ladder.items():
        errors[name] = relative_error(fn(*args), want)
        assert errors[name] <= TOLERANCE, f"{name}: relative error {errors[name]:.2e} from the reference"
    c = compare({name: (lambda fn=fn: fn(*args)) for name, fn in ladder.items()}, repeats=repeats)
    names = list(ladder)
    out = {}
    for i, name in enumerate(names):
        r = c.ratio(names[i - 1], name) if i else None
        out[name] = {"ms": c[name].median * 1e3, "p90_ms": c[name].p90 * 1e3, "wall_ms": c[name].wall_median * 1e3,
                     "x_previous": [r.median, r.lo, r.hi] if r else None, "error": errors[name]}
    return {"batch": batch, "rungs": out, "noisy": c.noisy}


def measure_vectorization(progress=_quiet) -> dict:
    ladder = {}
    for b in BATCHES:
        progress(f"batch {b}")
        ladder[str(b)] = time_conv(b)
    return {"batches": BATCHES, "python_max": PYTHON_MAX, "rungs": rungs(), "ladder": ladder}


MEASURE = {"quantization": measure_quantization, "pruning": measure_pruning, "kvcache": measure_kvcache,
           "vectorization": measure_vectorization}


def draw_first(demo: str) -> Path:
    """Run the demo's notebook code here and store its first figure (stored/<demo>-first.png): a demo
    shows it at once, before matplotlib is imported, while the files that draw it are unchanged."""
    import json

    import jupytext

    from demo_common import STORED, code_hash

    png = STORED / f"{demo}-first.png"
    png.unlink(missing_ok=True)
    nb = jupytext.read(Path(__file__).resolve().parent / f"{demo}.py")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code").replace("display(app.box)", "")
    scope = {"__name__": f"demo_{demo}"}
    exec(compile(code, f"{demo}.py", "exec"), scope)
    app = scope["app"]
    png.write_bytes(app.image.value)
    deadline = time.monotonic() + 60
    while app.prefetching and time.monotonic() < deadline:  # let the background drawing end before exit
        time.sleep(0.1)
    path = STORED / f"{demo}.json"
    stored = json.loads(path.read_text())
    stored["first"] = {"values": {k: str(w.value) for k, w in app.controls.items()}, "code": code_hash(demo)}
    path.write_text(json.dumps(stored, indent=1) + "\n")
    return png


def main(argv: list) -> None:
    import tinytorch_lib
    from demo_common import save_stored

    first_only = "--first" in argv
    demos = [a for a in argv if not a.startswith("--")] or list(MEASURE)
    for demo in demos:
        tinytorch_lib.check_ready(*LIBRARIES[demo])
        start = time.monotonic()
        if not first_only:
            data = MEASURE[demo](lambda text: print(f"  {demo}: {text}", flush=True))
            path = save_stored(demo, data, *LIBRARIES[demo])
            print(f"{demo}: measured in {time.monotonic() - start:.0f} s, wrote {path}", flush=True)
        print(f"{demo}: first figure {draw_first(demo)}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
