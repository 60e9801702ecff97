"""The figures of a class report, computed from grade-all's ``results/*.json``: what
``report.json`` holds and ``report.html`` shows.

Results are read defensively: a field that is missing or of the wrong type takes a neutral value
(no ``seconds``: time unknown; no ``tests``: nothing to count), and a file that is not JSON is
listed as unreadable instead of stopping the report.

Conventions: the score figures cover every student with a result, those whose notebook could
not be graded included (0 points, as in ``grades.csv``); the per-test figures cover the graded
notebooks only. A test is passed when it earned its full points (a ``restored`` test cell that
passed counts). Written answers (``manual``) are left out of the per-test figures.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from gradschool.instructor.status import Status

#: Statuses listed with their students, in this order.
PROBLEM_STATUSES = (Status.TIMEOUT, Status.KERNEL_DIED, Status.OUT_OF_MEMORY, Status.RESTORED,
                    Status.GRADER_ERROR)
SLOWEST = 10  # submissions listed by grading time
EXAMPLE_CHARS = 400  # an example message is cut there
# A number not glued to a word (float64, x1 and conv2d stay): 3, -0.25, 1e-05, 0x7f3a.
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_EPS = 1e-9


@dataclass(frozen=True)
class Result:
    """One student's ``results/<student>.json``, with defaults for what is missing."""

    student: str
    assignment: str = ""
    name: str = ""
    source: str = ""
    graded: bool = False
    score: float = 0.0
    max_score: float = 0.0
    tests: tuple[dict, ...] = field(default=())
    error: str = ""
    seconds: float | None = None
    sandbox: bool = True


def normalize(message: str) -> str:
    """``message`` with every number replaced by ``#``, so that messages differing only in
    numbers (values, indices, shapes, seconds) compare equal."""
    return _NUMBER.sub("#", " ".join(message.split()))


def _number(value, default=None):
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else default


def _test(entry) -> dict | None:
    """A test entry with id, score, max_score, status and message, or None if it has no id."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return None
    return {"id": entry["id"], "score": _number(entry.get("score"), 0.0),
            "max_score": _number(entry.get("max_score"), 0.0),
            "status": str(entry.get("status", "")), "message": str(entry.get("message") or "")}


def parse_result(data: dict, fallback_student: str) -> Result:
    """A :class:`Result` from one results file's JSON object."""
    tests = data.get("tests") if isinstance(data.get("tests"), list) else []
    return Result(
        student=str(data.get("student") or fallback_student),
        assignment=str(data.get("assignment") or ""),
        name=str(data.get("name") or ""),
        source=str(data.get("source") or ""),
        graded=data.get("graded", True) is True,
        score=_number(data.get("score"), 0.0),
        max_score=_number(data.get("max_score"), 0.0),
        tests=tuple(t for t in map(_test, tests) if t is not None),
        error=str(data.get("error") or ""),
        seconds=_number(data.get("seconds")),
        sandbox=data.get("sandbox", True) is not False,
    )


