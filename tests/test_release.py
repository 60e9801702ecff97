"""The release: course/ is what nbgrader generates from solutions/, and it is safe for students."""

import json

import nbformat
import pytest
from conftest import ROOT, gradschool
from nbclient import NotebookClient

from gradschool.instructor.release import MAY_RAISE_TAG, validation_copy

RELEASED = sorted((ROOT / "course").glob("*/*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))


def test_every_solution_has_a_release():
    assert [p.name for p in RELEASED] == [p.name for p in SOLUTIONS]


def test_release_check_passes_on_the_repository():
    result = gradschool("release", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_check_names_a_stale_notebook(course_copy):
    stale = next((course_copy / "course").glob("*/*.ipynb"))
    nb = nbformat.read(stale, as_version=4)
    nb.cells[0].source += "\nedited by hand"
    nbformat.write(nb, stale)
    result = gradschool("release", "--check", cwd=course_copy)
    assert result.returncode == 1
    assert f"course/{stale.parent.name}/{stale.name} differs" in result.stdout


def test_release_regenerates_what_check_expects(course_copy):
    stale = next((course_copy / "course").glob("*/*.ipynb"))
    stale.unlink()
    assert gradschool("release", "--check", cwd=course_copy).returncode == 1
    assert gradschool("release", cwd=course_copy).returncode == 0
    assert gradschool("release", "--check", cwd=course_copy).returncode == 0


def test_release_of_an_unknown_assignment_is_one_line_exit_2():
    result = gradschool("release", "99-nope")
    assert result.returncode == 2
    assert (
        result.stderr.strip().count("\n") == 0 and "unknown assignment '99-nope'" in result.stderr
    )


def test_a_config_that_raises_is_reported_not_swallowed(course_copy):
    (course_copy / "nbgrader_config.py").write_text("c = get_config()\n1 / 0\n")
    result = gradschool("release", "--check", cwd=course_copy)
    assert result.returncode == 2 and "does not load: division by zero" in result.stderr


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.parent.name)
def test_released_notebook_is_clean(path):
    text = path.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "MARK SCHEME"):
        assert marker not in text, f"{path.name} leaks {marker!r}"
    nb = json.loads(text)
    assert all(cell.get("id") for cell in nb["cells"]), "cells need stable ids"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c["outputs"] or c["execution_count"] for c in code), "outputs committed"
    # No cell may be allowed to raise: a student's "Run All" stops at the first exercise not done.
    assert not any(MAY_RAISE_TAG in c["metadata"].get("tags", []) for c in code)


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.parent.name)
def test_released_notebook_runs_clean_up_to_the_student_code(path):
    """CI's validation of the release (what `pytest --nbval-lax course` did while the release was
    tagged): every cell that does not depend on an exercise runs clean."""
    nb = validation_copy(nbformat.read(path, as_version=4))
    assert any(MAY_RAISE_TAG in c.metadata.get("tags", []) for c in nb.cells)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()


def _tagged(sources_and_solution):
    nb = nbformat.v4.new_notebook()
    for source, solution in sources_and_solution:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"solution": solution}
        nb.cells.append(cell)
    nb = validation_copy(nb)
    return [MAY_RAISE_TAG in c.metadata.get("tags", []) for c in nb.cells]


def test_tags_follow_what_depends_on_student_code():
    assert _tagged(
        [
            ("%matplotlib inline\nimport torch", False),  # setup: must run clean
            ("def f(x):\n    raise NotImplementedError", True),  # the stub
            ("assert f(1) == 2", False),  # test of the student's code
            ("def g():\n    return f(0)", False),  # helper built on it ...
            ("y = g()", False),  # ... raises where it is called
            ("print(y)", False),  # ... and so does what reads y
            ("print(torch.pi)", False),  # independent: must run clean
        ]
    ) == [False, True, True, True, True, True, False]
