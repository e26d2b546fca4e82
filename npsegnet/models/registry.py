"""Model names and the classes they build (what a weights file records).

Each model class registers itself with :func:`register` where it is defined;
:func:`build_model` and :func:`npsegnet.models.weights.load_model` look names
up here, so the weights format never imports a model class.
"""

from __future__ import annotations

#: Model names accepted by :func:`build_model` (and stored in weights files),
#: filled as :mod:`npsegnet.models` imports the model modules; a command line
#: offers ``choices=sorted(MODELS)``.
MODELS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make ``cls`` buildable under its ``name``."""
    MODELS[cls.name] = cls
    return cls


def build_model(name: str, **kwargs):
    """Build a model by name.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`: ``"segnet-basic"``, ``"segnet"``, the
        Table 1 variants (``"fcn-basic"``, ...) and the Bayesian models;
        ``"segnet_basic"`` and ``"SegNet-Basic"`` are accepted too.
    **kwargs
        Constructor arguments (``num_classes``, ``in_channels``, ``dtype``,
        ``seed``, and ``channels``/``kernel_size`` as each model takes them).

    Returns
    -------
    EncoderDecoder
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](**kwargs)
