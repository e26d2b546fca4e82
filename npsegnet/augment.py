"""Moved to :mod:`npsegnet.data.augment`; this alias goes in the next release.

``import npsegnet.augment`` gives the very module :mod:`npsegnet.data.augment`
(so ``Augment``, ``batch_generator`` and the rest stay reachable), after a
``DeprecationWarning``.
"""

import sys
import warnings

from .data import augment as _moved

warnings.warn(
    "npsegnet.augment moved to npsegnet.data.augment; the old name goes in the "
    "next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
