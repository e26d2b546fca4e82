"""The convolutions' band work on the library's threads, one BLAS thread each.

A convolution here alternates two kinds of work on bands of image rows:
packing (Numba loops that move data, bound by memory) and a GEMM (OpenBLAS,
bound by arithmetic). Run with both libraries' thread pools, every hand-over
between the two is a barrier, and OpenBLAS's worker threads keep spinning for
a while after each GEMM, taking a core from the packing that follows. So
instead ``T`` Python threads (``T`` = Numba's thread count) each take whole
parts of the work (an image, or a range of its rows) and run pack, GEMM and
unpack in turn, with OpenBLAS held to one thread meanwhile: its single-threaded
GEMM is re-entrant, the Numba loops are compiled ``nogil``, and while one
thread packs the other multiplies. On the 2-core AMD EPYC this took SegNet-
Basic's 7x7 convolution (4x64x360x480) from 153-167 to 179-186 GFLOP/s
forward, identical results.

Where OpenBLAS cannot be found (NumPy built on another BLAS) or ``T`` is 1,
the parts run one after another in the calling thread, and the BLAS keeps its
own threads; so does a single part, on a pool thread.

:func:`run_ranges` shares a plain loop over planes or channels among the same
threads, for the kernels a first forward pass needs (max pooling, unpooling,
batch norm in eval mode). Written as serial ``@njit`` loops over a range
rather than ``parallel=True`` ones, they compile in about half the time
(Numba's parallel lowering builds a gufunc per loop), which is most of the
time to a first result in a fresh process; they move memory at the same rate.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections import deque
from concurrent.futures import Future, wait
from contextlib import contextmanager
from functools import lru_cache

import numba

# OpenBLAS's exported names differ with its build: plain, 64-bit-integer
# (suffix 64_), and the scipy-openblas wheels NumPy ships (prefix scipy_).
_OPENBLAS_PREFIXES = ("openblas", "scipy_openblas")
_OPENBLAS_SUFFIXES = ("", "64_")


def _openblas_libs():
    """``ctypes`` handles of the OpenBLAS libraries loaded in this process."""
    libs = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1]
                for line in fh
                if "openblas" in line.lower() and ".so" in line.split()[-1]
            }
    except OSError:
        return libs
    for path in sorted(paths):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _openblas_functions(lib, name: str):
    """Every ``openblas_<name>`` variant that ``lib`` exports."""
    found = []
    for prefix in _OPENBLAS_PREFIXES:
        for suffix in _OPENBLAS_SUFFIXES:
            fn = getattr(lib, f"{prefix}_{name}{suffix}", None)
            if fn is not None:
                found.append(fn)
    return found


@lru_cache(maxsize=1)
def _thread_controls() -> tuple:
    """(get, set) pairs of every loaded OpenBLAS's thread count (may be empty)."""
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that it is in the maps)

    pairs = []
    for lib in _openblas_libs():
        gets = _openblas_functions(lib, "get_num_threads")
        sets = _openblas_functions(lib, "set_num_threads")
        if gets and sets:
            pairs.append((gets[0], sets[0]))
    return tuple(pairs)


_lock = threading.Lock()  # one threaded section at a time per process
_local = threading.local()  # .worker: True on the pool's threads


@contextmanager
def _one_blas_thread():
    """Hold every OpenBLAS to one thread inside the block; yield whether it could."""
    controls = _thread_controls()
    if not controls:
        yield False
        return
    with _lock:
        saved = [get() for get, _ in controls]
        for _, set_ in controls:
            set_(ctypes.c_int(1))
        try:
            yield True
        finally:
            for (_, set_), n in zip(controls, saved, strict=True):
                set_(ctypes.c_int(n))


