"""What happened to a cell, a probe or a test: the statuses every grading tool reports.

A cell or a probe run in the grading kernel ends ``OK``, ``ERROR`` (the code raised), ``TIMEOUT``,
``KERNEL_DIED`` or ``OUT_OF_MEMORY``. A graded test cell ends ``PASSED`` or ``FAILED``, one of the
kernel's ``TIMEOUT``/``KERNEL_DIED``/``OUT_OF_MEMORY``, ``RESTORED`` (the submission deleted or
edited the test cell: the original was put back and run; the message says whether it passed) or
``GRADER_ERROR`` (the hidden checks themselves are broken: no points, fix and regrade). A written
answer is ``MANUAL``: a person grades it. Statuses are strings in JSON reports and cell metadata.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    OK = "ok"
    ERROR = "error"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KERNEL_DIED = "kernel_died"
    OUT_OF_MEMORY = "out_of_memory"
    RESTORED = "restored"
    GRADER_ERROR = "grader_error"
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value
