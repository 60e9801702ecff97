"""The course part of ``gradschool gpu-check``: the course's own code, run on this machine's GPU.

Each function runs one kind of work in child processes (the caller never opens a CUDA context)
and returns plain data: a dict per item with ``ok`` and, when not ok, ``problems`` (one line
each).

- :func:`run_notebook`: a solution notebook top to bottom, on the host (trusted code), as a
  student's "Run All": wall time, the cells that raised, the GPU section (the cell with grade_id
  ``gpu``): its time and whether it ran clean, and what the kernel did on the GPU: ``DEVICE``,
  the peak of CUDA memory allocated and the number of CUDA allocations (torch's caching
  allocator counts them), read by a cell appended at the end;
- :func:`grade`: ``gradschool grade NOTEBOOK --json``, the real grader, sandbox included; the
  solution must get full marks with the hidden checks run on ``["cpu", "cuda"]``;
- :func:`known_wrong`: the course's own tests of the notebooks (``tests/test_<id>.py``: the
  solution gets full marks, the blank zero, the known-wrong submissions lose their points) run by
  pytest with ``GRADSCHOOL_EXPECT_DEVICES=cpu,cuda``, which makes every grading in them fail
  unless the hidden checks ran on CUDA too (``tests/submissions.py``);
- :func:`optimizer_benchmark`: ``benchmarks/optimizers.py --json`` (loop, foreach and fused
  Adam, on the CPU and on CUDA).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from gradschool.cells import grade_id

#: Seconds one notebook cell may take (the course's budget is 60 s for a whole notebook on CPU).
CELL_LIMIT = 300
#: Seconds one ``gradschool grade`` may take.
GRADE_LIMIT = 420
#: Seconds the notebooks' tests may take together.
TESTS_LIMIT = 480
#: Seconds the optimizer benchmark may take.
BENCHMARK_LIMIT = 240
#: The grade_id of every notebook's GPU section.
GPU_CELL = "gpu"
#: The environment variable that makes tests/submissions.py check the devices of every grading.
EXPECT_DEVICES = "GRADSCHOOL_EXPECT_DEVICES"
#: What the hidden checks must have run on, on a GPU machine.
CUDA_DEVICES = ["cpu", "cuda"]

#: Appended to each notebook: what its kernel did on the GPU, as one JSON line.
GPU_USE = """\
import json as __json, torch as __torch
__used = __torch.cuda.is_initialized()
print("GRADSCHOOL-GPU " + __json.dumps({
    "device": str(globals().get("DEVICE")),
    "peak_mib": round(__torch.cuda.max_memory_allocated() / 2**20, 1) if __used else 0.0,
    "allocations": __torch.cuda.memory_stats().get("allocation.all.allocated", 0) if __used else 0,
}))
"""


def _seconds(cell) -> float | None:
    """How long nbclient says ``cell`` ran (its busy-to-idle timestamps), in seconds."""
    times = cell.metadata.get("execution", {})
    try:
        busy = datetime.fromisoformat(times["iopub.status.busy"].replace("Z", "+00:00"))
        idle = datetime.fromisoformat(times["iopub.status.idle"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return round((idle - busy).total_seconds(), 2)


def _error(cell) -> str:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return f"{output.ename}: {str(output.evalue).strip().splitlines()[0][:300]}".rstrip()
    return ""


def run_notebook(path: Path) -> dict:
    """Run the notebook at ``path`` (its folder as cwd) in a fresh kernel, with :data:`GPU_USE`
    appended; return :func:`notebook_summary` of the run."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(GPU_USE))
    client = NotebookClient(nb, timeout=CELL_LIMIT, allow_errors=True, record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}})
    stopped = ""
    start = time.perf_counter()
    try:
        client.execute()
    except CellTimeoutError:
        stopped = f"a cell ran longer than {CELL_LIMIT} s"
    except DeadKernelError:
        stopped = "the kernel died"
    return notebook_summary(path.stem, nb, time.perf_counter() - start, stopped)


