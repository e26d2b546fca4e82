"""Monte-Carlo dropout (Bayesian SegNet) and how good its uncertainty is.

Bayesian SegNet (Kendall, Badrinarayanan & Cipolla, arXiv 1511.02680) keeps
dropout on at test time and runs ``T`` stochastic forward passes: the mean of
their softmax outputs is the prediction, and their spread is the model's
uncertainty. :func:`mc_dropout` computes both.

How good is that uncertainty? Two measures beyond the paper:

* **Misclassification detection**: used as a score for "this pixel is
  wrong", does the uncertainty rank wrong pixels above right ones? The area
  under the ROC curve (AUROC) is the probability that a random wrong pixel
  scores higher than a random right one (ties count one half): 0.5 is no
  better than chance, 1 is a perfect separation.
* **Calibration**: among pixels predicted with confidence about ``c`` (the
  largest mean softmax), is a fraction about ``c`` right? The expected
  calibration error (ECE; Guo et al., ICML 2017) is the pixel-weighted mean
  gap ``|accuracy - confidence|`` over equal-width confidence bins.

:class:`UncertaintyMetrics` accumulates both over a data set in fixed memory
(histograms), as :class:`npsegnet.metrics.SegmentationMetrics` does for the
confusion matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MCResult",
    "UncertaintyMetrics",
    "auroc",
    "accuracy_vs_samples",
    "expected_calibration_error",
    "iter_samples",
    "mc_dropout",
    "predictive_entropy",
    "reliability_bins",
    "softmax",
]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax over ``axis`` (the class axis of ``(N, K, H, W)`` scores)."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def predictive_entropy(p: np.ndarray, axis: int = 1) -> np.ndarray:
    """``-sum_k p_k log p_k`` over ``axis`` (0 log 0 = 0), in nats.

    Parameters
    ----------
    p : ndarray of shape (N, K, H, W)
        Class probabilities.

    Returns
    -------
    ndarray of shape (N, H, W)
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


@dataclass
class MCResult:
    """What :func:`mc_dropout` returns.

    Attributes
    ----------
    mean : ndarray of shape (N, K, H, W)
        Mean softmax over the samples: the prediction's probabilities.
    variance : ndarray of shape (N, K, H, W)
        Per-class variance of the samples' softmax (population variance).
    entropy : ndarray of shape (N, H, W)
        Predictive entropy of ``mean``, in nats.
    labels : ndarray of shape (N, H, W), int64
        ``mean.argmax(axis=1)``.
    samples : int
        ``T``.
    """

    mean: np.ndarray
    variance: np.ndarray
    entropy: np.ndarray
    labels: np.ndarray
    samples: int


def _dropout_layers(model) -> list:
    from .layers import Dropout

    return [m for m in model.modules() if isinstance(m, Dropout)]


def mc_dropout(
    model,
    x: np.ndarray,
    samples: int,
    seed: int = 0,
    batch: int | None = None,
    shared_prefix: bool = True,
):
    """Monte-Carlo dropout: ``samples`` stochastic passes, mean and spread.

    Parameters
    ----------
    model : EncoderDecoder
        Any npsegnet model; its batch-norm layers run in evaluation mode (the
        model is put in ``eval()`` mode and left there), its dropout layers
        stay on. A model without dropout gives zero variance.
    x : ndarray of shape (N, C, H, W)
        The (normalised) input batch.
    samples : int
        ``T >= 1``.
    seed : int
        Seeds the dropout layers (layer ``i`` gets ``(seed, i)``): the same
        seed gives the same result.
    batch : int, optional
        Samples per forward pass: the input is tiled ``batch`` times along
        the batch axis and every copy draws its own masks (default: all
        ``samples`` at once when ``N * samples <= 8``, else as many as fit in
        eight images).
    shared_prefix : bool
        Run the deterministic layers before the first dropout once and share
        their output among the samples, when the model offers it
        (``forward_prefix``/``forward_suffix``, as every
        :class:`~npsegnet.models.EncoderDecoder`). The result is the same
        as with ``False`` (every sample through the whole network): the
        dropout layers draw the same masks, and the shared layers compute
        each image the same way whatever the batch.

    Returns
    -------
    MCResult

    Notes
    -----
    With dropout after encoder 3 (Bayesian SegNet-Basic), encoders 1-3 run
    once instead of ``samples`` times. They hold about a fifth of the
    network's arithmetic (21 % for SegNet-Basic, 30 % for the VGG16 model,
    counted in notebook 06): the decoders, decoder 1 at full resolution
    above all, must run for every sample.
    """
    total = None
    total_sq = None
    for p in iter_samples(model, x, samples, seed, batch, shared_prefix):
        s, q = p.sum(axis=0), (p * p).sum(axis=0)
        total = s if total is None else total + s
        total_sq = q if total_sq is None else total_sq + q
    mean = total / samples
    variance = np.maximum(total_sq / samples - mean * mean, 0.0)
    if not _dropout_layers(model):
        variance[...] = 0.0  # every pass was the same; rounding aside
    return MCResult(
        mean=mean,
        variance=variance,
        entropy=predictive_entropy(mean),
        labels=mean.argmax(axis=1),
        samples=int(samples),
    )


