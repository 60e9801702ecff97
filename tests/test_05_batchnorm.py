"""05-batchnorm: the graders give full marks to correct work (scratch cells and innocent names
included), zero to the blank release, and fail each known-wrong or delegating implementation of
batchnorm_forward, batchnorm_backward and BatchNorm1d in its own test only.

In process and fast (``hidden_verdict``, and the visible test cells run here): each single
mistake loses the hidden test of its exercise and fails its visible test too (``gradschool check``
agrees with the grade); each exercise passes both tests with only its own code present, so a
mistake elsewhere cannot reach them. End to end (``gradschool grade``, 15 to 40 s each): the
solution with realistic scratch work, the blank release, and a notebook with two wrong exercises.
"""

from __future__ import annotations

import functools

import nbformat
import pytest
from submissions import (
    SETUP,
    InProcessKernel,
    checks_of,
    edited,
    fill_in,
    grade_here,
    grade_released_stub,
    hidden_verdict,
    locked_sources,
    reference_code,
    results_by_function,
    solution_cells,
    solution_notebook,
)

from gradschool.instructor import ProbeFailed

ASSIGNMENT = "05-batchnorm"
FORWARD, BACKWARD, MODULE = "batchnorm_forward", "batchnorm_backward", "BatchNorm1d"
REFERENCE = reference_code(ASSIGNMENT)
TEST_OF = {FORWARD: "bn-forward-tests", BACKWARD: "bn-backward-tests", MODULE: "bn-module-tests"}
#: What the notebook's setup cell gives the visible test cells.
CONTEXT = SETUP + "from gradschool.checks import assert_close, assert_equal, replaced, report\n"


_edit = functools.partial(edited, REFERENCE)  # a mistake as an edit of the reference


def visible_verdict(exercise: str, cells: list[str]) -> str:
    """'' when the visible test cell of ``exercise`` passes after the student's ``cells``, else
    its message (what the student sees, in the notebook and from ``gradschool check``)."""
    test_cell, = locked_sources(ASSIGNMENT, TEST_OF[exercise])
    try:
        InProcessKernel(*cells, test_cell, context=(CONTEXT,))
    except Exception as exc:  # noqa: BLE001 - the cell's error is the verdict
        return f"{type(exc).__name__}: {exc}"
    return ""


