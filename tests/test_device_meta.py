"""Device bugs caught without a GPU: the course's code runs with its inputs on the ``meta`` device.

On a GPU the usual bugs are a tensor created without ``device=`` (it lands on the CPU), a result
moved to the CPU, or two devices mixed in one operation. :func:`check_device_agnostic` finds them
on any machine: it moves the inputs to ``meta`` (shapes, no data) and watches every torch call.
What reads values (``.item()``, ``.tolist()``) cannot run on meta; there it stops, and runs the
function again on the CPU inputs under the same watch. So each case below says how far meta goes:
``META`` (the whole call ran on meta) or ``VALUES`` (it ran on meta up to its first value read).
If a helper's coverage changes, this file says so.

Three parts:
- the library's helpers (data, models, training, checks), and a planted missing ``device=`` in a
  copy of a helper, which must fail the same check (the check is not vacuous);
- every function and class the solution notebooks define, with a small table of inputs per name
  (a name without a recipe fails: add one);
- the hidden checks' device plumbing: with ``kernel.devices == ["meta", "cpu"]`` every hidden
  test that probes the student's code on a device reaches the second one (the loop goes over
  ``kernel.devices``, never over a list of its own).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from submissions import SETUP, InProcessKernel, checks_of, reference_code
from torch import nn

from gradschool import data, models, training
from gradschool.checks import (
    assert_close,
    assert_equal,
    bernoulli_rate_test,
    check_device_agnostic,
    normal_mean_std_test,
    uniform_bounds_test,
)

META, VALUES = "runs on meta", "reads values"
ASSIGNMENTS = ["01-symmetry-breaking", "02-initialization", "03-optimizers", "04-dropout",
               "05-batchnorm", "06-gradient-regularization"]


def coverage(fn: Callable, *args, **kwargs) -> str:
    """Run ``check_device_agnostic(fn, *args, **kwargs)`` (AssertionError on a device bug);
    return META or VALUES (it fell back to the CPU inputs at a value read)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_device_agnostic(fn, *args, **kwargs)
    fell_back = any("reads tensor values" in str(w.message) for w in caught)
    return VALUES if fell_back else META


def on(make: Callable) -> Callable:
    """A function of one tensor ``like`` that calls ``make(like.device)``: how a helper that
    takes ``device=`` and no tensor is put on meta."""
    return lambda like: make(like.device)


def _labels() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)


def _trained(model: nn.Module) -> nn.Module:
    """``model`` with gradients (a loss on random data, backward)."""
    x, y = _labels()
    F.cross_entropy(model(x), y).backward()
    return model


X, Y = _labels()
LIBRARY = {  # name: (coverage expected, fn, args)
    "data.load_digits": (META, on(lambda d: data.load_digits(device=d)), (torch.empty(0),)),
    "data.load_mnist1d": (META, on(lambda d: data.load_mnist1d(num_samples=10, device=d)),
                          (torch.empty(0),)),
    "data.make_moons": (META, on(lambda d: data.make_moons(64, device=d)), (torch.empty(0),)),
    "data.make_spirals": (META, on(lambda d: data.make_spirals(
        64, device=d, generator=torch.Generator().manual_seed(0))), (torch.empty(0),)),
    # its condition number is a float: read once the eigenvalues are on the device
    "data.quadratic": (VALUES, on(lambda d: data.quadratic(10.0, 3, device=d)), (torch.empty(0),)),
    "data.Quadratic.__call__": (META, data.Quadratic(torch.linspace(1, 10, 3)),
                                (torch.randn(5, 3),)),
    "data.rosenbrock": (META, data.rosenbrock, (torch.randn(5, 2),)),
    "models.mlp (forward)": (META, lambda m, x: m(x),
                             (models.mlp([4, 8, 3], norm=nn.BatchNorm1d, dropout=0.2), X)),
    "models.linear_layers": (META, lambda m: [lin.weight for lin in models.linear_layers(m)],
                             (models.mlp([4, 8, 3]),)),
    # a whole epoch (shuffle, forward, backward, steps, gradient norms) runs on meta before the
    # losses are read back with .tolist()
    "training.train": (VALUES, lambda m, x, y: training.train(
        m, x, y, epochs=1, batch_size=16, X_test=x, y_test=y, progress=False),
        (models.mlp([4, 8, 3]), X, Y)),
    "training.accuracy": (VALUES, training.accuracy, (models.mlp([4, 8, 3]), X, Y)),
    # as the notebooks call them: the model on the device, the data on the CPU
    "training.train (CPU data)": (VALUES, lambda m: training.train(
        m, X, Y, epochs=1, batch_size=16, X_test=X, y_test=Y, progress=False),
        (models.mlp([4, 8, 3]),)),
    "training.train (device=)": (VALUES, lambda like: training.train(
        models.mlp([4, 8, 3]), X, Y, epochs=1, batch_size=16, device=like.device,
        progress=False), (torch.empty(0),)),
    "training.accuracy (CPU data)": (VALUES, lambda m: training.accuracy(m, X, Y),
                                     (models.mlp([4, 8, 3]),)),
    "training._grad_norm": (META, training._grad_norm,
                            (_trained(models.mlp([4, 8, 3]))[0].weight,)),
    "checks.assert_close": (VALUES, assert_close, (torch.ones(3), torch.ones(3))),
    "checks.assert_equal": (VALUES, assert_equal, (torch.ones(3), torch.ones(3))),
    "checks.normal_mean_std_test": (VALUES, normal_mean_std_test, (torch.randn(999), 0.0, 1.0)),
    "checks.uniform_bounds_test": (VALUES, uniform_bounds_test, (torch.rand(999), 0.0, 1.0)),
    "checks.bernoulli_rate_test": (VALUES, bernoulli_rate_test, (torch.rand(999) < 0.5, 0.5)),
}


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_helper_is_device_agnostic(name):
    expected, fn, args = LIBRARY[name]
    assert coverage(fn, *args) == expected, f"{name}: meta coverage changed, update LIBRARY"


