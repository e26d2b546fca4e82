"""One place for the compiler options of every Numba kernel.

Kernels never spell out their own ``@numba.njit(...)`` options: they use
:func:`njit` from here, so that a change of policy (say, turning off the cache)
is one edit. The policy:

* ``cache=True``: a compiled kernel is written next to its source and reused by
  the next process, which keeps the time to first result short.
* **no fastmath**: gradient checks compare against centred differences in
  float64 and need IEEE arithmetic (no reassociation, NaN kept). One narrow
  exception: the leaf loops that *sum* a row (``njit(reduction=True)``) may
  reorder their additions and fuse multiply-adds (LLVM's ``reassoc`` and
  ``contract`` flags, nothing else: NaN and infinity still propagate). Without
  them LLVM may not turn a sum into vector instructions, and batch-norm's
  statistics ran at 2 GB/s instead of 12 on one core. The order of a
  floating-point sum is a rounding choice, not a semantic one; the blocked
  sums bound the error either way.
* ``nogil=True``: kernels release the GIL, so a caller may overlap them with
  NumPy/BLAS work in another thread.

Setting the environment variable ``NUMBA_DISABLE_JIT=1`` turns every kernel
into the plain Python function it is written as (``prange`` becomes ``range``),
which lets debuggers and coverage see inside them.
"""

from __future__ import annotations

import os

import numba
import numba.extending

# Numba's OpenMP threading layer leaves its threads spinning after each parallel
# kernel, and on a 2-core machine they starve the OpenBLAS threads of the GEMM
# that follows (a GEMM + parallel kernel pair measured 19 ms with "omp" against
# 5 ms with "workqueue"). The training loop launches kernels from one Python
# thread only, which is all "workqueue" needs. A user's explicit choice wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def _slice_shape_mismatch(src_shapes, index_shape):
    """Raised by a compiled kernel when ``a[i:j] = b`` has mismatched shapes."""
    raise ValueError("cannot assign slice from input of different size")


@numba.extending.overload(_slice_shape_mismatch)
def _slice_shape_mismatch_impl(src_shapes, index_shape):
    def impl(src_shapes, index_shape):
        raise ValueError("cannot assign slice from input of different size")

    return impl


def _plain_slice_errors() -> bool:
    """Give Numba's slice-assignment shape check a fixed message.

    From Numba 0.60 on, a kernel that assigns an array to a slice reports a
    shape mismatch with both shapes in the message; compiling that message
    (``str`` of tuples, ``join``, f-strings: about thirty of Numba's string
    functions) into the first such kernel took about 3 s of a cold start, a
    third of the time to first result on the 2-core EPYC. Our kernels only
    assign slices between shapes they computed themselves, so the check
    stays and only its message changes, to the fixed one older Numba gave.
    Returns whether Numba had the hook (older versions already use that
    message).
    """
    from numba.np import arrayobj

    if not hasattr(arrayobj, "raise_with_shape_context"):
        return False
    # fancy_setslice looks the hook up by this module-level name when it
    # lowers a slice assignment
    arrayobj.raise_with_shape_context = _slice_shape_mismatch
    return True


_plain_slice_errors()

JIT_OPTIONS = {"cache": True, "fastmath": False, "nogil": True}
#: The fastmath flags of ``njit(reduction=True)`` (see the module notes).
REDUCTION_FASTMATH = frozenset({"reassoc", "contract"})

# dtypes the layers accept; float32 is the default, float64 is for gradient checks.
FLOAT_DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"


def set_threads(threads) -> int:
    """Set the number of Numba threads; return the previous count.

    Parameters
    ----------
    threads : int or None
        Between 1 and ``numba.config.NUMBA_NUM_THREADS``; None leaves the
        count as it is.

    Raises
    ------
    npsegnet.errors.UsageError
        For anything else (the commands pass ``--threads`` through here).
    """
    from .errors import UsageError

    previous = numba.get_num_threads()
    if threads is None:
        return previous
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise UsageError(f"threads must be an int, got {threads!r}")
    if not 1 <= threads <= top:
        raise UsageError(f"--threads must be between 1 and {top}, got {threads}")
    numba.set_num_threads(threads)
    return previous


def njit(
    func=None, *, parallel: bool = False, reduction: bool = False, inline: bool = False
):
    """Compile ``func`` lazily with the project's options.

    Use as ``@njit`` or ``@njit(parallel=True)`` (the latter for kernels whose
    outer loop is a ``numba.prange``). ``@njit(reduction=True)`` is for small
    helpers that only sum: they may reassociate (see the module notes).
    ``@njit(inline=True)`` is for small helpers: Numba inlines them into
    their callers' IR instead of compiling them on their own, which saves
    each a fixed cost of about 0.1-0.3 s in a cold start (an unused one is
    never compiled).
    """
    options = dict(JIT_OPTIONS)
    if inline:
        options["inline"] = "always"
    if reduction:
        options["fastmath"] = set(REDUCTION_FASTMATH)

    def wrap(f):
        return numba.njit(parallel=parallel, **options)(f)

    return wrap if func is None else wrap(func)


_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory instead of returning it to the OS.

    glibc serves every allocation above 32 MB with a fresh ``mmap`` and gives
    it back with ``munmap`` when the array dies, so a program that allocates
    and frees large arrays over and over page-faults them all in again each
    time (and with transparent huge pages the kernel sometimes stops to
    compact memory on those faults). Turning ``mmap`` off for large blocks and
    never trimming the heap keeps the freed pages mapped. The cost is that
    the process keeps its peak resident size until it exits.

    The library does not need it: a model's layers reuse their arrays from
    step to step (:mod:`npsegnet.layers.buffers`), so a steady training step
    allocates almost nothing. Training used to call this; it no longer does.
    It stays for the benchmark's ``--mallopt`` option, which applies it to
    both frameworks alike (PyTorch's CPU allocator goes through the same
    ``malloc``). It is a process-wide setting, so library code never calls it.
    Returns False (and does nothing) where the C library is not glibc.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    return bool(ok and mallopt(_M_TRIM_THRESHOLD, 2**30) == 1)
