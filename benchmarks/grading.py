"""Grading speed, measured: a grade against a plain run, a hanging submission, a batch with 1
and with 2 workers, and the same batch through a local Dask cluster; or, with --profile, where
one grade's time goes.

    .venv/bin/python benchmarks/grading.py [--assignment ID] [--notebooks 8] [--repeat 3]
                                           [--no-hang] [--no-batch] [--cluster]
    .venv/bin/python benchmarks/grading.py --cluster-only [--assignment ID] [--notebooks 8]
    .venv/bin/python benchmarks/grading.py --profile [--assignment ID ...]

Speed (default assignment 01-symmetry-breaking), for its reference notebook
(solutions/<id>/<id>.ipynb), runs interleaved --repeat times (a change of load hits all alike),
best of each, wall time and CPU time (the grader's or nbclient's process, plus the kernel's,
which a last cell prints: CPU time moves much less than wall time on a busy machine):
- plain execution: nbclient running it top to bottom, what any notebook costs to run;
- `gradschool grade`: the notebook graded from scratch (scratch course generated, kernel in the
  sandbox under limits, hidden checks in the grader, no feedback), wall time only;
- a worker's next notebook: graded by a Grader that already graded one (what each notebook after
  its first costs a grade-all worker: its scratch course is kept), feedback included;
- the same with --no-sandbox, and the sandbox's share;
- a hanging submission: the reference with its first graded function replaced by one that never
  returns, graded by a worker's Grader under the calibrated time budgets, against a correct one,
  with its profile;
- `gradschool grade-all` on --notebooks copies with 1 and with 2 workers, and the speed-up;
- with --cluster (needs the cluster extra): the same batch with the process pool and through a
  local Dask cluster (`--scheduler local:N`, cluster start-up included), N = 1 and 2, run
  alternately, and the cluster's overhead over the pool; --cluster-only prints this alone.
Correct notebooks are graded with flat budgets of TIMEOUT s per cell, so that a busy machine
never trips the calibrated ones (a restart would re-run cells); the work done is the same.

Profile (default: every assignment): per notebook, a plain run, then a Grader's set-up, a grade,
a second plain run and a second grade, recorded step by step
(:mod:`gradschool.instructor.profiling`): a table of its steps (wall seconds, share, CPU seconds
of the grader's process, calls), then a summary line: execution against grade (the better of the
two plain runs), wall and CPU, and the grade's wall time by kind of step (:data:`KINDS`).

Every figure is printed with the machine's load (1-minute average) when it was taken. Nothing in
the repository is touched: grading uses scratch courses in temporary folders. Run it on an
otherwise idle machine; the figures are for the machine it runs on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from gradschool.instructor.course import Course
from gradschool.instructor.grade import AUTOGRADED, Grader, grade_notebook
from gradschool.instructor.grade_all import grade_all
from gradschool.instructor.profiling import Profile, recording

#: Appended to the notebooks timed: the CPU seconds of the kernel, at its end.
USAGE = ("import resource\n_usage = resource.getrusage(resource.RUSAGE_SELF)\n"
         "print(_usage.ru_utime + _usage.ru_stime)")
#: Seconds per cell when a correct notebook is timed: flat, so that a busy machine never trips
#: the calibrated budgets (a restart would re-run cells); the work done is the same.
TIMEOUT = 600
HANG = "\n\ndef {name}(*args, **kwargs):  # never returns\n    while True:\n        pass\n"
#: Kinds of step in a profile's summary: a step is of the first kind whose test its name passes.
KINDS = {
    "cells": lambda name: name in ("cells", "test cells"),
    "kernel": lambda name: name.startswith(("kernel", "sandbox", "CUDA", "interrupts",
                                            "replays")),
    "checks": lambda name: name in ("probes", "hidden checks (grader)", "delegation reading",
                                    "load hidden checks", "read the exercises"),
    "feedback": lambda name: name.startswith("nbgrader generate_feedback"),
    "nbgrader": lambda name: True,  # the rest: nbgrader's pipeline, reading and writing
}


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def with_usage(notebook: Path, folder: Path) -> Path:
    """A copy of ``notebook`` in ``folder`` (same name) ending in a cell that prints the CPU
    seconds its kernel used (:data:`USAGE`): a cell any student could add."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(USAGE))
    nbformat.write(nb, folder / notebook.name)
    return folder / notebook.name


def kernel_cpu(nb) -> float:
    """The CPU seconds the :func:`with_usage` cell of an executed notebook printed."""
    cell = next(c for c in nb.cells if c.source == USAGE)
    return float("".join(o.get("text", "") for o in cell.outputs))


