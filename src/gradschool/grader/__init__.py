"""Grading outside the submission's reach: the kernel, the hidden checks, nbgrader's steps.

See :mod:`gradschool.grader.preprocessors` for how a notebook is graded and
:mod:`gradschool.grader.hidden` for how an instructor writes hidden checks.
"""

from gradschool.grader.hidden import HiddenChecks, delegation, load_checks
from gradschool.grader.kernel import GradingKernel, Outcome, ProbeFailed

__all__ = ["GradingKernel", "HiddenChecks", "Outcome", "ProbeFailed", "delegation", "load_checks"]
