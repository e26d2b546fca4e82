"""``npsegnet bench``: npsegnet and PyTorch timed side by side, in one run.

Every row is measured for both frameworks with the same shapes, the same
thread count and the same protocol (warm-up, then the median of ``--repeat``
runs), next to two probes of what the machine can do at best, so that a time
reads as a fraction of the peak:

* **SGEMM probe**: ``np.matmul`` of two 4096 x 4096 float32 matrices, the
  rate (GFLOP/s) that a compute-bound row (convolution, training step) is
  compared with;
* **copy probe**: a large float32 array copied by ``--threads`` threads, the
  bandwidth (GB/s, bytes read + written) that a memory-bound row (pooling,
  unpooling, batch-norm, ReLU, loss) is compared with.

Rows: each layer's forward and backward, the SegNet-Basic training step and
inference, the SegNet (VGG16) training step, and the time to first result of a
new process, cold (empty Numba cache) and warm. The goals of issue 5 are
checked at the end (pass / FAIL / n/a).

Isolation. The command itself imports neither NumPy nor PyTorch for its
measurements: every measurement runs in a child process
(``python -m npsegnet.bench --worker TASK``) started with
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` set to ``--threads`` before the interpreter starts, which
is the only reliable way to size OpenBLAS's pool (it is fixed when NumPy is
imported). Each whole-model row runs in a fresh process per framework, so its
peak resident memory (``VmHWM``) belongs to that model alone, and npsegnet's
layer rows never share a process with PyTorch's OpenMP threads. The
``--in-process`` mode (used by the tests) sets the thread counts at run time
instead: ``numba.set_num_threads``, ``torch.set_num_threads`` and OpenBLAS's
own ``openblas_set_num_threads`` found by ``ctypes`` in the loaded library.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

RESULT_MARK = "NPSEGNET-BENCH-RESULT "
SCHEMA = "npsegnet-bench/1"

# SegNet-Tutorial's CamVid class weights (median frequency balancing) and the
# "unlabelled" class, ignored by the loss: the loss rows use them as training does.
CAMVID_WEIGHTS = (
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826,
    9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
)  # fmt: skip
IGNORE_INDEX = 11
NUM_CLASSES = 11

# Optimiser settings of the training-step rows (paper §3.2 momentum and weight
# decay). The learning rate is small so that repeated steps on random data stay
# finite: a diverging run would time NaN arithmetic, not the network.
SGD_LR = 1e-3
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 5e-4

FLOAT_BYTES = 4  # float32 activations
INDEX_BYTES = 8  # int64 pooling indices and loss targets

# The goals of issue 5.
GOAL_TRAIN_TIME_RATIO = 0.8
GOAL_TRAIN_MEMORY_RATIO = 1.0
GOAL_CONV_PCT_SGEMM = 80.0
GOAL_MEMBOUND_PCT_COPY = 50.0
GOAL_VGG_TIME_RATIO = 1.0
GOAL_COLD_START_S = 10.0
GOAL_WARM_START_S = 2.0


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


def pool_out(size: int, ceil_mode: bool) -> int:
    """Output length of a 2 x 2, stride-2 max-pool along one axis."""
    return -(-size // 2) if ceil_mode else size // 2


def segnet_basic_convs(
    h, w, in_channels=3, num_classes=NUM_CLASSES, channels=64, ceil_mode=False
):
    """The convolutions of SegNet-Basic at input ``h x w``.

    Returns
    -------
    list of tuple
        ``(c_in, c_out, k, h_out, w_out)`` per convolution, in forward order.
    """
    convs, sizes = [], []
    c_in = in_channels
    for _ in range(4):
        convs.append((c_in, channels, 7, h, w))
        sizes.append((h, w))
        h, w = pool_out(h, ceil_mode), pool_out(w, ceil_mode)
        c_in = channels
    for h, w in reversed(sizes):
        convs.append((channels, channels, 7, h, w))
    h, w = sizes[0]
    convs.append((channels, num_classes, 1, h, w))
    return convs


VGG16_CHANNELS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)


def vgg_plan(in_channels=3, num_classes=NUM_CLASSES, channels=VGG16_CHANNELS):
    """The (c_in, c_out) of every 3 x 3 convolution of SegNet, stage by stage.

    Returns
    -------
    encoder : list of list of tuple
        Stage 1 first; VGG16's 13 convolutions.
    decoder : list of list of tuple
        Stage 5 first (the order data flows); decoder stage ``k`` mirrors
        encoder stage ``k`` in reverse, and the very last convolution maps to
        ``num_classes``.
    """
    encoder, c_in = [], in_channels
    for c_out, depth in zip(channels, VGG16_DEPTHS, strict=True):
        encoder.append([(c_in if j == 0 else c_out, c_out) for j in range(depth)])
        c_in = c_out
    decoder = [[(b, a) for a, b in reversed(stage)] for stage in reversed(encoder)]
    decoder[-1][-1] = (decoder[-1][-1][0], num_classes)
    return encoder, decoder


def segnet_vgg_convs(
    h,
    w,
    in_channels=3,
    num_classes=NUM_CLASSES,
    channels=VGG16_CHANNELS,
    ceil_mode=False,
):
    """The 3 x 3 convolutions of SegNet (VGG16) at input ``h x w``.

    Returns
    -------
    list of tuple
        ``(c_in, c_out, 3, h_out, w_out)`` per convolution, in forward order.
    """
    encoder, decoder = vgg_plan(in_channels, num_classes, channels)
    convs, sizes = [], []
    for stage in encoder:
        convs += [(a, b, 3, h, w) for a, b in stage]
        sizes.append((h, w))
        h, w = pool_out(h, ceil_mode), pool_out(w, ceil_mode)
    for stage, (h, w) in zip(decoder, reversed(sizes), strict=True):
        convs += [(a, b, 3, h, w) for a, b in stage]
    return convs


# Widths of the narrow models of the tests' tiny size (same layers, few channels).
NARROW_BASIC = 4
NARROW_VGG = (2, 2, 2, 2, 2)


def model_forward_flops(model: str, n, h, w, narrow=False, ceil_mode=False) -> float:
    """Forward convolution FLOPs of ``model`` on an ``n x 3 x h x w`` batch."""
    if model == "segnet_basic":
        width = NARROW_BASIC if narrow else 64
        convs = segnet_basic_convs(h, w, channels=width, ceil_mode=ceil_mode)
    else:
        width = NARROW_VGG if narrow else VGG16_CHANNELS
        convs = segnet_vgg_convs(h, w, channels=width, ceil_mode=ceil_mode)
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

    The ``"tiny"`` size (for the tests) runs narrow models (a few channels
    per stage) and counts their own FLOPs.
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
                f"segnet_basic.train.{h}x{w}.b{n}",
                "model",
                (n, 3, h, w),
                "flop",
                3 * model_forward_flops("segnet_basic", n, h, w, narrow),
                {"model": "segnet_basic", "mode": "train", "narrow": narrow},
            )
        )
    n, h, w = sz.basic_infer
    rows.append(
        RowSpec(
            f"segnet_basic.infer.{h}x{w}.b{n}",
            "model",
            (n, 3, h, w),
            "flop",
            model_forward_flops("segnet_basic", n, h, w, narrow),
            {"model": "segnet_basic", "mode": "infer", "narrow": narrow},
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


# ---------------------------------------------------------------------------
# Threads, memory, timing (used inside the measuring processes)
# ---------------------------------------------------------------------------
def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that size every thread pool before it starts."""
    t = str(threads)
    return {
        "OPENBLAS_NUM_THREADS": t,
        "OMP_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
        "NUMBA_NUM_THREADS": t,
    }


