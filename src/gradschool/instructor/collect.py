"""Collect submissions: turn an LMS download into one notebook per student, for autograding.

``collect(submissions, workdir)`` takes a folder or a ``.zip`` and returns one :class:`Submission`
per student, sorted by student id. It does no grading. It looks at every file, so that a student
who uploaded no notebook (a PDF, Moodle's online text, a zip inside the zip) is still accounted for,
but extracts only the ``.ipynb`` members of a zip, never outside ``workdir``; a folder is read where
it lies.

The student id comes from each file's path relative to the folder or zip root. When no
``pattern`` is given, these layouts are tried in order:

1. Moodle: one top folder per submission, the id is the digits, the name what precedes them::

       Ann Lee_123456_assignsubmission_file_/hw1.ipynb        -> 123456, "Ann Lee"
       Ann Lee_123456_assignsubmission_onlinetext_/x.html     -> 123456, "Ann Lee"

2. Canvas: flat files ``<name>[_LATE]_<userid>_<submissionid>_<original name>``::

       leeann_LATE_98765_4321_01-symmetry-breaking-1.ipynb    -> 98765, "leeann", late
       leeann_98765_4321_hw.ipynb                             -> 98765, "leeann"

3. A folder per student (nbgrader's ``submitted/<student>/<assignment>/`` layout included)::

       ann/hw1.ipynb                                          -> ann
       ann/ps1/hw1.ipynb                                      -> ann

4. A flat folder of notebooks named after their student::

       ann.ipynb                                              -> ann

A custom ``pattern`` is a regular expression with a named group ``student``, searched
(``re.search``) in the POSIX relative path, e.g. ``r"(?P<student>s\\d+)"``; optional groups
``name`` (the student's name) and ``late`` (non-empty when the LMS marked the upload late) are
read too. Notebooks that match no pattern are skipped with a log line; other files that match
none are ignored.

When a student has several notebooks (attempts, re-uploads, a stray ``Untitled.ipynb``), the one
graded is, in this order of preference: one that carries the assignment's graded cells (the
nbgrader ``grade_id`` s of its solution and test cells), one whose file name contains the
assignment id, the latest (by the zip member's timestamp, or the file's mtime in a folder; ties go
to the higher trailing attempt number, ``hw-2`` over ``hw-1`` over ``hw``, then to the name). The
others are reported in :attr:`Submission.also_uploaded` with the reason they were not graded.

Student ids are made safe as folder names: characters outside ``[A-Za-z0-9_.-]`` become ``_``.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import nbformat

from gradschool.cells import grade_ids
from gradschool.instructor.course import CourseError, possessive

MAX_ZIP_BYTES = 2 * 2**30
"""Largest total uncompressed size of the notebooks a zip may hold."""

MAX_NOTEBOOK_BYTES = 100 * 2**20
"""Largest single notebook extracted from a zip; bigger ones are skipped."""

DEFAULT_PATTERNS = (
    # Moodle: "<Full Name>_<id>_assignsubmission_file_/<file>"
    r"^(?P<name>[^/]+)_(?P<student>\d+)_assignsubmission_(?:file|onlinetext)_/",
    # Canvas: "<name>[_LATE]_<userid>_<submissionid>_<original name>", flat
    r"^(?P<name>[a-z]+)(?P<late>_LATE)?_(?P<student>\d+)_\d+_[^/]+$",
    # A folder per student: "<student>/<anything>"
    r"^(?P<student>[^/]+)/",
    # A flat folder: "<student>.ipynb"
    r"^(?P<student>[^/]+)\.(?i:ipynb)$",
)
"""The layouts tried in order when ``collect`` is given no pattern (see the module docstring)."""

SHOWN_FILES = 3
"""How many of a student's other files a "no .ipynb" reason names."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ATTEMPT = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class NotGraded:
    """A notebook a student uploaded beside the one graded."""

    file: str
    """Its file name in the upload, e.g. ``Untitled.ipynb``."""
    reason: str
    """Why it was not graded, e.g. ``none of 04-dropout's graded cells``."""


@dataclass(frozen=True)
class Submission:
    """What one student uploaded: the one notebook to grade, or why there is none."""

    student: str
    """Student id, safe as a folder name: ``[A-Za-z0-9_.-]+``."""
    path: Path | None
    """The notebook on disk (extracted into ``workdir`` for a zip); None when there is none."""
    source: str
    """Where it came from, for the log: ``folder/x.ipynb`` or ``moodle.zip:Ann_1_.../a.ipynb``;
    "" when there is no notebook."""
    name: str = ""
    """The student's name as the LMS wrote it in the path (Moodle ``Ann Lee``, Canvas
    ``leeann``); "" for layouts without one."""
    late: bool = False
    """True when the LMS marked the upload late (Canvas ``_LATE``)."""
    also_uploaded: tuple[NotGraded, ...] = ()
    """The student's other notebooks, not graded."""
    error: str = ""
    """Why nothing can be graded, when ``path`` is None:
    ``no .ipynb in the upload (found: 04-dropout.pdf)``."""


