"""The class report (gradschool.instructor.report) without a browser: its figures on the
synthetic class, grouping of messages, defensive reading, escaping, pseudonyms, the ``report``
command, and the guide's screenshot being current. tests/test_report_browser.py renders it."""

from __future__ import annotations

import json
import statistics
import subprocess

import pytest
from conftest import ROOT, gradschool
from report_class import (
    ASSIGNMENT,
    INJECTION,
    MAX_SCORE,
    TESTS,
    results,
    synthetic_class,
    write_class,
)
from report_screenshot import SCREENSHOT, fingerprint, recorded_fingerprint

from gradschool.errors import UserError
from gradschool.instructor.course import Course
from gradschool.instructor.report import write_report
from gradschool.instructor.report.figures import normalize
from gradschool.instructor.report.pseudonyms import KEY_FILE


def _report(out) -> dict:
    write_report(out)
    return json.loads((out / "report.json").read_text())


def test_messages_differing_only_in_numbers_fall_together():
    assert normalize("element [3, 17] is 1.52, expected 0.4561") == (
        normalize("element [0,  4] is -1e-05, expected .5")) == "element [#, #] is #, expected #"
    assert normalize("dtype float32, not float64; x1 conv2d 0x7f3a") == (
        "dtype float32, not float64; x1 conv2d #")


def test_the_figures_of_the_synthetic_class(tmp_path):
    report = _report(write_class(tmp_path))
    cls = synthetic_class()
    graded = [r for r in cls if r["graded"]]
    scores = [r["score"] for r in cls]
    assert (report["students"], report["graded"], report["max_score"]) == (
        len(cls), len(graded), MAX_SCORE)
    figures = report["scores"]
    assert figures["mean"] == pytest.approx(statistics.fmean(scores), abs=1e-4)
    assert figures["median"] == statistics.median(scores)
    assert figures["full_marks"] == scores.count(MAX_SCORE) > 0
    assert figures["zero"] == scores.count(0.0) == 3  # a blank notebook and two not graded
    assert [t["id"] for t in report["tests"]] == list(TESTS)  # the written answer left out
    assert report["manual_tests"] == ["ensemble-answer"]

    inverted, classic = report["tests"][0], report["tests"][1]
    lost = sum(t["max_score"] - t["score"] for r in graded for t in r["tests"]
               if t["id"] == "inverted-dropout-tests")
    assert inverted["points_lost"] == lost == 28
    keep = inverted["failures"][0]
    assert keep["count"] == 3 and "# of the elements are kept" in keep["pattern"]
    assert keep["student"] == "210101" and keep["example"].startswith("dropout(x, p=0.3): 0.3012")
    assert [f["count"] for f in inverted["failures"]] == [3, 3, 1]
    assert classic["passed"] == classic["statuses"]["passed"] + 1  # the restored cell passed
    dtype = [f for f in classic["failures"] if "dtype" in f["pattern"]]
    assert len(dtype) == 1 and dtype[0]["count"] == 1  # other words: a group of its own

    statuses = report["statuses"]
    assert statuses["timeout"] == [{"student": "210109", "tests": ["mc-dropout-tests"]}]
    assert [w["student"] for w in statuses["kernel_died"]] == ["210110"]
    assert [w["student"] for w in statuses["out_of_memory"]] == ["210111"]
    assert [w["student"] for w in statuses["restored"]] == ["210112"]
    assert statuses["grader_error"] == []
    reasons = {n["student"]: n["reason"] for n in report["not_graded"]}
    assert set(reasons) == {"210116", "210117"} and "no .ipynb" in reasons["210117"]
    time = report["time"]
    assert time["unknown"] == 3 and time["n"] == len(cls) - 3  # old results, and no upload
    assert time["slowest"][0] == {"student": "210109", "seconds": 71.5, "score": 8.0,
                                  "graded": True}


def test_what_students_control_is_escaped(tmp_path):
    evil = results('x"><b>bold', {"mc-dropout-tests": ("failed", INJECTION)}, 1.0,
                   name=INJECTION, source=f"submissions/{INJECTION}.ipynb")
    write_class(tmp_path, [evil])
    html = (write_report(tmp_path)[0]).read_text()
    assert "<script" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;document.title=" in html and "x&#34;&gt;&lt;b&gt;bold" in html


def test_old_broken_and_foreign_results_are_read_defensively(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    old = {"student": "old", "score": 3, "max_score": 4,  # before graded, seconds, sandbox
           "tests": [{"id": "t", "score": 3, "max_score": 4, "status": "failed",
                      "message": "off by 1"}]}
    odd = {"student": "odd", "graded": True, "score": "n/a", "tests": "none", "seconds": "1"}
    (folder / "old.json").write_text(json.dumps(old))
    (folder / "odd.json").write_text(json.dumps(odd))
    (folder / "cut.json").write_text('{"student": "cut", "sco')
    (folder / "list.json").write_text("[]")
    report = _report(tmp_path)
    assert report["unreadable_results"] == ["cut.json", "list.json"]
    assert report["students"] == 2 and report["time"]["unknown"] == 2
    assert report["tests"][0]["failures"][0]["pattern"] == "off by #"
    assert "cut.json" in (tmp_path / "report.html").read_text()
    with pytest.raises(UserError, match="no results in"):
        write_report(tmp_path / "elsewhere")


def test_anonymized_reports_use_stable_pseudonyms(course_copy, tmp_path):
    course = Course.at(course_copy)
    moodle = "moodle.zip:Ann Lee_210101_assignsubmission_file_/hw.ipynb"
    ann = results("210101", {"inverted-dropout-tests": ("failed", "210101: Ann Lee wrote x")},
                  2.0, name="Ann Lee", source=moodle)
    write_class(tmp_path, [ann])
    html, report_json = write_report(tmp_path, course, anonymized=True)
    text = html.read_text() + report_json.read_text()
    ids = {r["student"] for r in synthetic_class()}
    assert not any(i in text for i in ids) and "Ann" not in text and "moodle" not in text
    report = json.loads(report_json.read_text())
    names = [w["student"] for w in report["time"]["slowest"]]
    assert all(n.startswith("anon-") and len(n) == 13 for n in names)
    key = course_copy / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    write_report(tmp_path, course, ASSIGNMENT, anonymized=True)  # the same key: the same names
    assert [w["student"] for w in _slowest(tmp_path)] == names
    key.unlink()  # a new key: new names
    write_report(tmp_path, course, anonymized=True)
    assert not set(names) & {w["student"] for w in _slowest(tmp_path)}
    ignored = subprocess.run(["git", "check-ignore", "-q", str(KEY_FILE)], cwd=ROOT)
    assert ignored.returncode == 0, f"{KEY_FILE} must be git-ignored"


def _slowest(out) -> list[dict]:
    return json.loads((out / "report.json").read_text())["time"]["slowest"]


def test_the_report_command_needs_only_the_results(tmp_path):
    out = write_class(tmp_path / "from-the-cluster")
    done = gradschool("report", str(out), cwd=tmp_path)
    assert done.returncode == 0 and "report.html" in done.stdout, done.stderr
    assert json.loads((out / "report.json").read_text())["students"] == len(synthetic_class())
    with pytest.raises(UserError, match="--anonymize needs the course's pseudonym key"):
        write_report(out, course=None, anonymized=True)


def test_the_guides_screenshot_is_current():
    assert recorded_fingerprint(SCREENSHOT) == fingerprint(), (
        "autograder/report-screenshot.png is stale: run `make report-screenshot` and commit it")
