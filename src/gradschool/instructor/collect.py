"""Collect submissions: turn an LMS download into one notebook per student, for autograding.

``collect(submissions, workdir)`` takes a folder or a ``.zip`` and returns one :class:`Submission`
per student, sorted by student id. It does no grading. A zip is extracted into ``workdir`` (only
its ``.ipynb`` members, never outside ``workdir``); a folder is read where it lies.

The student id comes from each notebook's path relative to the folder or zip root. When no
``pattern`` is given, these layouts are tried in order:

1. Moodle: one top folder per submission, the id is the digits::

       Ann Lee_123456_assignsubmission_file_/hw1.ipynb        -> 123456
       Ann Lee_123456_assignsubmission_onlinetext_/hw1.ipynb  -> 123456

2. Canvas: flat files ``<name>[_LATE]_<userid>_<submissionid>_<original name>``::

       leeann_LATE_98765_4321_01-symmetry-breaking-1.ipynb    -> 98765
       leeann_98765_4321_hw.ipynb                             -> 98765

3. A folder per student (nbgrader's ``submitted/<student>/<assignment>/`` layout included)::

       ann/hw1.ipynb                                          -> ann
       ann/ps1/hw1.ipynb                                      -> ann

4. A flat folder of notebooks named after their student::

       ann.ipynb                                              -> ann

A custom ``pattern`` is a regular expression with a named group ``student``, searched
(``re.search``) in the POSIX relative path, e.g. ``r"(?P<student>s\\d+)"``. Paths that match no
pattern are skipped with a log line.

When a student has several notebooks (attempts, re-uploads) the latest is graded: by the zip
member's timestamp, or the file's mtime in a folder; ties go to the higher trailing attempt number
(``hw-2`` over ``hw-1`` over ``hw``), then to the name.

Student ids are made safe as folder names: characters outside ``[A-Za-z0-9_.-]`` become ``_``.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gradschool.instructor.course import CourseError

MAX_ZIP_BYTES = 2 * 2**30
"""Largest total uncompressed size of the notebooks a zip may hold."""

MAX_NOTEBOOK_BYTES = 100 * 2**20
"""Largest single notebook extracted from a zip; bigger ones are skipped."""

DEFAULT_PATTERNS = (
    # Moodle: "<Full Name>_<id>_assignsubmission_file_/<file>.ipynb"
    r"^[^/]+_(?P<student>\d+)_assignsubmission_(?:file|onlinetext)_/",
    # Canvas: "<name>[_LATE]_<userid>_<submissionid>_<original name>.ipynb", flat
    r"^[a-z]+(?:_LATE)?_(?P<student>\d+)_\d+_[^/]+$",
    # A folder per student: "<student>/<anything>.ipynb"
    r"^(?P<student>[^/]+)/",
    # A flat folder: "<student>.ipynb"
    r"^(?P<student>[^/]+)\.(?i:ipynb)$",
)
"""The layouts tried in order when ``collect`` is given no pattern (see the module docstring)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ATTEMPT = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Submission:
    """The one notebook graded for one student."""

    student: str
    """Student id, safe as a folder name: ``[A-Za-z0-9_.-]+``."""
    path: Path
    """The notebook on disk (extracted into ``workdir`` for a zip)."""
    source: str
    """Where it came from, for the log: ``folder/x.ipynb`` or ``moodle.zip:Ann_1_.../a.ipynb``."""
    attempts: int
    """How many candidate notebooks this student had (at least 1)."""


@dataclass(frozen=True)
class _Candidate:
    rel: str  # POSIX path relative to the root, matched against the patterns
    path: Path
    source: str
    stamp: tuple  # zip date_time or (mtime,): larger is later