def load_results(results: Path) -> tuple[list[Result], list[str]]:
    """Every ``results/*.json`` as a :class:`Result` (sorted by student), and the names of the
    files that could not be read as a JSON object."""
    parsed, unreadable = [], []
    for path in sorted(Path(results).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            data = None
        if isinstance(data, dict):
            parsed.append(parse_result(data, path.stem))
        else:
            unreadable.append(path.name)
    return sorted(parsed, key=lambda r: r.student), unreadable


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _distribution(values: list[float]) -> dict:
    """n, mean, min, first quartile, median, third quartile, max (inclusive quartiles)."""
    if not values:
        return {"n": 0, "mean": None, "min": None, "q1": None, "median": None, "q3": None,
                "max": None}
    q1, median, q3 = (statistics.quantiles(values, n=4, method="inclusive")
                      if len(values) > 1 else values * 3)
    return {"n": len(values), "mean": _round(statistics.fmean(values)), "min": min(values),
            "q1": _round(q1), "median": _round(median), "q3": _round(q3), "max": max(values)}


def _test_ids(results: list[Result], expected: list[tuple[str, float]] | None) -> dict:
    """Graded test id -> points: ``expected`` first (in order), then ids only the results have."""
    points = dict(expected or [])
    for result in results:
        for t in result.tests:
            if t["status"] != Status.MANUAL:
                points.setdefault(t["id"], t["max_score"])
    return points


def _failures(entries: list[tuple[str, dict]]) -> list[dict]:
    """(student, test) pairs that lost points, grouped by status and normalized message."""
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = defaultdict(list)
    for student, t in entries:
        groups[(t["status"], normalize(t["message"]) or "(no message)")].append((student, t))
    rows = [{"status": status, "pattern": pattern, "count": len(members),
             "example": members[0][1]["message"][:EXAMPLE_CHARS], "student": members[0][0]}
            for (status, pattern), members in groups.items()]
    return sorted(rows, key=lambda row: (-row["count"], row["pattern"]))


def _per_test(results: list[Result], test_id: str, points: float) -> dict:
    entries = [(r.student, t) for r in results if r.graded for t in r.tests if t["id"] == test_id]
    lost = [(s, t) for s, t in entries if t["score"] < t["max_score"] - _EPS]
    return {
        "id": test_id, "max_score": points, "graded": len(entries),
        "passed": len(entries) - len(lost),
        "pass_rate": _round((len(entries) - len(lost)) / len(entries)) if entries else None,
        "points_lost": _round(sum(t["max_score"] - t["score"] for _, t in entries)),
        "statuses": dict(Counter(t["status"] for _, t in entries).most_common()),
        "failures": _failures(lost),
    }


def _max_score(results: list[Result], points: dict) -> float:
    if points:
        return sum(points.values())
    common = Counter(r.max_score for r in results).most_common(1)
    return common[0][0] if common else 0.0


def class_figures(results: list[Result], unreadable: list[str],
                  expected: list[tuple[str, float]] | None = None,
                  assignment: str | None = None) -> dict:
    """Every figure of the report (the content of ``report.json``).

    ``expected`` lists the assignment's graded test cells as (grade id, points), in notebook
    order, when the course's solution notebook is at hand; else the tests are those of the
    results, in order of first appearance.
    """
    points = _test_ids(results, expected)
    max_score = _max_score(results, points)
    scores = [r.score for r in results]
    graded = [r for r in results if r.graded]
    statuses = {str(s): [{"student": r.student,
                          "tests": [t["id"] for t in r.tests if t["status"] == s]}
                         for r in graded if any(t["status"] == s for t in r.tests)]
                for s in PROBLEM_STATUSES}
    timed = sorted((r for r in results if r.seconds is not None), key=lambda r: -r.seconds)
    seconds = [r.seconds for r in timed]
    return {
        "assignment": assignment,
        "students": len(results),
        "graded": len(graded),
        "max_score": max_score,
        "scores": _distribution(scores) | {
            "full_marks": sum(s >= max_score - _EPS for s in scores) if max_score > 0 else 0,
            "zero": sum(abs(s) <= _EPS for s in scores)},
        "tests": [_per_test(results, i, p) for i, p in points.items()],
        "manual_tests": sorted({t["id"] for r in graded for t in r.tests
                                if t["status"] == Status.MANUAL}),
        "statuses": statuses,
        "not_graded": [{"student": r.student, "source": r.source, "reason": r.error}
                       for r in results if not r.graded],
        "unreadable_results": unreadable,
        "no_sandbox": [r.student for r in graded if not r.sandbox],
        "time": _distribution(seconds) | {
            "unknown": len(results) - len(timed), "total": _round(sum(seconds)),
            "slowest": [{"student": r.student, "seconds": r.seconds, "score": r.score,
                         "graded": r.graded} for r in timed[:SLOWEST]]},
    }