def iter_samples(model, x, samples: int, seed: int = 0, batch=None, shared_prefix=True):
    """The softmax outputs of ``samples`` stochastic passes, a chunk at a time.

    The arguments are those of :func:`mc_dropout`, which sums what this
    yields. Yields float64 arrays of shape ``(k, N, K, H, W)``, ``k`` samples
    each, ``samples`` in all, in the order the seeded dropout layers draw
    them (so any chunking gives the same samples).
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
        raise TypeError(f"samples must be an int, got {type(samples).__name__}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {x.shape}")
    N = x.shape[0]
    if batch is None:
        batch = max(1, min(samples, 8 // max(N, 1)))
    model.eval()
    layers = _dropout_layers(model)
    saved = [(layer.always_on, layer.rng) for layer in layers]
    # an int seed, or a sequence of them (e.g. (seed, batch index))
    entropy = [int(v) for v in np.atleast_1d(np.asarray(seed, dtype=np.int64))]
    for i, layer in enumerate(layers):
        layer.always_on = True
        layer.reseed([*entropy, i])
    try:
        done = 0
        x = x.astype(getattr(model, "dtype", x.dtype), copy=False)
        state = None
        if shared_prefix and hasattr(model, "forward_prefix"):
            state = model.forward_prefix(x)
        while done < samples:
            k = min(batch, samples - done)
            if state is not None:
                logits = model.forward_suffix(state, repeat=k)
            else:
                xs = np.concatenate([x] * k, axis=0) if k > 1 else x
                logits = model.forward(xs, keep_cache=False)
            yield softmax(logits.astype(np.float64)).reshape(k, N, *logits.shape[1:])
            done += k
    finally:
        for layer, (on, rng) in zip(layers, saved, strict=True):
            layer.always_on, layer.rng = on, rng


def accuracy_vs_samples(
    model, batches, num_classes: int, ignore_index=None, samples=(1, 2, 5, 10, 20, 50),
    seed: int = 0,
) -> dict:  # fmt: skip
    """G, C and mIoU of Monte-Carlo dropout after ``T`` samples, for each ``T``.

    The paper's curve (Bayesian SegNet, Fig. 4): the prediction of the mean
    of the first ``T`` samples, against weight averaging (one pass with
    dropout off, its inverted scaling standing in for the expectation).

    Parameters
    ----------
    model : EncoderDecoder
    batches : iterable of (x, y)
        Normalised inputs ``(N, C, H, W)`` and labels ``(N, H, W)``.
    num_classes, ignore_index : int
    samples : sequence of int
        The ``T`` to report (increasing); ``max(samples)`` passes are run once
        per batch and the running mean is scored at each ``T``.
    seed : int

    Returns
    -------
    dict
        ``samples``: the ``T``; ``mc``: ``{metric: [value per T]}``;
        ``weight_averaging``: ``{metric: value}``, for ``global_accuracy``,
        ``class_average_accuracy`` and ``mean_iou``.
    """
    from .metrics import SegmentationMetrics

    Ts = sorted(int(t) for t in samples)
    if not Ts or Ts[0] < 1:
        raise ValueError(f"samples must be positive ints, got {samples!r}")
    mc = {t: SegmentationMetrics(num_classes, ignore_index, boundary=False) for t in Ts}
    plain = SegmentationMetrics(num_classes, ignore_index, boundary=False)
    for x, y in batches:
        total, done = None, 0
        for chunk in iter_samples(model, x, Ts[-1], seed):
            for p in chunk:
                total = p if total is None else total + p
                done += 1
                if done in mc:
                    mc[done].update(total.argmax(axis=1), y)
        model.eval()
        logits = model.forward(np.asarray(x, model.dtype), keep_cache=False)
        plain.update(logits.argmax(axis=1), y)
    keys = ("global_accuracy", "class_average_accuracy", "mean_iou")
    results = {t: m.compute() for t, m in mc.items()}
    wa = plain.compute()
    return {
        "samples": Ts,
        "mc": {k: [results[t][k] for t in Ts] for k in keys},
        "weight_averaging": {k: wa[k] for k in keys},
    }


# -- measures of the uncertainty ------------------------------------------------
def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` as a detector of ``positive``.

    The Mann-Whitney statistic: the probability that a random positive scores
    higher than a random negative, ties counting one half. ``nan`` when
    either class is empty.

    Examples
    --------
    >>> auroc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    0.75
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"scores {s.shape} and positive {pos.shape} differ in size")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # average ranks (1-based) with ties sharing their mean rank
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    ranks = (starts + (counts + 1) / 2.0)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability_bins(confidence, correct, bins: int = 15):
    """Per equal-width confidence bin: pixel count, mean confidence, accuracy.

    Returns
    -------
    edges : ndarray of shape (bins + 1,)
    count : ndarray of shape (bins,), int64
    confidence : ndarray of shape (bins,)
        Mean confidence of the bin's pixels (nan for an empty bin).
    accuracy : ndarray of shape (bins,)
        Fraction of them that are right (nan for an empty bin).
    """
    c = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=c, minlength=bins)
    right = np.bincount(index, weights=ok, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return edges, count, conf_sum / count, right / count


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """``sum_b (n_b / n) |accuracy_b - confidence_b|`` over confidence bins.

    Examples
    --------
    >>> expected_calibration_error(np.array([0.9, 0.9]), np.array([True, False]))
    0.4
    """
    _, count, conf, acc = reliability_bins(confidence, correct, bins)
    n = count.sum()
    if n == 0:
        return math.nan
    used = count > 0
    return float(round(np.sum(count[used] * np.abs(acc[used] - conf[used])) / n, 12))


class UncertaintyMetrics:
    """Accumulate AUROC and calibration over a data set in fixed memory.

    Scores go into histograms of ``resolution`` bins (entropy over
    ``[0, log K]``, variance over ``[0, 1/4]``, the largest a probability's
    variance can be), so AUROC is exact up to ties within a bin (counted one
    half); at 4096 bins that moves it by well under 0.001.

    Parameters
    ----------
    num_classes : int
    ignore_index : int, optional
    bins : int
        Confidence bins of the reliability diagram and the ECE.
    resolution : int
        Histogram bins of the AUROC scores.
    """

    def __init__(self, num_classes: int, ignore_index=None, bins: int = 15,
                 resolution: int = 4096):  # fmt: skip
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.bins = int(bins)
        self.resolution = int(resolution)
        self.ranges = {"entropy": math.log(self.num_classes), "variance": 0.25}
        self.hist = {
            key: np.zeros((2, self.resolution), np.int64) for key in self.ranges
        }  # row 0: right pixels, row 1: wrong pixels
        self.count = np.zeros(self.bins, np.int64)
        self.conf_sum = np.zeros(self.bins)
        self.right = np.zeros(self.bins)

    def update(self, result: MCResult, target: np.ndarray) -> None:
        """Add a batch: an :class:`MCResult` and its ``(N, H, W)`` labels."""
        target = np.asarray(target)
        if target.shape != result.labels.shape:
            raise ValueError(
                f"target {target.shape} and the result's labels "
                f"{result.labels.shape} differ in shape"
            )
        valid = (
            np.ones(target.shape, bool)
            if self.ignore_index is None
            else target != self.ignore_index
        )
        wrong = (result.labels != target)[valid]
        scores = {
            "entropy": result.entropy[valid],
            "variance": result.variance.mean(axis=1)[valid],
        }
        for key, s in scores.items():
            top = self.ranges[key]
            idx = np.clip((s / top * self.resolution).astype(np.int64), 0,
                          self.resolution - 1)  # fmt: skip
            self.hist[key] += np.stack(
                [np.bincount(idx[~wrong], minlength=self.resolution),
                 np.bincount(idx[wrong], minlength=self.resolution)]
            )  # fmt: skip
        conf = result.mean.max(axis=1)[valid]
        edges = np.linspace(0.0, 1.0, self.bins + 1)
        b = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, self.bins - 1)
        self.count += np.bincount(b, minlength=self.bins)
        self.conf_sum += np.bincount(b, weights=conf, minlength=self.bins)
        self.right += np.bincount(b, weights=~wrong, minlength=self.bins)

    def _auroc(self, key: str) -> float:
        right, wrong = self.hist[key]
        n_neg, n_pos = right.sum(), wrong.sum()
        if n_pos == 0 or n_neg == 0:
            return math.nan
        below = np.cumsum(right) - right  # right pixels in lower bins
        return float(np.sum(wrong * (below + 0.5 * right)) / (n_pos * n_neg))

    def compute(self) -> dict:
        """``auroc_entropy``, ``auroc_variance``, ``ece`` and the reliability bins."""
        n = self.count.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = self.conf_sum / self.count
            acc = self.right / self.count
        used = self.count > 0
        ece = (
            float(np.sum(self.count[used] * np.abs(acc[used] - conf[used])) / n)
            if n
            else math.nan
        )

        def listed(a):
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "auroc_entropy": self._auroc("entropy"),
            "auroc_variance": self._auroc("variance"),
            "ece": ece,
            "reliability": {
                "edges": np.linspace(0, 1, self.bins + 1).tolist(),
                "count": self.count.tolist(),
                "confidence": listed(conf),
                "accuracy": listed(acc),
            },
        }
