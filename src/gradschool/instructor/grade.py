"""Grade notebooks with nbgrader, in a scratch course, and report them as plain data.

``grade_notebook`` is what ``gradschool grade`` runs. A :class:`Grader` generates the assignment
into a scratch gradebook, puts the file where nbgrader expects a submission, runs ``nbgrader
autograde`` and reads the scores back from that gradebook; it grades notebook after notebook in
the same scratch course (what a ``grade-all`` worker does). The course's real gradebook is never
touched.

Report contract (``GradeReport.to_json()``)::

    {"assignment": str, "score": float, "max_score": float,
     "tests": [{"id": grade_id, "score": float, "max_score": float,
                "status": str, "message": str}],
     "sandbox": bool, "limits": str, "devices": [str], "notes": [str]}

``score`` and ``max_score`` cover the autograded test cells. ``status`` is a
:class:`~gradschool.instructor.status.Status`: ``passed``, ``failed``, ``timeout``,
``kernel_died``, ``out_of_memory``, ``restored``, ``grader_error``, or ``manual`` for the written
answers, which come last, with score 0 and their points as ``max_score``, outside the totals.
``message`` is empty for a passed test and says what failed otherwise. ``sandbox`` is False when
the notebook was graded with ``--no-sandbox``; ``limits`` says which time budgets applied (see
:mod:`gradschool.instructor.budgets`); ``devices`` where the hidden checks ran the student's code
(``["cpu"]``, or ``["cpu", "cuda"]`` when the grading kernel could use a GPU); ``notes`` what the
grader wants the instructor to know about this grading, e.g. why CUDA was not used.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from gradschool.cells import (
    VERDICT,
    grade_id,
    grade_ids,
    is_solution_cell,
    is_test_cell,
    manual_cell_ids,
    read_notebook,
    test_cell_ids,
)
from gradschool.instructor.course import Course, CourseError, possessive
from gradschool.instructor.profiling import step
from gradschool.instructor.status import Status

STUDENT = "submission"
AUTOGRADED, FEEDBACK = "autograded.ipynb", "feedback.html"


@dataclass
class TestResult:
    id: str
    score: float
    max_score: float
    status: str
    message: str = ""


@dataclass
class GradeReport:
    assignment: str
    score: float
    max_score: float
    tests: list[TestResult] = field(default_factory=list)
    sandbox: bool = True
    limits: str = ""
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def to_table(self) -> str:
        width = max([len(t.id) for t in self.tests] + [4])
        lines = [f"{'test':<{width}}  {'points':>9}  status  message"]
        for t in self.tests:
            points = f"{t.score:g}/{t.max_score:g}"
            lines.append(f"{t.id:<{width}}  {points:>9}  {t.status:<6}  {t.message}".rstrip())
        lines.append(f"{self.assignment}: {self.score:g} / {self.max_score:g} points")
        lines.append(f"time limits: {self.limits}")
        lines.append(f"hidden checks ran on: {', '.join(self.devices)}")
        lines += [f"note: {note}" for note in self.notes]
        if not self.sandbox:
            lines.append("WARNING: graded without the sandbox (--no-sandbox)")
        return "\n".join(lines)


def infer_assignment(course: Course, path: Path, nb: nbformat.NotebookNode) -> str:
    """The assignment a notebook belongs to: its file name if that is an assignment id, else the
    assignment sharing the most nbgrader cell ids with it."""
    if path.stem in course.assignments():
        return path.stem
    matches = _closest(grade_ids(nb), lambda a: grade_ids(_source(course, a)),
                       course.assignments())
    if len(matches) != 1:
        raise CourseError(f"{path}: cannot tell which assignment this is; pass --assignment ID")
    return matches[0]


def graded_cell_ids(nb: nbformat.NotebookNode) -> set[str]:
    """The grade_ids of the cells ``nb`` is graded on: its solution and test code cells. The
    course's assignments share none (their setup, text and some written answers they may)."""
    return {grade_id(c) for c in nb.cells if is_test_cell(c) or is_solution_cell(c)}


