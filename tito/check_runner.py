"""The sandbox side of the outside checks (tito/checks.py): runs a student's exported code, answers
requests with data.

tito/checks.py starts `python -c <this file's text>` inside the grading sandbox (tito/sandbox.py).
The first requests carry the student's export (the notebook's export-tagged cells, stubs named, as
`tito module export` writes them): "open" makes the module `tinytorch_lib.<its file>`, then one "cell"
request per exported cell runs it there, so a cell that raises costs its own names only, as in a
notebook. Each later request runs
code or evaluates an expression in a scope of its own (a copy of that module's names) and answers with
the value as data: numbers, strings, None, tuples, lists, dicts, numpy arrays, dtypes and scalars,
encoded by `encode` below (JSON: nothing in the answer can run code in the grader). An exception in
the student's code comes back as its type, message and the exported line that raised.

Only the Python standard library and numpy here: this text runs where tito is not importable. The
protocol is one JSON object per line on the process's original stdout; the student's own prints and
warnings go to /dev/null.
"""
import base64
import json
import linecache
import math
import os
import sys
import traceback

EXPORT_FILE = "<your notebook's exported cells>"
ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: arrays of anything else are not data


class NotData(TypeError):
    """A value that cannot cross to the grader (a Tensor, a function, a generator...)."""


def encode(value, np, depth=0):
    """`value` as JSON-able data; NotData naming what cannot cross."""
    if depth > 40:
        raise NotData("nested more than 40 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value if type(value) is int else int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, complex):
        return {"__complex__": [value.real, value.imag]}
    if isinstance(value, np.dtype):
        return {"__dtype__": value.str if value.kind in ARRAY_KINDS else str(value)}
    if isinstance(value, type) and issubclass(value, np.generic):
        return {"__dtype__": np.dtype(value).str}
    if isinstance(value, np.generic):
        return {"__scalar__": encode(np.asarray(value), np, depth + 1)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in ARRAY_KINDS:
            raise NotData(f"an array of dtype {value.dtype}")
        data = np.ascontiguousarray(value)  # note: 1-d for a 0-d array; the shape comes from `value`
        return {"__ndarray__": [data.dtype.str, list(value.shape), base64.b64encode(data.tobytes()).decode()]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, np, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, np, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotData("a dict with keys that are not strings")
        return {"__dict__": {k: encode(v, np, depth + 1) for k, v in value.items()}}
    raise NotData(f"a {type(value).__module__}.{type(value).__qualname__}")


def decode(data, np, depth=0):
    """The inverse of `encode`, trusting nothing: only the shapes above are accepted."""
    if depth > 40:
        raise ValueError("nested more than 40 levels deep")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, np, depth + 1) for v in data]
    if not (isinstance(data, dict) and len(data) == 1):
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    (tag, body), = data.items()
    if tag == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "__complex__" and isinstance(body, list) and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "__dtype__" and isinstance(body, str):
        dtype = np.dtype(body)
        if dtype.kind not in ARRAY_KINDS:
            raise ValueError(f"dtype {body!r} is not data")
        return dtype
    if tag == "__scalar__":
        array = decode(body, np, depth + 1)
        if not (isinstance(array, np.ndarray) and array.shape == ()):
            raise ValueError("a scalar must be a 0-d array")
        return array[()]
    if tag == "__ndarray__" and isinstance(body, list) and len(body) == 3:
        dtype, shape, b64 = np.dtype(body[0]), tuple(int(n) for n in body[1]), base64.b64decode(body[2])
        if dtype.kind not in ARRAY_KINDS or any(n < 0 for n in shape) or math.prod(shape) * dtype.itemsize != len(b64):
            raise ValueError("a malformed array")
        return np.frombuffer(b64, dtype=dtype).reshape(shape).copy()
    if tag == "__tuple__" and isinstance(body, list):
        return tuple(decode(v, np, depth + 1) for v in body)
    if tag == "__dict__" and isinstance(body, dict):
        return {str(k): decode(v, np, depth + 1) for k, v in body.items()}
    raise ValueError(f"not an encoded value: tag {tag!r}")


def text_of(error: BaseException) -> str:
    """str(error), cut at 4000 characters; a placeholder when its __str__ raises."""
    try:
        return str(error)[:4000]
    except BaseException:
        return f"<the message of this {type(error).__name__} could not be read>"


def raised_at(error: BaseException) -> str:
    """Where in the export it raised (the innermost such frame), as
    'cell matmul, line 5 of your exported cells, in matmul: return x @ w'."""
    at = ""
    lines = linecache.getlines(EXPORT_FILE)
    frames = [f for f, _ in traceback.walk_tb(error.__traceback__)]
    for frame, summary in zip(frames, traceback.extract_tb(error.__traceback__)):
        if summary.filename != EXPORT_FILE:
            continue
        where = f"line {summary.lineno}"
        marker = next((i for i in range(min(summary.lineno, len(lines)) - 1, -1, -1)
                       if lines[i].startswith("# cell ")), None)
        if marker is not None:  # export_text writes "# cell <id>" above each cell's lines
            where = f"cell {lines[marker][len('# cell '):].strip()}, line {summary.lineno - marker - 1}"
        name = getattr(frame.f_code, "co_qualname", summary.name)
        at = f"{where} of your exported cells, in {name}: {(summary.line or '').strip()}"
    return at


def serve() -> None:
    protocol_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    import types
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    module = None
    scopes = {}
    for line in protocol_in:
        request = json.loads(line)
        answer = {"id": request.get("id")}
        try:
            if request["op"] == "open":  # the student's module, empty: its cells come one by one
                name = f"tinytorch_lib.{request['file']}"
                module = types.ModuleType(name)
                module.__file__ = EXPORT_FILE
                sys.modules[name] = module
                linecache.cache[EXPORT_FILE] = (len(request["text"]), None, request["text"].splitlines(True),
                                                EXPORT_FILE)  # tracebacks quote the student's line
                answer["value"] = None
            elif request["op"] == "cell":  # one exported cell, at its own lines of the export
                code = "\n" * (request["first"] - 1) + request["code"]
                exec(compile(code, EXPORT_FILE, "exec"), module.__dict__)
                answer["value"] = None
            else:
                scope = scopes.setdefault(request["scope"], dict(vars(module), np=np, __name__="__check__"))
                scope.update(decode(request.get("inputs") or {"__dict__": {}}, np))
                code = compile(request["code"], "<check>", "exec" if request["op"] == "exec" else "eval")
                value = eval(code, scope)  # exec-mode code evaluates to None
                answer["value"] = encode(value, np)
        except NotData as e:
            answer["error"] = {"type": "NotData", "message": str(e), "at": ""}
        except BaseException as e:  # the student's code may raise anything, SystemExit included
            answer["error"] = {"type": type(e).__name__, "message": text_of(e), "at": raised_at(e)}
        try:
            protocol_out.write(json.dumps(answer) + "\n")
        except (TypeError, ValueError) as e:  # an exception message that is not text
            protocol_out.write(json.dumps({"id": request.get("id"), "error": {"type": "NotData",
                                                                             "message": str(e), "at": ""}}) + "\n")
        protocol_out.flush()


if __name__ == "__main__":
    serve()
