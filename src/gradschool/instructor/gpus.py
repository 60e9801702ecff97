"""How ``grade-all`` shares a machine's GPUs among its workers.

A grading kernel that uses CUDA holds a CUDA context (a few hundred MiB) plus whatever the
student's code puts on ``DEVICE``; the grader itself never opens one (probe results load on the
CPU). One worker per core, all on GPU 0, would run out of GPU memory on a big server and let one
submission starve the others. So on a machine with GPUs, :func:`plan`:

- runs at most ``slots x gpus`` workers, ``slots = max(1, memory // KERNEL_GPU_MEMORY)`` per GPU;
- gives worker ``i`` the GPU ``i mod gpus`` (``CUDA_VISIBLE_DEVICES``, one GPU per kernel);
- caps each kernel at ``1 / slots`` of its GPU's memory (``GRADSCHOOL_CUDA_MEMORY_FRACTION``, which
  the kernel applies with ``torch.cuda.set_per_process_memory_fraction`` at its start): going over
  is reported as running out of the kernel's share of GPU memory, and costs no one else.

Without GPUs nothing changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gradschool.instructor.kernel import CUDA_MEMORY_FRACTION

#: GPU memory set aside for each grading kernel (context, cuBLAS workspace, the course's tensors).
KERNEL_GPU_MEMORY = 4 * 2**30


@dataclass(frozen=True)
class Gpu:
    """A GPU the grader sees: its ``CUDA_VISIBLE_DEVICES`` id and its memory in bytes."""

    id: str
    memory: int


@dataclass(frozen=True)
class Plan:
    """Workers and the environment of each (empty dicts without GPUs), with a line for the log."""

    workers: int
    environments: list[dict[str, str]] = field(default_factory=list)
    note: str = ""


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them; none when torch
    sees no CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    names = [n.strip() for n in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
             if n.strip()]
    count = torch.cuda.device_count()
    ids = names[:count] if names else [str(i) for i in range(count)]
    return [Gpu(ids[i], torch.cuda.get_device_properties(i).total_memory)
            for i in range(len(ids))]


def plan(requested: int, gpus: list[Gpu]) -> Plan:
    """The workers for ``requested`` and the GPUs ``gpus`` (see the module doc)."""
    if not gpus:
        return Plan(requested, [{} for _ in range(requested)])
    slots = max(1, min(g.memory for g in gpus) // KERNEL_GPU_MEMORY)
    workers = min(requested, slots * len(gpus))
    environments = [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)].id,
                     CUDA_MEMORY_FRACTION: f"{1 / slots:.4f}"} for i in range(workers)]
    note = (f"{len(gpus)} GPU(s), {slots} grading kernel(s) each with 1/{slots} of its memory: "
            f"{workers} worker(s)" + (f" (not {requested})" if workers < requested else ""))
    return Plan(workers, environments, note)