def _openblas_libs():
    """``ctypes`` handles of the OpenBLAS libraries loaded in this process."""
    import ctypes

    libs = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1]
                for line in fh
                if "openblas" in line.lower() and ".so" in line.split()[-1]
            }
    except OSError:
        return libs
    for path in sorted(paths):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


# OpenBLAS's exported names differ with its build: plain, 64-bit-integer
# (suffix 64_), and the scipy-openblas wheels NumPy ships (prefix scipy_).
_OPENBLAS_PREFIXES = ("openblas", "scipy_openblas")
_OPENBLAS_SUFFIXES = ("", "64_")


def _openblas_call(name: str, *args):
    """Call ``openblas_<name>`` in every loaded OpenBLAS; return the results."""
    out = []
    for lib in _openblas_libs():
        for prefix in _OPENBLAS_PREFIXES:
            for suffix in _OPENBLAS_SUFFIXES:
                fn = getattr(lib, f"{prefix}_{name}{suffix}", None)
                if fn is not None:
                    if name.startswith("get_config") or name.startswith("get_corename"):
                        import ctypes

                        fn.restype = ctypes.c_char_p
                    out.append(fn(*args))
    return out


def set_threads(threads: int, torch_module=None) -> dict:
    """Set every thread pool of this process to ``threads``; report what was set.

    NumPy's OpenBLAS is sized through its own ``openblas_set_num_threads``
    (found with ``ctypes``, as threadpoolctl does), Numba with
    ``numba.set_num_threads`` (at most ``NUMBA_NUM_THREADS``, fixed at start)
    and PyTorch with ``torch.set_num_threads`` when ``torch_module`` is given.
    """
    import ctypes

    report = {"requested": threads}
    _openblas_call("set_num_threads", ctypes.c_int(threads))
    got = _openblas_call("get_num_threads")
    report["openblas"] = got[0] if got else None
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        report["numba"] = numba.get_num_threads()
    if torch_module is not None:
        torch_module.set_num_threads(threads)
        report["torch"] = torch_module.get_num_threads()
    return report


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_it(fn, setup=None, warmup: int = 1, repeat: int = 5) -> list[float]:
    """Run ``setup(); fn()`` ``warmup`` times untimed, then ``repeat`` timed runs.

    Only ``fn`` is timed; ``setup`` prepares what it consumes (for example a
    forward pass whose cache a backward pass reads). Returns the ``repeat``
    wall-clock times in seconds.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict:
    """Median, minimum and all times (seconds) of one measurement."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": [float(t) for t in times],
    }


# ---------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------
def probe_sgemm(n: int = 4096, repeat: int = 3) -> dict:
    """Rate of ``np.matmul`` on ``n x n`` float32 matrices (GFLOP/s)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    times = time_it(lambda: np.matmul(a, b, out=c), warmup=1, repeat=repeat)
    flops = 2.0 * n**3
    return {
        "n": n,
        "flops": flops,
        **summarize(times),
        "gflops": flops / min(times) / 1e9,
    }


def probe_torch_sgemm(torch, n: int = 4096, repeat: int = 3) -> dict:
    """Rate of ``torch.mm`` on ``n x n`` float32 matrices, for comparison."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    times = time_it(lambda: torch.mm(a, b, out=c), warmup=1, repeat=repeat)
    return {"n": n, **summarize(times), "gflops": 2.0 * n**3 / min(times) / 1e9}


def probe_copy(megabytes: int = 256, threads: int = 2, repeat: int = 5) -> dict:
    """Memory-copy bandwidth (GB/s, bytes read + written) of one and ``threads``.

    The threaded copy splits the array into ``threads`` contiguous chunks that
    ``np.copyto`` copies concurrently (it releases the GIL). The array is far
    larger than the last-level cache, so the copy runs from memory.
    """
    import numpy as np

    count = megabytes * 2**20 // 4
    src = np.ones(count, dtype=np.float32)
    dst = np.zeros_like(src)
    moved = 2.0 * src.nbytes
    single = time_it(lambda: np.copyto(dst, src), warmup=1, repeat=repeat)
    bounds = np.linspace(0, count, threads + 1).astype(np.int64)
    chunks = [
        (dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def threaded():
            list(pool.map(lambda pair: np.copyto(*pair), chunks))

        multi = time_it(threaded, warmup=1, repeat=repeat)
    gbps_single = moved / min(single) / 1e9
    gbps_multi = moved / min(multi) / 1e9
    return {
        "bytes": moved,
        "threads": threads,
        "single_thread": {**summarize(single), "gbps": gbps_single},
        "threaded": {**summarize(multi), "gbps": gbps_multi},
        "gbps": max(gbps_single, gbps_multi),
    }


# ---------------------------------------------------------------------------
# PyTorch twins of the models (same architecture as npsegnet.models)
# ---------------------------------------------------------------------------
def torch_segnet_basic(
    torch, in_channels=3, num_classes=NUM_CLASSES, channels=64, ceil_mode=False
):
    """SegNet-Basic from ``torch.nn``: the architecture of npsegnet's model.

    Four encoders (conv 7x7 64, batch-norm, ReLU, max-pool 2x2 with indices),
    four decoders (unpool with the mirrored indices to the pre-pool size, conv
    7x7 64, batch-norm), and a 1x1 classifier. Like
    :class:`npsegnet.models.segnet_basic.SegNetBasic`, it has no input
    normalisation layer and pools in floor mode.
    """
    nn = torch.nn

    class SegNetBasic(nn.Module):
        def __init__(self):
            super().__init__()
            ch = channels
            self.enc = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(c, ch, 7, padding=3), nn.BatchNorm2d(ch), nn.ReLU()
                )
                for c in (in_channels, ch, ch, ch)
            )
            self.dec = nn.ModuleList(
                nn.Sequential(nn.Conv2d(ch, ch, 7, padding=3), nn.BatchNorm2d(ch))
                for _ in range(4)
            )
            self.pool = nn.MaxPool2d(2, 2, ceil_mode=ceil_mode, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2, 2)
            self.classifier = nn.Conv2d(ch, num_classes, 1)

        def forward(self, x):
            stack = []
            for enc in self.enc:
                x = enc(x)
                size = x.shape[-2:]
                x, idx = self.pool(x)
                stack.append((idx, size))
            for dec in self.dec:
                idx, size = stack.pop()
                x = dec(self.unpool(x, idx, output_size=size))
            return self.classifier(x)

    return SegNetBasic()


