"""Module 03's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible
cases and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`,
`s.expect_error`), every expected value and comparison stays here. Scenarios with hooks and module
trees run in the sandbox, which records what happened (lists of values, names, ids); the checks
compare those records here.
"""
import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check

# The notebook's own (visible, not exported) test modules: Scale(w) and Masked(n).
HELPERS = '''
class Scale(Module):
    def __init__(self, w):
        super().__init__()
        self.w = Parameter(np.asarray(w, dtype=np.float32))

    def forward(self, x, times=1):
        return x * self.w * times


class Masked(Module):
    def __init__(self, n):
        super().__init__()
        self.w = Parameter(np.ones(n, dtype=np.float32))
        self.register_buffer("mask", np.ones(n, dtype=np.float32))

    def forward(self, x):
        return x * (self.w * self.mask)


def names(pairs):
    return [n for n, _ in pairs]
'''
NET = "net = Sequential(Scale([1.0, 2.0]), Sequential(Masked(2), Scale([3.0, 4.0])))"


def attempt(s, expr: str, **inputs):
    """The value of `expr`, or the StudentError it raised."""
    try:
        return s.value(expr, **inputs)
    except StudentError as e:
        return e


@check("test_03_1_hooks")
def hooks(s):
    s.run(HELPERS + "m = Scale([2.0, 3.0])\nx = Tensor([1.0, 1.0])\ncalls = []")
    s.run("y = m(x)")
    kind, got = s.value("(type(y).__name__, y.data if isinstance(y, Tensor) else None)")
    assert got is not None and np.allclose(got, [2, 3]), f"Scale([2, 3])(x=[1, 1]): expected a Tensor [2, 3], got {fmt(kind)} {fmt(got)}"
    s.run("pre = m.register_forward_pre_hook(lambda mod, args: calls.append(('pre', id(mod), len(args))))\n"
          "post = m.register_forward_hook(lambda mod, args, out: calls.append(('post', out.data.tolist())))\n"
          "m(x)")
    calls, mid = s.value("(calls, id(m))")
    assert calls == [("pre", mid, 1), ("post", [2.0, 3.0])], \
        "one pre-hook and one hook on Scale([2, 3]), input [1, 1]: expected calls [('pre', <the module>, 1 arg), " \
        f"('post', [2.0, 3.0])], got {[c if c[0] != 'pre' else ('pre', 'the module' if c[1] == mid else 'another object', *c[2:]) for c in calls]}"
    s.run("pre.remove()\npost.remove()\ncalls.clear()\nm(x)")
    calls = s.value("calls")
    assert calls == [], f"after handle.remove() no hook should run, got calls {calls}"
    got = s.value("(lambda h: (m(x).data, h.remove())[0])(m.register_forward_pre_hook(lambda mod, args: (args[0] * 10,)))")
    assert np.allclose(got, [20, 30]), f"a pre-hook returning (x * 10,): expected forward to see [10, 10] and give [20, 30], got {fmt(got)}"
    got = s.value("(lambda h: (m(x).data, h.remove())[0])(m.register_forward_hook(lambda mod, args, out: out + 1))")
    assert np.allclose(got, [3, 4]), f"a hook returning out + 1: expected output [3, 4], got {fmt(got)}"
    # hidden cases: a pre-hook returning a non-tuple, keyword arguments, chained replacements, order
    s.run("m = Scale([2.0, 3.0])\nlog = []\nhs = [\n"
          "    m.register_forward_pre_hook(lambda mod, args: args[0] + 1),\n"
          "    m.register_forward_pre_hook(lambda mod, args: log.append(args[0].data.tolist())),\n"
          "    m.register_forward_hook(lambda mod, args, out: log.append(args[0].data.tolist())),\n"
          "    m.register_forward_hook(lambda mod, args, out: out * 2),\n"
          "    m.register_forward_hook(lambda mod, args, out: log.append(out.data.tolist())),\n"
          "]")
    got = attempt(s, "m(Tensor([1.0, 1.0]), times=3).data")
    assert not isinstance(got, StudentError), \
        f"a pre-hook returning x + 1 (a Tensor, not a tuple) on Scale([2, 3]) with x=[1, 1]: it should replace args " \
        f"by the 1-tuple (x + 1,), but calling the module raised {got.said}"
    assert np.allclose(got, [24, 36]), \
        f"pre-hook x+1 (not a tuple), kwargs times=3, hook out*2, on Scale([2, 3]) with x=[1, 1]: expected [24, 36], got {fmt(got)}"
    log = s.value("log")
    assert log == [[2.0, 2.0], [2.0, 2.0], [24.0, 36.0]], \
        f"hooks run in registration order, later ones see replaced args and output: expected log [[2, 2], [2, 2], [24, 36]], got {fmt(log)}"
    s.run("for h in hs:\n    h.remove()\nonce = []\n"
          "def remove_self(mod, args, out):\n    once.append(1)\n    h.remove()\n"
          "h = m.register_forward_hook(remove_self)")
    error = s.raises("m(Tensor([1.0, 1.0]))\nm(Tensor([1.0, 1.0]))")
    assert error is None, \
        f"a hook that removes itself (handle.remove() inside the hook), module called twice: raised {error and error.type}: " \
        f"{error and error.message}" + (f" (at {error.at})" if error and error.at else "") + \
        (" (iterate over a copy of the hooks: list(...))" if error and "changed size" in error.message else "")
    once = s.value("len(once)")
    assert once == 1, f"a hook that removes itself (handle.remove() inside the hook) should run once, ran {fmt(once)} times"


