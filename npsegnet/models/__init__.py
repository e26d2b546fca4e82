"""SegNet-Basic, SegNet (VGG16), their Table 1 and Bayesian variants.

>>> from npsegnet.models import build_model
>>> model = build_model("segnet-basic", num_classes=11)   # the paper's SegNet-Basic
>>> model.num_params()
1416587

Every model maps normalised images ``(N, C_in, H, W)`` to per-pixel class
scores ``(N, num_classes, H, W)`` with :meth:`forward`, back-propagates with
:meth:`backward`, exposes ``params``/``grads``/``buffers`` by dotted name, and
saves itself to one ``.npz`` that :func:`load_model` turns back into the same
model.

The modules, from the bottom up: :mod:`~npsegnet.models.records` (what an
encoder stage hands its mirror), :mod:`~npsegnet.models.stages` (encoder and
decoder stages built from parts), :mod:`~npsegnet.models.registry` (model
names), :mod:`~npsegnet.models.weights` (the weights file),
:mod:`~npsegnet.models.blocks` (the encoder-decoder skeleton),
:mod:`~npsegnet.models.segnet_basic` and :mod:`~npsegnet.models.segnet` (the
two networks), :mod:`~npsegnet.models.variants` (the decoder variants of the
paper's Table 1), :mod:`~npsegnet.models.bayesian` (Bayesian SegNet and
SegNet-Basic), :mod:`~npsegnet.models.vgg` (ImageNet VGG16 weights) and
:mod:`~npsegnet.models.torch_bridge` (PyTorch). :mod:`npsegnet.models.io` is
a deprecated alias of the last three, kept for one release.
"""

from __future__ import annotations

from .bayesian import BayesianSegNet, BayesianSegNetBasic
from .blocks import EncoderDecoder, PrefixState
from .records import (
    FeatureMaps,
    IndicesAndMaps,
    PoolIndices,
    PoolRecord,
    PoolSize,
    Record,
)
from .registry import MODELS, build_model
from .segnet import SegNet
from .segnet_basic import SegNetBasic
from .stages import DecoderStage, EncoderStage
from .torch_bridge import (
    export_torch,
    load_torch_state_dict,
    to_torch_state_dict,
    torch_module,
)
from .variants import (
    BilinearInterpolation,
    FCNBasic,
    FCNBasicNoAddition,
    FCNBasicNoAdditionNoDimReduction,
    FCNBasicNoDimReduction,
    SegNetBasicEncoderAddition,
    SegNetBasicSingleChannelDecoder,
)
from .vgg import load_vgg16_into
from .weights import load_model, load_weights, read_weights, save_weights

__all__ = [
    "MODELS",
    "BayesianSegNet",
    "BayesianSegNetBasic",
    "BilinearInterpolation",
    "DecoderStage",
    "EncoderDecoder",
    "EncoderStage",
    "FCNBasic",
    "FCNBasicNoAddition",
    "FCNBasicNoAdditionNoDimReduction",
    "FCNBasicNoDimReduction",
    "FeatureMaps",
    "IndicesAndMaps",
    "PoolIndices",
    "PoolRecord",
    "PoolSize",
    "PrefixState",
    "Record",
    "SegNet",
    "SegNetBasic",
    "SegNetBasicEncoderAddition",
    "SegNetBasicSingleChannelDecoder",
    "build_model",
    "export_torch",
    "load_model",
    "load_torch_state_dict",
    "load_vgg16_into",
    "load_weights",
    "read_weights",
    "save_weights",
    "to_torch_state_dict",
    "torch_module",
]
