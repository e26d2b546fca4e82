"""How much memory a training step or an inference pass needs, before it runs.

A SegNet keeps every stage's maps for its backward pass, so memory grows with
``batch * H * W``: CamVid at ``--scale 5`` (1800x2400) would want tens of
gigabytes and end in a ``MemoryError`` deep inside a kernel. The commands
measure what one small pass allocates and scale it, then refuse a run that
would not fit, with a message that says what to change.

The estimate is measured, not a formula: ``tracemalloc`` (to which NumPy
reports its allocations) records the peak of a forward (and backward) pass of
a copy of the model on a ``PROBE x PROBE`` image; the activations scale with
the number of pixels, the parameters (and their gradients and momentum) do
not.
"""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path

import numpy as np

__all__ = ["InsufficientMemory", "available_bytes", "estimate_bytes", "check_memory"]

#: Side of the probe image (divisible by 2**5, SegNet's five poolings).
PROBE = 64

#: Refuse a run whose estimate exceeds this fraction of the available memory.
HEADROOM = 0.9


class InsufficientMemory(ValueError):
    """A run would need more memory than the machine has available."""


def available_bytes() -> int | None:
    """Memory available to this process (Linux ``MemAvailable``, capped by a
    cgroup limit), or ``None`` where it cannot be read."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max" and found is not None:
            found = min(found, int(limit) - used)
    except (OSError, ValueError):
        pass
    return found


def _peak(fn) -> int:
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not started:
            tracemalloc.stop()
    return max(peak - base, 0)


def estimate_bytes(model, batch_size: int, image_size, training: bool) -> int:
    """Bytes one step (``training``) or one inference batch needs.

    Parameters
    ----------
    model : EncoderDecoder
        The model (not modified: a copy is probed).
    batch_size : int
    image_size : tuple of int
        ``(H, W)`` of the images the model sees.
    training : bool
        Forward and backward with saved maps, plus gradients and momentum;
        else an inference forward that frees each stage's maps.

    Returns
    -------
    int
    """
    probe = copy.deepcopy(model)
    probe.train(training)
    x = np.zeros((1, probe.in_channels, PROBE, PROBE), probe.dtype)

    def run():
        if training:
            out = probe.forward(x)
            probe.backward(np.ones_like(out))
        else:
            probe.forward(x, keep_cache=False)

    run()  # compiles the kernels and sizes the workspaces once
    # the model's buffer pool would serve the second pass from the first's
    # arrays; forget them, so that the probe measures all a step holds
    probe.release_buffers()
    activations = _peak(run)
    h, w = image_size
    scaled = activations * (batch_size * h * w) / (PROBE * PROBE)
    params = sum(p.nbytes for p in model.params.values())
    # weights, plus gradients and momentum when training
    return int(scaled + params * (3 if training else 1))


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_memory(model, batch_size: int, image_size, training: bool, hint: str):
    """Raise :class:`InsufficientMemory` when the run would not fit.

    ``hint`` names the options that lower the need (``"--scale or
    --batch-size"``). Returns the estimate in bytes (``None`` when the
    available memory cannot be read: the check is skipped).
    """
    available = available_bytes()
    if available is None:
        return None
    need = estimate_bytes(model, batch_size, image_size, training)
    if need > HEADROOM * available:
        h, w = image_size
        what = "a training step" if training else "inference"
        raise InsufficientMemory(
            f"{what} of {model.name} at {h}x{w}, batch {batch_size}, needs about "
            f"{_gb(need)} (estimated), but {_gb(available)} is available: lower "
            f"{hint}"
        )
    return need
