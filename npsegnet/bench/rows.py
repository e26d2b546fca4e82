"""The rows of ``npsegnet bench``: what runs, on which shapes, how much work.

A row's work is counted analytically (FLOPs of its convolutions, or the bytes
an ideal implementation moves), so that a time reads as a rate and a rate as
a fraction of the machine's probed peak. The whole-model rows measure the
models :func:`npsegnet.models.build_model` builds, and count the FLOPs of the
convolutions those models hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# SegNet-Tutorial's CamVid class weights (median frequency balancing) and the
# "unlabelled" class, ignored by the loss: the loss rows use them as training does.
CAMVID_WEIGHTS = (
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826,
    9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
)  # fmt: skip
IGNORE_INDEX = 11
NUM_CLASSES = 11

FLOAT_BYTES = 4  # float32 activations
INDEX_BYTES = 8  # int64 pooling indices and loss targets


# ---------------------------------------------------------------------------
# Row specifications
# ---------------------------------------------------------------------------
@dataclass
class RowSpec:
    """One row of the benchmark: what runs, on which shape, and its work.

    ``metric`` is ``"flop"`` (``work`` in floating-point operations, compared
    with the SGEMM probe), ``"byte"`` (``work`` in bytes read + written,
    compared with the copy probe) or ``"time"`` (no rate: startup rows).
    """

    name: str
    group: str  # "layer", "model" or "startup"
    shape: tuple
    metric: str
    work: float
    params: dict = field(default_factory=dict)


@dataclass
class Sizes:
    """The shapes of one benchmark size (full, quick or tiny)."""

    conv7: tuple
    conv3: tuple
    pool: tuple
    loss: tuple
    basic_train: tuple  # ((N, H, W), ...) one training row per entry
    basic_infer: tuple
    vgg_train: tuple | None
    startup: tuple  # (N, C, H, W) of the first forward
    sgemm_n: int
    copy_mb: int


SIZES = {
    "full": Sizes(
        conv7=(1, 64, 180, 240),
        conv3=(1, 64, 360, 480),
        pool=(4, 64, 360, 480),
        loss=(4, NUM_CLASSES, 360, 480),
        basic_train=((4, 360, 480), (4, 180, 240)),
        basic_infer=(4, 360, 480),
        vgg_train=(1, 360, 480),
        startup=(1, 3, 360, 480),
        sgemm_n=4096,
        copy_mb=256,
    ),
    "quick": Sizes(
        conv7=(1, 64, 90, 120),
        conv3=(1, 64, 180, 240),
        pool=(2, 64, 180, 240),
        loss=(2, NUM_CLASSES, 180, 240),
        basic_train=((1, 180, 240),),
        basic_infer=(1, 180, 240),
        vgg_train=None,
        startup=(1, 3, 360, 480),
        sgemm_n=2048,
        copy_mb=128,
    ),
    "tiny": Sizes(
        conv7=(1, 4, 10, 12),
        conv3=(1, 4, 10, 12),
        pool=(2, 3, 10, 12),
        loss=(2, NUM_CLASSES, 10, 12),
        basic_train=((1, 32, 32),),
        basic_infer=(1, 32, 32),
        vgg_train=(1, 32, 32),
        startup=(1, 3, 32, 32),
        sgemm_n=128,
        copy_mb=4,
    ),
}


def conv_flops(n, c_in, c_out, k, h_out, w_out) -> float:
    """Forward FLOPs of a convolution: 2 x multiply-accumulates (bias ignored)."""
    return 2.0 * n * c_out * h_out * w_out * c_in * k * k


# ---------------------------------------------------------------------------
# Whole models: those of npsegnet.models, by registry name
# ---------------------------------------------------------------------------
#: Constructor arguments of the narrow models of the tests' tiny size (same
#: layers, a few channels per stage).
NARROW = {"segnet-basic": {"channels": 4}, "segnet": {"channels": (2, 2, 2, 2, 2)}}


def model_kwargs(name: str, narrow: bool = False) -> dict:
    """Arguments of :func:`npsegnet.models.build_model` for a row's model."""
    return {"num_classes": NUM_CLASSES, **(NARROW[name] if narrow else {})}


