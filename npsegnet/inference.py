"""A trained model at work: load it, predict labels, score it on a data set.

What ``npsegnet train``, ``evaluate`` and ``predict`` share once a model
exists: building it back from a checkpoint or a weights file
(:func:`load_for_inference`), the input normalisation it was trained with
(:func:`resolve_normalization`), the per-pixel argmax
(:func:`predict_labels`), a pass over a data set with the paper's metrics
(:func:`evaluate_model`) and their text report (:func:`format_metrics`);
and the one post-training change a user may want, undoing part of the loss's
class weighting in the classifier's bias (:func:`shift_class_priors`,
scored for several strengths at once by :func:`evaluate_prior_shifts`).
"""

from __future__ import annotations

import sys
from contextlib import closing

import numpy as np

from .errors import UsageError

__all__ = [
    "data_for_evaluation",
    "evaluate_model",
    "evaluate_prior_shifts",
    "format_metrics",
    "load_for_inference",
    "predict_labels",
    "prior_shift",
    "resolve_normalization",
    "shift_class_priors",
]

# What a weights file keeps of its training config: what inference needs to
# know (train's model.npz, balance's output).
WEIGHTS_METADATA_KEYS = (
    "normalization",
    "class_names",
    "num_classes",
    "ignore_index",
    "data",
)

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


def data_for_evaluation(config: dict, data_path) -> dict:
    """The ``data`` entry to score a saved model on.

    The data the model was trained on, as its config records it; for a
    weights file that does not record it, CamVid at ``data_path`` (360×480).
    """
    data = config.get("data")
    if data is not None:
        return data
    if data_path is None:
        raise UsageError(
            "this weights file does not record its training data; pass --data PATH"
        )
    return {"kind": "camvid", "root": str(data_path), "scale": 1.0}


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
    return _scores(model, x, transform).argmax(axis=1)


def _scores(model, x: np.ndarray, transform) -> np.ndarray:
    """The logits of a batch, shape (N, K, H, W), inference only (no cache)."""
    return model.forward(transform(x).astype(model.dtype, copy=False), keep_cache=False)


def _eval_batches(model, dataset, batch_size: int, progress: bool, desc: str):
    """Yield ``(x, y)`` batches of ``dataset`` in order, ``model`` in eval mode.

    The model's mode is restored when the loop ends; wrap the generator in
    :func:`contextlib.closing` so that it is restored at once when the loop
    is left by an error too. A tqdm bar on stderr counts the images when
    ``progress`` is on.
    """
    from tqdm import tqdm

    from .data import batches

    was_training = model.training
    model.eval()
    try:
        with tqdm(
            total=len(dataset),
            desc=desc,
            unit="img",
            file=sys.stderr,
            disable=None if progress else True,
            leave=False,
        ) as bar:
            for x, y in batches(dataset, batch_size, shuffle=False):
                yield x, y
                bar.update(len(x))
    finally:
        model.train(was_training)


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
    with closing(_eval_batches(model, dataset, batch_size, progress, desc)) as run:
        for i, (x, y) in enumerate(run):
            if spread is None:
                metrics.update(predict_labels(model, x, transform), y)
            else:
                # a seed per batch: the result does not depend on batching
                # order elsewhere, and each batch draws fresh masks
                res = mc_dropout(model, transform(x), mc_samples, seed=[seed, i])
                metrics.update(res.labels, y)
                spread.update(res, y)
    result = metrics.compute()
    result["class_names"] = list(dataset.class_names)
    if spread is not None:
        result["mc_samples"] = int(mc_samples)
        result["uncertainty"] = spread.compute()
    return result


