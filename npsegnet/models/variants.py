"""The decoder variants of the SegNet paper's Table 1, on SegNet-Basic's encoder.

Badrinarayanan, Kendall & Cipolla, "SegNet", arXiv 1511.00561, §3.1 ("Decoder
variants") and Table 1. Every variant shares SegNet-Basic's encoder (four
stages of conv 7×7, 64 → BN → ReLU → max-pool 2×2/2) and differs only in what
its decoder up-samples with and what it keeps from the encoder:

| name | up-sampler | kept from encoder k | decoder filters |
|---|---|---|---|
| ``bilinear-interpolation`` | bilinear | size | 1-channel 7×7, BN |
| ``segnet-basic`` | unpool | indices | 7×7, BN |
| ``segnet-basic-encoder-addition`` | unpool | indices, 64 maps | 7×7, BN, + maps |
| ``segnet-basic-single-channel-decoder`` | unpool | indices | 1-channel 7×7, BN |
| ``fcn-basic`` | deconv 8×8, K | K maps (1×1) | none, + maps |
| ``fcn-basic-no-addition`` | deconv 8×8, K | size | none |
| ``fcn-basic-no-dim-reduction`` | deconv 8×8, 64 | 64 maps | none, + maps |
| ``fcn-basic-no-addition-no-dim-reduction`` | deconv 8×8, 64 | size | none |

K is ``num_classes``. Where the paper's text leaves a choice, the reading
taken is the one that reproduces its parameter count and storage multiplier
(``docs/models.md`` gives the layer plans and the arithmetic):

* **The FCN decoders have no convolutions besides the deconvolution.** The
  paper: "upsampling is performed by inverse convolution using a ... trainable
  multi-channel upsampling kernel. We set the kernel size to 8 × 8 ... The
  upsampled feature map ... is then added element-wise to the corresponding
  resolution encoder feature map". Four 8×8 K→K deconvolutions and five 1×1
  reductions give FCN-Basic's 0.65M; with 64 channels, 1.625M.
* **The maps FCN keeps are the encoder's full-resolution maps before each
  pool**: 64 float32 maps at 180×240 take 11 MB, "≈ 1.9 MB" reduced to 11,
  against 0.17 MB for 2-bit indices of the 90×120 pooled map: the ratios 64
  and 11 of Table 1's storage multiplier.
* **The FCN deconvolutions are stride 2, padding 3**, so that an 8×8 kernel
  doubles the size, and start as exact bilinear up-sampling by 2 (FCN's
  initialiser; the paper: "initialized using bilinear interpolation
  weights"): the 4×4 bilinear taps of ``ConvTranspose2D.bilinear`` centred
  in the 8×8 kernel. No bias, as FCN's ``Deconvolution`` layers.
* **Bilinear-Interpolation keeps SegNet-Basic-SingleChannelDecoder's
  single-channel decoder filters** and only swaps the unpool for fixed
  bilinear up-sampling: both have 0.625M parameters in Table 1, which
  single-channel 7×7 filters explain (+13,312) and no filters at all would
  not (0.613M).

>>> from npsegnet.models import build_model
>>> build_model("fcn-basic").num_params()
646839
"""

from __future__ import annotations

import numpy as np

from ..config import DEFAULT_DTYPE
from ..layers.batchnorm import BatchNorm2D
from ..layers.conv import Conv2D
from ..layers.conv_transpose import ConvTranspose2D, bilinear_kernel
from ..layers.upsample import Upsample
from .blocks import EncoderDecoder
from .registry import register
from .segnet_basic import check_options
from .stages import DecoderStage, EncoderStage, conv_bn, conv_seeds

__all__ = [
    "TABLE1",
    "BasicVariant",
    "BilinearInterpolation",
    "FCNBasic",
    "FCNBasicNoAddition",
    "FCNBasicNoAdditionNoDimReduction",
    "FCNBasicNoDimReduction",
    "SegNetBasicEncoderAddition",
    "SegNetBasicSingleChannelDecoder",
    "fcn_deconvolution",
]

#: The paper's Table 1: parameters and encoder storage multiplier (decoder
#: memory against SegNet's 2-bit indices; 0 when nothing is kept).
TABLE1 = {
    "bilinear-interpolation": (0.625e6, 0),
    "segnet-basic": (1.425e6, 1),
    "segnet-basic-encoder-addition": (1.425e6, 64),
    "segnet-basic-single-channel-decoder": (0.625e6, 1),
    "fcn-basic": (0.65e6, 11),
    "fcn-basic-no-addition": (0.65e6, 0),
    "fcn-basic-no-dim-reduction": (1.625e6, 64),
    "fcn-basic-no-addition-no-dim-reduction": (1.625e6, 0),
}


