"""``gradschool gpu-check`` on a machine without CUDA (this one, and CI): it skips with one line
and its own exit status. What it measures on a GPU is judged by pure functions, tested here on
made-up inputs: a grade whose hidden checks did not run on CUDA fails, a notebook that ran on
the CPU fails, the report names every failure."""

from __future__ import annotations

import json
import os
import subprocess

import nbformat
import pytest
from conftest import BIN, ROOT
from submissions import EXPECT_DEVICES, assert_expected_devices

from gradschool.instructor import gpu_report, gpu_runs
from gradschool.instructor.gpu_check import default_folder
from gradschool.instructor.gpu_smoke import SKIPPED


def test_gpu_check_skips_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "gradschool"), "gpu-check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == SKIPPED == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("gradschool gpu-check: skipped: no CUDA GPU here")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _report(devices, notes=(), score=14.0):
    return {"assignment": "02-initialization", "score": score, "max_score": 14.0,
            "tests": [{"id": "fans-tests", "score": score, "max_score": 14.0,
                       "status": "passed" if score == 14 else "failed",
                       "message": "" if score == 14 else "AssertionError: fans"},
                      {"id": "he-answer", "score": 0, "max_score": 2, "status": "manual",
                       "message": "graded by a person"}],
            "sandbox": True, "limits": "flat", "devices": list(devices), "notes": list(notes)}


def test_a_solution_graded_on_cpu_and_cuda_with_full_marks_passes():
    summary = gpu_runs.grade_summary("02-initialization", _report(["cpu", "cuda"]), 12.34)
    assert summary["ok"] and summary["problems"] == [] and summary["wall_s"] == 12.3


def test_a_grade_that_fell_back_to_the_cpu_fails_with_its_note():
    note = "the grader has a GPU but the grading kernel cannot use it (no kernel image)"
    summary = gpu_runs.grade_summary("02-initialization", _report(["cpu"], [note]), 1.0)
    assert not summary["ok"]
    assert summary["problems"] == [f"the hidden checks ran on ['cpu'], not on ['cpu', 'cuda']: "
                                   f"{note}"]


def test_lost_points_are_named():
    summary = gpu_runs.grade_summary("02-initialization", _report(["cpu", "cuda"], score=0), 1.0)
    assert summary["problems"] == ["0 / 14 points", "fans-tests: failed: AssertionError: fans"]


def _executed(device: str, gpu_error: str = "", allocations: int = 7) -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: a GPU section and the GPU_USE cell's line."""
    gpu = nbformat.v4.new_code_cell("print(DEVICE)", execution_count=2)
    gpu.metadata = {"nbgrader": {"grade_id": "gpu"}, "execution": {
        "iopub.status.busy": "2026-01-01T00:00:01.000000Z",
        "iopub.status.idle": "2026-01-01T00:00:03.500000Z"}}
    if gpu_error:
        gpu.outputs = [nbformat.v4.new_output("error", ename="RuntimeError", evalue=gpu_error,
                                              traceback=[])]
    line = "GRADSCHOOL-GPU " + json.dumps({"device": device, "peak_mib": 12.5,
                                            "allocations": allocations})
    used = nbformat.v4.new_code_cell(gpu_runs.GPU_USE, execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text=line)])
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), gpu, used])


def test_a_notebook_run_on_cuda_passes_and_times_its_gpu_section():
    summary = gpu_runs.notebook_summary("01", _executed("cuda"), 20.04)
    assert summary["ok"], summary["problems"]
    assert summary["gpu_cell"] == {"ran": True, "seconds": 2.5, "error": ""}
    assert (summary["device"], summary["peak_mib"], summary["allocations"]) == ("cuda", 12.5, 7)


@pytest.mark.parametrize(("device", "error", "allocations", "problem"), [
    ("cpu", "", 0, "DEVICE is cpu, not cuda: the notebook ran on the CPU"),
    ("cuda", "", 0, "no CUDA memory was ever allocated: nothing ran on the GPU"),
    ("cuda", "Expected all tensors to be on the same device", 7,
     "cell 1 (gpu): RuntimeError: Expected all tensors to be on the same device"),
])
def test_a_notebook_that_did_not_use_the_gpu_fails(device, error, allocations, problem):
    summary = gpu_runs.notebook_summary("01", _executed(device, error, allocations), 1.0)
    assert not summary["ok"] and problem in summary["problems"], summary["problems"]


