"""The probe's runner (gradschool.instructor.probe), run in process through the grader's own code:
tripwires, the graded names' identity, stand-ins, the settings reset, results on the CPU with
their devices. The static reading is not involved here: this is the second line on its own."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from submissions import InProcessKernel

from gradschool.instructor import Delegated, Guard, ProbeFailed, device_of
from gradschool.instructor.kernel import read_result
from gradschool.instructor.probe import answer

BN = ("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.modules.batchnorm")
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
CALL = "result = bn(x)"


def probe(cells, guard: Guard, code: str = CALL, **inputs):
    kernel = InProcessKernel(*cells)
    kernel.guard = guard
    return kernel.probe(code, **{"x": X, **inputs})


OWN = "def bn(x):\n    return (x - x.mean(0)) / x.var(0, unbiased=False).add(1e-5).sqrt()\n"


def test_own_code_passes_and_the_probe_may_call_torch_itself():
    got = probe([OWN], Guard(("bn",), BN),
                "result = [bn(x), F.batch_norm(x, None, None, training=True)]")
    torch.testing.assert_close(got[0], got[1])


@pytest.mark.parametrize("cells, what", [
    (["def bn(x):\n    return F.batch_norm(x, None, None, training=True)\n"],
     "torch.nn.functional.batch_norm"),
    # torch's module reached at run time, no torch name in the function's source
    (["def bn(x):\n    return make(x.shape[1]).double()(x)\n",
      "make = vars(torch.nn)['Batch' + 'Norm1d']"], "torch.nn.modules.batchnorm._BatchNorm"),
    # a delegation that crashes half-way is still a delegation
    (["def bn(x):\n    F.batch_norm(x, None, None, training=True)\n    raise ValueError('no')\n"],
     "torch.nn.functional.batch_norm"),
])
def test_a_tripwire_names_the_call_and_its_line(cells, what):
    with pytest.raises(Delegated, match=f"calls {what}.*called by `"):
        probe(cells, Guard(("bn",), BN))


@pytest.mark.parametrize("cells, why", [
    (["bn = F.batch_norm"], "bn is not your own code but torch.nn.functional.batch_norm"),
    (["import functools\nbn = functools.partial(F.batch_norm, running_mean=None, "
      "running_var=None, training=True)"], "bn is not your own code"),
    (["class bn(torch.nn.BatchNorm1d):\n    pass\n"],
     "bn subclasses torch.nn.modules.batchnorm.BatchNorm1d"),
])
def test_a_graded_name_must_be_the_students_own(cells, why):
    with pytest.raises(Delegated, match=why):
        probe(cells, Guard(("bn",), BN), "result = 0")


@pytest.mark.parametrize("cells", [
    ["@torch.no_grad()\n" + OWN],
    [OWN.replace("def bn", "def _bn"), "import functools\nbn = functools.partial(_bn)"],
    ["class Norm:\n    def __call__(self, x):\n        return x - x.mean(0)\n", "bn = Norm()"],
])
def test_wrapped_own_code_is_own(cells):
    probe(cells, Guard(("bn",), BN))


def test_tripwires_and_stand_ins_are_gone_after_the_probe_even_when_it_fails():
    original = F.batch_norm
    kernel = InProcessKernel("def dropout(x):\n    return 2 * x\n",
                             "def layer(x):\n    return dropout(x) + 1\n")
    kernel.guard = Guard(("layer",), BN, {"dropout": "def dropout(x):\n    return x\n"})
    assert kernel.probe("result = layer(x)", x=torch.ones(2)).tolist() == [2.0, 2.0]
    kernel.probe("result = str(torch.nn.BatchNorm1d(3))")  # wraps its classes meanwhile
    with pytest.raises(ProbeFailed, match="ZeroDivisionError"):
        kernel.probe("result = 1 / 0")
    assert F.batch_norm is original
    assert "__init__" not in vars(torch.nn.BatchNorm1d)  # inherited, as before the probe
    assert not hasattr(torch.nn.modules.batchnorm._BatchNorm.__init__, "__gradschool_tripwire__")
    assert kernel.main.dropout(torch.ones(2)).tolist() == [2.0, 2.0]  # the student's, back


def test_settings_a_student_left_are_reset_for_the_probe():
    kernel = InProcessKernel("torch.set_grad_enabled(False)")
    try:
        got = kernel.probe("result = [torch.is_grad_enabled(), str(torch.ones(1).dtype)]")
    finally:
        torch.set_grad_enabled(True)
    assert got == [True, "torch.float32"]


def test_results_come_back_on_the_cpu_with_the_device_they_had(tmp_path):
    """A CUDA-tagged file (made here by renaming the storage location) loads on the grader's
    CPU, and device_of still says cuda."""
    path = tmp_path / "out.pt"
    saved = {"result": {"y": torch.ones(2), "n": 3}, "devices": ["cuda"], "tripped": [],
             "foreign": []}
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        torch.save(saved, path)
    with pytest.raises(RuntimeError, match="CUDA"):  # what the grader did before loading on CPU
        torch.load(path, weights_only=True)
    result = answer(read_result(path))
    assert result["y"].device.type == "cpu" and device_of(result["y"]) == "cuda"
    assert device_of(torch.zeros(1)) == "cpu"
