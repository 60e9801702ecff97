"""01-symmetry-breaking: full marks for correct work, zero for the blank, each mistake costs its
own test, and the visible tests agree with the grade.

Two levels. In process and fast, every known mistake (at least two per graded function, the
slips of the issue and the review) goes through the grader's own reading and hidden checks
(``hidden_verdict``) and through the notebook's visible test cell (``visible_verdict``): both must
fail it, since what ``gradschool check`` reports must agree with the grade on the contract's core.
End to end, ``gradschool grade`` runs three times: the reference solution with a student's
realistic scratch work (full marks), the released stub (zero), and a notebook with two mistakes in
two exercises (exactly those two tests lost).
"""

from __future__ import annotations

import functools

import nbformat
import pytest
from conftest import ROOT
from submissions import (
    SETUP,
    edited,
    fill_in,
    grade_here,
    grade_released_stub,
    hidden_verdict,
    locked_sources,
    reference_code,
    solution_cells,
    solution_notebook,
)

from gradschool.delegation import python_source

ASSIGNMENT = "01-symmetry-breaking"
CONSTANT, COUNT, COLLAPSE = "constant_init_", "count_distinct_units", "collapse_to_one_unit"
SGD, RANDOM = "one_unit_sgd", "random_init_"
TEST_OF = {CONSTANT: "constant-init-tests", COUNT: "count-units-tests",
           COLLAPSE: "collapse-tests", SGD: "one-unit-sgd-tests", RANDOM: "random-init-tests"}
REFERENCE = reference_code(ASSIGNMENT)


_edit = functools.partial(edited, REFERENCE)  # a mistake as an edit of the reference