# -- known mistakes, one exercise at a time ----------------------------------------------------
NO_GRAD = "        with torch.no_grad():"
BIASED_RUNNING_VAR = _edit(FORWARD, "momentum * n / (n - 1) * var", "momentum * var")
WRONG_FORWARD = {
    "eps outside the square root": _edit(FORWARD, "1.0 / torch.sqrt(var + eps)",
                                         "1.0 / (torch.sqrt(var) + eps)"),
    "normalizes with the unbiased variance": _edit(
        FORWARD, "var = (centred * centred).mean(dim=0)  # biased: divided by N",
        "var = x.var(dim=0)", "momentum * n / (n - 1) * var", "momentum * var"),
    "running_var updated with the biased variance": BIASED_RUNNING_VAR,
    "momentum the wrong way round": _edit(
        FORWARD, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
        "running_mean.mul_(momentum).add_((1 - momentum) * mean)",
        "running_var.mul_(1 - momentum).add_(momentum * n / (n - 1) * var)",
        "running_var.mul_(momentum).add_((1 - momentum) * n / (n - 1) * var)"),
    "evaluation with the batch statistics": _edit(
        FORWARD, "    else:\n        centred = x - running_mean\n        var = running_var\n", "",
        "    if training:\n        n = x.shape[0]", "    n = x.shape[0]\n    if True:",
        NO_GRAD, "        if training:"),
    "running statistics rebound, not updated in place": _edit(
        FORWARD, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
        "running_mean = (1 - momentum) * running_mean + momentum * mean",
        "running_var.mul_(1 - momentum).add_(momentum * n / (n - 1) * var)",
        "running_var = (1 - momentum) * running_var + momentum * n / (n - 1) * var"),
    "a batch of one accepted (nan statistics)": _edit(FORWARD, "if n < 2:", "if n < 1:",
                                                      "n / (n - 1)", "n / max(n - 1, 1e-300)"),
    "a cache of its own layout": _edit(FORWARD, "(x_hat, gamma, inv_std, training)",
                                       "(x_hat, gamma, inv_std, training, eps)"),
    "the standard deviation in the cache": _edit(FORWARD, "(x_hat, gamma, inv_std, training)",
                                                 "(x_hat, gamma, 1 / inv_std, training)"),
    # the route of the first edition's free cache: a torch.func.vjp closure for the backward
    "a torch.func.vjp closure in the cache": """
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                      eps=1e-5):
    def f(x, gamma, beta):
        stats = (x.mean(0), x.var(0, unbiased=False)) if training else (running_mean, running_var)
        return gamma * (x - stats[0]) / torch.sqrt(stats[1] + eps) + beta
    if training:
        if x.shape[0] < 2:
            raise ValueError("Expected more than 1 value per channel when training")
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * x.mean(0))
            running_var.mul_(1 - momentum).add_(momentum * x.var(0))
    out, pullback = torch.func.vjp(f, x, gamma, beta)
    return out, (pullback, gamma, None, training)
""",
}
BACKWARD_LINE = "dx = inv_std * (g - g.mean(dim=0) - x_hat * (g * x_hat).mean(dim=0))"
AUTOGRAD_BACKWARD = """
def batchnorm_backward(dout, cache):
    x_hat, gamma, inv_std, training = cache
    if not training:
        return dout * gamma * inv_std, (dout * x_hat).sum(0), dout.sum(0)
    eps = (1 / inv_std**2 - x_hat.var(0, unbiased=False) / inv_std**2).mean()
    leaves = [t.detach().requires_grad_() for t in (x_hat / inv_std, gamma)]
    with torch.enable_grad():
        x, gamma = leaves
        out = gamma * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)
        out.backward(dout)
    return leaves[0].grad, leaves[1].grad, dout.sum(0)
"""
WRONG_BACKWARD = {
    "dx without the path through the variance": _edit(
        BACKWARD, BACKWARD_LINE, "dx = inv_std * (g - g.mean(dim=0))"),
    "dx without the path through the mean": _edit(
        BACKWARD, BACKWARD_LINE, "dx = inv_std * (g - x_hat * (g * x_hat).mean(dim=0))"),
    "N - 1 in the path through the variance": _edit(
        BACKWARD, "x_hat * (g * x_hat).mean(dim=0)",
        "x_hat * (g * x_hat).sum(dim=0) / (len(g) - 1)"),
    "dgamma and dbeta swapped": _edit(BACKWARD, "return dx, dgamma, dbeta",
                                      "return dx, dbeta, dgamma"),
    "dgamma and dbeta averaged instead of summed": _edit(
        BACKWARD, "dout.sum(dim=0)", "dout.mean(dim=0)", "(dout * x_hat).sum(dim=0)",
        "(dout * x_hat).mean(dim=0)"),
    "the training formula in evaluation mode": _edit(
        BACKWARD, "    if not training:\n        return g * inv_std, dgamma, dbeta\n", ""),
    "gamma forgotten in evaluation mode": _edit(BACKWARD, "return g * inv_std, dgamma, dbeta",
                                                "return dout * inv_std, dgamma, dbeta"),
    "dout modified in place": _edit(BACKWARD, "g = dout * gamma", "g = dout.mul_(gamma)",
                                    "dbeta = dout.sum(dim=0)\n    dgamma = (dout * x_hat)",
                                    "dbeta = dout.sum(dim=0) / gamma\n    dgamma = (dout * x_hat)"
                                    ),
    "autograd replayed inside the backward": AUTOGRAD_BACKWARD,
}
APPLY = ("BatchNormFunction.apply(x, self.weight, self.bias, self.running_mean,\n"
         "                                      self.running_var, self.training, self.momentum, "
         "self.eps)")
