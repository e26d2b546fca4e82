"""Layers with hand-written forward and backward passes (NCHW, float32/float64).

Each layer is a :class:`~npsegnet.layers.base.Module` whose ``forward`` and
``backward`` call the Numba kernels of :mod:`npsegnet.kernels` after checking
their input; :mod:`npsegnet.reference` holds the readable NumPy twins.
"""

from .base import Module
from .batchnorm import BatchNorm2D
from .conv import CONV_ALGORITHMS, Conv2D, set_conv_algorithm
from .conv_transpose import ConvTranspose2D
from .dropout import Dropout
from .pool import MaxPool2D
from .relu import ReLU
from .softmax_loss import SoftmaxCrossEntropy
from .unpool import MaxUnpool2D
from .upsample import Upsample

__all__ = [
    "CONV_ALGORITHMS",
    "BatchNorm2D",
    "Conv2D",
    "ConvTranspose2D",
    "Dropout",
    "MaxPool2D",
    "MaxUnpool2D",
    "ReLU",
    "SoftmaxCrossEntropy",
    "Upsample",
    "Module",
    "set_conv_algorithm",
]
