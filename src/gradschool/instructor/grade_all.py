"""Grade a whole class: what ``gradschool grade-all`` runs.

``grade_all`` collects one notebook per student (:mod:`~gradschool.instructor.collect`), grades
them in parallel (worker processes here, or Dask workers), each worker in its own scratch course
and gradebook, made once (:class:`~gradschool.instructor.grade.Grader`), and, in the main process
only, one student
at a time, imports every result into the course's real gradebook the way ``nbgrader autograde``
would (submitted and autograded notebooks in place, scores saved by nbgrader's
``SaveAutoGrades``), so that ``nbgrader generate_feedback``, ``nbgrader export`` and formgrader
see the same grades. No two processes ever write to the same SQLite file. Every student found,
graded or not, is in the gradebook (with the name the LMS gave), so that an export lists them all.
Grading never writes ``course/``: an assignment new to the gradebook is generated in a scratch
folder. On a machine with GPUs the workers are bounded by GPU memory and spread over the GPUs,
each kernel with its share (:mod:`~gradschool.instructor.gpus`).

Two engines grade (:data:`Engine`): worker processes of this machine (the default), or a Dask
cluster (``scheduler``, :mod:`~gradschool.instructor.cluster`). Both run the same function per
notebook (:func:`_grade_one`), and one loop, here, records what they return: they grade and
record alike.

Into ``out`` it writes::

    results/<student>.json   the grade report, plus student, name, late, source, sha256, graded
                             (bool), also_uploaded and seconds (wall time of that student's
                             grading in the worker); a student whose notebook could not be
                             graded, or who uploaded none, gets score 0 and error
    feedback/<student>.html  nbgrader's feedback: each test's points and message, no hidden code
    grades.csv               one row per student: autograded total and maximum, the written
                             answers' maximum, one column per graded cell, the error if any
    report.html, report.json the class report (:mod:`~gradschool.instructor.report`)
    extracted/, work/        the notebooks taken out of a zip, the graded notebooks and feedback
                             pages (a cluster's workers return them to this folder)

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
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import SaveAutoGrades
from sqlalchemy.exc import SAWarning
from tqdm import tqdm

from gradschool.cells import (
    NotebookError,
    is_manual_cell,
    is_test_cell,
    manual_cell_ids,
    points,
    read_notebook,
    test_cell_ids,
)
from gradschool.instructor.collect import Submission, collect
from gradschool.instructor.course import Course, CourseError
from gradschool.instructor.gpus import plan, visible_gpus
from gradschool.instructor.grade import AUTOGRADED, FEEDBACK, Grader, graded_cell_ids
from gradschool.instructor.report import write_report
from gradschool.instructor.status import Status

FAILED_SHARE = 0.5
"""``grade-all`` exits 1 when more than this share of the notebooks failed to grade."""

LISTED = 20
"""How many students not graded the summary names, one line each."""


@dataclass
class Summary:
    """How a batch went, over every result in ``out``: students graded (now or before),
    notebooks not gradable, students without a notebook; mean scores."""

    graded: int
    resumed: int
    failed: list[tuple[str, str]]
    """(student, why) for each notebook that could not be graded."""
    missing: list[tuple[str, str]]
    """(student, why) for each student without a notebook to grade."""
    mean_graded: float
    mean_all: float
    max_score: float
    out: Path

    @property
    def notebooks(self) -> int:
        """Students with a notebook to grade, graded or not."""
        return self.graded + len(self.failed)

    @property
    def too_many_failures(self) -> bool:
        """More than :data:`FAILED_SHARE` of the notebooks failed to grade."""
        return len(self.failed) > FAILED_SHARE * self.notebooks

    def __str__(self) -> str:
        not_graded = len(self.failed) + len(self.missing)
        lines = [f"graded {self.graded} ({self.resumed} from an earlier run), failed to grade "
                 f"{len(self.failed)}, without a notebook {len(self.missing)}"]
        if self.graded:
            mean = (f"mean {self.mean_graded:.2f} / {self.max_score:g} over the {self.graded} "
                    "graded")
            if not_graded:
                mean += f" ({self.mean_all:.2f} counting the {not_graded} not graded as 0)"
            lines.append(mean)
        reasons = self.failed + self.missing
        lines += [f"  {student}: {why}" for student, why in reasons[:LISTED]]
        if len(reasons) > LISTED:
            lines.append(f"  and {len(reasons) - LISTED} more (see grades.csv)")
        lines.append(f"results in {self.out}")
        return "\n".join(lines)


def grade_all(course: Course, submissions: Path, assignment: str, out: Path, *,
              workers: int = 1, pattern: str | None = None, timeout: int | None = None,
              log: Callable[[str], None] = print, sandbox: bool = True,
              progress: bool | None = None, anonymize: bool = False,
              scheduler: str | None = None) -> Summary:
    """Grade every student's notebook in ``submissions`` (a folder or an LMS zip) against
    ``assignment`` with ``workers`` processes, or on the Dask cluster ``scheduler``
    (``tcp://HOST:PORT`` or ``local:N``, see :mod:`~gradschool.instructor.cluster`); write
    results into ``out`` (see module doc), then the class report (with pseudonyms if
    ``anonymize``).

    ``progress`` (default: when stderr is a terminal) shows a progress bar; without it, ``log``
    gets one line per student graded. Raises CourseError (one line) for what the user can fix:
    unknown assignment, nothing to grade, a bad zip or pattern. A notebook that cannot be
    graded never stops the batch.
    """
    course.check_assignment(assignment)
    out = Path(out).resolve()
    source = read_notebook(course.source_notebook(assignment))
    students = collect(Path(submissions), out / "extracted", pattern, log,
                       assignment=assignment, graded_ids=graded_cell_ids(source))
    _ensure_in_gradebook(course, assignment)
    max_score = sum(points(c) for c in source.cells if is_test_cell(c))
    todo, kept, resumed, died = [], 0, 0, []
    for submission in students:
        if submission.path is None:
            _record(course, assignment, submission, "", {"error": submission.error}, out,
                    max_score)
            continue
        digest = _sha256(submission.path)
        earlier = _read_result(out, submission.student)
        if earlier.get("sha256") == digest:
            kept += 1
            resumed += earlier["graded"]
        else:
            todo.append((submission, digest))
    if kept:
        log(f"{kept} students have results in {out / 'results'} for the same notebook: kept")
    if progress is None:
        progress = sys.stderr.isatty()
    jobs = [Job(s, digest, out / "work" / s.student) for s, digest in todo]
    engine: Engine
    if scheduler is None:
        engine = partial(grade_locally, workers=workers)
    else:
        from gradschool.instructor.cluster import grade_on_cluster  # the cluster extra

        engine = partial(grade_on_cluster, scheduler=scheduler)
    outcomes = engine(course, assignment, jobs, timeout=timeout, sandbox=sandbox, log=log)
    with tqdm(total=len(jobs), unit="notebook", desc=f"grading {assignment}",
              dynamic_ncols=True, disable=not (progress and jobs)) as bar, closing(outcomes):
        for job, outcome in outcomes:
            if "died" in outcome:  # not recorded: graded by the next run
                outcome = {"died": f"not graded, run again ({outcome['died']})"}
                died.append((job.submission.student, outcome["died"]))
            else:
                _record(course, assignment, job.submission, job.digest, outcome, out, max_score)
            bar.update()
            if not progress or "died" in outcome:
                log(f"{job.submission.student}: {_outcome_line(outcome)}")
    rows = write_grades_csv(course, assignment, out)
    if rows:
        html, _ = write_report(out, course, assignment, anonymized=anonymize)
        log(f"class report: {html}")
    return _summary(rows, resumed, died, max_score, out)


def _outcome_line(outcome: dict) -> str:
    if "report" in outcome:
        return f"{outcome['report']['score']:g} / {outcome['report']['max_score']:g}"
    return outcome.get("died") or f"not graded: {outcome['error']}"


def _summary(rows: list[dict], resumed: int, died: list[tuple[str, str]], max_score: float,
             out: Path) -> Summary:
    """The batch's :class:`Summary` from the rows of grades.csv and the students whose worker
    died (not in the rows: they have no result yet)."""
    graded = [r for r in rows if not r["error"]]
    failed = [(r["student"], r["error"]) for r in rows if r["error"] and r["source"]] + died
    missing = [(r["student"], r["error"]) for r in rows if r["error"] and not r["source"]]
    scores = [r["autograded_score"] for r in graded]
    return Summary(
        graded=len(graded), resumed=resumed, failed=failed, missing=missing,
        mean_graded=sum(scores) / len(scores) if scores else 0.0,
        mean_all=sum(scores) / (len(rows) + len(died)) if rows or died else 0.0,
        max_score=max_score, out=out)


@dataclass(frozen=True)
class Job:
    """One notebook to grade: the student's submission, its sha256, and ``work``, the folder on
    this machine that receives its graded notebook and feedback page (``out/work/<student>``)."""

    submission: Submission
    digest: str
    work: Path


Engine = Callable[..., Iterator[tuple[Job, dict]]]
"""What grades a batch: ``engine(course, assignment, jobs, *, timeout, sandbox, log)`` yields
(job, outcome) as each job completes, in any order: :func:`_grade_one`'s outcome (its files in
``job.work``), or ``{"died": why}`` when the job could not be graded this time (graded by the
next run). Closing it, or Ctrl-C while it waits, stops its workers. Two engines: the local
process pool (:func:`grade_locally`) and a Dask cluster
(:func:`~gradschool.instructor.cluster.grade_on_cluster`)."""


def grade_locally(course: Course, assignment: str, jobs: list[Job], *, timeout: int | None,
                  sandbox: bool, log: Callable[[str], None],
                  workers: int) -> Iterator[tuple[Job, dict]]:
    """The engine of one machine: a pool of ``workers`` processes (bounded and spread over the
    GPUs, if any), each notebook graded by :func:`_grade_one`."""
    gpus = plan(workers, visible_gpus())
    if gpus.note:
        log(gpus.note)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    threads = max(1, (os.cpu_count() or 1) // gpus.workers)
    environments = context.Queue()
    for environment in gpus.environments:
        environments.put(environment)
    with ProcessPoolExecutor(gpus.workers, mp_context=context, initializer=_start_worker,
                             initargs=(threads, environments)) as pool:
        futures = {pool.submit(_grade_one, course, job.submission.path, assignment, timeout,
                               job.work, sandbox): job for job in jobs}
        try:
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: grade it next run
                    outcome = {"died": type(exc).__name__}
                yield futures[future], outcome
        except BaseException:  # Ctrl-C, or the batch loop stopped: end the workers now
            _stop_workers(pool)
            raise


def _start_worker(threads: int, environments) -> None:
    """In each worker: its kernels' thread count and its GPU environment (one of
    ``environments``, a queue of dicts); Ctrl-C is the main process's to handle (it stops the
    workers), so that an interrupt prints no worker tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.update(environments.get())


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (their sandboxes die with them)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.terminate()


