"""Submissions as students make them, for any assignment of the course, graded two ways.

End to end: a submission is the released notebook (``course/<id>/<id>.ipynb``) with its solution
cells filled in (by the reference solution taken from ``solutions/``, by known-wrong code, by an
attack) and extra cells a student adds; it is graded by the real ``gradschool grade`` command, and
its JSON report is read back (:func:`grade_here` grades the same way in the test's own process,
and can check that every cell but the test cells ran clean)::

    code = {**reference_code(ID), "Adam": WRONG_ADAM}
    report = grade_json(make_submission(tmp_path, ID, code))
    assert results_by_function(report, ID)["Adam"]["status"] == "failed"

In process, for single mistakes (a whole grade costs 15 to 40 s, this well under one):
:func:`hidden_verdict` runs one test's delegation reading and hidden checks on the given cells,
through :class:`InProcessKernel`, which executes the probes here with the grader's own runner
(guard, stand-ins, devices)::

    assert hidden_verdict(ID, "adam-tests", [REFERENCE["Adam"]]) == ""
    assert "bias correction" in hidden_verdict(ID, "adam-tests", [WRONG_ADAM])
"""

from __future__ import annotations

import json
import linecache
import os
import re
import sys
import tempfile
import types
from pathlib import Path

import nbformat
import torch
from conftest import ROOT, gradschool

from gradschool.cells import grade_id, is_solution_cell, is_test_cell
from gradschool.delegation import StudentCode, graded_names

DEFINITION = re.compile(r"^(?:def|class) (\w+)\b", flags=re.M)
#: Set by ``gradschool gpu-check`` to "cpu,cuda": then every grading below must have run its
#: hidden checks on exactly these devices (on a GPU, a grade that silently fell back to the CPU
#: proves nothing about CUDA).
EXPECT_DEVICES = "GRADSCHOOL_EXPECT_DEVICES"


def solution_notebook(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str) -> Path:
    return ROOT / "course" / assignment / f"{assignment}.ipynb"


def solution_cells(nb) -> dict[str, int]:
    """Name of each top-level function or class a solution cell defines -> that cell's index."""
    return {name: i for i, cell in enumerate(nb.cells) if is_solution_cell(cell)
            for name in DEFINITION.findall(cell.source)}


def reference_code(assignment: str) -> dict[str, str]:
    """Defined name -> the source of the solution cell defining it, without solution markers."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    return {name: "\n".join(line for line in nb.cells[i].source.splitlines()
                            if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
            for name, i in solution_cells(nb).items()}


def fill_in(assignment: str, code: dict[str, str]):
    """The released notebook of ``assignment`` with the cell defining each name of ``code``
    replaced by ``code[name]`` (after an ``import torch``)."""
    nb = nbformat.read(release_notebook(assignment), as_version=4)
    cells = solution_cells(nb)
    unknown = code.keys() - cells.keys()
    assert not unknown, f"no solution cell of {assignment} defines {sorted(unknown)}"
    for name, source in code.items():
        nb.cells[cells[name]].source = "import torch\n" + source.strip() + "\n"
    return nb


def edited(code: dict[str, str], name: str, *pairs: str) -> str:
    """``code[name]`` with each ``old`` of ``pairs`` (old, new, old, new, ...; each must occur)
    replaced by its ``new``: a known mistake written as an edit of the reference."""
    source = code[name]
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert old in source, f"{old!r} is not in the reference {name}"
        source = source.replace(old, new)
    return source


def make_submission(tmp_path: Path, assignment: str, code: dict[str, str],
                    name: str = "submission.ipynb") -> Path:
    """Write :func:`fill_in`'s notebook to ``tmp_path / name``; return its path."""
    path = tmp_path / name
    nbformat.write(fill_in(assignment, code), path)
    return path


def assert_expected_devices(devices: list[str], notes: list[str]) -> None:
    """When :data:`EXPECT_DEVICES` is set, the hidden checks ran on exactly those devices."""
    expected = os.environ.get(EXPECT_DEVICES)
    if expected:
        assert devices == expected.split(","), (
            f"the hidden checks ran on {devices}, not on {expected.split(',')}: "
            f"{'; '.join(notes) or 'no note'}")


