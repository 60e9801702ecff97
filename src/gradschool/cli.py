"""The ``gradschool`` command: release the course and grade notebooks.

    gradschool release [ID ...]          regenerate course/<id>/ from solutions/<id>/
    gradschool release --check [ID ...]  exit 1, naming the notebooks, if course/ is out of date
    gradschool release --timings [ID ...]  run the solutions, record each cell's time (budgets)
    gradschool grade PATH [--assignment ID] [--json] [--timeout S] [--no-sandbox]
    gradschool grade-all SUBMISSIONS --assignment ID [--workers N | --scheduler ADDRESS]
                         [--out DIR] [--pattern RE] [--timeout S] [--no-sandbox] [--anonymize]
    gradschool report OUT [--assignment ID] [--anonymize]
                                         rebuild OUT/report.html and report.json from OUT/results
    gradschool feedback ID [--student S]  nbgrader generate_feedback, into autograder/feedback/
    gradschool export [--to FILE]        nbgrader export, into autograder/grades/grades.csv
    gradschool gpu-check [--out DIR] [--only ID ...] [--quick] [--jobs N]
                                         on a CUDA machine: run, grade and time the course on
                                         the GPU; exit 3 (one line on stderr) without CUDA
    gradschool check NOTEBOOK            (students) run the notebook, report its visible tests

The instructor commands run anywhere inside the course repository: they find its root (where
``nbgrader_config.py`` is) from the current folder upwards. check runs anywhere. Problems a user
can fix (a missing file, an unknown assignment, the instructor tools not installed) end with one
line on stderr and exit status 2; grade-all exits 1 when more than half of the notebooks failed
to grade; gpu-check exits 0 when every check passed, 1 when one failed (the report says
which) and 3 on a machine without CUDA (see :mod:`gradschool.instructor.gpu_check`).

``check`` is the student's command and imports only the student side; the instructor commands
import :mod:`gradschool.instructor` (nbgrader) when they run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from gradschool.errors import UserError
from gradschool.visible_tests import report, run_visible_tests

INSTRUCTOR_EXTRA = ("the instructor tools are not installed: pip install -e '.[instructor]' in "
                    "the course repository (or run `make test` once)")
CLUSTER_EXTRA = ("--scheduler needs Dask: pip install -e '.[instructor,cluster]' in the course "
                 "repository (or run `make test` once)")
ANONYMIZE_HELP = ("in the class report, stable pseudonyms for student ids and no names or file "
                  "names (key: autograder/pseudonym.key)")
EXPORT = Path("autograder", "grades", "grades.csv")
"""Where ``gradschool export`` writes by default, relative to the course root (git-ignored)."""
NO_SANDBOX_WARNING = ("gradschool: WARNING: grading without the sandbox (--no-sandbox): the "
                      "submissions' code runs as you, with your files and network")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradschool", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    rel = commands.add_parser("release", help="generate course/ from solutions/ with nbgrader")
    rel.add_argument("ids", nargs="*", metavar="ID", help="assignment ids (default: all)")
    rel.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if course/ differs from what solutions/ gives",
    )
    rel.add_argument("--timings", action="store_true", help="run each solution notebook in the "
                     "sandbox and record its cells' times in autograder/checks/ID.timings.json "
                     "(the grading time budgets)")

    grade = commands.add_parser("grade", help="autograde one notebook")
    grade.add_argument("path", type=Path, metavar="PATH.ipynb")
    grade.add_argument("--assignment", metavar="ID", help="default: inferred from the notebook")
    grade.add_argument("--json", action="store_true", help="print one JSON object")
    grade.add_argument("--timeout", type=int, help="seconds per cell and per hidden check "
                       "(default: budgets from the solution's recorded timings)")
    grade.add_argument("--no-sandbox", action="store_true", help="run the submission's code "
                       "as you, outside the bubblewrap sandbox (unsafe; recorded in the report)")

    batch = commands.add_parser("grade-all", help="autograde a class: a folder or an LMS zip")
    batch.add_argument("submissions", type=Path, metavar="SUBMISSIONS",
                       help="a folder of notebooks, or a Moodle or Canvas download (.zip)")
    batch.add_argument("--assignment", metavar="ID", required=True)
    engine = batch.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="notebooks graded at once on this machine (default: the number of "
                        "CPU cores)")
    engine.add_argument("--scheduler", metavar="ADDRESS", help="grade on a Dask cluster: "
                        "tcp://HOST:8786 (a running dask scheduler), or local:N (N worker "
                        "processes here, to try it); needs the cluster extra")
    batch.add_argument("--out", type=Path, metavar="DIR",
                       help="where results go (default: autograder/grade-all/ID)")
    batch.add_argument("--pattern", metavar="REGEX", help="a regular expression with a "
                       "(?P<student>...) group, searched in each notebook's path (default: "
                       "Moodle, Canvas, a folder per student, <student>.ipynb)")
    batch.add_argument("--timeout", type=int, help="seconds per cell and per hidden check")
    batch.add_argument("--no-sandbox", action="store_true", help="run the submissions' code "
                       "as you, outside the bubblewrap sandbox (unsafe; recorded in the results)")
    batch.add_argument("--anonymize", action="store_true", help=ANONYMIZE_HELP)

    rep = commands.add_parser("report", help="rebuild the class report of a grade-all batch")
    rep.add_argument("out", type=Path, metavar="OUT", help="the --out folder of grade-all "
                     "(needs only its results/)")
    rep.add_argument("--assignment", metavar="ID", help="whose solution notebook lists the "
                     "tests (default: the one in the results)")
    rep.add_argument("--anonymize", action="store_true", help=ANONYMIZE_HELP)

    feedback = commands.add_parser("feedback", help="nbgrader's feedback HTML of the graded "
                                   "notebooks, into autograder/feedback/STUDENT/ID/")
    feedback.add_argument("id", metavar="ID", help="the assignment")
    feedback.add_argument("--student", metavar="S", help="one student (default: all graded)")

    export = commands.add_parser("export", help="nbgrader's grades of every student and "
                                 f"assignment as CSV (default: {EXPORT.as_posix()})")
    export.add_argument("--to", type=Path, metavar="FILE", help="the CSV to write (student "
                        "data: keep it out of git)")

    gpu = commands.add_parser("gpu-check", help="on a CUDA machine: run, grade and time the "
                              "whole course on the GPU, write a report (exit 3 without CUDA)")
    gpu.add_argument("--out", type=Path, metavar="DIR", help="where report.json and report.md "
                     "go (default: benchmarks/results/gpu-<date>-<device>)")
    gpu.add_argument("--only", nargs="+", metavar="ID", help="these assignments (default: all)")
    gpu.add_argument("--quick", action="store_true", help="only the machine checks and the "
                     "solutions graded: no notebook runs, known-wrong tests or benchmark")
    gpu.add_argument("--jobs", type=int, help="notebooks run or graded at once (default: half "
                     "the cores, at most 8)")

    check = commands.add_parser("check", help="run a notebook and its visible tests (students)")
    check.add_argument("path", type=Path, metavar="NOTEBOOK.ipynb")
    check.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    return parser


def _release(course, args: argparse.Namespace) -> int:
    from gradschool.instructor.budgets import record_timings, timings_path
    from gradschool.instructor.release import release, release_differences
    from gradschool.instructor.sandbox import Sandbox

    ids = args.ids or course.assignments()
    for assignment_id in ids:
        course.check_assignment(assignment_id)
    checks = Path(course.config.GradeOutsideTheKernel.checks_directory)
    if args.timings:
        _sandbox(False)
        for assignment_id in ids:
            try:
                path = record_timings(course.source_notebook(assignment_id), checks, Sandbox())
            except RuntimeError as exc:
                raise UserError(str(exc)) from None
            print(f"recorded {course.relative(path)}")
        return 0
    if not args.check:
        for notebook in release(course, ids):
            print(f"released {course.relative(notebook)}")
        return 0
    problems = release_differences(course, ids)
    for line in problems:
        print(line)
    for assignment_id in ids:  # a note, never a failure: timings differ between machines
        if not timings_path(checks, assignment_id).is_file():
            print(f"note: no reference timings for {assignment_id}, grading uses flat time "
                  f"limits (gradschool release --timings {assignment_id})")
    if not problems:
        print(f"course/ is up to date with solutions/ ({', '.join(ids)})")
    return 1 if problems else 0


def _sandbox(disabled: bool) -> None:
    """Warn when the sandbox is off; else stop with one line when it cannot run here."""
    from gradschool.instructor.sandbox import Sandbox, SandboxError, check_sandbox

    if disabled:
        print(NO_SANDBOX_WARNING, file=sys.stderr)
        return
    import torch  # the grader's view of the GPU: no CUDA context is created here

    try:
        check_sandbox(Sandbox(), cuda=torch.cuda.is_available())
    except SandboxError as exc:
        raise UserError(str(exc)) from None


def _grade(course, args: argparse.Namespace) -> int:
    from gradschool.instructor.grade import grade_notebook

    _sandbox(args.no_sandbox)
    report = grade_notebook(course, args.path, args.assignment, args.timeout,
                            sandbox=not args.no_sandbox)
    print(report.to_json() if args.json else report.to_table())
    return 0


def _grade_all(course, args: argparse.Namespace) -> int:
    from gradschool.instructor.grade_all import grade_all

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.scheduler is None:
        _sandbox(args.no_sandbox)
    else:  # the workers grade, and check their own sandbox
        try:
            from gradschool.instructor.cluster import parse_scheduler
        except ImportError as exc:
            if exc.name not in ("dask", "distributed"):
                raise
            raise UserError(CLUSTER_EXTRA) from None
        parse_scheduler(args.scheduler)
        if args.no_sandbox:
            print(NO_SANDBOX_WARNING, file=sys.stderr)
    out = args.out or course.root / "autograder" / "grade-all" / args.assignment
    summary = grade_all(course, args.submissions, args.assignment, out, workers=args.workers,
                        pattern=args.pattern, timeout=args.timeout, sandbox=not args.no_sandbox,
                        anonymize=args.anonymize, scheduler=args.scheduler)
    print(summary)
    if summary.too_many_failures:
        print(f"gradschool: {len(summary.failed)} of {summary.notebooks} notebooks failed to "
              "grade (more than half): see why above; the wrong --assignment?", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from gradschool.instructor.course import Course, CourseError
    from gradschool.instructor.report import write_report

    try:
        course = Course.at()
    except CourseError:  # a batch graded elsewhere, reported outside the course: results only
        course = None
    if course is not None and args.assignment:
        course.check_assignment(args.assignment)
    html, report = write_report(args.out, course, args.assignment, anonymized=args.anonymize)
    print(f"wrote {html} and {report}")
    return 0


def _feedback(course, args: argparse.Namespace) -> int:
    course.check_assignment(args.id)
    students = args.student or "*"
    if not any(course.autograded_dir.glob(f"{students}/{args.id}")):
        whom = f"for {args.student} " if args.student else ""
        raise UserError(f"no graded notebook of {args.id} {whom}in "
                        f"{course.relative(course.autograded_dir)}: run gradschool grade-all first")
    course.generate_feedback(args.id, args.student)
    written = sorted(course.feedback_dir.glob(f"{students}/{args.id}/*.html"))
    print(f"wrote {len(written)} feedback page(s) in "
          f"{course.relative(course.feedback_dir)}/{args.student or '<student>'}/{args.id}/")
    pending = [s for s in course.needs_manual_grade(args.id) if args.student in (None, s)]
    if pending:
        print(f"note: {len(pending)} of them have written answers not graded yet, shown as 0: "
              "grade them in the formgrader (make formgrader), then run this again")
    return 0


def _export(course, args: argparse.Namespace) -> int:
    to = (args.to or course.root / EXPORT).resolve()
    if not Path(course.db_url.removeprefix("sqlite:///")).is_file():
        raise UserError("no gradebook yet: grade first (gradschool grade-all)")
    to.parent.mkdir(parents=True, exist_ok=True)
    course.export(to)
    with open(to) as file:
        rows = sum(1 for _ in file) - 1
    print(f"exported {rows} row(s), one per student and assignment, to {course.relative(to)}")
    if _not_git_ignored(course.root, to):
        print(f"gradschool: WARNING: {course.relative(to)} holds student data and git does not "
              "ignore it: never commit it", file=sys.stderr)
    return 0


def _not_git_ignored(root: Path, path: Path) -> bool:
    """True when ``path`` is inside the git repository at ``root`` and not git-ignored."""
    if not path.is_relative_to(root):
        return False
    try:
        check = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=root,
                               capture_output=True)
    except OSError:  # no git: nothing to warn about
        return False
    return check.returncode == 1  # 0: ignored; 128: not a repository


def _gpu_check(course, args: argparse.Namespace) -> int:
    from gradschool.instructor.gpu_check import gpu_check
    from gradschool.instructor.sandbox import Sandbox, SandboxError, check_sandbox

    if args.jobs is not None and args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    ids = args.only or course.assignments()
    for assignment_id in ids:
        course.check_assignment(assignment_id)
    try:  # whether CUDA works inside it is the report's first section, not a reason to stop
        check_sandbox(Sandbox())
    except SandboxError as exc:
        raise UserError(str(exc)) from None
    report, folder = gpu_check(course, ids=ids, out=args.out, quick=args.quick, jobs=args.jobs)
    verdict = "every check passed" if report["ok"] else f"{len(report['failures'])} failures"
    print(f"gpu-check: {verdict}; report in {course.relative(folder / 'report.md')}")
    for failure in report["failures"]:
        print(f"  {failure}")
    return 0 if report["ok"] else 1


def _check(args: argparse.Namespace) -> int:
    text, status = report(*run_visible_tests(args.path, timeout=args.timeout))
    print(text)
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "gpu-check":  # decided before nbgrader is imported: CI skips fast
            from gradschool.instructor.gpu_smoke import SKIPPED, no_cuda

            why = no_cuda()
            if why:
                print(f"gradschool gpu-check: skipped: {why}", file=sys.stderr)
                return SKIPPED
        try:
            from gradschool.instructor.course import Course
        except ModuleNotFoundError as exc:
            if exc.name != "nbgrader" and not (exc.name or "").startswith("nbgrader."):
                raise
            raise UserError(INSTRUCTOR_EXTRA) from None
        if args.command == "report":  # runs outside the course too
            return _report(args)
        commands = {"release": _release, "grade": _grade, "grade-all": _grade_all,
                    "feedback": _feedback, "export": _export, "gpu-check": _gpu_check}
        return commands[args.command](Course.at(), args)
    except UserError as exc:
        print(f"gradschool: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradschool: interrupted; what was graded is kept: run the same command again "
              "to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
