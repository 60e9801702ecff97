"""`gradschool grade`: the JSON contract, honest scores, and one-line errors.

Submissions are built the way students make them: the released notebook with its solution cells
filled in, by the reference solution or by a known-wrong implementation.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, gradschool
from submissions import (
    grade_json,
    grade_released_stub,
    make_submission,
    reference_code,
    release_notebook,
    results_by_function,
    solution_cells,
    solution_notebook,
)

from gradschool.cells import is_test_cell
from gradschool.instructor.course import Course, CourseError
from gradschool.instructor.grade import check_belongs, graded_cell_ids

ASSIGNMENT = "01-symmetry-breaking"
SOLUTION = solution_notebook(ASSIGNMENT)
RELEASE = release_notebook(ASSIGNMENT)

CONSTANT, RANDOM, COUNT = "constant_init_", "random_init_", "count_distinct_units"
COLLAPSE = "collapse_to_one_unit"

# Known-wrong implementations, three per graded function, grouped into three submissions.
WRONG = {
    "forgets-biases/ignores-generator/exact-equality/one-column": {
        CONSTANT: """
def constant_init_(model, value=0.0):
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.constant_(m.weight, value)  # biases forgotten
    return model
""",
        RANDOM: """
def random_init_(model, std=0.1, generator=None):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, std)  # generator ignored: global RNG
                if m.bias is not None:
                    m.bias.zero_()
    return model
""",
        COUNT: """
def count_distinct_units(weight, atol=1e-6):
    return int(torch.unique(weight, dim=0).shape[0])  # atol ignored
""",
        COLLAPSE: """
def collapse_to_one_unit(model):
    first, activation, last = model
    one = torch.nn.Sequential(torch.nn.Linear(first.in_features, 1), activation,
                              torch.nn.Linear(1, last.out_features)).to(first.weight)
    with torch.no_grad():
        one[0].weight.copy_(first.weight[:1])
        one[0].bias.copy_(first.bias[:1])
        one[2].weight.copy_(last.weight[:, :1])  # one column, not the sum of the H columns
        one[2].bias.copy_(last.bias)
    return one
""",
    },
    "new-parameters/uniform/columns/float32-layers": {
        CONSTANT: """
def constant_init_(model, value=0.0):
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):  # replaces the parameters instead of filling them
            m.weight = torch.nn.Parameter(torch.full_like(m.weight, value))
            if m.bias is not None:
                m.bias = torch.nn.Parameter(torch.full_like(m.bias, value))
    return model
""",
        RANDOM: """
def random_init_(model, std=0.1, generator=None):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):  # right variance, wrong distribution
                a = std * 3 ** 0.5
                m.weight.uniform_(-a, a, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
    return model
""",
        COUNT: """
def count_distinct_units(weight, atol=1e-6):
    kept = []
    for column in weight.T:  # units are rows, not columns
        if all((column - k).abs().max() > atol for k in kept):
            kept.append(column)
    return len(kept)
""",
        COLLAPSE: """
def collapse_to_one_unit(model):
    first, activation, last = model
    # new layers in torch's default dtype (float32), whatever the model's dtype
    one = torch.nn.Sequential(torch.nn.Linear(first.in_features, 1, bias=first.bias is not None),
                              activation,
                              torch.nn.Linear(1, last.out_features, bias=last.bias is not None))
    with torch.no_grad():
        one[0].weight.copy_(first.weight[:1])
        one[2].weight.copy_(last.weight.sum(dim=1, keepdim=True))
        if first.bias is not None:
            one[0].bias.copy_(first.bias[:1])
            one[2].bias.copy_(last.bias)
    return one
""",
    },
    "top-level-only/variance-as-std/rounding/always-relu": {
        CONSTANT: """
def constant_init_(model, value=0.0):
    for m in model.children():  # misses nested modules
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.constant_(m.weight, value)
            if m.bias is not None:
                torch.nn.init.constant_(m.bias, value)
    return model
""",
        RANDOM: """
def random_init_(model, std=0.1, generator=None):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, std ** 2, generator=generator)  # variance used as std
                if m.bias is not None:
                    m.bias.zero_()
    return model
""",
        COUNT: """
def count_distinct_units(weight, atol=1e-6):
    return int(torch.unique(torch.round(weight / atol), dim=0).shape[0])  # grid rounding
""",
        COLLAPSE: """
def collapse_to_one_unit(model):
    first, _, last = model
    one = torch.nn.Sequential(torch.nn.Linear(first.in_features, 1), torch.nn.ReLU(),  # always
                              torch.nn.Linear(1, last.out_features)).to(first.weight)
    with torch.no_grad():
        one[0].weight.copy_(first.weight[:1])
        one[2].weight.copy_(last.weight.sum(dim=1, keepdim=True))
        if first.bias is not None:
            one[0].bias.copy_(first.bias[:1])
            one[2].bias.copy_(last.bias)
    return one