def collect(
    submissions: Path,
    workdir: Path,
    pattern: str | None = None,
    log: Callable[[str], None] = print,
) -> list[Submission]:
    """Return one :class:`Submission` per student found in ``submissions``, sorted by student.

    ``submissions`` is a folder (scanned recursively, nothing copied) or a ``.zip`` (its notebooks
    extracted into ``workdir``). ``pattern`` is a regular expression with a ``student`` group; by
    default the layouts of :data:`DEFAULT_PATTERNS` are tried in order. ``log`` receives one line
    per skipped file and per student with several notebooks. Raises :class:`CourseError` for
    problems the user can fix: a missing path, a file that is not a zip, a corrupt or too large
    zip, a pattern without a ``student`` group, no notebook at all, or two students whose ids
    become the same folder name.
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
    if not candidates:
        raise CourseError(f"no notebook (.ipynb) found in {submissions}")

    by_student: dict[str, list[_Candidate]] = {}
    for cand in candidates:
        raw = _student_of(cand.rel, patterns)
        if raw is None:
            log(f"skipped {cand.source}: no student id in its path")
            continue
        by_student.setdefault(raw, []).append(cand)
    if not by_student:
        raise CourseError(f"no notebook in {submissions} has a student id in its path")

    raw_of: dict[str, str] = {}
    result = []
    for raw, cands in by_student.items():
        student = _safe_id(raw)
        if student in raw_of:
            raise CourseError(
                f"students {raw_of[student]!r} and {raw!r} would share the folder {student!r}"
            )
        raw_of[student] = raw
        chosen = max(cands, key=_latest_key)
        if len(cands) > 1:
            log(f"{student}: {len(cands)} notebooks, grading {chosen.source} (latest)")
        result.append(Submission(student, chosen.path, chosen.source, len(cands)))
    return sorted(result, key=lambda s: s.student)


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


def _student_of(rel: str, patterns: list[re.Pattern]) -> str | None:
    for pat in patterns:
        match = pat.search(rel)
        if match and match.group("student"):
            return match.group("student")
    return None


def _latest_key(cand: _Candidate) -> tuple:
    stem = PurePosixPath(cand.rel).stem
    attempt = _ATTEMPT.search(stem)
    return (cand.stamp, int(attempt.group(1)) if attempt else 0, cand.rel)


def _is_notebook(name: str) -> bool:
    return name.lower().endswith(".ipynb")


def _scan_folder(root: Path) -> list[_Candidate]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if name.startswith(".") or not _is_notebook(name) or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            stamp = (path.stat().st_mtime,)
            found.append(_Candidate(rel, path, f"{root.name}/{rel}", stamp))
    return found


def _extract_zip(archive: Path, workdir: Path, log: Callable[[str], None]) -> list[_Candidate]:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _safe_members(zf, archive, log)
            workdir.mkdir(parents=True, exist_ok=True)
            root = workdir.resolve()
            found = []
            for info, rel in members:
                target = root.joinpath(*rel.split("/"))
                if not target.resolve().is_relative_to(root):
                    log(f"skipped {archive.name}:{info.filename}: it would land outside {workdir}")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found.append(_Candidate(rel, target, f"{archive.name}:{rel}", info.date_time))
            return found
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise CourseError(f"{archive} is not a readable zip ({err}): download it again") from None


def _safe_members(
    zf: zipfile.ZipFile, archive: Path, log: Callable[[str], None]
) -> list[tuple[zipfile.ZipInfo, str]]:
    """The notebook members worth extracting, each with its cleaned relative POSIX path."""
    members = []
    seen = set()
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if info.is_dir() or not parts or not _is_notebook(parts[-1]):
            continue
        source = f"{archive.name}:{info.filename}"
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
            log(f"skipped {source}: unsafe path outside the extraction folder")
            continue
        if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue
        if info.file_size > MAX_NOTEBOOK_BYTES:
            log(f"skipped {source}: {info.file_size} bytes, over {MAX_NOTEBOOK_BYTES}")
            continue
        rel = "/".join(parts)
        if rel in seen:
            log(f"skipped {source}: a second member with the same name")
            continue
        seen.add(rel)
        total += info.file_size
        members.append((info, rel))
    if total > MAX_ZIP_BYTES:
        raise CourseError(
            f"{archive} holds {total} bytes of notebooks, over the {MAX_ZIP_BYTES} limit"
        )
    return members