def check_belongs(course: Course, path: Path, nb: nbformat.NotebookNode, assignment: str) -> None:
    """Raise CourseError (one line, naming the likely assignment) when ``nb`` carries none of
    ``assignment``'s graded cells (:func:`graded_cell_ids`): nbgrader could not grade it, and
    would say why only with a KeyError. A notebook missing some, even every test cell, is
    graded: nbgrader puts them back."""
    ids = grade_ids(nb)

    def graded(a: str) -> set[str]:
        return graded_cell_ids(_source(course, a))

    if ids & graded(assignment):
        return
    likely = _closest(ids, graded, [a for a in course.assignments() if a != assignment])
    if likely:
        hint = "; it looks like " + " or ".join(likely)
    elif ids:
        hint = ", nor any other assignment's"
    else:
        hint = "; it has no nbgrader cells: a new notebook instead of the released one?"
    raise CourseError(f"{path.name} has none of {possessive(assignment)} graded cells{hint}")


def _source(course: Course, assignment: str) -> nbformat.NotebookNode:
    return read_notebook(course.source_notebook(assignment))


def _closest(ids: set[str], cells: Callable[[str], set[str]],
             assignments: list[str]) -> list[str]:
    """The assignments sharing the most ``cells(assignment)`` ids with ``ids`` (none if 0)."""
    overlap = {a: len(ids & cells(a)) for a in assignments}
    best = max(overlap.values(), default=0)
    return [a for a, n in overlap.items() if n == best] if best else []


