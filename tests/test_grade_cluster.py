"""grade-all --scheduler on a real Dask cluster on localhost (a ``dask scheduler`` and two
``dask worker`` processes, started here on free ports and killed at the end): grades.csv equal
to the local pool's; a worker killed mid-task (SIGKILL, never back) and the client stopped with
Ctrl-C, then run again: every student graded once; a worker that cannot grade is named and
refused; plain grade-all never imports Dask."""

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
EXPECTED = {"ann": 12.0, "bo": 10.0, "cy": 12.0, "ed": 0.0}
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
    """Four students: two right, one losing 2 points, one malformed upload."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    for student in ("ann", "bo", "cy"):
        code = WRONG_SOFTMAX if student == "bo" else None
        (folder / f"{student}.ipynb").write_text(nbformat.writes(notebook(code)))
    (folder / "ed.ipynb").write_text(nbformat.writes(notebook())[:500])  # truncated upload
    return folder


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
    assert "ed.ipynb: not a readable" in rows["ed"]["error"]
    assert str(submissions) in rows["ed"]["error"]  # the client's path, not the worker's
    feedback = (course / "dask" / "feedback" / "bo.html").read_text()
    assert "(0/2 points)" in feedback  # the feedback page came back from the worker
    assert {r["student_id"]: float(r["score"]) for r in _exported(course)} == EXPECTED


def test_a_killed_worker_and_an_interrupted_client_grade_everyone_once(cluster, course,
                                                                       submissions):
    command = [str(BIN / "gradschool"), "grade-all", str(submissions), "--assignment",
               ASSIGNMENT, "--out", str(course / "out"), "--timeout", "20", "--scheduler",
               cluster.address]
    batch = subprocess.Popen(command, cwd=course, env=ENV, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (victim, local), _ = cluster.workers[-2:]
    deadline = time.monotonic() + 300
    while not (grading := [p.stem for p in local.rglob("gradschool-task-*/submitted/*.ipynb")
                           if p.stem != "ed"]):  # mid-task: ed's fails at once
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.1)
    student = grading[0]
    os.killpg(victim.pid, signal.SIGKILL)  # no nanny: it never comes back
    results = course / "out" / "results"
    while len(list(results.glob("*.json"))) < 2:  # ed's, and one graded by the other worker
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.1)
    os.killpg(batch.pid, signal.SIGINT)  # Ctrl-C
    _, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130 and "run the same command again" in stderr, stderr
    done = {p.stem for p in results.glob("*.json")}
    assert 2 <= len(done) < 4
    rerun = subprocess.run(command, cwd=course, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 worker(s) fit of 1" in rerun.stdout
    assert f"graded 3 ({len(done & {'ann', 'bo', 'cy'})} from an earlier run), failed to " \
        "grade 1" in rerun.stdout
    graded = {p.stem: json.loads(p.read_text())["score"] for p in results.glob("*.json")}
    assert graded == EXPECTED and student in graded
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


def test_plain_grade_all_never_imports_dask(course, tmp_path):
    """Without --scheduler nothing of Dask is imported (a batch with nothing to grade runs the
    whole loop: collect, record, grades.csv)."""
    folder = tmp_path / "submissions" / "ann"
    folder.mkdir(parents=True)
    (folder / "hw.pdf").write_text("%PDF-1.7")
    script = ("import sys\nfrom pathlib import Path\n"
              "from gradschool.instructor.course import Course\n"
              "from gradschool.instructor.grade_all import grade_all\n"
              f"grade_all(Course.at(), Path({str(tmp_path / 'submissions')!r}), "
              f"{ASSIGNMENT!r}, Path('out'), log=lambda line: None)\n"
              "assert Path('out/grades.csv').is_file()\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('dask', 'distributed')))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=course, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
