"""A solution notebook run top to bottom: wall time, slowest cells, the kernel's peak memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/notebook_run.py [ID ...] [--top 5]

For each assignment id (default: every notebook in solutions/), runs solutions/<id>/<id>.ipynb
with nbclient, then asks the kernel for its peak resident memory (``ru_maxrss``, what a hub's
per-user memory limit measures) and the CPU time it used, and prints:

    02-initialization: 31.2 s wall, 27.9 s CPU in the kernel, peak memory 612 MB; slowest
    cells: train-runs 6.1 s, ...

The kernel's CPU time is what a run costs on an idle core: on a busy machine the wall time
grows, the CPU time much less. Nothing is written; the figures are for the machine it runs on
(say which, and its load).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from gradschool.cells import grade_id

ROOT = Path(__file__).resolve().parents[1]
#: Appended to the notebook: the kernel's peak resident set size (kB on Linux) and CPU seconds.
USAGE = ("import resource\n_usage = resource.getrusage(resource.RUSAGE_SELF)\n"
         "print(_usage.ru_maxrss, _usage.ru_utime + _usage.ru_stime)")


def cell_seconds(cell) -> float:
    """Seconds between the start and the reply of an executed cell (nbclient's timing)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))
            ).total_seconds()


def run(assignment: str) -> tuple[float, float, float, list[tuple[str, float]]]:
    """(wall seconds, kernel CPU seconds, peak memory in MB, [(cell label, seconds)] slowest
    first) of one run."""
    path = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(USAGE))
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - start
    peak_kb, cpu = nb.cells[-1].outputs[0]["text"].split()
    cells = [(grade_id(c) or f"cell {i}", cell_seconds(c))
             for i, c in enumerate(nb.cells[:-1]) if c.cell_type == "code"]
    return wall, float(cpu), int(peak_kb) / 1024, sorted(cells, key=lambda c: -c[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    parser.add_argument("--top", type=int, default=5, help="how many of the slowest cells")
    args = parser.parse_args()
    ids = args.assignments or sorted(p.name for p in (ROOT / "solutions").iterdir()
                                     if (p / f"{p.name}.ipynb").exists())
    for assignment in ids:
        wall, cpu, peak_mb, cells = run(assignment)
        slowest = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in cells[: args.top])
        print(f"{assignment}: {wall:.1f} s wall, {cpu:.1f} s CPU in the kernel, peak memory "
              f"{peak_mb:.0f} MB; slowest cells: {slowest}", flush=True)


if __name__ == "__main__":
    main()
