"""The report's plots, in the course's matplotlib style, as PNG ``data:`` URIs for an <img>.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot, no backend, nothing
left open), inside an ``rc_context`` holding :func:`gradschool.notebook.plot_defaults`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradschool.notebook import plot_defaults


def _png(draw: Callable[[Axes], None], height: float) -> str:
    """Draw on a new 7-inch-wide figure; return it as a base64 PNG data URI."""
    with mpl.rc_context():
        plot_defaults()
        figure = Figure(figsize=(7.0, height))
        draw(figure.add_subplot())
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(scores: list[float], max_score: float, median: float | None) -> str:
    """Students per score: one bin per point up to 40 points, else 40 bins; the maximum and
    the median marked."""
    def draw(ax: Axes) -> None:
        top = max([max_score, *scores, 1.0])
        bins = [b - 0.5 for b in range(int(top) + 2)] if top <= 40 else 40
        ax.hist(scores, bins=bins, color="C0", edgecolor="white")
        ax.axvline(max_score, color="C3", linestyle="--", label=f"max score {max_score:g}")
        if median is not None:
            ax.axvline(median, color="C1", linestyle=":", label=f"median {median:g}")
        ax.set_xlabel("score (points)")
        ax.set_ylabel("students")
        ax.set_title(f"Scores of {len(scores)} students")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left")
    return _png(draw, 3.2)


def pass_rates(tests: list[dict]) -> str:
    """One horizontal bar per graded test: the percentage of graded notebooks passing it."""
    def draw(ax: Axes) -> None:
        ids = [t["id"] for t in tests][::-1]  # first test on top
        rates = [100 * (t["pass_rate"] or 0.0) for t in tests][::-1]
        bars = ax.barh(ids, rates, color="C2")
        ax.bar_label(bars, labels=[f"{r:.0f}%" for r in rates], padding=3, fontsize="small")
        ax.set_xlim(0, 110)
        ax.set_xlabel("graded notebooks passing the test (%)")
        ax.set_title("Pass rate per test")
        ax.grid(axis="y", visible=False)
    return _png(draw, 1.0 + 0.35 * len(tests))


def time_histogram(seconds: list[float], median: float | None) -> str:
    """Submissions per grading wall time (20 bins), the median marked."""
    def draw(ax: Axes) -> None:
        ax.hist(seconds, bins=20, color="C4", edgecolor="white")
        if median is not None:
            ax.axvline(median, color="C1", linestyle=":", label=f"median {median:.1f} s")
            ax.legend(loc="upper right")
        ax.set_xlabel("grading time per submission (s, wall clock in the worker)")
        ax.set_ylabel("submissions")
        ax.set_title(f"Grading time of {len(seconds)} submissions")
        ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(draw, 3.0)
