"""Packaging: one dependency list in two files, and a wheel that holds the library only."""

import subprocess
import sys
import zipfile

import tomllib
import yaml
from conftest import ROOT


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["instructor"] + extras["cluster"] + extras["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r for r in pip if not r.startswith("-")}  # not pip's options
    assert "-e ." in pip, "environment.yml must install the package itself"
    for requirement in wanted:
        name = _name(requirement)
        if name == "torch":  # pinned in both Makefile and environment.yml to the tested build
            assert listed["torch"].startswith("torch==")
        else:
            assert listed.get(name) == requirement, f"{name}: {listed.get(name)} vs {requirement}"
    assert set(listed) == {_name(r) for r in wanted}


def test_makefile_and_environment_pin_the_same_torch():
    env = (ROOT / "environment.yml").read_text()
    makefile = (ROOT / "Makefile").read_text()
    pin = next(
        line.split("?=")[1].strip()
        for line in makefile.splitlines()
        if line.startswith("TORCH ") or line.startswith("TORCH\t")
    )
    assert f"- {pin}" in env
    cpu_index = "https://download.pytorch.org/whl/cpu"  # the light default on Linux, in both
    assert f"--extra-index-url {cpu_index}" in env and f"Linux,$(shell uname -s)),{cpu_index})" \
        in makefile


def test_wheel_holds_the_library_only(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("gradschool-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    files = [n for n in names if ".dist-info/" not in n]
    assert files and all(n.startswith("gradschool/") and n.endswith(".py") for n in files), files
    assert not any("solution" in n or "autograder" in n or n.endswith(".ipynb") for n in names)
