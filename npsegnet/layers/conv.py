"""2-D convolution layer (stride 1, "same" padding by default), SegNet's workhorse."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array, check_positive_int
from ..config import DEFAULT_DTYPE
from ..kernels.conv import conv2d_backward, conv2d_forward
from ..kernels.conv_fft import conv2d_fft_backward, conv2d_fft_forward
from .base import Module, warn_renamed

#: The values of ``Conv2D(algorithm=...)``.
CONV_ALGORITHMS = ("auto", "gemm", "fft")
# "auto" takes the FFT path from this kernel size and channel count on, for
# outputs with at least FFT_MIN_PIXELS pixels. Measured (2-core AMD EPYC Zen 3,
# batch 4, benchmarks in docs/benchmarks.md): 7x7 64->64 ran 2.8x (forward)
# and 2.7x (backward) faster by FFT at 360x480, 2.4x / 2.0x at 90x120,
# 1.6x / 1.8x at 45x60, and broke even at 23x30; the RGB layer (3 -> 64)
# ran 0.46x / 0.77x, because its transforms of 64 outputs are not paid for
# by a channel sum of 3.
FFT_MIN_KERNEL = 5
FFT_MIN_CHANNELS = 16
FFT_MIN_PIXELS = 32 * 32


class ConvCache(NamedTuple):
    """What :meth:`Conv2D.backward` needs from the forward pass."""

    x: np.ndarray  # the forward input, (N, C_in, H, W)
    out_shape: tuple  # (N, C_out, H_out, W_out); dout must have it
    fft: bool = False  # whether forward took the FFT path (backward takes it too)


class Conv2D(Module):
    """2-d convolution with stride 1 and zero padding, weights in PyTorch layout.

    Every convolution of SegNet-Basic (7x7, pad 3) and SegNet (3x3, pad 1) and
    the 1x1 classifier is one of these; with ``groups = in_channels`` it is
    the depthwise (single-channel) filter of the paper's
    SegNet-Basic-SingleChannelDecoder. The twin of ``torch.nn.Conv2d(
    in_channels, out_channels, kernel_size, padding=padding, groups=groups,
    bias=bias)``. ``forward`` keeps the input for
    ``backward``, which returns ``dx`` and **adds** ``dweight`` and ``dbias``
    to ``grads`` (``+=``; call ``zero_grad()`` between steps).

    Parameters
    ----------
    in_channels : int
        ``C_in``, the channels of the input.
    out_channels : int
        ``C_out``, the number of filters.
    kernel_size : int
        Side ``k`` of the square kernel.
    padding : int, optional
        Zeros added on each side. ``None`` (default) means "same" padding,
        ``k // 2``, which keeps ``H x W`` and needs an odd ``k``; an even
        ``k`` needs an explicit ``padding``.
    bias : bool
        Learn a bias per output channel (key ``"bias"``; absent when False).
    dtype : dtype
        float32 (default) or float64.
    seed : int, numpy.random.Generator or None
        Source of the initial weights.
    groups : int
        Split the channels into ``groups`` blocks, filter block ``g`` seeing
        input block ``g`` only; ``in_channels`` and ``out_channels`` must be
        divisible by it. The weight is ``(C_out, C_in / groups, k, k)``.
        ``groups = in_channels = out_channels`` is a depthwise convolution.
    algorithm : {"auto", "gemm", "fft"}
        How to compute it. ``"gemm"``: row-band matrix products
        (:mod:`npsegnet.kernels.conv`); ``"fft"``: overlap-save FFT tiles
        (:mod:`npsegnet.kernels.conv_fft`; ``groups = 1`` and
        ``padding < kernel_size`` only); ``"auto"`` (default): FFT for
        kernels of at least 5x5 between at least 16 channels on outputs of at
        least 32x32 pixels, else GEMM (the measured rule beside
        ``FFT_MIN_KERNEL`` in this module). Both agree to float32 rounding.

    Attributes
    ----------
    needs_input_grad : bool
        Whether :meth:`backward` computes the input gradient (default True).
        A model sets it False on its first layer, whose input is the image:
        that saves the convolution's most expensive backward product, and
        ``backward`` then returns ``None``. ``need_dx`` is a deprecated alias.
    cache : ConvCache or None
        The forward input and output shape, kept for :meth:`backward`.

    Shape
    -----
    ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` with
    ``H_out = H + 2 * padding - k + 1`` (``= H`` with "same" padding), likewise
    ``W_out``.

    Notes
    -----
    ``out[n, f, i, j] = bias[f] + sum_{c, kh, kw} weight[f, c, kh, kw] *
    xp[n, c, i + kh, j + kw]`` with ``xp`` the padded input (a
    cross-correlation, as Caffe and PyTorch); with groups ``c`` runs over
    the input block of ``f``'s group. Weights are drawn as SegNet's
    Caffe models do (``weight_filler { type: "msra" }``, He et al. 2015):
    normal with mean 0 and standard deviation
    ``sqrt(2 / (C_in / groups * k * k))`` (the fan-in of one filter); biases
    start at 0.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Conv2D(3, 8, 3, seed=0)
    >>> x = np.ones((2, 3, 5, 7), dtype=np.float32)
    >>> out = conv(x)
    >>> out.shape
    (2, 8, 5, 7)
    >>> conv.backward(np.ones_like(out)).shape
    (2, 3, 5, 7)
    >>> sorted(conv.grads)
    ['bias', 'weight']
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        padding=None,
        bias=True,
        dtype=DEFAULT_DTYPE,
        seed=None,
        groups=1,
        algorithm="auto",
    ):
        super().__init__(dtype=dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        k = self.kernel_size
        if padding is None:
            if k % 2 == 0:
                raise ValueError(
                    f"kernel_size must be odd for 'same' padding (padding=None), "
                    f"got kernel_size={k}; only odd sizes are supported unless "
                    "an explicit padding is given"
                )
            padding = k // 2
        self.padding = check_positive_int(padding, "padding", minimum=0)
        self.groups = check_positive_int(groups, "groups")
        for name in ("in_channels", "out_channels"):
            channels = getattr(self, name)
            if channels % self.groups:
                raise ValueError(
                    f"{name} ({channels}) must be divisible by groups ({self.groups})"
                )
        self.algorithm = algorithm
        self.needs_input_grad = True
        rng = np.random.default_rng(seed)
        fan_in = self.in_channels // self.groups * k * k
        self.add_param(
            "weight",
            rng.normal(
                0.0,
                np.sqrt(2.0 / fan_in),
                size=(self.out_channels, self.in_channels // self.groups, k, k),
            ),
        )
        if bias:
            self.add_param("bias", np.zeros(self.out_channels))
        self.cache: ConvCache | None = None

    @property
    def algorithm(self) -> str:
        """``"auto"``, ``"gemm"`` or ``"fft"`` (see the class docstring)."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value) -> None:
        if value not in CONV_ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(CONV_ALGORITHMS)}, got {value!r}"
            )
        if value == "fft" and not self.fft_applies:
            raise ValueError(
                "algorithm 'fft' needs groups = 1 and padding < kernel_size, got "
                f"groups = {self.groups}, padding = {self.padding}, "
                f"kernel_size = {self.kernel_size}"
            )
        self._algorithm = value

    @property
    def fft_applies(self) -> bool:
        """Whether the FFT path can run this layer (``groups = 1`` and
        ``padding < kernel_size``)."""
        return self.groups == 1 and self.padding < self.kernel_size

    def algorithm_for(self, shape) -> str:
        """The algorithm (``"gemm"`` or ``"fft"``) an input of ``shape`` runs.

        Parameters
        ----------
        shape : tuple of int
            ``(N, C_in, H, W)``.
        """
        if self._algorithm != "auto":
            return self._algorithm
        grow = 2 * self.padding - self.kernel_size + 1
        pixels = (shape[2] + grow) * (shape[3] + grow)
        fits = (
            self.fft_applies
            and self.kernel_size >= FFT_MIN_KERNEL
            and min(self.in_channels, self.out_channels) >= FFT_MIN_CHANNELS
            and pixels >= FFT_MIN_PIXELS
        )
        return "fft" if fits else "gemm"

    @property
    def need_dx(self) -> bool:
        """Deprecated alias of :attr:`needs_input_grad` (one release)."""
        warn_renamed("Conv2D.need_dx", "needs_input_grad")
        return self.needs_input_grad

    @need_dx.setter
    def need_dx(self, value: bool) -> None:
        warn_renamed("Conv2D.need_dx", "needs_input_grad")
        self.needs_input_grad = bool(value)

    @property
    def _groups_kwarg(self) -> dict:
        # groups=1 calls the kernels exactly as before groups existed
        return {"groups": self.groups} if self.groups != 1 else {}

    @property
    def weight(self) -> np.ndarray:
        """The filters, shape ``(C_out, C_in / groups, k, k)``."""
        return self._params["weight"]

    @property
    def bias(self) -> np.ndarray | None:
        """The bias, shape ``(C_out,)``, or None."""
        return self._params.get("bias")

    def forward(self, x):
        """Convolve ``x`` with the filters and add the bias.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
            Of the layer's dtype.

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
        reused = self._reused(out=self._output_spec(x))
        fft = self.algorithm_for(x.shape) == "fft"
        if fft:
            out = conv2d_fft_forward(x, self.weight, self.bias, self.padding, **reused)
        else:
            out = conv2d_forward(
                x, self.weight, self.bias, self.padding, **reused, **self._groups_kwarg
            )
        self.cache = ConvCache(x=x, out_shape=out.shape, fft=fft)
        return out

    def _output_spec(self, x):
        """``(shape, dtype)`` of ``forward``'s output (None if the size is
        invalid: the kernel then raises its error)."""
        grow = 2 * self.padding - self.kernel_size + 1
        N, _, H, W = x.shape
        if min(H + grow, W + grow) < 1:
            return None
        return (N, self.out_channels, H + grow, W + grow), self.dtype

    def backward(self, dout):
        """Input gradient; adds the parameter gradients into ``grads``.

        Parameters
        ----------
        dout : ndarray of shape (N, C_out, H_out, W_out)
            Gradient of the loss with respect to the forward output.

        Returns
        -------
        dx : ndarray of shape (N, C_in, H, W) or None
            None when :attr:`needs_input_grad` is False.
        """
        cache = self.cache
        if cache is None:
            raise RuntimeError("Conv2D.backward called before forward")
        dout = check_float_array(dout, "dout", ndim=4, dtype=self.dtype)
        if dout.shape != cache.out_shape:
            raise ValueError(
                f"dout has shape {dout.shape} but the forward output had shape "
                f"{cache.out_shape}"
            )
        need_dx = self.needs_input_grad
        reused = self._reused(
            dx=(cache.x.shape, self.dtype) if need_dx else None,
            dweight=(self.weight.shape, self.dtype),
        )
        if cache.fft:
            dx, dweight, dbias = conv2d_fft_backward(
                dout, cache.x, self.weight, self.padding, need_dx=need_dx, **reused
            )
        else:
            dx, dweight, dbias = conv2d_backward(
                dout,
                cache.x,
                self.weight,
                self.padding,
                need_dx=need_dx,
                **reused,
                **self._groups_kwarg,
            )
        self._grads["weight"] += dweight
        if "bias" in self._grads:
            self._grads["bias"] += dbias
        return dx

    def __repr__(self) -> str:
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        if self._algorithm != "auto":
            groups += f", algorithm={self._algorithm!r}"
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, "
            f"bias={'bias' in self._params}, dtype={self.dtype.name}{groups})"
        )


def set_conv_algorithm(model, algorithm) -> int:
    """Set ``algorithm`` on every :class:`Conv2D` of ``model``.

    Parameters
    ----------
    model : Module
        A layer or a model.
    algorithm : {"auto", "gemm", "fft"}
        ``"fft"`` is set only where the FFT path applies (``groups = 1``,
        ``padding < kernel_size``); the other convolutions keep theirs.

    Returns
    -------
    count : int
        How many convolutions were set.
    """
    if algorithm not in CONV_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {', '.join(CONV_ALGORITHMS)}, got {algorithm!r}"
        )
    count = 0
    for module in model.modules():
        if not isinstance(module, Conv2D):
            continue
        if algorithm == "fft" and not module.fft_applies:
            continue
        module.algorithm = algorithm
        count += 1
    return count
