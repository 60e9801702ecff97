"""``gradschool gpu-check``: the whole course checked on this machine's GPU, in one command.

Sections, in order (each item is a notebook id of ``solutions/``, all of them or ``--only``):

1. ``machine`` (:mod:`~gradschool.instructor.gpu_smoke`): the GPU and the wheel, a real CUDA
   kernel, the driver and compute mode, a grading kernel in the sandbox (does it take CUDA, its
   start and first-matmul times, its memory under the course's RLIMIT_DATA), the GPU memory of
   one more CUDA context. If no CUDA kernel runs here, the check stops after this section.
2. ``notebooks``: every solution notebook top to bottom, DEVICE = cuda (not with ``--quick``);
3. ``grading``: every solution through the real grader (sandbox, hidden checks): full marks with
   the hidden checks run on ``["cpu", "cuda"]``;
4. ``known_wrong``: the notebooks' tests (``tests/test_<id>.py``: known-wrong submissions, the
   blank, the solution), every grading in them required to use CUDA (not with ``--quick``);
5. ``benchmark``: ``benchmarks/optimizers.py``, fused Adam included (not with ``--quick``).

Sections 2 to 4 run ``jobs`` items at once (wall times are then measured side by side, as the
report says); each child process gets ``OMP_NUM_THREADS = cores // jobs`` unless it is set.
The report (:mod:`~gradschool.instructor.gpu_report`) is written after each section to
``out``, by default ``benchmarks/results/gpu-<date>-<device>/``.

On a machine where ``torch.cuda.is_available()`` is False there is nothing to check:
:func:`~gradschool.instructor.gpu_smoke.no_cuda` says why in one line and the command exits with
:data:`~gradschool.instructor.gpu_smoke.SKIPPED` (CI calls it and accepts that status).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

from gradschool.instructor import gpu_report, gpu_runs, gpu_smoke
from gradschool.instructor.course import Course
from gradschool.instructor.sandbox import Sandbox


def default_jobs() -> int:
    """Items run at once: half the cores, at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def default_folder(root: Path, device_name: str) -> Path:
    """benchmarks/results/gpu-<YYYY-MM-DD>-<device, lower case, dashes>/ under ``root``."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "gpu"
    return root / "benchmarks" / "results" / f"gpu-{date.today().isoformat()}-{slug}"


def _say(text: str) -> None:
    print(f"gpu-check: {text}", file=sys.stderr, flush=True)


def _record(report: dict, section: str, value, items: list[dict]) -> None:
    """Put ``value`` in ``report[section]`` and every problem of ``items`` in its failures."""
    report[section] = value
    for item in items:
        report["failures"] += [f"{section}: {item.get('id', section)}: {p}"
                               for p in item.get("problems", [])]
    report["ok"] = not report["failures"]
    bad = sum(1 for item in items if not item.get("ok", True))
    _say(f"{section}: {len(items) - bad} of {len(items)} ok")


def _machine(course: Course) -> dict:
    """Section 1: the GPU, the driver, a grading kernel set up as the course grades (sandbox and
    memory limit from its configuration), one more CUDA context."""
    from gradschool.instructor.preprocessors import GradeOutsideTheKernel

    device, driver = gpu_smoke.device_facts(), gpu_smoke.driver_facts()
    settings = GradeOutsideTheKernel(config=course.config)
    sandbox = Sandbox(tmp_size_mb=settings.tmp_size_mb, max_processes=settings.max_processes)
    with tempfile.TemporaryDirectory(prefix="gradschool-gpu-kernel-") as cwd:
        kernel = gpu_smoke.sandboxed_kernel(Path(cwd), settings.memory_limit_mb, sandbox)
    return {"device": device, "driver": driver, "kernel": kernel,
            "extra_context": gpu_smoke.extra_context()}


def gpu_check(course: Course, *, ids: list[str], out: Path | None = None, quick: bool = False,
              jobs: int | None = None) -> tuple[dict, Path]:
    """Run the sections (see the module doc) for the assignments ``ids``; return the report and
    the folder it was written to."""
    jobs = jobs or default_jobs()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    start = time.perf_counter()
    report: dict = {"command": shlex.join(["gradschool", *sys.argv[1:]]),
                    "started": datetime.now().isoformat(timespec="seconds"), "quick": quick,
                    "jobs": jobs, "ok": True, "failures": []}

    def done(section: str, value, items: list[dict]) -> None:
        _record(report, section, value, items)
        report["seconds"] = round(time.perf_counter() - start, 1)
        gpu_report.write(report, folder)

    machine = _machine(course)
    folder = out or default_folder(course.root, machine["device"].get("name", "gpu"))
    done("machine", machine, [{"id": name, "ok": facts["ok"],
                               "problems": [] if facts["ok"] else [facts["why"]]}
                              for name, facts in machine.items()])
    if not machine["device"]["ok"]:
        report["failures"].append("stopped: no CUDA kernel runs here, nothing else can")
        report["ok"] = False
        gpu_report.write(report, folder)
        return report, folder
    solutions = [course.source_notebook(i) for i in ids]
    if not quick:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process that imported torch
        with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
            notebooks = list(pool.map(gpu_runs.run_notebook, solutions))
        done("notebooks", notebooks, notebooks)
    with ThreadPoolExecutor(jobs) as pool:
        grading = list(pool.map(lambda path: gpu_runs.grade(path, course.root), solutions))
    done("grading", grading, grading)
    if not quick:
        wrong = gpu_runs.known_wrong(course.root, ids, jobs)
        done("known_wrong", wrong, wrong)
        bench = gpu_runs.optimizer_benchmark(course.root)
        done("benchmark", bench, [{"id": "optimizers.py", **bench}])
    return report, folder
