"""Run the solution notebook of 05-batchnorm once per seed and report which asserts fail.

Not a test (pytest does not collect it): the evidence behind the asserts of the notebook's locked
experiment cells, which must hold for every seed ("Claims hold across seeds" in COURSE.md). Each
run executes every code cell of ``solutions/05-batchnorm`` in this process with ``SEED = k``
(the setup cell keeps its seed 0; ``SEED`` seeds the experiments), records the first
``AssertionError`` of each cell and goes on, and prints the cells' output to
``OUT/seed-<k>.txt``. Usage, from the repository root (about 30 s of CPU per seed), for seeds
0 to 12 and optionally another copy of the notebook::

    OMP_NUM_THREADS=1 .venv/bin/python tests/seed_sweep_05.py 0 13 /tmp/seeds05 [NOTEBOOK]
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from pathlib import Path

import matplotlib
import nbformat

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gradschool.delegation import python_source

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "05-batchnorm" / "05-batchnorm.ipynb"


def run(seed: int, out: Path, notebook: Path = NOTEBOOK) -> list[str]:
    """Execute ``notebook`` with ``SEED = seed``; return 'cell: message' per failed cell."""
    nb = nbformat.read(notebook, as_version=4)
    main = types.ModuleType("__main__")  # the notebook's namespace, as in a kernel
    namespace, saved = vars(main), sys.modules["__main__"]
    failures, log = [], io.StringIO()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = python_source(cell.source.replace("### BEGIN SOLUTION", "").replace(
            "### END SOLUTION", ""))
        if "\nSEED = 0\n" in f"\n{source}\n":
            source = source.replace("SEED = 0", f"SEED = {seed}", 1)
        name = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
        log.write(f"--- {name}\n")
        sys.modules["__main__"] = main
        try:
            with contextlib.redirect_stdout(log):
                exec(compile(source, f"<{name}>", "exec"), namespace)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
            log.write(f"ASSERTION FAILED: {exc}\n")
        finally:
            sys.modules["__main__"] = saved
        plt.close("all")
    (out / f"seed-{seed}.txt").write_text(log.getvalue())
    return failures


def main(first: int, stop: int, out: str, notebook: str = str(NOTEBOOK)) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(first, stop):
        failures = run(seed, folder, Path(notebook))
        print(f"seed {seed}: " + ("all asserts held" if not failures else "; ".join(failures)),
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:5])
