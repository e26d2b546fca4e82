"""Up-sampling by interpolation (bilinear or nearest): the decoder without memory."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._checks import check_choice, check_float_array, check_scale_pair
from ..config import DEFAULT_DTYPE
from ..kernels.upsample import MODES, upsample2d_backward, upsample2d_forward
from .base import Module


class UpsampleCache(NamedTuple):
    """What :meth:`Upsample.backward` needs from the forward pass."""

    input_size: tuple  # (H, W) of the forward input
    scale_factor: tuple | None  # the coordinate ratio's source, None: in / out
    out_shape: tuple  # (N, C, H_out, W_out); dout must have it
    dtype: np.dtype  # of the forward input; dout must match


class Upsample(Module):
    """Resize feature maps by bilinear or nearest interpolation (no parameters).

    The "Bilinear-Interpolation" decoder of SegNet's Table 1 up-samples this
    way: nothing is learned and nothing is kept from the encoder. The twin of
    ``torch.nn.Upsample(scale_factor=scale_factor, mode=mode,
    align_corners=False)`` (``align_corners=None`` for nearest), and with
    ``output_size`` of ``torch.nn.functional.interpolate(x, size=output_size,
    mode=mode, align_corners=False)``. Sampling follows PyTorch's
    ``align_corners=False`` (half-pixel) rule: output pixel ``i`` reads the
    input at ``(i + 0.5) * ratio - 0.5``; see
    :mod:`npsegnet.reference.upsample` and ``docs/conventions.md``.

    Parameters
    ----------
    scale_factor : float or (float, float)
        The factor ``s`` (per axis ``(s_h, s_w)``) of the default size.
    mode : {"bilinear", "nearest"}
        Bilinear mixes the two nearest input samples per axis; nearest copies
        ``floor(i * ratio)`` (PyTorch's ``"nearest"``, not ``"nearest-exact"``).
    dtype : dtype
        Nominal dtype of the module (no parameters depend on it); float32 and
        float64 input are both accepted.

    Shape
    -----
    ``(N, C, H, W) -> (N, C, H_out, W_out)`` with ``H_out = floor(H * s_h)``
    and ``W_out = floor(W * s_w)``, where the ratio is ``1 / s``. With
    ``forward(x, output_size)`` the size is ``output_size`` and the ratio is
    ``H / H_out`` (likewise ``W``), so an odd encoder size that a 2x2 pool
    halved (45 -> 22) is restored exactly (22 -> 45).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    >>> print(Upsample(2, "nearest")(x))
    [[[[0. 0. 1. 1.]
       [0. 0. 1. 1.]
       [2. 2. 3. 3.]
       [2. 2. 3. 3.]]]]
    >>> print(Upsample(2, "bilinear")(x)[0, 0, 0])  # edges repeat, inside mixes
    [0.   0.25 0.75 1.  ]
    >>> Upsample(2)(np.zeros((1, 3, 22, 30)), output_size=(45, 61)).shape
    (1, 3, 45, 61)
    """

    def __init__(self, scale_factor=2, mode="bilinear", dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self.scale_factor = check_scale_pair(scale_factor, "scale_factor")
        self.mode = check_choice(mode, "mode", MODES)
        self.cache: UpsampleCache | None = None

    def default_output_size(self, input_size) -> tuple[int, int]:
        """``floor(H * s_h), floor(W * s_w)`` for an input of ``(H, W)``."""
        return tuple(
            math.floor(n * s)
            for n, s in zip(input_size, self.scale_factor, strict=True)
        )

    @staticmethod
    def _check_output_size(output_size) -> tuple[int, int]:
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise ValueError(
                "output_size must be (H, W) or a full shape (N, C, H, W), "
                f"got {output_size!r}"
            )
        size = tuple(output_size[-2:])
        for n in size:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"output_size must hold ints, got {output_size!r}")
            if n < 1:
                raise ValueError(f"output_size must be positive, got {output_size!r}")
        return (int(size[0]), int(size[1]))

    def forward(self, x, output_size=None):
        """Interpolate ``x`` to ``output_size`` (default: scaled by the factor).

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            float32 or float64.
        output_size : (H_out, W_out) or (N, C, H_out, W_out), optional
            The size to produce, normally the size of the encoder map this
            decoder stage mirrors. Any positive size is accepted (as
            PyTorch's ``interpolate``); the sampling ratio is then
            ``H / H_out``.

        Returns
        -------
        out : ndarray of shape (N, C, H_out, W_out)
            dtype of ``x``.
        """
        x = check_float_array(x, "x", ndim=4)
        if output_size is None:
            size = self.default_output_size(x.shape[2:])
            if min(size) < 1:
                raise ValueError(
                    f"scale_factor {self.scale_factor} maps an input of "
                    f"{x.shape[2:]} to {size}; the output must be at least 1x1"
                )
            scale = self.scale_factor
        else:
            size, scale = self._check_output_size(output_size), None
        out = upsample2d_forward(x, size, self.mode, scale)
        self.cache = UpsampleCache(x.shape[2:], scale, out.shape, x.dtype)
        return out

    def backward(self, dout):
        """Send each output gradient back to the input samples it mixed.

        Parameters
        ----------
        dout : ndarray of shape (N, C, H_out, W_out)
            Gradient of the output, dtype of the forward input.

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
        """
        cache = self.cache
        if cache is None:
            raise RuntimeError("Upsample.backward called before forward")
        dout = check_float_array(dout, "dout", ndim=4)
        if dout.shape != cache.out_shape:
            raise ValueError(
                f"dout must have the shape of the forward output {cache.out_shape}, "
                f"got {dout.shape}"
            )
        if dout.dtype != cache.dtype:
            raise TypeError(
                f"dout has dtype {dout.dtype} but the forward input was {cache.dtype}"
            )
        return upsample2d_backward(
            dout, cache.input_size, self.mode, cache.scale_factor
        )

    def __repr__(self) -> str:
        sh, sw = self.scale_factor
        scale = f"{sh:g}" if sh == sw else f"({sh:g}, {sw:g})"
        return f"Upsample(scale_factor={scale}, mode={self.mode!r})"
