"""Collecting submissions: LMS downloads become one notebook per student, safely."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from gradschool.instructor import collect as collect_module
from gradschool.instructor.collect import NotGraded, Submission, collect
from gradschool.instructor.course import CourseError

EARLY = (2024, 3, 1, 10, 0, 0)
LATE = (2024, 3, 2, 9, 30, 0)


def make_zip(path: Path, members: list[tuple]) -> Path:
    """Write a zip whose members are (name, content[, date_time]); date_time defaults to EARLY."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content, *stamp in members:
            info = zipfile.ZipInfo(name, date_time=stamp[0] if stamp else EARLY)
            zf.writestr(info, content)
    return path


def make_files(root: Path, names: list[str]) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"notebook {name}")
    return root


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def notebook_with(*grade_ids: str) -> str:
    """A notebook whose cells carry these nbgrader grade_ids, as JSON text."""
    cells = [nbformat.v4.new_code_cell(f"# {g}") for g in grade_ids]
    for cell, g in zip(cells, grade_ids, strict=True):
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": g, "points": 1}
    return nbformat.writes(nbformat.v4.new_notebook(cells=cells))


def test_moodle_zip_picks_latest_and_logs_it(tmp_path):
    archive = make_zip(
        tmp_path / "moodle.zip",
        [
            ("Ann Lee_123456_assignsubmission_file_/hw1.ipynb", "ann old", EARLY),
            ("Ann Lee_123456_assignsubmission_file_/hw1 fixed.ipynb", "ann new", LATE),
            ("Bo Chen_777_assignsubmission_onlinetext_/answer.ipynb", "bo"),
        ],
    )
    log = Log()
    result = collect(archive, tmp_path / "work", log=log)
    assert [(s.student, s.name, s.late) for s in result] == [
        ("123456", "Ann Lee", False), ("777", "Bo Chen", False)]
    ann = result[0]
    assert ann.source == "moodle.zip:Ann Lee_123456_assignsubmission_file_/hw1 fixed.ipynb"
    assert ann.path == (tmp_path / "work/Ann Lee_123456_assignsubmission_file_/hw1 fixed.ipynb")
    assert ann.path.read_text() == "ann new"
    assert ann.also_uploaded == (NotGraded("hw1.ipynb", "an earlier upload"),)
    assert log == [f"123456: grading {ann.source}; also uploaded: hw1.ipynb "
                   "(not graded: an earlier upload)"]


def test_latest_is_by_timestamp_not_name(tmp_path):
    archive = make_zip(
        tmp_path / "m.zip",
        [
            ("Ann_1_assignsubmission_file_/hw-9.ipynb", "old", EARLY),
            ("Ann_1_assignsubmission_file_/hw.ipynb", "new", LATE),
        ],
    )
    [sub] = collect(archive, tmp_path / "work", log=Log())
    assert sub.path.read_text() == "new"


def test_canvas_zip_late_and_attempts(tmp_path):
    archive = make_zip(
        tmp_path / "canvas.zip",
        [
            ("leeann_LATE_98765_4321_01-symmetry-breaking-1.ipynb", "attempt 1", LATE),
            ("leeann_LATE_98765_4300_01-symmetry-breaking-2.ipynb", "attempt 2", LATE),
            ("leeann_LATE_98765_4399_01-symmetry-breaking.ipynb", "attempt 0", LATE),
            ("bob_11111_4400_hw.ipynb", "bob"),
        ],
    )
    result = collect(archive, tmp_path / "work", log=Log())
    assert [(s.student, s.name, s.late) for s in result] == [
        ("11111", "bob", False), ("98765", "leeann", True)]
    lee = result[1]
    assert lee.path.read_text() == "attempt 2"
    assert lee.source == "canvas.zip:leeann_LATE_98765_4300_01-symmetry-breaking-2.ipynb"
    assert [o.file for o in lee.also_uploaded] == [
        "leeann_LATE_98765_4321_01-symmetry-breaking-1.ipynb",
        "leeann_LATE_98765_4399_01-symmetry-breaking.ipynb"]


