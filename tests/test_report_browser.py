"""In a real browser (headless Chromium, tests/browser.py): the class report as an instructor
opens it, and a released notebook in JupyterLab as a student meets it (Run All, then nbgrader's
Validate button). Skipped, saying how to install, where Chromium or Selenium is missing."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from browser import chromium, console_errors, missing
from conftest import BIN, ROOT
from report_class import INJECTION, results, write_class

from gradschool.cells import is_solution_cell, is_test_cell
from gradschool.instructor.report import write_report

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

NOTEBOOK = "04-dropout"  # the fastest to reach its first exercise
# Each cell of the open notebook: [its input prompt ("[3]:", "[*]:", "[ ]:" or "" for Markdown),
# whether its outputs show a traceback]
CELLS_JS = """return [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => [
    cell.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '',
    (cell.querySelector('.jp-OutputArea')?.textContent ?? '').includes(
        'Traceback (most recent call last)')])"""


def _wait(driver, condition, timeout: float, poll: float = 0.2):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll).until(condition)


def test_the_report_page_in_a_browser(tmp_path):
    from selenium.webdriver.common.by import By

    evil = results("210199", {"mc-dropout-tests": ("failed", INJECTION)}, 3.0)
    out = write_class(tmp_path, [evil])
    (out / "results" / "cut.json").write_text('{"student": "cut", "sco')  # an unreadable file
    html, _ = write_report(out)
    with chromium() as driver:
        driver.get(html.as_uri())
        _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", 20)
        for section in ("scores", "tests", "problems", "time"):
            assert driver.find_element(By.ID, section).is_displayed(), section
        text = driver.find_element(By.TAG_NAME, "body").text
        for expected in ("Timeouts: 1", "Dead kernels: 1", "Out of memory: 1",
                         "Restored test cells", "Not graded", "no .ipynb in the upload",
                         "Result files that could not be read: 1", "Slowest submissions",
                         "# of the elements are kept"):
            assert expected in text, expected
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth])")
        assert len(images) == 3 and all(width > 0 for _, width in images), images
        assert INJECTION in text  # shown as text ...
        assert driver.title.startswith("Class report")  # ... never run
        assert driver.execute_script("return document.scripts.length") == 0
        assert console_errors(driver) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _lab(root: Path, port: int, token: str) -> Iterator[None]:
    """``make lab``'s JupyterLab on ``root/course``, with Jupyter's own state in ``root``;
    stopped, kernels included, on exit."""
    command = [str(BIN / "jupyter"), "lab", "--notebook-dir=course", "--no-browser",
               "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    state = {f"JUPYTER_{name}_DIR": str(root / "jupyter" / name.lower())
             for name in ("CONFIG", "DATA", "RUNTIME")}
    env = {**os.environ, **state, "JUPYTERLAB_WORKSPACES_DIR": str(root / "jupyter" / "ws"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    with open(root / "lab.log", "w") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _until_up(server, f"http://127.0.0.1:{port}/api/status?token={token}", root)
            yield
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its kernels
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _until_up(server: subprocess.Popen, url: str, root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start: {(root / 'lab.log').read_text()}")
            time.sleep(0.2)


@pytest.fixture
def lab(tmp_path):
    """(URL of the released notebook in a running JupyterLab, its cells): on a copy of course/."""
    shutil.copytree(ROOT / "course", tmp_path / "course")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)  # `make lab` runs at the repository root
    port, token = _free_port(), secrets.token_hex(16)
    path = f"{NOTEBOOK}/{NOTEBOOK}.ipynb"
    cells = nbformat.read(tmp_path / "course" / path, as_version=4).cells
    with _lab(tmp_path, port, token):
        yield f"http://127.0.0.1:{port}/lab/tree/{path}?token={token}", cells


def test_a_student_runs_a_released_notebook_and_validates_it(lab):
    from selenium.webdriver.common.by import By

    url, cells = lab
    first_solution = next(i for i, c in enumerate(cells) if is_solution_cell(c))
    first_test = next(i for i, c in enumerate(cells) if is_test_cell(c))
    assert first_solution < first_test
    with chromium(1400, 1000) as driver:
        driver.get(url)
        _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"))
              == len(cells), 90)
        _menu(driver, "Run", "Run All Cells")

        def first_error(d):  # index of the first cell showing a traceback, once all have run
            prompts, errors = zip(*d.execute_script(CELLS_JS), strict=True)
            if "[*]:" in prompts or True not in errors:
                return None
            return errors.index(True), prompts

        error, prompts = _wait(driver, first_error, 120)
        assert error == first_test, f"first error in cell {error}, expected {first_test}"
        cell = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")[error]
        assert "NotImplementedError" in cell.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
        ran = [prompts[i] for i in range(error) if cells[i].cell_type == "code"]
        assert all(p[:1] == "[" and p[1:-2].isdigit() for p in ran), ran  # "[3]:", no "[ ]:"

        driver.find_element(By.CSS_SELECTOR, ".validate-button").click()
        dialog = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), 180)[0]
        report = dialog.text
        assert "Validation Results" in report and "The following cell failed" in report
        assert cells[first_test].source.splitlines()[0] in report  # the failing test cell
        assert "NotImplementedError" in report


def _menu(driver, top: str, item: str) -> None:
    """Click ``top`` in JupyterLab's menu bar, then ``item`` in its menu."""
    from selenium.webdriver.common.by import By

    bar = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")
    next(label for label in bar if label.text == top).click()
    entries = _wait(driver, lambda d: [e for e in d.find_elements(By.CSS_SELECTOR,
                                                                  ".lm-Menu-itemLabel")
                                       if e.text == item], 10)
    entries[0].click()

