"""Layer rows: each layer's forward and backward, npsegnet's and PyTorch's.

npsegnet's layers come from :mod:`npsegnet.layers`; PyTorch's are the
``torch.nn`` modules with the same hyper-parameters, gradients by autograd.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .machine import _import_torch
from .rows import CAMVID_WEIGHTS, IGNORE_INDEX, NUM_CLASSES, RowSpec
from .timing import _fmt_time, _log, summarize, time_it


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


def _as_in_a_model(layer):
    """``layer`` with a buffer pool, as a model gives its layers one.

    From the second call on, its outputs and gradients then go to arrays it
    already has, as in a training step (and as the copy probe writes into an
    array that exists). A layer on its own, without a pool, writes each call
    to fresh pages that the operating system zeroes on first touch: a cost of
    allocating, which a model does not pay from step to step.
    """
    layer.reuse_buffers = True
    return layer


def _npsegnet_case(kind: str, spec: RowSpec, rng) -> Case:
    """npsegnet's layer ``kind`` on the row's shape, float32, training mode,
    run as a model runs it (:func:`_as_in_a_model`)."""
    import numpy as np

    import npsegnet.layers as L

    shape = spec.shape
    f32 = np.float32
    if kind in ("conv7x7", "conv3x3"):
        n, c, h, w = shape
        k = spec.params["kernel"]
        algorithm = spec.params.get("algorithm", "auto")
        layer = _as_in_a_model(
            L.Conv2D(c, c, k, padding=k // 2, bias=True, seed=0, algorithm=algorithm)
        )
        layer.needs_input_grad = True  # a layer row times the full backward: dx, dw
        x = rng.standard_normal(shape, dtype=f32)
        dout = rng.standard_normal(layer.forward(x).shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "maxpool":
        layer = _as_in_a_model(L.MaxPool2D(kernel_size=2, stride=2))
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
        layer = _as_in_a_model(L.MaxUnpool2D(kernel_size=2, stride=2))
        dout = rng.standard_normal(shape, dtype=f32)
        return Case(
            lambda: layer.forward(y, idx, output_size=size),
            lambda: layer.backward(dout),
            lambda: layer.forward(y, idx, output_size=size),
        )
    if kind == "batchnorm":
        layer = _as_in_a_model(L.BatchNorm2D(shape[1]))
        layer.train()
        x = rng.standard_normal(shape, dtype=f32)
        dout = rng.standard_normal(shape, dtype=f32)
        return Case(lambda: layer.forward(x), lambda: layer.backward(dout),
                    lambda: layer.forward(x))  # fmt: skip
    if kind == "relu":
        layer = _as_in_a_model(L.ReLU())
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
