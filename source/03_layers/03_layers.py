# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 03: Layers
#
# A model is a tree of layers that own tensors. Everything the second half of
# this course does to a model walks that tree:
#
# - the **profiler** (Module 14) times every layer, by hooking a timer in
#   before and after each layer's forward pass;
# - **quantization** (Module 15) finds every `Linear` by its dotted name,
#   `"2"` or `"encoder.fc"`, and swaps in an INT8 layer;
# - **pruning** (Module 16) keeps a 0/1 mask beside each weight, saved with it;
# - saving and loading a trained model (Module 08) is a dictionary of named
#   arrays, checked key by key and shape by shape.
#
# So this module builds the tree itself, `Module`, with the names PyTorch uses
# (`named_modules`, `state_dict`, `register_forward_hook`, ...), and the first
# layers that live in it.
#
# | task | what you build | points |
# |---|---|---|
# | 03.1 | `call_module`: forward pass with pre- and post-hooks | 4 |
# | 03.2 | `walk_modules`, `walk_tensors`: the tree, with dotted names | 4 |
# | 03.3 | `get_submodule`, `set_submodule`: find and swap a layer by name | 4 |
# | 03.4 | `state_dict`, `load_state_dict`: save and restore every tensor | 4 |
# | 03.5 | `Linear`: seeded initialisation and `y = x @ W.T + b` | 4 |
# | 03.6 | `Dropout`: inverted dropout, recorded for autograd | 4 |
#
# The `Module` class itself is given. Each of its methods that a task covers
# is one line calling the function you write (the same design as Module 01,
# where `Tensor.__add__` calls your `elementwise`). The tasks do not depend on
# each other, except that Task 03.4 uses Task 03.2's `walk_tensors`.

# %% tags=["export"]
import itertools

import numpy as np

from tinytorch_lib.tensor import Tensor, record, register_backward

# %% [markdown]
# ## Which library are you running on?
#
# This module imports Modules 01 and 02 from `tinytorch_lib`. Under the
# instructor's autograder they are always the course reference; locally they
# are your own exports if you made them (`tito module reset NN` restores the
# reference).

# %%
import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

print(tinytorch_lib.origin("tensor"))
print(tinytorch_lib.origin("activations"))

# %% [markdown]
# ## 1. Parameters, modules and the tree (given)
#
# A **`Parameter`** is a `Tensor` that the optimizer will update:
# `requires_grad=True`, so autograd (Module 05) computes its gradient.
#
# A **`Module`** is a layer or a model. It does three things:
#
# 1. **Tracks what you assign.** `self.weight = Parameter(...)` lands in
#    `self._parameters`, `self.fc = Linear(...)` in `self._modules`, a tensor
#    registered with `self.register_buffer("mask", t)` in `self._buffers`;
#    each is a dict in assignment order. `__setattr__` does this, so a layer
#    author writes ordinary attribute assignments. A **buffer** is state that
#    is saved with the model but not trained: a pruning mask (Module 16), the
#    scale of a quantized weight (Module 15).
# 2. **Runs.** `model(x)` calls `Module.__call__`, which runs the registered
#    hooks and `forward` (Task 03.1). A subclass writes only `forward`.
# 3. **Switches mode.** `model.train()` / `model.eval()` set `training` on
#    every module of the tree; `Dropout` behaves differently in each.
#
# ```
# model = Sequential(Linear(64, 128), ReLU(), Linear(128, 10))
# model._modules        {'0': Linear(64, 128), '1': Lambda(ReLU()), '2': Linear(128, 10)}
# model[0]._parameters  {'weight': Parameter (128, 64), 'bias': Parameter (128,)}
# ```
#
# Module 02's activations came before `Module` existed, so they are plain
# callables; `Sequential` wraps any callable that is not a `Module` in a
# `Lambda` module, so that hooks, names and swapping see it like any layer.

# %% tags=["export"]
class Parameter(Tensor):
    """A Tensor the optimizer trains: requires_grad=True. data: array-like -> same rules as Tensor."""

    def __init__(self, data, dtype=None):
        super().__init__(data, dtype=dtype, requires_grad=True)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


_HOOK_IDS = itertools.count()


class HookHandle:
    """Returned by register_forward_(pre_)hook; `handle.remove()` unregisters the hook (also a context manager)."""

    def __init__(self, hooks: dict, fn):
        self.hooks, self.id = hooks, next(_HOOK_IDS)
        hooks[self.id] = fn

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


_STORES = ("_parameters", "_modules", "_buffers")


class Module:
    """Base class of every layer and model: tracks Parameters, sub-Modules and buffers in assignment order.

    Subclasses call `super().__init__()` first, assign attributes, and define `forward`.
    """

    def __init__(self):
        for store in _STORES + ("_forward_pre_hooks", "_forward_hooks"):
            object.__setattr__(self, store, {})
        object.__setattr__(self, "training", True)

    # ---- attribute tracking ----
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                     f"{name!r} (a {type(value).__name__}), so that it can be tracked")
            object.__setattr__(self, name, value)
            return
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = _as_buffer(type(self).__name__, name, value)
            object.__setattr__(self, name, self._buffers[name])
            return
        kind = "_parameters" if isinstance(value, Parameter) else "_modules" if isinstance(value, Module) else None
        for store in _STORES:  # a name lives in at most one store
            if store != kind:
                self.__dict__[store].pop(name, None)
        if kind is not None:
            self.__dict__[kind][name] = value  # an existing name keeps its place in the order
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for store in _STORES:
            self.__dict__[store].pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor) -> None:
        """Keep `tensor` (a Tensor or np.ndarray, not trained) as self.<name>; it is saved in state_dict()."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"register_buffer: the name must be a non-empty string without '.', got {name!r}")
        if name in self._parameters or name in self._modules:
            raise ValueError(f"register_buffer: {type(self).__name__}.{name} is already a "
                             f"{'parameter' if name in self._parameters else 'submodule'}")
        self._buffers[name] = _as_buffer(type(self).__name__, name, tensor)
        object.__setattr__(self, name, self._buffers[name])

    # ---- running ----
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args, **kwargs):
        return call_module(self, args, kwargs)

    def register_forward_pre_hook(self, fn) -> HookHandle:
        """fn(module, args) -> None or replacement args, called before forward."""
        if not callable(fn):
            raise TypeError(f"register_forward_pre_hook: expected a callable fn(module, args), got {fn!r}")
        return HookHandle(self._forward_pre_hooks, fn)

    def register_forward_hook(self, fn) -> HookHandle:
        """fn(module, args, output) -> None or a replacement output, called after forward."""
        if not callable(fn):
            raise TypeError(f"register_forward_hook: expected a callable fn(module, args, output), got {fn!r}")
        return HookHandle(self._forward_hooks, fn)

    # ---- the tree (each a list, where PyTorch returns a generator) ----
    def named_modules(self, prefix: str = "") -> list:
        return walk_modules(self, prefix)

    def modules(self) -> list:
        return [m for _, m in self.named_modules()]

    def named_children(self) -> list:
        return list(self._modules.items())

    def children(self) -> list:
        return list(self._modules.values())

    def named_parameters(self) -> list:
        return walk_tensors(self, "_parameters")

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> list:
        return walk_tensors(self, "_buffers")

    def buffers(self) -> list:
        return [b for _, b in self.named_buffers()]

    def get_submodule(self, target: str) -> "Module":
        return get_submodule(self, target)

    def set_submodule(self, target: str, module: "Module") -> None:
        set_submodule(self, target, module)

    def state_dict(self) -> dict:
        return state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        load_state_dict(self, state)

    # ---- modes and gradients ----
    def train(self, mode: bool = True) -> "Module":
        self.training = bool(mode)
        for child in self._modules.values():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's .grad to None (gradients accumulate over backward() calls)."""
        for p in self.parameters():
            p.grad = None

    # ---- printing ----
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


