"""Exercises: write an op yourself, and let the package grade it.

Each exercise is one function of :mod:`npsegnet.reference` (``relu_forward``,
``maxpool2d_backward``, ``conv2d_backward``, ``batchnorm2d_backward``, ...).
A student writes a function with the same signature, and
``grade("maxpool2d_backward", my_maxpool2d_backward)`` checks it:

* its outputs against the reference's on small float64 cases chosen to catch
  the usual mistakes: odd sizes, batch 1, tied maxima (the first one wins),
  overlapping windows (stride < kernel), a constant batch-norm channel, huge
  logits;
* for a backward pass, its gradients against centred differences of the
  reference forward pass (:mod:`npsegnet.gradcheck`).

The result is truthy when everything passed; printed, it is a report of each
check and of the first failure with its input. Notebook
``notebooks/07_exercises.ipynb`` is the exercise path: a stub per op, marked
with :func:`exercise`, then its grade.
"""

from .cases import names
from .grading import (
    GRAD_TOL,
    OUTPUT_TOL,
    SOLUTIONS_ENV,
    CheckResult,
    ExerciseFailed,
    GradeResult,
    Summary,
    exercise,
    grade,
    solutions_enabled,
    summary,
)

__all__ = [
    "GRAD_TOL",
    "OUTPUT_TOL",
    "SOLUTIONS_ENV",
    "CheckResult",
    "ExerciseFailed",
    "GradeResult",
    "Summary",
    "exercise",
    "grade",
    "names",
    "solutions_enabled",
    "summary",
]
