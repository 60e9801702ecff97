"""`gradschool grade`: one-line errors and exit status 2 for what cannot be graded.

The grades themselves (full marks, zero for the blank, mistakes losing their points) are tested
per notebook in ``test_0N_*.py``; notebook 01's names are re-exported here for test_hostile.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, gradschool
from submissions import release_notebook, solution_notebook
from test_01_symmetry_breaking import (  # noqa: F401 - re-exported for test_hostile.py
    ASSIGNMENT,
    COLLAPSE,
    CONSTANT,
    COUNT,
    RANDOM,
    WRONG,
)

from gradschool.cells import is_test_cell
from gradschool.instructor.course import Course, CourseError
from gradschool.instructor.grade import check_belongs, graded_cell_ids

SOLUTION = solution_notebook(ASSIGNMENT)
RELEASE = release_notebook(ASSIGNMENT)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        ("{not json", "not a readable Jupyter notebook"),
        ('{"cells": 3}', "not a readable Jupyter notebook"),
    ],
)
def test_ungradable_file_is_one_line_exit_2(tmp_path, content, expected):
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_text(content)
    result = gradschool("grade", str(path), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr


def test_unknown_or_unrecognisable_assignment_is_exit_2(tmp_path):
    result = gradschool("grade", str(RELEASE), "--assignment", "99-nope")
    assert result.returncode == 2 and "unknown assignment '99-nope'" in result.stderr
    blank = tmp_path / "blank.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), blank)
    result = gradschool("grade", str(blank))
    assert result.returncode == 2 and "pass --assignment ID" in result.stderr


def test_a_notebook_of_another_assignment_is_named_before_grading(tmp_path):
    other = tmp_path / "hw.ipynb"
    other.write_bytes(release_notebook("04-dropout").read_bytes())
    result = gradschool("grade", str(other), "--assignment", "03-optimizers")
    assert result.returncode == 2
    assert result.stderr == ("gradschool: hw.ipynb has none of 03-optimizers' graded cells; "
                             "it looks like 04-dropout\n")
    blank = tmp_path / "Untitled.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), blank)
    result = gradschool("grade", str(blank), "--assignment", "04-dropout")
    assert result.returncode == 2 and "Untitled.ipynb has none of 04-dropout's graded cells; " \
        "it has no nbgrader cells" in result.stderr


def test_assignments_share_no_graded_cell():
    """What tells a notebook's assignment apart (check_belongs, collect's choice)."""
    graded = {p.parent.name: graded_cell_ids(nbformat.read(p, as_version=4))
              for p in sorted((ROOT / "solutions").glob("*/*.ipynb"))}
    for (a, ids_a), (b, ids_b) in itertools.combinations(graded.items(), 2):
        assert not ids_a & ids_b, (a, b, ids_a & ids_b)


def test_a_notebook_without_its_test_cells_still_belongs():
    course = Course.at(ROOT)
    nb = nbformat.read(release_notebook("04-dropout"), as_version=4)
    nb.cells = [c for c in nb.cells if not is_test_cell(c)]  # nbgrader puts them back
    check_belongs(course, Path("hw.ipynb"), nb, "04-dropout")
    with pytest.raises(CourseError, match="none of 03-optimizers' graded cells; it looks like "
                                          "04-dropout$"):
        check_belongs(course, Path("hw.ipynb"), nb, "03-optimizers")
