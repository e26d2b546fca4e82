"""A pool of arrays that a model's layers reuse from one step to the next.

A training step of SegNet-Basic at 360x480 makes and drops a few gigabytes
of maps: outputs, gradients, pooling indices. Asking the C library for them
anew every step costs page faults (each fresh page is zeroed by the kernel
when first touched) and, for large blocks, ``mmap``/``munmap`` calls. So a
model hands its layers a :class:`BufferPool`, and a layer asks the pool for
its output instead of calling ``np.empty``.

When is a pooled array free? When nothing but the pool refers to it. Python
counts the references to every object: a layer's ``cache``, an encoder's
record, a local variable, a view (``a.reshape(...)`` keeps ``a`` alive
through ``.base``) each hold one. So the pool hands out an array only when
its reference count shows the pool's own reference alone; anything still in
use, by the model or by the user, is never overwritten. That is the one rule;
it needs no bookkeeping of lifetimes, and the arrays are reused in the order
the step frees them, as a caching allocator (PyTorch's) reuses freed blocks.

The pool keeps what it allocated until :meth:`BufferPool.release` (the
model's ``release_buffers()``), or until the model's input changes shape or
dtype (:meth:`BufferPool.begin`): a new shape gets new buffers, sized on
first use. An inference pass (``forward(x, keep_cache=False)``) does not grow
the pool: it reuses what training left free and allocates the rest as
``np.empty`` does, so a model that only predicts needs no more memory than
without a pool.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["BufferPool"]


def _refcounts(arrays: list) -> list[int]:
    """``sys.getrefcount`` of each array of the list, as this function sees it."""
    return [sys.getrefcount(a) for a in arrays]


# What _refcounts reports for an array that only its list refers to. Measured
# rather than assumed: the count includes the function's own temporary
# references, which may differ between Python versions.
_UNUSED = _refcounts([np.empty(0)])[0]


class BufferPool:
    """Arrays kept for reuse, handed out when no one else refers to them.

    Examples
    --------
    >>> pool = BufferPool()
    >>> a = pool.empty((2, 3), "float32")
    >>> a.fill(1)
    >>> b = pool.empty((2, 3), "float32")  # a is still referenced: a new one
    >>> a is b
    False
    >>> del a  # nothing refers to the first array now but the pool
    >>> c = pool.empty((2, 3), "float32")
    >>> print(c)  # the first array again, with what was left in it
    [[1. 1. 1.]
     [1. 1. 1.]]
    >>> pool.nbytes
    48
    """

    def __init__(self):
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._key = None
        self._grow = True

    def empty(self, shape, dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` (contents undefined), as ``np.empty``.

        A pooled array nothing else refers to, or a new one, which the pool
        keeps unless the pass said not to grow (:meth:`begin`).
        """
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        kept = self._arrays.setdefault((shape, dtype), [])
        for array, count in zip(kept, _refcounts(kept), strict=True):
            if count <= _UNUSED:
                return array
        array = np.empty(shape, dtype)
        if self._grow:
            kept.append(array)
        return array

    def hand_over(self, array: np.ndarray) -> None:
        """Stop keeping ``array`` (or the array it views): it now belongs to the caller.

        A model hands over what it returns, so the logits of two forward
        passes are two arrays even when the first was dropped.
        """
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        for kept in self._arrays.values():
            for i, candidate in enumerate(kept):
                if candidate is root:
                    del kept[i]
                    return

    def begin(self, key, grow: bool = True) -> None:
        """Start a pass on an input described by ``key`` (shape and dtype).

        With ``grow`` (a training pass), a key other than the last one
        releases the pool: the buffers of one input size are no use for
        another. Without (inference), the pool is left as it is and lends
        only what it has free.
        """
        self._grow = bool(grow)
        if grow and key != self._key:
            self.release()
            self._key = key

    def release(self) -> None:
        """Forget every kept array. Always safe: arrays still in use stay valid
        (their users hold them); the pool only stops offering them."""
        self._arrays = {}
        self._key = None

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the pool keeps."""
        return sum(a.nbytes for kept in self._arrays.values() for a in kept)

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._arrays.values())

    # Scratch memory is not state: a copy (copy.deepcopy, pickle) of a model
    # gets an empty pool of its own.
    def __deepcopy__(self, memo) -> BufferPool:
        return BufferPool()

    def __reduce__(self):
        return (BufferPool, ())

    def __repr__(self) -> str:
        return f"BufferPool({len(self)} arrays, {self.nbytes} bytes)"
