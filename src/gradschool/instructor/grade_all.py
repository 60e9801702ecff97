"""Grade a whole class: what ``gradschool grade-all`` runs.

``grade_all`` collects one notebook per student (:mod:`~gradschool.instructor.collect`), grades
them in parallel worker processes, each in its own scratch course and gradebook
(:func:`~gradschool.instructor.grade.grade_notebook`), and, in the main process only, one student
at a time, imports every result into the course's real gradebook the way ``nbgrader autograde``
would (submitted and autograded notebooks in place, scores saved by nbgrader's
``SaveAutoGrades``), so that ``nbgrader generate_feedback``, ``nbgrader export`` and formgrader
see the same grades. No two processes ever write to the same SQLite file.

Into ``out`` it writes::

    results/<student>.json   the grade report, plus student, source, sha256, graded (bool) and
                             seconds (wall time of that student's grading in the worker);
                             a student whose notebook could not be graded gets score 0 and error
    feedback/<student>.html  nbgrader's feedback: each test's points and message, no hidden code
    grades.csv               one row per student: total, max, one column per graded cell, error
    report.html, report.json the class report (:mod:`~gradschool.instructor.report`)
    extracted/, work/        the notebooks taken out of a zip, the workers' files

Resuming: a student whose result file exists for the same notebook (same sha256) is not graded
again, so a batch stopped by Ctrl-C or a kill is finished by running the same command again.
A result is written only after its gradebook import, so nothing is lost or counted twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import SaveAutoGrades
from sqlalchemy.exc import SAWarning
from tqdm import tqdm

from gradschool.cells import (
    NotebookError,
    is_test_cell,
    manual_cell_ids,
    points,
    read_notebook,
    test_cell_ids,
)
from gradschool.instructor.collect import Submission, collect
from gradschool.instructor.course import Course, CourseError
from gradschool.instructor.grade import AUTOGRADED, FEEDBACK, grade_notebook
from gradschool.instructor.report import write_report
from gradschool.instructor.status import Status


@dataclass
class Summary:
    """How a batch went: students graded now, before (resumed), not gradable; mean score."""

    graded: int
    resumed: int
    failed: int
    mean_score: float
    max_score: float
    out: Path

    def __str__(self) -> str:
        return (f"graded {self.graded + self.resumed} ({self.resumed} from an earlier run), "
                f"failed to grade {self.failed}, mean score {self.mean_score:.2f} / "
                f"{self.max_score:g}; results in {self.out}")


def grade_all(course: Course, submissions: Path, assignment: str, out: Path, *,
              workers: int = 1, pattern: str | None = None, timeout: int | None = None,
              log: Callable[[str], None] = print, sandbox: bool = True,
              anonymize: bool = False) -> Summary:
    """Grade every student's notebook in ``submissions`` (a folder or an LMS zip) against
    ``assignment`` with ``workers`` processes; write results into ``out`` (see module doc),
    then the class report (with pseudonyms if ``anonymize``).

    Raises CourseError (one line) for what the user can fix: unknown assignment, nothing to
    grade, a bad zip or pattern. A notebook that cannot be graded never stops the batch.
    """
    course.check_assignment(assignment)
    out = Path(out).resolve()
    students = collect(Path(submissions), out / "extracted", pattern, log)
    _ensure_in_gradebook(course, assignment)
    todo, resumed, failed = [], 0, 0
    for submission in students:
        digest = _sha256(submission.path)
        earlier = _read_result(out, submission.student)
        if earlier.get("sha256") != digest:
            todo.append((submission, digest))
        elif earlier["graded"]:
            resumed += 1
        else:
            failed += 1
    if len(todo) < len(students):
        log(f"{len(students) - len(todo)} students have results in {out / 'results'} "
            "for the same notebook: kept")
    max_score = _max_score(course, assignment)
    newly_failed = 0
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_set_threads,
                             initargs=(threads,)) as pool:
        futures = {
            pool.submit(_grade_one, course, s.path, assignment, timeout,
                        out / "work" / s.student, sandbox): (s, digest)
            for s, digest in todo
        }
        try:
            for future in tqdm(as_completed(futures), total=len(futures), unit="notebook",
                               desc=f"grading {assignment}", dynamic_ncols=True):
                submission, digest = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: grade it next run
                    log(f"{submission.student}: not graded, run again ({type(exc).__name__})")
                    newly_failed += 1
                    continue
                newly_failed += "error" in outcome
                _record(course, assignment, submission, digest, outcome, out, max_score)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    rows = write_grades_csv(course, assignment, out)
    if rows:
        html, _ = write_report(out, course, assignment, anonymized=anonymize)
        log(f"class report: {html}")
    scores = [row["score"] for row in rows]
    return Summary(graded=len(todo) - newly_failed, resumed=resumed, failed=failed + newly_failed,
                   mean_score=sum(scores) / len(scores) if scores else 0.0,
                   max_score=max_score, out=out)


def _set_threads(threads: int) -> None:  # in each worker, inherited by its kernels
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def _grade_one(course: Course, path: Path, assignment: str, timeout: int | None,
               work: Path, sandbox: bool = True) -> dict:
    """In a worker: grade one notebook; return {"report": ...} or {"error": one line}, with
    "seconds", the wall time this took."""
    start = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        report = grade_notebook(course, path, assignment, timeout, artifacts=work,
                                sandbox=sandbox)
        outcome = {"report": asdict(report), "work": str(work)}
    except (CourseError, NotebookError) as exc:
        outcome = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - whatever it is, this student gets a reason
        outcome = {"error": f"could not be graded ({type(exc).__name__}: {exc})"[:300]}
    return outcome | {"seconds": round(time.monotonic() - start, 1)}


def _record(course: Course, assignment: str, submission: Submission, digest: str,
            outcome: dict, out: Path, max_score: float) -> None:
    """Import one graded student into the gradebook, then write their feedback and result."""
    result = {"student": submission.student, "source": submission.source, "sha256": digest,
              "seconds": outcome.get("seconds")}
    if "error" in outcome:
        result |= {"graded": False, "error": outcome["error"], "assignment": assignment,
                   "score": 0.0, "max_score": max_score, "tests": []}
    else:
        work = Path(outcome["work"])
        import_into_gradebook(course, assignment, submission.student, submission.path,
                              work / AUTOGRADED)
        (out / "feedback").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / FEEDBACK, out / "feedback" / f"{submission.student}.html")
        result |= {"graded": True, **outcome["report"]}
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    partial = results / f"{submission.student}.json.partial"
    partial.write_text(json.dumps(result, indent=1))
    partial.replace(results / f"{submission.student}.json")  # atomic: all or nothing


def import_into_gradebook(course: Course, assignment: str, student: str, submitted: Path,
                          autograded: Path) -> None:
    """Put one student's graded notebook into the course as ``nbgrader autograde`` would."""
    name = course.source_notebook(assignment).name
    for folder, path in ((course.submitted_dir, submitted), (course.autograded_dir, autograded)):
        target = folder / student / assignment / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    resources = {"nbgrader": {"notebook": Path(name).stem, "assignment": assignment,
                              "student": student, "db_url": course.db_url}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, harmless
        with course.gradebook() as gradebook:
            gradebook.update_or_create_student(student)
            gradebook.update_or_create_submission(assignment, student)
        SaveAutoGrades().preprocess(nbformat.read(autograded, as_version=4), resources)


def _ensure_in_gradebook(course: Course, assignment: str) -> None:
    """A fresh clone has no gradebook: generate the assignment (course/ comes out the same)."""
    with course.gradebook() as gradebook:
        try:
            gradebook.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    course.generate(assignment)


def _max_score(course: Course, assignment: str) -> float:
    nb = read_notebook(course.source_notebook(assignment))
    return sum(points(c) for c in nb.cells if is_test_cell(c))


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_result(out: Path, student: str) -> dict:
    path = out / "results" / f"{student}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_grades_csv(course: Course, assignment: str, out: Path) -> list[dict]:
    """Write ``out/grades.csv`` from every result in ``out/results``; return its rows."""
    source = read_notebook(course.source_notebook(assignment))
    columns = test_cell_ids(source) + manual_cell_ids(source)
    rows = []
    for path in sorted((out / "results").glob("*.json")):
        result = json.loads(path.read_text())
        points = {t["id"]: t["score"] for t in result["tests"] if t["status"] != Status.MANUAL}
        rows.append({"student": result["student"], "score": result["score"],
                     "max_score": result["max_score"],
                     **{c: points.get(c, "") for c in columns},
                     "error": result.get("error", "")})
    with open(out / "grades.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["student", "score", "max_score", *columns, "error"])
        writer.writeheader()
        writer.writerows(rows)
    return rows
