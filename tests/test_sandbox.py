"""Attacks on the grader from inside a submission, on the small 'kinds' assignment: each one is
graded in the sandbox (see gradschool.instructor.sandbox) and the damage is checked from outside.

An attack reports what it managed through the grade: where it succeeds (a secret read, a
connection made, more processes than the limit) its exercise is answered wrongly and loses its
points, so "passed" means the attack failed. What it would have written or left running is
checked on the host after grading.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import BIN, gradschool
from kinds.course import ASSIGNMENT, grade, make_course, notebook
from kinds.solutions import SOLUTIONS

from gradschool.instructor import sandbox
from gradschool.instructor.budgets import CELL_FLOOR, NOTEBOOK_FACTOR, NOTEBOOK_SLACK, load_budgets

TMP_SIZE_MB = 16  # the sandbox's /tmp in these tests
WRONG = "\n        return None  # the attack worked: lose the points\n"


def _answer_unless(condition: str, exercise: str, attack: str) -> str:
    """``attack`` then the reference solution of ``exercise``, made wrong when ``condition``
    (a Python expression evaluated after the attack) holds."""
    solution = SOLUTIONS[exercise]
    header, body = solution.split(":\n", 1)
    # The first line of the solution is its def/class; wrap its body in an if for functions.
    assert header.startswith("def "), exercise
    return f"{attack}\n_broken = bool({condition})\n{header}:\n    if _broken:{WRONG}{body}"


def _processes_with(token: str) -> list[int]:
    """Host pids whose command line contains ``token``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("kinds-sandbox"))
    with open(root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.GradeOutsideTheKernel.tmp_size_mb = {TMP_SIZE_MB}\n")
    # A reference run of 0.1 s per cell: every cell gets the floor budget; the notebook, a
    # generous one (the machine running the tests may be loaded).
    cells = {f"{e}-{kind}": 0.1 for e in SOLUTIONS for kind in ("solution", "tests")}
    (root / "autograder" / "checks" / f"{ASSIGNMENT}.timings.json").write_text(
        json.dumps({"assignment": ASSIGNMENT, "total_s": 60.0, "cells": {"setup": 0.1, **cells}}))
    other = root / "autograder" / "submitted" / "other-student" / ASSIGNMENT
    other.mkdir(parents=True)
    (other / f"{ASSIGNMENT}.ipynb").write_text("another student's notebook")
    (root / "autograder" / "gradebook.db").write_bytes(b"the course's gradebook")
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the course but the graded submission (the tests rewrite it)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.name != "submission.ipynb"}