EVAL_WITH_BATCH_STATS = _edit(MODULE, APPLY, APPLY.replace("self.training,", "True,"))
WRONG_MODULE = {
    "evaluation with the batch statistics": EVAL_WITH_BATCH_STATS,
    "momentum and eps not passed on": _edit(
        MODULE, APPLY, APPLY.replace("self.momentum, self.eps", "0.1, 1e-5")),
    "running statistics as plain attributes, not buffers": _edit(
        MODULE, 'self.register_buffer("running_mean", torch.zeros(num_features))',
        "self.running_mean = torch.zeros(num_features)",
        'self.register_buffer("running_var", torch.ones(num_features))',
        "self.running_var = torch.ones(num_features)"),
    "running_var starting at zeros": _edit(
        MODULE, 'self.register_buffer("running_var", torch.ones(num_features))',
        'self.register_buffer("running_var", torch.zeros(num_features))'),
    "no num_batches_tracked": _edit(
        MODULE, '        self.register_buffer("num_batches_tracked", torch.tensor(0, '
        'dtype=torch.long))\n', "", "        if self.training:\n"
        "            self.num_batches_tracked.add_(1)\n", ""),
    "num_batches_tracked counted in evaluation too": _edit(
        MODULE, "        if self.training:\n            self.num_batches_tracked.add_(1)",
        "        self.num_batches_tracked.add_(1)"),
    "gradients returned in the wrong order": _edit(
        MODULE, "return dx, dgamma, dbeta, None", "return dx, dbeta, dgamma, None"),
    "plain autograd instead of the Function": _edit(MODULE, APPLY, (
        "batchnorm_forward(x, self.weight, self.bias, self.running_mean, self.running_var, "
        "self.training, self.momentum, self.eps)[0]")),
}
SUBCLASS = """
class BatchNorm1d(torch.nn.BatchNorm1d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
"""
#: Delegations of the module: the values are right, the reading and the probes say why not.
DELEGATING_MODULE = {
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
    "autograd in BatchNormFunction.backward": _edit(
        MODULE, "dx, dgamma, dbeta = batchnorm_backward(dout, ctx.cache)",
        "batchnorm_backward(dout, ctx.cache)\n        x, w, b = ctx.inputs\n"
        "        with torch.enable_grad():\n"
        "            dx, dgamma, dbeta = torch.autograd.grad(F.batch_norm(x, None, None, w, b, "
        "True), (x, w, b), dout)",
        "out, ctx.cache = batchnorm_forward(", "ctx.inputs = [t.detach().requires_grad_() for "
        "t in (x, gamma, beta)]\n        out, ctx.cache = batchnorm_forward("),
}
MISTAKES = [(FORWARD, m, s) for m, s in WRONG_FORWARD.items()] + [
    (BACKWARD, m, s) for m, s in WRONG_BACKWARD.items()] + [
    (MODULE, m, s) for m, s in WRONG_MODULE.items()]


def test_graded_names_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names == {FORWARD, BACKWARD, "BatchNormFunction", MODULE}


@pytest.mark.parametrize("exercise", [FORWARD, BACKWARD, MODULE])
def test_each_exercise_passes_with_only_its_own_code(exercise):
    """No test, hidden or visible, uses another exercise's code (stand-ins and caches made by
    torch instead): with only this exercise's cell in the notebook, both pass."""
    assert hidden_verdict(ASSIGNMENT, TEST_OF[exercise], [REFERENCE[exercise]]) == ""
    assert visible_verdict(exercise, [REFERENCE[exercise]]) == ""


@pytest.mark.parametrize("exercise, mistake, source", MISTAKES,
                         ids=[f"{e}: {m}" for e, m, _ in MISTAKES])
def test_each_mistake_fails_its_hidden_and_its_visible_test(exercise, mistake, source):
    assert hidden_verdict(ASSIGNMENT, TEST_OF[exercise], [source]) != ""
    assert visible_verdict(exercise, [source]) != ""


@pytest.mark.parametrize("mistake", list(DELEGATING_MODULE))
def test_each_module_delegation_is_caught(mistake):
    assert "implement it yourself" in hidden_verdict(ASSIGNMENT, TEST_OF[MODULE],
                                                     [DELEGATING_MODULE[mistake]])


def test_autograd_in_the_backward_is_caught_by_the_values_too():
    """Without the delegation reading (the probe's guard off), inference_mode refuses it."""
    checks = checks_of(ASSIGNMENT)
    kernel = InProcessKernel(AUTOGRAD_BACKWARD)
    with pytest.raises(ProbeFailed, match="relies on autograd"):
        for check in checks.functions[TEST_OF[BACKWARD]]:
            check(kernel)


