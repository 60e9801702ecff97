"""What a grading worker on another machine needs of the course, shipped from the client.

A :class:`Bundle` holds, for one assignment, every file grading reads from the course: the
assignment's source folder (nbgrader generates the assignment from it), the other assignments'
solution notebooks (to name the assignment a stray notebook looks like, as a local grading
does), the hidden checks and their recorded timings (the time budgets), and
``nbgrader_config.py`` (the limits). It is content-addressed: its :attr:`Bundle.digest` is the
sha256 of every path and content, so a worker needs no course checkout, and a changed check or
solution is a new bundle that no worker confuses with the old one.

Files, by their path in the bundle (and in the folder :meth:`Bundle.unpack` writes)::

    nbgrader_config.py
    source/<assignment>/...             every file of solutions/<assignment>/, nbgrader's
                                        ignored ones (checkpoints, caches) left out
    source/<other>/<other>.ipynb        each other assignment's solution notebook
    checks/<assignment>.py              the hidden checks
    checks/<assignment>.timings.json    the reference timings, when recorded

:func:`unpacked_course` is the :class:`~gradschool.instructor.course.Course` of an unpacked
bundle: the client's configuration, with the sources and checks read from the bundle.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

from gradschool.instructor.budgets import timings_path
from gradschool.instructor.course import CONFIG_FILE, Course, load_config

SOURCE, CHECKS = "source", "checks"


@dataclass(frozen=True)
class Bundle:
    """The files of one assignment a worker grades with: bundle path -> content."""

    assignment: str
    files: dict[str, bytes]

    @functools.cached_property
    def digest(self) -> str:
        """sha256 (hex) of the assignment id and every path and content, in path order."""
        total = hashlib.sha256(self.assignment.encode())
        for path in sorted(self.files):
            total.update(f"\0{path}\0{hashlib.sha256(self.files[path]).hexdigest()}".encode())
        return total.hexdigest()

    @classmethod
    def of(cls, course: Course, assignment: str) -> Bundle:
        """The bundle of ``assignment`` (checked to exist) from ``course`` (see the module doc)."""
        course.check_assignment(assignment)
        files = {CONFIG_FILE: (course.root / CONFIG_FILE).read_bytes()}
        folder = course.source_dir / assignment
        ignored = course.directory.ignore
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in
                                          relative.parts for pattern in ignored):
                files[f"{SOURCE}/{assignment}/{relative.as_posix()}"] = path.read_bytes()
        for other in set(course.assignments()) - {assignment}:
            files[f"{SOURCE}/{other}/{other}.ipynb"] = course.source_notebook(other).read_bytes()
        checks = Path(course.config.GradeOutsideTheKernel.checks_directory)
        for path in (checks / f"{assignment}.py", timings_path(checks, assignment)):
            if path.is_file():
                files[f"{CHECKS}/{path.name}"] = path.read_bytes()
        return cls(assignment, files)

    def unpack(self, parent: Path) -> Path:
        """Write the files into ``parent/<digest>/`` unless they are there; return that folder.
        Written into a temporary sibling, then renamed: a worker killed meanwhile leaves no half
        folder, and two processes unpacking at once both end with the same complete one."""
        target = Path(parent) / self.digest
        if target.is_dir():
            return target
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.digest[:12]}-", dir=parent))
        for name, content in self.files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(content)
        try:
            staging.rename(target)
        except OSError:  # another process was first: its copy is the same
            shutil.rmtree(staging, ignore_errors=True)
        return target


def unpacked_course(folder: Path) -> Course:
    """The course of a bundle unpacked in ``folder``: its ``nbgrader_config.py``, with the
    course root, sources and hidden checks in ``folder``. Grading writes only into scratch
    folders (:meth:`Course.scratch`), never into ``folder``."""
    folder = Path(folder)
    config = load_config(folder)
    config.merge(Config({
        "CourseDirectory": {"root": str(folder), "source_directory": SOURCE,
                            "db_url": f"sqlite:///{folder / 'gradebook.db'}"},
        "GradeOutsideTheKernel": {"checks_directory": str(folder / CHECKS)},
    }))
    return Course(folder, config)
