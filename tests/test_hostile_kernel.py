"""Attacks on the grading kernel, on the small 'kinds' assignment (see tests/kinds/): infinite
loops (also ones that ignore SIGINT), os._exit, a segfault, a memory hog, stderr noise, huge
output, exit() and SystemExit. The affected tests get a clear status, the others keep their
points, and the batch goes on. Several attacks share a submission to keep the suite fast.
"""

from __future__ import annotations

import pytest
from kinds.course import grade, make_course
from kinds.solutions import SOLUTIONS

TIMEOUT = 8  # seconds per cell and probe; the slowest probe of 'kinds' takes well under 1 s

CASES = {
    "loop-crash-stderr-output-memory": (
        {
            "softmax": "def softmax(x, dim=-1):\n    while True:\n        pass\n",
            "dropout": "import os\n\ndef dropout_(x, p, generator=None):\n    os._exit(3)\n",
            "adam": SOLUTIONS["adam"].replace(
                "        return loss",
                "        import sys, warnings\n        print('debug', file=sys.stderr)\n"
                "        warnings.warn('just a warning')\n        return loss"),
            "batchnorm": SOLUTIONS["batchnorm"].replace(
                "    def forward(self, x):",
                "    def forward(self, x):\n        print('x' * 10**7)"),
            "sampler": "def sample_normal(n, mean=0.0, std=1.0, generator=None):\n"
                       "    hog = torch.ones(2**34, dtype=torch.uint8)  # 16 GiB\n"
                       "    return hog[:n].float()\n",
        },
        {"softmax": "timeout", "dropout": "kernel_died", "adam": "passed",
         "batchnorm": "passed", "sampler": "out_of_memory"},
    ),
    "sigint-proof-loop-exit-segfault": (
        {
            "softmax": "import signal\n\ndef softmax(x, dim=-1):\n"
                       "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                       "    while True:\n        pass\n",
            "dropout": SOLUTIONS["dropout"] + "\nexit()\n",
            "adam": SOLUTIONS["adam"].replace("        loss = None", "        raise SystemExit(1)"),
            "batchnorm": SOLUTIONS["batchnorm"] + "\nimport ctypes\nctypes.string_at(0)\n",
        },
        {"softmax": "timeout", "dropout": "passed", "adam": "failed",
         "batchnorm": "kernel_died", "sampler": "passed"},
    ),
}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("kinds-course"))


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_attacks_get_a_status_and_cost_only_their_points(course, case):
    code, expected = CASES[case]
    report = grade(course, code, "--timeout", str(TIMEOUT))
    tests = report["by_exercise"]
    assert {name: t["status"] for name, t in tests.items()} == expected, report
    for test in tests.values():
        assert test["score"] == (test["max_score"] if test["status"] == "passed" else 0), test
        assert test["status"] == "passed" or test["message"], test
