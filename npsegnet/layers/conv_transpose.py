"""2-D transposed convolution ("deconvolution"): FCN's learned up-sampler."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array, check_positive_int
from ..config import DEFAULT_DTYPE
from ..kernels.conv_transpose import (
    conv_transpose2d_backward,
    conv_transpose2d_forward,
)
from .base import Module

INITS = ("msra", "bilinear")


def bilinear_kernel(kernel_size: int) -> np.ndarray:
    """The ``k x k`` bilinear interpolation filter of FCN's ``upsample_filt``.

    With ``factor = (k + 1) // 2`` and the centre at ``factor - 1`` (odd
    ``k``) or ``factor - 0.5`` (even ``k``), the filter is the outer product
    of ``1 - |i - centre| / factor`` with itself. For ``k = 4`` the 1-d taps
    are ``[0.25, 0.75, 0.75, 0.25]``.

    Parameters
    ----------
    kernel_size : int
        ``k``; ``2 * f - f % 2`` up-samples by ``f`` with stride ``f``.

    Returns
    -------
    ndarray of shape (k, k), float64

    Examples
    --------
    >>> bilinear_kernel(4)[0]
    array([0.0625, 0.1875, 0.1875, 0.0625])
    """
    k = check_positive_int(kernel_size, "kernel_size")
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(k) - centre) / factor
    return np.outer(taps, taps)


class ConvTransposeCache(NamedTuple):
    """What :meth:`ConvTranspose2D.backward` needs from the forward pass."""

    x: np.ndarray  # the forward input, (N, C_in, H, W)
    output_padding: tuple  # (rows, columns) used by this forward pass
    out_shape: tuple  # (N, C_out, H_out, W_out); dout must have it


class ConvTranspose2D(Module):
    """2-d transposed convolution, weights in PyTorch's layout ``(C_in, C_out, k, k)``.

    FCN's decoder up-samples with these ("backwards convolution", Long et al.
    2015, §3.3), where SegNet unpools with indices. Each input pixel scatters
    a ``k x k`` filter into the output, ``stride`` pixels from its neighbours'.
    The twin of ``torch.nn.ConvTranspose2d(in_channels, out_channels,
    kernel_size, stride, padding, output_padding, bias=bias)``: the weights
    and the ``output_size`` rule are PyTorch's. ``backward`` returns ``dx``
    and **adds** ``dweight`` and ``dbias`` to ``grads``.

    Parameters
    ----------
    in_channels : int
        ``C_in``, the channels of the input.
    out_channels : int
        ``C_out``, the channels of the output.
    kernel_size : int
        Side ``k`` of the square kernel.
    stride : int
        The up-sampling factor: neighbouring inputs land ``stride`` apart.
    padding : int
        Rows and columns cropped from each border of the full output.
    output_padding : int
        Rows and columns added at the bottom and right, ``< stride``; it picks
        one of the ``stride`` sizes a strided convolution maps to the same
        input size. ``forward(x, output_size)`` overrides it.
    bias : bool
        Learn a bias per output channel (key ``"bias"``; absent when False).
    init : {"msra", "bilinear"}
        ``"msra"`` (default): normal, mean 0, standard deviation
        ``sqrt(2 / (C_out * k * k))`` (Caffe's ``msra`` filler, whose fan-in
        of a ``Deconvolution`` blob is ``C_out * k * k``). ``"bilinear"``:
        FCN's initialiser, :func:`bilinear_kernel` from each channel to itself
        and 0 across channels (needs ``in_channels == out_channels``).
        Biases start at 0.
    dtype : dtype
        float32 (default) or float64.
    seed : int, numpy.random.Generator or None
        Source of the initial weights.

    Shape
    -----
    ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1) * stride - 2 * padding + k + output_padding``, likewise
    ``W_out``. With ``forward(x, output_size)`` the size is ``output_size``,
    which must lie between that formula's value at ``output_padding = 0`` and
    ``stride - 1`` more (as in PyTorch).

    Notes
    -----
    ``full[n, f, i * stride + kh, j * stride + kw] += sum_c x[n, c, i, j] *
    weight[c, f, kh, kw]`` and ``out`` is ``full`` cropped by ``padding`` (see
    :mod:`npsegnet.reference.conv_transpose`), plus the bias. It is the input
    gradient of a ``Conv2D`` with the same stride, padding and weights.

    With ``init="bilinear"``, ``kernel_size=4, stride=2, padding=1`` (see
    :meth:`bilinear`) the layer is bilinear up-sampling by 2, equal to
    ``Upsample(2, "bilinear")`` away from the border; at the border it
    weighs in the zero padding where ``Upsample`` repeats the edge.

    Examples
    --------
    >>> import numpy as np
    >>> up = ConvTranspose2D.bilinear(1, dtype=np.float64)
    >>> up.weight.shape, up.stride, up.padding
    ((1, 1, 4, 4), 2, 1)
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> up(x).shape
    (1, 1, 6, 6)
    >>> up(x, output_size=(7, 7)).shape  # an odd size that pooled to 3
    (1, 1, 7, 7)
    >>> print(up(x)[0, 0, 2:4, 2:4])  # interior cells interpolate
    [[3.  3.5]
     [4.5 5. ]]
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        bias=True,
        init="msra",
        dtype=DEFAULT_DTYPE,
        seed=None,
    ):
        super().__init__(dtype=dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.stride = check_positive_int(stride, "stride")
        self.padding = check_positive_int(padding, "padding", minimum=0)
        self.output_padding = check_positive_int(
            output_padding, "output_padding", minimum=0
        )
        if self.output_padding >= self.stride:
            raise ValueError(
                f"output_padding must be smaller than stride ({self.stride}), "
                f"got {self.output_padding}"
            )
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        C, F, k = self.in_channels, self.out_channels, self.kernel_size
        if init == "bilinear":
            if C != F:
                raise ValueError(
                    "init='bilinear' maps each channel to itself and needs "
                    f"in_channels == out_channels, got {C} and {F}"
                )
            weight = np.zeros((C, F, k, k))
            weight[np.arange(C), np.arange(C)] = bilinear_kernel(k)
        else:
            rng = np.random.default_rng(seed)
            weight = rng.normal(0.0, np.sqrt(2.0 / (F * k * k)), size=(C, F, k, k))
        self.add_param("weight", weight)
        if bias:
            self.add_param("bias", np.zeros(F))
        self.cache: ConvTransposeCache | None = None

    @classmethod
    def bilinear(
        cls, channels, scale_factor=2, bias=False, dtype=DEFAULT_DTYPE
    ) -> ConvTranspose2D:
        """FCN's up-sampling layer, initialised to bilinear interpolation.

        ``kernel_size = 2 * f - f % 2``, ``stride = f`` and ``padding = f // 2``,
        so that ``H_out = f * H`` (for ``f = 2``: kernel 4, stride 2, padding
        1), with ``init="bilinear"``.

        Parameters
        ----------
        channels : int
            ``in_channels = out_channels``.
        scale_factor : int
            The up-sampling factor ``f``.
        bias : bool
            FCN's ``Deconvolution`` layers have none (``bias_term: false``).
        dtype : dtype

        Returns
        -------
        ConvTranspose2D
        """
        f = check_positive_int(scale_factor, "scale_factor")
        return cls(
            channels,
            channels,
            kernel_size=2 * f - f % 2,
            stride=f,
            padding=f // 2,
            bias=bias,
            init="bilinear",
            dtype=dtype,
        )

    @property
    def weight(self) -> np.ndarray:
        """The filters, shape ``(C_in, C_out, k, k)``."""
        return self._params["weight"]

    @property
    def bias(self) -> np.ndarray | None:
        """The bias, shape ``(C_out,)``, or None."""
        return self._params.get("bias")

    def output_size_range(self, input_size) -> tuple[tuple[int, int], tuple[int, int]]:
        """Smallest and largest ``(H_out, W_out)`` reachable from ``(H, W)``.

        The smallest is ``(H - 1) * stride - 2 * padding + k``; adding an
        ``output_padding`` of up to ``stride - 1`` reaches the others.
        """
        s, p, k = self.stride, self.padding, self.kernel_size
        smallest = tuple((n - 1) * s - 2 * p + k for n in input_size)
        return smallest, tuple(m + s - 1 for m in smallest)

    def _output_padding(self, x, output_size) -> tuple[int, int]:
        """PyTorch's rule: ``output_size`` picks the output padding."""
        if output_size is None:
            return (self.output_padding, self.output_padding)
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise ValueError(
                "output_size must be (H, W) or a full shape (N, C, H, W), "
                f"got {output_size!r}"
            )
        size = tuple(output_size[-2:])
        for n in size:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"output_size must hold ints, got {output_size!r}")
        smallest, largest = self.output_size_range(x.shape[2:])
        for d in range(2):
            if not smallest[d] <= size[d] <= largest[d]:
                raise ValueError(
                    f"output_size {tuple(output_size)} is not reachable from an "
                    f"input of {x.shape[2:]} with kernel_size {self.kernel_size}, "
                    f"stride {self.stride} and padding {self.padding}: dim {d} "
                    f"must be between {smallest[d]} and {largest[d]}"
                )
        return (size[0] - smallest[0], size[1] - smallest[1])

    def forward(self, x, output_size=None):
        """Up-sample ``x`` by the transposed convolution and add the bias.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
            Of the layer's dtype.
        output_size : (H_out, W_out) or (N, C, H_out, W_out), optional
            The size to produce, normally the size of the encoder map this
            decoder stage mirrors (an odd size a stride-2 pool halved). It
            sets ``output_padding`` for this call, as in PyTorch, and must be
            reachable (see :meth:`output_size_range`).

        Returns
        -------
        out : ndarray of shape (N, C_out, H_out, W_out)
        """
        x = check_float_array(x, "x", ndim=4, dtype=self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has C = {x.shape[1]} channels (shape {x.shape}) but the layer "
                f"has in_channels = {self.in_channels}"
            )
        output_padding = self._output_padding(x, output_size)
        out = conv_transpose2d_forward(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            **self._reused(out=self._output_spec(x, output_padding)),
        )
        self.cache = ConvTransposeCache(x, output_padding, out.shape)
        return out

    def _output_spec(self, x, output_padding):
        """``(shape, dtype)`` of ``forward``'s output (None if the size is
        invalid: the kernel then raises its error)."""
        if isinstance(output_padding, (tuple, list)):
            extra = tuple(output_padding)
        else:
            extra = (output_padding, output_padding)
        s, p, k = self.stride, self.padding, self.kernel_size
        size = [
            (n - 1) * s - 2 * p + k + e for n, e in zip(x.shape[2:], extra, strict=True)
        ]
        if min(size) < 1:
            return None
        return (x.shape[0], self.out_channels, *size), self.dtype

    def backward(self, dout):
        """Input gradient; adds the parameter gradients into ``grads``.

        Parameters
        ----------
        dout : ndarray of shape (N, C_out, H_out, W_out)
            Gradient of the loss with respect to the forward output.

        Returns
        -------
        dx : ndarray of shape (N, C_in, H, W)
        """
        cache = self.cache
        if cache is None:
            raise RuntimeError("ConvTranspose2D.backward called before forward")
        dout = check_float_array(dout, "dout", ndim=4, dtype=self.dtype)
        if dout.shape != cache.out_shape:
            raise ValueError(
                f"dout has shape {dout.shape} but the forward output had shape "
                f"{cache.out_shape}"
            )
        dx, dweight, dbias = conv_transpose2d_backward(
            dout,
            cache.x,
            self.weight,
            self.stride,
            self.padding,
            cache.output_padding,
            **self._reused(
                dx=(cache.x.shape, self.dtype), dweight=(self.weight.shape, self.dtype)
            ),
        )
        self._grads["weight"] += dweight
        if "bias" in self._grads:
            self._grads["bias"] += dbias
        return dx

    def __repr__(self) -> str:
        return (
            f"ConvTranspose2D({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, output_padding={self.output_padding}, "
            f"bias={'bias' in self._params}, dtype={self.dtype.name})"
        )
