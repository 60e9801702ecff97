"""06-gradient-regularization: the graders give full marks to correct work (scratch cells and
innocent names included), zero to the blank release, and fail known-wrong or delegating
implementations of the ten graded functions, one test per mistake.

Two levels. End to end, ``gradschool grade`` on three notebooks: the reference with realistic
scratch work (full marks), the blank release (zero) and a notebook with two bugs in two exercises
(exactly those two tests lost). In process and fast, every single mistake, delegation route and
fairness case: the hidden verdict through the grader's own probe runner (``hidden_verdict``), and
the visible test cells run here on the same code, so that what ``gradschool check`` reports agrees
with the grade.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json

import nbformat
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager
from submissions import (
    edited,
    fill_in,
    grade_here,
    grade_released_stub,
    hidden_verdict,
    reference_code,
    release_notebook,
    results_by_function,
    solution_cells,
    solution_notebook,
)

from gradschool.cells import grade_id
from gradschool.delegation import METADATA_KEY, declared_findings

ASSIGNMENT = "06-gradient-regularization"
REFERENCE = reference_code(ASSIGNMENT)
TEST_OF = {"layer_grad_norms": "layer-norms-tests", "update_ratios": "update-ratios-tests",
           "first_nonfinite_module": "nan-trace-tests", "grad_norm": "total-norm-tests",
           "clip_grad_norm_": "clip-norm-tests", "clip_grad_value_": "clip-value-tests",
           "add_gradient_noise_": "grad-noise-tests", "weight_norm_grads": "weight-norm-tests",
           "input_gradient_penalty": "input-penalty-tests", "path_norm": "path-norm-tests"}
MANUAL = ["depth-answer", "clip-answer", "wn-answer", "entropy-answer"]


_edit = functools.partial(edited, REFERENCE)  # a mistake as an edit of the reference


# -- known mistakes, one at a time: function -> {mistake: source} ------------------------------
SUM_OF_NORMS = _edit("grad_norm", "return torch.linalg.vector_norm(torch.stack(norms), norm_type)",
                     "return torch.stack(norms).sum()")
NOTES_FORMULA = _edit("weight_norm_grads",
                      "grad_v = (g / norm) * grad_w - (g * grad_g / norm**2) * v",
                      "grad_v = (grad_w - v / norm * (v * grad_w).sum(dim=1, keepdim=True)) / norm")
WRONG = {
    "layer_grad_norms": {
        "max of g, not of |g|": _edit("layer_grad_norms", "g.abs().max()", "g.max()"),
        "missing gradients reported as 0": _edit(
            "layer_grad_norms", "        if p.grad is None:\n            continue\n        g = "
            "p.grad.detach()", "        g = torch.zeros_like(p) if p.grad is None else p.grad"),
        "RMS instead of the L2 norm": _edit("layer_grad_norms", "torch.linalg.vector_norm(g)",
                                            "g.pow(2).mean().sqrt()"),
    },
    "update_ratios": {
        "the norm after the step": _edit("update_ratios", "vector_norm(w.detach())",
                                         "vector_norm(after[name].detach())"),
        "squared norms": _edit("update_ratios", "ratios[name] = step / size",
                               "ratios[name] = step**2 / size**2"),
        "mean of the elementwise ratios": """
def update_ratios(before, after):
    return {k: ((after[k].detach() - w).abs() / w.abs().clamp_min(1e-12)).mean().item()
            for k, w in before.items()}
""",
    },
    "first_nonfinite_module": {
        "the last non-finite module": _edit(
            "first_nonfinite_module", "if not found and not", "if not",
            "return names[found[0]] if found else None",
            "return names[found[-1]] if found else None"),
        "registration order": _edit(
            "first_nonfinite_module", "if not found and not", "if not",
            "return names[found[0]] if found else None",
            "return next((n for n, m in model.named_modules() if m in found), None)"),
        "hooks never removed": _edit("first_nonfinite_module",
                                     "        for handle in handles:\n            handle.remove()",
                                     "        pass"),
        "hooks kept when the forward pass raises": _edit(
            "first_nonfinite_module",
            "    try:\n        with torch.no_grad():\n            model(x)\n    finally:\n",
            "    with torch.no_grad():\n        model(x)\n    if True:\n"),
    },
    "grad_norm": {
        "the sum of the per-tensor norms": SUM_OF_NORMS,
        "the p-th power for p = inf": """