def test_folder_per_student_and_nbgrader_layout(tmp_path):
    root = make_files(
        tmp_path / "submitted", ["ann/ps1/hw1.ipynb", "bob/hw1.ipynb", "bob/notes.txt"]
    )
    work = tmp_path / "work"
    result = collect(root, work, log=Log())
    assert result == [
        Submission("ann", root / "ann/ps1/hw1.ipynb", "submitted/ann/ps1/hw1.ipynb"),
        Submission("bob", root / "bob/hw1.ipynb", "submitted/bob/hw1.ipynb"),
    ]
    assert not work.exists()  # a folder is read in place


def test_folder_latest_by_mtime(tmp_path):
    root = make_files(tmp_path / "subs", ["ann/a.ipynb", "ann/b.ipynb"])
    os.utime(root / "ann/a.ipynb", (2_000_000_000, 2_000_000_000))
    os.utime(root / "ann/b.ipynb", (1_000_000_000, 1_000_000_000))
    log = Log()
    [sub] = collect(root, tmp_path / "work", log=log)
    assert sub.path == root / "ann/a.ipynb"
    assert log == ["ann: grading subs/ann/a.ipynb; also uploaded: b.ipynb (not graded: an "
                   "earlier upload)"]


def test_flat_folder_skips_checkpoints_and_hidden(tmp_path):
    root = make_files(
        tmp_path / "flat",
        [
            "ann.ipynb",
            "bob.IPYNB",
            ".ipynb_checkpoints/ann-checkpoint.ipynb",
            ".hidden/carl/x.ipynb",
            ".dan.ipynb",
            "readme.md",
        ],
    )
    result = collect(root, tmp_path / "work", log=Log())
    assert [(s.student, s.path.name) for s in result] == [
        ("ann", "ann.ipynb"),
        ("bob", "bob.IPYNB"),
    ]


def test_custom_pattern(tmp_path):
    root = make_files(tmp_path / "d", ["hw1_s0042_final.ipynb", "misc/s0007.ipynb"])
    result = collect(root, tmp_path / "work", pattern=r"(?P<student>s\d+)", log=Log())
    assert [s.student for s in result] == ["s0007", "s0042"]


def test_pattern_without_student_group(tmp_path):
    root = make_files(tmp_path / "d", ["a.ipynb"])
    with pytest.raises(CourseError, match=r"\(\?P<student>"):
        collect(root, tmp_path / "work", pattern=r"(s\d+)")


def test_unmatched_path_is_skipped_and_logged(tmp_path):
    root = make_files(tmp_path / "d", ["ann.ipynb", "x0042.ipynb"])
    log = Log()
    result = collect(root, tmp_path / "work", pattern=r"^(?P<student>[a-z]+)\.ipynb$", log=log)
    assert [s.student for s in result] == ["ann"]
    assert log == ["skipped d/x0042.ipynb: no student id in its path"]


def test_zip_slip_members_are_skipped(tmp_path):
    archive = make_zip(
        tmp_path / "evil.zip",
        [
            ("../escaped.ipynb", "evil"),
            ("ann/../../escaped2.ipynb", "evil"),
            ("/abs/escaped3.ipynb", "evil"),
            ("ann/hw.ipynb", "good"),
        ],
    )
    work = tmp_path / "deep" / "work"
    log = Log()
    result = collect(archive, work, log=log)
    assert [s.student for s in result] == ["ann"]
    assert not list(tmp_path.rglob("escaped*"))
    assert not Path("/abs/escaped3.ipynb").exists()
    assert len(log) == 3
    assert all("unsafe path" in line for line in log)
    assert "evil.zip:../escaped.ipynb" in log[0]


