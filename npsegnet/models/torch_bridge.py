"""The bridge to PyTorch: weights both ways, and the same network in ``torch.nn``.

The layers use PyTorch's semantics (floor-mode pooling, flat pool indices,
biased batch variance in training, unbiased running variance, PyTorch's
weight layouts), so weights move both ways unchanged:

* :func:`to_torch_state_dict` / :func:`export_torch` write a state dict whose
  keys are npsegnet's names, and :func:`load_torch_state_dict` brings one
  back;
* :func:`torch_module` builds the equivalent ``torch.nn.Module`` with those
  keys, to carry on training on a GPU. It is rebuilt from the model's own
  stages (:meth:`~npsegnet.models.stages.Stage.parts`), each layer replaced
  by the twin :data:`TORCH_TWINS` declares for its class, so a new stage
  layout exports with no change here, and a new layer needs one row there.

PyTorch is imported only by the functions that need it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .._checks import check_float_array
from ..layers.batchnorm import BatchNorm2D
from ..layers.conv import Conv2D
from ..layers.conv_transpose import ConvTranspose2D
from ..layers.dropout import Dropout
from ..layers.pool import MaxPool2D
from ..layers.relu import ReLU
from ..layers.unpool import MaxUnpool2D
from ..layers.upsample import Upsample
from .records import make_record
from .stages import merged, up_sampling
from .weights import check_model, check_state_fits


def import_torch():
    """``torch``, or an ``ImportError`` that says how to install it."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this function needs PyTorch, which is optional for npsegnet: "
            "pip install torch (CPU wheels suffice)"
        ) from err
    return torch


def to_numpy(value) -> np.ndarray:
    """A tensor's values (detached, on the CPU) or ``np.asarray(value)``."""
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


# -- the twin of every layer ---------------------------------------------------------
# Each function gets an npsegnet layer and torch.nn, and returns the torch.nn
# modules that compute the same thing: the first takes the layer's name (and
# so its state-dict keys), any others are parameter-free and follow it.


def _conv(layer: Conv2D, nn):
    return [
        nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            padding=layer.padding,
            groups=layer.groups,
            bias="bias" in layer.params,
        )
    ]


def _conv_transpose(layer: ConvTranspose2D, nn):
    return [
        nn.ConvTranspose2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=layer.output_padding,
            bias="bias" in layer.params,
        )
    ]


def _upsample(layer: Upsample, nn):
    return [_torch_classes().Interpolate(layer.scale_factor, layer.mode)]


def _batchnorm(layer: BatchNorm2D, nn):
    bn = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    # the ReLU fused into npsegnet's batch-norm becomes a module of its own
    return [bn, nn.ReLU()] if layer.relu else [bn]


def _relu(layer: ReLU, nn):
    return [nn.ReLU()]


def _max_pool(layer: MaxPool2D, nn):
    return [
        nn.MaxPool2d(
            layer.kernel_size,
            layer.stride,
            ceil_mode=layer.ceil_mode,
            return_indices=True,
        )
    ]


def _max_unpool(layer: MaxUnpool2D, nn):
    return [nn.MaxUnpool2d(layer.kernel_size, layer.stride)]


def _dropout(layer: Dropout, nn):
    # torch's Dropout is the identity in eval mode: always_on (Monte-Carlo
    # dropout) does not carry over, nor do the layer's generator and masks.
    return [nn.Dropout(layer.p)]


#: npsegnet layer class -> function building its ``torch.nn`` twin(s).
TORCH_TWINS = {
    Conv2D: _conv,
    ConvTranspose2D: _conv_transpose,
    Upsample: _upsample,
    BatchNorm2D: _batchnorm,
    ReLU: _relu,
    MaxPool2D: _max_pool,
    MaxUnpool2D: _max_unpool,
    Dropout: _dropout,
}