def test_known_wrong_reads_pytests_verdicts(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_07_demo.py").write_text(
        "import os\n"
        "def test_passes():\n    pass\n"
        f"def test_sees_the_devices():\n    assert os.environ['{EXPECT_DEVICES}'] == 'x'\n")
    demo, missing = gpu_runs.known_wrong(tmp_path, ["07-demo", "08-none"], workers=1)
    assert (demo["passed"], demo["failed"], demo["ok"]) == (1, 1, False)
    assert demo["problems"] == ["test_sees_the_devices: AssertionError: assert 'cpu,cuda' == 'x'"]
    assert missing["problems"] == ["no test file test_08_none.py: nothing known-wrong was graded"]


def test_expected_devices_are_enforced_only_when_asked(monkeypatch):
    assert gpu_runs.EXPECT_DEVICES == EXPECT_DEVICES
    monkeypatch.delenv(EXPECT_DEVICES, raising=False)
    assert_expected_devices(["cpu"], [])
    monkeypatch.setenv(EXPECT_DEVICES, "cpu,cuda")
    assert_expected_devices(["cpu", "cuda"], [])
    with pytest.raises(AssertionError, match="ran on \\['cpu'\\].*kernel cannot use it"):
        assert_expected_devices(["cpu"], ["the kernel cannot use it"])


def test_the_report_lists_every_section_and_failure(tmp_path):
    report = {
        "command": "gradschool gpu-check", "started": "2026-01-01T00:00:00", "seconds": 321.0,
        "quick": False, "jobs": 6, "ok": False,
        "failures": ["grading: 02-initialization: the hidden checks ran on ['cpu']"],
        "machine": {"device": {"ok": True, "name": "NVIDIA H100 80GB HBM3", "capability":
                               "sm_90", "arch_list": ["sm_80", "sm_90"], "in_wheel": True,
                               "kernel_runs": True, "torch": "2.13.0", "cuda": "12.8"},
                    "driver": {"ok": True, "driver": "580.1", "compute_mode": "Default"},
                    "kernel": {"ok": True, "devices": ["cpu", "cuda"], "notes": [],
                               "sandbox": True, "start_s": 3.2},
                    "extra_context": {"ok": True, "context_mib": 500}},
        "notebooks": [gpu_runs.notebook_summary("01", _executed("cuda"), 20.0)],
        "grading": [gpu_runs.grade_summary("02-initialization", _report(["cpu"]), 1.0)],
        "known_wrong": [{"id": "02-initialization", "ok": True, "tests": "test_02.py",
                         "passed": 5, "failed": 0, "skipped": 0, "problems": []}],
        "benchmark": {"ok": True, "tensors": 1000, "size": 64, "steps": 50, "cpu_threads": 2,
                      "foreach_vs_loop_max_diff": 0.0, "devices": {
                          "cpu": {"name": "cpu", "ms_per_step": {"loop": 30.0}},
                          "cuda": {"name": "H100", "ms_per_step": {"loop": 40.0, "fused": 0.1}}}},
    }
    gpu_report.write(report, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.startswith("# gradschool gpu-check: 1 failures")
    for expected in ("NVIDIA H100 80GB HBM3 (sm_90", "| 01 | ok | 20.0 | cuda | 2.5 |",
                     "| 02-initialization | FAILED | 14 / 14 | cpu |",
                     "| fused | - | 0.1 |", "- grading: 02-initialization: the hidden checks"):
        assert expected in text, text


def test_the_default_folder_names_the_date_and_the_device(tmp_path):
    folder = default_folder(tmp_path, "NVIDIA H100 80GB HBM3")
    assert folder.parent == tmp_path / "benchmarks" / "results"
    assert folder.name.startswith("gpu-20") and folder.name.endswith("-nvidia-h100-80gb-hbm3")
