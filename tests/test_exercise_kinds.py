"""The grader serves every kind of exercise: a pure function, an in-place function with a
generator, an Optimizer stepped 300 times, an nn.Module with a custom autograd.Function, a random
sampler. The reference solutions get full marks; each known-wrong or delegating implementation
loses exactly its own exercise's points, with a message that says why.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import gradschool
from kinds.course import ASSIGNMENT, make_course, notebook
from kinds.solutions import POINTS, SOLUTIONS

WRONG = {
    "softmax": ("def softmax(x, dim=-1):\n"
                "    e = x.exp()\n    return e / e.sum(dim, keepdim=True)\n",
                "softmax(x, dim=-1) for a (3, 7)"),  # no max shift: nan for large inputs
    "dropout": ("def dropout_(x, p, generator=None):\n"
                "    return x * (torch.rand(x.shape, generator=generator) >= p) / (1 - p)\n",
                "changed in place"),
    "adam": (None, "after 300 steps"),  # weight decay as AdamW's, below
    "batchnorm": (None, "running_var after training batch 0"),  # biased running variance
    "sampler": (None, "sample_normal(100000, 2.0, 3.0, generator)"),  # std**2 for std
}

DELEGATING = {
    "softmax": ("def softmax(x, dim=-1):\n    return getattr(torch, 'soft' + 'max')(x, dim)\n",
                "getattr with a computed name"),
    "dropout": ("import torch.nn.functional as F\n\ndef dropout_(x, p, generator=None):\n"
                "    return F.dropout(x, p, training=True, inplace=True)\n", "uses dropout"),
    # No forbidden name in the source: only the check of MyAdam's base classes catches it.
    "adam": ("Base = [c for c in torch.optim.Optimizer.__subclasses__()\n"
             "        if c.__name__.startswith('Ad') and len(c.__name__) == 4][0]\n\n"
             "class MyAdam(Base):\n    pass\n", "torch's Adam among MyAdam's base classes"),
    "batchnorm": (None, "uses batch_norm"),  # the solution calling F.batch_norm, below
    "sampler": ("def sample_normal(n, mean=0.0, std=1.0, generator=None):\n"
                "    return mean + std * torch.randn(n, generator=generator)\n", "uses randn"),
}


def _variants(table: dict, solutions: dict) -> dict[str, str]:
    code = {name: source for name, (source, _) in table.items() if source}
    if "adam" not in code:
        code["adam"] = solutions["adam"].replace(  # AdamW's decoupled decay, not Adam's L2
            'g = p.grad + group["weight_decay"] * p',
            'g = p.grad\n                p.mul_(1 - group["lr"] * group["weight_decay"])')
    if table is WRONG:
        code["sampler"] = solutions["sampler"].replace("mean + std * z", "mean + std**2 * z")
        code["batchnorm"] = solutions["batchnorm"].replace("x.var(0, unbiased=True)",
                                                           "x.var(0, unbiased=False)")
    else:
        code["batchnorm"] = solutions["batchnorm"].replace(
            "return BatchNormFunction.apply(x, self.weight, self.bias, self.eps)",
            "return torch.nn.functional.batch_norm(x, None, None, self.weight, self.bias, True,"
            " 0.0, self.eps)")
    assert all(code[name] != solutions[name] for name in table), "a variant did not apply"
    return code


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("kinds-course"))


def grade(course, code: dict[str, str] | None = None, timeout: int = 20) -> dict:
    """Grade the 'kinds' notebook with ``code`` in its solution cells; return the JSON report."""
    path = course / "submission.ipynb"
    nbformat.write(notebook(code), path)
    result = gradschool("grade", str(path), "--assignment", ASSIGNMENT, "--json",
                        "--timeout", str(timeout), cwd=course)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # the kernel's noise stays out of the grader's
    return json.loads(result.stdout)


def _by_exercise(report: dict) -> dict[str, dict]:
    return {t["id"].removesuffix("-tests"): t for t in report["tests"]}


def test_reference_solutions_get_full_marks(course):
    report = grade(course)
    assert report["score"] == report["max_score"] == sum(POINTS.values())
    assert {t["status"] for t in report["tests"]} == {"passed"}, report


@pytest.mark.parametrize("table", [WRONG, DELEGATING], ids=["wrong", "delegating"])
def test_each_wrong_implementation_loses_its_points(course, table):
    report = grade(course, _variants(table, SOLUTIONS))
    assert report["score"] == 0, report
    for exercise, test in _by_exercise(report).items():
        assert test["status"] == "failed", test
        assert table[exercise][1] in test["message"], test