def fcn_deconvolution(channels: int, dtype=DEFAULT_DTYPE) -> ConvTranspose2D:
    """FCN-Basic's up-sampler: 8×8, stride 2, padding 3, bilinear at the start.

    ``H_out = 2 H`` (``2 H + 1`` with ``output_size``), no bias. The weights
    map each channel to itself with the 4×4 bilinear taps of
    :func:`~npsegnet.layers.conv_transpose.bilinear_kernel` centred in the
    8×8 kernel, so the layer starts as exact bilinear up-sampling by 2 (the
    same output as ``ConvTranspose2D.bilinear(channels)``).
    """
    layer = ConvTranspose2D(
        channels, channels, 8, stride=2, padding=3, bias=False, dtype=dtype
    )
    weight = np.zeros((channels, channels, 8, 8))
    weight[np.arange(channels), np.arange(channels), 2:6, 2:6] = bilinear_kernel(4)
    layer.params["weight"][...] = weight
    return layer


class BasicVariant(EncoderDecoder):
    """SegNet-Basic's encoder with one of the paper's decoders (Table 1).

    Subclasses set :attr:`name` and define :meth:`plan`, which returns the
    encoder's ``keep`` and ``skip`` and the decoder stages; this class builds
    the shared encoder (with SegNet-Basic's seeds: the same ``seed`` gives
    the same initial encoder in every variant and in SegNet-Basic), checks
    the constructor options and keeps them in ``config``.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        ``K``, classes scored per pixel.
    channels : int
        Feature maps of every encoder stage (64 in the paper).
    kernel_size : int
        Odd side of the encoder's (and SegNet decoders') square convolutions.
    dtype : dtype
        ``float32`` (default) or ``float64``.
    seed : int
        Seed of the initial weights.

    Shape
    -----
    ``forward``: ``(N, in_channels, H, W)`` → ``(N, num_classes, H, W)``, for
    any ``H, W >= 16``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 11,
        channels: int = 64,
        kernel_size: int = 7,
        dtype=DEFAULT_DTYPE,
        seed: int = 0,
    ):
        in_channels, num_classes, channels, kernel_size, seed, dtype = check_options(
            in_channels, num_classes, channels, kernel_size, seed, dtype
        )
        self.num_classes = num_classes
        seeds = conv_seeds(seed)
        convs = [
            conv_bn("", a, channels, kernel_size, relu=True, dtype=dtype, seed=s)
            for a, s in zip((in_channels,) + (channels,) * 3, seeds, strict=False)
        ]
        keep, skip, decoders, head = self.plan(
            channels, kernel_size, num_classes, dtype, seeds
        )
        encoders = [
            EncoderStage(dtype, layers=layers, keep=keep, skip=skip(dtype, seeds))
            for layers in convs
        ]
        super().__init__(
            4, in_channels, dtype, encoders=encoders, decoders=decoders, head=head
        )
        self._config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": channels,
            "kernel_size": kernel_size,
            "seed": seed,
        }
        self.needs_input_grad = False

    def plan(self, c: int, k: int, K: int, dtype, seeds):
        """``(keep, skip, decoders, head)`` of the variant.

        ``c`` channels, ``k`` kernel size, ``K`` classes; draw each layer's
        seed with ``next(seeds)``. ``keep`` is the encoder stages' record
        kind, ``skip(dtype, seeds)`` their skip layers (a list of pairs),
        ``decoders`` the stages ``dec4..dec1``, ``head`` the last layer or
        None.
        """
        raise NotImplementedError  # pragma: no cover - abstract


def _classifier(c, K, dtype, seeds) -> Conv2D:
    """SegNet-Basic's head: a 1×1 convolution to ``K`` classes, with bias."""
    return Conv2D(c, K, 1, padding=0, dtype=dtype, seed=next(seeds))


def _no_skip(dtype, seeds):
    return []


def _single_channel(c, k, dtype, seeds):
    """A 7×7 filter per channel (``groups = c``) → BN: the thin decoder."""
    conv = Conv2D(c, c, k, groups=c, dtype=dtype, seed=next(seeds))
    return [("conv", conv), ("bn", BatchNorm2D(c, dtype=dtype))]