def torch_twins(layer) -> list:
    """The ``torch.nn`` modules equivalent to one npsegnet layer (a list)."""
    nn = import_torch().nn
    for cls in type(layer).__mro__:
        if cls in TORCH_TWINS:
            return TORCH_TWINS[cls](layer, nn)
    raise TypeError(
        f"no PyTorch twin for {type(layer).__name__}; add one to "
        "npsegnet.models.torch_bridge.TORCH_TWINS"
    )


@functools.cache
def _torch_classes():
    """The ``torch.nn.Module`` classes of the twin network (built once)."""
    import types

    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    class Interpolate(nn.Module):
        """``Upsample``'s twin: ``F.interpolate`` with an optional size."""

        def __init__(self, scale_factor, mode):
            super().__init__()
            self.scale_factor = tuple(scale_factor)
            self.mode = mode

        def forward(self, x, output_size=None):
            corners = False if self.mode == "bilinear" else None
            if output_size is not None:
                return F.interpolate(
                    x, size=tuple(output_size), mode=self.mode, align_corners=corners
                )
            return F.interpolate(
                x, scale_factor=self.scale_factor, mode=self.mode, align_corners=corners
            )

    class TorchStage(nn.Module):
        """A stage's parts in data-flow order, as :class:`Stage` runs them.

        ``steps`` holds ``(name, role, up_sampling)``: role ``"layer"``,
        ``"skip"`` (run on the maps the stage keeps, not on ``x``),
        ``"down"`` (returns the map and indices; builds the record kept by
        ``keep``) or ``"up"`` (reads the record as the npsegnet stage does);
        a decoder stage then merges the record's maps as ``merge`` says.
        """

        def __init__(self, steps, keep, merge=None):
            super().__init__()
            self.steps = list(steps)
            self.keep = keep
            self.merge = merge

        def forward(self, x, record=None):
            kept, maps = None, None
            for name, role, up in self.steps:
                module = getattr(self, name)
                if role == "skip":
                    maps = module(x if maps is None else maps)
                elif role == "down":
                    size = tuple(x.shape[-2:])
                    y, indices = module(x)
                    maps = x if maps is None else maps
                    kept = make_record(self.keep, size, indices=indices, maps=maps)
                    x = y
                elif role == "up":
                    x = up(module, x, record)
                else:
                    x = module(x)
            if kept is not None:
                return x, kept
            return merged(self.merge, x, record)

    class TorchSegNet(nn.Module):
        """An npsegnet model rebuilt from ``torch.nn`` layers, same keys."""

        def __init__(self, encoders, decoders, head):
            super().__init__()
            self.encoder_names = list(encoders)
            self.decoder_names = list(decoders)
            for name, stage in {**encoders, **decoders}.items():
                self.add_module(name, stage)
            self.head_names = [name for name, _ in head]
            for name, module in head:
                self.add_module(name, module)

        def forward(self, x):
            records = []
            for name in self.encoder_names:
                x, record = getattr(self, name)(x)
                records.append(record)
            for name, record in zip(self.decoder_names, reversed(records), strict=True):
                x = getattr(self, name)(x, record)
            for name in self.head_names:
                x = getattr(self, name)(x)
            return x

    return types.SimpleNamespace(
        Interpolate=Interpolate, TorchStage=TorchStage, TorchSegNet=TorchSegNet
    )


def _named_twins(name: str, layer) -> list[tuple[str, object]]:
    """``[(name, twin), (name_relu1, ...)]``: the first twin takes the name."""
    twins = torch_twins(layer)
    return [(name, twins[0])] + [
        (f"{name}_{type(t).__name__.lower()}{i}", t)
        for i, t in enumerate(twins[1:], start=1)
    ]


