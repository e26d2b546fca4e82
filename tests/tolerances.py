"""The one rule for comparing floating-point results in the tests.

See the comment below; tests import these helpers as
``from tolerances import assert_close`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# Comparing floating-point results: the one rule every test follows.
#
# Two computations of the same quantity may round differently: another
# summation order, another GEMM blocking (OpenBLAS picks AVX2 or AVX-512
# kernels by CPU, or by OPENBLAS_CORETYPE), fused multiply-adds or not. A
# floating-point sum of `reduction` terms is within reduction * eps * sum|terms|
# of the exact sum (Higham, Accuracy and Stability, §4.2), and so is each of
# the two paths, so the tolerance is
#
#     atol = 2 * reduction * eps(dtype) * scale,   scale = max|desired| by default
#
# (pass `scale` when the summands are known to be larger than the result,
# as under cancellation), plus a small relative term for elementwise rounding.
# The bound is a worst case over orderings, so it holds on every CPU; it is
# not tuned to what one machine's rounding happened to give. Float64 paths are
# compared the same way, where eps = 2.2e-16 makes the bound tight.
# ---------------------------------------------------------------------------


def rounding_tolerance(desired, dtype=None, reduction: int = 1, scale=None) -> float:
    """Absolute tolerance for comparing two roundings of ``desired`` (see above)."""
    desired = np.asarray(desired)
    dtype = np.dtype(dtype if dtype is not None else desired.dtype)
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    if scale is None:
        scale = float(np.max(np.abs(desired), initial=0.0))
    return 2.0 * max(int(reduction), 1) * float(np.finfo(dtype).eps) * max(scale, 1e-30)


def assert_close(
    actual, desired, *, dtype=None, reduction: int = 1, scale=None, err_msg: str = ""
):
    """Assert ``actual`` equals ``desired`` up to rounding in ``dtype``.

    Parameters
    ----------
    actual, desired : array_like
        The two results; ``desired`` sets the magnitude unless ``scale`` is given.
    dtype : dtype, optional
        The precision both were computed in (default: ``actual``'s dtype).
    reduction : int
        The longest sum behind one output element (for a convolution's weight
        gradient N * H_out * W_out; for its output C * KH * KW).
    scale : float, optional
        Magnitude of the summands, when it exceeds ``max|desired|``.
    """
    actual = np.asarray(actual)
    dtype = np.dtype(dtype if dtype is not None else actual.dtype)
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    atol = rounding_tolerance(desired, dtype, reduction, scale)
    rtol = 4 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


def network_reduction(model, pixels: int = 0) -> int:
    """The ``reduction`` for comparing two computations of a whole network.

    Rounding errors of successive layers add up (batch-norm keeps each layer's
    gain near one), so the bound uses the sum of the layers' reduction
    lengths: ``C_in * KH * KW`` per convolution, plus ``pixels`` (N * H * W)
    per batch-norm when it normalises by batch statistics (training mode).
    """
    total = 0
    for m in model.modules():
        w = getattr(m, "params", {}).get("weight") if hasattr(m, "params") else None
        if type(m).__name__.startswith("Conv") and w is not None and w.ndim == 4:
            total += int(np.prod(w.shape[1:]))
        elif type(m).__name__ == "BatchNorm2D":
            total += int(pixels)
    return max(total, 1)
