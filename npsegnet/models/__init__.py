"""SegNet-Basic and SegNet (VGG16), built from :mod:`npsegnet.layers`.

>>> from npsegnet.models import build_model
>>> model = build_model("segnet-basic", num_classes=11)   # the paper's SegNet-Basic
>>> model.num_params()
1416587

Every model maps normalised images ``(N, C_in, H, W)`` to per-pixel class
scores ``(N, num_classes, H, W)`` with :meth:`forward`, back-propagates with
:meth:`backward`, exposes ``params``/``grads``/``buffers`` by dotted name, and
saves itself to one ``.npz`` that :func:`load_model` turns back into the same
model. :mod:`npsegnet.models.io` also moves weights to and from PyTorch.
"""

from __future__ import annotations

from .blocks import DecoderStage, EncoderDecoder, EncoderStage, PoolRecord
from .io import (
    export_torch,
    load_model,
    load_torch_state_dict,
    load_vgg16_into,
    load_weights,
    read_weights,
    save_weights,
    to_torch_state_dict,
    torch_module,
)
from .segnet import SegNet
from .segnet_basic import SegNetBasic

#: Model names accepted by :func:`build_model` (and stored in weights files).
MODELS = {SegNetBasic.name: SegNetBasic, SegNet.name: SegNet}


def build_model(name: str, **kwargs) -> EncoderDecoder:
    """Build a model by name.

    Parameters
    ----------
    name : {"segnet-basic", "segnet"}
        ``"segnet_basic"`` and ``"SegNet-Basic"`` are accepted too.
    **kwargs
        Constructor arguments (``num_classes``, ``in_channels``, ``dtype``,
        ``seed``, and ``channels``/``kernel_size`` as each model takes them).

    Returns
    -------
    SegNetBasic or SegNet
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](**kwargs)


__all__ = [
    "MODELS",
    "DecoderStage",
    "EncoderDecoder",
    "EncoderStage",
    "PoolRecord",
    "SegNet",
    "SegNetBasic",
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
