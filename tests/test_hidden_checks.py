"""The static half of the delegation check, and which cells it reads (fast: no kernel)."""

from __future__ import annotations

import nbformat
import pytest

from gradschool.instructor import delegation, load_hidden_checks
from gradschool.instructor.preprocessors import own_code

FORBID = {"Adam", "adam"}


@pytest.mark.parametrize("source, why", [
    ("opt = torch.optim.Adam(params)", "uses Adam"),
    ("from torch.optim import adam as mine", "uses adam"),
    ("class MyAdam(torch.optim.Adam):\n    pass", "uses Adam"),
    ("import importlib\nm = importlib.import_module('torch.optim.adam')", "uses adam"),
    ("f = getattr(torch.optim, 'Ad' + 'am')", "getattr with a computed name"),
    ("f = torch.optim.__dict__['Ad' + 'am']", "__dict__"),
    ("f = eval('torch.optim.' + name)", "eval"),
    ("%time x = torch.optim.Adam", "uses Adam"),  # IPython syntax is read too
])
def test_delegation_is_named(source, why):
    assert why in delegation([source], FORBID)


@pytest.mark.parametrize("source", [
    "class MyAdam(torch.optim.Optimizer):\n    '''Adam, as in arXiv:1412.6980.'''",
    "import sys\nprint('step', file=sys.stderr)",
    "x = getattr(module, 'weight')",  # a constant name is fine
    "this is not python (",  # a syntax error is the kernel's business, not a delegation
])
def test_own_code_is_not_delegation(source):
    assert delegation([source], FORBID) == ""


def test_nothing_forbidden_means_nothing_checked():
    assert delegation(["eval('torch.optim.Adam')"], set()) == ""


def _cell(source, grade_id=None, locked=False):
    cell = nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata.nbgrader = {"grade_id": grade_id, "locked": locked, "solution": not locked}
    return cell


def test_the_check_reads_the_exercise_cells_and_added_cells_only():
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("setup", "setup", locked=True), _cell("adam code", "adam-solution"),
                _cell("other code", "sgd-solution"), _cell("student's own cell"),
                _cell("test", "adam-tests", locked=True)]
    assert own_code(nb, "adam-tests") == ["adam code", "student's own cell"]
    assert own_code(nb, "unknown-tests") == ["adam code", "other code", "student's own cell"]


def test_a_checks_file_without_checks_is_refused(tmp_path):
    path = tmp_path / "01-x.py"
    path.write_text("checks = {}\n")
    with pytest.raises(TypeError, match="checks = HiddenChecks"):
        load_hidden_checks(path)
