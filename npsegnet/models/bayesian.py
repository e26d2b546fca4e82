"""Bayesian SegNet: SegNet-Basic and SegNet with dropout at the central units.

Kendall, Badrinarayanan & Cipolla, "Bayesian SegNet", arXiv 1511.02680, §3
and Table 1 ("Central Encoder-Decoder", the best placement); layer by layer as
``Models/bayesian_segnet_basic_camvid.prototxt`` and
``bayesian_segnet_camvid.prototxt`` of the public SegNet-Tutorial. Dropout
(p = 0.5) follows the deepest encoder units and the deepest decoder units:

| model | dropout (``drop``) after |
|---|---|
| ``bayesian-segnet-basic`` | ``enc3``, ``enc4`` (their pools); ``dec4``, ``dec3`` |
| ``bayesian-segnet`` | ``enc3``, ``enc4``, ``enc5``; ``dec5``, ``dec4``, ``dec3`` |

An encoder's dropout runs on its pooled map (``EncoderStage.after``), a
decoder's on its output, after its last conv-BN (the prototxt's
``decdrop4`` follows ``conv_decode4``), so a decoder's dropout is the last
thing before the next decoder's unpool. (Dropout *before* decoder 4's unpool
would drop pool 4's output a second time.)

Dropout has no parameters: the parameter names are the base model's, so a
trained SegNet-Basic's weights load into a Bayesian SegNet-Basic
(``load_state_dict``). At test time :func:`npsegnet.uncertainty.mc_dropout`
keeps the dropout on and averages samples; ``eval()`` alone turns it off
(weight averaging, the usual test mode).
"""

from __future__ import annotations

from ..config import DEFAULT_DTYPE
from ..kernels.dropout import check_p
from ..layers.dropout import Dropout
from .registry import register
from .segnet import VGG16_CHANNELS, SegNet
from .segnet_basic import SegNetBasic

__all__ = ["BayesianSegNet", "BayesianSegNetBasic", "add_central_dropout"]


def add_central_dropout(model, encoders, decoders, p: float, seed: int) -> None:
    """Attach ``Dropout(p)`` as ``drop`` after ``encoders``' pools and ``decoders``.

    Parameters
    ----------
    model : EncoderDecoder
    encoders, decoders : sequence of int
        Stage numbers (``enc{k}``, ``dec{k}``).
    p : float
        Drop probability.
    seed : int
        The model's seed; dropout layer ``i`` (in data-flow order) is seeded
        with ``(seed, i)``.
    """
    stages = [getattr(model, f"enc{k}") for k in encoders]
    stages += [getattr(model, f"dec{k}") for k in decoders]
    for i, stage in enumerate(stages):
        drop = Dropout(p, seed=[int(seed), i], dtype=model.dtype)
        if stage in model.encoders:
            stage.add_after("drop", drop)
        else:
            stage.add("drop", drop)


@register
class BayesianSegNetBasic(SegNetBasic):
    """SegNet-Basic with dropout after encoders 3, 4 and decoders 4, 3.

    Parameters
    ----------
    in_channels, num_classes, channels, kernel_size, dtype, seed
        As :class:`~npsegnet.models.SegNetBasic`.
    dropout : float
        Drop probability of the four dropout layers (0.5 in the paper).

    Examples
    --------
    >>> from npsegnet.models import build_model
    >>> model = build_model("bayesian-segnet-basic", channels=4, kernel_size=3)
    >>> [n for n, _, _ in model.dec4.parts()]
    ['unpool', 'conv', 'bn', 'drop']
    """

    name = "bayesian-segnet-basic"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 11,
        channels: int = 64,
        kernel_size: int = 7,
        dtype=DEFAULT_DTYPE,
        seed: int = 0,
        dropout: float = 0.5,
    ):
        dropout = check_p(dropout)
        super().__init__(in_channels, num_classes, channels, kernel_size, dtype, seed)
        add_central_dropout(self, (3, 4), (4, 3), dropout, seed)
        self.dropout = dropout
        self._config["dropout"] = dropout


@register
class BayesianSegNet(SegNet):
    """SegNet (VGG16) with dropout after encoders 3, 4, 5 and decoders 5, 4, 3.

    Parameters
    ----------
    in_channels, num_classes, channels, dtype, seed
        As :class:`~npsegnet.models.SegNet`.
    dropout : float
        Drop probability of the six dropout layers (0.5 in the paper).
    """

    name = "bayesian-segnet"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 11,
        channels=VGG16_CHANNELS,
        dtype=DEFAULT_DTYPE,
        seed: int = 0,
        dropout: float = 0.5,
    ):
        dropout = check_p(dropout)
        super().__init__(in_channels, num_classes, channels, dtype, seed)
        add_central_dropout(self, (3, 4, 5), (5, 4, 3), dropout, seed)
        self.dropout = dropout
        self._config["dropout"] = dropout