def notebook_summary(notebook_id: str, nb, wall: float, stopped: str = "") -> dict:
    """What the executed notebook ``nb`` (its last cell :data:`GPU_USE`) says: {"id", "ok",
    "wall_s", "errors": [{"cell", "grade_id", "error"}], "gpu_cell": {"ran", "seconds",
    "error"}, "device", "peak_mib", "allocations", "problems"}; ``stopped``: why the run ended
    early, or ""."""
    problems = [stopped] if stopped else []
    errors = [{"cell": i, "grade_id": grade_id(c) or "", "error": _error(c)}
              for i, c in enumerate(nb.cells) if c.cell_type == "code" and _error(c)]
    problems += [f"cell {e['cell']} ({e['grade_id'] or 'no grade_id'}): {e['error']}"
                 for e in errors]
    gpu = [c for c in nb.cells if grade_id(c) == GPU_CELL]
    gpu_cell = {"ran": bool(gpu) and gpu[0].get("execution_count") is not None,
                "seconds": _seconds(gpu[0]) if gpu else None,
                "error": _error(gpu[0]) if gpu else f"no cell with grade_id {GPU_CELL!r}"}
    if not gpu_cell["ran"] or gpu_cell["error"]:
        problems.append(f"the GPU section did not run clean: {gpu_cell['error'] or 'not run'}")
    used = {"device": None, "peak_mib": 0.0, "allocations": 0}
    for output in nb.cells[-1].get("outputs", []):
        for line in str(output.get("text", "")).splitlines():
            if line.startswith("GRADSCHOOL-GPU "):
                used = json.loads(line.split(" ", 1)[1])
    if not str(used["device"]).startswith("cuda"):
        problems.append(f"DEVICE is {used['device']}, not cuda: the notebook ran on the CPU")
    elif not used["allocations"]:
        problems.append("no CUDA memory was ever allocated: nothing ran on the GPU")
    return {"id": notebook_id, "ok": not problems, "wall_s": round(wall, 1), "errors": errors,
            "gpu_cell": gpu_cell, **used, "problems": problems}


def grade(path: Path, root: Path) -> dict:
    """``gradschool grade path --json`` in ``root``; return :func:`grade_summary` of it."""
    start = time.perf_counter()
    try:
        run = subprocess.run([sys.executable, "-m", "gradschool.cli", "grade", str(path),
                              "--json"], cwd=root, capture_output=True, text=True,
                             timeout=GRADE_LIMIT)
    except subprocess.TimeoutExpired:
        return {"id": path.stem, "ok": False, "wall_s": GRADE_LIMIT,
                "problems": [f"gradschool grade took longer than {GRADE_LIMIT} s"]}
    wall = time.perf_counter() - start
    try:
        report = json.loads(run.stdout)
    except ValueError:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return {"id": path.stem, "ok": False, "wall_s": round(wall, 1),
                "problems": [f"gradschool grade failed (exit status {run.returncode}): {last}"]}
    return grade_summary(path.stem, report, wall)


def grade_summary(notebook_id: str, report: dict, wall: float) -> dict:
    """A solution's grade ``report`` (``gradschool grade --json``) judged: full marks, hidden
    checks run on :data:`CUDA_DEVICES`. Returns {"id", "ok", "wall_s", "score", "max_score",
    "devices", "notes", "limits", "failed": [{"id", "status", "message"}], "problems"}."""
    failed = [{"id": t["id"], "status": t["status"], "message": t["message"]}
              for t in report["tests"] if t["status"] not in ("passed", "manual")]
    problems = [f"{t['id']}: {t['status']}: {t['message']}" for t in failed]
    if report["score"] != report["max_score"]:
        problems.insert(0, f"{report['score']:g} / {report['max_score']:g} points")
    if report.get("devices") != CUDA_DEVICES:
        problems.append(f"the hidden checks ran on {report.get('devices')}, not on "
                        f"{CUDA_DEVICES}: {'; '.join(report.get('notes', [])) or 'no note'}")
    return {"id": notebook_id, "ok": not problems, "wall_s": round(wall, 1),
            "score": report["score"], "max_score": report["max_score"],
            "devices": report.get("devices"), "notes": report.get("notes", []),
            "limits": report.get("limits", ""), "failed": failed, "problems": problems}


