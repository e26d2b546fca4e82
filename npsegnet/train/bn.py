"""Batch-norm statistics recomputed over the training set (SegNet-Tutorial's
``compute_bn_statistics.py``), before evaluation."""

from __future__ import annotations

import sys

__all__ = ["recompute_bn_statistics"]


def _batchnorm_layers(model) -> list:
    return [m for m in model.modules() if hasattr(m, "reset_running_stats")]


def recompute_bn_statistics(model, dataset, transform, batch_size: int, progress=False):
    """Replace batch-norm running statistics by averages over ``dataset``.

    Every batch-norm layer is reset and switched to a cumulative average
    (``momentum=None``, as PyTorch), then the model runs forward in training
    mode over the whole data set in order, without backward. The running mean
    becomes the average of the batch means, and the running variance the
    average of the (unbiased) batch variances, as SegNet-Tutorial's
    ``compute_bn_statistics.py`` computes them. The average of batch variances
    is not the variance of the whole set (it leaves out the spread of the batch
    means), but it matches what the layers see in training.
    """
    from tqdm import tqdm

    from ..data import batches

    layers = _batchnorm_layers(model)
    momenta = [bn.momentum for bn in layers]
    was_training = model.training
    model.train()
    try:
        for bn in layers:
            bn.momentum = None
            bn.reset_running_stats()
        bar = tqdm(
            total=len(dataset),
            desc="BN stats",
            unit="img",
            file=sys.stderr,
            disable=None if progress else True,
            leave=False,
        )
        with bar:
            for x, _ in batches(dataset, batch_size, shuffle=False):
                model.forward(
                    transform(x).astype(model.dtype, copy=False), keep_cache=False
                )
                bar.update(len(x))
    finally:
        for bn, m in zip(layers, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)