def _verdicts(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """grade_id -> {"status", "message"} written by the grader into each test cell."""
    return {grade_id(c): c.metadata[VERDICT] for c in nb.cells
            if VERDICT in c.metadata and grade_id(c) is not None}


def grade_notebook(
    course: Course, path: Path, assignment: str | None = None, timeout: int | None = None,
    artifacts: Path | None = None, sandbox: bool = True,
) -> GradeReport:
    """Autograde the notebook at ``path`` against ``assignment`` (inferred when None), allowing
    ``timeout`` seconds per cell and per hidden-check probe (default: the course's config).

    With ``artifacts`` (a folder), also write there the autograded notebook
    (``autograded.ipynb``, what nbgrader's gradebook import reads) and nbgrader's feedback for
    the student (``feedback.html``). ``sandbox=False`` runs the kernel as the grader (unsafe;
    the report says so). To grade many notebooks of one assignment, use a :class:`Grader`.

    Raises NotebookError (one line) when the file is missing or not a notebook, CourseError
    when its assignment is unknown or cannot be recognised, or the notebook has none of the
    assignment's graded cells (see :func:`check_belongs`).
    """
    path = Path(path)
    with step("read the submission"):  # a wrong notebook fails before the scratch course
        nb = read_notebook(path)
        assignment = assignment or infer_assignment(course, path, nb)
        course.check_assignment(assignment)
        check_belongs(course, path, nb, assignment)
    with Grader(course, assignment, timeout, sandbox) as grader:
        return grader.grade(path, artifacts)


class Grader:
    """Grade notebooks of one assignment, one after another, each as ``nbgrader autograde``
    would, in a scratch course of their own (the course's gradebook is never touched).

    The scratch course is made once: its gradebook with the assignment generated
    (``nbgrader generate_assignment``, a second or more). Before each notebook, the folders
    of the previous one (``submitted/``, ``autograded/``, ``feedback/``) are deleted and the
    gradebook is copied back from the state right after the set-up, so that every notebook is
    graded exactly as the first one, and nothing of one submission is seen by the next. The
    kernel of each notebook is a new one (in a new sandbox). Use as a context manager, or
    :meth:`close` it: that deletes the scratch course.

    ``timeout`` (seconds per cell and per probe, flat budgets) and ``sandbox`` as for
    :func:`grade_notebook`. Raises CourseError for an unknown assignment, or when nbgrader
    cannot generate it.
    """

    def __init__(self, course: Course, assignment: str, timeout: int | None = None,
                 sandbox: bool = True):
        course.check_assignment(assignment)
        self.course, self.assignment = course, assignment
        self._folder = tempfile.TemporaryDirectory(prefix="gradschool-grader-")
        try:
            self.scratch = course.scratch(Path(self._folder.name))
            settings = self.scratch.config.GradeOutsideTheKernel
            if timeout:
                settings.timeout, settings.calibrate = timeout, False
            settings.sandbox = sandbox
            source = read_notebook(course.source_notebook(assignment))
            self.tests, self.answers = test_cell_ids(source), manual_cell_ids(source)
            with step("nbgrader generate_assignment"):
                self.scratch.generate(assignment)
            self._gradebook = Path(self.scratch.db_url.removeprefix("sqlite:///"))
            self._pristine = self._gradebook.with_suffix(".generated")
            shutil.copyfile(self._gradebook, self._pristine)
        except BaseException:
            self._folder.cleanup()
            raise

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Delete the scratch course."""
        self._folder.cleanup()

    def _clear(self) -> None:
        """Back to the state right after the set-up: no submission's file or grade."""
        for folder in (self.scratch.submitted_dir, self.scratch.autograded_dir,
                       self.scratch.feedback_dir):
            shutil.rmtree(folder, ignore_errors=True)
        shutil.copyfile(self._pristine, self._gradebook)

    def grade(self, path: Path, artifacts: Path | None = None) -> GradeReport:
        """Grade the notebook at ``path``; with ``artifacts``, write ``autograded.ipynb`` and
        ``feedback.html`` there (see :func:`grade_notebook`, which raises the same errors)."""
        path = Path(path)
        assignment, scratch = self.assignment, self.scratch
        with step("read the submission"):
            check_belongs(self.course, path, read_notebook(path), assignment)
        self._clear()
        submission = scratch.submitted_dir / STUDENT / assignment
        submission.mkdir(parents=True)
        shutil.copyfile(path, submission / f"{assignment}.ipynb")
        with step("nbgrader autograde"):
            scratch.autograde(assignment, STUDENT, label=path.name)
        with step("read the grades"):
            graded = scratch.autograded_dir / STUDENT / assignment / f"{assignment}.ipynb"
            graded_nb = nbformat.read(graded, as_version=4)
            with warnings.catch_warnings(), Gradebook(scratch.db_url) as gradebook:
                warnings.simplefilter("ignore")  # SQLAlchemy's SAWarnings from inside nbgrader
                submitted = gradebook.find_submission_notebook(assignment, assignment, STUDENT)
                scores = {g.name: (float(g.score), float(g.max_score)) for g in submitted.grades}
        if artifacts:
            with step("nbgrader generate_feedback"):
                scratch.generate_feedback(assignment, STUDENT, label=path.name)
            feedback = scratch.feedback_dir / STUDENT / assignment / f"{assignment}.html"
            shutil.copyfile(graded, Path(artifacts) / AUTOGRADED)
            shutil.copyfile(feedback, Path(artifacts) / FEEDBACK)
        return self._report(graded_nb, scores)

    def _report(self, graded_nb: nbformat.NotebookNode,
                scores: dict[str, tuple[float, float]]) -> GradeReport:
        """The report from the autograded notebook (verdicts, grading notes) and the scores
        nbgrader saved (grade_id -> (score, max_score))."""
        verdicts = _verdicts(graded_nb)
        grading = graded_nb.metadata.get("gradschool", {})
        results = []
        for test_id in self.tests:
            score, max_score = scores[test_id]
            verdict = verdicts.get(test_id, {"status": Status.FAILED,
                                             "message": "the test did not run"})
            results.append(TestResult(test_id, score, max_score, verdict["status"],
                                      verdict["message"]))
        report = GradeReport(
            self.assignment, sum(r.score for r in results), sum(r.max_score for r in results),
            results, sandbox=grading.get("sandbox", True), limits=grading.get("limits", ""),
            devices=grading.get("devices", ["cpu"]), notes=grading.get("notes", []),
        )
        for answer_id in self.answers:
            report.tests.append(TestResult(answer_id, 0.0, scores[answer_id][1], Status.MANUAL,
                                           "graded by a person"))
        return report
