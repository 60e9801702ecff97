"""GradingKernel on its own: time limits that hold against SIGINT-proof code, no kernel left
running, output cut, memory limit, probes that only bring back plain data."""

from __future__ import annotations

import os
import time

import nbformat
import pytest

from gradschool.instructor import GradingKernel, ProbeFailed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_a_sigint_proof_loop_is_killed_and_no_kernel_survives(tmp_path):
    nb = _notebook("x = 41", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                   "while True:\n    pass", "x + 1")
    with GradingKernel(nb, tmp_path, timeout=3) as kernel:
        outcomes = [kernel.run_cell(i).status for i in range(3)]
        pids = list(kernel.pids)
    assert outcomes == ["ok", "timeout", "ok"]
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "42"  # state was replayed
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


def test_after_a_timeout_every_cell_and_probe_keeps_its_outputs(tmp_path):
    """nbclient leaves the timed-out cell's IOPub reader running; left alone, it took the
    messages of later cells: their outputs (a failing test's error too) were lost, or they
    waited 4 s for an idle status it had taken."""
    nb = _notebook("while True:\n    pass", *(f"print({i})" for i in range(4)), "1 / 0")
    with GradingKernel(nb, tmp_path, timeout=60) as kernel:
        kernel.probe("result = 0")  # torch imported: probes are quick from here on
        assert kernel.run_cell(0, timeout=2).status == "timeout"
        start = time.monotonic()
        outcomes = [kernel.run_cell(i).status for i in range(1, 6)]
        assert kernel.probe("result = 41 + 1") == 42
        seconds = time.monotonic() - start
    assert outcomes == ["ok"] * 4 + ["error"]
    assert [nb.cells[i].outputs[0]["text"] for i in range(1, 5)] == ["0\n", "1\n", "2\n", "3\n"]
    assert seconds < 4, seconds  # no cell waited out nbclient's iopub_timeout
    assert kernel.restarts == 0  # the loop took the interrupt: the same kernel went on


def test_output_is_cut_and_memory_is_limited(tmp_path):
    nb = _notebook("print('x' * 10**7)", "import torch\nhog = torch.ones(2**32, dtype=torch.uint8)",
                   "print('still here')")
    with GradingKernel(nb, tmp_path, output_limit=1000, memory_limit_mb=2048) as kernel:
        outcomes = [kernel.run_cell(i) for i in range(3)]
    assert [o.status for o in outcomes] == ["ok", "out_of_memory", "ok"]
    assert sum(len(o.get("text", "")) for o in nb.cells[0].outputs) < 1100
    assert "output cut" in nb.cells[0].outputs[-1]["text"]


def test_probes_bring_back_plain_data_only(tmp_path):
    nb = _notebook("class Liar(float):\n    def __eq__(self, other):\n        return True")
    with GradingKernel(nb, tmp_path) as kernel:
        kernel.run_cell(0)
        assert kernel.probe("result = {'y': x * 2, 'n': [1, 'a']}", x=3.5) == {"y": 7.0,
                                                                              "n": [1, "a"]}
        with pytest.raises(ProbeFailed, match="not plain data"):
            kernel.probe("result = Liar(1.0)")
        with pytest.raises(ProbeFailed, match="ZeroDivisionError"):
            kernel.probe("result = 1 / 0")


def test_the_kernel_decides_whether_cuda_is_used(tmp_path, monkeypatch):
    """A grader that sees a GPU asks the kernel; a kernel that cannot run CUDA (here: none)
    leaves the checks on the CPU and says why, once, instead of failing every CUDA probe."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the grader's view only
    with GradingKernel(_notebook("x = 1"), tmp_path) as kernel:
        assert kernel.devices == ["cpu"]
        assert len(kernel.notes) == 1
        assert "the grading kernel cannot use it (torch.cuda.is_available() is False in the " \
               "kernel)" in kernel.notes[0]


def test_a_broken_cuda_context_moves_the_rest_to_the_cpu_once(tmp_path, monkeypatch):
    from gradschool.instructor import kernel as module

    monkeypatch.setattr(module, "CUDA_HEALTH",
                        "raise RuntimeError('CUDA error: device-side assert triggered')")
    with GradingKernel(_notebook("x = 1"), tmp_path) as kernel:
        assert kernel.cuda_healthy("a-tests")  # no CUDA in use: nothing to check
        kernel.devices.append("cuda")
        assert not kernel.cuda_healthy("b-tests")
        assert kernel.cuda_healthy("c-tests")
    assert kernel.devices == ["cpu"] and len(kernel.notes) == 1
    assert "CUDA context broke before b-tests (RuntimeError: CUDA error: device-side assert" \
        in kernel.notes[0]


def test_cuda_out_of_memory_is_named_for_what_it_is():
    from gradschool.instructor.kernel import _outcome_from_outputs

    cuda = _outcome_from_outputs([{"output_type": "error", "ename": "OutOfMemoryError",
                                   "evalue": "CUDA out of memory. Tried to allocate 2.00 GiB"}])
    host = _outcome_from_outputs([{"output_type": "error", "ename": "MemoryError", "evalue": ""}])
    assert cuda.status == host.status == "out_of_memory"
    assert "share of GPU memory" in cuda.message and "grader's memory limit" in host.message