@check("test_03_2_walk")
def walk(s):
    s.run(HELPERS + NET)
    got = s.value("names(walk_modules(net))")
    assert got == ["", "0", "1", "1.0", "1.1"], f"walk_modules(net) names: expected ['', '0', '1', '1.0', '1.1'], got {fmt(got)}"
    got, want = s.value("(id(walk_modules(net)[3][1]), id(net[1][0]))")
    assert got == want, "walk_modules(net): the module named '1.0' should be net[1][0]"
    got = s.value("names(walk_tensors(net, '_parameters'))")
    assert got == ["0.w", "1.0.w", "1.1.w"], f"walk_tensors(net, '_parameters') names: expected ['0.w', '1.0.w', '1.1.w'], got {fmt(got)}"
    got, want = s.value("(id(walk_tensors(net, '_parameters')[2][1]), id(net[1][1].w))")
    assert got == want, "the tensor named '1.1.w' should be net[1][1].w itself, not a copy"
    got = s.value("names(walk_tensors(net, '_buffers'))")
    assert got == ["1.0.mask"], f"walk_tensors(net, '_buffers') names: expected ['1.0.mask'], got {fmt(got)}"
    got = s.value("len(net.parameters())")
    assert got == 3, f"net.parameters(): expected 3 parameters, got {fmt(got)}"
    s.run("shared = Scale([5.0])\ntied = Sequential(shared, Masked(1), shared)")
    got = s.value("names(walk_modules(tied))")
    assert got == ["", "0", "1"], \
        f"Sequential(shared, Masked(1), shared): a shared module is listed once, expected ['', '0', '1'], got {fmt(got)}"
    got = s.value("names(walk_tensors(tied, '_parameters'))")
    assert got == ["0.w", "1.w"], f"Sequential(shared, Masked(1), shared): expected parameters ['0.w', '1.w'], got {fmt(got)}"
    got = s.value("names(walk_modules(net, prefix='model'))")
    assert got == ["model", "model.0", "model.1", "model.1.0", "model.1.1"], \
        f"walk_modules(net, prefix='model'): expected ['model', 'model.0', 'model.1', 'model.1.0', 'model.1.1'], got {fmt(got)}"
    s.run("class TwoNames(Module):\n"
          "    def __init__(self):\n"
          "        super().__init__()\n"
          "        self.a = Parameter([1.0])\n"
          "        self.b = self.a\n"
          "        self.register_buffer('empty', None)\n"
          "        self.c = Parameter([2.0])\n")
    got = s.value("names(walk_tensors(TwoNames(), '_parameters'))")
    assert got == ["a", "c"], \
        f"a module with parameters a, b = a (the same tensor) and c: a tensor under two names is listed once (first name), expected ['a', 'c'], got {fmt(got)}"
    got = s.value("names(walk_tensors(TwoNames(), '_buffers'))")
    assert got == [], f"a None buffer (register_buffer('empty', None)) should be skipped: expected [], got {fmt(got)}"
    got = s.value("names(walk_tensors(Scale([1.0]), '_buffers'))")
    assert got == [], f"walk_tensors of a module without buffers: expected [], got {fmt(got)}"


