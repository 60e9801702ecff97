"""What the cells of a course notebook are: one definition for every tool of the course.

nbgrader keeps a cell's role in ``cell.metadata["nbgrader"]``: ``grade`` (the cell earns points),
``solution`` (the student writes it), ``locked`` (the student may not change it) and ``grade_id``
(its name). The three roles the course uses follow from those flags:

- a **test cell** is an autograded code cell: graded, not a solution (it runs the visible tests;
  the grader adds the hidden checks);
- a **solution cell** is a code cell the student writes: a solution, not graded;
- a **manual cell** is a written answer graded by a person: graded and a solution.

The predicates are nbgrader's own (``nbgrader.utils.is_grade``, ``is_solution``, ``is_locked``),
restated here so that the student's ``gradschool check`` works without nbgrader installed;
``tests/test_cells.py`` checks that both agree on every cell of the course.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from gradschool.errors import UserError

#: nbgrader's metadata key.
NBGRADER = "nbgrader"
#: The metadata key under which the grader records a test cell's verdict (status and message).
VERDICT = "gradschool"


def nbgrader_metadata(cell) -> dict:
    return cell.metadata.get(NBGRADER, {})


def grade_id(cell) -> str | None:
    """The cell's nbgrader name, or None for a cell nbgrader does not track."""
    return nbgrader_metadata(cell).get("grade_id")


def points(cell) -> float:
    return float(nbgrader_metadata(cell).get("points", 0))


def is_graded(cell) -> bool:
    return bool(nbgrader_metadata(cell).get("grade", False))


def is_solution(cell) -> bool:
    return bool(nbgrader_metadata(cell).get("solution", False))


def is_locked(cell) -> bool:
    """nbgrader's rule: a solution is never locked, a graded cell always, others when marked."""
    if is_solution(cell):
        return False
    return is_graded(cell) or bool(nbgrader_metadata(cell).get("locked", False))


def is_test_cell(cell) -> bool:
    return cell.cell_type == "code" and is_graded(cell) and not is_solution(cell)


def is_solution_cell(cell) -> bool:
    return cell.cell_type == "code" and is_solution(cell) and not is_graded(cell)


def is_manual_cell(cell) -> bool:
    return is_graded(cell) and is_solution(cell)


def grade_ids(nb) -> set[str]:
    """The grade_ids of every tracked cell of ``nb``."""
    return {grade_id(c) for c in nb.cells if grade_id(c) is not None}


def test_cell_ids(nb) -> list[str]:
    """The grade_ids of the test cells of ``nb``, in notebook order."""
    return [grade_id(c) for c in nb.cells if is_test_cell(c)]


def manual_cell_ids(nb) -> list[str]:
    """The grade_ids of the manual cells of ``nb``, in notebook order."""
    return [grade_id(c) for c in nb.cells if is_manual_cell(c)]


class NotebookError(UserError):
    """A file that is not a readable notebook: the message is one line that says why."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read and validate the notebook at ``path``, or raise NotebookError saying why not."""
    if not path.is_file():
        raise NotebookError(f"{path}: no such file")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        reason = type(exc).__name__
        raise NotebookError(f"{path}: not a readable Jupyter notebook ({reason})") from exc
    return nb