def grad_norm(parameters, norm_type=2.0):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return sum(g.abs().pow(norm_type).sum() for g in grads) ** (1.0 / norm_type)
""",
        "a Python float": _edit("grad_norm", "return torch.linalg.vector_norm(torch.stack(norms), "
                                "norm_type)", "return torch.linalg.vector_norm(torch.stack(norms), "
                                "norm_type).item()"),
    },
    "clip_grad_norm_": {
        "the notes' rule (no 1e-6)": _edit("clip_grad_norm_", "max_norm / (total + 1e-6)",
                                           "max_norm / total"),
        "a generator consumed twice": _edit("clip_grad_norm_", "else list(parameters)",
                                            "else parameters"),
        "the norm after clipping returned": _edit("clip_grad_norm_", "    return total",
                                                  "    return grad_norm(parameters, norm_type)"),
        "only scaled up to max_norm, never down": _edit(
            "clip_grad_norm_", "torch.clamp(max_norm / (total + 1e-6), max=1.0)",
            "torch.clamp(max_norm / (total + 1e-6), min=1.0)"),
    },
    "clip_grad_value_": {
        "the upper side only": _edit("clip_grad_value_", "clamp_(min=-clip_value, max=clip_value)",
                                     "clamp_(max=clip_value)"),
        "not in place": _edit("clip_grad_value_", "p.grad.clamp_(min=-clip_value, max=clip_value)",
                              "p.grad = p.grad.clamp(-clip_value, clip_value)"),
    },
    "add_gradient_noise_": {
        "the variance used as the standard deviation": _edit(
            "add_gradient_noise_", "math.sqrt(eta / (1 + step) ** gamma)",
            "eta / (1 + step) ** gamma"),
        "one draw per tensor": _edit("add_gradient_noise_", "torch.randn(p.grad.shape,",
                                     "torch.randn(1,"),
        "the generator ignored": _edit("add_gradient_noise_", "generator=generator, ", ""),
        "the noise added to the parameters": _edit("add_gradient_noise_", "p.grad.add_(noise,",
                                                   "p.add_(noise,"),
    },
    "weight_norm_grads": {
        "the source note's formula": NOTES_FORMULA,
        "the factor g forgotten": _edit("weight_norm_grads", "(g / norm) * grad_w - (g * grad_g",
                                        "grad_w / norm - (grad_g"),
        "one norm of v too few in the projection": _edit("weight_norm_grads", "/ norm**2) * v",
                                                         "/ norm) * v"),
    },
    "input_gradient_penalty": {
        "no create_graph: not differentiable": _edit("input_gradient_penalty",
                                                     ", create_graph=True", ""),
        "the parameter gradient": """
def input_gradient_penalty(model, x, y, loss_fn):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    return sum(g.pow(2).sum() for g in grads)
""",
        "the caller's x changed": _edit("input_gradient_penalty",
                                        "x = x.detach().requires_grad_(True)",
                                        "x.requires_grad_(True)"),
        "backward fills the parameters' .grad": """
def input_gradient_penalty(model, x, y, loss_fn):
    x = x.detach().requires_grad_(True)
    loss_fn(model(x), y).backward(create_graph=True)
    return x.grad.pow(2).sum()
""",
    },
    "path_norm": {
        "the L2 norm": """
def path_norm(model):
    return sum(p.pow(2).sum() for p in model.parameters())
