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

__version__ = "0.1.0"
