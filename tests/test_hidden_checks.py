"""How a checks file registers its checks (fast: no kernel)."""

from __future__ import annotations

import pytest

from gradschool.instructor import HiddenChecks, load_hidden_checks


def test_a_test_declares_its_forbidden_entries_and_stand_ins():
    checks = HiddenChecks()

    @checks.test("a-tests", forbid=["torch.optim.Adam"], stand_ins={"f": "def f(): pass"})
    def one(kernel):
        pass

    @checks.test("a-tests", forbid=["torch.optim.adam"])
    def two(kernel):
        pass

    @checks.test("b-tests")
    def three(kernel):
        pass

    assert checks.functions == {"a-tests": [one, two], "b-tests": [three]}
    assert checks.declarations() == {"a-tests": {"forbid": ["torch.optim.Adam",
                                                            "torch.optim.adam"],
                                                 "stand_ins": ["f"]}}
    assert checks.stand_ins == {"a-tests": {"f": "def f(): pass"}, "b-tests": {}}


def test_a_checks_file_without_checks_is_refused(tmp_path):
    path = tmp_path / "01-x.py"
    path.write_text("checks = {}\n")
    with pytest.raises(TypeError, match="checks = HiddenChecks"):
        load_hidden_checks(path)