def test_macosx_dotfiles_ignored_and_only_notebooks_extracted(tmp_path):
    archive = make_zip(
        tmp_path / "mac.zip",
        [
            ("__MACOSX/ann/._hw.ipynb", "resource fork"),
            ("__MACOSX/bob/hw.ipynb", "resource fork"),
            ("ann/._hw.ipynb", "resource fork"),
            ("ann/.ipynb_checkpoints/hw-checkpoint.ipynb", "checkpoint"),
            ("ann/hw.ipynb", "good"),
            ("ann/data.csv", "1,2"),
            ("bob/report.pdf", "pdf"),
        ],
    )
    work = tmp_path / "work"
    log = Log()
    ann, bob = collect(archive, work, log=log)
    assert (ann.student, ann.path, ann.also_uploaded) == ("ann", work / "ann/hw.ipynb", ())
    assert (bob.student, bob.path, bob.source) == ("bob", None, "")
    assert bob.error == "no .ipynb in the upload (found: report.pdf)"
    extracted = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    assert extracted == ["ann/hw.ipynb"]
    assert log == []


def test_a_student_without_a_notebook_is_accounted_for(tmp_path):
    archive = make_zip(
        tmp_path / "moodle.zip",
        [
            ("Ann Lee_1_assignsubmission_file_/04-dropout.ipynb", "notebook"),
            ("Bo Ek_2_assignsubmission_file_/04-dropout.pdf", "pdf"),
            ("Cy Ho_3_assignsubmission_onlinetext_/onlinetext.html", "<p>my answer</p>"),
            ("Di Wu_4_assignsubmission_file_/hw.zip", "a zip inside the zip"),
            *[(f"Ed Li_5_assignsubmission_file_/page{i}.png", "png") for i in range(5)],
        ],
    )
    work = tmp_path / "work"
    result = {s.student: s for s in collect(archive, work, log=Log())}
    assert result["1"].path is not None and result["1"].error == ""
    assert {s: (r.path, r.name, r.error) for s, r in result.items() if s != "1"} == {
        "2": (None, "Bo Ek", "no .ipynb in the upload (found: 04-dropout.pdf)"),
        "3": (None, "Cy Ho", "no .ipynb in the upload (found: onlinetext.html)"),
        "4": (None, "Di Wu", "no .ipynb in the upload (found: hw.zip)"),
        "5": (None, "Ed Li", "no .ipynb in the upload (found: page0.png, page1.png, page2.png "
                             "and 2 more)"),
    }
    assert sorted(p.name for p in work.rglob("*") if p.is_file()) == ["04-dropout.ipynb"]


def test_the_notebook_with_the_assignments_cells_wins_over_a_newer_one(tmp_path):
    right = notebook_with("setup", "dropout-tests")
    archive = make_zip(
        tmp_path / "moodle.zip",
        [
            ("Ann_1_assignsubmission_file_/my work.ipynb", right, EARLY),
            ("Ann_1_assignsubmission_file_/Untitled.ipynb", notebook_with("setup"), LATE),
            ("Ann_1_assignsubmission_file_/broken.ipynb", "{not json", LATE),
            ("Bo_2_assignsubmission_file_/hw.ipynb", right, EARLY),
            ("Bo_2_assignsubmission_file_/04-dropout-old.ipynb", right, EARLY),
            ("Bo_2_assignsubmission_file_/notes.ipynb", right, LATE),
        ],
    )
    log = Log()
    ann, bo = collect(archive, tmp_path / "work", log=log, assignment="04-dropout",
                      graded_ids=["dropout-tests", "mc-tests"])
    assert ann.path.name == "my work.ipynb"
    assert set(ann.also_uploaded) == {
        NotGraded("Untitled.ipynb", "none of 04-dropout's graded cells"),
        NotGraded("broken.ipynb", "none of 04-dropout's graded cells"),
    }
    assert bo.path.name == "04-dropout-old.ipynb"  # all carry the cells: the name decides
    assert set(bo.also_uploaded) == {NotGraded("hw.ipynb", "its name lacks 04-dropout"),
                                     NotGraded("notes.ipynb", "its name lacks 04-dropout")}
    assert log[0].startswith("1: grading moodle.zip:Ann_1_assignsubmission_file_/my work.ipynb;"
                             " also uploaded: ")
    assert "Untitled.ipynb (not graded: none of 04-dropout's graded cells)" in log[0]