@register
class BilinearInterpolation(BasicVariant):
    """Fixed bilinear up-sampling, then single-channel 7×7 filters → BN.

    Keeps only the encoder's sizes (storage 0). Names: ``dec4.up``,
    ``dec4.conv`` (depthwise), ``dec4.bn``, ..., ``classifier``.
    """

    name = "bilinear-interpolation"

    def plan(self, c, k, K, dtype, seeds):
        decoders = [
            DecoderStage(
                dtype,
                up=Upsample(2, "bilinear", dtype=dtype),
                up_name="up",
                layers=_single_channel(c, k, dtype, seeds),
            )
            for _ in range(4)
        ]
        return "size", _no_skip, decoders, _classifier(c, K, dtype, seeds)


@register
class SegNetBasicEncoderAddition(BasicVariant):
    """SegNet-Basic whose decoders also add the encoder's 64 pre-pool maps.

    Decoder stage k: unpool with encoder k's indices → conv 7×7 → BN → + the
    maps encoder k fed its pool (paper: "both the pooling indices for
    upsampling are used, followed by a convolution step ... then added
    element-wise to the corresponding encoder feature maps").
    """

    name = "segnet-basic-encoder-addition"

    def plan(self, c, k, K, dtype, seeds):
        decoders = [
            DecoderStage(
                dtype,
                layers=conv_bn("", c, c, k, relu=False, dtype=dtype, seed=next(seeds)),
                merge="add",
            )
            for _ in range(4)
        ]
        return "indices+maps", _no_skip, decoders, _classifier(c, K, dtype, seeds)


@register
class SegNetBasicSingleChannelDecoder(BasicVariant):
    """SegNet-Basic with single-channel decoder filters (``groups = 64``)."""

    name = "segnet-basic-single-channel-decoder"

    def plan(self, c, k, K, dtype, seeds):
        decoders = [
            DecoderStage(dtype, layers=_single_channel(c, k, dtype, seeds))
            for _ in range(4)
        ]
        return "indices", _no_skip, decoders, _classifier(c, K, dtype, seeds)


def _fcn(c, K, dtype, seeds, *, add: bool, reduce: bool):
    """FCN decoders ``dec4..dec1`` (and the encoders' skip layers).

    With ``reduce``, a 1×1 convolution compresses the last encoder map
    (``dec4.reduce``) and every kept map (``enc{k}.reduce``) to ``K``
    channels and the deconvolutions run on ``K``; the last decoder's output
    is then the scores (no head). Without it they run on ``c`` channels and a
    1×1 classifier follows.
    """
    width = K if reduce else c

    def reduction():
        return [("reduce", Conv2D(c, K, 1, padding=0, dtype=dtype, seed=next(seeds)))]

    def skip(dtype, seeds):
        return reduction() if (add and reduce) else []

    decoders = [
        DecoderStage(
            dtype,
            before=reduction() if (reduce and d == 4) else (),
            up=fcn_deconvolution(width, dtype),
            up_name="deconv",
            merge="add" if add else None,
        )
        for d in range(4, 0, -1)
    ]
    head = None if reduce else _classifier(c, K, dtype, seeds)
    return ("maps" if add else "size"), skip, decoders, head


@register
class FCNBasic(BasicVariant):
    """FCN decoding: 8×8 deconvolutions on K channels plus reduced encoder maps.

    The last encoder map is reduced to K channels by ``dec4.reduce`` (1×1);
    decoder k up-samples by 2 with ``dec{k}.deconv`` and adds encoder k's
    pre-pool map reduced to K by ``enc{k}.reduce`` (1×1). The output of
    ``dec1`` is the scores.
    """

    name = "fcn-basic"

    def plan(self, c, k, K, dtype, seeds):
        return _fcn(c, K, dtype, seeds, add=True, reduce=True)


@register
class FCNBasicNoAddition(BasicVariant):
    """FCN-Basic without the encoder maps: only the deconvolutions learn."""

    name = "fcn-basic-no-addition"

    def plan(self, c, k, K, dtype, seeds):
        return _fcn(c, K, dtype, seeds, add=False, reduce=True)


@register
class FCNBasicNoDimReduction(BasicVariant):
    """FCN-Basic on 64 channels: 64→64 deconvolutions + the 64 encoder maps."""

    name = "fcn-basic-no-dim-reduction"

    def plan(self, c, k, K, dtype, seeds):
        return _fcn(c, K, dtype, seeds, add=True, reduce=False)


@register
class FCNBasicNoAdditionNoDimReduction(BasicVariant):
    """64→64 deconvolutions only, then the 1×1 classifier."""

    name = "fcn-basic-no-addition-no-dim-reduction"

    def plan(self, c, k, K, dtype, seeds):
        return _fcn(c, K, dtype, seeds, add=False, reduce=False)