def _as_buffer(owner: str, name: str, value):
    """A buffer is a Tensor that is not trained (an np.ndarray is wrapped), or None."""
    if value is None:
        return None
    if isinstance(value, Parameter):
        raise TypeError(f"{owner}.{name}: a Parameter is trained, not a buffer; assign it as an attribute instead")
    if isinstance(value, np.ndarray):
        return Tensor(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}.{name}: a buffer must be a Tensor or np.ndarray, got {type(value).__name__}")
    return value


# %% [markdown]
# Two given containers. `Sequential(*modules)` runs its children in order and
# names them `"0"`, `"1"`, ...; `model[0]`, `model[-1]`, `len(model)` and
# `for layer in model` work as in PyTorch. `Lambda(fn)` makes any callable a
# module.
#
# A small module for the tests below: `Scale(w)` multiplies its input by a
# parameter `w`.

# %% tags=["export"]
class Lambda(Module):
    """A module that calls `fn(*args)`: Module 02's activations become children of a Sequential."""

    def __init__(self, fn):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"Lambda: expected a callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return repr(self.fn)


class Sequential(Module):
    """Sequential(m0, m1, ...): x -> m0 -> m1 -> ...; children named "0", "1", ..."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                if not callable(m):
                    raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, expected a Module or a callable")
                m = Lambda(m)
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        if not -len(items) <= index < len(items):
            raise IndexError(f"Sequential of {len(items)} modules: index {index} is out of range")
        return items[index]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


# %%
class Scale(Module):
    """y = x * w, with one parameter w."""

    def __init__(self, w):
        super().__init__()
        self.w = Parameter(np.asarray(w, dtype=np.float32))

    def forward(self, x, times: int = 1):
        return x * self.w * times

    def extra_repr(self) -> str:
        return f"w={self.w.data.tolist()}"


demo = Sequential(Scale([2.0, 3.0]), Scale([10.0, 10.0]))
print(demo)
print("children:", list(demo._modules), " parameters of child 0:", list(demo[0]._parameters))

# %% [markdown]
# ## 2. Calling a module, with hooks
#
# `model(x)` is not `model.forward(x)`: `__call__` gives outside code a way
# in before and after `forward` without editing the layer. A **forward
# pre-hook** `fn(module, args)` runs before `forward`; a **forward hook**
# `fn(module, args, output)` runs after it. Module 14's profiler registers a
# pre-hook that starts a clock and a hook that stops it, on every layer, and
# removes them when done:
#
# ```
# handle = layer.register_forward_hook(lambda m, args, out: print(type(m).__name__, out.shape))
# model(x)            # prints, e.g., "Linear (32, 128)"
# handle.remove()     # gone again
# ```
#
# The rules (PyTorch's):
#
# - `args` is the tuple of positional arguments; keyword arguments go to
#   `forward` untouched and are not shown to hooks.
# - Pre-hooks run in registration order. One that returns `None` changes
#   nothing; one that returns a value replaces `args` for the later hooks and
#   for `forward` (a value that is not a tuple becomes a 1-tuple).
# - `output = module.forward(*args, **kwargs)`.
# - Forward hooks run in registration order and see the (possibly replaced)
#   `args`; one that returns something other than `None` replaces `output`.
#
# The hooks are stored in two dicts, `module._forward_pre_hooks` and
# `module._forward_hooks` (id -> fn, in registration order; the given
# `HookHandle` adds and removes entries). Iterate over a copy (`list(...)`)
# so a hook may remove itself.
#
# ### Task 03.1: `call_module`
#
# `call_module(module, args, kwargs)` is what `module(*args, **kwargs)` runs:
# pre-hooks, `forward`, forward hooks, by the rules above. Return the output.

# %% nbgrader={"grade": false, "grade_id": "call_module", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def call_module(module: Module, args: tuple, kwargs: dict):
    """module(*args, **kwargs): pre-hooks, forward, forward hooks -> output."""
    # Task 03.1: run pre-hooks (may replace args), forward, then hooks (may replace output)
    ### BEGIN SOLUTION
    for hook in list(module._forward_pre_hooks.values()):
        result = hook(module, args)
        if result is not None:
            args = result if isinstance(result, tuple) else (result,)
    output = module.forward(*args, **kwargs)
    for hook in list(module._forward_hooks.values()):
        result = hook(module, args, output)
        if result is not None:
            output = result
    return output
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_03_1_hooks", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.1
from tinytorch_lib.testing import task

with task("03.1"):
    m = Scale([2.0, 3.0])
    x = Tensor([1.0, 1.0])
    y = m(x)
    assert isinstance(y, Tensor) and np.allclose(y.data, [2, 3]), f"Scale([2, 3])(x=[1, 1]): expected [2, 3], got {fmt(y)}"
    calls = []
    pre = m.register_forward_pre_hook(lambda mod, args: calls.append(("pre", mod is m, len(args))))
    post = m.register_forward_hook(lambda mod, args, out: calls.append(("post", out.data.tolist())))
    m(x)
    assert calls == [("pre", True, 1), ("post", [2.0, 3.0])], \
        f"one pre-hook and one hook on Scale([2, 3]), input [1, 1]: expected calls [('pre', True, 1), ('post', [2.0, 3.0])], got {calls}"
    pre.remove()
    post.remove()
    calls.clear()
    m(x)
    assert calls == [], f"after handle.remove() no hook should run, got calls {calls}"
    with m.register_forward_pre_hook(lambda mod, args: (args[0] * 10,)):
        got = m(x).data
    assert np.allclose(got, [20, 30]), f"a pre-hook returning (x * 10,): expected forward to see [10, 10] and give [20, 30], got {fmt(got)}"
    try:
        with m.register_forward_pre_hook(lambda mod, args: args[0] + 1):
            got = m(x).data
    except Exception as e:
        raise AssertionError(f"a pre-hook returning x + 1 (a Tensor, not a tuple) on Scale([2, 3]) with x = [1, 1]: it should "
                             f"replace args by the 1-tuple (x + 1,), but calling the module raised {type(e).__name__}: {e}") from None
    assert np.allclose(got, [4, 6]), f"a pre-hook returning x + 1 (not a tuple): expected forward to see [2, 2] and give [4, 6], got {fmt(got)}"
    with m.register_forward_hook(lambda mod, args, out: out + 1):
        got = m(x).data
    assert np.allclose(got, [3, 4]), f"a hook returning out + 1: expected output [3, 4], got {fmt(got)}"
    order = []
    with m.register_forward_hook(lambda mod, args, out: order.append("first")), \
            m.register_forward_hook(lambda mod, args, out: order.append("second")):
        m(x)
    assert order == ["first", "second"], f"two hooks registered first, second: expected them to run in that order, got {order}"
    runs = []
    def once(mod, args, out):
        runs.append(1)
        own.remove()  # a hook that takes itself off while the hooks run
    own = m.register_forward_hook(once)
    try:
        m(x)
        m(x)
    except Exception as e:
        raise AssertionError(f"a hook that calls handle.remove() on itself, module called twice: raised {type(e).__name__}: {e} "
                             "(iterate over a copy of the hooks, list(...))") from None
    assert len(runs) == 1, f"a hook that removes itself should run once over two calls, ran {len(runs)} times"
print("Task 03.1 visible tests passed")

# %% [markdown]
# ## 3. Walking the tree: dotted names
#
# Every module and tensor in a model has a **dotted name**: the attribute
# names on the path from the root, joined by `.`. The root itself is `""`.
#
# ```
# net = Sequential(Scale([1, 2]), Sequential(Masked(2), Scale([3, 4])))
#
# walk_modules(net)                    walk_tensors(net, "_parameters")   walk_tensors(net, "_buffers")
#   ""     Sequential                    "0.w"                             "1.0.mask"
#   "0"    Scale                         "1.0.w"
#   "1"    Sequential                    "1.1.w"
#   "1.0"  Masked
#   "1.1"  Scale
# ```
#
# The order is depth-first, parent before children, children in assignment
# order (the order of `m._modules`). A module or tensor can be reached twice
# when it is shared (the same `Linear` used at two places, or tied weights);
# like PyTorch, list it once, at its first name, so an optimizer does not
# update it twice. Compare identity (`id(obj)` or `is`), not values.
#
# ### Task 03.2: `walk_modules` and `walk_tensors`
#
# - `walk_modules(module, prefix="")`: a list of `(name, module)` pairs in the
#   order above, starting with `(prefix, module)`; a child's name is
#   `prefix + "." + child_name`, or just `child_name` when `prefix` is `""`.
# - `walk_tensors(module, store)`: `store` is `"_parameters"` or `"_buffers"`;
#   a list of `(dotted name, tensor)` for every entry of that dict in every
#   module of `walk_modules(module)`, in that order, skipping `None` values and
#   tensors already listed.
#
# `named_modules()`, `named_parameters()`, `parameters()`, `named_buffers()`
# call these.

# %% nbgrader={"grade": false, "grade_id": "walk", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def walk_modules(module: Module, prefix: str = "") -> list:
    """[(dotted name, module)], depth-first, parent first, each module once; the root is named `prefix`."""
    # Task 03.2: visit module, then each child of module._modules recursively
    ### BEGIN SOLUTION
    out, seen = [], set()

    def visit(m, name):
        if id(m) in seen:
            return
        seen.add(id(m))
        out.append((name, m))
        for child_name, child in m._modules.items():
            visit(child, f"{name}.{child_name}" if name else child_name)

    visit(module, prefix)
    return out
    ### END SOLUTION


def walk_tensors(module: Module, store: str) -> list:
    """[(dotted name, tensor)] of every module's `store` ("_parameters" or "_buffers"), each tensor once."""
    # Task 03.2: go through walk_modules(module) and each module's getattr(m, store)
    ### BEGIN SOLUTION
    out, seen = [], set()
    for module_name, m in walk_modules(module):
        for name, t in getattr(m, store).items():
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            out.append((f"{module_name}.{name}" if module_name else name, t))
    return out
    ### END SOLUTION


