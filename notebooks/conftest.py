"""Settings for the notebooks nbmake runs (``pytest``, ``pytest notebooks/...``).

``NPSEGNET_EXERCISE_SOLUTIONS=1`` makes the ``@exercise`` stubs of
``notebooks/07_exercises.ipynb`` return the reference functions, so that
nbmake runs the exercise notebook with every solution filled in; its last
grading cell (``summary()``) then raises if any grade fails. The kernels nbmake
starts inherit this process's environment. Set it to 0 to run the notebook as
a student sees it.

This file sits here rather than at the repository root: a root ``conftest.py``
would make ruff's import sorting treat ``from conftest import ...`` in tests/
as first-party.
"""

import os

os.environ.setdefault("NPSEGNET_EXERCISE_SOLUTIONS", "1")
