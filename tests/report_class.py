"""A synthetic class of 25 students for notebook 04-dropout, as grade-all's results files,
written by hand: the report's tests and the guide's screenshot (tests/report_screenshot.py)
are made from it.

It has full marks, a zero, wrong answers whose messages differ only in numbers (and one that
differs in words), a timeout, a dead kernel, out of memory, a restored test cell, a notebook
that is not JSON, a student without a notebook, and two results from before grade-all recorded
``seconds``.
"""

from __future__ import annotations

import json
from pathlib import Path

ASSIGNMENT = "04-dropout"
TESTS = {"inverted-dropout-tests": 4.0, "classic-dropout-tests": 2.0,
         "dropout-module-tests": 2.0, "mc-dropout-tests": 3.0}
FUNCTIONS = ("dropout", "classic_dropout", "Dropout", "mc_dropout_predict")  # one per test
MAX_SCORE = sum(TESTS.values())
PASS = ("passed", "")
#: What a hostile message, name or file name could hold: the report must show it, never run it.
INJECTION = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'


def stub(function: str) -> tuple[str, str]:
    return ("failed", f"{function} raised NotImplementedError: replace `raise "
                      "NotImplementedError()` with your code")


def keep_fraction(kept: float) -> tuple[str, str]:
    return ("failed", f"dropout(x, p=0.3): {kept:.4f} of the elements are kept, expected "
                      "0.7 +- 0.004 (p is the probability to drop, not to keep)")


def scale(got: float) -> tuple[str, str]:
    return ("failed", f"dropout(x, p=0.3): kept elements are x * {got:.4g}, expected x * 1.429 "
                      "= x / (1 - p) (inverted dropout scales at training time)")


def eval_mode(row: int, col: int, got: float, want: float) -> tuple[str, str]:
    return ("failed", f"classic_dropout(x, p=0.7, training=False): element [{row}, {col}] is "
                      f"{got:.4g}, expected {want:.4g} = (1 - p) * x")


def results(student: str, verdicts: dict[str, tuple[str, str]], seconds: float | None,
            **extra) -> dict:
    """One student's results file: ``verdicts`` maps test ids to (status, message); missing
    tests passed. Points: full for passed (and a restored cell that passed), else 0."""
    tests = []
    for test_id, points in TESTS.items():
        status, message = verdicts.get(test_id, PASS)
        full = status == "passed" or (status == "restored" and "passed" in message)
        tests.append({"id": test_id, "score": points if full else 0.0, "max_score": points,
                      "status": status, "message": message})
    tests.append({"id": "ensemble-answer", "score": 0.0, "max_score": 2.0, "status": "manual",
                  "message": "graded by a person"})
    data = {"student": student, "source": f"submissions/{student}.ipynb", "sha256": "0" * 64,
            "graded": True, "assignment": ASSIGNMENT,
            "score": sum(t["score"] for t in tests if t["status"] != "manual"),
            "max_score": MAX_SCORE, "tests": tests, "sandbox": True,
            "limits": "per cell max(10 s, 10x its reference time)"}
    if seconds is not None:
        data["seconds"] = seconds
    return data | extra


def not_graded(student: str, source: str, error: str, seconds: float | None) -> dict:
    return {"student": student, "source": source, "sha256": "", "seconds": seconds,
            "graded": False, "error": error, "assignment": ASSIGNMENT, "score": 0.0,
            "max_score": MAX_SCORE, "tests": []}


def synthetic_class() -> list[dict]:
    """The 25 results, in student order."""
    inv, cla, mod, mc = TESTS
    no_mc = stub("mc_dropout_predict")
    full = [results(f"2100{i:02d}", {}, 31.0 + 1.7 * i) for i in range(8)]
    return full + [
        results("210101", {inv: keep_fraction(0.3012)}, 33.4),
        results("210102", {inv: keep_fraction(0.2987)}, 35.1),
        results("210103", {inv: keep_fraction(0.3021), mc: no_mc}, 30.2),
        results("210104", {inv: scale(1.0)}, 34.0),
        results("210105", {inv: scale(0.7)}, 36.8),
        results("210106", {cla: eval_mode(3, 17, 1.52, 0.4561)}, 32.2),
        results("210107", {cla: eval_mode(0, 4, 1.087, 0.3262)}, 33.9),
        results("210108", {cla: ("failed", "classic_dropout(x, p=0.7) returned dtype "
                                           "torch.float32 for a float64 input")}, 37.3),
        results("210109", {mc: ("timeout", "no result within 10 s")}, 71.5),
        results("210110", {mod: ("kernel_died", "the kernel died (signal 11) while running "
                                                "this cell; restarted"), mc: no_mc}, 58.0),
        results("210111", {mc: ("out_of_memory", "over the kernel's memory limit (2048 MiB)")},
                49.6),
        results("210112", {cla: ("restored", "this test cell was edited; the original was put "
                                             "back and run: passed")}, 34.7),
        results("210113", dict(zip(TESTS, map(stub, FUNCTIONS), strict=True)), 12.3),
        results("210114", {inv: scale(1.0), cla: eval_mode(1, 2, 0.9, 0.27)}, None),
        results("210115", {mc: no_mc}, None),
        not_graded("210116", "submissions/210116.ipynb",
                   "submissions/210116.ipynb: not a readable Jupyter notebook (Expecting value: "
                   "line 1 column 1 (char 0))", 0.4),
        not_graded("210117", "submissions/210117/report.pdf",
                   "no .ipynb in the upload (report.pdf)", None),
    ]


def write_class(folder: Path, extra: list[dict] = ()) -> Path:
    """Write ``folder/results/<student>.json`` for the synthetic class and ``extra``; return
    ``folder``."""
    out = Path(folder) / "results"
    out.mkdir(parents=True, exist_ok=True)
    for data in [*synthetic_class(), *extra]:
        (out / f"{data['student']}.json").write_text(json.dumps(data, indent=1))
    return Path(folder)
