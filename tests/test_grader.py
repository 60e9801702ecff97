"""A grade-all worker's Grader: one scratch course for many notebooks, each graded as if it were
the first (the same report as a fresh scratch course), nothing of one submission seen by the
next (its files, its gradebook rows); the worker keeps one Grader per assignment and settings."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import nbformat
import pytest
from kinds.course import ASSIGNMENT, make_course, notebook
from nbgrader.api import Gradebook

from gradschool.instructor import grade_all
from gradschool.instructor.course import Course
from gradschool.instructor.grade import STUDENT, Grader, grade_notebook

WRONG_SOFTMAX = {"softmax": "def softmax(x, dim=-1):\n    return x\n"}  # 2 of 12 points lost
#: A cell of submission A leaves a file in its working folder; B's looks for it.
WRITE = "open('left-by-a.txt', 'w').write('A')\nprint('wrote it')"
LOOK = "import os\nprint('seen' if os.path.exists('left-by-a.txt') else 'absent')"


def _submission(path: Path, code: dict | None, extra: str) -> Path:
    nb = notebook(code)
    nb.cells.append(nbformat.v4.new_code_cell(extra))
    nbformat.write(nb, path)
    return path


def _printed(autograded: Path, source: str) -> str:
    nb = nbformat.read(autograded, as_version=4)
    cell = next(c for c in nb.cells if c.source == source)
    return "".join(o.get("text", "") for o in cell.outputs).strip()


def test_a_reused_grader_grades_as_a_fresh_one_and_keeps_nothing(tmp_path):
    course = Course.at(make_course(tmp_path / "course"))
    a = _submission(tmp_path / "a.ipynb", None, WRITE)
    b = _submission(tmp_path / "b.ipynb", WRONG_SOFTMAX, LOOK)
    fresh = {path: grade_notebook(course, path, ASSIGNMENT, timeout=20, sandbox=False)
             for path in (a, b)}
    assert (fresh[a].score, fresh[b].score) == (12, 10)
    with Grader(course, ASSIGNMENT, timeout=20, sandbox=False) as grader:
        for i, path in enumerate((a, b, a)):
            work = tmp_path / f"work-{i}"
            work.mkdir()
            assert grader.grade(path, artifacts=work) == fresh[path]
            if path == b:  # A's working folder (the kernel's cwd without a sandbox) is gone
                assert _printed(work / grade_all.AUTOGRADED, LOOK) == "absent"
        with warnings.catch_warnings(), Gradebook(grader.scratch.db_url) as gradebook:
            warnings.simplefilter("ignore")  # SQLAlchemy's, from inside nbgrader
            assert [x.name for x in gradebook.assignments] == [ASSIGNMENT]
            assert [s.id for s in gradebook.students] == [STUDENT]
            submissions = gradebook.assignment_submissions(ASSIGNMENT)
            assert [s.score for s in submissions] == [12]  # the last notebook's, alone
        scratch = Path(grader.scratch.directory.root)
        assert scratch.is_dir()
    assert not scratch.exists()


class _Recorded:
    """Stands in for Grader: records what was made and closed."""

    made: list[tuple] = []
    closed: list[tuple] = []

    def __init__(self, course, assignment, timeout, sandbox):
        self.args = (assignment, timeout, sandbox)
        self.made.append(self.args)

    def close(self):
        self.closed.append(self.args)


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setattr(grade_all, "Grader", _Recorded)
    monkeypatch.setattr(grade_all, "_graders", threading.local())
    _Recorded.made, _Recorded.closed = [], []
    return _Recorded


def test_a_worker_keeps_its_grader_until_the_assignment_or_settings_change(tmp_path,
                                                                           recorded):
    course = Course.at(make_course(tmp_path / "course"))
    first = grade_all._grader_for(course, ASSIGNMENT, None, True)
    assert grade_all._grader_for(course, ASSIGNMENT, None, True) is first
    other = grade_all._grader_for(course, ASSIGNMENT, 20, True)
    assert other is not first and recorded.closed == [(ASSIGNMENT, None, True)]
    source = course.source_notebook(ASSIGNMENT)
    source.write_text(source.read_text() + "\n")  # the solution changed: generate it again
    assert grade_all._grader_for(course, ASSIGNMENT, 20, True) is not other
    assert recorded.made == [(ASSIGNMENT, None, True), (ASSIGNMENT, 20, True),
                             (ASSIGNMENT, 20, True)]