class _Workers:
    """``threads`` threads; part ``i`` of a run always goes to thread ``i % threads``.

    A fixed assignment (rather than a shared queue) means each thread meets
    the same parts on every run, so the scratch arrays it keeps are sized on
    the first run and a later run allocates nothing: a steady training step,
    and the memory estimate that probes one, see the same allocations.
    """

    def __init__(self, threads: int):
        self.queues = [queue.SimpleQueue() for _ in range(threads)]
        self.threads = [
            threading.Thread(
                target=self._serve, args=(q,), name=f"npsegnet-conv-{i}", daemon=True
            )
            for i, q in enumerate(self.queues)
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _serve(tasks) -> None:
        _local.worker = True
        while True:
            item = tasks.get()
            if item is None:
                return
            future, work, args = item
            del item
            if not future.set_running_or_notify_cancel():
                del future, work, args
                continue
            try:
                result, error = work(*args), None
            except BaseException as exc:  # handed to the caller, raised there
                result, error = None, exc
            # Let go of the task before the caller learns that it is done: its
            # arguments (and a convolution's closure) hold a layer's arrays,
            # which would otherwise outlive the layer's own references until
            # this thread's next task. Kept, they were one 4x64x360x480 map
            # (169 MiB) more at the peak of a SegNet-Basic training step.
            del work, args
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            del future, result, error

    def submit(self, i: int, work, *args) -> Future:
        future = Future()
        self.queues[i % len(self.queues)].put((future, work, args))
        return future

    def shutdown(self) -> None:
        for tasks in self.queues:
            tasks.put(None)
        for thread in self.threads:
            thread.join()


_pool: _Workers | None = None


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: start afresh."""
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _workers(threads: int) -> _Workers:
    global _pool
    if _pool is None or len(_pool.threads) != threads:
        if _pool is not None:
            _pool.shutdown()
        _pool = _Workers(threads)
    return _pool


def split_rows(N: int, lo: int, hi: int, threads: int) -> list[tuple[int, int, int]]:
    """Parts ``(n, lo, hi)`` of the rows ``lo:hi`` of ``N`` images for ``threads``.

    Whole images when they share out evenly; otherwise each image is cut in
    ``threads`` ranges of rows of nearly equal length, so that no thread idles
    at the end (one image on two threads: two halves).
    """
    if threads <= 1 or N % threads == 0:
        return [(n, lo, hi) for n in range(N)]
    rows = hi - lo
    cuts = [lo + (rows * p) // threads for p in range(threads + 1)]
    return [
        (n, cuts[p], cuts[p + 1])
        for n in range(N)
        for p in range(threads)
        if cuts[p + 1] > cuts[p]
    ]


def _on_pool_thread() -> bool:
    return getattr(_local, "worker", False)


# Below this many bytes of memory traffic a kernel runs in the calling thread:
# handing work to a thread and waiting for it costs some tens of microseconds.
RANGES_MIN_BYTES = 1 << 20


def run_ranges(kernel, count: int, args: tuple, nbytes: int = 0) -> None:
    """Call ``kernel(*args, lo, hi)`` over ``0:count`` cut into one range per thread.

    ``kernel`` is a serial ``@njit(nogil)`` loop over items ``lo:hi``
    (planes, channels) that writes only its items' results, so the ranges
    run at once and the result does not depend on how ``0:count`` is cut.
    The calling thread takes the last range. Below ``RANGES_MIN_BYTES`` of
    traffic (``nbytes``), with one thread, or when called from a pool thread,
    everything runs in the calling thread.
    """
    threads = min(numba.get_num_threads(), count)
    if threads <= 1 or nbytes < RANGES_MIN_BYTES or _on_pool_thread():
        kernel(*args, 0, count)
        return
    cuts = [(count * p) // threads for p in range(threads + 1)]
    pool = _workers(numba.get_num_threads())
    futures = [
        pool.submit(p, kernel, *args, cuts[p], cuts[p + 1]) for p in range(threads - 1)
    ]
    try:
        kernel(*args, cuts[-2], cuts[-1])
    finally:
        for future in futures:
            future.result()


def _ignore(result) -> None:
    return None


# Parts handed out ahead of the one whose result is consumed next, per thread:
# one keeps every thread busy while the caller adds up a result (a cheap
# step), and each result waiting is an array the caller must keep.
_AHEAD = 1


def result_slots() -> int:
    """How many results of one :func:`run_parts` can be alive at once.

    A part whose result goes to slot ``i % result_slots()`` never meets an
    unconsumed result in the same slot, so callers can keep the results in
    that many preallocated arrays instead of allocating one per part.
    """
    return _AHEAD * numba.get_num_threads() + 1


def run_parts(work, parts, consume=_ignore, threaded: bool = True) -> None:
    """Call ``work(*part)`` for every part, over the library's threads.

    Each result is handed to ``consume`` in the calling thread, in the order
    of ``parts`` whatever the threads' timing, so that a caller adding the
    results up rounds the same way on every run. At most ``_AHEAD``
    results per thread wait for their turn (see :func:`result_slots`). An
    exception in a part is raised here, once the parts already started have
    finished. ``threaded=False`` runs the parts in the calling thread (for
    work too small to pay for handing it over).
    """
    threads = numba.get_num_threads()
    if not threaded or threads <= 1 or not _thread_controls():
        for part in parts:
            consume(work(*part))
        return
    if len(parts) == 1:
        # one part: BLAS's own threads share its GEMMs. It still runs on a
        # pool thread, whose scratch arrays exist already (the caller's would
        # be one more set of them).
        consume(_workers(threads).submit(0, work, *parts[0]).result())
        return
    with _one_blas_thread() as held:
        if not held:
            for part in parts:
                consume(work(*part))
            return
        pool = _workers(threads)
        pending = deque()
        try:
            for i, part in enumerate(parts):
                pending.append(pool.submit(i, work, *part))
                if len(pending) > _AHEAD * threads:
                    consume(pending.popleft().result())
            while pending:
                consume(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
            wait(pending)