def planted(fn: Callable, old: str, new: str) -> Callable:
    """A copy of the library function ``fn`` (in its own module's globals) with ``old``, which
    must occur once in its source, replaced by ``new``: a planted bug."""
    source = inspect.getsource(fn)
    assert source.count(old) == 1, f"{old!r} is not once in {fn.__name__}: update the plant"
    namespace = dict(fn.__globals__)
    exec(compile(source.replace(old, new), f"<planted {fn.__name__}>", "exec"), namespace)
    return namespace[fn.__name__]


def test_a_planted_missing_device_fails():
    # data: the shuffled set stays on the generator's device instead of going to `device`
    finish = planted(data._finish, "x[perm].to(device=device, dtype=dtype)",
                     "x[perm].to(dtype=dtype)")
    moons = planted(data.make_moons, "return _finish(", "return finish(")
    moons.__globals__["finish"] = finish
    with pytest.raises(AssertionError, match="returned a tensor on cpu"):
        check_device_agnostic(on(lambda d: moons(64, device=d)), torch.empty(0))
    # training: CPU labels compared with the predictions where they are, on the model's device
    accuracy = planted(training.accuracy, "(pred == y.to(device))", "(pred == y)")
    with pytest.raises(AssertionError, match="different devices"):
        check_device_agnostic(lambda m: accuracy(m, X, Y), models.mlp([4, 8, 3]))


def test_gradients_reach_the_meta_copies():
    """check_device_agnostic copies .grad with the tensors and modules (the audit's A.8)."""

    def grad_total(model):
        return torch.stack([p.grad.norm() for p in model.parameters()]).norm()

    def grad_of_list(params):
        return torch.stack([p.grad.norm() for p in params]).norm()

    model = _trained(models.mlp([4, 8, 3]))
    assert coverage(grad_total, model) == META
    assert coverage(grad_of_list, list(model.parameters())) == META
    assert all(p.grad.device.type == "cpu" for p in model.parameters())  # caller's untouched


# -- the solutions' functions -------------------------------------------------------------------
def solution_namespace(assignment: str) -> dict:
    """What the solution cells of ``assignment`` define, run in order after the setup imports."""
    namespace: dict = {}
    exec(SETUP + "import copy\nfrom collections.abc import Callable, Sequence\n", namespace)
    for source in dict.fromkeys(reference_code(assignment).values()):  # one run per cell
        exec(compile(source, f"<{assignment} solution>", "exec"), namespace)
    return namespace


def _params(n: int = 2) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(1)
    params = [nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64)) for _ in range(n)]
    for p in params:
        p.grad = torch.randn(4, 3, generator=g, dtype=torch.float64)
    return params


def _steps(optimizer: type, **options) -> Callable:
    """Three steps of ``optimizer(params, **options)``; returns the tensors of its state."""

    def run(params):
        opt = optimizer(params, **options)
        for _ in range(3):
            opt.step()
        return [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]

    return run


def _bn_args() -> tuple:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(16, 5, generator=g), torch.rand(5, generator=g) + 0.5,
            torch.randn(5, generator=g), torch.zeros(5), torch.ones(5))