def tests_of(root: Path, assignment: str) -> Path:
    """The tests of ``assignment``: tests/test_01_symmetry_breaking.py for 01-symmetry-breaking."""
    return root / "tests" / f"test_{assignment.replace('-', '_')}.py"


def _junit_results(xml: Path, stems: set[str]) -> dict[str, dict]:
    """{test file stem: {"passed", "failed", "skipped", "failures": ["name: message"]}} from
    pytest's JUnit XML report, for the test files named by ``stems``."""
    results: dict[str, dict] = {}
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        parts = set(case.get("classname", "").split("."))  # tests.test_03_optimizers[.Class]
        stem = next(iter(parts & stems), "")
        entry = results.setdefault(stem, {"passed": 0, "failed": 0, "skipped": 0,
                                          "failures": []})
        bad = case.find("failure")
        bad = bad if bad is not None else case.find("error")
        if bad is not None:
            entry["failed"] += 1
            message = (bad.get("message") or "").strip().splitlines() or ["no message"]
            entry["failures"].append(f"{case.get('name')}: {message[0][:300]}")
        elif case.find("skipped") is not None:
            entry["skipped"] += 1
        else:
            entry["passed"] += 1
    return results


def known_wrong(root: Path, assignments: list[str], workers: int) -> list[dict]:
    """Run the assignments' test files with pytest (``workers`` processes) on this machine,
    every grading required to use CUDA; one dict per assignment: {"id", "ok", "tests": file,
    "passed", "failed", "skipped", "failures", "problems"}."""
    files = {a: tests_of(root, a) for a in assignments}
    found = [str(f.relative_to(root)) for f in files.values() if f.is_file()]
    results: dict[str, dict] = {}
    problem = ""
    if found:
        with tempfile.TemporaryDirectory(prefix="gradschool-gpu-tests-") as folder:
            xml = Path(folder) / "junit.xml"
            env = {**os.environ, EXPECT_DEVICES: ",".join(CUDA_DEVICES)}
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       "-n", str(workers if workers > 1 else 0), "--dist", "load",
                       f"--junitxml={xml}", *found]
            try:
                run = subprocess.run(command, cwd=root, env=env, capture_output=True,
                                     text=True, timeout=TESTS_LIMIT)
                if xml.is_file():
                    results = _junit_results(xml, {f.stem for f in files.values()})
                else:
                    tail = (run.stdout + run.stderr).strip().splitlines() or ["no output"]
                    problem = f"pytest wrote no report (exit status {run.returncode}): {tail[-1]}"
            except subprocess.TimeoutExpired:
                problem = f"the tests took longer than {TESTS_LIMIT} s"
    out = []
    for assignment, path in files.items():
        got = results.get(path.stem, {"passed": 0, "failed": 0, "skipped": 0, "failures": []})
        problems = list(got["failures"])
        if not path.is_file():
            problems.append(f"no test file {path.name}: nothing known-wrong was graded")
        elif problem:
            problems.append(problem)
        elif not got["passed"] + got["failed"]:
            problems.append(f"no test of {path.name} ran")
        out.append({"id": assignment, "ok": not problems, "tests": path.name, **got,
                    "problems": problems})
    return out


def optimizer_benchmark(root: Path) -> dict:
    """benchmarks/optimizers.py's figures: {"ok", ..., "devices": {device: {"name",
    "ms_per_step": {contender: ms}}}}, or ok False with ``problems``."""
    script = root / "benchmarks" / "optimizers.py"
    with tempfile.TemporaryDirectory(prefix="gradschool-gpu-bench-") as folder:
        target = Path(folder) / "optimizers.json"
        try:
            run = subprocess.run([sys.executable, str(script), "--json", str(target)], cwd=root,
                                 capture_output=True, text=True, timeout=BENCHMARK_LIMIT)
        except subprocess.TimeoutExpired:
            return {"ok": False, "problems": [f"took longer than {BENCHMARK_LIMIT} s"]}
        if not target.is_file():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            return {"ok": False, "problems": [f"exit status {run.returncode}: {last}"]}
        figures = json.loads(target.read_text())
    problems = [] if "cuda" in figures["devices"] else ["no CUDA figures: it ran on the CPU only"]
    return {"ok": not problems, **figures, "problems": problems}
