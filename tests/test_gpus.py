"""grade-all on machines with GPUs, simulated: workers bounded by GPU memory, spread over the
GPUs, each kernel capped at its share (gradschool.instructor.gpus)."""

from __future__ import annotations

from gradschool.instructor.gpus import KERNEL_GPU_MEMORY, Gpu, plan

GIB = 2**30


def test_no_gpu_changes_nothing():
    assert plan(8, []).workers == 8 and plan(8, []).environments == [{}] * 8


def test_a_big_server_gets_no_more_kernels_than_its_gpus_hold():
    gpus = [Gpu("0", 80 * GIB), Gpu("1", 80 * GIB)]
    result = plan(64, gpus)  # one worker per core would be 64 kernels on GPU 0
    slots = 80 * GIB // KERNEL_GPU_MEMORY
    assert result.workers == 2 * slots == 40
    assert [e["CUDA_VISIBLE_DEVICES"] for e in result.environments[:4]] == ["0", "1", "0", "1"]
    assert {e["GRADSCHOOL_CUDA_MEMORY_FRACTION"] for e in result.environments} == {"0.0500"}
    assert "(not 64)" in result.note


def test_a_small_gpu_still_grades_one_at_a_time_with_all_of_it():
    result = plan(4, [Gpu("3", 2 * GIB)])  # smaller than a slot
    assert result.workers == 1
    assert result.environments == [{"CUDA_VISIBLE_DEVICES": "3",
                                     "GRADSCHOOL_CUDA_MEMORY_FRACTION": "1.0000"}]


def test_fewer_workers_than_slots_are_spread_over_the_gpus():
    result = plan(3, [Gpu("GPU-a", 24 * GIB), Gpu("GPU-b", 24 * GIB)])
    assert result.workers == 3
    assert [e["CUDA_VISIBLE_DEVICES"] for e in result.environments] == ["GPU-a", "GPU-b", "GPU-a"]