def _torch_stage(stage):
    steps, modules = [], []
    for name, layer, role in stage.parts():
        up = up_sampling(layer) if role == "up" else None
        for i, (twin_name, twin) in enumerate(_named_twins(name, layer)):
            # a fused BN's ReLU stays on the skip path; after a re-sampler
            # the extra twins run on its output
            extra = "skip" if role == "skip" else "layer"
            steps.append((twin_name, role if i == 0 else extra, up))
            modules.append((twin_name, twin))
    twin = _torch_classes().TorchStage(
        steps, getattr(stage, "keep", None), getattr(stage, "merge", None)
    )
    for name, module in modules:
        twin.add_module(name, module)
    return twin


def torch_module(model):
    """An equivalent ``torch.nn.Module`` holding a copy of ``model``'s weights.

    Parameters
    ----------
    model : SegNetBasic, SegNet or any EncoderDecoder
        Every layer must have an entry in :data:`TORCH_TWINS`.

    Returns
    -------
    torch.nn.Module
        Same layers and state-dict keys as ``model``, float32 or float64 as
        the model, in the model's train/eval mode. ``module(x)`` maps
        ``(N, C_in, H, W)`` tensors to ``(N, num_classes, H, W)`` logits, so
        training can move to a GPU (``module.cuda()``) and come back with
        :func:`load_torch_state_dict`. ``Dropout`` becomes ``nn.Dropout``,
        which is the identity in eval mode (``always_on`` is not carried).
    """
    torch = import_torch()
    model = check_model(model)
    encoders = {f"enc{k}": _torch_stage(s) for k, s in _numbered(model, "enc")}
    decoders = {f"dec{k}": _torch_stage(s) for k, s in _numbered(model, "dec")}
    head = [] if model.head is None else _named_twins("classifier", model.head)
    net = _torch_classes().TorchSegNet(encoders, decoders, head)
    net = net.to(dtype=torch.float64 if model.dtype == np.float64 else torch.float32)
    net.load_state_dict(to_torch_state_dict(model), strict=True)
    net.train(model.training)
    return net


def _numbered(model, prefix: str):
    """``(k, stage)`` in data-flow order: enc1..encS or decS..dec1."""
    stages = model.encoders if prefix == "enc" else model.decoders
    ks = range(1, model.num_stages + 1)
    return zip(ks if prefix == "enc" else reversed(ks), stages, strict=True)


def torch_forward(model, x):
    """Run :func:`torch_module` on NumPy input and return NumPy logits.

    A convenience for comparing the two implementations.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    """
    torch = import_torch()
    x = check_float_array(x, "x", ndim=4, dtype=model.dtype)
    net = torch_module(model)
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


# -- state dicts -----------------------------------------------------------------------
def to_torch_state_dict(model) -> dict:
    """The model's weights as a PyTorch state dict with npsegnet's keys.

    Returns
    -------
    dict of str to torch.Tensor
        Copies of every parameter and buffer, batch-norm's int64
        ``num_batches_tracked`` included, so that
        ``torch_module(model).load_state_dict(sd)`` is strict-clean.
    """
    torch = import_torch()
    model = check_model(model)
    return {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}


def export_torch(model, path) -> Path:
    """Save :func:`to_torch_state_dict` with ``torch.save`` to ``path``."""
    torch = import_torch()
    torch.save(to_torch_state_dict(model), path)
    return Path(path)


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Copy a PyTorch state dict with npsegnet's keys into ``model``, in place.

    The inverse of :func:`to_torch_state_dict`, for weights trained with
    :func:`torch_module`.

    Parameters
    ----------
    model : SegNetBasic, SegNet or any EncoderDecoder
    state_dict : dict or str or os.PathLike
        Tensors or arrays by npsegnet's keys, or a file saved with
        ``torch.save`` (read with ``weights_only=True``).
    strict : bool
        Require exactly the model's keys.

    Returns
    -------
    model
    """
    model = check_model(model)
    if not isinstance(state_dict, dict):
        torch = import_torch()
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
    state = {k: to_numpy(v) for k, v in state_dict.items()}
    check_state_fits(model, state, "the state dict", strict=strict)
    model.load_state_dict(state, strict=strict)
    return model