def grade_json(path: Path, *args: str) -> dict:
    """``gradschool grade PATH --json ARGS``: exit 0 and exactly one JSON object on stdout
    (with :func:`assert_expected_devices`)."""
    result = gradschool("grade", str(path), "--json", *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert_expected_devices(report["devices"], report["notes"])
    return report


def _graded_here(path: Path, assignment: str | None) -> tuple:
    """(report, autograded notebook): ``path`` graded as ``gradschool grade`` grades it, in this
    process (nbgrader's and torch's imports paid once per test worker), with
    :func:`assert_expected_devices`."""
    from gradschool.instructor.course import Course
    from gradschool.instructor.grade import AUTOGRADED, grade_notebook

    with tempfile.TemporaryDirectory(prefix="gradschool-test-") as tmp:
        report = grade_notebook(Course.at(ROOT), path, assignment, artifacts=Path(tmp))
        graded = nbformat.read(Path(tmp) / AUTOGRADED, as_version=4)
    assert_expected_devices(report.devices, report.notes)
    return report, graded


def _raised(graded, may_raise: set[str] = frozenset()) -> list[str]:
    """The cells of the course (locked or solution, not a test, not in ``may_raise``) of an
    autograded notebook that raised; the cells a student added may raise."""
    return [f"cell {i} ({cell.id}): {out.ename}: {out.evalue}"
            for i, cell in enumerate(graded.cells)
            if cell.cell_type == "code" and "nbgrader" in cell.metadata
            and not is_test_cell(cell) and cell.id not in may_raise
            for out in cell.outputs if out.output_type == "error"]


def grade_here(path: Path, assignment: str | None = None, *, runs_clean: bool) -> dict:
    """The JSON report of ``path`` graded in this process (see :func:`_graded_here`). With
    ``runs_clean``, also assert that no cell of the course but its tests raised: the notebook
    ran top to bottom (what running the solution notebooks under nbval checked, here at no
    extra cost)."""
    report, graded = _graded_here(path, assignment)
    assert not (runs_clean and _raised(graded)), _raised(graded)
    return json.loads(report.to_json())


def grade_released_stub(assignment: str) -> str:
    """The released notebook graded as it is, in this process: 0 points, and every cell that
    does not depend on an exercise ran clean (those :func:`validation_copy` does not tag: what
    a student's first "Run All" must get through). Returns the report's table."""
    from gradschool.instructor.release import MAY_RAISE_TAG, validation_copy

    path = release_notebook(assignment)
    report, graded = _graded_here(path, assignment)
    tagged = validation_copy(nbformat.read(path, as_version=4))
    may_raise = {c.id for c in tagged.cells if MAY_RAISE_TAG in c.metadata.get("tags", [])}
    assert may_raise and not _raised(graded, may_raise), _raised(graded, may_raise)
    table = report.to_table()
    assert re.search(rf"^{assignment}: 0 / \d+ points$", table, flags=re.M), table
    return table


def results_by_function(report: dict, assignment: str) -> dict[str, dict]:
    """Each defined name's test result: the first graded test cell after its solution cell."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    tests = {t["id"]: t for t in report["tests"]}
    out = {}
    for name, i in solution_cells(nb).items():
        following = (grade_id(c) for c in nb.cells[i + 1:])
        found = next((g for g in following if g in tests), None)
        if found is not None:
            out[name] = tests[found]
    return out


def checks_of(assignment: str):
    """The assignment's hidden checks, loaded as the grader loads them."""
    from gradschool.instructor import load_hidden_checks

    return load_hidden_checks(ROOT / "autograder" / "checks" / f"{assignment}.py")


def locked_sources(assignment: str, *ids: str) -> list[str]:
    """The sources of the solution notebook's cells with these grade_ids, in the given order."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    by_id = {grade_id(c): c.source for c in nb.cells}
    return [by_id[i] for i in ids]


#: What every notebook's setup cell imports (the trusted context of an in-process kernel).
SETUP = "import math\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F\n"


class InProcessKernel:
    """A stand-in for the grading kernel: runs the cells, then each probe, in this process.

    Probes go through the grader's own runner (``gradschool.instructor.probe``), so the guard
    (tripwires, graded names), the stand-ins and the device marks behave as in a real grade; only
    the sandbox and the time limits are missing. Use it for code written by the tests only.
    """

    def __init__(self, *sources: str, context: tuple[str, ...] = (SETUP,)) -> None:
        from gradschool.instructor import Guard

        self.main = types.ModuleType("__main__")
        self.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        self.guard = Guard()
        for i, source in enumerate((*context, *sources)):
            name = f"<cell {id(self)}-{i}>"
            linecache.cache[name] = (len(source), None, source.splitlines(True), name)
            self._run(compile(source, name, "exec"))

    def _run(self, code) -> None:
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = self.main
        try:
            exec(code, self.main.__dict__)
        finally:
            sys.modules["__main__"] = saved

    def probe(self, code: str, **inputs):
        from gradschool.instructor import Outcome, ProbeFailed
        from gradschool.instructor.kernel import read_result
        from gradschool.instructor.probe import answer, probe_cell

        with tempfile.TemporaryDirectory(prefix="gradschool-inprocess-") as folder:
            source, target = Path(folder, "in.pt"), Path(folder, "out.pt")
            torch.save(inputs, source)
            try:
                self._run(probe_cell(code, str(source), str(target), self.guard))
            except Exception as exc:  # what the kernel reports as an error
                raise ProbeFailed(Outcome("error", f"{type(exc).__name__}: {exc}")) from exc
            return answer(read_result(target))


def graded_of(assignment: str, test_id: str) -> tuple[str, ...]:
    """The names the exercise of ``test_id`` defines, from the solution notebook."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    prefix = test_id.removesuffix("-tests") + "-"
    return tuple(n for c in nb.cells if is_solution_cell(c) and grade_id(c).startswith(prefix)
                 for n in graded_names(c.source))


def hidden_verdict(assignment: str, test_id: str, cells: list[str],
                   context: tuple[str, ...] = (SETUP,)) -> str:
    """What the grader says of test ``test_id`` when the student's code cells are ``cells`` (in
    order, after the trusted ``context``): "" when the delegation reading and every hidden check
    pass, else the failure message."""
    from gradschool.instructor import Guard, ProbeFailed

    checks = checks_of(assignment)
    graded = graded_of(assignment, test_id)
    forbidden = tuple(sorted(checks.forbidden_names.get(test_id, set())))
    stand_ins = dict(checks.stand_ins.get(test_id, {}))
    finding = StudentCode(enumerate(cells), context=context).delegation(graded, forbidden,
                                                                         replaced=stand_ins)
    if finding:
        return finding.message()
    kernel = InProcessKernel(*cells, context=context)
    kernel.guard = Guard(graded, forbidden, stand_ins)
    for check in checks.functions[test_id]:
        try:
            check(kernel)
        except AssertionError as exc:
            return str(exc) or type(exc).__name__
        except ProbeFailed as exc:
            return exc.outcome.message
    return ""
