"""gradschool: helper library for a graded course on training deep networks.

Two sides, told apart by their path.

The student's side, at the top of the package (``pip install gradschool``; no solutions, no hidden
checks, no nbgrader):

- ``gradschool.notebook``       seeds, fair numerics, ``DEVICE`` and plot defaults for a notebook
- ``gradschool.data``           offline data: digits, MNIST-1D, 2-D toy sets, test objectives
- ``gradschool.models``         an MLP builder
- ``gradschool.training``       a small training loop that records a history
- ``gradschool.plots``          learning curves, histograms, heatmaps, 2-D trajectories
- ``gradschool.checks``         the assertions behind the visible tests in the notebooks
- ``gradschool.visible_tests``  ``gradschool check``: run a notebook, report its visible tests
- ``gradschool.cells``          what a test, solution and manual cell is (shared with the grader)
- ``gradschool.cli``            the ``gradschool`` command

The instructor's side, ``gradschool.instructor`` (``pip install -e '.[instructor]'`` in the
repository): release, collect, grade one notebook or a class, the grading kernel, hidden checks,
nbgrader's preprocessors.
"""

import sys

__version__ = "0.1.0"

# nbformat imports jsonschema, which imports rfc3987_syntax when it is installed (Jupyter's
# jupyter-events pulls it in) to check the "iri" string format; it builds a Lark grammar at import:
# 3 s of every process that reads a notebook (each gradschool command, each grading worker), for a
# format that no notebook schema uses. Marked absent, jsonschema leaves that one format unchecked.
sys.modules.setdefault("rfc3987_syntax", None)
