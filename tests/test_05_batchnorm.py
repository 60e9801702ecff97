"""05-batchnorm: the graders give full marks to the solution, zero to the blank release, and fail
known-wrong or delegating implementations of batchnorm_forward, batchnorm_backward, BatchNorm1d.

Two levels. End to end, ``gradschool grade`` on five submissions (the reference, the blank, three
groups of mistakes with one mistake per graded function each). In process and fast, the hidden
checks run on many single mistakes through a stand-in for the grading kernel that executes the
probes here, so that each mistake is shown to be caught on its own, with the reference code for
the other functions.
"""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT
from submissions import (
    InProcessKernel,
    grade_json,
    grade_released_stub,
    hidden_verdict,
    make_submission,
    reference_code,
    results_by_function,
    solution_cells,
    solution_notebook,
)

from gradschool.instructor import ProbeFailed, load_hidden_checks

ASSIGNMENT = "05-batchnorm"
FORWARD, BACKWARD, MODULE = "batchnorm_forward", "batchnorm_backward", "BatchNorm1d"
REFERENCE = reference_code(ASSIGNMENT)
CHECKS = load_hidden_checks(ROOT / "autograder" / "checks" / f"{ASSIGNMENT}.py")
TEST_OF = {FORWARD: "bn-forward-tests", BACKWARD: "bn-backward-tests", MODULE: "bn-module-tests"}


def _edit(name: str, *pairs: str) -> str:
    """The reference code of ``name`` with each ``old`` (which must occur) replaced by ``new``."""
    source = REFERENCE[name]
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert old in source, f"{old!r} is not in the reference {name}"
        source = source.replace(old, new)
    return source


# -- known mistakes, one at a time -------------------------------------------------------------
BIASED_RUNNING_VAR = _edit(FORWARD, "momentum * n / (n - 1) * var", "momentum * var")
MOMENTUM_SWAPPED = _edit(FORWARD, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
                         "running_mean.mul_(momentum).add_((1 - momentum) * mean)",
                         "running_var.mul_(1 - momentum).add_(momentum * n / (n - 1) * var)",
                         "running_var.mul_(momentum).add_((1 - momentum) * n / (n - 1) * var)")
