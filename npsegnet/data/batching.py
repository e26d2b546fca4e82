"""Reproducibly shuffled mini-batches ``(x, y)``: NCHW float32, NHW int64."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .._checks import check_positive_int

__all__ = ["batches"]


def _as_generator(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}"
    )


def batches(
    dataset, batch_size: int, shuffle: bool = True, rng=None, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over ``dataset`` in mini-batches.

    Parameters
    ----------
    dataset : CamVid, SyntheticShapes or any sequence of (image, label)
        ``len(dataset)`` and ``dataset[i] -> (image (3, H, W), label (H, W))``.
    batch_size : int
        Images per batch; the last batch is smaller unless ``drop_last``.
    shuffle : bool
        Visit the images in a random order (a new permutation per call).
    rng : numpy.random.Generator, int or None
        Source of the permutation. Pass a Generator (advanced by each call, so
        successive epochs differ yet the whole run is reproducible) or a seed;
        None draws fresh OS entropy (not reproducible).
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Yields
    ------
    x : ndarray of shape (N, 3, H, W), float32
    y : ndarray of shape (N, H, W), int64

    Notes
    -----
    The arguments are checked, and the permutation drawn, when ``batches`` is
    called, not when the first batch is requested.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    n = len(dataset)
    order = _as_generator(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n

    def generate():
        for start in range(0, stop, batch_size):
            items = [dataset[int(i)] for i in order[start : start + batch_size]]
            x = np.stack([np.asarray(im, dtype=np.float32) for im, _ in items])
            y = np.stack([np.asarray(lab, dtype=np.int64) for _, lab in items])
            yield x, y

    return generate()
