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
from .blocks import DecoderStage, EncoderDecoder, EncoderStage, add_conv_bn, conv_seeds


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
        Layers ``conv``, ``bn`` (with fused ReLU) and ``pool``.
    dec4, ..., dec1 : DecoderStage
        Layers ``unpool``, ``conv``, ``bn`` (no ReLU). ``dec{k}`` unpools with
        the indices of ``enc{k}``.
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
        super().__init__(num_stages=4, in_channels=in_channels, dtype=dtype)
        self.num_classes = num_classes
        self._config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": channels,
            "kernel_size": kernel_size,
            "seed": seed,
        }
        seeds = conv_seeds(seed)
        # Attributes are set in the order data flows, which is also the order
        # of the keys in params, grads and state_dict.
        for k in range(1, 5):
            stage = EncoderStage(self.dtype)
            c_in = in_channels if k == 1 else channels
            add_conv_bn(
                stage,
                "",
                c_in,
                channels,
                kernel_size,
                relu=True,
                dtype=self.dtype,
                seed=next(seeds),
            )
            setattr(self, f"enc{k}", stage)
        for k in range(4, 0, -1):
            stage = DecoderStage(self.dtype)
            add_conv_bn(
                stage,
                "",
                channels,
                channels,
                kernel_size,
                relu=False,
                dtype=self.dtype,
                seed=next(seeds),
            )
            setattr(self, f"dec{k}", stage)
        self.classifier = Conv2D(
            channels,
            num_classes,
            1,
            padding=0,
            bias=True,
            dtype=self.dtype,
            seed=next(seeds),
        )
        # The image needs no gradient: skip the first conv's costliest product.
        self.input_grad = False