WRONG_FORWARD = {
    "eps outside the square root": _edit(FORWARD, "1.0 / torch.sqrt(var + eps)",
                                         "1.0 / (torch.sqrt(var) + eps)"),
    "normalizes with the unbiased variance": _edit(
        FORWARD, "var = (centred * centred).mean(dim=0)  # biased: divided by N",
        "var = x.var(dim=0)", "momentum * n / (n - 1) * var", "momentum * var"),
    "running_var updated with the biased variance": BIASED_RUNNING_VAR,
    "momentum the wrong way round": MOMENTUM_SWAPPED,
    "evaluation with the batch statistics": _edit(
        FORWARD, "    else:\n        centred = x - running_mean\n        var = running_var\n", "",
        "    if training:\n        n = x.shape[0]", "    n = x.shape[0]\n    if True:",
        "        with torch.no_grad():", "        if training:"),
    "running statistics rebound, not updated in place": _edit(
        FORWARD, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
        "running_mean = (1 - momentum) * running_mean + momentum * mean",
        "running_var.mul_(1 - momentum).add_(momentum * n / (n - 1) * var)",
        "running_var = (1 - momentum) * running_var + momentum * n / (n - 1) * var"),
    "a batch of one accepted (nan statistics)": _edit(FORWARD, "if n < 2:", "if n < 1:",
                                                      "n / (n - 1)", "n / max(n - 1, 1e-300)"),
}
BACKWARD_LINE = "dx = inv_std * (g - g.mean(dim=0) - x_hat * (g * x_hat).mean(dim=0))"
MISSING_XHAT_TERM = _edit(BACKWARD, BACKWARD_LINE, "dx = inv_std * (g - g.mean(dim=0))")
SUMS_SWAPPED = _edit(BACKWARD, "return dx, dgamma, dbeta", "return dx, dbeta, dgamma")
# Autograd inside the backward: the forward keeps x, the backward replays it under enable_grad.
CACHE = "(x_hat, gamma, inv_std, training)"
AUTOGRAD_CACHE = "(x, gamma, beta, eps, x_hat, gamma, inv_std, training)"
AUTOGRAD_FORWARD = _edit(FORWARD, CACHE, AUTOGRAD_CACHE)
AUTOGRAD_BACKWARD = """
def batchnorm_backward(dout, cache):
    x, gamma, beta, eps, x_hat, _, inv_std, training = cache
    if not training:
        return dout * gamma * inv_std, (dout * x_hat).sum(0), dout.sum(0)
    leaves = [t.detach().requires_grad_() for t in (x, gamma, beta)]
    with torch.enable_grad():
        x, gamma, beta = leaves
        mean, var = x.mean(0), x.var(0, unbiased=False)
        out = gamma * (x - mean) / torch.sqrt(var + eps) + beta
        out.backward(dout)
    return tuple(t.grad for t in leaves)
"""
# A subtler route: the forward builds the graph and keeps a torch.func closure in the cache; the
# backward only calls it (no forbidden name in the backward cell).
CLOSURE_FORWARD = """
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                      eps=1e-5):
    def f(x, gamma, beta):
        stats = (x.mean(0), x.var(0, unbiased=False)) if training else (running_mean, running_var)
        return gamma * (x - stats[0]) / torch.sqrt(stats[1] + eps) + beta
    if training:
        n = x.shape[0]
        if n < 2:
            raise ValueError("Expected more than 1 value per channel when training")
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * x.mean(0))
            running_var.mul_(1 - momentum).add_(momentum * x.var(0))
    out, pullback = torch.func.vjp(f, x, gamma, beta)
    return out, (pullback,)
"""
CLOSURE_BACKWARD = """
def batchnorm_backward(dout, cache):
    return cache[0](dout)
"""
WRONG_BACKWARD = {  # mistake: (forward, backward)
    "dx without the path through the variance": (REFERENCE[FORWARD], MISSING_XHAT_TERM),
    "dx without the path through the mean": (REFERENCE[FORWARD], _edit(
        BACKWARD, BACKWARD_LINE, "dx = inv_std * (g - x_hat * (g * x_hat).mean(dim=0))")),
    "dgamma and dbeta swapped": (REFERENCE[FORWARD], SUMS_SWAPPED),
    "dgamma and dbeta averaged instead of summed": (REFERENCE[FORWARD], _edit(
        BACKWARD, "dout.sum(dim=0)", "dout.mean(dim=0)", "(dout * x_hat).sum(dim=0)",
        "(dout * x_hat).mean(dim=0)")),
    "the training formula in evaluation mode": (REFERENCE[FORWARD], _edit(
        BACKWARD, "    if not training:\n        return g * inv_std, dgamma, dbeta\n", "")),
    "autograd replayed inside the backward": (AUTOGRAD_FORWARD, AUTOGRAD_BACKWARD),
    "a torch.func.vjp closure in the cache": (CLOSURE_FORWARD, CLOSURE_BACKWARD),
}
APPLY = ("BatchNormFunction.apply(x, self.weight, self.bias, self.running_mean,\n"
         "                                      self.running_var, self.training, self.momentum, "
         "self.eps)")
