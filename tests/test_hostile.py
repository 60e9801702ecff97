"""Hostile submissions of notebook 01: no wrong answer gains points, no right answer loses them.

Each submission is the released notebook with the reference solution (or known-wrong code) in its
solution cells, plus the attack: patches of torch, of the gradschool helpers or of IPython in the
student's kernel, objects with a lying ``__eq__``, faked results, tampered test cells. Attacks on
the kernel itself (loops, crashes, memory, output) are in test_hostile_kernel.py, on a smaller
assignment.
"""

from __future__ import annotations

import nbformat
import pytest
from submissions import fill_in, grade_here, grade_json, reference_code
from test_grading import ASSIGNMENT, COLLAPSE, CONSTANT, COUNT, RANDOM, WRONG

from gradschool.cells import grade_id

TESTS = {CONSTANT: "constant-init-tests", COUNT: "count-units-tests", RANDOM: "random-init-tests",
         COLLAPSE: "collapse-tests"}
TAMPERED = (CONSTANT, COUNT, RANDOM)  # the test cells _tampered deletes, empties, turns to Markdown

# the wrong code hidden checks catch
WRONG_CODE = WRONG["top-level-only/variance-as-std/rounding/always-relu"]

PATCH_EVERYTHING = """
import builtins, math, sys
import numpy, torch, IPython
import gradschool.checks as _gc
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
for _name in dir(_gc):
    if _name.startswith(("assert_", "normal_", "uniform_", "bernoulli_", "check_")):
        setattr(_gc, _name, lambda *a, **k: None)
get_ipython().showtraceback = lambda *a, **k: None  # errors leave no trace in the outputs
sys.excepthook = lambda *a: None
"""

CASES = {
    "patched-torch-gradschool-ipython": (
        {**WRONG_CODE, CONSTANT: WRONG_CODE[CONSTANT] + PATCH_EVERYTHING},
        {CONSTANT: "failed", COUNT: "failed", RANDOM: "failed", COLLAPSE: "failed"},
    ),
    "lying-objects-and-faked-results": (
        {
            CONSTANT: reference_code(ASSIGNMENT)[CONSTANT] + """
class _Yes(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
_real_save = torch.save
torch.save = lambda obj, f, *a, **k: _real_save({"n": 2, "state": {}}, f)  # fake every result
print("passed (3/3 points)")
""",
            COUNT: """
def count_distinct_units(weight, atol=1e-6):
    class Anything(int):
        def __eq__(self, other): return True
    return Anything(1)
""",
            RANDOM: reference_code(ASSIGNMENT)[RANDOM],
            COLLAPSE: reference_code(ASSIGNMENT)[COLLAPSE],  # right, but every result is faked
        },
        {CONSTANT: "failed", COUNT: "failed", RANDOM: "failed", COLLAPSE: "failed"},
    ),
}


def _grade(tmp_path, nb) -> dict:
    """The report of ``nb`` graded in this process (:func:`grade_here`)."""
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return grade_here(path, ASSIGNMENT, runs_clean=False)


def _statuses(report: dict) -> dict[str, str]:
    tests = {t["id"]: t for t in report["tests"]}
    for test in tests.values():  # all or nothing, and points follow the status
        assert test["score"] in (0, test["max_score"]), test
        if test["status"] not in ("manual", "restored"):
            assert test["score"] == (test["max_score"] if test["status"] == "passed" else 0), test
    return {f: tests[t]["status"] for f, t in TESTS.items()}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_submission(tmp_path, case):
    code, expected = CASES[case]
    report = _grade(tmp_path, fill_in(ASSIGNMENT, code))
    assert _statuses(report) == expected, report


def _tampered(tmp_path, code: dict[str, str]):
    """The submission of ``code`` with the constant test deleted, the count test emptied and
    the random test turned into Markdown."""
    nb = fill_in(ASSIGNMENT, code)
    ids = {grade_id(c): c for c in nb.cells}
    ids[TESTS[COUNT]].source = "pass  # all good"
    ids[TESTS[RANDOM]].cell_type = "markdown"
    del ids[TESTS[RANDOM]]["outputs"], ids[TESTS[RANDOM]]["execution_count"]
    nb.cells.remove(ids[TESTS[CONSTANT]])
    return nb


def test_tampered_test_cells_are_put_back_and_run_and_grading_twice_agrees(tmp_path):
    """Right code under tampered tests: full marks, graded by the `gradschool grade` command and
    again in this process, with the same report; wrong code under the same tampering: 0."""
    right = _tampered(tmp_path, reference_code(ASSIGNMENT))
    path = tmp_path / "right.ipynb"
    nbformat.write(right, path)
    report = grade_json(path, "--assignment", ASSIGNMENT)
    assert _statuses(report) == {**{f: "restored" for f in TAMPERED}, COLLAPSE: "passed"}
    assert report["score"] == report["max_score"]
    messages = {t["id"]: t["message"] for t in report["tests"]}
    assert "deleted" in messages[TESTS[CONSTANT]] and "edited" in messages[TESTS[COUNT]]
    assert "Markdown" in messages[TESTS[RANDOM]]
    assert _grade(tmp_path, right) == report
    wrong = _grade(tmp_path, _tampered(tmp_path, WRONG_CODE))
    assert _statuses(wrong) == {**{f: "restored" for f in TAMPERED}, COLLAPSE: "failed"}
    assert wrong["score"] == 0