""",
    },
}


def test_graded_functions_are_the_issue_api():
    assert set(solution_cells(nbformat.read(SOLUTION, as_version=4))) >= {
        CONSTANT, RANDOM, COUNT, COLLAPSE}


def test_reference_solution_in_the_student_notebook_gets_full_marks(tmp_path):
    submission = make_submission(tmp_path, ASSIGNMENT, reference_code(ASSIGNMENT),
                                 name="anything-at-all.ipynb")
    report = grade_json(submission)
    assert report["assignment"] == ASSIGNMENT  # inferred from the cells, not the file name
    assert report["max_score"] > 0 and report["score"] == report["max_score"]
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {  # written answers wait for a person
        "constant-init-tests": "passed", "count-units-tests": "passed", "bn-answer": "manual",
        "collapse-tests": "passed", "zero-answer": "manual", "random-init-tests": "passed",
        "adam-answer": "manual"}
    assert all(t["message"] == "" for t in report["tests"] if t["status"] == "passed")


def test_instructor_notebook_gets_full_marks():
    report = grade_json(SOLUTION)
    assert report["score"] == report["max_score"] > 0


def test_released_stub_gets_zero_with_a_table():
    table = grade_released_stub(ASSIGNMENT)
    assert table.count("NotImplementedError") == len(
        solution_cells(nbformat.read(SOLUTION, as_version=4))
    )


@pytest.mark.parametrize("mistakes", list(WRONG), ids=list(WRONG))
def test_each_wrong_implementation_loses_its_points(tmp_path, mistakes):
    submission = make_submission(tmp_path, ASSIGNMENT, WRONG[mistakes])
    report = grade_json(submission, "--assignment", ASSIGNMENT)
    for function, test in results_by_function(report, ASSIGNMENT).items():
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        assert len(test["message"]) > len("AssertionError: "), (function, test)


def test_grading_leaves_the_course_gradebook_alone(tmp_path):
    gradebook = ROOT / "autograder" / "gradebook.db"
    before = gradebook.stat().st_mtime_ns if gradebook.exists() else None
    grade_json(RELEASE)
    assert (gradebook.stat().st_mtime_ns if gradebook.exists() else None) == before


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        ("{not json", "not a readable Jupyter notebook"),
        ('{"cells": 3}', "not a readable Jupyter notebook"),
    ],
)
def test_ungradable_file_is_one_line_exit_2(tmp_path, content, expected):
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_text(content)
    result = gradschool("grade", str(path), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr


def test_unknown_or_unrecognisable_assignment_is_exit_2(tmp_path):
    result = gradschool("grade", str(RELEASE), "--assignment", "99-nope")
    assert result.returncode == 2 and "unknown assignment '99-nope'" in result.stderr
    blank = tmp_path / "blank.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), blank)
    result = gradschool("grade", str(blank))
    assert result.returncode == 2 and "pass --assignment ID" in result.stderr


def test_a_notebook_of_another_assignment_is_named_before_grading(tmp_path):
    other = tmp_path / "hw.ipynb"
    other.write_bytes(release_notebook("04-dropout").read_bytes())
    result = gradschool("grade", str(other), "--assignment", "03-optimizers")
    assert result.returncode == 2
    assert result.stderr == ("gradschool: hw.ipynb has none of 03-optimizers' graded cells; "
                             "it looks like 04-dropout\n")
    blank = tmp_path / "Untitled.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), blank)
    result = gradschool("grade", str(blank), "--assignment", "04-dropout")
    assert result.returncode == 2 and "Untitled.ipynb has none of 04-dropout's graded cells; " \
        "it has no nbgrader cells" in result.stderr


def test_assignments_share_no_graded_cell():
    """What tells a notebook's assignment apart (check_belongs, collect's choice)."""
    graded = {p.parent.name: graded_cell_ids(nbformat.read(p, as_version=4))
              for p in sorted((ROOT / "solutions").glob("*/*.ipynb"))}
    for (a, ids_a), (b, ids_b) in itertools.combinations(graded.items(), 2):
        assert not ids_a & ids_b, (a, b, ids_a & ids_b)


def test_a_notebook_without_its_test_cells_still_belongs():
    course = Course.at(ROOT)
    nb = nbformat.read(release_notebook("04-dropout"), as_version=4)
    nb.cells = [c for c in nb.cells if not is_test_cell(c)]  # nbgrader puts them back
    check_belongs(course, Path("hw.ipynb"), nb, "04-dropout")
    with pytest.raises(CourseError, match="none of 03-optimizers' graded cells; it looks like "
                                          "04-dropout$"):
        check_belongs(course, Path("hw.ipynb"), nb, "03-optimizers")