EVAL_WITH_BATCH_STATS = _edit(MODULE, APPLY, APPLY.replace("self.training,", "True,"))
DEFAULTS_NOT_PASSED = _edit(MODULE, APPLY, APPLY.replace("self.momentum, self.eps", "0.1, 1e-5"))
SUBCLASS = """
class BatchNorm1d(torch.nn.BatchNorm1d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
"""
WRONG_MODULE = {
    "evaluation with the batch statistics": EVAL_WITH_BATCH_STATS,
    "momentum and eps not passed on": DEFAULTS_NOT_PASSED,
    "running statistics as plain attributes, not buffers": _edit(
        MODULE, 'self.register_buffer("running_mean", torch.zeros(num_features))',
        "self.running_mean = torch.zeros(num_features)",
        'self.register_buffer("running_var", torch.ones(num_features))',
        "self.running_var = torch.ones(num_features)"),
    "no num_batches_tracked": _edit(
        MODULE, '        self.register_buffer("num_batches_tracked", torch.tensor(0, '
        'dtype=torch.long))\n', "", "        if self.training:\n"
        "            self.num_batches_tracked.add_(1)\n", ""),
    "gradients returned in the wrong order": _edit(
        MODULE, "return dx, dgamma, dbeta, None", "return dx, dbeta, dgamma, None"),
    "plain autograd instead of the Function": _edit(MODULE, APPLY, (
        "batchnorm_forward(x, self.weight, self.bias, self.running_mean, self.running_var, "
        "self.training, self.momentum, self.eps)[0]")),
    "a subclass of nn.BatchNorm1d": SUBCLASS,
    "an nn.BatchNorm1d inside": """
class BatchNorm1d(torch.nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.inner = torch.nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)
        self.weight, self.bias = self.inner.weight, self.inner.bias

    def forward(self, x):
        return self.inner(x)
""",
}


def run_checks(test_id: str, own: str, *before: str) -> str:
    """'' when the grader passes test ``test_id`` with the exercise's cell ``own`` after the
    earlier exercises' cells ``before``, else why not (delegation reading and hidden checks)."""
    return hidden_verdict(ASSIGNMENT, test_id, [*before, own])


def test_reference_passes_every_hidden_check():
    assert run_checks(TEST_OF[FORWARD], REFERENCE[FORWARD]) == ""
    assert run_checks(TEST_OF[BACKWARD], REFERENCE[BACKWARD], REFERENCE[FORWARD]) == ""
    assert run_checks(TEST_OF[MODULE], REFERENCE[MODULE], REFERENCE[FORWARD],
                      REFERENCE[BACKWARD]) == ""


def test_a_module_written_differently_passes():
    """A correct module that names its own class (super(BatchNorm1d, self)) and keeps the cache
    in save_for_backward-free attributes is not mistaken for delegation."""
    module = _edit(MODULE, "super().__init__()\n", "super(BatchNorm1d, self).__init__()\n")
    assert run_checks(TEST_OF[MODULE], module, REFERENCE[FORWARD], REFERENCE[BACKWARD]) == ""


@pytest.mark.parametrize("mistake", list(WRONG_FORWARD))
def test_each_forward_mistake_is_caught(mistake):
    assert run_checks(TEST_OF[FORWARD], WRONG_FORWARD[mistake]) != ""


@pytest.mark.parametrize("mistake", list(WRONG_BACKWARD))
def test_each_backward_mistake_is_caught(mistake):
    forward, backward = WRONG_BACKWARD[mistake]
    assert run_checks(TEST_OF[BACKWARD], backward, forward) != ""


def test_autograd_routes_are_caught_by_the_values_too():
    """Without the delegation reading and its guard, the probe itself refuses a graph or a
    closure in the cache."""
    for mistake in ("autograd replayed inside the backward",
                    "a torch.func.vjp closure in the cache"):
        kernel = InProcessKernel(*WRONG_BACKWARD[mistake])
        with pytest.raises((AssertionError, ProbeFailed), match="cache|autograd"):
            for check in CHECKS.functions[TEST_OF[BACKWARD]]:
                check(kernel)


@pytest.mark.parametrize("mistake", list(WRONG_MODULE))
def test_each_module_mistake_is_caught(mistake):
    assert run_checks(TEST_OF[MODULE], WRONG_MODULE[mistake], REFERENCE[FORWARD],
                      REFERENCE[BACKWARD]) != ""


