"""nbgrader must see the course layout: a config that raised would silently give default paths."""

import json
import subprocess
import sys

from conftest import BIN, ROOT

from gradschool.instructor.course import Course

PROBE = """
import json
from nbgrader.apps import NbGraderApp
app = NbGraderApp()
app.initialize([])
d = app.coursedir
print(json.dumps({
    "root": d.root, "source": d.source_directory, "release": d.release_directory,
    "submitted": d.submitted_directory, "autograded": d.autograded_directory,
    "feedback": d.feedback_directory, "db_url": d.db_url,
}))
"""


def test_nbgrader_reads_the_course_layout_from_the_repo_root():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["root"] == str(ROOT)
    assert (seen["source"], seen["release"]) == ("solutions", "course")
    for key in ("submitted", "autograded", "feedback"):
        assert seen[key].startswith("autograder/"), (key, seen[key])
    assert seen["db_url"] == f"sqlite:///{ROOT}/autograder/gradebook.db"


def test_runtime_folders_are_git_ignored():
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            "autograder/gradebook.db",
            "autograder/submitted/x",
            "autograder/autograded/x",
            "autograder/feedback/x",
            "autograder/exchange/x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(ignored) == 5, ignored


def test_course_sees_the_same_paths_and_assignments():
    course = Course.at(ROOT)
    assert course.source_dir == ROOT / "solutions"
    assert course.release_dir == ROOT / "course"
    assert "01-symmetry-breaking" in course.assignments()


def test_a_gradebook_gets_the_schema_version_nbgrader_would_stamp(tmp_path):
    """gradschool reads it in process; nbgrader asks the `alembic heads` command."""
    from nbgrader.dbutil import _temp_alembic_ini
    from sqlalchemy import create_engine, text

    with _temp_alembic_ini(f"sqlite:///{tmp_path / 'unused.db'}") as ini:
        heads = subprocess.run([str(BIN / "alembic"), "-c", ini, "heads"], capture_output=True,
                               text=True, check=True).stdout
    course = Course.at(ROOT).scratch(tmp_path)
    with course.gradebook():
        pass
    with create_engine(course.db_url).connect() as db:
        stamped = db.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert stamped == heads.split()[0]
