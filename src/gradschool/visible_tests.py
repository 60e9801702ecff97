"""``gradschool check NOTEBOOK``: run a student's notebook and report its visible tests.

Unlike ``nbgrader validate`` (which always exits 0), this exits non-zero when a visible test fails
or the notebook does not run. It only knows the visible tests in the student's copy: a pass here
says "visible tests passed", never that the notebook will get full marks. It also reads each
exercise's code for delegation as the grader will (:mod:`gradschool.delegation`, with the lists
the release wrote into the notebook's metadata): a test whose exercise reaches torch's
implementation is reported failed, with the line, although its visible checks pass.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets.config import Config

from gradschool.cells import grade_id, is_test_cell, points, read_notebook
from gradschool.delegation import declared_findings


@dataclass
class VisibleTest:
    id: str
    points: float
    passed: bool
    message: str


def _first_error(cell) -> str:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}".strip().rstrip(":")
    return ""


CAVEAT = ("hidden tests and written answers are graded after you submit (a PASS here is not a "
          "guarantee)")


def run_visible_tests(path: Path, timeout: int = 600) -> tuple[list[VisibleTest], str]:
    """Execute the notebook at ``path`` in a fresh kernel (its folder as cwd).

    The kernel is reached over IPC sockets in a temporary folder, not TCP: no port is opened
    (and the kernel has no unencrypted-TCP warning to print). Returns (one result per
    autograded test cell in notebook order, a problem that stopped the run or ""). The file
    itself is not modified.
    """
    nb = read_notebook(path)
    delegations = _delegations(nb)
    problem = ""
    with tempfile.TemporaryDirectory(prefix="gradschool-check-") as sockets:
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, config=ipc,
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellTimeoutError:
            problem = f"a cell ran longer than {timeout} s"
        except DeadKernelError:
            problem = "the kernel died while running the notebook"
    results = []
    for cell in filter(is_test_cell, nb.cells):
        ran = cell.get("execution_count") is not None
        message = _first_error(cell) if ran else "did not run"
        if not message and grade_id(cell) in delegations:
            message = f"the grader will give 0 points: {delegations[grade_id(cell)]}"
        results.append(VisibleTest(grade_id(cell), points(cell), ran and not message, message))
    return results, problem


def _delegations(nb) -> dict[str, str]:
    """test grade_id -> why the grader will read its exercise as delegation, for those it will."""
    return {test_id: finding.message() for test_id, finding in declared_findings(nb).items()}


def report(results: list[VisibleTest], problem: str) -> tuple[str, int]:
    """A readable summary and the exit status: 0 only when every visible test passed."""
    lines = [
        f"{'PASS' if r.passed else 'FAIL'}  {r.id} ({r.points:g} points)"
        + ("" if r.passed else f": {r.message}")
        for r in results
    ]
    passed = sum(r.points for r in results if r.passed)
    total = sum(r.points for r in results)
    if problem:
        lines.append(f"the notebook did not run to the end: {problem}")
    if results and not problem and all(r.passed for r in results):
        lines.append(f"visible tests passed ({passed:g}/{total:g} points); {CAVEAT}")
        return "\n".join(lines), 0
    if not results:
        lines.append("no test cells found: is this a course notebook?")
    else:
        lines.append(f"visible tests: {passed:g}/{total:g} points; {CAVEAT}")
    return "\n".join(lines), 1