def _initializer(name: str, ns: dict) -> list:
    return [(ns[name], (torch.empty(6, 5),), {})]


NOT_TENSOR = "takes and returns no tensor: nothing depends on a device"
#: name -> (ns -> list of (fn, args, kwargs)), or a reason why there is nothing to run.
RECIPES: dict[str, Callable | str] = {
    # 01-symmetry-breaking
    "constant_init_": lambda ns: [(ns["constant_init_"], (models.mlp([4, 5, 3]), 0.5), {})],
    "random_init_": lambda ns: [(ns["random_init_"], (models.mlp([4, 5, 3]), 0.1), {})],
    "count_distinct_units": lambda ns: [(ns["count_distinct_units"], (torch.randn(5, 4),), {})],
    "collapse_to_one_unit": lambda ns: [(ns["collapse_to_one_unit"], (models.mlp([4, 5, 3]),), {})],
    # 02-initialization
    "compute_fans": NOT_TENSOR, "calculate_gain": NOT_TENSOR, "_kaiming_std": NOT_TENSOR,
    "predict_variances": NOT_TENSOR,
    **{name: functools.partial(_initializer, name)
       for name in ("xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")},
    # 03-optimizers
    "SGD": lambda ns: [(_steps(ns["SGD"], lr=0.1, momentum=0.9, nesterov=True,
                               weight_decay=0.01), (_params(),), {})],
    "Adagrad": lambda ns: [(_steps(ns["Adagrad"], lr=0.1, weight_decay=0.01), (_params(),), {})],
    "RMSprop": lambda ns: [(_steps(ns["RMSprop"], lr=0.01, alpha=0.9), (_params(),), {})],
    "Adam": lambda ns: [(_steps(ns["Adam"], lr=0.01, weight_decay=0.01), (_params(),), {})],
    "AdamW": lambda ns: [(_steps(ns["AdamW"], lr=0.01), (_params(),), {})],
    "adam_foreach_step_": lambda ns: [(torch.no_grad()(ns["adam_foreach_step_"]), (
        _params(), [p.grad for p in _params()], [torch.zeros(4, 3, dtype=torch.float64)
                                                 for _ in range(2)],
        [torch.ones(4, 3, dtype=torch.float64) for _ in range(2)], 1),
        {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01})],
    # 04-dropout
    "dropout": lambda ns: [(ns["dropout"], (torch.randn(8, 6), 0.3), {})],
    "classic_dropout": lambda ns: [(ns["classic_dropout"], (torch.randn(8, 6), 0.3), {})],
    "Dropout": lambda ns: [(lambda m, x: m(x), (ns["Dropout"](0.3), torch.randn(8, 6)), {})],
    "mc_dropout_predict": lambda ns: [(ns["mc_dropout_predict"], (nn.Sequential(
        nn.Linear(6, 5), ns["Dropout"](0.3), nn.Linear(5, 2)), torch.randn(8, 6), 4), {})],
    "expected_dropout_loss": lambda ns: [(ns["expected_dropout_loss"], (
        X, torch.randn(40), torch.randn(4, requires_grad=True), 0.3), {})],
    # 05-batchnorm
    "batchnorm_forward": lambda ns: [(ns["batchnorm_forward"], _bn_args(), {}),
                                     (ns["batchnorm_forward"], _bn_args(), {"training": False})],
    "batchnorm_backward": lambda ns: [(
        lambda dout, *args: ns["batchnorm_backward"](dout, ns["batchnorm_forward"](*args)[1]),
        (torch.randn(16, 5), *_bn_args()), {})],
    "BatchNormFunction": "run through BatchNorm1d (its forward and backward)",
    "BatchNorm1d": lambda ns: [(lambda m, x: torch.autograd.grad(m(x).square().sum(), (
        x, *m.parameters())), (ns["BatchNorm1d"](5), torch.randn(16, 5).requires_grad_()), {})],
    # 06-gradient-regularization
    "layer_grad_norms": lambda ns: [(ns["layer_grad_norms"], (_trained(models.mlp([4, 8, 3])),),
                                     {})],
    "update_ratios": lambda ns: [(ns["update_ratios"], (
        {"w": torch.randn(4, 3)}, {"w": torch.randn(4, 3)}), {})],
    "first_nonfinite_module": lambda ns: [(ns["first_nonfinite_module"], (
        models.mlp([4, 8, 3]), X), {})],
    "grad_norm": lambda ns: [(ns["grad_norm"], (_params(),), {}),
                             (ns["grad_norm"], (_params(), math.inf), {})],
    "clip_grad_norm_": lambda ns: [(ns["clip_grad_norm_"], (_params(), 0.5), {})],
    "clip_grad_value_": lambda ns: [(ns["clip_grad_value_"], (_params(), 0.1), {})],
    "add_gradient_noise_": lambda ns: [(ns["add_gradient_noise_"], (_params(), 10), {})],
    "weight_norm_grads": lambda ns: [(ns["weight_norm_grads"], (
        torch.randn(4, 6), torch.rand(4, 1) + 0.5, torch.randn(4, 6)), {})],
    "input_gradient_penalty": lambda ns: [(ns["input_gradient_penalty"], (
        models.mlp([4, 8, 3]), X, Y, F.cross_entropy), {})],
    "path_norm": lambda ns: [(ns["path_norm"], (models.mlp([4, 8, 3]),), {})],
}

