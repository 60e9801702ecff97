"""The grader serves every kind of exercise: a pure function, an in-place function with a
generator, an Optimizer stepped 300 times, an nn.Module with a custom autograd.Function, a random
sampler. The reference solutions get full marks; each known-wrong or delegating implementation
loses exactly its own exercise's points, with a message that says why.
"""

from __future__ import annotations

import pytest
from kinds.course import grade, make_course
from kinds.solutions import POINTS, SOLUTIONS


def _edit(exercise: str, old: str, new: str) -> str:
    """The reference solution of ``exercise`` with ``old`` (which must occur) made ``new``."""
    assert old in SOLUTIONS[exercise], f"{old!r} is not in the {exercise} solution"
    return SOLUTIONS[exercise].replace(old, new)


WRONG = {  # exercise: (code, what the failure message names)
    "softmax": ("def softmax(x, dim=-1):\n"
                "    e = x.exp()\n    return e / e.sum(dim, keepdim=True)\n",
                "softmax(x, dim=-1) for a (3, 7)"),  # no max shift: nan for large inputs
    "dropout": ("def dropout_(x, p, generator=None):\n"
                "    return x * (torch.rand(x.shape, generator=generator) >= p) / (1 - p)\n",
                "changed in place"),
    "adam": (_edit("adam", 'g = p.grad + group["weight_decay"] * p',  # AdamW's decay, not L2
                   'g = p.grad\n                p.mul_(1 - group["lr"] * group["weight_decay"])'),
             "after 300 steps"),
    "batchnorm": (_edit("batchnorm", "x.var(0, unbiased=True)", "x.var(0, unbiased=False)"),
                  "running_var after training batch 0"),
    "sampler": (_edit("sampler", "mean + std * z", "mean + std**2 * z"),
                "sample_normal(100000, 2.0, 3.0, generator)"),
}

DELEGATING = {
    "softmax": ("def softmax(x, dim=-1):\n    return getattr(torch, 'soft' + 'max')(x, dim)\n",
                "getattr with a computed name"),
    "dropout": ("import torch.nn.functional as F\n\ndef dropout_(x, p, generator=None):\n"
                "    return F.dropout(x, p, training=True, inplace=True)\n",
                "uses torch.nn.functional.dropout"),
    # No torch name in the source, the base class found at run time: the probe's guard sees it.
    "adam": ("Base = [c for c in torch.optim.Optimizer.__subclasses__()\n"
             "        if c.__name__.startswith('Ad') and len(c.__name__) == 4][0]\n\n"
             "class MyAdam(Base):\n    pass\n", "uses __subclasses__"),
    "batchnorm": (_edit("batchnorm",
                        "BatchNormFunction.apply(x, self.weight, self.bias, self.eps)",
                        "torch.nn.functional.batch_norm(x, None, None, self.weight, self.bias,"
                        " True, 0.0, self.eps)"),
                  "uses torch.nn.functional.batch_norm"),
    "sampler": ("def sample_normal(n, mean=0.0, std=1.0, generator=None):\n"
                "    return mean + std * torch.randn(n, generator=generator)\n",
                "uses torch.randn"),
}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("kinds-course"))


def test_reference_solutions_get_full_marks(course):
    report = grade(course, None, "--timeout", "20")
    assert report["score"] == report["max_score"] == sum(POINTS.values())
    assert {t["status"] for t in report["tests"]} == {"passed"}, report


@pytest.mark.parametrize("table", [WRONG, DELEGATING], ids=["wrong", "delegating"])
def test_each_wrong_implementation_loses_its_points(course, table):
    report = grade(course, {name: code for name, (code, _) in table.items()}, "--timeout", "20")
    assert report["score"] == 0, report
    for exercise, test in report["by_exercise"].items():
        assert test["status"] == "failed", test
        assert table[exercise][1] in test["message"], test
