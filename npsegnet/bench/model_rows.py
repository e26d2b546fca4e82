"""Whole-model rows: a training step or an inference of SegNet-Basic and SegNet.

Both frameworks run the same network: npsegnet's is the model
:func:`npsegnet.models.build_model` builds, PyTorch's is that model turned
into ``torch.nn`` by the bridge (:func:`npsegnet.models.torch_module`), with
the same weights.
"""

from __future__ import annotations

import statistics

from .machine import _import_torch, peak_rss_mb
from .rows import CAMVID_WEIGHTS, IGNORE_INDEX, NUM_CLASSES, RowSpec, model_kwargs
from .timing import _fmt_time, _log, summarize, time_it

# Optimiser settings of the training-step rows (paper §3.2 momentum and weight
# decay). The learning rate is small so that repeated steps on random data stay
# finite: a diverging run would time NaN arithmetic, not the network.
SGD_LR = 1e-3
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 5e-4


def npsegnet_model(name: str, narrow: bool = False):
    """The model of a row: ``build_model(name)``, narrow for the tiny size."""
    from npsegnet.models import build_model

    return build_model(name, **model_kwargs(name, narrow))


def torch_model(torch, name: str, narrow: bool = False):
    """PyTorch's twin of :func:`npsegnet_model`, built by the bridge.

    Only the ``torch.nn`` module is kept: the npsegnet model it was built
    from is freed before anything is measured.
    """
    from npsegnet.models import torch_module

    return torch_module(npsegnet_model(name, narrow))


def _npsegnet_step(model_name: str, mode: str, shape, rng, small=False):
    """The step function of one npsegnet model row on random data."""
    import numpy as np

    import npsegnet.layers as L
    from npsegnet.optim import SGD

    model = npsegnet_model(model_name, narrow=small)
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
    model = torch_model(torch, model_name, narrow=small)
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
    # no process-wide setting here: --mallopt applies glibc's to both
    # frameworks alike, before any task runs (worker._execute)
    if framework == "pytorch":
        warm = _torch_step(torch, model_name, mode, small, rng, small=True)
    else:
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
