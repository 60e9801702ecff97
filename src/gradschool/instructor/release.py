"""Release: generate the student notebooks in ``course/`` from the instructor's ``solutions/``.

The work is nbgrader's ``generate_assignment`` (configured in the repository's
``nbgrader_config.py``). This module adds a check that the committed ``course/`` is exactly what
``solutions/`` generates, and :func:`validation_copy`, the copy of a released notebook that CI
runs to validate the release.

A release also writes, into each released notebook's metadata, what each test forbids
(``metadata.gradschool_delegation``, from ``autograder/checks/<id>.py``): ``gradschool check``
reads it to tell the student, before they submit, what the grader will read as delegation.
"""

from __future__ import annotations

import ast
import copy
import filecmp
import tempfile
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

from gradschool.cells import is_solution
from gradschool.delegation import METADATA_KEY
from gradschool.instructor.course import Course, CourseError

MAY_RAISE_TAG = "raises-exception"


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Return (names the code binds, names the code reads) for a parsed cell."""
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound, read


def validation_copy(nb):
    """A copy of the released notebook ``nb`` in which the cells that may raise until the student
    has written the code are tagged ``raises-exception``; ``nb`` itself is not changed.

    A cell may raise when it is a solution cell (the stub raises ``NotImplementedError``) or
    reads a name bound by a cell that may raise (directly or through other such cells). Running
    the copy with nbclient, which lets a tagged cell raise, validates the release: every other
    cell must run clean. The released notebook carries no tag, so that a student's "Run All"
    stops at the first exercise not done yet instead of running past it.
    """
    tagged = copy.deepcopy(nb)
    transform = TransformerManager().transform_cell
    tainted: set[str] = set()
    for cell in tagged.cells:
        if cell.cell_type != "code":
            continue
        bound, read = _names(ast.parse(transform(cell.source)))
        if is_solution(cell) or read & tainted:
            tainted |= bound
            tags = cell.metadata.setdefault("tags", [])
            if MAY_RAISE_TAG not in tags:
                tags.append(MAY_RAISE_TAG)
    return tagged


def declare_delegation(course: Course, assignment_id: str, notebook: Path) -> None:
    """Write the forbidden entries of each test of ``assignment_id`` (its hidden checks) into the
    released ``notebook``'s metadata, or remove them when there are none."""
    from gradschool.instructor.hidden_checks import load_hidden_checks  # imports torch: lazily

    checks = Path(course.config.GradeOutsideTheKernel.checks_directory) / f"{assignment_id}.py"
    declarations = load_hidden_checks(checks).declarations() if checks.is_file() else {}
    nb = nbformat.read(notebook, as_version=4)
    if declarations:
        nb.metadata[METADATA_KEY] = declarations
    else:
        nb.metadata.pop(METADATA_KEY, None)
    nbformat.write(nb, notebook)


def release(course: Course, assignment_ids: list[str]) -> list[Path]:
    """Regenerate ``course/<id>/`` from ``solutions/<id>/`` for each id; return the notebooks."""
    for assignment_id in assignment_ids:
        course.generate(assignment_id)
        declare_delegation(course, assignment_id, course.release_notebook(assignment_id))
    return [course.release_notebook(a) for a in assignment_ids]


CACHES = [".ipynb_checkpoints", "__pycache__"]
"""Folders JupyterLab and Python leave beside notebooks: git-ignored, never flagged."""


def release_differences(course: Course, assignment_ids: list[str]) -> list[str]:
    """Generate each release in a scratch folder and list how ``course/`` differs from it.

    Returns one line per differing file, e.g. ``course/01-x/01-x.ipynb differs from what
    solutions/01-x generates``, and one per stray entry of ``course/`` that belongs to no
    assignment (``course/gradebook.db``, left by nbgrader run from ``course/``); an empty list
    when ``course/`` is up to date. Nothing in the repository (files or gradebook) is touched.
    """
    problems = _strays(course)
    with tempfile.TemporaryDirectory(prefix="gradschool-release-") as tmp:
        scratch = course.scratch(Path(tmp))
        for assignment_id in assignment_ids:
            scratch.generate(assignment_id)
            declare_delegation(course, assignment_id, scratch.release_notebook(assignment_id))
            expected = scratch.release_dir / assignment_id
            committed = course.release_dir / assignment_id
            problems += _compare(expected, committed, course.relative(committed), assignment_id)
    return problems


def _strays(course: Course) -> list[str]:
    """One line per entry of ``course/`` that is no assignment's release folder."""
    if not course.release_dir.is_dir():
        return []
    assignments = set(course.assignments())
    return [f"{course.relative(entry)} is not generated by the release: delete it"
            for entry in sorted(course.release_dir.iterdir())
            if entry.name not in CACHES and not (entry.is_dir() and entry.name in assignments)]


def _compare(expected: Path, committed: Path, shown: str, assignment_id: str) -> list[str]:
    if not committed.is_dir():
        return [f"{shown}/ is missing: run `gradschool release {assignment_id}`"]
    cmp = filecmp.dircmp(expected, committed, ignore=filecmp.DEFAULT_IGNORES + CACHES)
    lines = []
    stack = [(cmp, "")]
    while stack:
        node, prefix = stack.pop()
        lines += [f"{shown}/{prefix}{f} is missing" for f in node.left_only]
        lines += [f"{shown}/{prefix}{f} is not generated by the release" for f in node.right_only]
        for f in node.common_files:
            if (expected / prefix / f).read_bytes() != (committed / prefix / f).read_bytes():
                lines.append(
                    f"{shown}/{prefix}{f} differs from what solutions/{assignment_id} "
                    f"generates: run `gradschool release {assignment_id}`"
                )
        stack += [(sub, f"{prefix}{name}/") for name, sub in node.subdirs.items()]
    return lines


__all__ = ["CourseError", "declare_delegation", "release", "release_differences",
           "validation_copy"]