# -- prior shift: undoing part of the class weighting -------------------------
def prior_shift(class_weights, tau: float) -> np.ndarray:
    """The change of the classifier's bias that undoes ``tau`` of the weighting.

    A softmax trained with class weights ``w`` (median frequency balancing)
    learns, at its optimum, scores whose softmax is proportional to
    ``w_c p(c | x)``: the weights act as a prior that favours rare classes.
    Adding ``-tau log w_c`` to class ``c``'s score removes a fraction ``tau``
    of that prior: ``tau = 0`` keeps the weighted decision (the paper's, which
    favours class-average accuracy C), ``tau = 1`` gives the decision of the
    unweighted posterior (which favours global accuracy G); values between
    trade one for the other, like training with weights ``w ** (1 - tau)``
    but without retraining. A class of weight 0 (never seen in training) is
    left alone.

    Parameters
    ----------
    class_weights : array-like of shape (K,), >= 0
    tau : float

    Returns
    -------
    ndarray of shape (K,), float64
    """
    w = np.asarray(class_weights, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(
            f"class_weights must be a 1-D array of finite weights >= 0, got {w!r}"
        )
    if not np.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau}")
    shift = np.zeros_like(w)
    seen = w > 0
    shift[seen] = -float(tau) * np.log(w[seen])
    return shift


def shift_class_priors(model, class_weights, tau: float, applied: float = 0.0):
    """Move the classifier's bias so that ``tau`` of the weighting is undone.

    Parameters
    ----------
    model : a segmentation model whose ``head`` is a convolution with a bias
    class_weights : array-like of shape (K,)
        The weights of the loss the model was trained with.
    tau : float
        The fraction to undo, counted from the trained model (see
        :func:`prior_shift`).
    applied : float
        The fraction already undone in ``model`` (a file written with a shift
        records it), so that ``tau`` is absolute: ``tau = 0`` restores the
        trained bias.

    Returns
    -------
    model
        The same model, its head's bias changed in place.
    """
    bias = _head_bias(model)
    if len(class_weights) != bias.shape[0]:
        raise ValueError(
            f"{len(class_weights)} class weights for a model of {bias.shape[0]} classes"
        )
    bias += prior_shift(class_weights, tau - applied).astype(bias.dtype)
    return model


def _head_bias(model) -> np.ndarray:
    head = getattr(model, "head", None)
    params = getattr(head, "params", None) or {}
    if "bias" not in params:
        raise UsageError(
            f"{getattr(model, 'name', type(model).__name__)} has no classifier "
            "with a bias after its decoder, so there is no prior to shift"
        )
    return params["bias"]


def evaluate_prior_shifts(
    model,
    dataset,
    transform,
    class_weights,
    taus,
    applied: float = 0.0,
    batch_size: int = 4,
    progress: bool = False,
) -> list[dict]:
    """Score the model for several prior shifts in one pass over ``dataset``.

    The network runs once per batch; each ``tau`` only adds its
    :func:`prior_shift` to the scores before the argmax. A model written with
    :func:`shift_class_priors` at one of these ``tau`` predicts the same
    labels up to float32 rounding (there the shift is added to the bias,
    before the sum over channels, not after it).

    Parameters
    ----------
    model, dataset, transform, batch_size, progress
        As :func:`evaluate_model`.
    class_weights : array-like of shape (K,)
    taus : sequence of float
    applied : float
        The shift already in ``model`` (see :func:`shift_class_priors`).

    Returns
    -------
    list of dict
        One :meth:`~npsegnet.metrics.SegmentationMetrics.compute` result per
        ``tau``, in order, each with ``tau`` and ``class_names`` added.
    """
    from .metrics import SegmentationMetrics

    taus = [float(t) for t in taus]
    _head_bias(model)  # a clear error before the pass, not after it
    shifts = [
        prior_shift(class_weights, t - applied).astype(model.dtype)[None, :, None, None]
        for t in taus
    ]
    metrics = [
        SegmentationMetrics(dataset.num_classes, dataset.ignore_index) for _ in taus
    ]
    desc = "prior shifts"
    with closing(_eval_batches(model, dataset, batch_size, progress, desc)) as run:
        for x, y in run:
            logits = _scores(model, x, transform)
            for shift, m in zip(shifts, metrics, strict=True):
                m.update((logits + shift).argmax(axis=1), y)
    results = []
    for t, m in zip(taus, metrics, strict=True):
        result = m.compute()
        result["tau"] = t
        result["class_names"] = list(dataset.class_names)
        results.append(result)
    return results


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
