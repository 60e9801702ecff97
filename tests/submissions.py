"""Submissions as students make them, for any assignment of the course.

A submission is the released notebook (``course/<id>/<id>.ipynb``) with its solution cells filled
in: by the reference solution taken from ``solutions/``, by known-wrong code, or by an attack. It is
graded by the real ``gradschool grade`` command, and its JSON report is read back::

    code = {**reference_code(ID), "adam_step": WRONG_ADAM}
    report = grade_json(make_submission(tmp_path, ID, code))
    assert results_by_function(report, ID)["adam_step"]["status"] == "failed"
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
from conftest import ROOT, gradschool

from gradschool.cells import grade_id, is_solution_cell

DEFINITION = re.compile(r"^(?:def|class) (\w+)\b", flags=re.M)


def solution_notebook(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str) -> Path:
    return ROOT / "course" / assignment / f"{assignment}.ipynb"


def solution_cells(nb) -> dict[str, int]:
    """Name of each top-level function or class a solution cell defines -> that cell's index."""
    return {name: i for i, cell in enumerate(nb.cells) if is_solution_cell(cell)
            for name in DEFINITION.findall(cell.source)}


def reference_code(assignment: str) -> dict[str, str]:
    """Defined name -> the source of the solution cell defining it, without solution markers."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    return {name: "\n".join(line for line in nb.cells[i].source.splitlines()
                            if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
            for name, i in solution_cells(nb).items()}


def fill_in(assignment: str, code: dict[str, str]):
    """The released notebook of ``assignment`` with the cell defining each name of ``code``
    replaced by ``code[name]`` (after an ``import torch``)."""
    nb = nbformat.read(release_notebook(assignment), as_version=4)
    cells = solution_cells(nb)
    unknown = code.keys() - cells.keys()
    assert not unknown, f"no solution cell of {assignment} defines {sorted(unknown)}"
    for name, source in code.items():
        nb.cells[cells[name]].source = "import torch\n" + source.strip() + "\n"
    return nb


def make_submission(tmp_path: Path, assignment: str, code: dict[str, str],
                    name: str = "submission.ipynb") -> Path:
    """Write :func:`fill_in`'s notebook to ``tmp_path / name``; return its path."""
    path = tmp_path / name
    nbformat.write(fill_in(assignment, code), path)
    return path


def grade_json(path: Path, *args: str) -> dict:
    """``gradschool grade PATH --json ARGS``: exit 0 and exactly one JSON object on stdout."""
    result = gradschool("grade", str(path), "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def grade_released_stub(assignment: str) -> str:
    """``gradschool grade`` on the released notebook as it is: exit 0 and a table that ends in
    0 points. Returns the table."""
    result = gradschool("grade", str(release_notebook(assignment)))
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{assignment}: 0 / \d+ points$", result.stdout, flags=re.M), result.stdout
    return result.stdout


def results_by_function(report: dict, assignment: str) -> dict[str, dict]:
    """Each defined name's test result: the first graded test cell after its solution cell."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    tests = {t["id"]: t for t in report["tests"]}
    out = {}
    for name, i in solution_cells(nb).items():
        following = (grade_id(c) for c in nb.cells[i + 1:])
        found = next((g for g in following if g in tests), None)
        if found is not None:
            out[name] = tests[found]
    return out