def torch_segnet(
    torch,
    in_channels=3,
    num_classes=NUM_CLASSES,
    channels=VGG16_CHANNELS,
    ceil_mode=False,
):
    """SegNet (VGG16 encoder, mirrored decoder) from ``torch.nn``.

    Every 3x3 convolution is followed by batch-norm and ReLU except the last
    one (64 -> classes), which feeds the loss.
    """
    nn = torch.nn

    def block(c_in, c_out, last=False):
        conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        return conv if last else nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())

    class SegNet(nn.Module):
        def __init__(self):
            super().__init__()
            encoder, decoder = vgg_plan(in_channels, num_classes, channels)
            enc = [nn.Sequential(*(block(a, b) for a, b in stage)) for stage in encoder]
            dec = [
                nn.Sequential(
                    *(
                        block(a, b, last=s == 4 and i == len(stage) - 1)
                        for i, (a, b) in enumerate(stage)
                    )
                )
                for s, stage in enumerate(decoder)
            ]
            self.enc = nn.ModuleList(enc)
            self.dec = nn.ModuleList(dec)
            self.pool = nn.MaxPool2d(2, 2, ceil_mode=ceil_mode, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2, 2)

        def forward(self, x):
            stack = []
            for enc in self.enc:
                x = enc(x)
                size = x.shape[-2:]
                x, idx = self.pool(x)
                stack.append((idx, size))
            for dec in self.dec:
                idx, size = stack.pop()
                x = dec(self.unpool(x, idx, output_size=size))
            return x

    return SegNet()


# ---------------------------------------------------------------------------
# Layer cases: (forward, backward-setup, backward) callables per framework
# ---------------------------------------------------------------------------
@dataclass
class Case:
    """The callables of one layer: ``fwd()``, and ``bwd()`` after ``bwd_setup()``.

    A case with only ``fwd`` (the loss) times forward and backward together.
    """

    fwd: object
    bwd: object = None
    bwd_setup: object = None


def _layer_kind(name: str) -> str:
    return name.split(".")[0]


