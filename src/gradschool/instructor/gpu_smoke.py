"""The machine part of ``gradschool gpu-check``: does CUDA really work here, and in the sandbox?

``torch.cuda.is_available()`` only counts devices. These checks run real CUDA work and measure
what grading on this GPU costs (the GPU audit's ``gpu_smoke.py``, folded in):

- :func:`no_cuda`: why there is nothing to check here ("" when torch sees a GPU);
- :func:`device_facts`: the GPU, its compute capability against the wheel's architecture list,
  torch / CUDA / cuDNN versions, and whether a real kernel runs (a GPU the wheel was not built for
  passes ``is_available()`` and fails every kernel);
- :func:`driver_facts`: the driver version and compute mode from ``nvidia-smi`` (an
  EXCLUSIVE_PROCESS GPU allows one CUDA context at a time);
- :func:`sandboxed_kernel`: a real :class:`~gradschool.instructor.kernel.GradingKernel` in the
  grading sandbox, under the course's ``RLIMIT_DATA``: which devices it decided on (and why not
  CUDA), its start time (its first CUDA operation included), then a first float32 matmul (cuBLAS)
  with its time, ``VmData`` and ``VmHWM`` of the kernel process, and its GPU memory;
- :func:`extra_context`: the GPU memory one more process's CUDA context costs (grade-all runs one
  kernel per worker).

Every CUDA call happens in a child process or in the kernel: the caller never opens a CUDA context
(on an EXCLUSIVE_PROCESS GPU it would lock the kernels out). Each function returns plain data
(JSON-ready dicts); ``ok`` False with ``why`` says what failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat

#: Exit status of ``gradschool gpu-check`` on a machine without a CUDA GPU.
SKIPPED = 3


def no_cuda() -> str:
    """Why there is nothing to check here, or "" when torch sees a CUDA GPU."""
    import torch  # no CUDA context: is_available() only counts the devices

    if torch.cuda.is_available():
        return ""
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    return f"no CUDA GPU here (torch.cuda.is_available() is False; {build})"


#: Seconds any one of these checks may take.
LIMIT = 180

DEVICE_FACTS = r"""
import json, re, torch
facts = {"torch": torch.__version__, "cuda": torch.version.cuda,
         "cudnn": torch.backends.cudnn.version(), "count": torch.cuda.device_count()}
props = torch.cuda.get_device_properties(0)
major, minor = props.major, props.minor
arch = torch.cuda.get_arch_list()
facts.update(name=props.name, capability=f"sm_{major}{minor}", arch_list=arch,
             memory_gib=round(props.total_memory / 2**30, 1),
             multiprocessors=props.multi_processor_count,
             in_wheel=any(re.fullmatch(rf"sm_{major}{minor}[a-z]?", a) for a in arch) or any(
                 int(re.sub(r"\D", "", a) or 0) <= major * 10 + minor
                 for a in arch if a.startswith("compute_")))
try:
    facts["kernel_runs"] = torch.ones(4, device="cuda").add_(1).sum().item() == 8.0
    facts["why"] = "" if facts["kernel_runs"] else "a CUDA addition gave a wrong result"
except Exception as error:  # e.g. "no kernel image is available for execution on the device"
    facts["kernel_runs"], facts["why"] = False, str(error).strip().splitlines()[0][:300]
