"""nbgrader preprocessors that make ``nbgrader autograde`` grade outside the submission's reach.

``nbgrader_config.py`` puts them in nbgrader's autograde pipeline, so ``gradschool grade``,
``gradschool grade-all`` and plain ``nbgrader autograde`` all grade the same way:

- :class:`NoteTamperedTests` (sanitize step, before nbgrader's ``OverwriteCells``) records which
  test cells the submission deleted, edited or turned into Markdown; nbgrader then puts them back.
- :class:`GradeOutsideTheKernel` replaces nbgrader's ``Execute``. It runs the notebook in a
  :class:`~gradschool.instructor.kernel.GradingKernel` and, right after each autograded test cell,
  runs that test's hidden checks (``autograder/checks/<assignment>.py``) in the grader's process.
  The test cell's outputs are then replaced by one verdict: a line on stdout when it passed, an
  error output whose message says what failed otherwise. nbgrader's ``SaveAutoGrades`` scores the
  cell from that (an error output means 0 points), so stderr, huge outputs or a faked traceback in
  the student's kernel change nothing, and no hidden test code ever reaches the feedback.

Before a test cell runs, the kernel's global torch settings are reset (a student's
``torch.set_default_device`` or TF32 switch must not change a test). Before its hidden checks,
the exercise's own code is read for delegation (:mod:`gradschool.delegation`: only the code the
graded names reach, never a scratch cell that merely calls them), and every probe of its checks
runs under the test's guard and stand-ins (:mod:`gradschool.instructor.probe`). Which cells are
the student's: every code cell whose source is not a locked cell of the assignment as the
gradebook recorded it at release; the graded names are what the exercise's solution cells define
(``<name>-solution`` for the test ``<name>-tests``).

The verdict is also stored in the cell's metadata, ``metadata.gradschool = {"status": ...,
"message": ...}``, the status a :class:`~gradschool.instructor.status.Status` of a test.

The kernel runs in the sandbox of :mod:`gradschool.instructor.sandbox` unless ``sandbox`` is
False, under the time budgets of :mod:`gradschool.instructor.budgets`; the notebook's metadata
records both, and where the hidden checks ran, ``metadata.gradschool = {"sandbox": bool,
"limits": "...", "devices": ["cpu", ...], "notes": [...]}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from gradschool.cells import VERDICT, grade_id, is_locked, is_solution_cell, is_test_cell, points
from gradschool.delegation import StudentCode, graded_names
from gradschool.instructor.budgets import load_budgets
from gradschool.instructor.hidden_checks import HiddenChecks, load_hidden_checks
from gradschool.instructor.kernel import GradingKernel, Outcome, ProbeFailed
from gradschool.instructor.probe import Guard
from gradschool.instructor.profiling import step
from gradschool.instructor.sandbox import Sandbox
from gradschool.instructor.status import Status

#: The notebook metadata key where NoteTamperedTests leaves what it found for the grader.
RESTORED = "gradschool_restored"


class NoteTamperedTests(NbGraderPreprocessor):
    """Record in the notebook's metadata which test cells were deleted, edited or turned into
    Markdown, before nbgrader's OverwriteCells restores them."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
            solutions = {c.name for c in notebook.solution_cells}
            tests = {c.name for c in notebook.grade_cells if c.cell_type == "code"} - solutions
            originals = {c.name: c.source for c in notebook.source_cells if c.name in tests}
        submitted = {grade_id(c): c for c in nb.cells if grade_id(c) is not None}
        changes = {}
        for name, source in originals.items():
            cell = submitted.get(name)
            if cell is None:
                changes[name] = "deleted"
            elif cell.cell_type != "code":
                changes[name] = f"turned into {cell.cell_type.capitalize()}"
            elif cell.source.strip() != source.strip():
                changes[name] = "edited"
        nb.metadata[RESTORED] = changes
        return nb, resources