""",
        "biases forgotten": _edit("path_norm", "h = h + module.bias.pow(2)", "pass"),
        "not differentiable": _edit("path_norm", "module.weight.pow(2).T", "module.weight.detach()"
                                    ".pow(2).T"),
        "the weights not squared": _edit("path_norm", "module.weight.pow(2).T",
                                         "module.weight.abs().T"),
    },
}
WRONG_CASES = [(f, m) for f, mistakes in WRONG.items() for m in mistakes]

# -- delegation: function -> {route: (source, what the message names)} --------------------------
DELEGATING = {
    "grad_norm": {
        "get_total_norm": ("""
def grad_norm(parameters, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    return torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None],
                                         norm_type)
""", "get_total_norm"),
        "clip_grad_norm_ with an infinite max_norm": ("""
def grad_norm(parameters, norm_type=2.0):
    return torch.nn.utils.clip_grad_norm_(parameters, float("inf"), norm_type)
""", "clip_grad_norm_"),
        "the clip_grad module's private norm": ("""
from torch.nn.utils import clip_grad as cg


def grad_norm(parameters, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    return cg._get_total_norm([p.grad for p in parameters if p.grad is not None], norm_type)
""", "torch.nn.utils.clip_grad"),
        "getattr with a constant name": ("""
def grad_norm(parameters, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    norm = getattr(torch.nn.utils, "get_total_norm")
    return norm([p.grad for p in parameters if p.grad is not None], norm_type)
""", "get_total_norm"),
    },
    "clip_grad_norm_": {
        "clip_grad_norm_": ("""
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type)
""", "clip_grad_norm_"),
        "clip_grads_with_norm_ after your norm": ("""
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    total = grad_norm(parameters, norm_type)
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return total
""", "clip_grads_with_norm_"),
        "an alias imported inside": ("""
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    from torch.nn.utils import clip_grad_norm_ as clip
    return clip(parameters, max_norm, norm_type)
""", "clip_grad_norm_"),
    },
    "clip_grad_value_": {
        "clip_grad_value_": ("""
def clip_grad_value_(parameters, clip_value):
    torch.nn.utils.clip_grad_value_(parameters, clip_value)
""", "clip_grad_value_"),
        "through a module alias": ("""
import torch.nn.utils as U


def clip_grad_value_(parameters, clip_value):
    U.clip_grad_value_(parameters, clip_value)
""", "clip_grad_value_"),
    },
    "weight_norm_grads": {
        "backward": ("""
def weight_norm_grads(v, g, grad_w):
    v = v.detach().clone().requires_grad_(True)
    g = g.detach().clone().requires_grad_(True)
    (g * v / v.norm(dim=1, keepdim=True)).backward(grad_w)
    return v.grad, g.grad
""", "backward"),
        "torch.autograd.grad": ("""
def weight_norm_grads(v, g, grad_w):
    v, g = v.detach().requires_grad_(True), g.detach().requires_grad_(True)
    return torch.autograd.grad(g * v / v.norm(dim=1, keepdim=True), [v, g], grad_w)
""", "torch.autograd.grad"),
        "torch.func.vjp": ("""
def weight_norm_grads(v, g, grad_w):
    _, pullback = torch.func.vjp(lambda a, b: b * a / a.norm(dim=1, keepdim=True), v, g)
    return pullback(grad_w)
""", "torch.func"),
        "torch.autograd.functional.vjp": ("""
def weight_norm_grads(v, g, grad_w):
    _, (grad_v, grad_g) = torch.autograd.functional.vjp(
        lambda a, b: b * a / a.norm(dim=1, keepdim=True), (v, g), grad_w)
    return grad_v, grad_g
""", "torch.autograd.functional"),
        "aten's weight-norm backward": ("""
def weight_norm_grads(v, g, grad_w):
    norms = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return torch.ops.aten._weight_norm_interface_backward(grad_w, v, g, norms, 0)
""", "_weight_norm_interface_backward"),
    },
}
DELEGATION_CASES = [(f, r) for f, routes in DELEGATING.items() for r in routes]

# -- correct code that looks suspicious: the same functions written with innocent names ---------
HELPERS = {
    "layer_grad_norms": """
import sys


def _norms(grad):
    return torch.linalg.vector_norm(grad).item(), grad.abs().max().item()


def layer_grad_norms(model):
    return {name: _norms(p.grad.detach()) for name, p in model.named_parameters()
            if p.grad is not None}
""",
    "clip_grad_norm_": """
def _scale(grad, coef):
    grad.mul_(coef.to(grad.device))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    total = grad_norm(parameters, norm_type)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                _scale(p.grad, coef)
    return total
""",
    "clip_grad_value_": """
def _each_grad(parameters, func):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            func(p.grad)


def clip_grad_value_(parameters, clip_value):
    with torch.no_grad():
        _each_grad(parameters, lambda grad: grad.clamp_(-clip_value, clip_value))
""",
    "weight_norm_grads": """
def _row_dot(grad, v):
    return (grad * v).sum(dim=1, keepdim=True)


def weight_norm_grads(v, g, grad_w):
    with torch.no_grad():
        norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
        grad_g = _row_dot(grad_w, v) / norm
        grad_v = (g / norm) * grad_w - (g * grad_g / norm**2) * v
    return grad_v, grad_g
""",
    "path_norm": """
def _squared_pass(model, init):
    h = init
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            h = h @ m.weight.pow(2).T + (0 if m.bias is None else m.bias.pow(2))
    return h


def path_norm(model):
    first = next(m for m in model if isinstance(m, torch.nn.Linear))
    init = torch.ones(1, first.in_features, dtype=first.weight.dtype, device=first.weight.device)
    return _squared_pass(model, init).sum()
""",
}
# Scratch cells a student adds: (the test cell after which it goes, its source).
SCRATCH = [
    ("clip-value-tests", """
# mine against torch's, side by side
ps = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
(ps[0] ** 2).sum().backward()
(ps[1] ** 3).sum().backward()
print(grad_norm(ps), torch.nn.utils.get_total_norm([p.grad for p in ps]))
print(clip_grad_norm_(ps, 1.0), torch.nn.utils.clip_grad_norm_(ps, 1.0))
clip_grad_value_(ps, 0.1)
torch.nn.utils.clip_grad_value_(ps, 0.1)
opt = torch.optim.SGD(ps, lr=0.1)
opt.step()
"""),
    ("weight-norm-tests", """
v = torch.randn(3, 4, requires_grad=True)
g = torch.randn(3, 1, requires_grad=True)
w = g * v / v.norm(dim=1, keepdim=True)
w.backward(torch.ones(3, 4))
print(v.grad, g.grad)
print(torch.autograd.grad((g * v / v.norm(dim=1, keepdim=True)).sum(), [v, g]))
print(weight_norm_grads(v.detach(), g.detach(), torch.ones(3, 4)))
"""),
    ("path-norm-tests", """
import sys

model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
for m in model.modules():
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(m.weight)
print(path_norm(model), layer_grad_norms(model), file=sys.stderr)
"""),
]
FAIR = {  # what a correct student writes -> the cells the grader sees
    "helpers named grad/func/init, import sys, model.modules(), torch.no_grad":
        [HELPERS.get(name, source) for name, source in REFERENCE.items()],
    "scratch cells with .backward() and torch's clipping beside the student's":
        [*REFERENCE.values(), *(source for _, source in SCRATCH)],
}
# Scratch cells added at the end that put torch in place of a graded function: test -> source.
REBOUND = {
    "clip-norm-tests": ("clip_grad_norm_ = torch.nn.utils.clip_grad_norm_", "clip_grad_norm_"),
    "clip-value-tests": ("from torch.nn.utils import clip_grad_value_", "clip_grad_value_"),
    "total-norm-tests": ("grad_norm = lambda ps, p=2.0: torch.nn.utils.get_total_norm(\n"
                         "    [q.grad for q in ps], p)", "get_total_norm"),
    "weight-norm-tests": (DELEGATING["weight_norm_grads"]["backward"][0], "backward"),
}


def hidden(function: str, *cells: str) -> str:
    """The grader's verdict on ``function``'s test for these student cells ("": passed)."""
    return hidden_verdict(ASSIGNMENT, TEST_OF[function], list(cells))


# -- the visible test cells, run in this process -------------------------------------------------
@functools.cache
def _locked_context() -> dict:
    """A namespace with what the notebook's test cells use: the setup cell's imports (without its
    global settings), DEVICE on the CPU, and the data cell (its thread setting undone)."""
    nb = nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)
    cells = {grade_id(c): c.source for c in nb.cells}
    setup = ast.parse(TransformerManager().transform_cell(cells["setup"]))
    imports = [node for node in setup.body if isinstance(node, ast.Import | ast.ImportFrom)]
    namespace = {"__name__": "__main__"}
    exec(ast.unparse(ast.Module(imports, [])) + "\nDEVICE = torch.device('cpu')\n", namespace)
    threads = torch.get_num_threads()
    try:
        exec(cells["data"], namespace)
    finally:
        torch.set_num_threads(threads)
    return namespace


def _exercise_cells() -> list[tuple[str, str]]:
    """(name, "") of each solution cell (name: the function it defines) and (grade_id, source)
    of each visible test cell, in notebook order."""
    nb = nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)
    names = {i: name for name, i in solution_cells(nb).items()}
    return [(names[i], "") if i in names else (grade_id(cell), cell.source)
            for i, cell in enumerate(nb.cells)
            if i in names or grade_id(cell) in TEST_OF.values()]


EXERCISE_CELLS = _exercise_cells()


def visible_failures(code: dict[str, str]) -> dict[str, str]:
    """Each visible test cell's failure ("" when it passes), with ``code`` (name -> source) in
    place of the reference in the solution cells, run in notebook order as a student's kernel
    would (a failing cell does not stop the next)."""
    namespace = dict(_locked_context())
    failures = {}
    for key, test in EXERCISE_CELLS:
        if not test:
            exec({**REFERENCE, **code}[key], namespace)
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(test, namespace)
            failures[key] = ""
        except Exception as exc:  # noqa: BLE001 - the cell's failure, as the student sees it
            failures[key] = f"{type(exc).__name__}: {exc}"
    return failures


# -- in process ----------------------------------------------------------------------------------
def test_graded_names_are_the_ten_functions():
    assert set(REFERENCE) == set(TEST_OF)


def test_reference_passes_every_visible_test():
    assert visible_failures({}) == dict.fromkeys(TEST_OF.values(), "")


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
@pytest.mark.parametrize("function, mistake", WRONG_CASES, ids=[m for _, m in WRONG_CASES])
def test_each_mistake_fails_its_visible_and_hidden_test_only(function, mistake):
    """The hidden checks fail it; so does its visible test (what `gradschool check` shows),
    and no other visible test."""
    source = WRONG[function][mistake]
    assert hidden(function, source) != ""
    failures = visible_failures({function: source})
    assert failures.pop(TEST_OF[function]) != ""
    assert set(failures.values()) == {""}, failures


@pytest.mark.parametrize("function, route", DELEGATION_CASES, ids=[r for _, r in DELEGATION_CASES])
def test_each_delegation_is_named_by_the_grader_and_by_check(function, route):
    source, named = DELEGATING[function][route]
    verdict = hidden(function, source)
    assert named in verdict and "yourself" in verdict, verdict
    finding = declared_findings(fill_in(ASSIGNMENT, {function: source})).get(TEST_OF[function])
    assert finding is not None and named in finding.message(), finding


@pytest.mark.parametrize("case", list(FAIR))
def test_correct_work_keeps_every_test(case):
    verdicts = {function: hidden(function, *FAIR[case]) for function in TEST_OF}
    assert verdicts == dict.fromkeys(TEST_OF, ""), verdicts


@pytest.mark.parametrize("test_id", list(REBOUND))
def test_a_scratch_cell_that_puts_torch_in_place_of_a_graded_name_loses(test_id):
    source, named = REBOUND[test_id]
    function = next(f for f, t in TEST_OF.items() if t == test_id)
    verdict = hidden(function, *REFERENCE.values(), source)
    assert named in verdict, verdict


def test_sigma_written_another_way_passes():
    """exp(0.5 (log eta - gamma log(1 + t))) differs from sqrt(eta / (1 + t)^gamma) in the last
    bit: the visible test must not compare floats exactly."""
    source = _edit("add_gradient_noise_", "math.sqrt(eta / (1 + step) ** gamma)",
                   "math.exp(0.5 * (math.log(eta) - gamma * math.log(1 + step)))")
    assert visible_failures({"add_gradient_noise_": source})["grad-noise-tests"] == ""
    assert hidden("add_gradient_noise_", source) == ""


def test_clip_grad_norm_depends_on_its_own_exercise_only():
    """A grad_norm that delegates, or that is wrong, costs grad_norm's test and no other: the
    grader's stand-in and the visible test's replaced() take its place."""
    delegating = DELEGATING["grad_norm"]["get_total_norm"][0]
    for grad_norm in (delegating, SUM_OF_NORMS):  # each loses grad_norm's test (tested above)
        assert hidden("clip_grad_norm_", grad_norm, REFERENCE["clip_grad_norm_"]) == ""
    assert visible_failures({"grad_norm": SUM_OF_NORMS})["clip-norm-tests"] == ""


# -- end to end: `gradschool grade` --------------------------------------------------------------
def _submission(tmp_path, code: dict[str, str], scratch=()) -> str:
    """The released notebook with ``code`` in its solution cells and each (after, source) of
    ``scratch`` as a new cell after the test cell ``after``; returns its path."""
    nb = fill_in(ASSIGNMENT, code)
    for after, source in scratch:
        index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == after)
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source.strip()))
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return path


def test_correct_work_with_scratch_cells_gets_full_marks(tmp_path):
    code = {**REFERENCE, **HELPERS}
    report = grade_here(_submission(tmp_path, code, SCRATCH), ASSIGNMENT, runs_clean=True)
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert [statuses.pop(m) for m in MANUAL] == ["manual"] * len(MANUAL)
    assert statuses == dict.fromkeys(TEST_OF.values(), "passed"), json.dumps(report["tests"])
    assert report["score"] == report["max_score"] == 25  # the written answers wait for a person


def test_released_stub_gets_zero():
    assert grade_released_stub(ASSIGNMENT).count("NotImplementedError") == len(TEST_OF)


def test_two_bugs_cost_exactly_their_two_tests(tmp_path):
    """A wrong grad_norm (which clip_grad_norm_ reuses) and the note's weight-norm formula."""
    code = {**REFERENCE, "grad_norm": SUM_OF_NORMS, "weight_norm_grads": NOTES_FORMULA}
    report = grade_here(_submission(tmp_path, code), ASSIGNMENT, runs_clean=False)
    results = results_by_function(report, ASSIGNMENT)
    failed = {f for f, test in results.items() if test["status"] != "passed"}
    assert failed == {"grad_norm", "weight_norm_grads"}, json.dumps(report["tests"])
    assert all(results[f]["score"] == 0 and results[f]["message"] for f in failed)
    assert report["score"] == 25 - 2 - 4


def test_release_declares_each_tests_forbidden_list():
    metadata = nbformat.read(release_notebook(ASSIGNMENT), as_version=4).metadata[METADATA_KEY]
    assert set(metadata) == {"total-norm-tests", "clip-norm-tests", "clip-value-tests",
                             "weight-norm-tests"}
    assert "torch.nn.utils.get_total_norm" not in metadata["clip-norm-tests"]["forbid"]
    assert metadata["clip-norm-tests"]["stand_ins"] == ["grad_norm"]