def execute(notebook: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of nbclient running a :func:`with_usage` ``notebook`` top to bottom in
    a plain kernel; CPU: this process's and the kernel's."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(notebook.parent)}})
    cpu = time.process_time()
    wall = _timed(client.execute)
    return wall, time.process_time() - cpu + kernel_cpu(nb)


def grade(grader: Grader, notebook: Path, work: Path) -> tuple[float, float, Profile]:
    """(wall, CPU, profile) of the grade of a :func:`with_usage` ``notebook`` by ``grader``,
    artifacts into ``work``; CPU: the grader's and the (last) kernel's."""
    with recording() as profile:
        grader.grade(notebook, artifacts=work)
    graded = nbformat.read(work / AUTOGRADED, as_version=4)
    return profile.total, profile.total_cpu + kernel_cpu(graded), profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assignment", action="append", metavar="ID",
                        help="the assignment (repeat it with --profile; default: 01 for the "
                             "speed figures, every assignment for --profile)")
    parser.add_argument("--profile", action="store_true", help="where one grade's time goes")
    parser.add_argument("--notebooks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-batch", action="store_true", help="skip the grade-all figures")
    parser.add_argument("--no-hang", action="store_true", help="skip the hanging submission")
    parser.add_argument("--cluster", action="store_true", help="also the batch through a local "
                        "Dask cluster against the process pool")
    parser.add_argument("--cluster-only", action="store_true", help="only that")
    args = parser.parse_args()
    course = Course.at(Path(__file__).parent)
    print(f"on {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if args.profile:
        for assignment in args.assignment or course.assignments():
            _profile(course, assignment)
        return
    (assignment,) = args.assignment or ["01-symmetry-breaking"]
    if not args.cluster_only:
        _speed(course, assignment, args)
    if args.cluster or args.cluster_only:
        _cluster(course, course.source_notebook(assignment), assignment, args.notebooks)


def _profile(course: Course, assignment: str) -> None:
    """Print where a worker's grade of the reference notebook of ``assignment`` goes."""
    with tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp:
        notebook = with_usage(course.source_notebook(assignment), Path(tmp))
        plain = [execute(notebook)]
        print(f"\n{assignment}: plain execution {plain[0][0]:.1f} s ({_load()})")
        start = time.perf_counter()
        with Grader(course, assignment, TIMEOUT) as grader:
            print(f"  set-up of a worker's Grader {time.perf_counter() - start:.1f} s (once per "
                  f"worker and assignment; {_load()})")
            print(f"  its first grade {grade(grader, notebook, Path(tmp))[0]:.1f} s ({_load()})")
            plain.append(execute(notebook))
            wall, cpu, profile = grade(grader, notebook, Path(tmp))
    print(f"  its next grade, step by step ({_load()}):")
    print("    " + profile.table().replace("\n", "\n    "))
    plain_wall, plain_cpu = min(plain)
    kinds = dict.fromkeys(KINDS, 0.0)
    for name, seconds in profile.wall.items():
        kinds[next(kind for kind, test in KINDS.items() if test(name))] += seconds
    parts = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in kinds.items())
    print(f"  summary {assignment}: execute {plain_wall:.1f} s, grade {wall:.1f} s "
          f"({wall / plain_wall:.2f}x; {parts}); CPU {plain_cpu:.1f} s against {cpu:.1f} s "
          f"({cpu / plain_cpu:.2f}x)")


def _speed(course: Course, assignment: str, args: argparse.Namespace) -> None:
    print(assignment)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "worker": [], "bare": []}
    graded, loads = [], []
    with (Grader(course, assignment, TIMEOUT) as grader,
          Grader(course, assignment, TIMEOUT, sandbox=False) as unsandboxed,
          tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp):
        work = Path(tmp)
        notebook = with_usage(course.source_notebook(assignment), work)
        for each in (grader, unsandboxed):  # its first notebook: one-time costs
            each.grade(notebook, artifacts=work)
        for _ in range(args.repeat):  # interleaved: a change of load hits all alike
            runs["plain"].append(execute(notebook))
            graded.append(_timed(lambda: grade_notebook(course, notebook, assignment, TIMEOUT)))
            runs["worker"].append(grade(grader, notebook, work)[:2])
            runs["bare"].append(grade(unsandboxed, notebook, work)[:2])
            loads.append(os.getloadavg()[0])
        (plain, plain_cpu), (worker, worker_cpu), (bare, bare_cpu) = (
            (min(w for w, _ in runs[k]), min(c for _, c in runs[k])) for k in runs)
        print(f"load {min(loads):.1f} to {max(loads):.1f} over {args.repeat} rounds; best of each; "
              "CPU: grader or client, and kernel")
        print(f"plain execution (nbclient)        {plain:6.1f} s  CPU {plain_cpu:6.1f} s")
        print(f"gradschool grade                  {min(graded):6.1f} s  "
              f"({min(graded) / plain:.2f}x plain)")
        print(f"a worker's next notebook          {worker:6.1f} s  CPU {worker_cpu:6.1f} s  "
              f"({worker / plain:.2f}x plain, CPU {worker_cpu / plain_cpu:.2f}x; feedback "
              "included)")
        print(f"  the same, --no-sandbox          {bare:6.1f} s  CPU {bare_cpu:6.1f} s  (sandbox "
              f"overhead {worker / bare - 1:+.0%}, CPU {worker_cpu / bare_cpu - 1:+.0%})")
        if not args.no_hang:
            _hanging(course, work, assignment, worker)
    if not args.no_batch:
        _batch(course, course.source_notebook(assignment), assignment, args.notebooks)


