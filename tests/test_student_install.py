"""The student side installs and runs without the instructor tools.

A fresh virtual environment gets exactly what ``pip install gradschool`` (no extra) would give: the
distributions of pyproject.toml's ``dependencies`` and, recursively, theirs, taken from this
environment (linked, not downloaded), plus the package's own source. nbgrader and JupyterLab are
not among them. In it, every ``gradschool`` module the notebooks import must import, and
``gradschool check`` must run a notebook; ``gradschool grade`` must say in one line how to get the
instructor tools.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import tomllib
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

INSTRUCTOR_ONLY = {"nbgrader", "jupyterlab", "jupyter_server", "notebook"}


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions that ``requirements`` need, recursively (no extras)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.distribution(name).requires or []]
    return seen


def _notebook_imports() -> set[str]:
    """Every gradschool module a solution notebook imports."""
    found = {"gradschool.cells", "gradschool.visible_tests", "gradschool.cli"}
    for path in ROOT.glob("solutions/*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                found |= set(re.findall(r"^\s*from (gradschool[\w.]*) import", cell.source, re.M))
    return found


@pytest.fixture(scope="module")
def student_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("student") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name in _closure(dependencies):
        for file in metadata.distribution(name).files or []:
            top = file.parts[0]
            if top != ".." and not (site / top).exists() and (ours / top).exists():
                (site / top).symlink_to(ours / top)
    (site / "gradschool-source.pth").write_text(str(ROOT / "src") + "\n")
    return python


def test_student_install_leaves_out_the_instructor_tools():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not _closure(dependencies) & INSTRUCTOR_ONLY


def test_every_module_the_notebooks_use_imports_without_nbgrader(student_python):
    modules = sorted(_notebook_imports())
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{sorted(INSTRUCTOR_ONLY)!r} or m.startswith('gradschool.instructor'))))")
    result = subprocess.run([student_python, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    result = subprocess.run([student_python, "-c", "import nbgrader"], capture_output=True)
    assert result.returncode != 0  # really absent, not just unused


def test_check_runs_and_grade_says_how_to_install(student_python, tmp_path):
    nb = nbformat.v4.new_notebook()
    test = nbformat.v4.new_code_cell("from gradschool.checks import assert_equal, report\n"
                                     "with report('one'):\n    assert_equal(1 + 1, 2)")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "one-tests",
                                 "points": 1, "locked": True}
    nb.cells.append(test)
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    check = subprocess.run([student_python, "-m", "gradschool.cli", "check", str(path)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PASS  one-tests (1 points)" in check.stdout
    grade = subprocess.run([student_python, "-m", "gradschool.cli", "grade", str(path)],
                           capture_output=True, text=True, cwd=ROOT)
    assert grade.returncode == 2 and grade.stdout == ""
    assert grade.stderr.count("\n") == 1, grade.stderr
    assert "pip install -e '.[instructor]'" in grade.stderr
