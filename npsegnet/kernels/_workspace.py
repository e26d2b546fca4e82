"""Scratch arrays that the kernels keep between calls, and the row bands they fill.

The convolution kernels (:mod:`~npsegnet.kernels.conv` and
:mod:`~npsegnet.kernels.conv_transpose`) pack a band of image rows into a
buffer, hand it to BLAS, and unpack the product. Allocating and first-touching
those tens of MB on every call costs as much as the packing itself, so each
thread keeps one buffer per name and hands out views of it (contents
undefined). A kernel never returns a workspace: what it returns is always an
array of its own (or the ``out=`` its caller gave).
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def workspace(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reusable scratch array (contents undefined), one per thread and name.

    It grows to the largest size asked for and is never shrunk; a later call
    with the same ``name`` in the same thread overwrites it.
    """
    store = _local.__dict__.setdefault("buffers", {})
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = store.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
        store[name] = buf
    return buf[:nbytes].view(dtype).reshape(shape)


def band(name: str, rows: int, m: int, dtype) -> np.ndarray:
    """A ``(rows, m)`` C-contiguous workspace, so that BLAS reads it with no copy."""
    return workspace(name, (rows * m,), dtype).reshape(rows, m)


def band_rows(W_out: int, height: int, itemsize: int, n_anchor: int, band_bytes):
    """Rows per band: a ``(height, rows * W_out)`` buffer of ``band_bytes``.

    The rows are then spread evenly over the bands that takes (90 rows in
    bands of at most 39 become 30 + 30 + 30, not 39 + 39 + 12), so no band is
    a short GEMM.
    """
    most = int(max(1, min(n_anchor, band_bytes // (W_out * height * itemsize))))
    bands = -(-n_anchor // most)
    return -(-n_anchor // bands)


def output_array(out, shape, dtype, name: str = "out", inputs=()) -> np.ndarray:
    """``out`` checked as the destination of a kernel, or a new array.

    Kernels take an optional ``out=`` (a layer passes an array it reuses from
    step to step). It must be a C-contiguous ndarray of exactly ``shape``
    and ``dtype``, and share no memory with the kernel's ``inputs``: the
    kernels write it while they still read those. ``None`` gives
    ``np.empty(shape, dtype)``. Every kernel writes each element of it.
    """
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"{name} must have shape {shape} and dtype {dtype}, got shape "
            f"{out.shape} and dtype {out.dtype}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous array")
    for array in inputs:
        if array is not None and np.may_share_memory(out, array):
            raise ValueError(f"{name} must not share memory with the inputs")
    return out