SOLUTION_NAMES = [(a, name) for a in ASSIGNMENTS for name in reference_code(a)]
TO_RUN = [(a, name) for a, name in SOLUTION_NAMES if callable(RECIPES.get(name))]


def test_every_solution_name_has_a_recipe():
    missing = [f"{a}: {name}" for a, name in SOLUTION_NAMES if name not in RECIPES]
    assert not missing, ("no input recipe in RECIPES (tests/test_device_meta.py) for "
                         f"{', '.join(missing)}: add one, or the reason why none is needed")


@pytest.fixture(scope="module")
def namespaces() -> dict[str, dict]:
    return {a: solution_namespace(a) for a in ASSIGNMENTS}


@pytest.mark.parametrize(("assignment", "name"), TO_RUN, ids=[name for _, name in TO_RUN])
def test_solution_is_device_agnostic(namespaces, assignment, name):
    for fn, args, kwargs in RECIPES[name](namespaces[assignment]):
        coverage(fn, *args, **kwargs)


# -- the hidden checks' device plumbing --------------------------------------------------------
class ReachedSecondDevice(Exception):
    """Raised by :class:`TwoDeviceKernel` at the first probe on its second device."""


class TwoDeviceKernel(InProcessKernel):
    """An in-process kernel whose ``devices`` are ``["meta", "cpu"]``: the first probe whose
    inputs name or hold ``meta`` is recorded and stops the check (meta tensors have no values
    to compare, and the point is only that it was asked for); probes on the CPU run for real.
    Meta comes first so that a check reaches it before its CPU work (fast); a check that loops
    over a list of its own asks for "cpu" and never for "meta"."""

    def __init__(self, *sources: str) -> None:
        super().__init__(*sources)
        self.devices = ["meta", "cpu"]
        self.asked: set[str] = set()

    def probe(self, code: str, **inputs):
        found = {_device_named(v) for v in inputs.values()} - {None}
        self.asked |= found
        if "meta" in found:
            raise ReachedSecondDevice
        return super().probe(code, **inputs)


def _device_named(value) -> str | None:
    """The device a probe input names: a device string or torch.device, or a tensor's."""
    if isinstance(value, torch.Tensor):
        return value.device.type
    if isinstance(value, torch.device):
        return value.type
    if value in ("cpu", "cuda", "meta"):
        return value
    return None


def _tests_of(assignment: str) -> list[tuple[str, str]]:
    return [(assignment, test_id) for test_id in checks_of(assignment).functions]


HIDDEN_TESTS = [pair for a in ASSIGNMENTS for pair in _tests_of(a)]


@pytest.mark.parametrize(("assignment", "test_id"), HIDDEN_TESTS,
                         ids=[t for _, t in HIDDEN_TESTS])
def test_hidden_checks_loop_over_the_kernels_devices(assignment, test_id):
    """A hidden test that runs the student's code on a device runs it on every device of
    ``kernel.devices`` (the grading kernel decides them: a GPU the sandbox cannot use must not be
    probed; a GPU it can use must be)."""
    from gradschool.instructor import Guard

    checks = checks_of(assignment)
    kernel = TwoDeviceKernel(*dict.fromkeys(reference_code(assignment).values()))
    kernel.guard = Guard((), (), dict(checks.stand_ins.get(test_id, {})))
    for check in checks.functions[test_id]:
        try:
            check(kernel)
        except ReachedSecondDevice:
            return
    assert "cpu" not in kernel.asked, (
        f"{test_id}: the hidden checks probe the student's code on cpu but never on the "
        "kernel's other device (meta here): loop over kernel.devices")
