"""nbgrader course configuration for gradschool.

nbgrader reads this file from the current directory only, so run nbgrader from the repository
root (`gradschool` finds the root from any folder inside). If this file raised, nbgrader would
silently fall back to its default paths: keep it plain assignments, and see
tests/test_nbgrader_config.py, which checks what nbgrader sees.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

root = os.path.dirname(os.path.abspath(__file__))
runtime = os.path.join(root, "autograder")

c.CourseDirectory.course_id = "gradschool"
c.CourseDirectory.root = root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.submitted_directory = "autograder/submitted"
c.CourseDirectory.autograded_directory = "autograder/autograded"
c.CourseDirectory.feedback_directory = "autograder/feedback"
c.CourseDirectory.solution_directory = "autograder/solution"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(runtime, "gradebook.db")
c.Exchange.root = os.path.join(runtime, "exchange")

# Autograding runs the hidden checks of autograder/checks/<assignment>.py in the grader's own
# process, never in the student's kernel (see src/gradschool/instructor/preprocessors.py), and
# puts back test cells a student deleted, edited or turned into Markdown.
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "gradschool.instructor.preprocessors.NoteTamperedTests",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "gradschool.instructor.preprocessors.GradeOutsideTheKernel",
    "nbgrader.preprocessors.IgnorePattern",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.GradeOutsideTheKernel.checks_directory = os.path.join(runtime, "checks")
c.GradeOutsideTheKernel.timeout = 60  # seconds per cell and per hidden-check probe
c.GradeOutsideTheKernel.memory_limit_mb = 4096
# Each kernel runs in the bubblewrap sandbox (autograder/README.md, "The sandbox"): gradschool
# grade and grade-all always, unless --no-sandbox (unsafe, recorded in the report); plain nbgrader
# autograde as this says. Per-cell time budgets come from autograder/checks/<id>.timings.json
# (`gradschool release --timings`), capped by `timeout`.
c.GradeOutsideTheKernel.sandbox = True
c.GradeOutsideTheKernel.tmp_size_mb = 512  # the sandbox's /tmp (and /dev/shm)
c.GradeOutsideTheKernel.max_processes = 256  # processes and threads in the sandbox