@pytest.mark.parametrize("test_id, body, named", [
    (TEST_OF[FORWARD], "import torch.nn.functional as nnf\n    out = nnf.batch_norm(x, a, b)",
     "torch.nn.functional.batch_norm"),
    (TEST_OF[FORWARD], "from torch.nn.functional import batch_norm as bn", "batch_norm"),
    (TEST_OF[FORWARD], "out = torch.ops.aten.native_batch_norm(x, g, b, m, v, True, 0.1, 1e-5)",
     "native_batch_norm"),
    (TEST_OF[FORWARD], "x_hat = F.layer_norm(x.T, (x.shape[0],)).T", "layer_norm"),
    (TEST_OF[FORWARD], "f = getattr(F, 'batch' + '_norm')", "getattr with a computed name"),
    (TEST_OF[BACKWARD], "out.backward(dout)", "torch.Tensor.backward"),
    (TEST_OF[BACKWARD], "dx, = torch.autograd.grad(out, x, dout)", "torch.autograd.grad"),
    (TEST_OF[BACKWARD], "_, f = torch.func.vjp(g, x)", "torch.func"),
    (TEST_OF[BACKWARD], "with torch.enable_grad():\n        pass", "torch.enable_grad"),
    (TEST_OF[BACKWARD], "return torch.ops.aten.native_batch_norm_backward(x)",
     "native_batch_norm_backward"),
    (TEST_OF[MODULE], "y = F.batch_norm(x, m, v, w, b, True)", "batch_norm"),
    (TEST_OF[MODULE], "dx, = torch.autograd.grad(y, x, dout)", "torch.autograd.grad"),
])
def test_delegation_is_named(test_id, body, named):
    name = {TEST_OF[FORWARD]: FORWARD, TEST_OF[BACKWARD]: BACKWARD, TEST_OF[MODULE]: MODULE}
    source = f"def {name[test_id]}(x, *args):\n    {body}\n"
    assert named in hidden_verdict(ASSIGNMENT, test_id, [source])


#: Scratch cells added after correct code, that put torch's implementation in its place.
REBOUND = {
    "batchnorm_forward rebound to F.batch_norm": (FORWARD, """
def torch_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                  eps=1e-5):
    out = F.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    return out, (None, gamma, None, training)

batchnorm_forward = torch_forward
"""),
    "BatchNorm1d rebound to nn.BatchNorm1d": (MODULE, "BatchNorm1d = nn.BatchNorm1d\n"),
    "BatchNorm1d.forward patched with F.batch_norm": (MODULE, """
BatchNorm1d.forward = lambda self, x: F.batch_norm(
    x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
    self.momentum, self.eps)
"""),
    "BatchNormFunction.backward patched with autograd": (MODULE, """
def replay(ctx, dout):
    x, w, b = (t.detach().requires_grad_() for t in ctx.saved)
    with torch.enable_grad():
        return (*torch.autograd.grad(F.batch_norm(x, None, None, w, b, True), (x, w, b), dout),
                None, None, None, None, None)

BatchNormFunction.backward = staticmethod(replay)
"""),
}


@pytest.mark.parametrize("case", list(REBOUND))
def test_a_scratch_cell_that_puts_torch_in_place_of_a_graded_name_is_caught(case):
    exercise, scratch = REBOUND[case]
    cells = [REFERENCE[FORWARD], REFERENCE[BACKWARD], REFERENCE[MODULE], scratch]
    assert "torch" in hidden_verdict(ASSIGNMENT, TEST_OF[exercise], cells)


# -- fair grading: correct work with ordinary names and scratch cells keeps full marks ---------
FAIR_FORWARD = _edit(FORWARD, NO_GRAD, "        with torch.set_grad_enabled(False):")
FAIR_BACKWARD = """
import sys


def batch_mean(grad, func=None):
    return grad.mean(dim=0) if func is None else func(grad).mean(dim=0)


def batchnorm_backward(dout, cache):
    x_hat, gamma, inv_std, training = cache
    grad = dout * gamma
    if not training:
        return grad * inv_std, (dout * x_hat).sum(0), dout.sum(0)
    dx = inv_std * (grad - batch_mean(grad) - x_hat * batch_mean(grad, lambda t: t * x_hat))
    return dx, (dout * x_hat).sum(0), dout.sum(0)
"""
FAIR_MODULE = _edit(
    MODULE, "def backward(ctx, dout):", "def backward(ctx, grad):",
    "batchnorm_backward(dout, ctx.cache)", "batchnorm_backward(grad, ctx.cache)",
    'self.register_buffer("running_var", torch.ones(num_features))',
    'self.register_buffer("running_var", filled(num_features, init=1.0))',
    "class BatchNormFunction", "def filled(n, init):\n    return torch.full((n,), init)\n\n\n"
    "class BatchNormFunction")