@pytest.mark.parametrize("test_id, body, named", [
    (TEST_OF[FORWARD], "import torch.nn.functional as nnf\n    out = nnf.batch_norm(x, a, b)",
     "torch.nn.functional.batch_norm"),
    (TEST_OF[FORWARD], "from torch.nn.functional import batch_norm as bn", "batch_norm"),
    (TEST_OF[FORWARD], "out = torch.ops.aten.native_batch_norm(x, g, b, m, v, True, 0.1, 1e-5)",
     "native_batch_norm"),
    (TEST_OF[FORWARD], "x_hat = F.layer_norm(x.T, (x.shape[0],)).T", "layer_norm"),
    (TEST_OF[FORWARD], "f = getattr(F, 'batch' + '_norm')", "getattr with a computed name"),
    (TEST_OF[FORWARD], "out, pullback = torch.func.vjp(f, x, gamma, beta)", "torch.func"),
    (TEST_OF[BACKWARD], "out.backward(dout)", "torch.Tensor.backward"),
    (TEST_OF[BACKWARD], "dx, = torch.autograd.grad(out, x, dout)", "torch.autograd.grad"),
    (TEST_OF[BACKWARD], "_, f = torch.func.vjp(g, x)", "torch.func"),
    (TEST_OF[BACKWARD], "with torch.enable_grad():\n        pass", "torch.enable_grad"),
    (TEST_OF[MODULE], "y = F.batch_norm(x, m, v, w, b, True)", "batch_norm"),
    (TEST_OF[MODULE], "dx, = torch.autograd.grad(y, x, dout)", "torch.autograd.grad"),
])
def test_delegation_is_named(test_id, body, named):
    name = {TEST_OF[FORWARD]: FORWARD, TEST_OF[BACKWARD]: BACKWARD, TEST_OF[MODULE]: MODULE}
    source = f"def {name[test_id]}(x, *args):\n    {body}\n"
    assert named in run_checks(test_id, source)


# -- end to end: `gradschool grade` ------------------------------------------------------------
GROUPS = {  # one mistake per graded function; the other functions' cells hold the same group
    "biased-running-var/no-xhat-term/eval-batch-stats": {
        FORWARD: BIASED_RUNNING_VAR, BACKWARD: MISSING_XHAT_TERM, MODULE: EVAL_WITH_BATCH_STATS},
    "alias-delegation/sums-swapped/subclass": {
        FORWARD: """
import torch.nn.functional as nnf

def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                      eps=1e-5):
    out = nnf.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    mean, var = (x.mean(0), x.var(0, unbiased=False)) if training else (running_mean, running_var)
    inv_std = 1.0 / torch.sqrt(var + eps)
    return out, ((x - mean) * inv_std, gamma, inv_std, training)
""",
        BACKWARD: SUMS_SWAPPED, MODULE: SUBCLASS},
    "momentum-swapped/autograd-backward/defaults": {
        FORWARD: MOMENTUM_SWAPPED.replace(CACHE, AUTOGRAD_CACHE),
        BACKWARD: AUTOGRAD_BACKWARD, MODULE: DEFAULTS_NOT_PASSED},
}


def test_graded_names_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names == {FORWARD, BACKWARD, "BatchNormFunction", MODULE}


def test_reference_solution_gets_full_marks(tmp_path):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, REFERENCE))
    assert report["assignment"] == ASSIGNMENT
    assert report["max_score"] > 0 and report["score"] == report["max_score"]
    assert [t["status"] for t in report["tests"]] == ["passed"] * 3 + ["manual"] * 3


def test_released_stub_gets_zero():
    assert grade_released_stub(ASSIGNMENT).count("NotImplementedError") == 3


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_each_group_of_mistakes_loses_its_points(tmp_path, group):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, GROUPS[group]),
                        "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    for function in (FORWARD, BACKWARD, MODULE):
        test = results[function]
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        assert len(test["message"]) > len("AssertionError: "), (function, test)