# %%
class Masked(Module):
    """A parameter w and a buffer mask of the same shape (pruning, Module 16, looks like this)."""

    def __init__(self, n: int):
        super().__init__()
        self.w = Parameter(np.ones(n, dtype=np.float32))
        self.register_buffer("mask", np.ones(n, dtype=np.float32))

    def forward(self, x):
        return x * (self.w * self.mask)


# %% nbgrader={"grade": true, "grade_id": "test_03_2_walk", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.2
from tinytorch_lib.testing import task

with task("03.2"):
    net = Sequential(Scale([1.0, 2.0]), Sequential(Masked(2), Scale([3.0, 4.0])))
    names = [name for name, _ in walk_modules(net)]
    assert names == ["", "0", "1", "1.0", "1.1"], f"walk_modules(net) names: expected ['', '0', '1', '1.0', '1.1'], got {names}"
    assert walk_modules(net)[3][1] is net[1][0], "walk_modules(net): the module named '1.0' should be net[1][0]"
    params = walk_tensors(net, "_parameters")
    assert [n for n, _ in params] == ["0.w", "1.0.w", "1.1.w"], \
        f"walk_tensors(net, '_parameters') names: expected ['0.w', '1.0.w', '1.1.w'], got {fmt([n for n, _ in params])}"
    assert params[2][1] is net[1][1].w, "the tensor named '1.1.w' should be net[1][1].w itself, not a copy"
    bufs = [n for n, _ in walk_tensors(net, "_buffers")]
    assert bufs == ["1.0.mask"], f"walk_tensors(net, '_buffers') names: expected ['1.0.mask'], got {bufs}"
    assert len(net.parameters()) == 3, f"net.parameters(): expected 3 parameters, got {len(net.parameters())}"
