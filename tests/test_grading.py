"""`gradschool grade`: one-line errors and exit status 2 for what cannot be graded.

The grades themselves (full marks, zero for the blank, mistakes losing their points) are tested
per notebook in ``test_0N_*.py``; notebook 01's names are re-exported here for test_hostile.py.
"""

from __future__ import annotations

import nbformat
import pytest
from conftest import gradschool
from submissions import release_notebook
from test_01_symmetry_breaking import (  # noqa: F401 - re-exported for test_hostile.py
    ASSIGNMENT,
    COLLAPSE,
    CONSTANT,
    COUNT,
    RANDOM,
    WRONG,
)

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
