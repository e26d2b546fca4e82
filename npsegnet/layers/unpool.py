"""Max unpooling with the indices of a max-pool (SegNet's decoder)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import (
    check_compact_window,
    check_float_array,
    check_int_array,
    check_pair,
)
from ..config import DEFAULT_DTYPE
from ..kernels.compact_pool import (
    CompactIndices,
    maxunpool2d_backward_compact,
    maxunpool2d_forward_compact,
)
from ..kernels.pool import maxunpool2d_backward, maxunpool2d_forward
from .base import Module


class UnpoolCache(NamedTuple):
    """What :meth:`MaxUnpool2D.backward` needs from the forward pass."""

    # int64 (N, C, H, W), flat h * W_out + w per plane, or the 2-bit store
    indices: np.ndarray | CompactIndices
    output_shape: tuple  # (N, C, H_out, W_out) of the unpooled map
    dtype: np.dtype  # of the forward input; dout must match


class MaxUnpool2D(Module):
    """Place each value at the index its max-pool recorded, zeros elsewhere.

    SegNet's decoder upsamples with the pooling indices of the mirrored
    encoder stage (paper §3): a sparse map that keeps *where* the maxima were,
    which the following convolutions densify. As PyTorch's ``MaxUnpool2d``:
    ``forward(x, indices, output_size)`` writes into zeros (a repeated index
    keeps the value written last in raster order), and ``backward`` gathers
    ``dout`` at the indices (a repeated index hands the gradient to every
    copy; repeats arise only from overlapping windows, never in SegNet's 2x2
    stride-2 pools). No parameters; float32 and float64 input.

    ``indices`` may also be the 2-bit
    :class:`~npsegnet.kernels.compact_pool.CompactIndices` store of a
    ``MaxPool2D(2, 2, compact=True)`` (for an unpool of 2x2 windows with
    stride 2): the result is the same as with its int64 indices, and the
    store knows the size to restore, so ``output_size`` defaults to it.

    Parameters
    ----------
    kernel_size : int or (int, int)
        The pool's window ``(KH, KW)``; sets the default output size.
    stride : int or (int, int)
        The pool's step ``(SH, SW)``.
    dtype : dtype
        Nominal dtype of the module (no parameters depend on it).

    Shape
    -----
    ``(N, C, H, W) -> (N, C, H_out, W_out)``, by default
    ``H_out = (H - 1) * SH + KH`` (likewise ``W_out``). An explicit
    ``output_size`` restores a size the pool rounded away (an odd ``H``); as
    in PyTorch it must lie strictly between ``default - SH`` and
    ``default + SH`` in each dimension.

    Examples
    --------
    A 5x7 map pooled 2x2 (floor mode) is 2x3, whose default unpooled size is
    4x6. The indices are flat into rows of 7, so only ``output_size=(5, 7)``
    puts the values back where they came from:

    >>> import numpy as np
    >>> from npsegnet.layers import MaxPool2D, MaxUnpool2D
    >>> x = np.arange(35, dtype=np.float64).reshape(1, 1, 5, 7)
    >>> y, indices = MaxPool2D(2, 2)(x)
    >>> print(y)
    [[[[ 8. 10. 12.]
       [22. 24. 26.]]]]
    >>> unpool = MaxUnpool2D(2, 2)
    >>> unpool.default_output_size(y.shape[2:])
    (4, 6)
    >>> print(unpool(y, indices, output_size=(5, 7)))
    [[[[ 0.  0.  0.  0.  0.  0.  0.]
       [ 0.  8.  0. 10.  0. 12.  0.]
       [ 0.  0.  0.  0.  0.  0.  0.]
       [ 0. 22.  0. 24.  0. 26.  0.]
       [ 0.  0.  0.  0.  0.  0.  0.]]]]
    >>> print(unpool.backward(np.arange(35.0).reshape(1, 1, 5, 7)))
    [[[[ 8. 10. 12.]
       [22. 24. 26.]]]]
    """

    def __init__(self, kernel_size=2, stride=2, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self.kernel_size = check_pair(kernel_size, "kernel_size")
        self.stride = check_pair(stride, "stride")
        self.cache: UnpoolCache | None = None

    def default_output_size(self, input_size) -> tuple[int, int]:
        """``(H - 1) * SH + KH, (W - 1) * SW + KW`` for an input of ``(H, W)``."""
        return tuple(
            (n - 1) * s + k
            for n, s, k in zip(input_size, self.stride, self.kernel_size, strict=True)
        )

    def _output_size(self, x, output_size):
        default = self.default_output_size(x.shape[2:])
        if output_size is None:
            return default
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise ValueError(
                "output_size must be (H, W) or a full shape (N, C, H, W), "
                f"got {output_size!r}"
            )
        size = tuple(output_size[-2:])
        for d, (n, m, s) in enumerate(zip(size, default, self.stride, strict=True)):
            if isinstance(n, (int, np.integer)) and not m - s < n < m + s:
                raise ValueError(
                    f"output_size {tuple(output_size)} does not fit an input of "
                    f"{x.shape[2:]} unpooled with kernel_size {self.kernel_size} "
                    f"and stride {self.stride}: dim {d} must be between "
                    f"{m - s + 1} and {m + s - 1} (default {m})"
                )
        return tuple(output_size)

    def forward(self, x, indices, output_size=None):
        """Unpool ``x`` with ``indices`` into a zero map of ``output_size``.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            float32 or float64.
        indices : ndarray of int or CompactIndices, shape (N, C, H, W)
            From :class:`MaxPool2D`: flat ``h * W_out + w`` per plane, or
            their 2-bit store.
        output_size : (H_out, W_out) or (N, C, H_out, W_out), optional
            The size to restore, normally the pool's input size. Default
            ``(H - 1) * SH + KH, (W - 1) * SW + KW``; for a store, the size it
            was recorded for (any other is refused).

        Returns
        -------
        y : ndarray of shape (N, C, H_out, W_out)
            dtype of ``x``.
        """
        x = check_float_array(x, "x", ndim=4)
        if isinstance(indices, CompactIndices):
            check_compact_window(self.kernel_size, self.stride)
            if output_size is not None:
                output_size = self._output_size(x, output_size)
            y = maxunpool2d_forward_compact(x, indices, output_size)
            self.cache = UnpoolCache(indices, tuple(y.shape), x.dtype)
            return y
        if not isinstance(indices, np.ndarray):
            raise TypeError(
                "indices must be a NumPy array of integers or a CompactIndices "
                f"store, got {type(indices).__name__}"
            )
        indices = check_int_array(indices, "indices", ndim=4)
        if indices.shape != x.shape:
            raise ValueError(
                f"indices must have the shape of x {x.shape}, got {indices.shape}"
            )
        size = self._output_size(x, output_size)
        hw = size[-2:]
        valid = all(isinstance(n, (int, np.integer)) and n > 0 for n in hw)
        out = self._reused(out=((*x.shape[:2], *hw), x.dtype) if valid else None)
        y = maxunpool2d_forward(x, indices, size, **out)
        self.cache = UnpoolCache(np.asarray(indices), tuple(y.shape), x.dtype)
        return y

    def backward(self, dout):
        """Gather the upstream gradient at the indices.

        Parameters
        ----------
        dout : ndarray of shape (N, C, H_out, W_out)
            Gradient of the unpooled map, dtype of the forward input.

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
            ``dx[n, c, i, j] = dout[n, c].flat[indices[n, c, i, j]]``.
        """
        if self.cache is None:
            raise RuntimeError("MaxUnpool2D.backward called before forward")
        cache = self.cache
        dout = check_float_array(dout, "dout", ndim=4)
        if dout.shape != cache.output_shape:
            raise ValueError(
                f"dout must have the shape of the forward output "
                f"{cache.output_shape}, got {dout.shape}"
            )
        if dout.dtype != cache.dtype:
            raise TypeError(
                f"dout has dtype {dout.dtype} but the forward input was {cache.dtype}"
            )
        if isinstance(cache.indices, CompactIndices):
            return maxunpool2d_backward_compact(dout, cache.indices)
        dx = self._reused(dx=(cache.indices.shape, dout.dtype))
        return maxunpool2d_backward(dout, cache.indices, **dx)

    def __repr__(self) -> str:
        return f"MaxUnpool2D(kernel_size={self.kernel_size}, stride={self.stride})"
