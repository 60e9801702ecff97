"""Stable pseudonyms for student ids, for a report shown to teaching assistants or in class.

A pseudonym is ``anon-`` and 8 base32 characters of HMAC-SHA256(key, student id). The key is 32
random bytes kept in ``autograder/pseudonym.key`` (git-ignored), made on first use: the same
student gets the same pseudonym in every report and assignment of the course, and without the
key nobody can map a pseudonym back by hashing every possible id (a 6-digit id has only a
million values). Delete the key to start a new series of pseudonyms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import replace
from pathlib import Path

from gradschool.errors import UserError
from gradschool.instructor.report.figures import Result

KEY_FILE = Path("autograder") / "pseudonym.key"


def load_key(path: Path) -> bytes:
    """The key in ``path``, made (32 random bytes, hex, readable by the owner only) if missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another process: use that one
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32) + "\n")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a pseudonym key ({exc}); delete it to make a new one") \
            from None
    if len(key) < 16:
        raise UserError(f"{path}: the pseudonym key is too short; delete it to make a new one")
    return key


def pseudonym(key: bytes, student: str) -> str:
    """``anon-xxxxxxxx``: the same for the same key and student, unrelated for others."""
    digest = hmac.new(key, student.encode(), hashlib.sha256).digest()
    return "anon-" + base64.b32encode(digest[:5]).decode().lower()


def _uploaded_path(source: str) -> str:
    """The student's part of a source: ``member`` of ``x.zip:member``, ``path`` of
    ``folder/path``."""
    return source.split(":", 1)[1] if ":" in source else source.split("/", 1)[-1]


def _scrub(text: str, result: Result, alias: str) -> str:
    """``text`` without the student's id, name and file names (which often hold their name)."""
    file = "<file>"
    for secret, by in ((result.source, file), (_uploaded_path(result.source), file),
                       (result.name, alias)):
        if secret:
            text = text.replace(secret, by)
    if len(result.student) >= 3:  # a shorter id would clobber numbers in the message
        text = re.sub(rf"(?<!\w){re.escape(result.student)}(?!\w)", alias, text)
    return text


def anonymize(results: list[Result], key: bytes) -> list[Result]:
    """``results`` with pseudonyms for ids, no names, no file names, and messages scrubbed of
    them; sorted by pseudonym so that the order gives nothing away."""
    out = []
    for r in results:
        alias = pseudonym(key, r.student)
        tests = tuple(t | {"message": _scrub(t["message"], r, alias)} for t in r.tests)
        out.append(replace(r, student=alias, name="", source="", tests=tests,
                           error=_scrub(r.error, r, alias)))
    return sorted(out, key=lambda r: r.student)
