"""Time budgets of grading, calibrated from a run of the solution notebook.

``gradschool release --timings ID`` runs ``solutions/<id>/<id>.ipynb`` cell by cell in the
grading sandbox and writes ``autograder/checks/<id>.timings.json``::

    {"assignment": "01-symmetry-breaking", "total_s": 21.7,
     "cells": {"<grade_id>": 0.8, ..., "<test grade_id>:checks": 1.5, ...},
     "machine": "Linux x86_64, 2 CPU cores"}

(``total_s`` counts cells and hidden checks together). Commit it beside the hidden checks;
``release --check`` ignores it, since timings differ between machines. Grading then allows each
code cell ``max(CELL_FLOOR, CELL_FACTOR x its reference time)`` (a cell without a reference, e.g.
one the student added, gets the floor), each probe of a test cell's hidden checks
``max(CELL_FLOOR, CELL_FACTOR x the reference time of all of them)`` (``timeout`` without a
reference), and the whole notebook ``NOTEBOOK_FACTOR x the reference total + NOTEBOOK_SLACK``;
cells reached after that are not run and get ``timeout``. An assignment without timings keeps
the flat limits of ``nbgrader_config.py``, and says so.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: A cell may take this many times its reference time ...
CELL_FACTOR = 10
#: ... but at least this many seconds (start-up jitter, a loaded machine, a slow but right loop).
CELL_FLOOR = 10
#: The notebook may take this many times the reference total, plus NOTEBOOK_SLACK seconds.
NOTEBOOK_FACTOR = 2
NOTEBOOK_SLACK = 20


@dataclass(frozen=True)
class Budgets:
    """Seconds allowed per code cell (``cell(grade_id)``) and to the whole notebook; ``note``
    says where they come from, for the report."""

    cells: dict[str, float]
    default: float
    notebook: float
    note: str
    cap: int = 60

    def cell(self, grade_id: str | None) -> int:
        return max(1, round(self.cells.get(grade_id, self.default)))

    def checks(self, grade_id: str) -> int:
        """Seconds for each probe of the hidden checks of test cell ``grade_id``."""
        return max(1, round(self.cells.get(f"{grade_id}:checks", self.cap)))


def timings_path(checks_directory: Path, assignment: str) -> Path:
    return Path(checks_directory) / f"{assignment}.timings.json"


def flat(timeout: int, notebook_timeout: int, why: str) -> Budgets:
    """The same ``timeout`` for every cell, ``notebook_timeout`` for the notebook."""
    return Budgets({}, timeout, notebook_timeout,
                   f"{why}: {timeout} s per cell, {notebook_timeout} s per notebook", timeout)


def calibrated(timings: dict, cap: int) -> Budgets:
    """Budgets from recorded ``timings`` (see the module doc), no cell above ``cap`` seconds."""
    cells = {grade_id: min(cap, max(CELL_FLOOR, CELL_FACTOR * seconds))
             for grade_id, seconds in timings["cells"].items()}
    notebook = NOTEBOOK_FACTOR * timings["total_s"] + NOTEBOOK_SLACK
    return Budgets(cells, min(cap, CELL_FLOOR), notebook,
                   f"per cell max({CELL_FLOOR} s, {CELL_FACTOR}x its reference time), notebook "
                   f"{NOTEBOOK_FACTOR}x the reference {timings['total_s']:.1f} s + "
                   f"{NOTEBOOK_SLACK} s = {notebook:.0f} s", cap)


def load_budgets(checks_directory: Path, assignment: str, *, timeout: int,
                 notebook_timeout: int, override: bool) -> Budgets:
    """The budgets to grade ``assignment`` with: flat when ``override`` (``--timeout``) or when no
    timings were recorded, else calibrated (capped at ``timeout``)."""
    if override:
        return flat(timeout, notebook_timeout, "--timeout given")
    path = timings_path(checks_directory, assignment)
    if not path.is_file():
        return flat(timeout, notebook_timeout, f"no reference timings for {assignment} "
                    f"(gradschool release --timings {assignment})")
    return calibrated(json.loads(path.read_text()), timeout)


def record_timings(solution: Path, checks_directory: Path, sandbox) -> Path:
    """Run the solution notebook at ``solution`` cell by cell (in ``sandbox``, None for none),
    time each code cell that has a grade_id and the hidden checks of each test cell, and write
    the timings file; return its path.

    Raises RuntimeError when a cell does not run clean or a check fails: a reference must be a
    clean run.
    """
    from gradschool.instructor.hidden_checks import load_hidden_checks  # import torch: lazily
    from gradschool.instructor.kernel import GradingKernel

    nb = nbformat.read(solution, as_version=4)
    checks_file = Path(checks_directory) / f"{solution.stem}.py"
    checks = load_hidden_checks(checks_file).functions if checks_file.is_file() else {}
    cells, total = {}, 0.0
    with GradingKernel(nb, solution.parent, timeout=600, sandbox=sandbox) as kernel:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            outcome = kernel.run_cell(index)
            seconds = time.perf_counter() - start
            if not outcome.ok:
                raise RuntimeError(f"{solution.name} cell {index}: {outcome.status} "
                                   f"({outcome.message}): fix the solution first")
            total += seconds
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id:
                cells[grade_id] = round(seconds, 3)
            if grade_id in checks:
                start = time.perf_counter()
                for check in checks[grade_id]:
                    try:
                        check(kernel)
                    except Exception as exc:  # noqa: BLE001 - any failure: say which check
                        raise RuntimeError(f"{solution.name}: the hidden check "
                                           f"{check.__name__} fails on the solution: {exc}"
                                           ) from None
                seconds = time.perf_counter() - start
                cells[f"{grade_id}:checks"] = round(seconds, 3)
                total += seconds
    assignment = solution.stem
    path = timings_path(checks_directory, assignment)
    path.write_text(json.dumps({
        "assignment": assignment, "total_s": round(total, 3), "cells": cells,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
    }, indent=1) + "\n")
    return path