@check("test_03_3_submodule")
def submodule(s):
    s.run(HELPERS + NET)
    got, want = s.value("(id(get_submodule(net, '1.0')), id(net[1][0]))")
    assert got == want, "get_submodule(net, '1.0'): expected net[1][0]"
    got, want = s.value("(id(get_submodule(net, '')), id(net))")
    assert got == want, "get_submodule(net, ''): expected net itself"
    s.expect_error("get_submodule(net, '1.5')", "get_submodule(net, '1.5') (net[1] has children '0' and '1')",
                   ("'5'", "'0'", "'1'"), error="AttributeError")
    s.run("new = Scale([7.0, 7.0])\nset_submodule(net, '1.0', new)")
    got, want = s.value("(id(net[1][0]), id(new))")
    assert got == want, "set_submodule(net, '1.0', new): net[1][0] should now be new"
    got = s.value("list(net[1]._modules)")
    assert got == ["0", "1"], f"the replaced child keeps its place: expected ['0', '1'], got {fmt(got)}"
    got = s.value("names(net.named_parameters())")
    assert got[1:2] == ["1.0.w"], f"named_parameters() should see the new module at '1.0.w', got {fmt(got)}"
    s.expect_error("get_submodule(net, '7')", "get_submodule(net, '7')", ("'7'", "root", "Sequential"),
                   error="AttributeError")
    s.expect_error("set_submodule(net, '1.9', Scale([1.0]))",
                   "set_submodule(net, '1.9', ...) (it replaces, it does not add)", ("'9'",), error="AttributeError")
    got = s.value("list(net[1]._modules)")
    assert got == ["0", "1"], f"a failed set_submodule must not add a child: net[1] has children {fmt(got)}"
    for bad_new in ("np.ones(2)", "'Scale'"):
        s.expect_error(f"set_submodule(net, '0', {bad_new})", f"set_submodule(net, '0', {bad_new}) (not a Module)",
                       error="TypeError")
    s.expect_error("set_submodule(net, '', Scale([1.0]))", "set_submodule(net, '', ...)", error="ValueError")
    s.run("set_submodule(net, '0', Masked(2))")
    kind, bufs = s.value("(type(net[0]).__name__, names(net.named_buffers()))")
    assert kind == "Masked" and bufs == ["0.mask"], \
        f"set_submodule(net, '0', Masked(2)): net[0] should be the Masked and its buffer named '0.mask', got {fmt(kind)}, buffers {bufs}"


@check("test_03_4_state")
def state(s):
    s.run(HELPERS)
    got = attempt(s, "names(walk_tensors(Masked(2), '_buffers'))")
    assert got == ["mask"], \
        f"Task 03.4 calls walk_tensors from Task 03.2, and walk_tensors(Masked(2), '_buffers') did not give " \
        f"[('mask', ...)] ({fmt(got)}): make Task 03.2's tests pass first"
    s.run(NET + "\nsd = state_dict(net)")
    keys = s.value("list(sd)")
    assert keys == ["0.w", "1.0.w", "1.1.w", "1.0.mask"], \
        f"state_dict keys: expected ['0.w', '1.0.w', '1.1.w', '1.0.mask'] (parameters, then buffers), got {keys}"
    kind, value = s.value("(type(sd['0.w']).__name__, sd['0.w'] if isinstance(sd['0.w'], np.ndarray) else None)")
    assert value is not None and value.dtype == np.float32, \
        f"state_dict values: np.ndarray with the tensor's dtype (float32 here), got {fmt(kind)} {getattr(value, 'dtype', '')}"
    s.run("net[0].w.data[0] = 99.0")
    got = s.value("float(sd['0.w'][0])")
    assert got == 1.0, "state_dict must copy: changing the model afterwards changed the saved array"
    s.run("weight = net[0].w\nload_state_dict(net, sd)")
    now, before, got = s.value("(id(net[0].w), id(weight), float(net[0].w.data[0]))")
    same = now == before
    assert same and got == 1.0, \
        f"load_state_dict should copy the values into the existing Parameter (same object: {same}, net[0].w[0] = {fmt(got)}, expected 1.0)"
    s.run("bad = dict(sd)\ndel bad['1.1.w']\nbad['1.1.v'] = np.zeros(2)\nbad['0.w'] = np.zeros(3)")
    s.expect_error("load_state_dict(net, bad)",
                   "loading a state with a missing ('1.1.w'), an unexpected ('1.1.v') and a mis-shaped key ('0.w': (2,) vs (3,))",
                   ("1.1.w", "1.1.v", "0.w", "(2,)", "(3,)"))
    # hidden cases
    s.run("net2 = Sequential(Scale([0.0, 0.0]), Sequential(Masked(2), Scale([0.0, 0.0])))\n"
          "net2[1][0].mask.data[:] = 0.0\n"
          "load_state_dict(net2, {k: Tensor(v) for k, v in state_dict(net).items()})")
    w, mask = s.value("(net2[1][1].w.data, net2[1][0].mask.data)")
    assert np.array_equal(w, [3.0, 4.0]) and np.array_equal(mask, [1.0, 1.0]), \
        f"load_state_dict with Tensor values: parameters and buffers should be restored, got '1.1.w' {fmt(w)}, '1.0.mask' {fmt(mask)}"
    s.run("before = net2[0].w.data.copy()\nbad = state_dict(net)\n"
          "bad['1.0.mask'] = np.zeros((2, 2))\nbad['0.w'] = np.array([5.0, 6.0])")
    s.expect_error("load_state_dict(net2, bad)", "a buffer of the wrong shape ('1.0.mask' (2, 2) for (2,))",
                   ("1.0.mask", "(2, 2)"))
    got = s.value("net2[0].w.data")
    assert np.array_equal(got, [1.0, 2.0]), \
        f"a failed load_state_dict must change nothing: loading a state with '0.w' = [5, 6] and '1.0.mask' of shape " \
        f"(2, 2) raised, as it should, but '0.w' was [1, 2] before and is now {fmt(got)} (check everything, then copy)"
    s.run("load_state_dict(net2, {k: v.astype(np.float64) for k, v in state_dict(net).items()})")
    got = s.value("net2[0].w.dtype")
    assert got == np.float32, f"loading float64 values keeps the parameter's float32 dtype, got {fmt(got)}"
    got = s.value("sorted(state_dict(Scale([1.0]).eval()).keys())")
    assert got == ["w"], f"state_dict of a single Scale module: expected keys ['w'] (no prefix), got {fmt(got)}"
    s.run("two_missing = state_dict(net)\ndel two_missing['1.1.w'], two_missing['1.0.mask']")
    s.expect_error("load_state_dict(net2, two_missing)",
                   "a state without '1.1.w' and '1.0.mask' (the error lists them sorted)", ("['1.0.mask', '1.1.w']",))