_graders = threading.local()
"""This thread's :class:`Grader` and what it was made for, ``.kept = (key, grader)`` (see
:func:`_grader_for`): one per pool worker process, one per thread of a Dask worker."""


def _grader_for(course: Course, assignment: str, timeout: int | None, sandbox: bool) -> Grader:
    """This thread's Grader for ``assignment`` with these settings: made for the first
    notebook, kept for the next ones, so that its scratch course is generated once per worker;
    another assignment, timeout or sandbox setting, or a changed solution notebook, makes a new
    one (and deletes the old)."""
    course.check_assignment(assignment)
    source = course.source_notebook(assignment).stat()
    key = (str(course.root), str(course.source_dir), assignment, source.st_mtime_ns,
           source.st_size, timeout, sandbox)
    kept = getattr(_graders, "kept", None)
    if kept is None or kept[0] != key:
        if kept is not None:
            _graders.kept = None
            kept[1].close()
        _graders.kept = kept = (key, Grader(course, assignment, timeout, sandbox))
    return kept[1]


def _grade_one(course: Course, path: Path, assignment: str, timeout: int | None,
               work: Path, sandbox: bool = True) -> dict:
    """In a worker: grade one notebook (by this process's :class:`Grader`); return
    {"report": ..., "work": folder of its autograded notebook and feedback} or {"error": one
    line}, with "seconds", the wall time this took."""
    start = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        report = _grader_for(course, assignment, timeout, sandbox).grade(path, artifacts=work)
        outcome = {"report": asdict(report), "work": str(work)}
    except (CourseError, NotebookError) as exc:
        outcome = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - whatever it is, this student gets a reason
        outcome = {"error": f"could not be graded ({type(exc).__name__}: {exc})"[:300]}
    return outcome | {"seconds": round(time.monotonic() - start, 1)}


