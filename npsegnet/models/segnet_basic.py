"""SegNet-Basic: the small four-stage SegNet of the paper's analysis.

Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", arXiv 1511.00561, §3.1
and Table 1; layer by layer as ``Models/segnet_basic_train.prototxt`` of the
public SegNet-Tutorial.

Each encoder stage runs conv k×k (64 outputs, pad k//2, bias) → BN → ReLU →
max-pool 2×2 stride 2 (recording the indices); each decoder stage runs a
max-unpool with the mirrored pool's indices → conv k×k → BN (no ReLU):

| stage | layers |
|---|---|
| enc1..enc4 | conv → BN → ReLU → pool |
| dec4..dec1 | unpool (indices and size of ``enc{k}``'s pool) → conv → BN |
| classifier | conv 1×1 to ``num_classes``, with bias → (softmax loss) |

With the defaults (``k = 7``, 64 channels, 3 inputs, 11 classes) the model has
1,416,587 trainable parameters, 0.6 % below the 1.425M of the paper's Table 1
(which does not say how it counted).

Deviations from the paper and the Caffe model, on purpose:

* **No input normalisation layer.** The prototxt starts with a local response
  normalisation of the input (the paper speaks of local contrast
  normalisation). Here normalising the images is the data pipeline's job
  (:mod:`npsegnet.data`); the model expects normalised input.
* **Floor-mode pooling** (PyTorch's convention) instead of Caffe's ceil mode.
  Each decoder stage restores its mirrored pool's exact input size, so any
  ``H, W >= 16`` works, odd included; on an odd map the last row or column
  is dropped by the pool and comes back from the unpool as zeros, which the
  next convolution fills in from its neighbours.
* Initialisation is the layers' own (He/MSRA for the convolutions, as the
  prototxt's ``msra`` filler; zero biases; BN scale 1, shift 0). Caffe's
  per-parameter learning-rate multipliers (bias ×2, no decay) belong to the
  optimiser, not the model.
"""

from __future__ import annotations

from .._checks import check_positive_int
from ..config import DEFAULT_DTYPE
from ..layers.conv import Conv2D
from .blocks import EncoderDecoder, check_model_dtype
from .registry import register
from .stages import DecoderStage, EncoderStage, conv_bn, conv_seeds


def check_options(in_channels, num_classes, channels, kernel_size, seed, dtype):
    """The constructor options of the SegNet-Basic family, checked.

    Returns them in this order, ``dtype`` as a NumPy dtype; a bad value
    raises a ``TypeError``/``ValueError`` naming the option.
    """
    in_channels = check_positive_int(in_channels, "in_channels")
    num_classes = check_positive_int(num_classes, "num_classes")
    channels = check_positive_int(channels, "channels")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd so that padding kernel_size // 2 keeps the "
            f"map size, got {kernel_size}"
        )
    seed = check_positive_int(seed, "seed", minimum=0)
    return (
        in_channels,
        num_classes,
        channels,
        kernel_size,
        seed,
        check_model_dtype(dtype),
    )


@register
class SegNetBasic(EncoderDecoder):
    """SegNet-Basic: four encoder and four decoder stages of one wide conv each.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (3 for RGB).
    num_classes : int
        Output channels of the classifier (11 for CamVid).
    channels : int
        Feature maps of every stage (64 in the paper).
    kernel_size : int
        Odd side of every stage's square convolution (7 in the paper), padded
        by ``kernel_size // 2`` so that convolutions keep the map size.
    dtype : dtype
        ``float32`` (default) or ``float64`` (gradient checks).
    seed : int
        Seed of the initial weights; the same seed gives the same model.

    Attributes
    ----------
    enc1, ..., enc4 : EncoderStage
        Layers ``conv``, ``bn`` (with fused ReLU), then the down-sampler
        ``pool`` (``MaxPool2D(2, 2)``).
    dec4, ..., dec1 : DecoderStage
        The up-sampler ``unpool`` (``MaxUnpool2D(2, 2)``), then layers
        ``conv``, ``bn`` (no ReLU). ``dec{k}`` unpools with the indices of
        ``enc{k}``.
    classifier : Conv2D
        1×1 convolution to ``num_classes``.

    Parameter names are ``"enc1.conv.weight"``, ``"enc1.bn.weight"``, ...,
    ``"dec1.conv.bias"``, ``"classifier.weight"``; batch-norm buffers are
    ``"enc1.bn.running_mean"`` and ``"enc1.bn.running_var"``.

    Shape
    -----
    ``forward``: ``(N, in_channels, H, W)`` → ``(N, num_classes, H, W)``, for
    any ``H, W >= 16``.

    Examples
    --------
    >>> import numpy as np
    >>> from npsegnet.models import SegNetBasic
    >>> model = SegNetBasic(in_channels=3, num_classes=5, channels=4, kernel_size=3)
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 17, 23), np.float32)
    >>> model.forward(x).shape
    (2, 5, 17, 23)
    >>> SegNetBasic().num_params()
    1416587
    """

    name = "segnet-basic"

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
        seeds = conv_seeds(seed)
        encoders = [
            EncoderStage(
                dtype,
                layers=conv_bn(
                    "",
                    in_channels if k == 1 else channels,
                    channels,
                    kernel_size,
                    relu=True,
                    dtype=dtype,
                    seed=next(seeds),
                ),
            )
            for k in range(1, 5)
        ]
        decoders = [  # dec4, ..., dec1
            DecoderStage(
                dtype,
                layers=conv_bn(
                    "",
                    channels,
                    channels,
                    kernel_size,
                    relu=False,
                    dtype=dtype,
                    seed=next(seeds),
                ),
            )
            for _ in range(4)
        ]
        classifier = Conv2D(
            channels,
            num_classes,
            1,
            padding=0,
            bias=True,
            dtype=dtype,
            seed=next(seeds),
        )
        super().__init__(
            4,
            in_channels,
            dtype,
            encoders=encoders,
            decoders=decoders,
            head=classifier,
        )
        self.num_classes = num_classes
        self._config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": channels,
            "kernel_size": kernel_size,
            "seed": seed,
        }
        # The image needs no gradient: skip the first conv's costliest product.
        self.needs_input_grad = False
