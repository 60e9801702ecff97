"""The class report of a grade-all batch: ``report.html`` and ``report.json`` beside
``grades.csv``, written at the end of every ``gradschool grade-all`` and by ``gradschool report``.

Only ``results/*.json`` is needed (a batch graded on another machine can be reported on after
copying that folder); the course's solution notebook, when at hand, fixes the list of graded
tests, their order and points. The page is self-contained (CSS inline, plots as data URIs, no
script, nothing fetched), readable on a laptop and printable.

- ``figures``     the numbers (report.json): scores, per-test pass rates and grouped failure
                  messages, statuses with their students, grading times
- ``plots``       the matplotlib plots as PNG data URIs
- ``page``        the HTML template (Jinja2, autoescaped)
- ``pseudonyms``  ``--anonymize``: stable HMAC pseudonyms with the course's secret key

report.json::

    {"assignment", "generated" (ISO time), "anonymized", "students", "graded", "max_score",
     "scores": {"n", "mean", "min", "q1", "median", "q3", "max", "full_marks", "zero"},
     "tests": [{"id", "max_score", "graded", "passed", "pass_rate", "points_lost",
                "statuses": {status: count},
                "failures": [{"status", "pattern", "count", "example", "student"}]}],
     "manual_tests": [id], "statuses": {status: [{"student", "tests": [id]}]},
     "not_graded": [{"student", "source", "reason"}], "unreadable_results": [file name],
     "no_sandbox": [student],
     "time": {"n", "mean", "min", "q1", "median", "q3", "max", "total", "unknown",
              "slowest": [{"student", "seconds", "score", "graded"}]}}

Numbers are floats or null where there is nothing to count (no student timed, say).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from gradschool.cells import grade_id, is_test_cell, points, read_notebook
from gradschool.errors import UserError
from gradschool.instructor.course import Course
from gradschool.instructor.report import plots
from gradschool.instructor.report.figures import class_figures, load_results
from gradschool.instructor.report.page import render
from gradschool.instructor.report.pseudonyms import KEY_FILE, anonymize, load_key

HTML, JSON = "report.html", "report.json"

__all__ = ["HTML", "JSON", "write_report"]


def _expected_tests(course: Course, assignment: str) -> list[tuple[str, float]]:
    """(grade id, points) of the assignment's graded test cells, in notebook order."""
    nb = read_notebook(course.source_notebook(assignment))
    return [(grade_id(c), points(c)) for c in nb.cells if is_test_cell(c)]


def write_report(out: Path, course: Course | None = None, assignment: str | None = None,
                 anonymized: bool = False) -> tuple[Path, Path]:
    """Write ``out/report.html`` and ``out/report.json`` from ``out/results/*.json``; return
    their paths.

    ``course`` (optional) gives the test list of ``assignment`` (default: the assignment named
    in the results) and, with ``anonymized``, the pseudonym key ``autograder/pseudonym.key``.
    Raises UserError (one line) when there is no result, or ``anonymized`` without a course.
    """
    out = Path(out)
    results, unreadable = load_results(out / "results")
    if not results and not unreadable:
        raise UserError(f"no results in {out / 'results'}: give the --out folder of a "
                        "gradschool grade-all batch")
    if anonymized:
        if course is None:
            raise UserError("--anonymize needs the course's pseudonym key: run it inside the "
                            "course repository")
        results = anonymize(results, load_key(course.root / KEY_FILE))
    if assignment is None:
        named = Counter(r.assignment for r in results if r.assignment).most_common(1)
        assignment = named[0][0] if named else None
    expected = (_expected_tests(course, assignment)
                if course is not None and assignment in course.assignments() else None)
    figures = {"generated": datetime.now().astimezone().isoformat(timespec="seconds"),
               "anonymized": anonymized} | class_figures(results, unreadable, expected, assignment)
    images = {
        "scores": plots.score_histogram([r.score for r in results], figures["max_score"],
                                        figures["scores"]["median"]) if results else "",
        "tests": plots.pass_rates(figures["tests"]) if figures["tests"] else "",
        "time": plots.time_histogram([r.seconds for r in results if r.seconds is not None],
                                     figures["time"]["median"]) if figures["time"]["n"] else "",
    }
    html, report = out / HTML, out / JSON
    _write(report, json.dumps(figures, indent=1))
    _write(html, render(figures, images))
    return html, report


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
