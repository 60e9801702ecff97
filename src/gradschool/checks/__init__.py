"""Assertions behind the visible tests in the notebooks.

Every check raises ``AssertionError`` with a one-line message that names what is wrong: the
dtype, the shape, the device, which element, expected vs got, the tolerance, and, where we can
tell, which convention is likely mixed up. Nothing here knows the answer to an exercise: the
expected values are computed by the notebook and passed in.

Statistical checks (``normal_mean_std_test``, ``uniform_bounds_test``, ``bernoulli_rate_test``)
take a false-alarm rate ``alpha`` (default 1e-9): the probability that a *correct* implementation
fails the check is at most ``alpha``. The bound is rigorous (exact Gaussian quantile, Chernoff
and Bernstein tail bounds, union bound over the sub-tests), not a normal approximation, so a
correct solution does not fail by bad luck, whatever the sample size.

The modules, by what they check: :mod:`~gradschool.checks.compare` (values),
:mod:`~gradschool.checks.stats` (random draws), :mod:`~gradschool.checks.device` (device
agnosticism), :mod:`~gradschool.checks.conventions` (in place, generators),
:mod:`~gradschool.checks.isolation` (``replaced``: a test of one exercise with stand-ins for the
others); ``report`` (below) frames a visible test cell. Notebooks import them all from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gradschool.checks.compare import assert_close, assert_equal
from gradschool.checks.conventions import assert_generator_reproducible, assert_in_place
from gradschool.checks.device import check_device_agnostic
from gradschool.checks.isolation import replaced
from gradschool.checks.stats import bernoulli_rate_test, normal_mean_std_test, uniform_bounds_test

__all__ = [
    "assert_close",
    "assert_equal",
    "normal_mean_std_test",
    "uniform_bounds_test",
    "bernoulli_rate_test",
    "check_device_agnostic",
    "assert_in_place",
    "assert_generator_reproducible",
    "replaced",
    "report",
]


@contextlib.contextmanager
def report(name: str) -> Iterator[None]:
    """Context manager for a visible test cell: prefixes failures with ``name``, prints success.

    Example::

        with report("my_init_"):
            assert_in_place(my_init_, torch.empty(64, 32))
            normal_mean_std_test(my_init_(torch.empty(256, 256)), 0.0, expected_std)

    Args:
        name: what is being tested, e.g. the exercise's function name.

    Returns:
        A context manager; on success it prints ``"<name>: visible checks passed"``; an
        AssertionError inside is re-raised as ``AssertionError("<name>: <message>")``.
    """
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{name}: {e}") from None
    print(f"{name}: visible checks passed")
