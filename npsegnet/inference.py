"""A trained model at work: load it, predict labels, score it on a data set.

What ``npsegnet train``, ``evaluate`` and ``predict`` share once a model
exists: building it back from a checkpoint or a weights file
(:func:`load_for_inference`), the input normalisation it was trained with
(:func:`resolve_normalization`), the per-pixel argmax
(:func:`predict_labels`), a pass over a data set with the paper's metrics
(:func:`evaluate_model`) and their text report (:func:`format_metrics`).
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import UsageError

__all__ = [
    "evaluate_model",
    "format_metrics",
    "load_for_inference",
    "predict_labels",
    "resolve_normalization",
]

METRIC_LABELS = (
    ("global_accuracy", "G", "global accuracy"),
    ("class_average_accuracy", "C", "class average accuracy"),
    ("mean_iou", "mIoU", "mean IoU"),
    ("boundary_f1", "BF", "boundary F1"),
)


def load_for_inference(path) -> tuple[object, dict]:
    """Build the model saved in ``path`` and the config it was trained with.

    Parameters
    ----------
    path : str or Path
        A training checkpoint (``latest.npz``, ``best.npz``) or a weights file
        written by ``model.save``.

    Returns
    -------
    model : SegNetBasic or SegNet
        In eval mode.
    config : dict
        The training config (``model``, ``model_kwargs``, ``normalization``,
        ``data``, ``class_names`` ...); for a bare weights file only what it
        records (``normalization`` is then absent unless the file carries it).
    """
    from .checkpoint import _open_npz, load_checkpoint
    from .models import build_model, load_model, read_weights

    with _open_npz(path, "checkpoint") as npz:  # clear errors for bad files
        keys = set(npz.files)
    if "format" in keys:
        ckpt = load_checkpoint(path)
        config = ckpt["config"]
        model = build_model(config["model"], **config["model_kwargs"])
        model.load_state_dict(ckpt["model_state"])
    else:
        meta, _ = read_weights(path)
        model = load_model(path)
        config = {"model": meta["model"], "model_kwargs": meta["config"]}
        extra = meta.get("metadata") or meta.get("extra") or {}
        config.update({k: v for k, v in extra.items() if k not in config})
    return model.eval(), config


def resolve_normalization(config: dict, override: str | None) -> dict:
    """The stored input normalisation, or the one named on the command line.

    Parameters
    ----------
    config : dict
        From :func:`load_for_inference`.
    override : {"lrn", "meanstd", "none"} or None
        ``--normalization``.

    Returns
    -------
    dict
        A spec for :func:`npsegnet.data.make_transform`.
    """
    from .data import LRN_PARAMS

    stored = config.get("normalization")
    if override is not None:
        if stored is not None and stored.get("kind") == override:
            return stored
        if override == "meanstd":
            raise UsageError(
                "--normalization meanstd needs the training statistics, which only "
                "a checkpoint stores; pass a checkpoint or choose lrn/none"
            )
        return {"kind": "lrn", **LRN_PARAMS} if override == "lrn" else {"kind": "none"}
    if stored is None:
        raise UsageError(
            "this weights file does not record the input normalisation used in "
            "training; pass --normalization lrn|none, or use a training checkpoint"
        )
    return stored


def predict_labels(model, x: np.ndarray, transform) -> np.ndarray:
    """Per-pixel argmax of the model's scores.

    Parameters
    ----------
    model : SegNetBasic or SegNet
        In eval mode.
    x : ndarray of shape (N, 3, H, W), float32 in [0, 1]
    transform : callable
        From :func:`npsegnet.data.make_transform`.

    Returns
    -------
    ndarray of shape (N, H, W), int64
    """
    logits = model.forward(
        transform(x).astype(model.dtype, copy=False), keep_cache=False
    )
    return logits.argmax(axis=1)


def evaluate_model(
    model,
    dataset,
    transform,
    batch_size: int = 4,
    boundary: bool = True,
    progress: bool = False,
    desc: str = "eval",
    mc_samples: int | None = None,
    seed: int = 0,
) -> dict:
    """Run ``model`` (in eval mode) over ``dataset`` and compute the metrics.

    Parameters
    ----------
    model : SegNetBasic or SegNet
    dataset : CamVid or SyntheticShapes
    transform : callable
        Input normalisation (:func:`npsegnet.data.make_transform`).
    batch_size : int
    boundary : bool
        Compute the boundary F1 score too.
    progress : bool
        Show a tqdm bar on stderr.
    desc : str
        The bar's label.
    mc_samples : int, optional
        Predict by Monte-Carlo dropout with this many samples
        (:func:`npsegnet.uncertainty.mc_dropout`, seeded with ``seed``)
        instead of one pass with dropout off (weight averaging, the default),
        and measure the uncertainty too.

    Returns
    -------
    dict
        :meth:`npsegnet.metrics.SegmentationMetrics.compute` plus
        ``class_names``; with ``mc_samples`` also ``mc_samples`` and
        ``uncertainty`` (:meth:`npsegnet.uncertainty.UncertaintyMetrics.compute`:
        AUROC of entropy and of variance as detectors of wrong pixels, the
        expected calibration error and the reliability bins).
    """
    from tqdm import tqdm

    from .data import batches
    from .metrics import SegmentationMetrics
    from .uncertainty import UncertaintyMetrics, mc_dropout

    metrics = SegmentationMetrics(
        dataset.num_classes, dataset.ignore_index, boundary=boundary
    )
    spread = (
        UncertaintyMetrics(dataset.num_classes, dataset.ignore_index)
        if mc_samples
        else None
    )
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(
            total=len(dataset),
            desc=desc,
            unit="img",
            file=sys.stderr,
            disable=None if progress else True,
            leave=False,
        )
        with bar:
            for i, (x, y) in enumerate(batches(dataset, batch_size, shuffle=False)):
                if spread is None:
                    metrics.update(predict_labels(model, x, transform), y)
                else:
                    # a seed per batch: the result does not depend on batching
                    # order elsewhere, and each batch draws fresh masks
                    res = mc_dropout(model, transform(x), mc_samples, seed=[seed, i])
                    metrics.update(res.labels, y)
                    spread.update(res, y)
                bar.update(len(x))
    finally:
        model.train(was_training)
    result = metrics.compute()
    result["class_names"] = list(dataset.class_names)
    if spread is not None:
        result["mc_samples"] = int(mc_samples)
        result["uncertainty"] = spread.compute()
    return result


def format_metrics(result: dict, title: str = "") -> str:
    """A small text report: the four metrics in percent, then per class."""

    def pct(v):
        return "   n/a" if v is None else f"{100 * v:6.2f}"

    lines = [title] if title else []
    for key, short, long in METRIC_LABELS:
        lines.append(f"  {short:<5} {long:<24} {pct(result.get(key))} %")
    spread = result.get("uncertainty")
    if spread is not None:
        lines.append(
            f"  Monte-Carlo dropout, {result['mc_samples']} samples: misclassified "
            f"pixels detected by entropy AUROC {spread['auroc_entropy']:.3f}, by "
            f"variance AUROC {spread['auroc_variance']:.3f}; calibration error "
            f"(ECE) {100 * spread['ece']:.2f} %"
        )
    names = result.get("class_names") or [
        str(i) for i in range(len(result["per_class_iou"]))
    ]
    width = max(12, *(len(n) for n in names))
    lines.append(f"  {'class':<{width}}  accuracy %   IoU %")
    for name, acc, iou in zip(
        names, result["per_class_accuracy"], result["per_class_iou"], strict=True
    ):
        lines.append(f"  {name:<{width}}  {pct(acc):>10}  {pct(iou):>6}")
    return "\n".join(lines)
