"""Hidden checks of 05-batchnorm (instructor side: never released, never installed).

Each check makes its inputs here (float64, shapes, scales and momenta the notebook never uses),
asks the student's kernel only to run the student's code on them (``kernel.probe``), and compares
with torch's own batch norm computed here: ``F.batch_norm`` for the forward pass and the running
statistics, autograd through it for the gradients, ``nn.BatchNorm1d`` for the module.

One mistake costs one test. The cache that ``batchnorm_forward`` returns and
``batchnorm_backward`` reads is fixed by the notebook, ``(x_hat, gamma, inv_std, training)``: the
forward's check compares it with torch's values, and the backward's check makes it here, so the
backward is graded on its own. The module's check runs with stand-ins for both functions
(torch's batch norm, and autograd through it): a wrong forward or backward costs their own
tests only.

No autograd in the backward: the names that reach it are forbidden in its code, and it is called
under ``torch.inference_mode()``, where autograd records nothing even inside
``torch.enable_grad()``, on a cache of tensors that carry no graph.

Tolerances: float64 with rtol 1e-9 (values) and an atol of 1e-10 times the largest expected
magnitude. A correct implementation, however written, is within about 1e-12; each classic slip
(eps outside the square root, the unbiased variance to normalize, the biased one in running_var,
the momentum the wrong way round, a missing term of dx, dgamma/dbeta swapped or averaged) is off
by 1e-4 or far more on these inputs (features of std 1e-3 make eps matter, batches of 2 make
N/(N-1) = 2).
"""

import torch
import torch.nn.functional as F
from torch import nn

from gradschool.checks import assert_close, assert_equal
from gradschool.instructor import HiddenChecks, device_of

checks = HiddenChecks()
F64 = torch.float64

# torch's batch norm in every spelling, and its per-example relatives that normalize a column
# when applied to x.T (layer_norm(x.T, (N,)) is batch norm without gamma and beta); the bare names
# catch torch.ops.aten.<name> (see gradschool.delegation).
NORMS = [
    "torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.modules.batchnorm",
    "torch.native_batch_norm", "torch._native_batch_norm_legit",
    "torch._native_batch_norm_legit_no_training", "torch._batch_norm_impl_index",
    "torch.cudnn_batch_norm", "torch.miopen_batch_norm", "torch.batch_norm_stats",
    "torch.batch_norm_elemt", "torch.batch_norm_gather_stats", "torch.batch_norm_update_stats",
    "torch.batch_norm_backward_reduce", "torch.batch_norm_backward_elemt",
    "torch.nn.functional.layer_norm", "torch.layer_norm", "torch.native_layer_norm",
    "torch.nn.LayerNorm", "torch.nn.functional.group_norm", "torch.group_norm",
    "torch.native_group_norm", "torch.nn.GroupNorm", "torch.nn.functional.instance_norm",
    "torch.instance_norm", "torch.nn.modules.instancenorm", "torch.nn.functional.rms_norm",
    "torch.rms_norm", "torch.nn.RMSNorm", "native_batch_norm", "_native_batch_norm_legit",
    "native_layer_norm", "native_group_norm", "batch_norm_backward",
    "native_batch_norm_backward",
]
# Ways to get a gradient from autograd instead of deriving it: torch's objects only (a local
# variable or a parameter named `grad`, `torch.set_grad_enabled(False)` and `torch.no_grad()` are
# fine). No entry here is reached by a correct solution, even through torch's internals.
AUTOGRAD = ["torch.Tensor.backward", "torch.autograd.grad", "torch.autograd.backward",
            "torch.autograd.functional", "torch.autograd.forward_ad", "torch.func", "functorch",
            "torch.enable_grad"]

def rand(g, *shape, low=None, high=None):
    t = torch.rand(*shape, generator=g, dtype=F64) if low is not None else torch.randn(
        *shape, generator=g, dtype=F64)
    return low + (high - low) * t if low is not None else t


