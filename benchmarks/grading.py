"""Grading speed, measured: one notebook with and without the sandbox, a hanging submission,
a batch with 1 and with 2 workers, and the same batch through a local Dask cluster.

    .venv/bin/python benchmarks/grading.py [--assignment ID] [--notebooks 8] [--repeat 3]
                                           [--no-hang] [--no-batch] [--cluster]
    .venv/bin/python benchmarks/grading.py --cluster-only [--assignment ID] [--notebooks 8]

Prints, for the assignment's reference notebook (solutions/<id>/<id>.ipynb):
- plain execution: nbclient running it top to bottom, what any notebook costs to run;
- `gradschool grade`: the same notebook graded (scratch gradebook, kernel under limits, hidden
  checks in the grader, feedback not included), best of --repeat runs in one process, in the
  sandbox and with --no-sandbox, and the sandbox's overhead;
- a hanging submission: the reference with its first graded function replaced by one that never
  returns, graded once under the time budgets, against the correct one;
- `gradschool grade-all` on --notebooks copies with 1 and with 2 workers, and the speed-up;
- with --cluster (needs the cluster extra): the same batch with the process pool and through a
  local Dask cluster (`--scheduler local:N`, cluster start-up included), N = 1 and 2, run
  alternately, and the cluster's overhead over the pool; --cluster-only prints this alone.
Nothing in the repository is touched: the batches use a scratch course in a temporary folder.
Run it on an otherwise idle machine; the figures are for the machine it runs on.
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
from gradschool.instructor.grade import grade_notebook
from gradschool.instructor.grade_all import grade_all

HANG = "\n\ndef {name}(*args, **kwargs):  # never returns\n    while True:\n        pass\n"


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assignment", default="01-symmetry-breaking")
    parser.add_argument("--notebooks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-batch", action="store_true", help="skip the grade-all figures")
    parser.add_argument("--no-hang", action="store_true", help="skip the hanging submission")
    parser.add_argument("--cluster", action="store_true", help="also the batch through a local "
                        "Dask cluster against the process pool")
    parser.add_argument("--cluster-only", action="store_true", help="only that")
    args = parser.parse_args()
    course = Course.at(Path(__file__).parent)
    notebook = course.source_notebook(args.assignment)
    print(f"{args.assignment} on {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}")
    if args.cluster_only:
        _cluster(course, notebook, args.assignment, args.notebooks)
        return

    def execute():
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(notebook.parent)}}
                       ).execute()

    plain = min(_timed(execute) for _ in range(args.repeat))
    graded, unsandboxed = [], []
    for _ in range(args.repeat):  # interleaved: a change of load hits both alike
        graded.append(_timed(lambda: grade_notebook(course, notebook, args.assignment)))
        unsandboxed.append(_timed(lambda: grade_notebook(course, notebook, args.assignment,
                                                         sandbox=False)))
    graded, unsandboxed = min(graded), min(unsandboxed)
    print(f"plain execution (nbclient)        {plain:6.1f} s")
    print(f"gradschool grade                  {graded:6.1f} s  ({graded / plain:.2f}x plain)")
    print(f"gradschool grade --no-sandbox     {unsandboxed:6.1f} s  (sandbox overhead "
          f"{100 * (graded / unsandboxed - 1):+.0f}%)")

    if not args.no_hang:
        _hanging(course, notebook, args.assignment, graded)
    if args.no_batch:
        return

    with tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        for i in range(args.notebooks):
            shutil.copy(notebook, folder / f"student{i:03d}.ipynb")
        seconds = {}
        for workers in (1, 2):
            scratch = course.scratch(Path(tmp) / f"course-{workers}")
            seconds[workers] = _timed(partial(
                grade_all, scratch, folder, args.assignment, Path(tmp) / f"out-{workers}",
                workers=workers, log=lambda line: None))
            per_minute = 60 * args.notebooks / seconds[workers]
            print(f"grade-all, {args.notebooks} notebooks, {workers} worker{'s' * (workers > 1)}"
                  f"  {seconds[workers]:6.1f} s  ({per_minute:.1f} notebooks/min)")
        print(f"speed-up with 2 workers            {seconds[1] / seconds[2]:6.2f}x")
    if args.cluster:
        _cluster(course, notebook, args.assignment, args.notebooks)


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
                    Path(tmp) / f"out-{name}", log=lambda line: None, **options))
                print(f"grade-all, {notebooks} notebooks, {workers} worker(s), {engine:<4}"
                      f"  {seconds[engine]:6.1f} s  ({60 * notebooks / seconds[engine]:.1f} "
                      "notebooks/min)")
            print(f"Dask's overhead over the pool, {workers} worker(s)  "
                  f"{100 * (seconds['dask'] / seconds['pool'] - 1):+5.1f}%")


def _hanging(course: Course, notebook: Path, assignment: str, correct: float) -> None:
    """Grade the reference with its first function never returning; compare with ``correct``
    (seconds to grade the reference)."""
    with tempfile.TemporaryDirectory(prefix="gradschool-bench-") as tmp:
        hanging = Path(tmp) / f"{assignment}.ipynb"
        name = _hang_first_function(notebook, hanging)
        start = time.perf_counter()
        report = grade_notebook(course, hanging, assignment)
        seconds = time.perf_counter() - start
    statuses = sorted({t.status for t in report.tests})
    print(f"grade, {name} never returns       {seconds:6.1f} s  ({seconds / correct:.1f}x the "
          f"correct one; statuses {', '.join(statuses)})")
    print(f"  time limits: {report.limits}")


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