def test_a_custom_pattern_may_name_the_student_and_the_late_flag(tmp_path):
    root = make_files(tmp_path / "d", ["late/s0042 Ann Lee.ipynb", "ontime/s0007 Bo Ek.ipynb"])
    pattern = r"^(?P<late>late)?(?:ontime)?/(?P<student>s\d+) (?P<name>.+)\.ipynb$"
    result = collect(root, tmp_path / "work", pattern=pattern, log=Log())
    assert [(s.student, s.name, s.late) for s in result] == [
        ("s0007", "Bo Ek", False), ("s0042", "Ann Lee", True)]


def test_oversized_notebook_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_NOTEBOOK_BYTES", 10)
    archive = make_zip(tmp_path / "s.zip", [("ann.ipynb", "x" * 11), ("bob.ipynb", "small")])
    log = Log()
    ann, bob = collect(archive, tmp_path / "work", log=log)
    assert (ann.student, ann.path, ann.error) == ("ann", None, "ann.ipynb: 11 bytes, over 10")
    assert bob.path.read_text() == "small"
    assert log == ["skipped s.zip:ann.ipynb: 11 bytes, over 10"]
    assert not (tmp_path / "work/ann.ipynb").exists()


def test_zip_over_total_limit_refused_before_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_ZIP_BYTES", 15)
    archive = make_zip(tmp_path / "s.zip", [("ann.ipynb", "x" * 10), ("bob.ipynb", "y" * 10)])
    with pytest.raises(CourseError, match="over the 15 limit"):
        collect(archive, tmp_path / "work", log=Log())
    assert not (tmp_path / "work/ann.ipynb").exists()


def test_corrupt_zip(tmp_path):
    bad = tmp_path / "download.zip"
    bad.write_bytes(b"this is not a zip at all")
    with pytest.raises(CourseError, match="not a readable zip"):
        collect(bad, tmp_path / "work")


def test_missing_path(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        collect(tmp_path / "nope.zip", tmp_path / "work")


def test_neither_folder_nor_zip(tmp_path):
    single = make_files(tmp_path, ["ann.ipynb"]) / "ann.ipynb"
    with pytest.raises(CourseError, match="neither a folder nor a .zip"):
        collect(single, tmp_path / "work")


def test_empty_folder(tmp_path):
    root = make_files(tmp_path / "empty", ["readme.txt"])
    with pytest.raises(CourseError, match="no notebook"):
        collect(root, tmp_path / "work")


def test_nothing_matched_is_an_error(tmp_path):
    root = make_files(tmp_path / "d", ["ann.ipynb"])
    log = Log()
    with pytest.raises(CourseError, match="no notebook in .* has a student id"):
        collect(root, tmp_path / "work", pattern=r"(?P<student>s\d+)", log=log)
    assert log == ["skipped d/ann.ipynb: no student id in its path"]


def test_ids_are_sanitised(tmp_path):
    root = make_files(tmp_path / "d", ["a b/hw.ipynb", "jo@uni/hw.ipynb"])
    result = collect(root, tmp_path / "work", log=Log())
    assert [s.student for s in result] == ["a_b", "jo_uni"]


def test_sanitised_collision_refused(tmp_path):
    root = make_files(tmp_path / "d", ["a b/hw.ipynb", "a_b/hw.ipynb"])
    with pytest.raises(CourseError, match="share the folder 'a_b'"):
        collect(root, tmp_path / "work", log=Log())