def features(g, n, scales, offsets):
    """(n, D) float64 inputs: column j ~ offsets[j] + scales[j] * (a skewed unit variable)."""
    z = rand(g, n, len(scales))
    z = z + 0.5 * z**2  # skewed, so mean and median differ
    return torch.tensor(offsets, dtype=F64) + torch.tensor(scales, dtype=F64) * z


def close(actual, expected, what, rtol=1e-9):
    scale = expected.abs().max().item() if expected.numel() else 0.0
    assert_close(actual, expected, rtol=rtol, atol=1e-10 * max(scale, 1e-30), name=what)


# -- Exercise 1: batchnorm_forward -------------------------------------------------------------
FORWARD = """
rm, rv = running_mean.to(device), running_var.to(device)
pointers = (rm.data_ptr(), rv.data_ptr())
record = []

def plain(item):  # what travels back: tensors and plain values as they are, anything else named
    ok = isinstance(item, (torch.Tensor, bool, int, float, type(None)))
    return item if ok else f"a {type(item).__name__}"

for batch, training in zip(batches, modes):
    batch = batch.to(device)
    before = batch.clone()
    try:
        out, cache = batchnorm_forward(batch, gamma.to(device), beta.to(device), rm, rv,
                                       training=training, **kwargs)
        error = ""
    except ValueError:
        out, cache, error = None, None, "ValueError"
    if isinstance(cache, (tuple, list)):
        cache = [type(cache).__name__, *(plain(item) for item in cache)]
    elif cache is not None:
        cache = f"a {type(cache).__name__}"
    record.append({"out": out if isinstance(out, torch.Tensor) or out is None else repr(out),
                   "cache": cache, "error": error, "running_mean": rm.clone(),
                   "running_var": rv.clone(), "x_unchanged": torch.equal(batch, before)})
result = {"record": record, "same_storage": (rm.data_ptr(), rv.data_ptr()) == pointers}
"""


def forward_cases():
    """(description, inputs) of each sequence of calls sharing one pair of running stats."""
    g = torch.Generator().manual_seed(2718)
    scales, offsets = [1e-3, 0.05, 1.0, 10.0, 300.0, 2.0], [5.0, -2.0, 0.0, 100.0, -1e3, 0.5]
    sizes = [(32, True), (2, True), (7, True), (1, True), (5, False), (64, True), (3, False),
             (1, False)]
    yield "six features of std 1e-3 to 300, default momentum and eps", {
        "batches": [features(g, n, scales, offsets) for n, _ in sizes],
        "modes": [t for _, t in sizes], "kwargs": {},
        "gamma": rand(g, 6, low=0.5, high=2.0), "beta": rand(g, 6),
        "running_mean": rand(g, 6), "running_var": rand(g, 6, low=0.5, high=3.0)}
    sizes = [(2, True), (9, True), (2, True), (4, False), (2, True)]
    yield "three features, momentum 0.35, eps 1e-3, batches of 2", {
        "batches": [features(g, n, [0.02, 1.0, 4.0], [1.0, -3.0, 0.0]) for n, _ in sizes],
        "modes": [t for _, t in sizes], "kwargs": {"momentum": 0.35, "eps": 1e-3},
        "gamma": rand(g, 3, low=-1.5, high=1.5), "beta": rand(g, 3),
        "running_mean": rand(g, 3), "running_var": rand(g, 3, low=0.5, high=3.0)}


def reference_cache(x, gamma, running_mean, running_var, training, eps):
    """The cache the notebook prescribes, (x_hat, gamma, inv_std, training), in float64."""
    if training:
        mean, var = x.mean(0), x.var(0, unbiased=False)
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / torch.sqrt(var + eps)
    return (x - mean) * inv_std, gamma, inv_std, training


