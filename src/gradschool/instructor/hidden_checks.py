"""Hidden checks: the instructor's side of grading, run in the grader's own process.

An assignment's hidden checks live in ``autograder/checks/<assignment>.py`` (never released,
never installed). That file defines ``checks = HiddenChecks()`` and registers, for every
autograded test cell of the notebook, one or more functions that receive the submission's
:class:`~gradschool.instructor.kernel.GradingKernel`::

    checks = HiddenChecks()

    @checks.test("adam-tests", forbid=["Adam", "adam"])
    def adam_matches_torch(kernel):
        got = kernel.probe("opt = MyAdam([w], lr=lr) ...; result = w", w=w0, lr=1e-3)
        assert_close(got, reference(w0), name="w after 300 steps")   # AssertionError: failed

A check passes when it returns; it fails with its message when it raises ``AssertionError``, or
when a probe fails (the submission raised, timed out, died). The grader makes the inputs, computes
the expected values itself and compares in its own process: nothing the submission does to its
kernel (patching torch, the gradschool modules, returning objects with a lying ``__eq__``) reaches
the comparison.

``forbid`` names what an exercise must implement rather than call (``Adam``, ``clip_grad_norm_``):
a submission whose own code mentions one of them, or uses ``exec``/``eval``/``__import__``/
``importlib``/``getattr`` with a computed name to reach around the check, loses the test's points.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager

Check = Callable[..., None]

#: Ways to call something without naming it in the source.
DYNAMIC = {"exec", "eval", "compile", "__import__", "importlib", "globals", "vars", "__dict__",
           "__builtins__"}


@dataclass
class HiddenChecks:
    """The hidden checks of one assignment, by the grade_id of the test cell they grade."""

    #: grade_id -> the check functions of that test cell, run in order.
    functions: dict[str, list[Check]] = field(default_factory=dict)
    #: grade_id -> the names the exercise of that test cell must not use.
    forbidden_names: dict[str, set[str]] = field(default_factory=dict)

    def test(self, grade_id: str, *, forbid: Iterable[str] = ()) -> Callable[[Check], Check]:
        """Decorator: register a check of test cell ``grade_id``."""

        def register(check: Check) -> Check:
            self.functions.setdefault(grade_id, []).append(check)
            self.forbidden_names.setdefault(grade_id, set()).update(forbid)
            return check

        return register


def load_hidden_checks(path: Path) -> HiddenChecks:
    """Import the checks file at ``path`` and return its ``checks``."""
    spec = importlib.util.spec_from_file_location(f"gradschool_hidden_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = getattr(module, "checks", None)
    if not isinstance(checks, HiddenChecks):
        raise TypeError(f"{path} does not define `checks = HiddenChecks()`")
    return checks


def _names(source: str) -> set[str]:
    """Every identifier, attribute and string constant of ``source`` (IPython syntax allowed)."""
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.update(node.name.split("."))
            if node.asname:
                found.add(node.asname)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update({node.value, *node.value.split(".")})  # "torch.optim.adam" too
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr")
              and not (len(node.args) > 1 and isinstance(node.args[1], ast.Constant))):
            found.add("getattr with a computed name")
    return found


def delegation(sources: Iterable[str], forbidden: set[str]) -> str:
    """Why code made of ``sources`` may not earn a test that forbids ``forbidden``, or ""."""
    if not forbidden:
        return ""
    used = set().union(*(_names(s) for s in sources))
    named = sorted(used & forbidden)
    if named:
        return (f"uses {', '.join(named)}: this exercise is to implement it yourself, "
                "not to call or subclass torch's")
    dynamic = sorted(used & (DYNAMIC | {"getattr with a computed name"}))
    if dynamic:
        return (f"uses {', '.join(dynamic)}: not allowed in code that implements something "
                "torch already has (it could reach torch's implementation)")
    return ""