@dataclass
class Exercises:
    """What the instructor's notebook says about a submission's cells."""

    trusted: set[str]
    """Sources of the locked code cells, as the gradebook recorded them at release: instructor
    code, never the student's."""
    solutions: dict[str, str]
    """grade_id -> source of each solution code cell of the instructor's (source) notebook."""

    @classmethod
    def of(cls, nb, resources: dict, config) -> Exercises:
        """From nbgrader's gradebook and the course's source notebook; a notebook graded outside
        ``nbgrader autograde`` (no gradebook in ``resources``) vouches for itself."""
        info = resources["nbgrader"]
        if "db_url" not in info:
            return cls({c.source for c in nb.cells if c.cell_type == "code" and is_locked(c)},
                       {grade_id(c): c.source for c in nb.cells if is_solution_cell(c)})
        with Gradebook(info["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
            trusted = {c.source or "" for c in notebook.source_cells
                       if c.cell_type == "code" and c.locked}
        course = CourseDirectory(config=config)
        source = Path(course.format_path(course.source_directory, ".", info["assignment"]),
                      f"{info['notebook']}.ipynb")
        solutions = {grade_id(c): c.source for c in nbformat.read(source, as_version=4).cells
                     if is_solution_cell(c)}
        return cls(trusted, solutions)

    def graded(self, test_id: str) -> tuple[str, ...]:
        """The names the exercise of test ``test_id`` defines."""
        prefix = test_id.removesuffix("-tests") + "-"
        return tuple(n for cell, source in sorted(self.solutions.items())
                     if cell.startswith(prefix) for n in graded_names(source))

    def student_code(self, nb) -> StudentCode:
        return StudentCode(((i, c.source) for i, c in enumerate(nb.cells)
                            if c.cell_type == "code" and c.source not in self.trusted),
                           context=self.trusted)


class GradeOutsideTheKernel(NbGraderPreprocessor):
    """Run the notebook and grade each test cell with its hidden checks (see module doc)."""

    checks_directory = Unicode(
        help="Folder of the hidden checks files, <assignment>.py each."
    ).tag(config=True)
    timeout = Integer(60, help="Seconds allowed to each cell and each probe.").tag(config=True)
    notebook_timeout = Integer(
        900, help="Seconds allowed to the whole notebook; cells after that are not run."
    ).tag(config=True)
    memory_limit_mb = Integer(
        4096, help="Memory limit (RLIMIT_DATA) of the kernel in MiB; 0 for none."
    ).tag(config=True)
    output_limit = Integer(
        100_000, help="Characters of output kept per cell; the rest is cut."
    ).tag(config=True)
    max_restarts = Integer(
        3, help="Kernel restarts allowed after timeouts and crashes."
    ).tag(config=True)
    kernel_name = Unicode("python3", help="The kernel to grade in.").tag(config=True)
    calibrate = Bool(True, help="Time budgets from the solution's recorded timings (see "
                     "gradschool.instructor.budgets), capped by `timeout`; False: `timeout` per "
                     "cell and `notebook_timeout`.").tag(config=True)
    sandbox = Bool(True, help="Run the kernel in the bubblewrap sandbox (False: as the grader, "
                   "unsafe).").tag(config=True)
    tmp_size_mb = Integer(512, help="Size of the sandbox's /tmp in MiB.").tag(config=True)
    max_processes = Integer(
        256, help="Processes and threads the sandboxed kernel may have at once."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        assignment = resources["nbgrader"]["assignment"]
        with step("load hidden checks"):
            hidden = load_hidden_checks(Path(self.checks_directory) / f"{assignment}.py")
        changes = nb.metadata.pop(RESTORED, {})
        with step("read the exercises"):
            budgets = load_budgets(Path(self.checks_directory), assignment, timeout=self.timeout,
                                   notebook_timeout=self.notebook_timeout,
                                   override=not self.calibrate)
            exercises = Exercises.of(nb, resources, self.config)
            student = exercises.student_code(nb)
        deadline = time.monotonic() + budgets.notebook
        sandbox = Sandbox(tmp_size_mb=self.tmp_size_mb, max_processes=self.max_processes)
        kernel = GradingKernel(
            nb, Path(resources["metadata"]["path"]), timeout=self.timeout,
            memory_limit_mb=self.memory_limit_mb, output_limit=self.output_limit,
            max_restarts=self.max_restarts, kernel_name=self.kernel_name,
            replay=lambda i: not is_test_cell(nb.cells[i]),
            sandbox=sandbox if self.sandbox else None,
        )
        casualty = None  # the last cell before this test that timed out or killed the kernel
        with kernel:
            for index in range(len(nb.cells)):
                cell = nb.cells[index]
                if cell.cell_type != "code":
                    continue
                left = max(1, round(deadline - time.monotonic()))  # no cell outlasts the notebook
                budget = min(budgets.cell(grade_id(cell)), left)
                if time.monotonic() > deadline:
                    outcome = Outcome(Status.TIMEOUT, f"not run: the notebook's time budget "
                                      f"({budgets.notebook:.0f} s) was used up")
                else:
                    if is_test_cell(cell):
                        kernel.reset()
                    with step("test cells" if is_test_cell(cell) else "cells"):
                        outcome = kernel.run_cell(index, timeout=budget)
                if not is_test_cell(cell):
                    if outcome.status not in (Status.OK, Status.ERROR):
                        casualty = outcome
                    continue
                left = max(1, round(deadline - time.monotonic()))
                kernel.timeout = min(budgets.checks(grade_id(cell)), left)  # each of its probes
                verdict = self._verdict(grade_id(cell), outcome, kernel, hidden,
                                        exercises.graded(grade_id(cell)), student)
                kernel.timeout = self.timeout
                if verdict.status == Status.FAILED and casualty:  # e.g. a NameError: say why
                    verdict = Outcome(casualty.status, f"an earlier cell did not finish "
                                      f"({casualty.message}); then {verdict.message}")
                casualty = None
                _write(cell, *_note_restoration(verdict, changes.get(grade_id(cell))))
            nb.metadata[VERDICT] = {"sandbox": self.sandbox, "limits": budgets.note,
                                    "devices": list(kernel.devices), "notes": list(kernel.notes)}
        return nb, resources

    def _verdict(self, grade_id: str, outcome: Outcome, kernel: GradingKernel,
                 hidden: HiddenChecks, graded: tuple[str, ...], student: StudentCode) -> Outcome:
        if outcome.status == Status.ERROR:
            return Outcome(Status.FAILED, outcome.message)
        if not outcome.ok:
            return outcome
        if not hidden.functions.get(grade_id):
            return Outcome(Status.GRADER_ERROR,
                           f"no hidden checks for {grade_id}: tell the instructor")
        forbidden = tuple(sorted(hidden.forbidden_names.get(grade_id, set())))
        stand_ins = dict(hidden.stand_ins.get(grade_id, {}))
        with step("delegation reading"):
            finding = student.delegation(graded, forbidden, replaced=stand_ins)
        if finding:
            return Outcome(Status.FAILED, finding.message())
        kernel.cuda_healthy(before=grade_id)
        kernel.guard = Guard(graded, forbidden, stand_ins)
        try:
            with step("hidden checks (grader)"):
                return self._run_checks(grade_id, kernel, hidden)
        finally:
            kernel.guard = Guard()

    def _run_checks(self, grade_id: str, kernel: GradingKernel, hidden: HiddenChecks) -> Outcome:
        for check in hidden.functions[grade_id]:
            try:
                check(kernel)
            except AssertionError as exc:
                return Outcome(Status.FAILED, _first_line(exc) or "a hidden check failed")
            except ProbeFailed as exc:
                status = Status.FAILED if exc.outcome.status == Status.ERROR else exc.outcome.status
                return Outcome(status, exc.outcome.message)
            except Exception as exc:  # noqa: BLE001 - the checks' own bug: say so, grade the rest
                self.log.error("hidden check %s of %s crashed: %r", check.__name__, grade_id, exc)
                return Outcome(Status.GRADER_ERROR, f"the hidden check {check.__name__} crashed "
                               f"({type(exc).__name__}): tell the instructor")
        return Outcome(Status.PASSED)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:500] if lines else ""


def _note_restoration(verdict: Outcome, change: str | None) -> tuple[Outcome, bool]:
    passed = verdict.status == Status.PASSED
    if not change:
        return verdict, passed
    result = "passed" if passed else f"{verdict.status}: {verdict.message}"
    message = f"this test cell was {change}; the original was put back and run: {result}"
    return Outcome(Status.RESTORED, message), passed


def _write(cell, verdict: Outcome, passed: bool) -> None:
    """Replace the outputs of test ``cell`` by the verdict nbgrader will score."""
    worth = points(cell)
    if passed:
        text = f"passed ({worth:g}/{worth:g} points)" + (
            f": {verdict.message}" if verdict.message else "")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    else:
        name = "TestFailed" if verdict.status == Status.FAILED else "".join(
            part.capitalize() for part in str(verdict.status).split("_"))
        cell.outputs = [nbformat.v4.new_output(
            "error", ename=name, evalue=verdict.message,
            traceback=[f"{name}: {verdict.message} (0/{worth:g} points)"])]
    cell.metadata[VERDICT] = {"status": str(verdict.status), "message": verdict.message}