print("Task 03.2 visible tests passed")

# %% [markdown]
# ## 4. Finding and swapping a layer by name
#
# Module 15 replaces every `Linear` with a `QuantizedLinear`, Module 17 a
# slow kernel with a fast one, without rebuilding the model:
#
# ```
# model.get_submodule("1.0")               # -> the Masked inside the inner Sequential
# model.set_submodule("1.0", Scale([7, 7]))  # now model[1][0] is the new Scale
# ```
#
# A path is a dotted name from `walk_modules`; `""` is the root. Follow it one
# part at a time through `m._modules`. A typo must not fail with a bare
# `KeyError: 'fc'`; say which part is missing, where, and what exists there.
#
# ### Task 03.3: `get_submodule` and `set_submodule`
#
# - `get_submodule(root, target)` returns the module at `target`
#   (`root` itself for `""`). When a part is missing, raise `AttributeError`
#   naming the part, the module it is missing from (its dotted name, or
#   "the root", and its class) and that module's children, e.g.
#   `'1.5': '1' (Sequential) has no submodule '5'; its submodules: ['0', '1']`.
# - `set_submodule(root, target, new)` replaces an **existing** submodule:
#   `new` must be a `Module` (else `TypeError`), the path must exist (the same
#   `AttributeError` as above, also when only the last part is missing), and
#   `target` must not be `""` (`ValueError`). Replace with `setattr(parent,
#   last_part, new)`: `__setattr__` keeps the child's place in the order.

# %% nbgrader={"grade": false, "grade_id": "submodule", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def get_submodule(root: Module, target: str) -> Module:
    """root, "1.0" -> root._modules["1"]._modules["0"]; "" -> root. AttributeError names what is missing."""
    # Task 03.3: follow the parts of target through _modules; a clear AttributeError when one is missing
    ### BEGIN SOLUTION
    if target == "":
        return root
    m, walked = root, []
    for part in target.split("."):
        if part not in m._modules:
            where = f"'{'.'.join(walked)}'" if walked else "the root"
            raise AttributeError(f"'{target}': {where} ({type(m).__name__}) has no submodule '{part}'; "
                                 f"its submodules: {list(m._modules)}")
        m = m._modules[part]
        walked.append(part)
    return m
    ### END SOLUTION


def set_submodule(root: Module, target: str, new: Module) -> None:
    """Replace the existing submodule at `target` by `new` (a Module), keeping its place."""
    # Task 03.3: check new and target, find the parent, check the last part exists, setattr
    ### BEGIN SOLUTION
    if not isinstance(new, Module):
        raise TypeError(f"set_submodule('{target}'): expected a Module, got {type(new).__name__}")
    if target == "":
        raise ValueError("set_submodule(''): the root cannot replace itself; give the path of a submodule")
    parent_path, _, last = target.rpartition(".")
    parent = get_submodule(root, parent_path)
    if last not in parent._modules:
        where = f"'{parent_path}'" if parent_path else "the root"
        raise AttributeError(f"'{target}': {where} ({type(parent).__name__}) has no submodule '{last}'; "
                             f"its submodules: {list(parent._modules)}")
    setattr(parent, last, new)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_03_3_submodule", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.3
from tinytorch_lib.testing import task

with task("03.3"):
    net = Sequential(Scale([1.0, 2.0]), Sequential(Masked(2), Scale([3.0, 4.0])))
    assert get_submodule(net, "1.0") is net[1][0], f"get_submodule(net, '1.0'): expected net[1][0], got {get_submodule(net, '1.0')!r}"
    assert get_submodule(net, "") is net, "get_submodule(net, ''): expected net itself"
    try:
        get_submodule(net, "1.5")
    except AttributeError as e:
        assert "'5'" in str(e) and "'0'" in str(e) and "'1'" in str(e), \
            f"get_submodule(net, '1.5'): the error should name the missing '5' and the existing ['0', '1'], got: {e}"
    else:
        raise AssertionError("get_submodule(net, '1.5') should raise AttributeError (net[1] has children '0' and '1')")
    new = Scale([7.0, 7.0])
    set_submodule(net, "1.0", new)
    assert net[1][0] is new, "set_submodule(net, '1.0', new): net[1][0] should now be new"
    assert list(net[1]._modules) == ["0", "1"], f"the replaced child keeps its place: expected ['0', '1'], got {list(net[1]._modules)}"
    assert [n for n, _ in net.named_parameters()][1] == "1.0.w", "named_parameters() should see the new module"
print("Task 03.3 visible tests passed")

# %% [markdown]
# ## 5. Saving and restoring: `state_dict`
#
# A trained model is its architecture (code) plus its numbers. The numbers are
# a **state dict**: dotted name -> array, for every parameter and buffer.
# Module 08 saves it to one file; Module 16's pruning masks travel in it as
# buffers.
#
# ```
# net.state_dict()  ->  {'0.w': array([1., 2.], dtype=float32), '1.0.w': ..., '1.1.w': ..., '1.0.mask': ...}
# ```
#
# Two details decide whether this is safe:
#
# - **Copies.** The arrays must be copies (`np.array(t.data, copy=True)`):
#   a saved state must not change when training goes on.
# - **Strict loading.** Loading a state saved from another architecture must
#   fail loudly, before anything is overwritten, and say exactly what does not
#   fit: keys the model has but the state lacks (**missing**), keys the state
#   has but the model lacks (**unexpected**), and keys whose shapes differ
#   (with both shapes).
#
# ### Task 03.4: `state_dict` and `load_state_dict`
#
# - `state_dict(module)`: a dict of every parameter, then every buffer, in
#   `walk_tensors` order (Task 03.2), name -> a copy of its array, same dtype.
# - `load_state_dict(module, state)`: `state` maps names to `np.ndarray`s (or
#   `Tensor`s). If any key is missing or unexpected, or any shape differs,
#   raise `ValueError` listing all of them (sorted), e.g.
#   `load_state_dict: missing keys ['1.1.w']; unexpected keys ['1.1.v']; shape mismatch: '0.w' is (2,) in the model, (3,) in the state`
#   and change nothing. Otherwise copy each array **into** the existing
#   tensor (`t.data[...] = value`), so the tensor objects (which an optimizer
#   holds) stay the same and keep their dtype.

