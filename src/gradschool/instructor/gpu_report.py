"""The report of ``gradschool gpu-check``: ``report.json`` for machines, ``report.md`` for people.

The report is one dict (see :mod:`gradschool.instructor.gpu_check` for how it is filled)::

    {"command": str, "started": ISO time, "seconds": float, "ok": bool, "quick": bool,
     "failures": ["section: item: problem", ...],
     "machine": {"device": {...}, "driver": {...}, "kernel": {...}, "extra_context": {...}},
     "notebooks": [...], "grading": [...], "known_wrong": [...], "benchmark": {...}}

Sections not run (``--quick``, or not reached) are absent. :func:`write` is called after each
section, so a run stopped half-way still leaves what it measured.
"""

from __future__ import annotations

import json
from pathlib import Path


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _yes(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def _machine(machine: dict) -> list[str]:
    device, driver = machine.get("device", {}), machine.get("driver", {})
    kernel, extra = machine.get("kernel", {}), machine.get("extra_context", {})
    lines = ["## Machine", "",
             f"- GPU: {device.get('name', '?')} ({device.get('capability', '?')}, "
             f"{device.get('memory_gib', '?')} GiB, {device.get('multiprocessors', '?')} SMs), "
             f"{device.get('count', '?')} visible",
             f"- torch {device.get('torch', '?')}, CUDA {device.get('cuda', '?')}, cuDNN "
             f"{device.get('cudnn', '?')}; driver {driver.get('driver', '?')}",
             f"- the wheel's architectures: {', '.join(device.get('arch_list', [])) or '?'} "
             f"(this GPU {'is' if device.get('in_wheel') else 'is NOT'} among them); a real "
             f"CUDA kernel: {_yes(device.get('kernel_runs', False))}",
             f"- compute mode: {driver.get('compute_mode', '?')}; one more CUDA context costs "
             f"{extra.get('context_mib', '?')} MiB of GPU memory",
             f"- grading kernel in the sandbox ({_yes(kernel.get('sandbox', False))}) under "
             f"RLIMIT_DATA {kernel.get('memory_limit_mb', '?')} MiB: devices "
             f"{kernel.get('devices', '?')}, started in {kernel.get('start_s', '?')} s (its "
             f"first CUDA operation included); first float32 matmul "
             f"{kernel.get('first_matmul_s', '?')} s; VmData {kernel.get('vmdata_mib', '?')} "
             f"MiB, VmHWM {kernel.get('vmhwm_mib', '?')} MiB, GPU memory reserved "
             f"{kernel.get('gpu_reserved_mib', '?')} MiB"]
    lines += [f"- note: {note}" for note in kernel.get("notes", [])]
    return lines


def _notebooks(items: list[dict]) -> list[str]:
    rows = [[n["id"], _yes(n["ok"]), n.get("wall_s"), n.get("device"),
             (n.get("gpu_cell") or {}).get("seconds"), n.get("peak_mib"), n.get("allocations"),
             len(n.get("errors", []))] for n in items]
    return ["## Solution notebooks, top to bottom (DEVICE = cuda)", "", *_table(
        ["notebook", "result", "wall s", "DEVICE", "GPU cell s", "peak CUDA MiB",
         "CUDA allocations", "cells that raised"], rows)]


def _grading(items: list[dict]) -> list[str]:
    rows = [[g["id"], _yes(g["ok"]), f"{g.get('score', 0):g} / {g.get('max_score', 0):g}",
             ", ".join(g.get("devices") or []), g.get("wall_s"), g.get("limits")] for g in items]
    return ["## Solutions graded (real grader, sandbox)", "", *_table(
        ["notebook", "result", "points", "hidden checks ran on", "wall s", "time limits"],
        rows)]


def _known_wrong(items: list[dict]) -> list[str]:
    rows = [[w["id"], _yes(w["ok"]), w.get("tests"), w.get("passed"), w.get("failed"),
             w.get("skipped")] for w in items]
    return ["## The notebooks' tests (known-wrong submissions lose their points on CUDA)", "",
            *_table(["notebook", "result", "test file", "passed", "failed", "skipped"], rows)]


def _benchmark(bench: dict) -> list[str]:
    lines = ["## benchmarks/optimizers.py", ""]
    if "devices" not in bench:
        return lines + [f"not run: {'; '.join(bench.get('problems', []))}"]
    lines.append(f"{bench['tensors']} float32 tensors of {bench['size']} numbers, median of "
                 f"{bench['steps']} steps, {bench['cpu_threads']} CPU threads; foreach vs loop "
                 f"(float64, 20 steps): max difference {bench['foreach_vs_loop_max_diff']:.3g}")
    lines.append("")
    contenders = list(dict.fromkeys(k for d in bench["devices"].values()
                                    for k in d["ms_per_step"]))
    rows = [[c, *(d["ms_per_step"].get(c) for d in bench["devices"].values())]
            for c in contenders]
    names = [f"{device} ({d['name']}) ms/step" for device, d in bench["devices"].items()]
    return lines + _table(["Adam step", *names], rows)


def markdown(report: dict) -> str:
    """``report`` for people: the machine, one table per section, then every failure."""
    verdict = "every check passed" if report["ok"] else f"{len(report['failures'])} failures"
    lines = [f"# gradschool gpu-check: {verdict}", "",
             f"`{report['command']}`, started {report['started']}, took "
             f"{report.get('seconds', 0):.0f} s" + (" (--quick)" if report.get("quick") else "")
             + f"; notebooks were run, graded and tested {report.get('jobs', 1)} at a time, so "
             "their wall times were measured side by side", ""]
    sections = [("machine", _machine), ("notebooks", _notebooks), ("grading", _grading),
                ("known_wrong", _known_wrong), ("benchmark", _benchmark)]
    for key, render in sections:
        if key in report:
            lines += [*render(report[key]), ""]
    if report["failures"]:
        lines += ["## Failures", "", *(f"- {f}" for f in report["failures"]), ""]
    return "\n".join(lines)


def write(report: dict, folder: Path) -> None:
    """Write ``report.json`` and ``report.md`` into ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (folder / "report.md").write_text(markdown(report))
