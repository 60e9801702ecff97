"""gradschool grade-all end to end, on the small 'kinds' assignment: a folder, a Moodle zip and a
Canvas zip; a malformed notebook; an interrupted batch resumed; the course's gradebook seen by
nbgrader's own export."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, gradschool
from kinds.course import ASSIGNMENT, make_course, notebook

WRONG_SOFTMAX = {"softmax": "def softmax(x, dim=-1):\n    return x\n"}  # 2 of 12 points lost


def _nb(code=None) -> str:
    return nbformat.writes(notebook(code))


def _zip(path: Path, members: dict[str, tuple[str, tuple]]) -> Path:
    """A zip of ``name -> (text, date_time)``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, (text, stamp) in members.items():
            archive.writestr(zipfile.ZipInfo(name, stamp), text)
    return path


def _grade_all(course: Path, submissions: Path, *args: str):
    result = gradschool("grade-all", str(submissions), "--assignment", ASSIGNMENT,
                        "--out", str(course / "out"), "--timeout", "20", *args, cwd=course)
    assert result.returncode == 0, result.stderr
    return result


def _results(course: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (course / "out" / "results").glob("*.json")}


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=env, check=True,
                   capture_output=True)


def _exported(course: Path) -> dict[str, float]:
    """The scores in the course's gradebook, as ``nbgrader export`` sees them."""
    _nbgrader(course, "export", "--to", "export.csv")
    with open(course / "export.csv") as file:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(file)}


@pytest.fixture
def course(tmp_path):
    return make_course(tmp_path / "course")


def test_a_folder_with_a_malformed_notebook(course, tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "alice.ipynb").write_text(_nb())
    (folder / "bob.ipynb").write_text(_nb(WRONG_SOFTMAX))
    (folder / "carol.ipynb").write_text(_nb()[:500])  # truncated upload
    result = _grade_all(course, folder, "--workers", "2")
    assert "graded 2 (0 from an earlier run), failed to grade 1, mean score 7.33 / 12" in (
        result.stdout)
    results = _results(course)
    assert {s: r["score"] for s, r in results.items()} == {"alice": 12, "bob": 10, "carol": 0}
    assert results["carol"]["graded"] is False and "not a readable" in results["carol"]["error"]
    assert results["alice"]["seconds"] > 1 and isinstance(results["carol"]["seconds"], float)
    report = json.loads((course / "out" / "report.json").read_text())  # the class report
    assert report["students"] == 3 and report["not_graded"][0]["student"] == "carol"
    assert report["max_score"] == 12 and "class report: " in result.stdout
    with open(course / "out" / "grades.csv") as file:
        rows = {row["student"]: row for row in csv.DictReader(file)}
    assert rows["bob"]["softmax-tests"] == "0.0" and rows["bob"]["adam-tests"] == "3.0"
    assert rows["carol"]["score"] == "0.0" and rows["carol"]["error"]
    feedback = (course / "out" / "feedback" / "bob.html").read_text()
    assert "(0/2 points)" in feedback and "(3/3 points)" in feedback
    hidden = (Path(__file__).parent / "kinds" / "checks.py").read_text()
    assert "kernel.probe" not in feedback and "reference_adam" in hidden
    assert not any(line.strip() in feedback for line in hidden.splitlines()
                   if line.strip().startswith(("def ", "assert_", "got = ")))
    assert _exported(course) == {"alice": 12, "bob": 10}  # carol has no gradebook entry
    _nbgrader(course, "generate_feedback", ASSIGNMENT, "--student", "bob")
    html = (course / "autograder" / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html")
    assert "(0/2 points)" in html.read_text()


def test_moodle_zip_latest_attempt_wins(course, tmp_path):
    early, late = (2026, 11, 1, 9, 0, 0), (2026, 11, 2, 9, 0, 0)
    download = _zip(tmp_path / "moodle.zip", {
        "Ann Lee_123456_assignsubmission_file_/kinds.ipynb": (_nb(WRONG_SOFTMAX), late),
        "Ann Lee_123456_assignsubmission_file_/kinds-old.ipynb": (_nb(), early),
        "Bo Ek_777_assignsubmission_file_/my work.ipynb": (_nb(), early),
        "Bo Ek_777_assignsubmission_file_/notes.txt": ("not a notebook", early),
    })
    result = _grade_all(course, download, "--workers", "1")
    assert "123456: 2 notebooks, grading" in result.stdout and "(latest)" in result.stdout
    assert {s: r["score"] for s, r in _results(course).items()} == {"123456": 10, "777": 12}
    assert _exported(course) == {"123456": 10, "777": 12}


def test_canvas_zip_and_a_custom_pattern(course, tmp_path):
    stamp = (2026, 11, 3, 12, 0, 0)
    download = _zip(tmp_path / "canvas.zip", {
        "leeann_LATE_98765_4321_kinds-1.ipynb": (_nb(), stamp),
        "leeann_LATE_98765_4322_kinds-2.ipynb": (_nb(WRONG_SOFTMAX), stamp),  # same time: -2
        "okafor_55555_4323_kinds.ipynb": (_nb(), stamp),
    })
    _grade_all(course, download, "--workers", "1")
    assert {s: r["score"] for s, r in _results(course).items()} == {"98765": 10, "55555": 12}
    custom = _grade_all(course, download, "--pattern", r"_(?P<student>\d{5})_")
    assert "students have results" in custom.stdout  # same ids, same notebooks: nothing regraded


def test_an_interrupted_batch_resumes_without_losing_or_doubling(course, tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for student in ("s1", "s2", "s3"):
        (folder / f"{student}.ipynb").write_text(_nb(WRONG_SOFTMAX if student == "s2" else None))
    command = [str(BIN / "gradschool"), "grade-all", str(folder), "--assignment", ASSIGNMENT,
               "--out", str(course / "out"), "--workers", "1"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    batch = subprocess.Popen(command, cwd=course, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = course / "out" / "results"
    deadline = time.monotonic() + 300
    while not list(results.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(batch.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130 and "run the same command again" in stderr, stderr
    done = {p.stem for p in results.glob("*.json")}
    assert 1 <= len(done) < 3
    rerun = _grade_all(course, folder, "--workers", "2")
    assert f"graded 3 ({len(done)} from an earlier run)" in rerun.stdout
    expected = {"s1": 12, "s2": 10, "s3": 12}
    assert {s: r["score"] for s, r in _results(course).items()} == expected
    assert _exported(course) == expected
    with open(course / "out" / "grades.csv") as file:
        assert sorted(row["student"] for row in csv.DictReader(file)) == sorted(expected)
