"""Deprecated: the old home of the weights format, VGG16 import and PyTorch bridge.

Kept for one release so that ``from npsegnet.models.io import ...`` keeps
working; import from the modules that now hold each concern instead:

* :mod:`npsegnet.models.weights`: ``save_weights``, ``read_weights``,
  ``load_weights``, ``load_model`` (and ``FORMAT``, ``CONFIG_KEY``);
* :mod:`npsegnet.models.vgg`: ``vgg16_key_map``, ``load_vgg16_into``;
* :mod:`npsegnet.models.torch_bridge`: ``to_torch_state_dict``,
  ``export_torch``, ``load_torch_state_dict``, ``torch_module``,
  ``torch_forward``.
"""

from __future__ import annotations

from .torch_bridge import (
    export_torch,
    load_torch_state_dict,
    to_torch_state_dict,
    torch_forward,
    torch_module,
)
from .torch_bridge import import_torch as _import_torch
from .torch_bridge import to_numpy as _to_numpy
from .vgg import load_vgg16_into, vgg16_key_map
from .weights import (
    CONFIG_KEY,
    FORMAT,
    load_model,
    load_weights,
    read_weights,
    save_weights,
)
from .weights import check_model as _check_model
from .weights import check_state_fits as _check_state_fits

__all__ = [
    "CONFIG_KEY",
    "FORMAT",
    "_check_model",
    "_check_state_fits",
    "_import_torch",
    "_to_numpy",
    "export_torch",
    "load_model",
    "load_torch_state_dict",
    "load_vgg16_into",
    "load_weights",
    "read_weights",
    "save_weights",
    "to_torch_state_dict",
    "torch_forward",
    "torch_module",
    "vgg16_key_map",
]