def model_convs(model, h: int, w: int) -> list[tuple]:
    """The convolutions of an encoder-decoder ``model`` at input ``h x w``.

    Walks the model's own stages: an encoder stage's convolutions run at its
    input size, its max-pool (kernel, stride and rounding as built) gives the
    next size, a decoder stage runs at the size of its mirrored encoder, and
    the head at the decoder's output size.

    Parameters
    ----------
    model : SegNetBasic or SegNet
    h, w : int
        Input size.

    Returns
    -------
    list of tuple
        ``(c_in, c_out, k, h_out, w_out)`` per convolution, in forward order
        (``c_in`` per group for a grouped convolution).
    """
    from npsegnet._checks import pool_output_size
    from npsegnet.layers import Conv2D, MaxPool2D

    def convs(module, h, w):
        found = []
        for m in module.modules():
            if isinstance(m, Conv2D):
                h_out = h + 2 * m.padding - m.kernel_size + 1
                w_out = w + 2 * m.padding - m.kernel_size + 1
                c_in = m.in_channels // getattr(m, "groups", 1)
                found.append((c_in, m.out_channels, m.kernel_size, h_out, w_out))
        return found

    out, sizes = [], []
    for stage in model.encoders:
        out += convs(stage, h, w)
        sizes.append((h, w))
        pool = next(m for m in stage.modules() if isinstance(m, MaxPool2D))
        (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
        h = pool_output_size(h, kh, sh, pool.ceil_mode)
        w = pool_output_size(w, kw, sw, pool.ceil_mode)
    for stage, (h, w) in zip(model.decoders, reversed(sizes), strict=True):
        out += convs(stage, h, w)
    if model.head is not None:
        out += convs(model.head, *sizes[0])
    return out


@lru_cache(maxsize=32)
def _forward_convs(model: str, narrow: bool, h: int, w: int) -> tuple:
    from npsegnet.models import build_model

    return tuple(model_convs(build_model(model, **model_kwargs(model, narrow)), h, w))


def model_forward_flops(model: str, n, h, w, narrow=False) -> float:
    """Forward convolution FLOPs of ``model`` on an ``n x 3 x h x w`` batch.

    Parameters
    ----------
    model : {"segnet-basic", "segnet"}
        Registry name (:data:`npsegnet.models.MODELS`).
    n, h, w : int
        Batch size and input size.
    narrow : bool
        The narrow model of the tiny size (:data:`NARROW`).
    """
    convs = _forward_convs(model, bool(narrow), int(h), int(w))
    return sum(conv_flops(n, ci, co, k, ho, wo) for ci, co, k, ho, wo in convs)


def build_rows(size: str = "full", cold_start: bool = True) -> list[RowSpec]:
    """Every row of the benchmark at ``size`` (``"full"``, ``"quick"``, ``"tiny"``).

    The work of each row is counted analytically:

    * a convolution's forward is ``2 N C_out H_out W_out C_in KH KW`` FLOPs and
      its backward (input and weight gradients) twice that; a training step is
      three times the forward convolutions, an inference step once;
    * a memory-bound row counts the bytes an ideal implementation must move
      to and from memory (float32 maps, int64 indices): pooling forward reads
      ``x`` and writes ``y`` and the indices; batch-norm, which cannot finish
      its statistics before normalising, reads ``x`` twice and writes ``y``
      (backward: two reads for the reductions, then ``dout`` and ``x`` again
      and a write of ``dx``); ReLU backward reads ``dout`` and ``x`` and
      writes ``dx``; the loss reads logits and targets and writes ``dlogits``.

    The models are those :func:`npsegnet.models.build_model` builds, by their
    registry names; their convolutions are read off the built model
    (:func:`model_convs`). The ``"tiny"`` size (for the tests) runs narrow
    models (a few channels per stage) and counts their own FLOPs.
    """
    sz = SIZES[size]
    f, ib = FLOAT_BYTES, INDEX_BYTES
    narrow = size == "tiny"  # narrow models: the tests check machinery, not speed
    rows = []
    for name, shape, k in (("conv7x7", sz.conv7, 7), ("conv3x3", sz.conv3, 3)):
        n, c, h, w = shape
        fwd = conv_flops(n, c, c, k, h, w)
        p = {"kernel": k, "channels": c}
        rows.append(RowSpec(f"{name}.fwd", "layer", shape, "flop", fwd, p))
        rows.append(RowSpec(f"{name}.bwd", "layer", shape, "flop", 2 * fwd, p))
        if k >= 5:
            # the rows above run Conv2D's "auto" choice (FFT for 7x7 64->64);
            # these time the GEMM path on the same shape, for the ratio
            g = {**p, "algorithm": "gemm"}
            rows.append(RowSpec(f"{name}.gemm.fwd", "layer", shape, "flop", fwd, g))
            rows.append(RowSpec(f"{name}.gemm.bwd", "layer", shape, "flop", 2 * fwd, g))
    n, c, h, w = sz.pool
    full = n * c * h * w
    half = n * c * (h // 2) * (w // 2)
    shape = sz.pool
    rows += [
        RowSpec("maxpool.fwd", "layer", shape, "byte", full * f + half * (f + ib)),
        RowSpec("maxpool.bwd", "layer", shape, "byte", half * (f + ib) + full * f),
        RowSpec("maxunpool.fwd", "layer", shape, "byte", half * (f + ib) + full * f),
        # the gather of unpool backward touches nearly every cache line of dout
        RowSpec("maxunpool.bwd", "layer", shape, "byte", full * f + half * (ib + f)),
        RowSpec("batchnorm.fwd", "layer", shape, "byte", 3 * full * f),
        RowSpec("batchnorm.bwd", "layer", shape, "byte", 5 * full * f),
        RowSpec("relu.fwd", "layer", shape, "byte", 2 * full * f),
        RowSpec("relu.bwd", "layer", shape, "byte", 3 * full * f),
    ]
    n, k, h, w = sz.loss
    rows.append(
        RowSpec(
            "loss.fwd+bwd",
            "layer",
            sz.loss,
            "byte",
            2 * n * k * h * w * f + n * h * w * ib,
        )
    )
    for n, h, w in sz.basic_train:
        rows.append(
            RowSpec(
                f"segnet-basic.train.{h}x{w}.b{n}",
                "model",
                (n, 3, h, w),
                "flop",
                3 * model_forward_flops("segnet-basic", n, h, w, narrow),
                {"model": "segnet-basic", "mode": "train", "narrow": narrow},
            )
        )
    n, h, w = sz.basic_infer
    rows.append(
        RowSpec(
            f"segnet-basic.infer.{h}x{w}.b{n}",
            "model",
            (n, 3, h, w),
            "flop",
            model_forward_flops("segnet-basic", n, h, w, narrow),
            {"model": "segnet-basic", "mode": "infer", "narrow": narrow},
        )
    )
    if sz.vgg_train is not None:
        n, h, w = sz.vgg_train
        rows.append(
            RowSpec(
                f"segnet.train.{h}x{w}.b{n}",
                "model",
                (n, 3, h, w),
                "flop",
                3 * model_forward_flops("segnet", n, h, w, narrow),
                {"model": "segnet", "mode": "train", "narrow": narrow},
            )
        )
    if cold_start:
        rows.append(RowSpec("startup.cold", "startup", sz.startup, "time", 0.0))
    rows.append(RowSpec("startup.warm", "startup", sz.startup, "time", 0.0))
    return rows


def select_rows(rows: list[RowSpec], pattern: str | None) -> list[RowSpec]:
    """Rows whose name matches the regular expression ``pattern`` (all if None)."""
    if not pattern:
        return list(rows)
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        msg = f"--only: not a regular expression: {pattern!r} ({exc})"
        raise ValueError(msg) from None
    return [r for r in rows if rx.search(r.name)]
