"""Stands in for `dask` where tests/test_grade_all.py puts this folder first on PYTHONPATH:
as if the cluster extra were not installed, which plain grade-all must not need."""

raise ModuleNotFoundError("No module named 'dask'", name="dask")
