"""grade-all --scheduler on a real Dask cluster on localhost (a ``dask scheduler`` and two
``dask worker`` processes, started here on free ports and killed at the end): grades.csv equal
to the local pool's; a worker killed mid-task (SIGKILL, never back) and the client stopped with
Ctrl-C, then run again: every student graded once; a worker that cannot grade is named and
refused. (Plain grade-all without Dask: tests/test_grade_all.py runs with Dask unimportable.)"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, gradschool
from kinds.course import ASSIGNMENT, make_course, notebook

pytest.importorskip("distributed", reason="the cluster extra: pip install -e '.[cluster]'")

WRONG_SOFTMAX = {"softmax": "def softmax(x, dim=-1):\n    return x\n"}  # 2 of 12 points lost
EXPECTED = {"ann": 12.0, "bo": 10.0, "cy": 0.0, "ed": 0.0}
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


class Cluster:
    """A dask scheduler and its workers, each a process group of its own (killed in ``close``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(self.file)])
        deadline = time.monotonic() + 120
        while not self.file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers: list[tuple[subprocess.Popen, Path]] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "w") as log:  # the child keeps its own copy
            process = subprocess.Popen([str(BIN / "dask"), *args], cwd=self.folder, env=ENV,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def add_worker(self) -> None:
        """One single-threaded worker without a nanny: killed, it stays dead."""
        name = f"worker{len(self.workers)}"
        local = self.folder / name
        process = self._start(name, ["worker", "--scheduler-file", str(self.file), "--nthreads",
                                     "1", "--no-nanny", "--local-directory", str(local),
                                     "--name", name])
        self.workers.append((process, local))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        for _ in range(2):
            cluster.add_worker()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def course(tmp_path):
    return make_course(tmp_path / "course")


@pytest.fixture
def submissions(tmp_path) -> Path:
    """A folder per student: one right, one losing 2 points, one PDF, one malformed notebook
    (two notebooks to grade: the cluster's start and a kernel's cost more than many)."""
    folder = tmp_path / "submissions"
    for student, text in (("ann", nbformat.writes(notebook())),
                          ("bo", nbformat.writes(notebook(WRONG_SOFTMAX))),
                          ("ed", nbformat.writes(notebook())[:500])):  # truncated upload
        (folder / student).mkdir(parents=True)
        (folder / student / f"{ASSIGNMENT}.ipynb").write_text(text)
    (folder / "cy").mkdir()
    (folder / "cy" / "hw.pdf").write_text("%PDF-1.7")
    return folder


def test_scheduler_addresses():
    from gradschool.instructor.cluster import parse_scheduler
    from gradschool.instructor.course import CourseError

    assert parse_scheduler("tcp://10.0.0.7:8786") == "tcp://10.0.0.7:8786"
    assert parse_scheduler("local:4") == 4
    for wrong in ("local:0", "local:two", "10.0.0.7:8786"):
        with pytest.raises(CourseError, match="--scheduler takes tcp://HOST:PORT"):
            parse_scheduler(wrong)


def _grade_all(course: Path, submissions: Path, out: str, *args: str):
    return gradschool("grade-all", str(submissions), "--assignment", ASSIGNMENT, "--out",
                      str(course / out), "--timeout", "20", *args, cwd=course)


def _exported(course: Path) -> list[dict]:
    result = gradschool("export", cwd=course)
    assert result.returncode == 0, result.stderr
    with open(course / "autograder" / "grades" / "grades.csv") as file:
        return list(csv.DictReader(file))


def test_the_cluster_grades_like_the_local_pool(cluster, course, submissions):
    pool = _grade_all(course, submissions, "pool", "--workers", "2")
    assert pool.returncode == 0, pool.stderr
    for runtime in ("gradebook.db", "submitted", "autograded"):  # a fresh gradebook
        path = course / "autograder" / runtime
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dask = _grade_all(course, submissions, "dask", "--scheduler", cluster.address)
    assert dask.returncode == 0, dask.stderr
    assert f"grading on the Dask cluster {cluster.address}: 2 worker(s) fit of 2" in dask.stdout
    assert (course / "dask" / "grades.csv").read_text() == \
        (course / "pool" / "grades.csv").read_text()
    rows = {r["student"]: r for r in csv.DictReader(open(course / "dask" / "grades.csv"))}
    assert {s: float(r["autograded_score"]) for s, r in rows.items()} == EXPECTED
    assert rows["ed"]["error"].startswith(f"{submissions}/ed/{ASSIGNMENT}.ipynb: not a readable")
    assert rows["cy"]["error"] == "no .ipynb in the upload (found: hw.pdf)"
    feedback = (course / "dask" / "feedback" / "bo.html").read_text()
    assert "(0/2 points)" in feedback  # the feedback page came back from the worker
    assert {r["student_id"]: float(r["score"]) for r in _exported(course)} == EXPECTED


def _grading_a_notebook(cluster: Cluster) -> subprocess.Popen | None:
    """A live worker of ``cluster`` grading a whole notebook now (its task's scratch folder
    holds one: not ed's truncated one, which fails at once), if any."""
    for process, local in cluster.workers:
        for path in local.rglob("gradschool-task-*/submitted/*.ipynb"):
            try:
                whole = len(path.read_bytes()) > 1000
            except OSError:  # the task ended meanwhile
                continue
            if whole and process.poll() is None:
                return process
    return None


def test_a_killed_worker_and_an_interrupted_client_grade_everyone_once(cluster, course,
                                                                       submissions):
    command = [str(BIN / "gradschool"), "grade-all", str(submissions), "--assignment",
               ASSIGNMENT, "--out", str(course / "out"), "--timeout", "20", "--scheduler",
               cluster.address]
    batch = subprocess.Popen(command, cwd=course, env=ENV, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (victim := _grading_a_notebook(cluster)):
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)  # mid-task; no nanny: it never comes back
    results = course / "out" / "results"
    while len(list(results.glob("*.json"))) < 3:  # cy's, ed's, one graded by the other worker
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.1)
    os.killpg(batch.pid, signal.SIGINT)  # Ctrl-C
    _, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130 and "run the same command again" in stderr, stderr
    assert stderr.strip().count("\n") == 0, stderr  # that line only: no tracebacks
    done = {p.stem for p in results.glob("*.json")}
    assert len(done) == 3
    rerun = subprocess.run(command, cwd=course, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 worker(s) fit of 1" in rerun.stdout
    assert "graded 2 (1 from an earlier run), failed to grade 1, without a notebook 1" \
        in rerun.stdout
    graded = {p.stem: json.loads(p.read_text())["score"] for p in results.glob("*.json")}
    assert graded == EXPECTED
    exported = _exported(course)
    assert sorted(r["student_id"] for r in exported) == sorted(EXPECTED)  # each once
    assert {r["student_id"]: float(r["score"]) for r in exported} == EXPECTED


def test_a_worker_without_a_sandbox_refuses_in_one_line(tmp_path, course, submissions):
    """A worker whose bubblewrap cannot start (here: not on its PATH) is named, and the batch
    stops with one line instead of grading outside the sandbox."""
    no_bwrap = tmp_path / "bin"
    no_bwrap.mkdir()
    script = (f"import os, sys\nos.environ['PATH'] = {str(no_bwrap)!r}\n"
              "from gradschool.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run(
        [sys.executable, "-c", script, "grade-all", str(submissions), "--assignment",
         ASSIGNMENT, "--out", str(course / "out"), "--scheduler", "local:1"],
        cwd=course, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("gradschool: no Dask worker can grade: tcp://127.0.0.1:")
    assert "sandbox" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (course / "out" / "results" / "ann.json").exists()