# %% nbgrader={"grade": false, "grade_id": "state", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def state_dict(module: Module) -> dict:
    """{dotted name: np.ndarray copy} of every parameter, then every buffer."""
    # Task 03.4: walk_tensors over "_parameters" then "_buffers", copying each array
    ### BEGIN SOLUTION
    out = {}
    for store in ("_parameters", "_buffers"):
        for name, t in walk_tensors(module, store):
            out[name] = np.array(t.data, copy=True)
    return out
    ### END SOLUTION


def load_state_dict(module: Module, state: dict) -> None:
    """Copy `state` (name -> array or Tensor) into the module's tensors, in place; strict."""
    # Task 03.4: compare keys and shapes, raise one ValueError naming every problem, else copy in place
    ### BEGIN SOLUTION
    own = dict(walk_tensors(module, "_parameters") + walk_tensors(module, "_buffers"))
    values = {k: (v.data if isinstance(v, Tensor) else np.asarray(v)) for k, v in state.items()}
    missing = sorted(set(own) - set(values))
    unexpected = sorted(set(values) - set(own))
    wrong = [f"'{k}' is {own[k].shape} in the model, {tuple(values[k].shape)} in the state"
             for k in sorted(set(own) & set(values)) if own[k].shape != tuple(values[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong:
        problems.append("shape mismatch: " + ", ".join(wrong))
    if problems:
        raise ValueError("load_state_dict: " + "; ".join(problems))
    for name, t in own.items():
        t.data[...] = values[name]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_03_4_state", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.4 (they rely on Task 03.2's walk_tensors)
from tinytorch_lib.testing import task

with task("03.4", uses={"03.2": "walk_tensors"}):
    try:
        assert [n for n, _ in walk_tensors(Masked(2), "_buffers")] == ["mask"]
    except Exception as e:
        raise AssertionError(f"Task 03.4 calls walk_tensors from Task 03.2, and walk_tensors(Masked(2), '_buffers') "
                             f"did not give [('mask', ...)] ({e!r}): make Task 03.2's tests pass first") from None
    net = Sequential(Scale([1.0, 2.0]), Sequential(Masked(2), Scale([3.0, 4.0])))
    sd = state_dict(net)
    assert list(sd) == ["0.w", "1.0.w", "1.1.w", "1.0.mask"], \
        f"state_dict keys: expected ['0.w', '1.0.w', '1.1.w', '1.0.mask'] (parameters, then buffers), got {list(sd)}"
    assert isinstance(sd["0.w"], np.ndarray) and sd["0.w"].dtype == np.float32, "values: np.ndarray with the tensor's dtype"
    net[0].w.data[0] = 99.0
    assert sd["0.w"][0] == 1.0, "state_dict must copy: changing the model afterwards changed the saved array"
    weight = net[0].w
    load_state_dict(net, sd)
    assert net[0].w is weight and net[0].w.data[0] == 1.0, "load_state_dict should copy the values into the existing Parameter"
    bad = dict(sd)
    del bad["1.1.w"]
    bad["1.1.v"] = np.zeros(2)
    bad["0.w"] = np.zeros(3)
    try:
        load_state_dict(net, bad)
    except ValueError as e:
        for part in ("1.1.w", "1.1.v", "0.w", "(2,)", "(3,)"):
            assert part in str(e), f"the error should name missing '1.1.w', unexpected '1.1.v' and '0.w' with shapes (2,) and (3,); {part!r} is not in: {e}"
    else:
        raise AssertionError("loading a state with a missing, an unexpected and a mis-shaped key should raise ValueError")
    two_missing = state_dict(net)
    del two_missing["1.1.w"], two_missing["1.0.mask"]
    try:
        load_state_dict(net, two_missing)
    except ValueError as e:
        assert "['1.0.mask', '1.1.w']" in str(e), f"a state without '1.1.w' and '1.0.mask': the error should list them sorted, ['1.0.mask', '1.1.w'], got: {e}"
    else:
        raise AssertionError("loading a state without '1.1.w' and '1.0.mask' should raise ValueError")
    half_bad = state_dict(net)
    half_bad["0.w"] = np.array([5.0, 6.0], dtype=np.float32)
    half_bad["1.0.mask"] = np.zeros((2, 2))
    before = net[0].w.data.copy()
    try:
        load_state_dict(net, half_bad)
    except ValueError:
        pass
    assert np.array_equal(net[0].w.data, before), (f"a state with '0.w' = [5, 6] and a mis-shaped '1.0.mask' (2, 2): load_state_dict "
                                                   f"must raise and change nothing, but '0.w' went from {fmt(before)} to {fmt(net[0].w.data)}")
    load_state_dict(net, {k: v.astype(np.float64) for k, v in state_dict(net).items()})
    assert net[0].w.dtype == np.float32, f"loading float64 values keeps the parameter's float32 dtype, got {net[0].w.dtype}"
print("Task 03.4 visible tests passed")

# %% [markdown]
# ## 6. `Linear`: the layer that holds almost all the bytes
#
# `Linear(in_features, out_features)` computes `y = x @ W.T + b` with
# `W: (out_features, in_features)` and `b: (out_features,)`, PyTorch's layout
# (one row of `W` per output).
#
# ```
# x: (batch, in)  @  W.T: (in, out)  ->  (batch, out)  +  b: (out,)  ->  y: (batch, out)
# Linear(64, 128): W (128, 64) = 8,192 weights, b (128,) = 128 biases; float32: 33,280 bytes
# ```
#
# **Initialisation.** We use PyTorch's default: every weight and bias drawn
# from `U(-1/sqrt(in_features), 1/sqrt(in_features))`. Why this scale: the
# variance of such a weight is `bound^2 / 3 = 1 / (3 * in_features)`, so
# `var(y_j) = in_features * var(w) * E[x^2] = E[x^2] / 3` whatever the layer
# width: wide layers do not blow activations up, and a model here starts from
# the same distribution as the same model in PyTorch. (He initialisation,
# `var(w) = 2 / in_features`, keeps the variance exactly through ReLU; for the
# shallow MLPs of this course both train well.)
#
# **Seeding.** `rng` is a `numpy.random.Generator`. When it is `None`, the
# given code uses the module's shared generator, which `manual_seed(s)` resets:
# `manual_seed(0)` then building a model gives the same weights every run.
#
# ### Task 03.5: `Linear`
#
# - `__init__` (after the given checks): draw the weight, then the bias (only
#   when `bias=True`), each with `rng.uniform(-bound, bound, size=shape)`,
#   `bound = 1 / sqrt(in_features)`, cast to float32, as `Parameter`s
#   `self.weight` `(out_features, in_features)` and `self.bias`
#   `(out_features,)`. With `bias=False`, `self.bias = None`. Draw in this
#   order so a seed gives the same weights in every solution.
# - `forward(x)`: `x` is a float `Tensor` of shape `(..., in_features)`. If its
#   last dimension is not `in_features`, raise `ValueError` naming both, e.g.
#   `Linear(64, 128): expected input of shape (..., 64), got (32, 10)`.
#   Compute `x @ self.weight.T + self.bias` **with Tensor operators** (not on
#   `.data`), so that each step is recorded for autograd (Module 05).
#
# The tests call `forward` directly, so this task does not need Task 03.1.

# %% tags=["export"]
_GENERATOR = {"rng": np.random.default_rng(0)}


def manual_seed(seed: int) -> None:
    """Reset the shared generator that layers use when built with rng=None."""
    _GENERATOR["rng"] = np.random.default_rng(seed)


def resolve_rng(rng) -> np.random.Generator:
    """None -> the shared generator; an int -> a new Generator seeded with it; a Generator -> itself."""
    if rng is None:
        return _GENERATOR["rng"]
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _as_float_tensor(x) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    return x if x.dtype.kind == "f" else Tensor(x.data.astype(np.float32))


# %% nbgrader={"grade": false, "grade_id": "linear", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Linear(Module):
    """x: (..., in_features) float -> (..., out_features); y = x @ W.T + b, W (out, in), b (out,), float32."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Linear: {what} must be a positive int, got {n!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = resolve_rng(rng)
        # Task 03.5: weight (out, in), then bias (out,) or None, from U(-1/sqrt(in), 1/sqrt(in)), float32
        ### BEGIN SOLUTION
        bound = 1.0 / np.sqrt(self.in_features)
        w = rng.uniform(-bound, bound, size=(self.out_features, self.in_features))
        self.weight = Parameter(w.astype(np.float32))
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, size=(self.out_features,)).astype(np.float32))
        else:
            self.bias = None
        ### END SOLUTION

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x)
        # Task 03.5: check x.shape[-1], then x @ W.T (+ b) with Tensor operators
        ### BEGIN SOLUTION
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected input of shape "
                             f"(..., {self.in_features}), got {x.shape}")
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


# %% nbgrader={"grade": true, "grade_id": "test_03_5_linear", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.5
from tinytorch_lib.testing import task

with task("03.5"):
    lin = Linear(4, 3, rng=np.random.default_rng(0))
    assert isinstance(lin.weight, Parameter) and lin.weight.shape == (3, 4), f"Linear(4, 3).weight: expected a Parameter (3, 4), got {lin.weight!r}"
    assert isinstance(lin.bias, Parameter) and lin.bias.shape == (3,), f"Linear(4, 3).bias: expected a Parameter (3,), got {lin.bias!r}"
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32, f"float32 expected, got {lin.weight.dtype}, {lin.bias.dtype}"
    assert np.abs(lin.weight.data).max() <= 0.5, f"Linear(4, 3): weights should lie in [-1/sqrt(4), 1/sqrt(4)] = [-0.5, 0.5], max |w| is {fmt(np.abs(lin.weight.data).max())}"
    x = Tensor(np.arange(8, dtype=np.float32).reshape(2, 4))
    y = lin.forward(x)
    want = x.data.astype(np.float64) @ lin.weight.data.T.astype(np.float64) + lin.bias.data
    assert y.shape == (2, 3) and np.allclose(y.data, want, atol=1e-5), f"Linear(4, 3) on x (2, 4) = arange(8): expected {fmt(want)}, got {fmt(y)}"
    assert list(lin._parameters) == ["weight", "bias"], f"parameters: expected ['weight', 'bias'], got {list(lin._parameters)}"
    try:
        lin.forward(Tensor(np.ones((2, 5), dtype=np.float32)))
    except ValueError as e:
        assert "4" in str(e) and "(2, 5)" in str(e), f"the error should name in_features 4 and the shape (2, 5), got: {e}"
    else:
        raise AssertionError("Linear(4, 3) on input (2, 5) should raise ValueError")
print("Task 03.5 visible tests passed")

# %% [markdown]
# ## 7. `Dropout`
#
# During training, dropout zeroes each activation with probability `p`, so no
# unit can rely on one particular other unit. **Inverted** dropout scales the
# survivors by `1 / (1 - p)` during training, so the expected value of each
# output equals its input, and evaluation needs nothing: in `eval()` mode
# dropout is the identity.
#
# ```
# p = 0.5, x = [1, 1, 1, 1]   u = rng.random(4) = [0.64, 0.27, 0.04, 0.02]
# keep = u >= p = [T, F, F, F]   mask = keep / (1 - p) = [2, 0, 0, 0]   y = x * mask = [2, 0, 0, 0]
# ```
#
# Autograd needs the mask: the gradient of `y = x * mask` is `grad * mask`.
# So `forward` records the op `"dropout"` with the mask saved, and the
# backward rule below is registered for it. Module 05 covers the operations of
# Modules 01-04 and walks the graph; a module that introduces an operation
# registers that operation's rule itself, as Dropout does here.
#
# ### Task 03.6: `Dropout.forward`
#
# The given `__init__` checks `p` (a number in `[0, 1)`). In `forward(x)`:
#
# - if `self.training` is `False` or `p == 0`, return `x` itself;
# - otherwise draw `u = rng.random(x.shape)` with
#   `rng = resolve_rng(self.rng)`, keep where `u >= p`, build
#   `mask = keep / (1 - p)` in `x`'s dtype, and return
#   `record("dropout", Tensor(x.data * mask), (x,), mask=mask)`.

# %% nbgrader={"grade": false, "grade_id": "dropout", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class Dropout(Module):
    """x: (...) float -> (...) same dtype; zeroes with probability p, scales the rest by 1/(1-p); identity in eval()."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        # None: the shared generator (manual_seed), looked up at every call; else one Generator that
        # advances, so that each call draws a new mask (an int seed becomes a Generator once, here)
        self.rng = None if rng is None else resolve_rng(rng)

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x)
        # Task 03.6: identity in eval mode or for p == 0; else mask = (u >= p) / (1 - p), recorded as "dropout"
        ### BEGIN SOLUTION
        if not self.training or self.p == 0:
            return x
        u = resolve_rng(self.rng).random(x.shape)
        mask = ((u >= self.p) / (1 - self.p)).astype(x.dtype)
        return record("dropout", Tensor(x.data * mask), (x,), mask=mask)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"p={self.p}"


@register_backward("dropout")
def dropout_backward(grad: np.ndarray, out: Tensor) -> tuple:
    """y = x * mask  ->  dL/dx = dL/dy * mask."""
    return (grad * out.node.saved["mask"],)


# %% nbgrader={"grade": true, "grade_id": "test_03_6_dropout", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 03.6
from tinytorch_lib.testing import task

with task("03.6"):
    x = Tensor(np.ones((4, 1000), dtype=np.float32))
    drop = Dropout(0.25, rng=np.random.default_rng(0))
    y = drop.forward(x)
    assert y.shape == (4, 1000) and y.dtype == np.float32, f"Dropout(0.25) on (4, 1000) float32: expected same shape and dtype, got {y.shape} {y.dtype}"
    values = set(np.unique(y.data).tolist())
    assert values <= {0.0, np.float32(1 / 0.75)}, f"Dropout(0.25) of ones: outputs should be 0 or 1/(1 - 0.25) = 1.3333, got values {fmt(sorted(values)[:5])}"
    kept = (y.data != 0).mean()
    assert 0.72 < kept < 0.78, f"Dropout(0.25) should keep about 75% of 4000 values, kept {kept:.1%}"
    drop.eval()
    assert drop.forward(x) is x, "in eval() mode, Dropout.forward(x) should return x itself"
    assert Dropout(0.0).forward(x) is x, "Dropout(0.0) in training mode should return x itself"
    xg = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    out = Dropout(0.5, rng=np.random.default_rng(1)).forward(xg)
    assert out.node is not None and out.node.op == "dropout" and out.node.inputs[0] is xg, \
        f"Dropout(0.5) of an input that requires grad should be recorded as op 'dropout' with input x; got {out.node}"
    mask = out.node.saved.get("mask")
    assert isinstance(mask, np.ndarray) and mask.dtype == np.float32 and np.array_equal(mask * xg.data, out.data), \
        f"the saved 'mask' should be a float32 array with mask * x == the output, got {fmt(mask)}"
    for bad in (1.0, -0.1):
        try:
            Dropout(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"Dropout({bad}) should raise ValueError (p must be in [0, 1))")
print("Task 03.6 visible tests passed")

# %% [markdown]
# ## 8. Systems analysis: what does a layer cost?
#
# Everything below is measured now, on the MLP that Milestone 06 profiles,
# quantizes and prunes: 64 -> 128 -> 64 -> 10 with ReLU between.
#
# ### Parameters and real bytes, per layer
#
# Bytes are `nbytes` of the arrays actually stored; the float64 column stores
# a float64 copy and measures it.

# %%
from tinytorch_lib.activations import ReLU

manual_seed(0)
mlp = Sequential(Linear(64, 128), ReLU(), Linear(128, 64), ReLU(), Linear(64, 10))
print(mlp, "\n")
print(f"{'layer':<6} {'weight':>10} {'weights':>8} {'biases':>7} {'float32 B':>10} {'float64 B':>10} {'bias share':>10}")
total_params = total32 = total64 = 0
for name, layer in mlp.named_modules():
    if not isinstance(layer, Linear):
        continue
    w, b = layer.weight, layer.bias
    b32 = w.nbytes + b.nbytes
    b64 = w.data.astype(np.float64).nbytes + b.data.astype(np.float64).nbytes
    total_params += w.size + b.size
    total32, total64 = total32 + b32, total64 + b64
    print(f"{name:<6} {str(w.shape):>10} {w.size:>8,} {b.size:>7,} {b32:>10,} {b64:>10,} {b.nbytes / b32:>10.1%}")
state_bytes = sum(a.nbytes for a in mlp.state_dict().values())
print(f"{'total':<6} {'':>10} {total_params:>17,} {total32:>10,} {total64:>10,}")
print(f"state_dict bytes: {state_bytes:,}; hand count 64*128+128 + 128*64+64 + 64*10+10 = {64*128+128 + 128*64+64 + 64*10+10:,} parameters")
assert total_params == 64*128+128 + 128*64+64 + 64*10+10 == sum(p.size for p in mlp.parameters())

# %% [markdown]
# Almost all bytes are weights: a bias is one number per output, a weight one
# per input *and* output. float64 doubles every figure; float32 is the
# training default, and Module 15 will store the same weights in int8, a
# quarter of the float32 bytes.
#
# ### Time per forward pass against batch size
#
# The same MLP on batches of 1 to 1024 rows, with gradient recording on
# (training) and off (`no_grad`, inference), the two timed in turns
# (`compare`: CPU time, each ratio from neighbouring repeats).

# %%
from tinytorch_lib.tensor import no_grad
from tinytorch_lib.timing import compare

rng = np.random.default_rng(0)
batches = [1, 4, 16, 64, 256, 1024]
rows, noisy = [], None
print(f"{'batch':>6} {'recording':>12} {'no_grad':>12} {'no_grad p90':>12} {'rec / no_grad':>16} {'us/sample':>10} "
      f"{'rows/s':>12}")
for n in batches:
    xb = Tensor(rng.standard_normal((n, 64)).astype(np.float32))

    def infer():
        with no_grad():
            return mlp(xb)

    c = compare({"recording": lambda: mlp(xb), "no_grad": infer})
    t_rec, t_inf = c["recording"], c["no_grad"]
    noisy = noisy or (c.noisy and f"batch {n}, {c.noisy}")
    rows.append((n, t_rec.median, t_inf.median))
    print(f"{n:>6} {t_rec.median * 1e6:9.1f} us {t_inf.median * 1e6:9.1f} us {t_inf.p90 * 1e6:9.1f} us "
          f"{format(c.ratio('recording', 'no_grad'), '.2g'):>16} {t_inf.median * 1e6 / n:10.2f} {n / t_inf.median:12,.0f}")
print(f"(CPU time, medians of {t_inf.repeats} repeats; BLAS threads: {t_inf.threads})")
print(f"in this run, 16 times the rows (1 -> 16) took {rows[2][2] / rows[0][2]:.2g}x the time (no_grad)")
if noisy:
    print(noisy)

# %% [markdown]
# Read the table: from 1 to 16 rows is 16 times the arithmetic; how much does
# the time grow? At small batches the time is mostly fixed cost per call:
# Python (`__call__`, the hook dicts, `forward`, three `Tensor` operators per
# `Linear`, each making a new `Tensor`), not arithmetic. Only at large
# batches does the matmul work dominate and the time per sample settle (where
# exactly depends on this CPU's caches). That is why training and batched inference use batches,
# and why Module 14 separates per-call overhead from compute.
#
# ### What a hook costs
#
# Module 14's profiler puts a pre-hook and a hook on every layer. Before
# trusting its per-layer times, measure what the hooks themselves cost: the
# same forward with no hooks, with no-op hooks, and with a timing hook pair
# (a clock read before and after, as the profiler does) on all six modules.
# Three copies of the model carry the three sets of hooks, so the three can
# be timed in turns (`compare`), and each extra is taken from neighbouring
# repeats: the ranges are the p10-p90 of those paired differences.

# %%
import copy

from tinytorch_lib.timing import cpu_clock

x1 = Tensor(rng.standard_normal((1, 64)).astype(np.float32))
x256 = Tensor(rng.standard_normal((256, 64)).astype(np.float32))
n_modules = len(mlp.named_modules())


def add_hooks(model, pre, post):
    return [h for _, m in model.named_modules() for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]


starts, elapsed = {}, {}


def start_clock(m, args):
    starts[id(m)] = cpu_clock()


def stop_clock(m, args, out):
    elapsed[id(m)] = cpu_clock() - starts[id(m)]


variants = {
    "no hooks": None,
    "no-op hooks": (lambda m, args: None, lambda m, args, out: None),
    "timing hooks": (start_clock, stop_clock),
}
copies = {label: copy.deepcopy(mlp) for label in variants}
for label, hooks in variants.items():
    if hooks:
        add_hooks(copies[label], *hooks)


def forward(model, x):
    def run():
        with no_grad():
            model(x)
    return run


per_batch = {n: compare({label: forward(m, x) for label, m in copies.items()}) for n, x in ((1, x1), (256, x256))}


def extra(c, label):
    """Seconds label adds over 'no hooks': median and p10-p90 of the paired repeats."""
    d = np.array(c[label].samples) - np.array(c["no hooks"].samples)
    return np.median(d), np.percentile(d, 10), np.percentile(d, 90)


calls = 2 * n_modules
print(f"{'':<13} {'batch 1':>12} {'batch 256':>12} {'extra per hook call, batch 1 (p10-p90)':>40}")
for label in variants:
    med, lo, hi = extra(per_batch[1], label)
    print(f"{label:<13} {per_batch[1][label].median * 1e6:9.1f} us {per_batch[256][label].median * 1e6:9.1f} us "
          f"{med / calls * 1e9:>20.0f} ns ({lo / calls * 1e9:.0f} to {hi / calls * 1e9:.0f})")
print(f"{n_modules} modules x 2 hooks = {calls} hook calls per forward; in this run timing hooks added "
      f"{per_batch[1].ratio('timing hooks', 'no hooks').median - 1:.0%} at batch 1 "
      f"({per_batch[1].ratio('timing hooks', 'no hooks').lo - 1:.0%} to {per_batch[1].ratio('timing hooks', 'no hooks').hi - 1:.0%}), "
      f"{per_batch[256].ratio('timing hooks', 'no hooks').median - 1:.0%} at batch 256 "
      f"({per_batch[256].ratio('timing hooks', 'no hooks').lo - 1:.0%} to {per_batch[256].ratio('timing hooks', 'no hooks').hi - 1:.0%})")
for n, c in per_batch.items():
    if c.noisy:
        print(f"batch {n}, {c.noisy}")

# %% [markdown]
# A hook call is a Python function call: its cost is per call, not per row,
# so its share of a forward pass shrinks as the batch grows and the layers'
# own work grows. At batch 1, where each layer takes only microseconds, the
# table shows how much of the time it is on this machine. A profiler that
# times each layer through hooks adds this to every layer it measures;
# Module 14 measures it and reports it beside its per-layer times.
# A range that reaches below 0 means the difference was within the timing
# noise in this run.

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import log_axis, place_legend

try:  # what the timing cell above measured; it stops early when a task it needs is unfinished
    ready = len(rows) == len(batches)
except NameError:
    ready = False
if not ready:
    print("Plot skipped: the timing cell above did not finish. It needs Task 03.1 (call_module) and Task 03.5 (Linear): finish them, then rerun "
          "that cell and this one.")
else:
    ns = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(ns, [r[1] * 1e6 / r[0] for r in rows], marker="o", label="recording (training)")
    ax.plot(ns, [r[2] * 1e6 / r[0] for r in rows], marker="s", label="no_grad (inference)")
    log_axis(ax, "x", "count", ticks=ns, base=2)
    log_axis(ax, "y", "number")
    ax.grid(True, which="major", alpha=0.25)
    ax.set_xlabel("batch size (rows, log scale)")
    ax.set_ylabel("time per sample (us, log scale)")
    ax.set_title("MLP 64-128-64-10 forward: per-sample cost vs batch size")
    plt.tight_layout()
    place_legend(ax)
    plt.show()

# %% [markdown]
# Takeaway: per-sample cost falls by orders of magnitude from batch 1 to
# batch 1024, because small batches pay Python's fixed cost per layer, not
# arithmetic.
#
# ## Summary
#
# - `Module` tracks parameters, submodules and buffers by assignment, names
#   everything with dotted paths, and gives outside code three seams: hooks
#   around `forward` (Module 14), `get_submodule`/`set_submodule`
#   (Modules 15 and 17) and buffers in the `state_dict` (Module 16).
# - `load_state_dict` checks every key and shape before it writes anything.
# - `Linear` holds nearly all of an MLP's bytes, in its weights.
# - A forward pass at small batch is dominated by per-call Python overhead,
#   and each hook adds a fixed cost per layer.
#
# Next: `tito module export 03`; Module 04 measures how wrong a model is
# (losses), and Module 05 computes the gradients of that through everything
# built so far.