def _npsegnet_case(kind: str, spec: RowSpec, rng) -> Case:
    """npsegnet's layer ``kind`` on the row's shape, float32, training mode."""
    import numpy as np

    import npsegnet.layers as L

    shape = spec.shape
    f32 = np.float32
    if kind in ("conv7x7", "conv3x3"):
        n, c, h, w = shape
        k = spec.params["kernel"]
        layer = L.Conv2D(c, c, k, padding=k // 2, bias=True, seed=0)
        layer.need_dx = True  # a layer row times the full backward: dx and dw
        x = rng.standard_normal(shape, dtype=f32)
        dout = rng.standard_normal(layer.forward(x).shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "maxpool":
        layer = L.MaxPool2D(kernel_size=2, stride=2)
        x = rng.standard_normal(shape, dtype=f32)
        y, _ = layer.forward(x)
        dout = rng.standard_normal(y.shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "maxunpool":
        x = rng.standard_normal(shape, dtype=f32)
        y, idx = L.MaxPool2D(kernel_size=2, stride=2).forward(x)
        del x
        size = (shape[2], shape[3])
        layer = L.MaxUnpool2D(kernel_size=2, stride=2)
        dout = rng.standard_normal(shape, dtype=f32)
        return Case(
            lambda: layer.forward(y, idx, output_size=size),
            lambda: layer.backward(dout),
            lambda: layer.forward(y, idx, output_size=size),
        )
    if kind == "batchnorm":
        layer = L.BatchNorm2D(shape[1])
        layer.train()
        x = rng.standard_normal(shape, dtype=f32)
        dout = rng.standard_normal(shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "relu":
        layer = L.ReLU()
        x = rng.standard_normal(shape, dtype=f32)
        dout = rng.standard_normal(shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "loss":
        n, k, h, w = shape
        loss = L.SoftmaxCrossEntropy(
            weight=np.asarray(CAMVID_WEIGHTS, dtype=f32), ignore_index=IGNORE_INDEX
        )
        logits = rng.standard_normal(shape, dtype=f32)
        targets = rng.integers(0, NUM_CLASSES + 1, size=(n, h, w))

        def fwd_bwd():
            loss.forward(logits, targets)
            return loss.backward()

        return Case(fwd_bwd)
    raise ValueError(f"unknown layer row {spec.name!r}")


def _torch_case(kind: str, spec: RowSpec, rng, torch) -> Case:
    """PyTorch's twin of ``kind``: torch.nn modules, gradients by autograd."""
    import numpy as np

    nn, F = torch.nn, torch.nn.functional
    grad = torch.autograd.grad
    shape = spec.shape
    f32 = np.float32

    def tensor(a, requires_grad=False):
        return torch.from_numpy(a).requires_grad_(requires_grad)

    state = {}
    if kind in ("conv7x7", "conv3x3"):
        n, c, h, w = shape
        k = spec.params["kernel"]
        m = nn.Conv2d(c, c, k, padding=k // 2, bias=True)
        x = tensor(rng.standard_normal(shape, dtype=f32), True)
        dout = tensor(rng.standard_normal(shape, dtype=f32))
        inputs = (x, m.weight, m.bias)
        fwd = lambda: m(x)  # noqa: E731
    elif kind == "maxpool":
        m = nn.MaxPool2d(2, 2, return_indices=True)
        x = tensor(rng.standard_normal(shape, dtype=f32), True)
        with torch.no_grad():
            y_shape = m(x)[0].shape
        dout = torch.from_numpy(rng.standard_normal(tuple(y_shape), dtype=f32))
        inputs = (x,)
        fwd = lambda: m(x)[0]  # noqa: E731
    elif kind == "maxunpool":
        with torch.no_grad():
            y, idx = F.max_pool2d(
                tensor(rng.standard_normal(shape, dtype=f32)), 2, 2, return_indices=True
            )
        y.requires_grad_(True)
        m = nn.MaxUnpool2d(2, 2)
        size = (shape[2], shape[3])
        dout = tensor(rng.standard_normal(shape, dtype=f32))
        inputs = (y,)
        fwd = lambda: m(y, idx, output_size=size)  # noqa: E731
    elif kind == "batchnorm":
        m = nn.BatchNorm2d(shape[1]).train()
        x = tensor(rng.standard_normal(shape, dtype=f32), True)
        dout = tensor(rng.standard_normal(shape, dtype=f32))
        inputs = (x, m.weight, m.bias)
        fwd = lambda: m(x)  # noqa: E731
    elif kind == "relu":
        x = tensor(rng.standard_normal(shape, dtype=f32), True)
        dout = tensor(rng.standard_normal(shape, dtype=f32))
        inputs = (x,)
        fwd = lambda: F.relu(x)  # noqa: E731
    elif kind == "loss":
        n, k, h, w = shape
        weight = torch.tensor(CAMVID_WEIGHTS, dtype=torch.float32)
        logits = tensor(rng.standard_normal(shape, dtype=f32), True)
        targets = torch.from_numpy(rng.integers(0, NUM_CLASSES + 1, size=(n, h, w)))

        def fwd_bwd():
            loss = F.cross_entropy(
                logits, targets, weight=weight, ignore_index=IGNORE_INDEX
            )
            return grad(loss, (logits,))

        return Case(fwd_bwd)
    else:
        raise ValueError(f"unknown layer row {spec.name!r}")

    def bwd_setup():
        state["y"] = fwd()

    def bwd():
        return grad(state["y"], inputs, dout)

    return Case(fwd, bwd, bwd_setup)


def _rate(spec: RowSpec, seconds: float) -> float | None:
    """GFLOP/s or GB/s of ``spec`` done in ``seconds`` (None for time rows)."""
    if spec.metric in ("flop", "byte") and seconds > 0:
        return spec.work / seconds / 1e9
    return None


def measure_layers(framework: str, specs, warmup: int, repeat: int) -> dict:
    """Time the layer rows ``specs`` for ``framework``; results by row name."""
    import numpy as np

    torch = _import_torch() if framework == "pytorch" else None
    results = {}
    by_kind: dict[str, list[RowSpec]] = {}
    for spec in specs:
        by_kind.setdefault(_layer_kind(spec.name), []).append(spec)
    for kind, kind_specs in by_kind.items():
        rng = np.random.default_rng(0)
        try:
            if framework == "pytorch":
                case = _torch_case(kind, kind_specs[0], rng, torch)
            else:
                case = _npsegnet_case(kind, kind_specs[0], rng)
        except Exception as exc:  # a missing layer must not hide the other rows
            for spec in kind_specs:
                results[spec.name] = {"error": f"{type(exc).__name__}: {exc}"}
            _log(f"{kind:<13} {framework:<8} error: {exc}")
            continue
        for spec in kind_specs:
            phase = spec.name.split(".", 1)[1]
            try:
                if phase == "bwd":
                    times = time_it(case.bwd, case.bwd_setup, warmup, repeat)
                else:
                    times = time_it(case.fwd, None, warmup, repeat)
            except Exception as exc:
                results[spec.name] = {"error": f"{type(exc).__name__}: {exc}"}
                _log(f"{spec.name:<13} {framework:<8} error: {exc}")
                continue
            results[spec.name] = summarize(times)
            _log(
                f"{spec.name:<13} {framework:<8} {_fmt_time(statistics.median(times))}"
            )
        del case
    return results


# ---------------------------------------------------------------------------
# Whole-model rows
# ---------------------------------------------------------------------------
def _npsegnet_model(model: str, small: bool = False):
    if model == "segnet_basic":
        from npsegnet.models.segnet_basic import SegNetBasic

        return SegNetBasic(channels=NARROW_BASIC) if small else SegNetBasic()
    from npsegnet.models.segnet import SegNet

    return SegNet(channels=NARROW_VGG) if small else SegNet()


def _torch_model(torch, model: str, small: bool = False):
    if model == "segnet_basic":
        return torch_segnet_basic(torch, channels=NARROW_BASIC if small else 64)
    return torch_segnet(torch, channels=NARROW_VGG if small else VGG16_CHANNELS)


def _npsegnet_step(model_name: str, mode: str, shape, rng, small=False):
    """The step function of one npsegnet model row on random data."""
    import numpy as np

    import npsegnet.layers as L
    from npsegnet.optim import SGD

    model = _npsegnet_model(model_name, small=small)
    n, c, h, w = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    if mode == "infer":
        model.eval()
        return lambda: model.forward(x, keep_cache=False)
    targets = rng.integers(0, NUM_CLASSES + 1, size=(n, h, w))
    loss = L.SoftmaxCrossEntropy(
        weight=np.asarray(CAMVID_WEIGHTS, dtype=np.float32), ignore_index=IGNORE_INDEX
    )
    opt = SGD(
        model.params,
        model.grads,
        lr=SGD_LR,
        momentum=SGD_MOMENTUM,
        weight_decay=SGD_WEIGHT_DECAY,
    )

    def step():
        model.zero_grad()
        loss.forward(model.forward(x), targets)
        model.backward(loss.backward())
        opt.step()

    return step


def _torch_step(torch, model_name: str, mode: str, shape, rng, small=False):
    """The step function of one PyTorch model row on random data."""
    import numpy as np

    F = torch.nn.functional
    model = _torch_model(torch, model_name, small=small)
    n, c, h, w = shape
    x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                return model(x)

        return infer
    model.train()
    targets = torch.from_numpy(rng.integers(0, NUM_CLASSES + 1, size=(n, h, w)))
    weight = torch.tensor(CAMVID_WEIGHTS, dtype=torch.float32)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=SGD_LR,
        momentum=SGD_MOMENTUM,
        weight_decay=SGD_WEIGHT_DECAY,
    )

    def step():
        opt.zero_grad()
        out = model(x)
        F.cross_entropy(
            out, targets, weight=weight, ignore_index=IGNORE_INDEX
        ).backward()
        opt.step()

    return step


def measure_model(framework: str, spec: RowSpec, warmup: int, repeat: int) -> dict:
    """Time one whole-model row and record this process's peak memory.

    Before the baseline is read, a narrow model of the same class runs one
    step on a small input, so that imports, compiled kernels (loaded from
    Numba's cache or compiled) and thread pools are in the baseline and the
    increment is the model's own working set: weights, activations, gradients
    and optimiser state.
    """
    import numpy as np

    model_name, mode = spec.params["model"], spec.params["mode"]
    torch = _import_torch() if framework == "pytorch" else None
    rng = np.random.default_rng(0)
    small = (1, 3, 32, 32)
    if framework == "pytorch":
        warm = _torch_step(torch, model_name, mode, small, rng, small=True)
    else:
        from npsegnet.config import keep_freed_memory

        # as npsegnet.train.train does: freed activations stay mapped
        keep_freed_memory()
        warm = _npsegnet_step(model_name, mode, small, rng, small=True)
    warm()
    del warm
    baseline = peak_rss_mb()
    narrow = spec.params.get("narrow", False)
    if framework == "pytorch":
        step = _torch_step(torch, model_name, mode, spec.shape, rng, small=narrow)
    else:
        step = _npsegnet_step(model_name, mode, spec.shape, rng, small=narrow)
    times = time_it(step, None, warmup, repeat)
    peak = peak_rss_mb()
    _log(f"{spec.name:<13} {framework:<8} {_fmt_time(statistics.median(times))}")
    return {
        **summarize(times),
        "memory": {
            "baseline_mb": baseline,
            "peak_mb": peak,
            "increment_mb": peak - baseline,
        },
    }


# ---------------------------------------------------------------------------
# Time to first result
# ---------------------------------------------------------------------------
def _startup_main(framework: str, shape: tuple, threads: int) -> dict:
    """Body of the time-to-first-result process: import, build, first forward."""
    t_python = time.time()
    import numpy as np

    if framework == "npsegnet":
        from npsegnet.models.segnet_basic import SegNetBasic

        t_import = time.time()
        model = SegNetBasic().eval()
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        y = model.forward(x)
        t_done = time.time()
        model.forward(x)  # again: what the first one spent beyond computing
    else:
        torch = _import_torch()
        torch.set_num_threads(threads)
        t_import = time.time()
        model = torch_segnet_basic(torch).eval()
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        with torch.inference_mode():
            y = model(torch.from_numpy(x))
            t_done = time.time()
            model(torch.from_numpy(x))
    return {
        "t_python": t_python,
        "t_import": t_import,
        "t_done": t_done,
        "t_second": time.time(),
        "out_shape": list(y.shape),
    }


def measure_startup(framework: str, shape, threads: int, cache_dir=None) -> dict:
    """Time to first result of a new process: launch, import, first forward.

    The clock starts before the interpreter is launched and stops when the
    forward pass of SegNet-Basic (eval mode) on ``shape`` has returned.
    ``cache_dir`` points ``NUMBA_CACHE_DIR`` at a given directory (an empty
    one for a cold start).
    """
    env = {**os.environ, **thread_env(threads)}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    task = {"kind": "startup", "framework": framework, "shape": list(shape)}
    task["threads"] = threads
    cmd = [sys.executable, "-m", "npsegnet.bench", "--worker", json.dumps(task)]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = _parse_result(proc)
    if "error" in out:
        return out
    total = out["t_done"] - t0
    return {
        "median_s": total,
        "min_s": total,
        "times_s": [total],
        "interpreter_s": out["t_python"] - t0,
        "import_s": out["t_import"] - out["t_python"],
        "first_forward_s": out["t_done"] - out["t_import"],
        # the same forward once more in that process: the difference is the
        # one-off cost of the first (kernel loading or compiling, allocation)
        "second_forward_s": out["t_second"] - out["t_done"],
    }


# ---------------------------------------------------------------------------
# Running measurements in child processes (or in this one)
# ---------------------------------------------------------------------------
def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _import_torch():
    import torch

    return torch


def _parse_result(proc) -> dict:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {"error": f"process exited with {proc.returncode}: {tail}"}


def _execute(task: dict) -> dict:
    """Carry out one task (in whatever process calls this)."""
    kind = task["kind"]
    framework = task.get("framework", "npsegnet")
    if kind == "startup":  # first, before anything is imported
        return _startup_main(framework, tuple(task["shape"]), task["threads"])
    if framework == "npsegnet" and kind != "torch_probe":
        import numba  # noqa: F401  (so that set_threads sizes its pool)

        import npsegnet.layers  # noqa: F401
    torch = _import_torch() if framework == "pytorch" else None
    threads = set_threads(task["threads"], torch)
    specs = [RowSpec(**{**s, "shape": tuple(s["shape"])}) for s in task.get("rows", [])]
    if kind == "probe":
        return {
            "threads": threads,
            "sgemm": probe_sgemm(task["sgemm_n"], task["probe_repeat"]),
            "copy": probe_copy(task["copy_mb"], task["threads"], task["probe_repeat"]),
            "software": software_info(),
        }
    if kind == "torch_probe":
        return {
            "threads": threads,
            "sgemm": probe_torch_sgemm(torch, task["sgemm_n"], task["probe_repeat"]),
            "software": torch_info(torch),
        }
    if kind == "layers":
        rows = measure_layers(framework, specs, task["warmup"], task["repeat"])
        out = {"threads": threads, "rows": rows}
        if framework == "npsegnet":
            try:  # known only once a parallel kernel has run
                out["numba_threading_layer"] = sys.modules["numba"].threading_layer()
            except ValueError:
                pass
        return out
    if kind == "model":
        row = measure_model(framework, specs[0], task["warmup"], task["repeat"])
        return {"threads": threads, "rows": {specs[0].name: row}}
    raise ValueError(f"unknown task {kind!r}")


def _run_task(task: dict, in_process: bool) -> dict:
    """Run ``task`` here, or in a child process with the thread variables set."""
    if in_process:
        try:
            return _execute(task)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
    env = {**os.environ, **thread_env(task["threads"])}
    cmd = [sys.executable, "-m", "npsegnet.bench", "--worker", json.dumps(task)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sys.stderr.write(proc.stderr if proc.returncode == 0 else "")
    return _parse_result(proc)


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--worker":
        print("usage: python -m npsegnet.bench --worker TASK_JSON", file=sys.stderr)
        return 2
    result = _execute(json.loads(argv[1]))
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------
# Machine and software information
# ---------------------------------------------------------------------------
def machine_info() -> dict:
    """CPU model, core counts, OS and Python; no NumPy needed."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu == platform.machine():
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:
        pass
    simd = [f for f in ("avx512f", "avx2", "fma", "avx") if f in flags.split()]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "simd": simd,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def software_info() -> dict:
    """NumPy, Numba and BLAS of this process (call where they are imported)."""
    import numpy as np

    info = {"numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = {
            "name": blas.get("name"),
            "version": blas.get("version"),
            "config": blas.get("openblas configuration"),
        }
    except Exception:  # show_config's layout is not a stable API
        info["blas"] = {}
    runtime = _openblas_call("get_config")
    core = _openblas_call("get_corename")
    if runtime:
        info["blas"]["runtime_config"] = runtime[0].decode()
    if core:
        info["blas"]["core"] = core[0].decode()
    if "numba" in sys.modules:
        import numba

        info["numba"] = numba.__version__
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    import npsegnet

    info["npsegnet"] = npsegnet.__version__
    return info


def torch_info(torch) -> dict:
    """PyTorch's version and the BLAS it was built with."""
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([^\n]+)", config)
    return {
        "torch": torch.__version__,
        "blas": blas.group(1) if blas else None,
        "mkl": mkl.group(1).strip() if mkl else None,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


# ---------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------
DEFAULT_REPEAT = {"full": (5, 3), "quick": (3, 2), "tiny": (1, 1)}


def run_benchmark(
    size: str = "full",
    threads: int = 2,
    repeat: int | None = None,
    model_repeat: int | None = None,
    warmup: int = 1,
    only: str | None = None,
    use_torch: bool = True,
    in_process: bool = False,
    cold_start: bool | None = None,
) -> dict:
    """Measure every selected row for npsegnet (and PyTorch); return the report.

    Parameters
    ----------
    size : {"full", "quick", "tiny"}
        The shapes (see :data:`SIZES`): issue 5's, a subset for a quick look,
        or toy shapes for the tests.
    threads : int
        Threads of every pool (OpenBLAS, Numba, PyTorch/OpenMP).
    repeat, model_repeat : int, optional
        Timed runs of each layer row and each whole-model row (defaults by
        size: 5/3 full, 3/2 quick, 1/1 tiny); the median is reported.
    warmup : int
        Untimed runs before the timed ones (the first also compiles).
    only : str, optional
        Regular expression; only the rows whose name matches run.
    use_torch : bool
        Time PyTorch too, if it is installed.
    in_process : bool
        Measure in this process (the tests) instead of child processes; the
        memory figures then mix the rows and the thread counts are set at run
        time.
    cold_start : bool, optional
        Include the cold time-to-first-result row (default: full size only).

    Returns
    -------
    dict
        The JSON report: ``rows``, ``probes``, ``goals``, ``machine``, ...
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    for name, value in (("threads", threads), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for name, value in (("repeat", repeat), ("model_repeat", model_repeat)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    rep_default, model_rep_default = DEFAULT_REPEAT[size]
    repeat = repeat or rep_default
    model_repeat = model_repeat or min(repeat, model_rep_default)
    if cold_start is None:
        cold_start = size == "full"
    specs = select_rows(build_rows(size, cold_start=cold_start), only)
    notes = []
    if use_torch:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            use_torch = False
            notes.append(
                "PyTorch is not installed: npsegnet only "
                "(pip install torch==2.13.0 for the side-by-side columns)"
            )
    else:
        notes.append("PyTorch columns skipped (--no-torch)")
    frameworks = ["npsegnet"] + (["pytorch"] if use_torch else [])
    saved = _thread_counts() if in_process else None
    try:
        return _run_benchmark(
            size, threads, repeat, model_repeat, warmup, only, specs, frameworks,
            notes, in_process, use_torch,
        )  # fmt: skip
    finally:
        if saved is not None:  # leave the caller's pools as they were
            _restore_thread_counts(saved)


def _thread_counts() -> dict:
    """The current sizes of this process's OpenBLAS, Numba and PyTorch pools."""
    counts = {}
    got = _openblas_call("get_num_threads")
    if got:
        counts["openblas"] = got[0]
    if "numba" in sys.modules:
        counts["numba"] = sys.modules["numba"].get_num_threads()
    if "torch" in sys.modules:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    return counts


def _restore_thread_counts(counts: dict) -> None:
    import ctypes

    if "openblas" in counts:
        _openblas_call("set_num_threads", ctypes.c_int(counts["openblas"]))
    if "numba" in counts:
        sys.modules["numba"].set_num_threads(counts["numba"])
    if "torch" in counts:
        sys.modules["torch"].set_num_threads(counts["torch"])


def _run_benchmark(
    size, threads, repeat, model_repeat, warmup, only, specs, frameworks, notes,
    in_process, use_torch,
) -> dict:  # fmt: skip
    sz = SIZES[size]
    started = time.time()
    load_start = _loadavg()
    base = {"threads": threads, "warmup": warmup}
    probe_task = {
        **base,
        "kind": "probe",
        "sgemm_n": sz.sgemm_n,
        "copy_mb": sz.copy_mb,
        "probe_repeat": 3 if size != "tiny" else 1,
    }
    _log(f"probes: SGEMM {sz.sgemm_n}^2 float32, copy {sz.copy_mb} MB")
    probe_first = _run_task(probe_task, in_process)
    tasks = []  # (task, row names); in the order they run
    if use_torch:
        tasks.append(
            ({**probe_task, "kind": "torch_probe", "framework": "pytorch"}, [])
        )
    layer_specs = [asdict(s) for s in specs if s.group == "layer"]
    if layer_specs:
        for fw in frameworks:
            task = {**base, "kind": "layers", "framework": fw, "repeat": repeat}
            tasks.append(
                ({**task, "rows": layer_specs}, [s["name"] for s in layer_specs])
            )
    for spec in (s for s in specs if s.group == "model"):
        for fw in frameworks:
            task = {**base, "kind": "model", "framework": fw, "repeat": model_repeat}
            tasks.append(({**task, "rows": [asdict(spec)]}, [spec.name]))
    if in_process:
        # PyTorch's OpenMP threads keep spinning for a while after each of its
        # calls and would steal the cores from Numba's: npsegnet goes first.
        tasks.sort(key=lambda t: t[0].get("framework") == "pytorch")
    torch_probe = threading_layer = None
    results: dict[str, dict] = {s.name: {} for s in specs}
    for task, names in tasks:
        out = _run_task(task, in_process)
        if task["kind"] == "torch_probe":
            torch_probe = out
        if "numba_threading_layer" in out:
            threading_layer = out["numba_threading_layer"]
        for name in names:
            row = out.get("rows", {}).get(
                name, {"error": out.get("error", "no result")}
            )
            if in_process and "memory" in row:
                row["memory"]["isolated"] = False
            results[name][task["framework"]] = row
    startup = [s for s in specs if s.group == "startup"]
    if startup:
        cold = any(s.name == "startup.cold" for s in startup)
        with tempfile.TemporaryDirectory(prefix="npsegnet-numba-cache-") as tmp:
            # Cold: an empty Numba cache; warm: the cache the cold process
            # filled. Without the cold row, warm uses the usual cache, primed
            # by one untimed process (cheap when the kernels are cached; the
            # tests' tiny size skips it, for speed).
            cache = tmp if cold else None
            if not cold and size != "tiny":
                measure_startup("npsegnet", startup[0].shape, threads, cache)
            for spec in startup:
                for fw in frameworks:
                    m = measure_startup(
                        fw, spec.shape, threads, cache if fw == "npsegnet" else None
                    )
                    results[spec.name][fw] = m
                    _log(f"{spec.name:<13} {fw:<8} {_fmt_time(m.get('median_s'))}")
    probe_last = _run_task(probe_task, in_process) if size != "tiny" else None
    probes = _combine_probes(probe_first, probe_last, torch_probe)
    rows = [finish_row(spec, results[spec.name], probes, use_torch) for spec in specs]
    software = dict(probe_first.get("software", {}))
    if threading_layer:
        software["numba_threading_layer"] = threading_layer
    if torch_probe and "software" in torch_probe:
        software["pytorch"] = torch_probe["software"]
    report = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "duration_s": time.time() - started,
        "options": {
            "size": size,
            "threads": threads,
            "repeat": repeat,
            "model_repeat": model_repeat,
            "warmup": warmup,
            "only": only,
            "pytorch": use_torch,
            "in_process": in_process,
        },
        "machine": {
            **machine_info(),
            "loadavg_start": load_start,
            "loadavg_end": _loadavg(),
        },
        "software": software,
        "threads_set": probe_first.get("threads"),
        "probes": probes,
        "rows": rows,
        "notes": notes,
    }
    report["goals"] = evaluate_goals(report)
    return report


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _combine_probes(first: dict, last: dict | None, torch_probe: dict | None) -> dict:
    """The peaks the rows are compared with: the better of two probes."""
    if "error" in first:
        return {"error": first["error"], "sgemm_gflops": None, "copy_gbps": None}
    runs = [first] + ([last] if last and "error" not in last else [])
    probes = {
        "sgemm": [r["sgemm"] for r in runs],
        "copy": [r["copy"] for r in runs],
        "sgemm_gflops": max(r["sgemm"]["gflops"] for r in runs),
        "copy_gbps": max(r["copy"]["gbps"] for r in runs),
    }
    if torch_probe and "sgemm" in torch_probe:
        probes["torch_sgemm"] = torch_probe["sgemm"]
    return probes


def finish_row(spec: RowSpec, measured: dict, probes: dict, use_torch: bool) -> dict:
    """Add rates, percentages of the probed peak and the ratio to one row."""
    unit = {"flop": "GFLOP/s", "byte": "GB/s"}.get(spec.metric)
    peak = {"flop": probes.get("sgemm_gflops"), "byte": probes.get("copy_gbps")}.get(
        spec.metric
    )
    row = {
        "name": spec.name,
        "group": spec.group,
        "shape": list(spec.shape),
        "metric": spec.metric,
        "work": spec.work,
        "unit": unit,
    }
    for fw in ("npsegnet", "pytorch"):
        m = measured.get(fw)
        if m is None:
            row[fw] = None
            continue
        m = dict(m)
        if "median_s" in m:
            rate = _rate(spec, m["median_s"])
            m["rate"] = rate
            m["pct_peak"] = 100.0 * rate / peak if rate and peak else None
        row[fw] = m
    a, b = row["npsegnet"], row["pytorch"]
    row["ratio"] = (
        a["median_s"] / b["median_s"]
        if a and b and "median_s" in a and "median_s" in b and b["median_s"] > 0
        else None
    )
    return row


def _row(report: dict, name: str) -> dict | None:
    return next((r for r in report["rows"] if r["name"] == name), None)


def _goal(name, target, measured, passed, detail="") -> dict:
    return {
        "goal": name,
        "target": target,
        "measured": measured,
        "passed": passed,
        "detail": detail,
    }


def evaluate_goals(report: dict) -> list[dict]:
    """Issue 5's goals, each ``passed`` True, False or None (not measured)."""
    goals = []
    size = report["options"]["size"]

    def fw(row, key):
        return (row or {}).get(key) or {}

    train = next(
        (
            r
            for r in report["rows"]
            if r["name"].startswith("segnet_basic.train.")
            and (size != "full" or r["name"].endswith("360x480.b4"))
        ),
        None,
    )
    label = train["name"] if train else "segnet_basic.train.360x480.b4"
    ratio = train["ratio"] if train else None
    goals.append(
        _goal(
            f"{label}: time <= {GOAL_TRAIN_TIME_RATIO}x PyTorch",
            f"<= {GOAL_TRAIN_TIME_RATIO:.2f}x",
            ratio,
            None if ratio is None else ratio <= GOAL_TRAIN_TIME_RATIO,
        )
    )
    mem_np = fw(train, "npsegnet").get("memory", {}).get("increment_mb")
    mem_pt = fw(train, "pytorch").get("memory", {}).get("increment_mb")
    mem_ratio = mem_np / mem_pt if mem_np is not None and mem_pt else None
    goals.append(
        _goal(
            f"{label}: peak memory <= PyTorch's",
            f"<= {GOAL_TRAIN_MEMORY_RATIO:.2f}x",
            mem_ratio,
            None if mem_ratio is None else mem_ratio <= GOAL_TRAIN_MEMORY_RATIO,
            "increment of peak RSS over the process baseline",
        )
    )
    for prefix, threshold, what in (
        (("conv",), GOAL_CONV_PCT_SGEMM, "conv layers: >= {t:.0f}% of SGEMM"),
        (
            ("maxpool", "maxunpool", "batchnorm", "relu"),
            GOAL_MEMBOUND_PCT_COPY,
            "pool/unpool/BN/ReLU: >= {t:.0f}% of copy bandwidth",
        ),
    ):
        rows = [
            r
            for r in report["rows"]
            if r["group"] == "layer" and r["name"].startswith(prefix)
        ]
        pcts = [(fw(r, "npsegnet").get("pct_peak"), r["name"]) for r in rows]
        known = [(p, n) for p, n in pcts if p is not None]
        worst = min(known) if known else None
        passed = None
        if known and len(known) == len(pcts):
            passed = worst[0] >= threshold
        goals.append(
            _goal(
                what.format(t=threshold),
                f">= {threshold:.0f}%",
                worst[0] if worst else None,
                passed,
                f"worst: {worst[1]}" if worst else "",
            )
        )
    vgg = next(
        (r for r in report["rows"] if r["name"].startswith("segnet.train.")), None
    )
    ratio = vgg["ratio"] if vgg else None
    goals.append(
        _goal(
            f"{vgg['name'] if vgg else 'segnet.train.360x480.b1'}: time <= PyTorch",
            f"<= {GOAL_VGG_TIME_RATIO:.2f}x",
            ratio,
            None if ratio is None else ratio <= GOAL_VGG_TIME_RATIO,
        )
    )
    for name, limit in (
        ("startup.cold", GOAL_COLD_START_S),
        ("startup.warm", GOAL_WARM_START_S),
    ):
        t = fw(_row(report, name), "npsegnet").get("median_s")
        goals.append(
            _goal(
                f"time to first result, {name.split('.')[1]}",
                f"<= {limit:.0f} s",
                t,
                None if t is None else t <= limit,
            )
        )
    return goals


# ---------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------
def _fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _fmt_mem(m: dict | None) -> str:
    mem = (m or {}).get("memory")
    if not mem:
        return "-"
    star = "*" if mem.get("isolated") is False else ""
    return f"{mem['peak_mb']:.0f} (+{mem['increment_mb']:.0f}){star}"


def _cells(m: dict | None, col: str, unit) -> str:
    if m is None:
        return "-"
    if "error" in m:
        return "error" if col == "time" else "-"
    if col == "time":
        return _fmt_time(m.get("median_s"))
    if col == "rate":
        return _fmt(m.get("rate"), ".1f", f" {unit}" if unit else "")
    return _fmt(m.get("pct_peak"), ".0f", "%")


def align(table: list[list[str]], left: int = 2) -> str:
    """Plain-text table: the first ``left`` columns left-aligned, others right."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for k, r in enumerate(table):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]  # noqa: E501
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The report as aligned plain text: probes, rows, goals, notes."""
    out = []
    m, opt = report["machine"], report["options"]
    sw = report.get("software", {})
    pt = sw.get("pytorch", {})
    out.append(
        f"npsegnet bench  {report['date']}  size={opt['size']}"
        f"  threads={opt['threads']}  warmup={opt['warmup']}"
        f"  repeat={opt['repeat']}/{opt['model_repeat']} (layers/models)"
    )
    out.append(
        f"cpu: {m['cpu']} ({m['usable_cpus']} usable cpus, {', '.join(m['simd'])});"
        f" load average at start {_fmt_load(m.get('loadavg_start'))}"
        f", end {_fmt_load(m.get('loadavg_end'))}"
    )
    blas = sw.get("blas", {})
    core = f", {blas['core']}" if blas.get("core") else ""
    out.append(
        f"numpy {sw.get('numpy', '?')} ({blas.get('name', '?')}"
        f" {blas.get('version', '')}{core}), numba {sw.get('numba', '?')}"
        f", torch {pt.get('torch', 'absent')}"
        + (f" ({pt.get('blas')})" if pt.get("blas") else "")
    )
    p = report["probes"]
    if p.get("sgemm_gflops"):
        n = p["sgemm"][0]["n"]
        line = (
            f"peaks: SGEMM {n}^2 float32 {p['sgemm_gflops']:.1f} GFLOP/s;"
            f" copy {p['copy_gbps']:.1f} GB/s (read + write)"
        )
        if "torch_sgemm" in p:
            line += (
                f"; torch.mm {p['torch_sgemm']['gflops']:.1f} GFLOP/s (for reference)"
            )
        out.append(line)
    else:
        out.append(f"peaks: probe failed: {p.get('error')}")
    out.append("")
    table = [
        [
            "row",
            "shape",
            "npsegnet",
            "pytorch",
            "np/pt",
            "npsegnet rate",
            "%peak",
            "pytorch rate",
            "%peak",
            "np MB (+incr)",
            "pt MB (+incr)",
        ]
    ]
    for r in report["rows"]:
        a, b = r["npsegnet"], r["pytorch"]
        table.append(
            [
                r["name"],
                "x".join(str(s) for s in r["shape"]),
                _cells(a, "time", None),
                _cells(b, "time", None),
                _fmt(r["ratio"], ".2f"),
                _cells(a, "rate", r["unit"]),
                _cells(a, "pct", None),
                _cells(b, "rate", r["unit"]),
                _cells(b, "pct", None),
                _fmt_mem(a),
                _fmt_mem(b),
            ]
        )
    out.append(align(table))
    errors = [
        (r["name"], fw, r[fw]["error"])
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
        if r[fw] and "error" in r[fw]
    ]
    out.append("")
    goals = [["goal", "target", "measured", "result"]]
    for g in report["goals"]:
        v = g["measured"]
        if v is None:
            shown = "-"
        elif "%" in g["target"]:
            shown = f"{v:.0f}%"
        elif g["target"].endswith(" s"):
            shown = f"{v:.2f} s"
        else:
            shown = f"{v:.2f}x"
        if g["detail"].startswith("worst"):
            shown += f" ({g['detail']})"
        result = {True: "pass", False: "FAIL", None: "n/a"}[g["passed"]]
        goals.append([g["goal"], g["target"], shown, result])
    out.append(align(goals, left=1))
    notes = list(report.get("notes", []))
    for r in report["rows"]:
        for fw in ("npsegnet", "pytorch"):
            m = r[fw] or {}
            if r["group"] == "startup" and "first_forward_s" in m:
                notes.append(
                    f"{r['name']} ({fw}): interpreter {m['interpreter_s']:.2f} s,"
                    f" imports {m['import_s']:.2f} s, first forward"
                    f" {m['first_forward_s']:.2f} s (a second one:"
                    f" {m['second_forward_s']:.2f} s)"
                )
    isolated = [
        (r[fw].get("memory") or {}).get("isolated", True)
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
        if r[fw]
    ]
    if not all(isolated):
        notes.append("* memory measured in-process: not isolated per row")
    notes += [
        f"{name} ({fw}): {msg.splitlines()[-1][:200]}" for name, fw, msg in errors
    ]
    if notes:
        out.append("")
        out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def _fmt_load(load) -> str:
    return "?" if not load else f"{load[0]:.2f}"


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``npsegnet bench``."""
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of every pool (default 2)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per layer row, median reported (default 5; quick 3)",
    )
    parser.add_argument(
        "--model-repeat",
        type=int,
        default=None,
        help="timed runs per whole-model row (default 3; quick 2)",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs before timing (default 1)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller shapes and fewer runs, no VGG row, no cold start (< 1 min)",
    )
    parser.add_argument(
        "--only", metavar="PATTERN", help="only rows whose name matches this regex"
    )
    parser.add_argument("--no-torch", action="store_true", help="time npsegnet alone")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of one child process per framework "
        "and model row (memory figures are then not isolated)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="toy shapes, one run each, in-process (for the tests)",
    )


def _command_line(args: argparse.Namespace) -> str:
    """The ``npsegnet bench`` command that reproduces ``args``."""
    words = ["npsegnet", "bench"]
    for flag in ("quick", "tiny", "no_torch", "in_process"):
        if getattr(args, flag, False):
            words.append("--" + flag.replace("_", "-"))
    for opt in ("threads", "repeat", "model_repeat", "warmup", "only", "json"):
        value = getattr(args, opt, None)
        if value is not None:
            shown = f"'{value}'" if opt == "only" else str(value)
            words += ["--" + opt.replace("_", "-"), shown]
    return " ".join(words)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON; 1 if a row failed."""
    if args.tiny and args.quick:
        raise SystemExit("npsegnet bench: --tiny and --quick exclude each other")
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    try:
        report = run_benchmark(
            size=size,
            threads=args.threads,
            repeat=args.repeat,
            model_repeat=args.model_repeat,
            warmup=args.warmup,
            only=args.only,
            use_torch=not args.no_torch,
            in_process=args.in_process or args.tiny,
        )
    except ValueError as exc:
        raise SystemExit(f"npsegnet bench: {exc}") from None
    report["command"] = _command_line(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"\nwrote {args.json}")
    failed = any(
        r[fw] and "error" in r[fw]
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