def uniform_params(seed: int, n_in: int, n_out: int, bias: bool = True):
    r = np.random.default_rng(seed)
    bound = 1 / np.sqrt(n_in)
    w = r.uniform(-bound, bound, size=(n_out, n_in)).astype(np.float32)
    b = r.uniform(-bound, bound, size=(n_out,)).astype(np.float32) if bias else None
    return w, b


@check("test_03_5_linear")
def linear(s):
    s.run("lin = Linear(4, 3, rng=np.random.default_rng(0))")
    s.run("info = lambda p: (type(p).__name__, isinstance(p, Parameter), getattr(p, 'shape', None), "
          "getattr(p, 'dtype', None), p.data if isinstance(p, Tensor) else None)")
    kind, is_param, shape, wdtype, w = s.value("info(lin.weight)")
    assert is_param and shape == (3, 4), f"Linear(4, 3).weight: expected a Parameter (3, 4), got {fmt(kind)} {shape}"
    kind, is_param, shape, bdtype, b = s.value("info(lin.bias)")
    assert is_param and shape == (3,), f"Linear(4, 3).bias: expected a Parameter (3,), got {fmt(kind)} {shape}"
    assert wdtype == np.float32 and bdtype == np.float32, f"float32 expected, got {wdtype}, {bdtype}"
    assert np.abs(w).max() <= 0.5, \
        f"Linear(4, 3): weights should lie in [-1/sqrt(4), 1/sqrt(4)] = [-0.5, 0.5], max |w| is {fmt(np.abs(w).max())}"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = s.value("lin.forward(Tensor(x)).data", x=x)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    assert y.shape == (2, 3) and np.allclose(y, want, atol=1e-5), \
        f"Linear(4, 3) on x (2, 4) = arange(8): expected {fmt(want)}, got {fmt(y)}"
    got = s.value("list(lin._parameters)")
    assert got == ["weight", "bias"], f"parameters: expected ['weight', 'bias'], got {fmt(got)}"
    s.expect_error("lin.forward(Tensor(np.ones((2, 5), dtype=np.float32)))", "Linear(4, 3) on input (2, 5)",
                   ("4", "(2, 5)"))
    # hidden cases
    w, b = uniform_params(7, 5, 2)
    s.run("lin = Linear(5, 2, rng=np.random.default_rng(7))")
    gw, gb = s.value("(lin.weight.data, lin.bias.data)")
    assert gw.shape == w.shape and gb.shape == b.shape and np.array_equal(gw, w) and np.array_equal(gb, b), \
        "Linear(5, 2, rng=default_rng(7)): expected the weight, then the bias, drawn with " \
        "rng.uniform(-1/sqrt(5), 1/sqrt(5)), cast to float32"
    s.run("nob = Linear(5, 2, bias=False, rng=np.random.default_rng(7))")
    bias, params = s.value("(type(nob.bias).__name__, list(nob._parameters))")
    assert bias == "NoneType" and params == ["weight"], \
        f"Linear(5, 2, bias=False): expected bias None and parameters ['weight'], got parameters {fmt(params)}"
    x3 = np.random.default_rng(1).standard_normal((2, 3, 5)).astype(np.float32)
    got = s.value("nob.forward(Tensor(x3)).data", x3=x3)
    assert got.shape == (2, 3, 2) and np.allclose(got, x3 @ w.T, atol=1e-5), \
        f"Linear(5, 2, bias=False) on a (2, 3, 5) input: expected shape (2, 3, 2) and x @ W.T, got {got.shape}"
    a, c = s.value("(manual_seed(3), Linear(6, 6).weight.data.copy(), manual_seed(3), Linear(6, 6).weight.data)[1::2]")
    assert np.array_equal(a, c), "manual_seed(3) twice: layers built with rng=None should get the same weights"
    op = s.value("(lambda out: None if out.node is None else out.node.op)(lin.forward(Tensor(np.ones((1, 5), dtype=np.float32))))")
    assert op == "add", \
        f"forward should use Tensor operators (x @ W.T + b), so the output is recorded as op 'add'; got op {op!r}"
    s.expect_error("lin.forward(Tensor(np.ones(4, dtype=np.float32)))", "Linear(5, 2) on a (4,) input", ("(4,)", "5"))