# -- known mistakes, one function at a time ----------------------------------------------------
MISTAKES = {
    CONSTANT: {
        "forgets the biases": _edit(CONSTANT, "                if module.bias is not None:\n"
                                    "                    module.bias.fill_(value)\n", ""),
        "new Parameters instead of filling": _edit(
            CONSTANT, "module.weight.fill_(value)",
            "module.weight = nn.Parameter(torch.full_like(module.weight, value))",
            "module.bias.fill_(value)",
            "module.bias = nn.Parameter(torch.full_like(module.bias, value))"),
        "top-level modules only": _edit(CONSTANT, "model.modules()", "model.children()"),
        "reassigns .data": _edit(CONSTANT, "module.weight.fill_(value)",
                                 "module.weight.data = torch.full_like(module.weight, value)"),
    },
    COUNT: {
        "exact equality (torch.unique)": """
def count_distinct_units(weight, atol=1e-6):
    return int(torch.unique(weight, dim=0).shape[0])
""",
        "columns, not rows": _edit(COUNT, "w = weight.detach()", "w = weight.detach().T"),
        "rounding to a grid": """
def count_distinct_units(weight, atol=1e-6):
    return int(torch.unique(torch.round(weight / atol), dim=0).shape[0])
""",
        "the Euclidean (L2) metric": _edit(COUNT, "(w - w[first]).abs().amax(dim=1)",
                                           "(w - w[first]).norm(dim=1)"),
        "torch.isclose (adds a relative tolerance)": _edit(
            COUNT, "(w - w[first]).abs().amax(dim=1) <= atol",
            "torch.isclose(w, w[first], atol=atol).all(dim=1)"),
        "rounds float64 to float32": _edit(COUNT, "w = weight.detach()",
                                           "w = weight.detach().float()"),
    },
    COLLAPSE: {
        "one column instead of their sum": _edit(
            COLLAPSE, "last.weight.sum(dim=1, keepdim=True)", "last.weight[:, :1]"),
        "layers in float32": _edit(COLLAPSE, ", **factory", ""),
        "always ReLU": _edit(COLLAPSE, "        activation,\n", "        nn.ReLU(),\n"),
        "the width on the incoming weights (right for ReLU only)": _edit(
            COLLAPSE, "one[0].weight.copy_(first.weight[:1])",
            "one[0].weight.copy_(first.weight[:1] * first.out_features)",
            "last.weight.sum(dim=1, keepdim=True)", "last.weight[:, :1]",
            "one[0].bias.copy_(first.bias[:1])",
            "one[0].bias.copy_(first.bias[:1] * first.out_features)"),
        "a view of the model's weight (shares memory)": _edit(
            COLLAPSE, "one[0].weight.copy_(first.weight[:1])",
            "one[0].weight = nn.Parameter(first.weight[:1])"),
        "the model's own output bias (shares memory)": _edit(
            COLLAPSE, "one[2].bias.copy_(last.bias)", "one[2].bias = last.bias"),
    },
    SGD: {
        "lr everywhere": """
def one_unit_sgd(one, lr, hidden):
    return torch.optim.SGD(one.parameters(), lr=lr)
""",
        "the factors the wrong way round": _edit(SGD, '"lr": lr / hidden}', '"lr": lr * hidden}',
                                                 '"lr": lr * hidden}]', '"lr": lr / hidden}]'),
        "grouped by layer (output bias at H lr)": """
def one_unit_sgd(one, lr, hidden):
    first, _, last = one
    return torch.optim.SGD([{"params": first.parameters(), "lr": lr / hidden},
                            {"params": last.parameters(), "lr": lr * hidden}], lr=lr)
""",
        "first-layer bias at lr": """
def one_unit_sgd(one, lr, hidden):
    first, _, last = one
    biases = [p for p in (first.bias, last.bias) if p is not None]
    groups = [{"params": [first.weight], "lr": lr / hidden},
              {"params": [last.weight], "lr": lr * hidden}]
    return torch.optim.SGD(groups + ([{"params": biases, "lr": lr}] if biases else []), lr=lr)
""",
        "no care for bias=False": _edit(SGD, "    if last.bias is not None:\n        groups",
                                        "    if True:\n        groups"),
        "momentum": _edit(SGD, "torch.optim.SGD(groups, lr=lr)",
                          "torch.optim.SGD(groups, lr=lr, momentum=0.9)"),
    },
    RANDOM: {
        "ignores the generator": _edit(RANDOM, ", generator=generator)", ")"),
        "uniform with the right variance": _edit(
            RANDOM, "nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)",
            "nn.init.uniform_(module.weight, -std * 3**0.5, std * 3**0.5, generator=generator)"),
        "truncated at 2 std": _edit(
            RANDOM, "nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)",
            "nn.init.trunc_normal_(module.weight, 0.0, std, -2 * std, 2 * std, "
            "generator=generator)"),
        "the variance as std": _edit(RANDOM, "std=std,", "std=std**2,"),
        "biases left as they were": _edit(RANDOM, "            if module.bias is not None:\n"
                                          "                nn.init.zeros_(module.bias)\n", ""),
        "top-level modules only": _edit(RANDOM, "model.modules()", "model.children()"),
    },
}
CASES = [(name, mistake) for name, mistakes in MISTAKES.items() for mistake in mistakes]

# Groups of one mistake per function of the first four exercises (test_hostile.py uses them).
WRONG = {
    "forgets-biases/ignores-generator/exact-equality/one-column": {
        CONSTANT: MISTAKES[CONSTANT]["forgets the biases"],
        RANDOM: MISTAKES[RANDOM]["ignores the generator"],
        COUNT: MISTAKES[COUNT]["exact equality (torch.unique)"],
        COLLAPSE: MISTAKES[COLLAPSE]["one column instead of their sum"]},
    "new-parameters/uniform/columns/float32-layers": {
        CONSTANT: MISTAKES[CONSTANT]["new Parameters instead of filling"],
        RANDOM: MISTAKES[RANDOM]["uniform with the right variance"],
        COUNT: MISTAKES[COUNT]["columns, not rows"],
        COLLAPSE: MISTAKES[COLLAPSE]["layers in float32"]},
    "top-level-only/variance-as-std/rounding/always-relu": {
        CONSTANT: MISTAKES[CONSTANT]["top-level modules only"],
        RANDOM: MISTAKES[RANDOM]["the variance as std"],
        COUNT: MISTAKES[COUNT]["rounding to a grid"],
        COLLAPSE: MISTAKES[COLLAPSE]["always ReLU"]},
}

