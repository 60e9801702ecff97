"""The nbgrader course behind the repository: where its folders are, and nbgrader's steps on it.

Everything goes through the repository's own ``nbgrader_config.py``, so ``gradschool`` and the
plain ``nbgrader`` commands agree on every path. :meth:`Course.scratch` gives the same course with
every writable folder and the gradebook moved into a scratch folder: checks and single-file
grading work there and never touch the real gradebook or ``course/``.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbgrader.api
from alembic.script import ScriptDirectory
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.dbutil import ALEMBIC_DIR
from nbgrader.plugins import CsvExportPlugin
from sqlalchemy.exc import SAWarning
from traitlets.config import Config, PyFileConfigLoader

from gradschool.errors import UserError

CONFIG_FILE = "nbgrader_config.py"


@functools.cache
def alembic_head() -> str:
    """The schema version nbgrader stamps on a gradebook it creates, read by alembic in this
    process. nbgrader's own ``get_alembic_version`` runs the ``alembic heads`` command for it,
    a new Python process that imports nbgrader: 3 s on an idle core, 15 s on a busy one, in
    every process that creates a gradebook (each ``gradschool grade``, each grade-all worker)."""
    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


nbgrader.api.get_alembic_version = alembic_head

_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*:")


class CourseError(UserError):
    """A problem with the course or the command's arguments: one line that says what and how."""


def possessive(assignment_id: str) -> str:
    """``04-dropout's``, ``03-optimizers'``: for messages."""
    return assignment_id + ("'" if assignment_id.endswith("s") else "'s")