@dataclass(frozen=True)
class _Candidate:
    rel: str  # POSIX path relative to the root, matched against the patterns
    path: Path | None  # on disk: a folder's file, or an extracted notebook; None if not extracted
    source: str
    stamp: tuple  # zip date_time or (mtime,): larger is later
    skipped: str = ""  # why a notebook was not extracted, e.g. "over the size limit"

    @property
    def file(self) -> str:
        return PurePosixPath(self.rel).name

    @property
    def is_notebook(self) -> bool:
        return _is_notebook(self.rel)


def collect(
    submissions: Path,
    workdir: Path,
    pattern: str | None = None,
    log: Callable[[str], None] = print,
    *,
    assignment: str = "",
    graded_ids: Collection[str] = (),
) -> list[Submission]:
    """Return one :class:`Submission` per student found in ``submissions``, sorted by student.

    ``submissions`` is a folder (scanned recursively, nothing copied) or a ``.zip`` (its notebooks
    extracted into ``workdir``). ``pattern`` is a regular expression with a ``student`` group; by
    default the layouts of :data:`DEFAULT_PATTERNS` are tried in order. ``assignment`` (its id)
    and ``graded_ids`` (the grade_ids of its graded cells) choose among a student's notebooks (see
    the module docstring); without them the latest wins. ``log`` receives one line per skipped
    notebook and per student with several notebooks. Raises :class:`CourseError` for problems
    the user can fix: a missing path, a file that is not a zip, a corrupt or too large zip, a
    pattern without a ``student`` group, no notebook at all, or two students whose ids become
    the same folder name.
    """
    patterns = _compile(pattern)
    submissions = Path(submissions)
    if not submissions.exists():
        raise CourseError(f"{submissions} does not exist: give the submissions folder or .zip")
    if submissions.is_dir():
        candidates = _scan_folder(submissions)
    elif submissions.suffix.lower() == ".zip":
        candidates = _extract_zip(submissions, Path(workdir), log)
    else:
        raise CourseError(f"{submissions} is neither a folder nor a .zip of submissions")
    if not any(c.is_notebook for c in candidates):
        raise CourseError(f"no notebook (.ipynb) found in {submissions}")

    by_student: dict[str, list[tuple[_Candidate, re.Match]]] = {}
    for cand in candidates:
        match = _match(cand.rel, patterns)
        if match is None:
            if cand.is_notebook:
                log(f"skipped {cand.source}: no student id in its path")
            continue
        by_student.setdefault(match.group("student"), []).append((cand, match))
    if not any(c.is_notebook for found in by_student.values() for c, _ in found):
        raise CourseError(f"no notebook in {submissions} has a student id in its path")

    chooser = _Chooser(assignment, frozenset(graded_ids))
    raw_of: dict[str, str] = {}
    result = []
    for raw, found in by_student.items():
        student = _safe_id(raw)
        if student in raw_of:
            raise CourseError(
                f"students {raw_of[student]!r} and {raw!r} would share the folder {student!r}"
            )
        raw_of[student] = raw
        submission = chooser.submission(student, [c for c, _ in found], found[0][1])
        if submission.path and submission.also_uploaded:
            log(f"{student}: grading {submission.source}; also uploaded: "
                + ", ".join(f"{o.file} (not graded: {o.reason})" for o in submission.also_uploaded))
        result.append(submission)
    return sorted(result, key=lambda s: s.student)


class _Chooser:
    """Picks the notebook to grade among a student's files (see the module docstring)."""

    def __init__(self, assignment: str, graded_ids: frozenset[str]):
        self.assignment = assignment
        self.graded_ids = graded_ids

    def submission(self, student: str, files: list[_Candidate], match: re.Match) -> Submission:
        groups = match.groupdict()
        name, late = (groups.get("name") or "").strip(), bool(groups.get("late"))
        notebooks = [c for c in files if c.is_notebook and not c.skipped]
        skipped = tuple(NotGraded(c.file, c.skipped) for c in files if c.skipped)
        if not notebooks:
            if skipped:
                error = f"{skipped[0].file}: {skipped[0].reason}"
            else:
                shown = ", ".join(c.file for c in files[:SHOWN_FILES])
                more = f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES else ""
                error = f"no .ipynb in the upload (found: {shown}{more})"
            return Submission(student, None, "", name, late, skipped, error)
        if len(notebooks) == 1:  # nothing to choose: not even read
            return Submission(student, notebooks[0].path, notebooks[0].source, name, late, skipped)
        keys = {c.rel: self._key(c) for c in notebooks}
        chosen = max(notebooks, key=lambda c: keys[c.rel])
        others = tuple(NotGraded(c.file, self._reason(keys[c.rel], keys[chosen.rel]))
                       for c in sorted(notebooks, key=lambda c: c.rel) if c is not chosen)
        return Submission(student, chosen.path, chosen.source, name, late, others + skipped)

    def _key(self, cand: _Candidate) -> tuple:
        """Larger is preferred: (carries graded cells, named after the assignment, latest...)."""
        attempt = _ATTEMPT.search(PurePosixPath(cand.rel).stem)
        return (
            bool(self.graded_ids & _notebook_ids(cand.path)) if self.graded_ids else False,
            bool(self.assignment) and self.assignment in cand.file,
            cand.stamp,
            int(attempt.group(1)) if attempt else 0,
            cand.rel,
        )

    def _reason(self, key: tuple, chosen: tuple) -> str:
        if chosen[0] and not key[0]:
            return f"none of {possessive(self.assignment)} graded cells"
        if chosen[1] and not key[1]:
            return f"its name lacks {self.assignment}"
        return "an earlier upload"