print(json.dumps(facts))
"""

KERNEL_CELL = r"""
import json, re, resource, time, torch
start = time.perf_counter()
x = torch.ones(512, 512, device="cuda")
ok = (x @ x).sum().item() == 512.0 ** 3
seconds = time.perf_counter() - start
status = open("/proc/self/status").read()
kib = lambda key: int(re.search(rf"{key}:\s+(\d+) kB", status)[1])
print(json.dumps({"matmul_ok": ok, "first_matmul_s": round(seconds, 3),
                  "vmdata_mib": kib("VmData") // 1024, "vmhwm_mib": kib("VmHWM") // 1024,
                  "rlimit_data_mib": resource.getrlimit(resource.RLIMIT_DATA)[0] // 2**20,
                  "gpu_reserved_mib": torch.cuda.memory_reserved() // 2**20}))
"""

EXTRA_CONTEXT = r"""
import json, subprocess, sys, time, torch
torch.ones(1, device="cuda")
free0, total = torch.cuda.mem_get_info()
child = subprocess.Popen([sys.executable, "-c", "import torch, time; torch.ones(1, device='cuda');"
                          " print('ready', flush=True); time.sleep(5)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
ready = child.stdout.readline().strip() == "ready"
time.sleep(0.5)
free1, _ = torch.cuda.mem_get_info()
child.kill()
why = "" if ready else (child.communicate()[1].strip().splitlines() or ["no message"])[-1]
print(json.dumps({"ok": ready, "why": why[:300], "context_mib": (free0 - free1) // 2**20,
                  "total_gib": round(total / 2**30, 1)}))
"""


def _python_json(source: str) -> dict:
    """Run ``source`` in a fresh Python; the JSON object it printed last, or ok False + why."""
    try:
        run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                             timeout=LIMIT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "why": f"no answer within {LIMIT} s"}
    lines = run.stdout.strip().splitlines()
    try:
        return {"ok": True, **json.loads(lines[-1])}
    except (IndexError, ValueError):
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "why": f"exit status {run.returncode}: {last[:300]}"}


def device_facts() -> dict:
    """The GPU and the wheel (see the module doc): name, capability, arch_list, in_wheel,
    kernel_runs (+ why), torch, cuda, cudnn, count, memory_gib, multiprocessors."""
    facts = _python_json(DEVICE_FACTS)
    if facts["ok"] and not facts["kernel_runs"]:
        facts.update(ok=False, why=f"CUDA kernels fail although is_available() is True: "
                     f"{facts['why']}")
    return facts


def driver_facts() -> dict:
    """``driver`` version, ``compute_mode`` and ``memory_used_mib`` of GPU 0 from nvidia-smi;
    not ok only for a compute mode other than Default (or nvidia-smi failing)."""
    query = "--query-gpu=driver_version,compute_mode,memory.used"
    try:
        run = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:  # informative only: not a failure
        return {"ok": True, "driver": "?", "compute_mode": f"unknown (nvidia-smi: {exc})"}
    fields = [f.strip() for f in run.stdout.strip().splitlines()[0].split(",")] if (
        run.returncode == 0 and run.stdout.strip()) else []
    if len(fields) != 3:
        return {"ok": False, "why": f"nvidia-smi: {run.stderr.strip()[:300] or 'no answer'}"}
    mode_ok = fields[1].lower() in ("default", "shared")
    return {"ok": mode_ok, "driver": fields[0], "compute_mode": fields[1],
            "memory_used_mib": fields[2],
            "why": "" if mode_ok else (f"compute mode {fields[1]}: one CUDA context at a time; "
                                       "grade-all's parallel kernels cannot share this GPU")}


def sandboxed_kernel(cwd: Path, memory_limit_mb: int, sandbox) -> dict:
    """Start a grading kernel in ``sandbox`` (Sandbox settings, None for none) under
    ``memory_limit_mb`` in ``cwd`` and run :data:`KERNEL_CELL` (see the module doc)."""
    from gradschool.instructor.kernel import GradingKernel

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(KERNEL_CELL)])
    start = time.perf_counter()
    with GradingKernel(nb, cwd, timeout=LIMIT, memory_limit_mb=memory_limit_mb,
                       sandbox=sandbox) as kernel:
        started = time.perf_counter() - start
        outcome = kernel.run_cell(0)
        devices, notes = list(kernel.devices), list(kernel.notes)
    facts = {"devices": devices, "notes": notes, "start_s": round(started, 2),
             "sandbox": sandbox is not None, "memory_limit_mb": memory_limit_mb}
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    try:
        facts.update(json.loads(text.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        facts["matmul_ok"] = False
    problems = []
    if "cuda" not in devices:
        problems.append("the grading kernel did not take CUDA: " + ("; ".join(notes) or "no note"))
    if not facts["matmul_ok"]:
        problems.append("a float32 matmul on CUDA in the kernel failed "
                        f"({outcome.message or text.strip() or 'no output'})")
    return {"ok": not problems, "why": "; ".join(problems), **facts}


def extra_context() -> dict:
    """GPU memory one more CUDA context costs: ``context_mib`` of ``total_gib``."""
    return _python_json(EXTRA_CONTEXT)