def test_files_home_network_children_and_tmp(course, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("the grader's secret")
    monkeypatch.setenv("HOME", str(home))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    token = f"gradschool-attack-{os.getpid()}"
    before = _snapshot(course)
    secrets = [course / "autograder" / "checks" / f"{ASSIGNMENT}.py",
               course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", home / "secret.txt"]
    targets = [course / "autograder" / "checks" / "evil.py", course / "evil.txt",
               course / "autograder" / "gradebook.db",
               course / "autograder" / "submitted" / "other-student" / ASSIGNMENT /
               f"{ASSIGNMENT}.ipynb"]
    read = f"""
import os
read = []
for path in {[str(p) for p in secrets]!r}:
    try:
        read.append(open(path).read())
    except OSError:
        pass
for folder in {[str(home), str(course), "/root", "/home"]!r}:
    try:
        read += [n for n in os.listdir(folder) if n not in (".pyenv",)]
    except OSError:
        pass
"""
    write = f"""
import os, shutil
for path in {[str(p) for p in targets]!r}:
    for attempt in (lambda: open(path, "a").write("pwned"), lambda: os.remove(path),
                    lambda: shutil.rmtree(os.path.dirname(path))):
        try:
            attempt()
        except OSError:
            pass
open("/tmp/{token}", "w").write("the kernel's own /tmp, not the host's")
"""
    connect = f"""
import socket
connected = []
for address in [("127.0.0.1", {port}), ("127.0.0.1", 22), ("1.1.1.1", 80)]:
    try:
        socket.create_connection(address, timeout=2).close()
        connected.append(address)
    except OSError:
        pass
"""
    children = f"""
import os, subprocess, time
subprocess.Popen(["sleep", "{token}".replace("gradschool-attack-", "9")],
                 start_new_session=True)
if os.fork() == 0:  # a daemon, double-forked
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{token}".replace("gradschool-attack-", "8")])
    os._exit(0)
os.wait()
written = 0
try:
    with open("/tmp/{token}", "wb") as fill:
        while written < {4 * TMP_SIZE_MB} * 2**20:
            fill.write(b"x" * 2**20)
            fill.flush()
            written += 2**20
except OSError:
    pass
"""
    report = grade(course, {
        "softmax": _answer_unless("read", "softmax", read),
        "dropout": write + SOLUTIONS["dropout"],
        "sampler": _answer_unless(f"written > {TMP_SIZE_MB} * 2**20", "sampler", children),
        "adam": connect + SOLUTIONS["adam"].replace(
            "        loss = None", "        loss = None\n        assert not connected"),
    }, "--timeout", "20")
    statuses = {name: t["status"] for name, t in report["by_exercise"].items()}
    assert statuses == dict.fromkeys(SOLUTIONS, "passed"), report
    assert report["sandbox"] is True
    with pytest.raises(BlockingIOError):
        server.accept()  # nobody connected to the grader's listening socket
    server.close()
    assert _snapshot(course) == before  # course, gradebook, other student: untouched
    assert not (course / "evil.txt").exists() and not (Path("/tmp") / token).exists()
    assert not _processes_with(token.replace("gradschool-attack-", "9"))
    assert not _processes_with(token.replace("gradschool-attack-", "8"))


def test_fork_bomb_and_hanging_function(course):
    # A small process (cheaper to fork than the kernel, which holds torch) forks until it
    # cannot, counts its children and ends them. It stops at 2000 by itself: were the limit
    # (256) not applied, the test would fail without flooding the machine.
    fork = """
import subprocess, sys
BOMB = '''
import os, signal, time
children = []
try:
    while len(children) < 2000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print(len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
'''
children = int(subprocess.run([sys.executable, "-c", BOMB], capture_output=True, text=True,
                              timeout=60).stdout)
"""
    report = grade(course, {
        "softmax": _answer_unless("children >= 1000", "softmax", fork),
        "dropout": "def dropout_(x, p, generator=None):\n    while True:\n        pass\n",
    })
    tests = report["by_exercise"]
    assert {name: t["status"] for name, t in tests.items()} == {
        "softmax": "passed", "dropout": "timeout", "adam": "passed", "batchnorm": "passed",
        "sampler": "passed"}, report
    assert f"no result within {CELL_FLOOR} s" in tests["dropout"]["message"], report
    assert "per cell max" in report["limits"], report


def test_killing_the_grader_leaves_no_kernel(course, tmp_path):
    token = f"77{os.getpid()}"
    code = {"softmax": f"import subprocess, time\nsubprocess.Popen(['sleep', '{token}'])\n"
                       "time.sleep(600)\n"}
    path = tmp_path / "submission.ipynb"
    nbformat.write(notebook(code), path)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    grader = subprocess.Popen(
        [str(BIN / "gradschool"), "grade", str(path), "--assignment", ASSIGNMENT],
        cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not _processes_with(f"sleep {token}"):
            assert grader.poll() is None and time.monotonic() < deadline, "the cell never ran"
            time.sleep(0.2)
        sandbox = _descendants(grader.pid)
        assert sandbox
    finally:
        grader.send_signal(signal.SIGKILL)
        grader.wait()
    deadline = time.monotonic() + 10
    while (_processes_with(f"sleep {token}") or _alive(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(f"sleep {token}") and not _alive(sandbox)


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, ppid in parents.items() if ppid == parent}
        todo += children - found
        found |= children
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_without_bwrap_grading_stops_with_one_line(course, tmp_path):
    path = tmp_path / "submission.ipynb"
    nbformat.write(notebook(), path)
    bin_dir = tmp_path / "bin"  # the venv's commands, but no bwrap on PATH
    bin_dir.mkdir()
    result = subprocess.run(
        [str(BIN / "gradschool"), "grade", str(path), "--assignment", ASSIGNMENT],
        cwd=course, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{bin_dir}"})
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "apt-get install bubblewrap" in result.stderr


def test_no_sandbox_warns_and_is_recorded(course, tmp_path):
    path = tmp_path / "submission.ipynb"
    nbformat.write(notebook(), path)
    result = gradschool("grade", str(path), "--assignment", ASSIGNMENT, "--json",
                        "--no-sandbox", "--timeout", "20", cwd=course)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "--no-sandbox" in result.stderr
    report = json.loads(result.stdout)
    assert report["sandbox"] is False and report["score"] == report["max_score"]
    assert report["limits"].startswith("--timeout given")


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox is Linux only")
def test_grading_kernel_in_the_sandbox_sees_no_course(tmp_path):
    from gradschool.instructor import GradingKernel
    from gradschool.instructor.sandbox import Sandbox

    (tmp_path / "data.txt").write_text("the submission's own file")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\nfiles = sorted(os.listdir('.'))\nopen('data.txt', 'a').write('changed')")]
    with GradingKernel(nb, tmp_path, sandbox=Sandbox()) as kernel:
        assert kernel.run_cell(0).ok
        got = kernel.probe("import os\nresult = {'files': files, 'uid': os.getuid(), "
                           "'here': os.listdir(" + repr(str(tmp_path)) + ") "
                           "if os.path.exists(" + repr(str(tmp_path)) + ") else None}")
    assert got["files"] == ["data.txt"] and got["here"] is None
    assert (tmp_path / "data.txt").read_text() == "the submission's own file"  # a private copy


def test_budgets_from_timings_and_without(tmp_path):
    timings = {"assignment": "a", "total_s": 20.0,
               "cells": {"fast": 0.2, "slow": 3.0, "slow:checks": 2.5}}
    (tmp_path / "a.timings.json").write_text(json.dumps(timings))
    budgets = load_budgets(tmp_path, "a", timeout=60, notebook_timeout=900, override=False)
    assert (budgets.cell("fast"), budgets.cell("slow"), budgets.cell(None)) == (
        CELL_FLOOR, 30, CELL_FLOOR)
    assert (budgets.checks("slow"), budgets.checks("fast")) == (25, 60)  # 60: no reference
    assert budgets.notebook == NOTEBOOK_FACTOR * 20 + NOTEBOOK_SLACK
    assert load_budgets(tmp_path, "a", timeout=20, notebook_timeout=900,
                        override=False).cell("slow") == 20  # capped by the timeout
    flat = load_budgets(tmp_path, "b", timeout=60, notebook_timeout=900, override=False)
    assert (flat.cell("fast"), flat.notebook) == (60, 900)
    assert flat.note.startswith("no reference timings for b")
    given = load_budgets(tmp_path, "a", timeout=5, notebook_timeout=900, override=True)
    assert (given.cell("slow"), given.note[:15]) == (5, "--timeout given")


def test_a_python_environment_under_tmp_is_bound_over_the_private_tmp(monkeypatch, tmp_path):
    """A checkout under /tmp (as on a CI box) keeps its .venv visible: the sandbox's /tmp is
    mounted first, the environment on top of it, not the other way round."""
    monkeypatch.setattr(sandbox, "_python_folders", lambda: ["/tmp/checkout/.venv"])
    args = sandbox.bwrap_command(sandbox.Sandbox(), tmp_path, "/run/exchange", ["python"])
    pairs = list(zip(args, args[1:], strict=False))
    assert pairs.index(("--tmpfs", "/tmp")) < pairs.index(("--ro-bind", "/tmp/checkout/.venv"))


def test_gpu_device_files_groups_and_mps_pipes_are_passed_in(monkeypatch, tmp_path):
    """On a simulated GPU machine: WSL2's dxg and the NVIDIA files are bound, the groups of a
    device file others may not open are kept, the CUDA variables reach the kernel."""
    pipes = tmp_path / "mps"
    pipes.mkdir()
    device = tmp_path / "nvidia0"
    device.write_text("")
    os.chmod(device, 0o660)
    os.chown(device, 0, 44)  # the 'video' group
    monkeypatch.setattr(sandbox, "gpu_devices", lambda: [str(device), "/dev/dxg"])
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipes))
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    command = sandbox.bwrap_command(sandbox.Sandbox(), tmp_path, "/tmp/x", ["python", "-c", "1"])
    joined = " ".join(command)
    assert f"--dev-bind {device} {device}" in joined and "--dev-bind /dev/dxg /dev/dxg" in joined
    assert f"--bind {pipes} {pipes}" in joined
    assert "--setenv CUDA_DEVICE_ORDER PCI_BUS_ID" in joined
    launcher = command.index(sandbox.LAUNCHER)
    assert command[launcher + 3] == ("44" if os.geteuid() == 0 else "")  # groups kept


def test_a_gpu_the_sandbox_cannot_use_stops_grading_with_one_line():
    """The grader sees a GPU (simulated); inside, CUDA does not work: one line saying so."""
    with pytest.raises(sandbox.SandboxError, match="this machine has a GPU, but the grading "
                       "sandbox cannot use it .*is_available.* is False inside the sandbox"):
        sandbox.check_sandbox(sandbox.Sandbox(), cuda=True)
