"""Hidden checks: the instructor's side of grading, run in the grader's own process.

An assignment's hidden checks live in ``autograder/checks/<assignment>.py`` (never released,
never installed). That file defines ``checks = HiddenChecks()`` and registers, for every
autograded test cell of the notebook, one or more functions that receive the submission's
:class:`~gradschool.instructor.kernel.GradingKernel`::

    checks = HiddenChecks()

    @checks.test("adam-tests", forbid=["torch.optim.Adam", "torch.optim.adam"])
    def adam_matches_torch(kernel):
        for device in kernel.devices:     # "cpu", and "cuda" when the sandboxed kernel can use it
            got = kernel.probe("opt = Adam([w], lr=lr) ...; result = w", w=w0, lr=1e-3)
            assert_close(got, reference(w0), name="w after 300 steps")  # AssertionError: failed

A check passes when it returns; it fails with its message when it raises ``AssertionError``, or
when a probe fails (the submission raised, timed out, died). The grader makes the inputs, computes
the expected values itself and compares in its own process: nothing the submission does to its
kernel (patching torch, the gradschool modules, returning objects with a lying ``__eq__``) reaches
the comparison. Probe results come back on the CPU: a probe that needs to know where a tensor was
returns ``t.device.type``.

``forbid`` lists what the exercise must implement rather than reach (see
:mod:`gradschool.delegation` for the entries and what counts): before the checks, the exercise's
code is read for it; during every probe of the test, the dotted entries that name callables are
tripwires, and the graded names must be the student's own code (:mod:`gradschool.instructor.probe`).
``stand_ins`` maps names of *other* exercises' functions to the source of a known-good version,
in place during every probe of the test, so that one mistake costs one test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Check = Callable[..., None]


@dataclass
class HiddenChecks:
    """The hidden checks of one assignment, by the grade_id of the test cell they grade."""

    #: grade_id -> the check functions of that test cell, run in order.
    functions: dict[str, list[Check]] = field(default_factory=dict)
    #: grade_id -> the entries the exercise of that test cell must not reach.
    forbidden_names: dict[str, set[str]] = field(default_factory=dict)
    #: grade_id -> {name: source of a known-good stand-in} used by every probe of that test.
    stand_ins: dict[str, dict[str, str]] = field(default_factory=dict)

    def test(self, grade_id: str, *, forbid: Iterable[str] = (),
             stand_ins: Mapping[str, str] | None = None) -> Callable[[Check], Check]:
        """Decorator: register a check of test cell ``grade_id``."""

        def register(check: Check) -> Check:
            self.functions.setdefault(grade_id, []).append(check)
            self.forbidden_names.setdefault(grade_id, set()).update(forbid)
            self.stand_ins.setdefault(grade_id, {}).update(stand_ins or {})
            return check

        return register

    def declarations(self) -> dict[str, dict[str, list[str]]]:
        """test grade_id -> {"forbid": its forbidden entries, "stand_ins": the names it replaces},
        sorted, for the tests that forbid anything: what the release writes into the student's
        notebook (``gradschool check`` reads it)."""
        return {test: {"forbid": sorted(names),
                       "stand_ins": sorted(self.stand_ins.get(test, {}))}
                for test, names in sorted(self.forbidden_names.items()) if names}


def load_hidden_checks(path: Path) -> HiddenChecks:
    """Import the checks file at ``path`` and return its ``checks``."""
    spec = importlib.util.spec_from_file_location(f"gradschool_hidden_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = getattr(module, "checks", None)
    if not isinstance(checks, HiddenChecks):
        raise TypeError(f"{path} does not define `checks = HiddenChecks()`")
    return checks
