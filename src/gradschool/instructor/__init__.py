"""The instructor's side of gradschool: release, collect, grade, feedback, export. Needs the
``instructor`` extra.

- ``course``         the nbgrader course at the repository root: config, paths, gradebooks
- ``release``        ``course/<id>/`` generated from ``solutions/<id>/``, and the in-sync check
- ``collect``        one notebook per student from a folder or a Moodle/Canvas zip
- ``grade``          grade one notebook in a scratch gradebook (``gradschool grade``)
- ``grade_all``      grade a class in parallel, import into the gradebook (``gradschool grade-all``)
- ``report``         a batch's class report, report.html and report.json (``gradschool report``)
- ``kernel``         the kernel a submission runs in, with time, memory and output limits
- ``sandbox``        the bubblewrap sandbox around that kernel: no course files, no network
- ``budgets``        time budgets per cell and per notebook, from the solution's recorded timings
- ``hidden_checks``  how ``autograder/checks/<id>.py`` registers checks, forbidden lists, stand-ins
- ``probe``          what a probe runs in the kernel: stand-ins, settings reset, tripwires
- ``preprocessors``  the nbgrader steps that run the kernel and the hidden checks
- ``status``         the statuses all of the above report
- ``gpu_check``      ``gradschool gpu-check``: the course run, graded and timed on a GPU, with
                     ``gpu_smoke`` (the machine), ``gpu_runs`` (the course) and ``gpu_report``

Hidden-check files import what they need from here: ``from gradschool.instructor import
HiddenChecks``.
"""

import importlib

#: What this package exports -> the module that defines it. Imported on first use (PEP 562), so
#: that the commands that never run a kernel (release, export, feedback, report, grade-all's
#: main process) do not import torch: 2.5 s each.
_EXPORTS = {
    "HiddenChecks": "hidden_checks", "load_hidden_checks": "hidden_checks",
    "GradingKernel": "kernel", "Outcome": "kernel", "ProbeFailed": "kernel",
    "Delegated": "probe", "Guard": "probe", "device_of": "probe",
    "Status": "status",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