SCRATCH = [  # what a student tries next to their code, as the notebook invites
    """
import sys
x = torch.randn(8, 3, dtype=torch.float64)
w, b = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
mine, cache = batchnorm_forward(x, w, b, rm.clone(), rv.clone())
theirs = F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=True)
print("forward vs torch:", (mine - theirs).abs().max().item(), file=sys.stderr)
""",
    """
xr = x.clone().requires_grad_()
out = F.batch_norm(xr, None, None, w, b, training=True)
out.backward(2 * torch.ones_like(out))
grad = xr.grad
dx, dgamma, dbeta = batchnorm_backward(2 * torch.ones_like(x), cache)
func = torch.autograd.grad
g2, = func(F.batch_norm(xr, None, None, training=True).pow(2).sum(), xr)
print(torch.allclose(dx, grad), torch.func.grad(lambda t: t.pow(2).sum())(x).shape)
""",
    """
model = nn.Sequential(nn.Linear(3, 4), BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2),
                      nn.BatchNorm1d(2), nn.LayerNorm(2))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight)


def step(model, init, grad=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(init).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


print(step(model, F.dropout(torch.randn(6, 3), 0.1)))
ones, zeros = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
print(torch.autograd.gradcheck(lambda t: BatchNormFunction.apply(
    t, ones, zeros, zeros.clone(), ones.clone(), True, 0.1, 1e-5), (xr.detach().requires_grad_(),)))
""",
]
FAIR = {
    "the reference with scratch cells": [REFERENCE[FORWARD], REFERENCE[BACKWARD],
                                         REFERENCE[MODULE], *SCRATCH],
    "torch.set_grad_enabled(False) in the forward": [FAIR_FORWARD, REFERENCE[BACKWARD],
                                                     REFERENCE[MODULE]],
    "grad, func and import sys in the backward": [REFERENCE[FORWARD], FAIR_BACKWARD,
                                                  REFERENCE[MODULE]],
    "backward(ctx, grad) and a parameter init in the module": [
        REFERENCE[FORWARD], REFERENCE[BACKWARD], FAIR_MODULE],
}


@pytest.mark.parametrize("case", list(FAIR))
def test_correct_work_keeps_every_hidden_test(case):
    for test_id in TEST_OF.values():
        assert hidden_verdict(ASSIGNMENT, test_id, FAIR[case]) == "", test_id


# -- end to end: `gradschool grade` ------------------------------------------------------------
def _write(tmp_path, code: dict[str, str], scratch: dict[str, str] = ()):
    """The released notebook with ``code`` filled in and each ``scratch[test_id]`` cell added
    right after that test cell; returns its path."""
    nb = fill_in(ASSIGNMENT, code)
    for test_id, source in dict(scratch).items():
        at = next(i for i, c in enumerate(nb.cells)
                  if c.metadata.get("nbgrader", {}).get("grade_id") == test_id)
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return path


def test_correct_work_with_scratch_cells_gets_full_marks(tmp_path):
    code = {FORWARD: FAIR_FORWARD, BACKWARD: FAIR_BACKWARD, MODULE: FAIR_MODULE}
    scratch = dict(zip(TEST_OF.values(), SCRATCH, strict=True))
    report = grade_here(_write(tmp_path, code, scratch), runs_clean=True)
    assert report["assignment"] == ASSIGNMENT
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    assert [t["status"] for t in report["tests"]] == ["passed"] * 3 + ["manual"] * 4


def test_released_stub_gets_zero():
    assert grade_released_stub(ASSIGNMENT).count("NotImplementedError") == 3


def test_two_wrong_exercises_lose_their_two_tests_only(tmp_path):
    code = {FORWARD: BIASED_RUNNING_VAR, BACKWARD: REFERENCE[BACKWARD],
            MODULE: EVAL_WITH_BATCH_STATS}
    report = grade_here(_write(tmp_path, code), ASSIGNMENT, runs_clean=False)
    results = results_by_function(report, ASSIGNMENT)
    assert results[BACKWARD]["status"] == "passed", results[BACKWARD]
    for function in (FORWARD, MODULE):
        test = results[function]
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        assert len(test["message"]) > len("AssertionError: "), (function, test)