def reference_forward(inputs):
    rm, rv = inputs["running_mean"].clone(), inputs["running_var"].clone()
    kwargs = {"momentum": 0.1, "eps": 1e-5, **inputs["kwargs"]}
    record = []
    for batch, training in zip(inputs["batches"], inputs["modes"], strict=True):
        cache = reference_cache(batch, inputs["gamma"], rm.clone(), rv.clone(), training,
                                kwargs["eps"])
        try:
            out = F.batch_norm(batch, rm, rv, inputs["gamma"], inputs["beta"], training,
                               **kwargs)
            error = ""
        except ValueError:
            out, error = None, "ValueError"
        record.append({"out": out, "cache": cache, "error": error, "running_mean": rm.clone(),
                       "running_var": rv.clone()})
    return record


def check_cache(mine, expected, call, device):
    """The cache of one call is the tuple (x_hat, gamma, inv_std, training) of the notebook."""
    layout = "(the notebook fixes it: the tuple (x_hat, gamma, inv_std, training))"
    kind = mine[0] if isinstance(mine, list) else mine
    assert_equal(kind in ("tuple", "list"), True, name=f"the cache of {call} is {kind} {layout}")
    assert_equal(len(mine) - 1, 4, name=f"number of items in the cache of {call} {layout}")
    for what, got, ref in zip(("x_hat", "gamma", "inv_std"), mine[1:4], expected[:3],
                              strict=True):
        assert_equal(type(got).__name__, "Tensor", name=f"{what} in the cache of {call} {layout}")
        assert_equal((got.dtype, device_of(got)), (F64, device),
                     name=f"dtype and device of {what} in the cache of {call}")
        close(got.cpu(), ref, f"{what} in the cache of {call} {layout}")
    assert_equal(mine[4], expected[3], name=f"training in the cache of {call} (the bool given)")


@checks.test("bn-forward-tests", forbid=NORMS)
def batchnorm_forward_matches_torch(kernel):
    for device in kernel.devices:
        for description, inputs in forward_cases():
            got = kernel.probe(FORWARD, device=device, **inputs)
            for i, (mine, ref) in enumerate(zip(got["record"], reference_forward(inputs),
                                                strict=True)):
                n, training = inputs["batches"][i].shape[0], inputs["modes"][i]
                call = (f"call {i} ({'training' if training else 'evaluation'}, N={n}) of "
                        f"{description} on {device}")
                assert_equal(mine["x_unchanged"], True, name=f"x after {call} (do not modify x)")
                if ref["error"]:
                    assert_equal(mine["error"], "ValueError",
                                 name=f"exception for {call} (a batch of one in training)")
                else:
                    assert_equal(mine["error"], "", name=f"exception raised by {call}")
                    assert_equal(type(mine["out"]).__name__, "Tensor", name=f"out of {call}")
                    assert_equal((mine["out"].dtype, device_of(mine["out"])),
                                 (F64, device), name=f"dtype and device of out of {call}")
                    close(mine["out"].cpu(), ref["out"], f"out of {call}")
                    check_cache(mine["cache"], ref["cache"], call, device)
                stats = "(running stats must be updated in place, with (1-m) r + m batch and "
                stats += "the unbiased variance)" if training else "(eval must not change them)"
                close(mine["running_mean"].cpu(), ref["running_mean"],
                      f"running_mean after {call} {stats}")
                close(mine["running_var"].cpu(), ref["running_var"],
                      f"running_var after {call} {stats}")
            assert_equal(got["same_storage"], True, name=f"storage of running_mean and "
                         f"running_var after {description} on {device} (update them in place)")


