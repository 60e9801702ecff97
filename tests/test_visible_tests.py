"""`gradschool check`: a student's own run of the visible tests, with an honest exit status."""

from __future__ import annotations

import nbformat
from conftest import ROOT, gradschool


def _notebook(tmp_path, body: str, name="student.ipynb"):
    """A two-exercise notebook: `body` is the student's code for `square`."""
    test = {"grade": True, "solution": False, "locked": True, "schema_version": 3}
    cells = [
        nbformat.v4.new_code_cell(body),
        nbformat.v4.new_code_cell("assert square(3) == 9, 'square(3) should be 9'"),
        nbformat.v4.new_code_cell("import sys\nprint('noise', file=sys.stderr)\nassert True"),
    ]
    cells[0].metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "sq"}
    cells[1].metadata["nbgrader"] = {**test, "grade_id": "square-tests", "points": 2}
    cells[2].metadata["nbgrader"] = {**test, "grade_id": "other-tests", "points": 1}
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(nb, tmp_path / name)
    return tmp_path / name


def test_passing_notebook_says_visible_tests_passed(tmp_path):
    result = gradschool(
        "check", str(_notebook(tmp_path, "def square(x):\n    return x * x")), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout
    assert "visible tests passed (3/3 points)" in result.stdout
    assert "all tests passed" not in result.stdout.lower()
    assert result.stderr == "", result.stderr  # IPC: no kernel warning about unencrypted TCP


def test_failing_visible_test_exits_1_with_the_message(tmp_path):
    result = gradschool(
        "check", str(_notebook(tmp_path, "def square(x):\n    return x + x")), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "FAIL  square-tests (2 points): AssertionError: square(3) should be 9" in result.stdout
    assert "PASS  other-tests (1 points)" in result.stdout  # stderr output is not a failure
    assert "visible tests: 1/3 points; hidden tests and written answers are graded after you " \
        "submit (a PASS here is not a guarantee)" in result.stdout


def test_a_cell_past_the_timeout_stops_the_run_and_fails(tmp_path):
    body = "import time\ntime.sleep(30)\ndef square(x):\n    return x * x"
    result = gradschool("check", str(_notebook(tmp_path, body)), "--timeout", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "did not run" in result.stdout and "longer than 2 s" in result.stdout


def test_released_notebook_fails_check():
    released = next((ROOT / "course").glob("*/*.ipynb"))
    result = gradschool("check", str(released))
    assert result.returncode == 1 and "NotImplementedError" in result.stdout


def test_unreadable_notebook_is_exit_2(tmp_path):
    (tmp_path / "x.ipynb").write_text("{")
    result = gradschool("check", str(tmp_path / "x.ipynb"), cwd=tmp_path)
    assert result.returncode == 2 and "not a readable Jupyter notebook" in result.stderr


def test_check_reports_the_delegation_the_grader_will_see(tmp_path):
    """The release writes each test's forbidden entries into the notebook; `check` reads the
    exercise's code as the grader will: the scratch cell comparing with math.pow is fine, the
    exercise calling it is reported with its line, though its visible test passes."""
    path = _notebook(tmp_path, "import math\n\ndef square(x):\n    return math.pow(x, 2)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["nbgrader"]["grade_id"] = "square-solution"
    nb.cells.append(nbformat.v4.new_code_cell("print(square(2), math.pow(2, 2))"))
    nb.metadata["gradschool_delegation"] = {"square-tests": {"forbid": ["math.pow"],
                                                             "stand_ins": []}}
    nbformat.write(nb, path)
    result = gradschool("check", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert ("FAIL  square-tests (2 points): the grader will give 0 points: uses math.pow "
            "(`return math.pow(x, 2)`, line 4 of the cell `import math`)") in result.stdout
    nb.cells[0].source = "def square(x):\n    return x * x"
    nbformat.write(nb, path)
    assert gradschool("check", str(path), cwd=tmp_path).returncode == 0