def _notebook_ids(path: Path) -> set[str]:
    """The grade_ids of the notebook at ``path``; none when it is not a readable notebook."""
    try:
        return grade_ids(nbformat.read(path, as_version=4))
    except Exception:  # noqa: BLE001 - an unreadable upload carries no cells
        return set()


def _safe_id(raw: str) -> str:
    """Return ``raw`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``.

    An id of dots only (``.``, ``..``) becomes underscores, so it is always a plain folder name.
    """
    safe = _UNSAFE.sub("_", raw)
    return "_" * len(safe) if set(safe) == {"."} else safe


def _compile(pattern: str | None) -> list[re.Pattern]:
    if pattern is None:
        return [re.compile(p) for p in DEFAULT_PATTERNS]
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise CourseError(f"pattern {pattern!r} is not a regular expression: {err}") from None
    if "student" not in compiled.groupindex:
        raise CourseError(f"pattern {pattern!r} needs a named group (?P<student>...)")
    return [compiled]


def _match(rel: str, patterns: list[re.Pattern]) -> re.Match | None:
    """The first pattern's match that finds a student id in ``rel``."""
    for pat in patterns:
        match = pat.search(rel)
        if match and match.group("student"):
            return match
    return None


def _is_notebook(name: str) -> bool:
    return name.lower().endswith(".ipynb")


def _scan_folder(root: Path) -> list[_Candidate]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if name.startswith(".") or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            stamp = (path.stat().st_mtime,)
            found.append(_Candidate(rel, path, f"{root.name}/{rel}", stamp))
    return found


def _extract_zip(archive: Path, workdir: Path, log: Callable[[str], None]) -> list[_Candidate]:
    """Every safe member of the zip; its notebooks extracted under ``workdir``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _safe_members(zf, archive, log)
            workdir.mkdir(parents=True, exist_ok=True)
            root = workdir.resolve()
            found = []
            for info, rel, skipped in members:
                source = f"{archive.name}:{rel}"
                if not _is_notebook(rel) or skipped:
                    found.append(_Candidate(rel, None, source, info.date_time, skipped))
                    continue
                target = root.joinpath(*rel.split("/"))
                if not target.resolve().is_relative_to(root):
                    log(f"skipped {archive.name}:{info.filename}: it would land outside {workdir}")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found.append(_Candidate(rel, target, source, info.date_time))
            return found
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise CourseError(f"{archive} is not a readable zip ({err}): download it again") from None


def _safe_members(
    zf: zipfile.ZipFile, archive: Path, log: Callable[[str], None]
) -> list[tuple[zipfile.ZipInfo, str, str]]:
    """The files of the zip worth looking at: (member, its cleaned relative POSIX path, why it
    is not to be extracted or "").

    Unsafe paths are left out, with a log line for a notebook; folders, ``__MACOSX/`` and
    dotfiles silently. An oversized notebook is logged and kept, not to be extracted. Only the
    notebooks to extract count towards :data:`MAX_ZIP_BYTES`: nothing else is extracted.
    """
    members = []
    seen = set()
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if info.is_dir() or not parts:
            continue
        notebook = _is_notebook(parts[-1])
        source = f"{archive.name}:{info.filename}"
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
            if notebook:
                log(f"skipped {source}: unsafe path outside the extraction folder")
            continue
        if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue
        skipped = ""
        if notebook and info.file_size > MAX_NOTEBOOK_BYTES:
            skipped = f"{info.file_size} bytes, over {MAX_NOTEBOOK_BYTES}"
            log(f"skipped {source}: {skipped}")
        rel = "/".join(parts)
        if rel in seen:
            log(f"skipped {source}: a second member with the same name")
            continue
        seen.add(rel)
        total += info.file_size if notebook and not skipped else 0
        members.append((info, rel, skipped))
    if total > MAX_ZIP_BYTES:
        raise CourseError(
            f"{archive} holds {total} bytes of notebooks, over the {MAX_ZIP_BYTES} limit"
        )
    return members
