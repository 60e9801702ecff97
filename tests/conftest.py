"""Shared fixtures: the repository root, and a copy of the course to change freely."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def gradschool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the installed ``gradschool`` command in ``cwd``; capture its output as text."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "gradschool"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    """A copy of the course (config, solutions/, course/) in a temporary folder."""
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    for folder in ("solutions", "course"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path
