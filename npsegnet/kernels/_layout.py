"""Views that the elementwise kernels (ReLU, dropout) loop over in parallel."""

from __future__ import annotations

CHUNK = 1 << 15  # values per parallel task for arrays that are not 4-d


def _rows(a):
    """A 2-d view: (N * C, H * W) for NCHW, else flat chunks of CHUNK values."""
    if a.ndim == 4:
        N, C, H, W = a.shape
        return a.reshape(N * C, H * W)
    flat = a.reshape(-1)
    if flat.size % CHUNK == 0 and flat.size > 0:
        return flat.reshape(-1, CHUNK)
    return flat.reshape(1, -1)
