"""GradeOutsideTheKernel in process, on a synthetic notebook and a hidden-checks file written here:
every verdict a test cell can get from its hidden checks, and what nbgrader then scores. One kernel,
a few seconds; the real notebooks are graded end to end in test_grading.py.
"""

from __future__ import annotations

import nbformat
import pytest
from nbgrader.utils import determine_grade

from gradschool.cells import VERDICT
from gradschool.instructor import Status
from gradschool.instructor.preprocessors import GradeOutsideTheKernel

CHECKS = '''
from gradschool.instructor import HiddenChecks
checks = HiddenChecks()

@checks.test("square-tests")
def squares(kernel):
    assert kernel.probe("result = square(x)", x=7) == 49, "square(7) is not 49"

@checks.test("twice-tests", forbid=["operator.mul"])
def twice_is_right(kernel):
    assert kernel.probe("result = twice(4)") == 8, "twice(4) is not 8"

@checks.test("broken-tests")
def has_a_bug(kernel):
    return 1 / 0

@checks.test("settings-tests")
def sees_the_default_settings(kernel):
    assert kernel.probe("result = str(torch.get_default_dtype())") == "torch.float32"

@checks.test("crash-tests")
def probes_a_function_that_raises(kernel):
    kernel.probe("result = crash()")
'''

CELLS = [  # (grade_id, source, is a test cell)
    ("square-solution", "def square(x):\n    return x * x", False),
    ("square-tests", "assert square(2) == 4", True),
    ("twice-solution", "import operator\ndef twice(x):\n    return operator.mul(2, x)", False),
    ("twice-tests", "assert twice(1) == 2", True),
    ("broken-tests", "pass", True),
    ("crash-solution", "def crash():\n    raise ValueError('bad shape')", False),
    ("crash-tests", "pass", True),
    ("orphan-tests", "pass", True),  # no hidden checks registered
    ("visible-fails-tests", "assert square(3) == 10, 'visible check failed'", True),
    # settings a student leaves behind are undone before a test cell (and in every probe)
    ("settings-solution", "import torch\ntorch.set_default_dtype(torch.float64)\n"
     "torch.set_grad_enabled(False)", False),
    ("settings-tests", "assert torch.get_default_dtype() == torch.float32, 'dtype'\n"
     "assert torch.is_grad_enabled(), 'grad mode'", True),
]

EXPECTED = {
    "square-tests": (Status.PASSED, ""),
    "twice-tests": (Status.FAILED, "uses operator.mul"),
    "broken-tests": (Status.GRADER_ERROR, "the hidden check has_a_bug crashed"),
    "crash-tests": (Status.FAILED, "ValueError: bad shape"),
    "orphan-tests": (Status.GRADER_ERROR, "no hidden checks for orphan-tests"),
    "visible-fails-tests": (Status.FAILED, "visible check failed"),
    "settings-tests": (Status.PASSED, ""),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    (folder / "synthetic.py").write_text(CHECKS)
    nb = nbformat.v4.new_notebook()
    for grade_id, source, is_test in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": is_test,
                                     "solution": not is_test, "locked": is_test,
                                     **({"points": 2} if is_test else {})}
        nb.cells.append(cell)
    grader = GradeOutsideTheKernel(checks_directory=str(folder), timeout=20)
    resources = {"nbgrader": {"assignment": "synthetic"}, "metadata": {"path": str(folder)}}
    nb, _ = grader.preprocess(nb, resources)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells}


@pytest.mark.parametrize("grade_id", list(EXPECTED))
def test_each_test_cell_gets_its_verdict_and_nbgrader_scores_it(graded, grade_id):
    status, message = EXPECTED[grade_id]
    cell = graded[grade_id]
    assert cell.metadata[VERDICT]["status"] == status
    assert message in cell.metadata[VERDICT]["message"]
    score, max_score = determine_grade(cell)
    assert (score, max_score) == ((2.0 if status == Status.PASSED else 0), 2.0)
    assert len(cell.outputs) == 1  # the verdict replaced whatever the cell printed


def test_solution_cells_keep_their_own_outputs(graded):
    assert VERDICT not in graded["square-solution"].metadata
