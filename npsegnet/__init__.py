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

__version__ = "0.1.0"
