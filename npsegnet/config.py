"""One place for the compiler options of every Numba kernel.

Kernels never spell out their own ``@numba.njit(...)`` options: they use
:func:`njit` from here, so that a change of policy (say, turning off the cache)
is one edit. The policy:

* ``cache=True``: a compiled kernel is written next to its source and reused by
  the next process, which keeps the time to first result short.
* **no fastmath**: gradient checks compare against centred differences in
  float64 and need IEEE arithmetic (no reassociation, NaN kept).
* ``nogil=True``: kernels release the GIL, so a caller may overlap them with
  NumPy/BLAS work in another thread.

Setting the environment variable ``NUMBA_DISABLE_JIT=1`` turns every kernel
into the plain Python function it is written as (``prange`` becomes ``range``),
which lets debuggers and coverage see inside them.
"""

from __future__ import annotations

import os

import numba

# Numba's OpenMP threading layer leaves its threads spinning after each parallel
# kernel, and on a 2-core machine they starve the OpenBLAS threads of the GEMM
# that follows (a GEMM + parallel kernel pair measured 19 ms with "omp" against
# 5 ms with "workqueue"). The training loop launches kernels from one Python
# thread only, which is all "workqueue" needs. A user's explicit choice wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

JIT_OPTIONS = {"cache": True, "fastmath": False, "nogil": True}

# dtypes the layers accept; float32 is the default, float64 is for gradient checks.
FLOAT_DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"


def njit(func=None, *, parallel: bool = False):
    """Compile ``func`` lazily with the project's options.

    Use as ``@njit`` or ``@njit(parallel=True)`` (the latter for kernels whose
    outer loop is a ``numba.prange``).
    """

    def wrap(f):
        return numba.njit(parallel=parallel, **JIT_OPTIONS)(f)

    return wrap if func is None else wrap(func)