def _cluster(course: Course, notebook: Path, assignment: str, notebooks: int) -> None:
    """The batch of ``notebooks`` copies of ``notebook`` with the process pool and through a
    local Dask cluster, 1 and 2 workers, alternately (a change of load hits both alike)."""
    with tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        for i in range(notebooks):
            shutil.copy(notebook, folder / f"student{i:03d}.ipynb")
        for workers in (1, 2):
            seconds = {}
            for engine, options in (("pool", {"workers": workers}),
                                    ("dask", {"scheduler": f"local:{workers}"})):
                name = f"{engine}-{workers}"
                seconds[engine] = _timed(partial(
                    grade_all, course.scratch(Path(tmp) / f"course-{name}"), folder, assignment,
                    Path(tmp) / f"out-{name}", timeout=TIMEOUT, log=lambda line: None, **options))
                print(f"grade-all, {notebooks} notebooks, {workers} worker(s), {engine:<4}"
                      f"  {seconds[engine]:6.1f} s  ({60 * notebooks / seconds[engine]:.1f} "
                      f"notebooks/min; {_load()})")
            print(f"Dask's overhead over the pool, {workers} worker(s)  "
                  f"{100 * (seconds['dask'] / seconds['pool'] - 1):+5.1f}%")


def _hanging(course: Course, folder: Path, assignment: str, correct: float) -> None:
    """Grade the reference with its first function never returning, under the calibrated time
    budgets, by a worker's Grader; compare with ``correct`` (seconds to grade the reference)."""
    hanging = folder / "hanging" / f"{assignment}.ipynb"
    hanging.parent.mkdir()
    name = _hang_first_function(course.source_notebook(assignment), hanging)
    with Grader(course, assignment) as grader, recording() as profile:
        report = grader.grade(hanging, artifacts=hanging.parent)
    statuses, seconds = sorted({t.status for t in report.tests}), profile.total
    print(f"grade, {name} never returns       {seconds:6.1f} s  ({seconds / correct:.1f}x the "
          f"correct one; statuses {', '.join(statuses)}; {_load()})")
    print(f"  time limits: {report.limits}")
    print("  " + profile.table().replace("\n", "\n  "))


def _batch(course: Course, notebook: Path, assignment: str, notebooks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        for i in range(notebooks):
            shutil.copy(notebook, folder / f"student{i:03d}.ipynb")
        seconds = {}
        for workers in (1, 2):
            scratch = course.scratch(Path(tmp) / f"course-{workers}")
            seconds[workers] = _timed(partial(
                grade_all, scratch, folder, assignment, Path(tmp) / f"out-{workers}",
                workers=workers, timeout=TIMEOUT, log=lambda line: None))
            per_minute = 60 * notebooks / seconds[workers]
            print(f"grade-all, {notebooks} notebooks, {workers} worker{'s' * (workers > 1)}"
                  f"  {seconds[workers]:6.1f} s  ({per_minute:.1f} notebooks/min; {_load()})")
        print(f"speed-up with 2 workers            {seconds[1] / seconds[2]:6.2f}x")


def _hang_first_function(notebook: Path, target: Path) -> str:
    """Write to ``target`` the notebook with its first solution cell's function redefined to
    never return; return the function's name."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            name = cell.source.split("def ", 1)[1].split("(", 1)[0]
            cell.source += HANG.format(name=name)
            nbformat.write(nb, target)
            return name
    raise ValueError(f"{notebook} has no solution cell")


if __name__ == "__main__":
    main()
