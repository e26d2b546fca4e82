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


def _key(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return key


def model_options(name: str) -> tuple[str, ...]:
    """The constructor options the model ``name`` takes, in order.

    For a command line to check its options against the model: every model
    takes ``num_classes``, ``in_channels``, ``dtype`` and ``seed``; the
    SegNet-Basic family (the Table 1 variants, ``bayesian-segnet-basic``)
    ``channels`` (an int) and ``kernel_size``; ``segnet`` and
    ``bayesian-segnet`` ``channels`` (five ints); the Bayesian models
    ``dropout``.

    >>> model_options("bayesian-segnet")
    ('in_channels', 'num_classes', 'channels', 'dtype', 'seed', 'dropout')
    """
    import inspect

    params = inspect.signature(MODELS[_key(name)].__init__).parameters
    return tuple(p for p in params if p != "self")


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
    return MODELS[_key(name)](**kwargs)