# A student's realistic scratch work, added at the end of a correct notebook: their functions
# beside torch's, ordinary names (init, grad, func, sys), optimizer steps and .backward().
SCRATCH = """
import sys
import torch
import torch.nn.functional as F
from torch import nn


def side_by_side(model, init=nn.init.constant_, value=0.05):
    \"\"\"My constant_init_ next to torch's nn.init, layer by layer.\"\"\"
    constant_init_(model, value)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            expected = torch.empty_like(m.weight)
            init(expected, value)
            assert torch.equal(m.weight, expected)
    return model


def apply_grad(param, grad, func=torch.sub, lr=0.1):
    return func(param, lr * grad)


net = side_by_side(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)))
theirs = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
for m in theirs.modules():
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.1, generator=torch.Generator().manual_seed(0))
        nn.init.zeros_(m.bias)
mine = random_init_(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)), 0.1,
                    generator=torch.Generator().manual_seed(0))
print(sys.version_info[:2], count_distinct_units(mine[0].weight),
      torch.unique(theirs[0].weight, dim=0).shape)
wide = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3)).double()
constant_init_(wide, 0.1)
one = collapse_to_one_unit(wide)
opt, wide_opt = one_unit_sgd(one, 0.1, 5), torch.optim.SGD(wide.parameters(), lr=0.1)
x, y = torch.randn(16, 8, dtype=torch.float64), torch.randint(3, (16,))
for net_, opt_ in ((wide, wide_opt), (one, opt)):
    opt_.zero_grad()
    F.cross_entropy(net_(x), y).backward()
    opt_.step()
with torch.no_grad():
    grad = one[0].weight.grad
    one[0].weight.copy_(apply_grad(one[0].weight, grad))
print(torch.nn.utils.clip_grad_norm_(wide.parameters(), 1.0), F.dropout(x, 0.5).shape)
"""


def run_checks(name: str, own: str, *after: str) -> str:
    """The grader's verdict on the test of ``name`` when that exercise's cell is ``own``, the
    other exercises' cells hold the reference, and the cells ``after`` follow."""
    cells = [own if other == name else REFERENCE[other] for other in MISTAKES]
    return hidden_verdict(ASSIGNMENT, TEST_OF[name], [*cells, *after])


def _context() -> dict:
    """The notebook's namespace before the exercises: setup (without its global settings),
    data, and the helpers of the visible tests."""
    setup, data, helpers = locked_sources(ASSIGNMENT, "setup", "data", "test-models")
    setup = python_source(setup).replace("setup_notebook(seed=0)", "torch.device('cpu')")
    namespace = {"__name__": "__main__"}
    for source in (SETUP, setup, data, helpers):
        exec(compile(source, "<context>", "exec"), namespace)
    return namespace


CONTEXT = _context()


