"""gradschool grade-all end to end, on the small 'kinds' assignment: a folder, a Moodle zip and a
Canvas zip; a malformed notebook; students without a notebook, a stray notebook, another
assignment's notebook; an all-failed batch; an interrupted batch resumed; the course's gradebook
seen by nbgrader's own export, through gradschool's wrappers, from a subfolder; course/ never
written by grading. Every command here runs with Dask unimportable: plain grade-all needs no
cluster extra."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, ROOT, gradschool
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


def _grades(course: Path) -> dict[str, dict]:
    with open(course / "out" / "grades.csv") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def _exported(course: Path, cwd: Path | None = None) -> dict[str, dict]:
    """The course's gradebook as ``gradschool export`` writes it by default (run in ``cwd``)."""
    result = gradschool("export", cwd=cwd or course)
    assert result.returncode == 0, result.stderr
    with open(course / "autograder" / "grades" / "grades.csv") as file:
        return {row["student_id"]: row for row in csv.DictReader(file)}


def _scores(exported: dict[str, dict]) -> dict[str, float]:
    return {student: float(row["score"]) for student, row in exported.items()}


@pytest.fixture(autouse=True)
def without_dask(monkeypatch):
    """``import dask`` and ``import distributed`` fail in the commands these tests run."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "without_dask"))


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
    assert "graded 2 (0 from an earlier run), failed to grade 1, without a notebook 0\n" \
        "mean 11.00 / 12 over the 2 graded (7.33 counting the 1 not graded as 0)\n" \
        "  carol: " in result.stdout
    assert "alice: 12 / 12\n" in result.stdout  # one line per student when not on a terminal
    assert "grading kinds" not in result.stderr  # and no progress bar
    results = _results(course)
    assert {s: r["score"] for s, r in results.items()} == {"alice": 12, "bob": 10, "carol": 0}
    assert results["carol"]["graded"] is False and "not a readable" in results["carol"]["error"]
    assert results["alice"]["seconds"] > 1 and isinstance(results["carol"]["seconds"], float)
    report = json.loads((course / "out" / "report.json").read_text())  # the class report
    assert report["students"] == 3 and report["not_graded"][0]["student"] == "carol"
    assert report["max_score"] == 12 and "class report: " in result.stdout
    rows = _grades(course)
    assert rows["bob"]["softmax-tests"] == "0.0" and rows["bob"]["adam-tests"] == "3.0"
    assert (rows["bob"]["autograded_score"], rows["bob"]["autograded_max"]) == ("10.0", "12.0")
    assert rows["carol"]["autograded_score"] == "0.0" and rows["carol"]["error"]
    feedback = (course / "out" / "feedback" / "bob.html").read_text()
    assert "(0/2 points)" in feedback and "(3/3 points)" in feedback
    hidden = (Path(__file__).parent / "kinds" / "checks.py").read_text()
    assert "kernel.probe" not in feedback and "reference_adam" in hidden
    assert not any(line.strip() in feedback for line in hidden.splitlines()
                   if line.strip().startswith(("def ", "assert_", "got = ")))
    # nbgrader's side, through gradschool from a subfolder: carol has a row too, with 0
    subfolder = course / "solutions"
    assert _scores(_exported(course, cwd=subfolder)) == {"alice": 12, "bob": 10, "carol": 0}
    result = gradschool("feedback", ASSIGNMENT, "--student", "bob", cwd=subfolder)
    assert result.returncode == 0, result.stderr
    html = (course / "autograder" / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html")
    assert "(0/2 points)" in html.read_text()
    result = gradschool("feedback", ASSIGNMENT, "--student", "carol", cwd=subfolder)
    assert result.returncode == 2 and "no graded notebook of kinds for carol" in result.stderr


def test_scheduler_without_the_cluster_extra_says_how_to_install(course, tmp_path):
    result = gradschool("grade-all", str(tmp_path), "--assignment", ASSIGNMENT, "--scheduler",
                        "local:2", cwd=course)
    assert result.returncode == 2
    assert result.stderr == "gradschool: --scheduler needs Dask: pip install -e " \
        "'.[instructor,cluster]' in the course repository (or run `make test` once)\n"


def test_export_warns_when_git_would_commit_it(course):
    if shutil.which("git") is None:
        pytest.skip("no git here")
    subprocess.run(["git", "init", "-q"], cwd=course, check=True)
    shutil.copy(ROOT / ".gitignore", course)
    result = gradschool("export", cwd=course / "solutions")  # a fresh clone: no gradebook
    assert result.returncode == 2 and "no gradebook yet" in result.stderr
    (course / "autograder" / "gradebook.db").write_bytes(b"")  # an empty gradebook
    result = gradschool("export", cwd=course / "solutions")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "to autograder/grades/grades.csv" in result.stdout
    result = gradschool("export", "--to", "../grades.txt", cwd=course / "solutions")
    assert result.returncode == 0 and (course / "grades.txt").is_file()
    assert "WARNING: grades.txt holds student data and git does not ignore it" in result.stderr


def test_moodle_zip_latest_attempt_wins(course, tmp_path):
    early, late = (2026, 11, 1, 9, 0, 0), (2026, 11, 2, 9, 0, 0)
    download = _zip(tmp_path / "moodle.zip", {
        "Ann Lee_123456_assignsubmission_file_/kinds.ipynb": (_nb(WRONG_SOFTMAX), late),
        "Ann Lee_123456_assignsubmission_file_/kinds-old.ipynb": (_nb(), early),
        "Bo Ek_777_assignsubmission_file_/my work.ipynb": (_nb(), early),
        "Bo Ek_777_assignsubmission_file_/notes.txt": ("not a notebook", early),
    })
    result = _grade_all(course, download, "--workers", "1")
    assert "also uploaded: kinds-old.ipynb (not graded: an earlier upload)" in result.stdout
    assert {s: r["score"] for s, r in _results(course).items()} == {"123456": 10, "777": 12}
    exported = _exported(course)
    assert _scores(exported) == {"123456": 10, "777": 12}
    assert (exported["123456"]["first_name"], exported["123456"]["last_name"]) == ("Ann", "Lee")


def test_canvas_zip_and_a_custom_pattern(course, tmp_path):
    stamp = (2026, 11, 3, 12, 0, 0)
    download = _zip(tmp_path / "canvas.zip", {
        "leeann_LATE_98765_4321_kinds-1.ipynb": (_nb(), stamp),
        "leeann_LATE_98765_4322_kinds-2.ipynb": (_nb(WRONG_SOFTMAX), stamp),  # same time: -2
        "okafor_55555_4323_kinds.ipynb": (_nb(), stamp),
    })
    _grade_all(course, download, "--workers", "1")
    results = _results(course)
    assert {s: r["score"] for s, r in results.items()} == {"98765": 10, "55555": 12}
    assert (results["98765"]["name"], results["98765"]["late"]) == ("leeann", True)
    assert _grades(course)["98765"]["late"] == "yes" and _grades(course)["55555"]["late"] == "no"
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
    assert stderr.strip().count("\n") == 0, stderr  # that line only: no worker tracebacks
    done = {p.stem for p in results.glob("*.json")}
    assert 1 <= len(done) < 3
    rerun = _grade_all(course, folder, "--workers", "2")
    assert f"graded 3 ({len(done)} from an earlier run)" in rerun.stdout
    expected = {"s1": 12, "s2": 10, "s3": 12}
    assert {s: r["score"] for s, r in _results(course).items()} == expected
    assert _scores(_exported(course)) == expected
    assert sorted(_grades(course)) == sorted(expected)


def test_every_student_of_a_class_zip_is_accounted_for_and_course_is_not_written(course,
                                                                                 tmp_path):
    early, late = (2026, 11, 1, 9, 0, 0), (2026, 11, 2, 9, 0, 0)
    other = (ROOT / "course" / "04-dropout" / "04-dropout.ipynb").read_text()
    download = _zip(tmp_path / "moodle.zip", {
        "Ann Lee_1_assignsubmission_file_/kinds.ipynb": (_nb(), early),
        "Ann Lee_1_assignsubmission_file_/Untitled.ipynb": (
            nbformat.writes(nbformat.v4.new_notebook()), late),
        "Bo Ek_2_assignsubmission_file_/kinds.pdf": ("%PDF-1.7", early),
        "Cy Ho_3_assignsubmission_onlinetext_/onlinetext.html": ("<p>my answer</p>", early),
        "Di Wu_4_assignsubmission_file_/hw.ipynb": (other, early),  # another assignment's
    })
    # The release is committed; solutions/ has an edit not released yet; no gradebook yet.
    assert gradschool("release", ASSIGNMENT, cwd=course).returncode == 0
    released = {p: p.read_bytes() for p in (course / "course").rglob("*") if p.is_file()}
    solution = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    edited = nbformat.read(solution, as_version=4)
    edited.cells.append(nbformat.v4.new_markdown_cell("An edit not released yet."))
    nbformat.write(edited, solution)
    result = _grade_all(course, download, "--workers", "2")
    assert {p: p.read_bytes() for p in (course / "course").rglob("*") if p.is_file()} == released
    rows = _grades(course)
    assert {s: (r["name"], r["autograded_score"], r["error"]) for s, r in rows.items()} == {
        "1": ("Ann Lee", "12.0", ""),
        "2": ("Bo Ek", "0.0", "no .ipynb in the upload (found: kinds.pdf)"),
        "3": ("Cy Ho", "0.0", "no .ipynb in the upload (found: onlinetext.html)"),
        "4": ("Di Wu", "0.0", "hw.ipynb has none of kinds' graded cells, nor any other "
                              "assignment's"),
    }
    assert rows["1"]["also_uploaded"] == "Untitled.ipynb (none of kinds' graded cells)"
    ann = _results(course)["1"]
    assert ann["also_uploaded"] == [{"file": "Untitled.ipynb",
                                     "reason": "none of kinds' graded cells"}]
    assert ann["source"].endswith("/kinds.ipynb") and ann["graded"] is True
    assert _results(course)["2"] | {"also_uploaded": []} == {
        "student": "2", "name": "Bo Ek", "late": False, "source": "", "sha256": "",
        "also_uploaded": [], "seconds": None, "graded": False, "assignment": ASSIGNMENT,
        "score": 0.0, "max_score": 12.0, "tests": [],
        "error": "no .ipynb in the upload (found: kinds.pdf)"}
    assert "graded 1 (0 from an earlier run), failed to grade 1, without a notebook 2\n" \
        "mean 12.00 / 12 over the 1 graded (3.00 counting the 3 not graded as 0)" in result.stdout
    assert "  2: no .ipynb in the upload (found: kinds.pdf)" in result.stdout
    assert _scores(_exported(course)) == {"1": 12, "2": 0, "3": 0, "4": 0}


def test_a_batch_that_mostly_fails_exits_1(course, tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    other = ROOT / "course" / "04-dropout" / "04-dropout.ipynb"
    for student in ("ann", "bo"):  # the notebook of another assignment: nothing gets graded
        shutil.copy(other, folder / f"{student}.ipynb")
    result = gradschool("grade-all", str(folder), "--assignment", ASSIGNMENT, "--out",
                        str(course / "out"), "--workers", "1", cwd=course)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ("gradschool: 2 of 2 notebooks failed to grade (more than half): see "
                             "why above; the wrong --assignment?\n")
    assert "  ann: ann.ipynb has none of kinds' graded cells" in result.stdout