# -- Exercise 2: batchnorm_backward ------------------------------------------------------------
# The cache is made here (the notebook fixes its layout), not by the student's forward.
BACKWARD = """
upstream = dout.to(device)
cache = (x_hat.to(device), gamma.to(device), inv_std.to(device), training)
try:
    with torch.inference_mode():  # autograd records nothing here, even under enable_grad
        grads = batchnorm_backward(upstream, cache)
except RuntimeError as e:
    if "grad" not in str(e):
        raise
    raise RuntimeError("batchnorm_backward relies on autograd (it runs under torch."
                       f"inference_mode() here, where autograd records nothing): {e}") from None
grads = [t if isinstance(t, torch.Tensor) else repr(t) for t in grads]
result = {"grads": grads, "dout_unchanged": torch.equal(upstream.cpu(), dout),
          "cache_unchanged": all(torch.equal(a.cpu(), b) for a, b in
                                 zip(cache[:3], (x_hat, gamma, inv_std)))}
"""


def backward_cases():
    g = torch.Generator().manual_seed(31415)
    shapes = [(2, 5, True), (3, 4, True), (17, 6, True), (64, 3, True), (2, 3, False),
              (11, 6, False)]
    for n, d, training in shapes:
        scales = [10.0 ** rand(g, 1, low=-3.0, high=2.0).item() for _ in range(d)]
        offsets = (5 * rand(g, d)).tolist()
        yield {"x": features(g, n, scales, offsets), "gamma": rand(g, d, low=-2.0, high=2.0),
               "beta": rand(g, d), "running_mean": torch.tensor(offsets, dtype=F64),
               "running_var": torch.tensor(scales, dtype=F64) ** 2 * rand(g, d, low=0.5,
                                                                           high=2.0),
               "dout": 3 * rand(g, n, d), "training": training,
               "eps": 1e-4 if n == 17 else 1e-5}


def reference_backward(inputs):
    leaves = [inputs[k].clone().requires_grad_() for k in ("x", "gamma", "beta")]
    out = F.batch_norm(leaves[0], inputs["running_mean"].clone(), inputs["running_var"].clone(),
                       leaves[1], leaves[2], inputs["training"], 0.1, inputs["eps"])
    return torch.autograd.grad(out, leaves, inputs["dout"])


@checks.test("bn-backward-tests", forbid=[*NORMS, *AUTOGRAD])
def batchnorm_backward_matches_autograd(kernel):
    for device in kernel.devices:
        for inputs in backward_cases():
            n, d = inputs["x"].shape
            mode = "training" if inputs["training"] else "evaluation"
            what = f"batchnorm_backward in {mode} for N={n}, D={d}, eps={inputs['eps']} on {device}"
            x_hat, gamma, inv_std, training = reference_cache(
                inputs["x"], inputs["gamma"], inputs["running_mean"], inputs["running_var"],
                inputs["training"], inputs["eps"])
            got = kernel.probe(BACKWARD, device=device, x_hat=x_hat, gamma=gamma,
                               inv_std=inv_std, training=training, dout=inputs["dout"])
            assert_equal(got["dout_unchanged"], True, name=f"dout after {what}")
            assert_equal(got["cache_unchanged"], True, name=f"the cache after {what}")
            assert_equal(len(got["grads"]), 3, name=f"number of values returned by {what}")
            for name, mine, ref in zip(("dx", "dgamma", "dbeta"), got["grads"],
                                       reference_backward(inputs), strict=True):
                assert_equal(type(mine).__name__, "Tensor", name=f"type of {name} of {what}")
                assert_equal((tuple(mine.shape), mine.dtype, device_of(mine)),
                             (tuple(ref.shape), F64, device),
                             name=f"shape, dtype and device of {name} of {what}")
                close(mine.cpu(), ref, f"{name} of {what} (vs autograd through torch's batch "
                      f"norm, in float64)", rtol=1e-8)


# -- Exercise 3: BatchNorm1d -------------------------------------------------------------------
# Stand-ins for the student's two functions during every probe of the module's test: torch's batch
# norm forward, and autograd through it as the backward (their cache is their own business: the
# module only passes it on). A wrong forward or backward then costs its own test only.
STAND_INS = {
    "batchnorm_forward": """
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                      eps=1e-5):
    import torch
    before = (running_mean.clone(), running_var.clone())
    out = torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta, training,
                                         momentum, eps)
    return out, (x, gamma, beta, *before, training, eps)
""",
    "batchnorm_backward": """
def batchnorm_backward(dout, cache):
    import torch
    x, gamma, beta, running_mean, running_var, training, eps = cache
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (x, gamma, beta)]
        out = torch.nn.functional.batch_norm(leaves[0], running_mean.clone(),
                                             running_var.clone(), *leaves[1:], training, 0.0, eps)
        return torch.autograd.grad(out, leaves, dout)
""",
}

