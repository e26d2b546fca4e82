"""Setting a run up, one step at a time: what ``_Run`` is built from.

Each function resolves one part of a run from its :class:`TrainConfig` (and,
when resuming, its checkpoint): the config itself, the data, the model, the
input normalisation and class weights, the loss and the optimiser.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data import LRN_PARAMS, SYNTHETIC_SEEDS
from ..errors import UsageError
from .config import (
    DEFAULT_EPOCHS,
    RESUMABLE_OVERRIDES,
    SYNTHETIC_LR,
    TrainConfig,
    _check_config,
    _config_from_json,
    _default_lr,
    _model_kwargs,
    _with_data_defaults,
)

__all__ = [
    "class_weights",
    "initial_state",
    "data_spec",
    "input_normalization",
    "learning_rate",
    "make_loss",
    "make_optimizer",
    "remove_stale_temporaries",
    "resolve_config",
    "run_model",
]


def resolve_config(cfg: TrainConfig, out: Path):
    """The config the run goes on with, and its checkpoint when resuming.

    Refuses ``--resume`` with ``--overwrite``, a resume without a checkpoint
    and a fresh run over an existing one; removes the temporary files of a
    killed run. A resumed run takes its stored config, with only
    :data:`RESUMABLE_OVERRIDES` from ``cfg``.

    Returns
    -------
    cfg : TrainConfig
        Checked, with the number of epochs and the defaults that depend on
        the data (schedule, kernel size) filled in.
    ckpt : dict or None
        The checkpoint to resume from.
    """
    from ..checkpoint import load_checkpoint

    latest = out / "latest.npz"
    ckpt = None
    if cfg.resume and cfg.overwrite:
        raise UsageError(
            "--resume continues the run in --out and --overwrite starts it "
            "afresh: give one of them"
        )
    remove_stale_temporaries(out)
    if cfg.resume:
        if not latest.is_file():
            raise UsageError(
                f"nothing to resume: {latest} does not exist (train without "
                "--resume first, or pass the --out of the run to resume)"
            )
        ckpt = load_checkpoint(latest)
        stored = TrainConfig(**_config_from_json(ckpt["config"]["train"]))
        for name in RESUMABLE_OVERRIDES:
            if name != "epochs" or cfg.epochs is not None:
                setattr(stored, name, getattr(cfg, name))
        stored.resume, stored.out = True, str(out)
        cfg = stored
    elif latest.exists() and not cfg.overwrite:
        raise UsageError(
            f"{out} already holds a training run ({latest}); pass --resume "
            "to continue it, --overwrite to start afresh, or another --out"
        )
    if cfg.epochs is None:
        cfg = replace(cfg, epochs=DEFAULT_EPOCHS)
    cfg = _with_data_defaults(cfg)
    _check_config(cfg)
    return cfg, ckpt


def data_spec(cfg: TrainConfig) -> dict:
    """The ``data`` entry of the run's config (:func:`npsegnet.data.make_dataset`).

    Synthetic splits have fixed seeds (:data:`npsegnet.data.SYNTHETIC_SEEDS`).
    """
    if cfg.data is None:
        return {
            "kind": "synthetic",
            "num_images": cfg.num_images,
            "val_images": cfg.val_images,
            "image_size": list(cfg.image_size),
            "seeds": SYNTHETIC_SEEDS,
        }
    return {
        "kind": "camvid",
        "root": str(Path(cfg.data).resolve()),
        "scale": cfg.scale,
    }


def run_model(cfg: TrainConfig, ckpt, num_classes: int):
    """The model of the run (its stored arguments when resuming).

    Returns
    -------
    model : SegNetBasic or SegNet
    model_kwargs : dict
        JSON-ready constructor arguments, as stored in the config.
    """
    from ..layers import set_conv_algorithm
    from ..models import build_model

    if ckpt is not None:
        model_kwargs = ckpt["config"]["model_kwargs"]
    else:
        model_kwargs = _model_kwargs(cfg, num_classes)
    kw = dict(model_kwargs)
    if isinstance(kw.get("channels"), list):
        kw["channels"] = tuple(kw["channels"])
    model = build_model(cfg.model, **kw)
    set_conv_algorithm(model, cfg.conv_algorithm)
    return model, model_kwargs


def input_normalization(cfg: TrainConfig, ckpt, dataset) -> dict:
    """The run's input normalisation (:func:`npsegnet.data.make_transform` spec).

    ``"auto"`` is ``"meanstd"`` on the synthetic shapes (statistics over the
    training set) and ``"lrn"`` on CamVid; a resumed run keeps its own.
    """
    from ..data import compute_mean_std

    if ckpt is not None:
        return ckpt["config"]["normalization"]
    kind = cfg.normalization
    if kind == "auto":
        kind = "meanstd" if cfg.data is None else "lrn"
    if kind == "meanstd":
        mean, std = compute_mean_std(dataset)
        return {"kind": "meanstd", "mean": mean.tolist(), "std": std.tolist()}
    if kind == "lrn":
        return {"kind": "lrn", **LRN_PARAMS}
    return {"kind": "none"}


def class_weights(cfg: TrainConfig, ckpt, dataset) -> list | None:
    """Median-frequency class weights of the loss, or None without weighting.

    Refuses a training set without a single labelled pixel.
    """
    from ..data import median_frequency_weights

    if ckpt is not None:
        return ckpt["config"]["class_weights"]
    if not cfg.class_weighting:
        return None
    ds = dataset
    weights = median_frequency_weights(ds, ds.num_classes, ds.ignore_index)
    if not weights.any():
        raise UsageError(
            f"the training set ({len(ds)} images) holds no labelled "
            f"pixel: every label is {ds.ignore_index} (unlabelled), so "
            "there is nothing to learn; check the label files"
        )
    return weights.tolist()


def learning_rate(cfg: TrainConfig) -> float:
    """``--lr``, or the default of the data: the paper's on CamVid."""
    if cfg.lr is not None:
        return cfg.lr
    return SYNTHETIC_LR if cfg.data is None else _default_lr(cfg.model)


def make_loss(model, weights, ignore_index: int):
    """Softmax cross-entropy with the class ``weights`` in the model's dtype."""
    from ..layers import SoftmaxCrossEntropy

    weight = None if weights is None else np.asarray(weights)
    return SoftmaxCrossEntropy(
        weight=None if weight is None else weight.astype(model.dtype),
        ignore_index=ignore_index,
    )


def make_optimizer(model, lr: float, cfg: TrainConfig):
    """SGD with momentum, weight decay and Caffe's bias multipliers."""
    from ..optim import SGD, caffe_bias_keys

    return SGD(
        model.params,
        model.grads,
        lr=lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        bias_keys=caffe_bias_keys(model),
    )


def initial_state(path, model) -> dict:
    """Model state of a weights file or a checkpoint, checked against ``model``."""
    from ..checkpoint import is_checkpoint, load_checkpoint
    from ..models.weights import check_state_fits, read_weights

    if is_checkpoint(path):
        state = load_checkpoint(path)["model_state"]
    else:
        state = read_weights(path)[1]
    check_state_fits(model, state, f"--init-weights {path}")
    return state


def remove_stale_temporaries(out: Path) -> None:
    """Delete ``.<name>.npz.<hex>.tmp`` files left by a run that was killed.

    Checkpoints are written to such a temporary file and renamed; a SIGKILL
    between the two leaves it behind. Only files of exactly that pattern go.
    """
    import re

    if not out.is_dir():
        return
    pattern = re.compile(r"^\..+\.npz\.[0-9a-f]{12}\.tmp$")
    for path in out.iterdir():
        if pattern.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