def find_root(start: Path | None = None) -> Path:
    """Return the course repository root: the first folder, from ``start`` (default cwd) upwards,
    holding ``nbgrader_config.py`` and ``solutions/``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() and (folder / "solutions").is_dir():
            return folder
    raise CourseError(
        f"no course here: run gradschool inside the course repository "
        f"(a folder with {CONFIG_FILE} and solutions/); looked from {start}"
    )


def load_config(root: Path) -> Config:
    """Load ``root/nbgrader_config.py`` as nbgrader would, but fail loudly if it raises."""
    try:
        return PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    except Exception as exc:  # nbgrader itself would swallow this and use default paths
        raise CourseError(f"{root / CONFIG_FILE} does not load: {exc}") from exc


@dataclass
class Course:
    """The nbgrader course rooted at ``root`` with nbgrader configuration ``config``."""

    root: Path
    config: Config

    @classmethod
    def at(cls, root: Path | None = None) -> Course:
        """The course of the repository containing ``root`` (default: the cwd)."""
        root = find_root(root)
        return cls(root, load_config(root))

    @property
    def directory(self) -> CourseDirectory:
        return CourseDirectory(config=self.config)

    def _folder(self, name: str) -> Path:
        return Path(self.directory.root) / getattr(self.directory, name)

    @property
    def source_dir(self) -> Path:
        return self._folder("source_directory")

    @property
    def release_dir(self) -> Path:
        return self._folder("release_directory")

    @property
    def autograded_dir(self) -> Path:
        return self._folder("autograded_directory")

    @property
    def submitted_dir(self) -> Path:
        return self._folder("submitted_directory")

    @property
    def feedback_dir(self) -> Path:
        return self._folder("feedback_directory")

    @property
    def db_url(self) -> str:
        return self.directory.db_url

    def assignments(self) -> list[str]:
        """The assignment ids: folders of ``solutions/`` holding ``<id>.ipynb``, sorted."""
        return sorted(
            p.name for p in self.source_dir.iterdir() if (p / f"{p.name}.ipynb").is_file()
        )

    def check_assignment(self, assignment_id: str) -> None:
        if assignment_id not in self.assignments():
            known = ", ".join(self.assignments()) or "none"
            raise CourseError(f"unknown assignment {assignment_id!r} (known: {known})")

    def source_notebook(self, assignment_id: str) -> Path:
        return self.source_dir / assignment_id / f"{assignment_id}.ipynb"

    def release_notebook(self, assignment_id: str) -> Path:
        return self.release_dir / assignment_id / f"{assignment_id}.ipynb"

    def relative(self, path: Path) -> str:
        """``path`` relative to the repository root when inside it, for messages."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def scratch(self, folder: Path, db_url: str | None = None) -> Course:
        """This course with release, submissions, grading output, exchange and gradebook in
        ``folder``: the sources stay the repository's own. ``db_url`` keeps another gradebook
        instead (e.g. the course's own, to record an assignment without writing ``course/``)."""
        config = copy.deepcopy(self.config)  # Config(...) copies shallowly: sections are shared
        config.merge(
            Config(
                {
                    "CourseDirectory": {
                        "root": str(folder),
                        "source_directory": str(self.source_dir),
                        "release_directory": "release",
                        "submitted_directory": "submitted",
                        "autograded_directory": "autograded",
                        "feedback_directory": "feedback",
                        "solution_directory": "solution",
                        "db_url": db_url or f"sqlite:///{folder / 'gradebook.db'}",
                    },
                    "Exchange": {"root": str(folder / "exchange")},
                }
            )
        )
        return Course(self.root, config)

    def _prepare_gradebook(self) -> None:
        if self.db_url.startswith("sqlite:///"):  # sqlite creates the file, not its folder
            Path(self.db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    def gradebook(self) -> Gradebook:
        """nbgrader's gradebook of this course (a context manager), created if missing."""
        self._prepare_gradebook()
        return Gradebook(self.db_url, self.directory.course_id)

    def _api(self) -> NbGraderAPI:
        self._prepare_gradebook()
        api = NbGraderAPI(coursedir=self.directory, config=self.config)
        api.log.setLevel(logging.ERROR)
        return api

    def _run(self, step: str, result: dict, what: str) -> None:
        if not result["success"]:
            text = f"{result.get('log') or ''}\n{result.get('error') or ''}"
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            causes = [line for line in lines if _EXCEPTION_LINE.match(line)
                      and "NbGraderException" not in line]  # its message says "see above"
            detail = (causes or lines or ["?"])[-1]
            raise CourseError(f"nbgrader {step} failed for {what}: {detail}")

    def generate(self, assignment_id: str) -> None:
        """nbgrader generate_assignment: write ``<release>/<id>/``, record it in the gradebook."""
        self.check_assignment(assignment_id)
        self._run(
            "generate_assignment", self._api().generate_assignment(assignment_id), assignment_id
        )

    def autograde(self, assignment_id: str, student_id: str, label: str = "") -> None:
        """nbgrader autograde of ``<submitted>/<student>/<id>/`` (generate the assignment first);
        an error message calls the submission ``label`` (default: the student id)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, harmless
            result = self._api().autograde(assignment_id, student_id)
        self._run("autograde", result, f"{assignment_id} of {label or student_id}")

    def generate_feedback(self, assignment_id: str, student_id: str | None = None,
                          label: str = "") -> None:
        """nbgrader generate_feedback: HTML of the autograded notebooks in ``<feedback>/``, of one
        student or (``student_id`` None) of all; errors call the submission ``label``."""
        result = self._api().generate_feedback(assignment_id, student_id)
        what = f"{assignment_id} of {label or student_id}" if label or student_id else assignment_id
        self._run("generate_feedback", result, what)

    def needs_manual_grade(self, assignment_id: str) -> list[str]:
        """The students whose submission of ``assignment_id`` has written answers not graded by
        hand yet (their feedback shows 0 points for them)."""
        with warnings.catch_warnings(), self.gradebook() as gradebook:
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, harmless
            return sorted(s.student.id for s in gradebook.assignment_submissions(assignment_id)
                          if s.needs_manual_grade)

    def export(self, to: Path) -> None:
        """nbgrader export: one CSV row per student and assignment of the gradebook, into ``to``
        (autograded and manual points together, as ``nbgrader export`` writes them)."""
        plugin = CsvExportPlugin(config=self.config)
        plugin.to = str(to)
        with warnings.catch_warnings(), self.gradebook() as gradebook:
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, harmless
            plugin.export(gradebook)