NAMES = """
bn = BatchNorm1d(4)
result = {"parameters": sorted(n for n, _ in bn.named_parameters()),
          "buffers": sorted(n for n, _ in bn.named_buffers()),
          "state_dict": sorted(bn.state_dict()),
          "mro": [f"{c.__module__}.{c.__qualname__}" for c in type(bn).__mro__],
          "modules": [f"{type(m).__module__}.{type(m).__qualname__}" for m in bn.modules()],
          "initial": {k: v.clone() for k, v in bn.state_dict().items()}}
"""

MODULE = """
import sys
namespace = sys.modules["__main__"].__dict__
calls = {"batchnorm_forward": 0, "batchnorm_backward": 0}
originals = {name: namespace.get(name) for name in calls}

def counting(name):
    def wrapper(*args, **kw):
        calls[name] += 1
        return originals[name](*args, **kw)
    return wrapper

bn = BatchNorm1d(width, **kwargs).to(device=device, dtype=torch.float64)
bn.load_state_dict({k: v.to(device) for k, v in state.items()})
record, custom = [], []
try:
    for name in calls:
        namespace[name] = counting(name)
    for batch, upstream, training in zip(batches, upstreams, modes):
        bn.train(training)
        xi = batch.to(device).requires_grad_()
        out = bn(xi)
        custom.append(isinstance(out.grad_fn, torch.autograd.function.BackwardCFunction))
        (out * upstream.to(device)).sum().backward()
        record.append([out.detach(), xi.grad, bn.weight.grad.clone(), bn.bias.grad.clone(),
                       bn.running_mean.clone(), bn.running_var.clone(),
                       bn.num_batches_tracked.clone()])
        bn.zero_grad()
finally:
    namespace.update(originals)
bn.train()
before = [b.clone() for b in (bn.running_mean, bn.running_var)]
try:
    bn(torch.ones(1, width, device=device, dtype=torch.float64))
    one = "no error"
except ValueError:
    one = "ValueError"
result = {"record": record, "custom": custom, "calls": calls, "one": one,
          "one_unchanged": all(torch.equal(a, b) for a, b in zip(before, (bn.running_mean,
                                                                          bn.running_var)))}
"""

NAMES_OUT = ["output", "grad of x", "grad of weight", "grad of bias", "running_mean",
             "running_var", "num_batches_tracked"]


def module_cases():
    g = torch.Generator().manual_seed(1618)
    for width, kwargs, sizes in [
        (5, {}, [(16, True), (2, True), (33, True), (6, False), (2, True), (9, False),
                 (8, True), (3, True), (64, True), (5, False), (2, True), (1, False)]),
        (3, {"momentum": 0.27, "eps": 1e-3}, [(4, True), (2, True), (5, False), (12, True),
                                              (3, True), (7, False), (2, True), (6, True)]),
    ]:
        ref = nn.BatchNorm1d(width).double()
        with torch.no_grad():
            ref.weight.copy_(rand(g, width, low=-1.5, high=1.5))
            ref.bias.copy_(rand(g, width))
            ref.running_mean.copy_(rand(g, width))
            ref.running_var.copy_(rand(g, width, low=0.5, high=2.0))
            ref.num_batches_tracked.fill_(7)
        scales = [10.0 ** rand(g, 1, low=-2.5, high=1.5).item() for _ in range(width)]
        offsets = (3 * rand(g, width)).tolist()
        yield {"width": width, "kwargs": kwargs, "state": ref.state_dict(),
               "batches": [features(g, n, scales, offsets) for n, _ in sizes],
               "upstreams": [rand(g, n, width) for n, _ in sizes],
               "modes": [t for _, t in sizes]}


