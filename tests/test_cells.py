"""gradschool.cells says what nbgrader says about every cell of every notebook of the course."""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT
from nbgrader import utils

from gradschool import cells

NOTEBOOKS = sorted(ROOT.glob("solutions/*/*.ipynb")) + sorted(ROOT.glob("course/*/*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_roles_agree_with_nbgrader(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        assert cells.is_graded(cell) == bool(utils.is_grade(cell))
        assert cells.is_solution(cell) == bool(utils.is_solution(cell))
        assert cells.is_locked(cell) == bool(utils.is_locked(cell))
        roles = [cells.is_test_cell(cell), cells.is_solution_cell(cell), cells.is_manual_cell(cell)]
        assert sum(roles) <= 1, (cells.grade_id(cell), roles)  # at most one role each
    assert cells.test_cell_ids(nb) and set(cells.test_cell_ids(nb)) <= cells.grade_ids(nb)


def test_roles_of_synthetic_cells():
    def cell(kind="code", **flags):
        c = nbformat.v4.new_code_cell("") if kind == "code" else nbformat.v4.new_markdown_cell("")
        c.metadata["nbgrader"] = {"grade_id": "x", **flags}
        return c

    assert cells.is_test_cell(cell(grade=True, solution=False))
    assert not cells.is_test_cell(cell("markdown", grade=True, solution=False))
    assert cells.is_solution_cell(cell(grade=False, solution=True))
    assert cells.is_manual_cell(cell("markdown", grade=True, solution=True))
    assert not cells.is_locked(cell(solution=True, locked=True))  # nbgrader: solutions never are
    assert cells.grade_id(nbformat.v4.new_code_cell("")) is None
