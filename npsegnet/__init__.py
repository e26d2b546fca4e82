"""npsegnet: SegNet from scratch in NumPy, with hand-written backward passes.

Subpackages
-----------
reference
    Plain NumPy loops, one function per op: the textbook.
kernels
    Numba twins of the reference functions, same signatures: the fast path.
layers
    Layer classes with ``forward``/``backward``, ``params``/``grads``.
models
    SegNet-Basic and SegNet (VGG16).
"""

import os as _os
import sys as _sys

# By default an idle OpenBLAS worker busy-waits about 0.1 s after every matrix
# product; on 2 cores that steals the CPU from the Numba kernels that run between
# the products (a SegNet-Basic step at 32x32: 0.8 s instead of 0.12 s). OpenBLAS
# reads this once, when NumPy loads it, so it only helps if npsegnet is imported
# first; a user's own setting wins.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