def reference_module(case):
    ref = nn.BatchNorm1d(case["width"], **case["kwargs"]).double()
    ref.load_state_dict(case["state"])
    record = []
    for batch, upstream, training in zip(case["batches"], case["upstreams"], case["modes"],
                                         strict=True):
        ref.train(training)
        xi = batch.clone().requires_grad_()
        out = ref(xi)
        (out * upstream).sum().backward()
        record.append([out.detach(), xi.grad, ref.weight.grad.clone(), ref.bias.grad.clone(),
                       ref.running_mean.clone(), ref.running_var.clone(),
                       ref.num_batches_tracked.clone()])
        ref.zero_grad()
    return record


@checks.test("bn-module-tests", forbid=[*NORMS, *AUTOGRAD], stand_ins=STAND_INS)
def batchnorm_module_has_torchs_interface(kernel):
    got = kernel.probe(NAMES)
    reference = nn.BatchNorm1d(4)
    assert_equal(got["parameters"], ["bias", "weight"], name="parameters of BatchNorm1d(4)")
    assert_equal(got["buffers"], ["num_batches_tracked", "running_mean", "running_var"],
                 name="buffers of BatchNorm1d(4) (register them with register_buffer)")
    assert_equal(got["state_dict"], sorted(reference.state_dict()),
                 name="state_dict keys of BatchNorm1d(4) (those of nn.BatchNorm1d)")
    assert_equal([c for c in got["mro"] if c.startswith("torch.nn.modules.batchnorm")], [],
                 name="torch's batch norm classes among BatchNorm1d's base classes")
    assert_equal([m for m in got["modules"] if m.startswith("torch.nn.modules.batchnorm")], [],
                 name="torch's batch norm modules inside BatchNorm1d")
    for key, value in reference.state_dict().items():
        assert_equal((got["initial"][key].dtype, tuple(got["initial"][key].shape)),
                     (value.dtype, tuple(value.shape)), name=f"dtype and shape of '{key}'")
        assert_equal(got["initial"][key], value, name=f"initial value of '{key}'")


@checks.test("bn-module-tests", stand_ins=STAND_INS)
def batchnorm_module_matches_torch_over_many_steps(kernel):
    for device in kernel.devices:
        for case in module_cases():
            got = kernel.probe(MODULE, device=device, **case)
            where = f"BatchNorm1d({case['width']}, **{case['kwargs']}) on {device}"
            assert_equal(got["custom"], [True] * len(case["modes"]),
                         name=f"outputs of {where} made by a custom autograd.Function")
            assert_equal(got["calls"]["batchnorm_forward"] >= len(case["modes"]), True,
                         name=f"{where} calls your batchnorm_forward at every step")
            assert_equal(got["calls"]["batchnorm_backward"] >= len(case["modes"]), True,
                         name=f"{where} calls your batchnorm_backward at every backward pass")
            for step, (mine, ref) in enumerate(zip(got["record"], reference_module(case),
                                                   strict=True)):
                n, training = case["batches"][step].shape[0], case["modes"][step]
                call = f"step {step} ({'training' if training else 'evaluation'}, N={n})"
                for name, a, e in zip(NAMES_OUT, mine, ref, strict=True):
                    if name == "num_batches_tracked":
                        assert_equal(a.cpu(), e, name=f"{name} after {call} of {where}")
                    else:
                        close(a.cpu(), e, f"{name} after {call} of {where} vs nn.BatchNorm1d",
                              rtol=1e-8)
            assert_equal(got["one"], "ValueError",
                         name=f"{where} on a batch of one in training mode")
            assert_equal(got["one_unchanged"], True,
                         name=f"running statistics of {where} after a refused batch of one")
