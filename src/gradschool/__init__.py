"""gradschool: helper library for a graded course on training deep networks.

Student-facing modules (no solutions and no hidden checks live here):

- ``gradschool.notebook``  seeds, fair numerics, ``DEVICE`` and plot defaults for a notebook
- ``gradschool.data``      offline data: digits, MNIST-1D, 2-D toy sets, test objectives
- ``gradschool.models``    an MLP builder
- ``gradschool.training``  a small training loop that records a history
- ``gradschool.plots``     learning curves, histograms, heatmaps, 2-D trajectories
- ``gradschool.checks``    the assertions behind the visible tests in the notebooks

Instructor-facing modules (release and grading) are reached through the ``gradschool`` command.
"""

__version__ = "0.1.0"