def visible_verdict(name: str, own: str) -> str:
    """What the visible test cell of ``name`` says of ``own`` (with the reference for the other
    exercises): "" when it passes, else its error."""
    namespace = dict(CONTEXT)
    visible = locked_sources(ASSIGNMENT, TEST_OF[name])[0]
    try:
        for source in [own if other == name else REFERENCE[other] for other in MISTAKES]:
            exec(compile(source, "<student>", "exec"), namespace)
        exec(compile(visible, "<visible test>", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001 - any error fails the visible test
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_graded_names_are_the_exercises():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names == set(MISTAKES) == set(TEST_OF)


@pytest.mark.parametrize("name", list(MISTAKES))
def test_the_reference_passes_visible_and_hidden_tests(name):
    assert visible_verdict(name, REFERENCE[name]) == ""
    assert run_checks(name, REFERENCE[name]) == ""


@pytest.mark.parametrize("name, mistake", CASES, ids=[f"{n}: {m}" for n, m in CASES])
def test_each_mistake_fails_its_visible_and_hidden_tests(name, mistake):
    code = MISTAKES[name][mistake]
    assert run_checks(name, code) != "", "the grader missed it"
    assert visible_verdict(name, code) != "", "gradschool check would report a pass"


@pytest.mark.parametrize("name", list(MISTAKES))
def test_a_mistake_costs_only_its_own_test(name):
    """Every other exercise's hidden checks pass whatever this one gets wrong (none of them calls
    another exercise's function)."""
    wrong = next(iter(MISTAKES[name].values()))
    for other in MISTAKES:
        if other != name:
            cells = [wrong if n == name else REFERENCE[n] for n in MISTAKES]
            assert hidden_verdict(ASSIGNMENT, TEST_OF[other], cells) == "", other


@pytest.mark.parametrize("name", list(MISTAKES))
def test_realistic_scratch_work_costs_nothing(name):
    assert run_checks(name, REFERENCE[name], SCRATCH) == ""


@pytest.mark.parametrize("name, rebinding", [
    (CONSTANT, "constant_init_ = torch.nn.init.constant_"),
    (RANDOM, "from torch.nn.init import normal_ as random_init_"),
    (COLLAPSE, "import copy\ncollapse_to_one_unit = copy.deepcopy"),
    (COUNT, MISTAKES[COUNT]["the Euclidean (L2) metric"]),
    (SGD, "one_unit_sgd = lambda one, lr, hidden: torch.optim.SGD(one.parameters(), lr)"),
])
def test_a_graded_name_rebound_at_the_end_is_graded_as_rebound(name, rebinding):
    """A scratch cell after the exercise that rebinds its name, to a function of torch or of the
    standard library (torch has no function with these contracts, so calling it fails), or to a
    wrong version of the student's own: the test is lost."""
    assert run_checks(name, REFERENCE[name], SCRATCH, rebinding) != ""


# -- end to end: `gradschool grade` ------------------------------------------------------------
def _with_cells(code: dict[str, str], *extra: str):
    nb = fill_in(ASSIGNMENT, code)
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in extra)
    return nb


def test_reference_with_scratch_work_gets_full_marks(tmp_path):
    path = tmp_path / "anything-at-all.ipynb"
    nbformat.write(_with_cells(REFERENCE, SCRATCH), path)
    report = grade_here(path, runs_clean=True)
    assert report["assignment"] == ASSIGNMENT  # inferred from the cells, not the file name
    assert report["max_score"] == 16 and report["score"] == report["max_score"], report
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {**{test: "passed" for test in TEST_OF.values()},
                        "bn-answer": "manual", "zero-answer": "manual", "adam-answer": "manual"}


def test_released_stub_gets_zero_and_leaves_the_gradebook_alone():
    gradebook = ROOT / "autograder" / "gradebook.db"
    before = gradebook.stat().st_mtime_ns if gradebook.exists() else None
    assert grade_released_stub(ASSIGNMENT).count("NotImplementedError") == len(MISTAKES)
    assert (gradebook.stat().st_mtime_ns if gradebook.exists() else None) == before


def test_two_mistakes_in_two_exercises_cost_exactly_those_two_tests(tmp_path):
    code = {**REFERENCE, COUNT: MISTAKES[COUNT]["the Euclidean (L2) metric"],
            COLLAPSE: MISTAKES[COLLAPSE]["a view of the model's weight (shares memory)"]}
    path = tmp_path / "submission.ipynb"
    nbformat.write(_with_cells(code), path)
    report = grade_here(path, ASSIGNMENT, runs_clean=False)
    lost = {t["id"] for t in report["tests"] if t["status"] not in ("passed", "manual")}
    assert lost == {TEST_OF[COUNT], TEST_OF[COLLAPSE]}, report
    messages = {t["id"]: t["message"] for t in report["tests"]}
    assert "count_distinct_units" in messages[TEST_OF[COUNT]]
    assert "share memory" in messages[TEST_OF[COLLAPSE]]
    assert report["score"] == report["max_score"] - 6
