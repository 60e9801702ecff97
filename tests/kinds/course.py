"""Build a throw-away course holding only the 'kinds' assignment (see ``solutions.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
from conftest import gradschool

from kinds.solutions import POINTS, SETUP, SOLUTIONS, VISIBLE

ASSIGNMENT = "kinds"
HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _cell(source: str, grade_id: str, *, solution=False, points=None):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.nbgrader = {
        "grade": points is not None, "grade_id": grade_id, "locked": not solution,
        "schema_version": 3, "solution": solution, "task": False,
        **({"points": points} if points is not None else {}),
    }
    return cell


def notebook(code: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The assignment's notebook with ``code`` (default: the solutions) in its solution cells."""
    code = {**SOLUTIONS, **(code or {})}
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(_cell(SETUP, "setup"))
    for exercise in SOLUTIONS:
        nb.cells.append(_cell(code[exercise], f"{exercise}-solution", solution=True))
        nb.cells.append(_cell(VISIBLE[exercise], f"{exercise}-tests", points=POINTS[exercise]))
    return nb


def make_course(root: Path) -> Path:
    """Write the course (config, solutions/kinds/kinds.ipynb, autograder/checks/kinds.py)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    source = root / "solutions" / ASSIGNMENT
    source.mkdir(parents=True)
    solution = notebook()
    for cell in solution.cells:  # nbgrader's markers around the reference code
        if cell.metadata.nbgrader["solution"]:
            cell.source = f"### BEGIN SOLUTION\n{cell.source}### END SOLUTION\n"
    nbformat.write(solution, source / f"{ASSIGNMENT}.ipynb")
    (root / "autograder" / "checks").mkdir(parents=True)
    shutil.copy(HERE / "checks.py", root / "autograder" / "checks" / f"{ASSIGNMENT}.py")
    return root


def grade(course: Path, code: dict[str, str] | None = None, *options: str) -> dict:
    """Grade the notebook with ``code`` in its solution cells in ``course`` (``options`` are
    passed to ``gradschool grade``); return the JSON report, plus ``by_exercise``: {exercise:
    its test's result}."""
    path = course / "submission.ipynb"
    nbformat.write(notebook(code), path)
    result = gradschool("grade", str(path), "--assignment", ASSIGNMENT, "--json", *options,
                        cwd=course)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # the kernel's noise stays out of the grader's
    report = json.loads(result.stdout)
    report["by_exercise"] = {t["id"].removesuffix("-tests"): t for t in report["tests"]}
    return report