def _record(course: Course, assignment: str, submission: Submission, digest: str,
            outcome: dict, out: Path, max_score: float) -> None:
    """Import one student into the gradebook (their graded notebook, if any), then write their
    feedback and result."""
    result = {"student": submission.student, "name": submission.name,
              "late": submission.late, "source": submission.source, "sha256": digest,
              "also_uploaded": [asdict(other) for other in submission.also_uploaded],
              "seconds": outcome.get("seconds")}
    add_student(course, submission.student, submission.name)
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


def add_student(course: Course, student: str, name: str = "") -> None:
    """Put ``student`` in the course's gradebook; ``name`` (``Ann Lee``: first names, then the
    last word as the last name) when given."""
    first, _, last = name.rpartition(" ")
    names = {k: v for k, v in (("first_name", first), ("last_name", last)) if v}
    with warnings.catch_warnings(), course.gradebook() as gradebook:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, harmless
        gradebook.update_or_create_student(student, **names)


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
    """A fresh clone has no gradebook: record the assignment in it, generated in a scratch
    folder so that ``course/`` is never written by grading."""
    with course.gradebook() as gradebook:
        try:
            gradebook.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory(prefix="gradschool-record-") as tmp:
        course.scratch(Path(tmp), db_url=course.db_url).generate(assignment)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_result(out: Path, student: str) -> dict:
    path = out / "results" / f"{student}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_grades_csv(course: Course, assignment: str, out: Path) -> list[dict]:
    """Write ``out/grades.csv`` from every result in ``out/results``; return its rows.

    Columns: student, name, late (yes/no), autograded_score and autograded_max (the test
    cells: what ``grade-all`` grades), manual_max (the written answers' points, graded by a
    person in the formgrader, not included here), one column per graded cell (written answers
    empty), source (the notebook graded), also_uploaded, error.
    """
    source = read_notebook(course.source_notebook(assignment))
    columns = test_cell_ids(source) + manual_cell_ids(source)
    manual_max = sum(points(c) for c in source.cells if is_manual_cell(c))
    rows = []
    for path in sorted((out / "results").glob("*.json")):
        result = json.loads(path.read_text())
        scores = {t["id"]: t["score"] for t in result["tests"] if t["status"] != Status.MANUAL}
        also = "; ".join(f"{o['file']} ({o['reason']})" for o in result.get("also_uploaded", []))
        rows.append({"student": result["student"], "name": result.get("name", ""),
                     "late": "yes" if result.get("late") else "no",
                     "autograded_score": result["score"], "autograded_max": result["max_score"],
                     "manual_max": manual_max, **{c: scores.get(c, "") for c in columns},
                     "source": result["source"], "also_uploaded": also,
                     "error": result.get("error", "")})
    header = ["student", "name", "late", "autograded_score", "autograded_max", "manual_max",
              *columns, "source", "also_uploaded", "error"]
    with open(out / "grades.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, header)
        writer.writeheader()
        writer.writerows(rows)
    return rows
