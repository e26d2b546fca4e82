"""SegNet: the VGG16 encoder and its mirrored decoder.

Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", arXiv 1511.00561, §3 and
Fig. 2; layer by layer as ``Models/segnet_train.prototxt`` of the public
SegNet-Tutorial.

Encoder convolutions are 3×3, pad 1, with bias, each → BN → ReLU, and each
stage ends in a 2×2 stride-2 max-pool; decoder stage ``k`` unpools with encoder
stage ``k``'s indices, then runs its 3×3 convolutions (output channels below):

| stage | encoder | decoder |
|---|---|---|
| 1 | 64, 64 | 64, ``num_classes`` (last: no BN, no ReLU: feeds the loss) |
| 2 | 128, 128 | 128, 64 |
| 3 | 256, 256, 256 | 256, 256, 128 |
| 4 | 512, 512, 512 | 512, 512, 256 |
| 5 | 512, 512, 512 | 512, 512, 512 |

The encoder is VGG16's 13 convolutional layers with batch-norm (torchvision's
``vgg16_bn`` ``features``), so it can start from ImageNet weights
(:func:`npsegnet.models.vgg.load_vgg16_into`). Decoder stage ``k`` runs the
mirror images of encoder stage ``k``'s convolutions in reverse: its
``conv{j}`` maps the channels of encoder ``conv{j}``'s output back to those of
its input, so ``dec1.conv1`` (64 → ``num_classes``) mirrors ``enc1.conv1``
(3 → 64), as ``conv1_1_D`` mirrors ``conv1_1`` in the prototxt. With the
defaults the model has 29,449,355 trainable parameters (paper: about 29.4M).

Deviations, on purpose:

* **Floor-mode pooling** (PyTorch's convention) instead of Caffe's ceil mode.
  At 360×480 the pools give 180×240, 90×120, 45×60, 22×30 and 11×15 (Caffe:
  23×30 and 12×15), and decoders 5 and 4 unpool back to exactly 22×30 and
  45×60, the recorded input sizes of pools 5 and 4. Any ``H, W >= 32`` works.
* ``channels`` scales the widths of the five stages, so that a small
  VGG-shaped network (say ``channels=(2, 3, 3, 4, 4)``) can be gradient-checked
  or trained quickly. The paper's network is the default.
* No input normalisation layer: the data pipeline normalises the images. With
  ImageNet weights, normalise as torchvision's VGG expects (RGB in [0, 1],
  minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225)).
"""

from __future__ import annotations

from .._checks import check_positive_int
from ..config import DEFAULT_DTYPE
from ..layers.conv import Conv2D
from .blocks import EncoderDecoder, check_model_dtype
from .registry import register
from .stages import DecoderStage, EncoderStage, conv_bn, conv_seeds

#: Output channels of every stage of VGG16, and how many convolutions each has.
VGG16_CHANNELS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)


@register
class SegNet(EncoderDecoder):
    """SegNet with a VGG16-BN encoder (13 convs) and its mirrored decoder.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (3 for RGB, and for VGG16 weights).
    num_classes : int
        Output channels of the last convolution (11 for CamVid).
    channels : tuple of 5 int
        Feature maps of the five stages, ``(64, 128, 256, 512, 512)`` as VGG16.
        Smaller values build a small network of the same shape.
    dtype : dtype
        ``float32`` (default) or ``float64`` (gradient checks).
    seed : int
        Seed of the initial weights.

    Attributes
    ----------
    enc1, ..., enc5 : EncoderStage
        Layers ``conv1``, ``bn1``, ``conv2``, ``bn2`` (, ``conv3``, ``bn3``),
        each batch-norm with fused ReLU, then the down-sampler ``pool``.
    dec5, ..., dec1 : DecoderStage
        The up-sampler ``unpool`` with the indices of ``enc{k}``, then
        ``conv3``/``bn3`` (in
        stages 3-5), ``conv2``/``bn2``, ``conv1``/``bn1``, run in that order;
        ``dec1`` ends with ``conv1`` alone (no ``bn1``).

    Parameter names are ``"enc1.conv1.weight"``, ``"enc1.bn1.weight"``, ...,
    ``"dec1.conv1.bias"``; batch-norm buffers ``"enc1.bn1.running_mean"``,
    ``"enc1.bn1.running_var"``.

    Shape
    -----
    ``forward``: ``(N, in_channels, H, W)`` → ``(N, num_classes, H, W)``, for
    any ``H, W >= 32``.

    Examples
    --------
    >>> import numpy as np
    >>> from npsegnet.models import SegNet
    >>> model = SegNet(num_classes=4, channels=(2, 2, 3, 3, 3))
    >>> x = np.random.default_rng(0).standard_normal((1, 3, 33, 45), np.float32)
    >>> model.forward(x).shape
    (1, 4, 33, 45)
    """

    name = "segnet"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 11,
        channels=VGG16_CHANNELS,
        dtype=DEFAULT_DTYPE,
        seed: int = 0,
    ):
        in_channels = check_positive_int(in_channels, "in_channels")
        num_classes = check_positive_int(num_classes, "num_classes")
        if not isinstance(channels, (tuple, list)) or len(channels) != 5:
            raise ValueError(
                f"channels must be a sequence of 5 ints (one per stage), got "
                f"{channels!r}"
            )
        channels = tuple(check_positive_int(c, "channels") for c in channels)
        seed = check_positive_int(seed, "seed", minimum=0)
        dtype = check_model_dtype(dtype)
        seeds = conv_seeds(seed)

        # plans[k] lists encoder stage k's convolutions as (in, out).
        plans = []
        c_in = in_channels
        for c_out, depth in zip(channels, VGG16_DEPTHS, strict=True):
            plans.append([(c_in if j == 0 else c_out, c_out) for j in range(depth)])
            c_in = c_out

        encoders = []
        for plan in plans:
            layers = []
            for j, (a, b) in enumerate(plan, start=1):
                layers += conv_bn(
                    str(j), a, b, 3, relu=True, dtype=dtype, seed=next(seeds)
                )
            encoders.append(EncoderStage(dtype, layers=layers))

        decoders = []  # dec5, ..., dec1
        for k in range(5, 0, -1):
            plan = plans[k - 1]
            layers = []
            for j in range(len(plan), 0, -1):
                a, b = plan[j - 1]
                if k == 1 and j == 1:
                    # The very last convolution feeds the loss: no BN, no ReLU.
                    last = Conv2D(
                        b,
                        num_classes,
                        3,
                        padding=1,
                        bias=True,
                        dtype=dtype,
                        seed=next(seeds),
                    )
                    layers.append(("conv1", last))
                else:
                    layers += conv_bn(
                        str(j), b, a, 3, relu=True, dtype=dtype, seed=next(seeds)
                    )
            decoders.append(DecoderStage(dtype, layers=layers))

        super().__init__(5, in_channels, dtype, encoders=encoders, decoders=decoders)
        self.num_classes = num_classes
        self.channels = channels
        self._config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": list(channels),
            "seed": seed,
        }
        # The image needs no gradient: skip the first conv's costliest product.
        self.needs_input_grad = False