@check("test_03_6_dropout")
def dropout(s):
    s.run("x = Tensor(np.ones((4, 1000), dtype=np.float32))\ndrop = Dropout(0.25, rng=np.random.default_rng(0))\n"
          "y = drop.forward(x)")
    shape, dtype, y = s.value("(y.shape, y.dtype, y.data)")
    assert shape == (4, 1000) and dtype == np.float32, \
        f"Dropout(0.25) on (4, 1000) float32: expected same shape and dtype, got {shape} {dtype}"
    values = set(np.unique(y).tolist())
    assert values <= {0.0, float(np.float32(1 / 0.75))}, \
        f"Dropout(0.25) of ones: outputs should be 0 or 1/(1 - 0.25) = 1.3333, got values {sorted(values)[:5]}"
    kept = (y != 0).mean()
    assert 0.72 < kept < 0.78, f"Dropout(0.25) should keep about 75% of 4000 values, kept {kept:.1%}"
    got, want = s.value("(drop.eval(), id(drop.forward(x)), id(x))[1:]")
    assert got == want, "in eval() mode, Dropout.forward(x) should return x itself"
    for bad in (1.0, -0.1):
        s.expect_error(f"Dropout({bad})", f"Dropout({bad}) (p must be in [0, 1))")
    # hidden cases
    xr = np.random.default_rng(2).standard_normal((3, 7))
    u = np.random.default_rng(5).random((3, 7))
    want = xr * ((u >= 0.4) / 0.6)
    dtype, got = s.value("(lambda y: (y.dtype, y.data))(Dropout(0.4, rng=np.random.default_rng(5)).forward(Tensor(xr)))",
                         xr=xr)
    assert dtype == np.float64 and got.shape == (3, 7) and np.allclose(got, want), \
        "Dropout(0.4, rng=default_rng(5)) on float64 (3, 7): expected x * ((rng.random(x.shape) >= 0.4) / 0.6), float64"
    s.run("xg = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)\n"
          "out = Dropout(0.5, rng=np.random.default_rng(1)).forward(xg)\nnode = out.node")
    op, inputs, xid = s.value("(None if node is None else node.op, None if node is None else [id(v) for v in node.inputs], id(xg))")
    assert op == "dropout" and inputs and inputs[0] == xid, \
        f"a Dropout output of an input that requires grad should be recorded as op 'dropout' with input x; got op {op!r}"
    mask, out = s.value("(dict(node.saved).get('mask'), out.data)")
    assert isinstance(mask, np.ndarray) and mask.dtype == np.float32 and mask.shape == (2, 3), \
        f"the saved 'mask' should be a float32 (2, 3) array here, got {getattr(mask, 'dtype', type(mask).__name__)}"
    assert np.allclose(mask * 1.0, out) and set(np.unique(mask).tolist()) <= {0.0, 2.0}, \
        "the saved 'mask' (0 or 1/(1 - p) = 2) times x should equal the output"
    got, want = s.value("(id(Dropout(0.0).forward(xg)), id(xg))")
    assert got == want, "Dropout(0.0) should return x itself"
    training = s.value("Sequential(Dropout(0.5)).eval()[0].training")
    assert training is False, f"eval() on a Sequential reaches its Dropout: expected training False, got {fmt(training)}"
