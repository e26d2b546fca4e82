"""Max pooling that records where each maximum came from (SegNet's encoder)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import (
    check_compact_window,
    check_float_array,
    check_pair,
    pool_output_size,
)
from ..config import DEFAULT_DTYPE
from ..kernels.compact_pool import (
    CompactIndices,
    maxpool2d_backward_compact,
    maxpool2d_forward_compact,
)
from ..kernels.pool import maxpool2d_backward, maxpool2d_forward
from .base import Module


class PoolCache(NamedTuple):
    """What :meth:`MaxPool2D.backward` needs from the forward pass."""

    # int64 (N, C, H_out, W_out), flat h * W + w per plane, or the 2-bit store
    indices: np.ndarray | CompactIndices
    input_shape: tuple  # (N, C, H, W) of the pooled input
    dtype: np.dtype  # of the forward input; dout must match


class MaxPool2D(Module):
    """2-d max pooling that returns the indices of the maxima.

    SegNet's encoder stages end in a 2x2 stride-2 max-pool whose indices the
    mirrored decoder stage uses to unpool (paper §3). ``forward`` returns
    ``(y, indices)``, as PyTorch's ``MaxPool2d(return_indices=True)``, and
    keeps the indices for ``backward``, which never re-derives them.

    Conventions (``docs/conventions.md``): indices are int64, flat ``h * W + w``
    into each ``(n, c)`` plane of the input; of tied maxima the first in
    raster order wins; a window holding a NaN outputs NaN and points at its
    last NaN (PyTorch's rule); in ceil mode cells past the edge count as -inf.
    No parameters, so it takes float32 and float64 input whatever ``dtype``.

    With ``compact=True`` (2x2 windows with stride 2 only) the indices are a
    :class:`~npsegnet.kernels.compact_pool.CompactIndices` store instead: the
    position of each window's maximum inside the window, 2 bits, 32 times
    less memory than int64 (``.to_flat()`` gives the int64 indices back,
    exactly). :class:`MaxUnpool2D` and :meth:`backward` read it directly, with
    results identical to the int64 path.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window ``(KH, KW)``.
    stride : int or (int, int)
        Step ``(SH, SW)`` between windows.
    ceil_mode : bool
        Round the output size up (Caffe's SegNet) instead of down (PyTorch's
        default); a window may then hang over the edge but never starts past it.
    dtype : dtype
        Nominal dtype of the module (no parameters depend on it).
    compact : bool
        Return a 2-bit ``CompactIndices`` store instead of int64 indices
        (keyword only; needs ``kernel_size=2, stride=2``). ``forward(x,
        compact=...)`` overrides it for one call, as a model's inference does.

    Shape
    -----
    ``(N, C, H, W) -> (N, C, H_out, W_out)`` with
    ``H_out = floor((H - KH) / SH) + 1`` (``ceil`` in ceil mode, less one if the
    last window would start outside the input); likewise ``W_out``.

    Examples
    --------
    Pool an odd-sized map and unpool it back to its size:

    >>> import numpy as np
    >>> from npsegnet.layers import MaxPool2D, MaxUnpool2D
    >>> x = np.array([[[[1, 9, 2, 0, 5],
    ...                 [3, 4, 8, 7, 6],
    ...                 [0, 2, 1, 6, 3]]]], dtype=np.float32)
    >>> pool, unpool = MaxPool2D(2, 2), MaxUnpool2D(2, 2)
    >>> y, indices = pool(x)
    >>> print(y)
    [[[[9. 8.]]]]
    >>> print(indices)
    [[[[1 7]]]]
    >>> print(unpool(y, indices, output_size=x.shape[2:]))
    [[[[0. 9. 0. 0. 0.]
       [0. 0. 8. 0. 0.]
       [0. 0. 0. 0. 0.]]]]
    >>> print(pool.backward(np.ones_like(y)))
    [[[[0. 1. 0. 0. 0.]
       [0. 0. 1. 0. 0.]
       [0. 0. 0. 0. 0.]]]]

    The same with 2-bit indices (the codes ``dy * 2 + dx`` in each window):

    >>> y, store = MaxPool2D(2, 2, compact=True)(x)
    >>> store
    CompactIndices(shape=(1, 1, 1, 2), input_size=(3, 5), nbytes=1)
    >>> print(store.codes())
    [[[[1 2]]]]
    >>> print(store.to_flat())
    [[[[1 7]]]]
    >>> print(unpool(y, store))  # the store knows the size to restore
    [[[[0. 9. 0. 0. 0.]
       [0. 0. 8. 0. 0.]
       [0. 0. 0. 0. 0.]]]]
    """

    def __init__(
        self,
        kernel_size=2,
        stride=2,
        ceil_mode=False,
        dtype=DEFAULT_DTYPE,
        *,
        compact=False,
    ):
        super().__init__(dtype=dtype)
        self.kernel_size = check_pair(kernel_size, "kernel_size")
        self.stride = check_pair(stride, "stride")
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
        self.ceil_mode = bool(ceil_mode)
        self.compact = self._check_compact(compact)
        self.cache: PoolCache | None = None

    @property
    def supports_compact(self) -> bool:
        """Whether the window allows 2-bit indices (2x2, stride 2)."""
        return self.kernel_size == (2, 2) and self.stride == (2, 2)

    def _check_compact(self, compact) -> bool:
        if not isinstance(compact, (bool, np.bool_)):
            raise TypeError(f"compact must be a bool, got {type(compact).__name__}")
        if compact:
            check_compact_window(self.kernel_size, self.stride)
        return bool(compact)

    def forward(self, x, compact=None):
        """Pool ``x``; return the maxima and their indices.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            float32 or float64.
        compact : bool, optional
            Return a ``CompactIndices`` store (True) or int64 indices (False)
            for this call; ``None`` follows the layer's ``compact``.

        Returns
        -------
        y : ndarray of shape (N, C, H_out, W_out)
            dtype of ``x``.
        indices : ndarray of int64 or CompactIndices, shape (N, C, H_out, W_out)
            Flat index ``h * W + w`` of each maximum in its ``(n, c)`` plane,
            or the same packed in 2 bits a window (``indices.to_flat()``).
        """
        x = check_float_array(x, "x", ndim=4)
        compact = self.compact if compact is None else self._check_compact(compact)
        if compact:
            y, indices = maxpool2d_forward_compact(x, self.ceil_mode)
        else:
            y, indices = maxpool2d_forward(
                x,
                self.kernel_size,
                self.stride,
                self.ceil_mode,
                **self._reused(**self._output_specs(x)),
            )
        self.cache = PoolCache(indices, tuple(x.shape), x.dtype)
        return y, indices

    def _output_specs(self, x) -> dict:
        """``(shape, dtype)`` of ``forward``'s two outputs (none if the size
        is invalid: the kernel then raises its error)."""
        N, C, H, W = x.shape
        size = [
            pool_output_size(n, k, s, self.ceil_mode)
            for n, k, s in zip((H, W), self.kernel_size, self.stride, strict=True)
        ]
        if min(size) < 1:
            return {}
        shape = (N, C, *size)
        return {"out": (shape, x.dtype), "indices": (shape, np.int64)}

    def backward(self, dout):
        """Send each upstream value back to the cell that won its window.

        Parameters
        ----------
        dout : ndarray of shape (N, C, H_out, W_out)
            Gradient of ``y``, dtype of the forward input.

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
            Zero except at the recorded maxima; where windows overlap (e.g.
            3x3 stride 2) a cell that won several windows gets the sum.
        """
        if self.cache is None:
            raise RuntimeError("MaxPool2D.backward called before forward")
        cache = self.cache
        dout = check_float_array(dout, "dout", ndim=4)
        if dout.shape != cache.indices.shape:
            raise ValueError(
                f"dout must have the shape of the forward output "
                f"{cache.indices.shape}, got {dout.shape}"
            )
        if dout.dtype != cache.dtype:
            raise TypeError(
                f"dout has dtype {dout.dtype} but the forward input was {cache.dtype}"
            )
        if isinstance(cache.indices, CompactIndices):
            return maxpool2d_backward_compact(dout, cache.indices)
        dx = self._reused(dx=(cache.input_shape, dout.dtype))
        return maxpool2d_backward(dout, cache.indices, cache.input_shape, **dx)

    def __repr__(self) -> str:
        return (
            f"MaxPool2D(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"ceil_mode={self.ceil_mode}" + (", compact=True)" if self.compact else ")")
        )
