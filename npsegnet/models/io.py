"""Weights on disk, and the bridge to PyTorch.

npsegnet's own format
---------------------
:func:`save_weights` writes one ``.npz`` archive (NumPy's zip of ``.npy``
files, readable without npsegnet) holding

* every parameter and batch-norm buffer under its dotted name
  (``"enc1.conv.weight"``, ``"enc1.bn.running_var"``, ...), and
* ``"__config__"``: a 0-d unicode array with a JSON object
  ``{"format": "npsegnet-weights/1", "model": "segnet-basic",
  "config": {...constructor arguments...}}``,

so that :func:`load_model` can rebuild the model a file belongs to. Files are
read with ``allow_pickle=False`` (loading a weights file never runs code) and
written atomically: to a temporary file in the target's folder, then
``os.replace``, so an interrupted save never leaves a truncated file under the
target's name.

PyTorch
-------
The models use PyTorch's layer semantics (floor-mode pooling, flat pool
indices, biased batch variance in training, unbiased running variance), so
weights move both ways unchanged:

* :func:`load_vgg16_into` copies torchvision ``vgg16_bn`` (or ``vgg16``)
  ImageNet weights into :class:`~npsegnet.models.SegNet`'s encoder;
* :func:`to_torch_state_dict` / :func:`export_torch` write a state dict whose
  keys are npsegnet's names, and :func:`torch_module` builds the equivalent
  ``torch.nn.Module`` (``Conv2d``, ``BatchNorm2d``, ``ReLU``,
  ``MaxPool2d(return_indices=True)``, ``MaxUnpool2d``) with those keys, to
  carry on training on a GPU; :func:`load_torch_state_dict` brings the
  weights back.

PyTorch is imported only by the functions that need it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .._checks import check_float_array
from ..checkpoint import (
    CheckpointError,
    _open_npz,
    _read_all,
    atomic_savez,
    check_finite,
)
from .blocks import DecoderStage, EncoderDecoder, EncoderStage, Stage

FORMAT = "npsegnet-weights/1"
CONFIG_KEY = "__config__"


# -- npsegnet's own format -----------------------------------------------------
def _check_model(model) -> EncoderDecoder:
    if not isinstance(model, EncoderDecoder):
        raise TypeError(
            f"model must be an npsegnet model (SegNetBasic or SegNet), got "
            f"{type(model).__name__}"
        )
    return model


def save_weights(model, path, metadata: dict | None = None) -> Path:
    """Write ``model``'s parameters, buffers and configuration to ``path``.

    Parameters
    ----------
    model : SegNetBasic or SegNet
    path : str or os.PathLike
        The file to write, used as given (no ``.npz`` is appended). Its folder
        must exist. An existing file is replaced atomically.
    metadata : dict, optional
        JSON-serialisable facts to keep with the weights (the input
        normalisation, class names, ...); :func:`read_weights` returns them as
        ``meta["metadata"]``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    model = _check_model(model)
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {str(folder)!r} of path does not exist")
    meta = {"format": FORMAT, "model": model.name, "config": model.config}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        meta["metadata"] = metadata
    try:
        text = json.dumps(meta, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable: {err}") from err
    state = model.state_dict()
    check_finite(state, f"the weights to save to {path}")
    return atomic_savez(path, {CONFIG_KEY: np.array(text), **state})


def read_weights(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a weights file without building a model.

    Returns
    -------
    meta : dict
        ``{"format": ..., "model": name, "config": {...}}``, and
        ``"metadata"`` when the file was saved with some.
    state : dict of str to ndarray
        Parameters and buffers by dotted name.
    """
    path = Path(path)
    arrays = _read_all(_open_npz(path, "weights file"), path, "weights file")
    if CONFIG_KEY not in arrays:
        raise CheckpointError(
            f"{path} is not an npsegnet weights file: it has no {CONFIG_KEY!r} "
            "entry (write weights with model.save(path))"
        )
    meta = _parse_config(arrays.pop(CONFIG_KEY), path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}; this npsegnet reads {FORMAT!r}"
        )
    check_finite(arrays, f"weights file {path}")
    return meta, arrays


def _parse_config(entry: np.ndarray, path) -> dict:
    """The ``__config__`` JSON object, checked for the fields loading needs."""
    expected = (
        f'a JSON object {{"format": {FORMAT!r}, "model": NAME, "config": {{...}}}}'
    )
    try:
        meta = json.loads(str(entry[()]))
    except (ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"{path}: its {CONFIG_KEY!r} entry is not valid JSON ({exc}); "
            f"expected {expected}"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: its {CONFIG_KEY!r} entry is a JSON {type(meta).__name__}, "
            f"expected {expected}"
        )
    missing = [k for k in ("format", "model", "config") if k not in meta]
    if missing or not isinstance(meta.get("config"), dict):
        what = f"lacks {missing}" if missing else "has a 'config' that is not an object"
        raise CheckpointError(
            f"{path}: its {CONFIG_KEY!r} entry {what}; expected {expected}"
        )
    return meta


def _check_state_fits(model, state: dict, source: str, strict: bool = True) -> None:
    """Raise ``ValueError`` naming every key and shape that does not fit."""
    own = {**model.params, **model.buffers}
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and missing:
        problems.append(f"missing {missing}")
    if strict and unexpected:
        problems.append(f"unexpected {unexpected}")
    problems += [
        f"{k}: {tuple(np.shape(state[k]))} in the file, {own[k].shape} in the model"
        for k in own
        if k in state and tuple(np.shape(state[k])) != own[k].shape
    ]
    if problems:
        raise ValueError(
            f"{source} does not fit this {type(model).__name__} "
            f"({model.config}): " + "; ".join(problems)
        )


def load_weights(model, path, strict: bool = True):
    """Copy the weights saved in ``path`` into ``model``, in place.

    Parameters
    ----------
    model : SegNetBasic or SegNet
        Built with the same architecture arguments as the saved one (the
        dtype may differ: arrays are converted to the model's dtype).
    path : str or os.PathLike
        A file written by :func:`save_weights`.
    strict : bool
        Require the file to hold exactly the model's parameters and buffers.

    Returns
    -------
    model

    Raises
    ------
    ValueError
        When the file holds another architecture (``"segnet"`` weights into a
        ``SegNetBasic``), or a key or shape does not fit (another
        ``num_classes``, ``channels`` or ``kernel_size``).
    """
    model = _check_model(model)
    meta, state = read_weights(path)
    if meta.get("model") != model.name:
        raise ValueError(
            f"{path} holds weights of a {meta.get('model')!r} model "
            f"({meta.get('config')}), not of a {model.name!r} model; use "
            "npsegnet.models.load_model(path) to build the right one"
        )
    _check_state_fits(model, state, f"weights file {path}", strict=strict)
    model.load_state_dict(state, strict=strict)
    return model


def load_model(path, dtype=None):
    """Build the model that ``path`` was saved from and load its weights.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_weights` (or ``model.save``).
    dtype : dtype, optional
        Override the saved dtype (e.g. ``np.float64`` for a gradient check).

    Returns
    -------
    SegNetBasic or SegNet
        In training mode, like any new model; call ``.eval()`` to predict.
    """
    from . import build_model

    meta, _ = read_weights(path)
    config = dict(meta["config"])
    if dtype is not None:
        config["dtype"] = np.dtype(dtype).name
    model = build_model(meta["model"], **config)
    return load_weights(model, path)


# -- PyTorch -------------------------------------------------------------------
def _import_torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this function needs PyTorch, which is optional for npsegnet: "
            "pip install torch (CPU wheels suffice)"
        ) from err
    return torch


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def vgg16_key_map(batch_norm: bool = True) -> dict[str, str]:
    """npsegnet SegNet encoder keys → torchvision ``vgg16(_bn)`` keys.

    torchvision's ``features`` is one ``Sequential``: per convolution a
    ``Conv2d`` (then ``BatchNorm2d`` with ``batch_norm``) and a ``ReLU``, and a
    ``MaxPool2d`` after each stage. So ``enc1.conv1`` is ``features.0``,
    ``enc1.bn1`` is ``features.1``, ``enc1.conv2`` is ``features.3`` (with BN;
    ``features.2`` without), and so on through the 13 convolutions.
    """
    from .segnet import VGG16_DEPTHS

    mapping = {}
    index = 0
    for k, depth in enumerate(VGG16_DEPTHS, start=1):
        for j in range(1, depth + 1):
            for p in ("weight", "bias"):
                mapping[f"enc{k}.conv{j}.{p}"] = f"features.{index}.{p}"
            if batch_norm:
                for p in ("weight", "bias", "running_mean", "running_var"):
                    mapping[f"enc{k}.bn{j}.{p}"] = f"features.{index + 1}.{p}"
                index += 3
            else:
                index += 2
        index += 1  # the stage's MaxPool2d
    return mapping


def load_vgg16_into(model, path_or_state_dict) -> list[str]:
    """Initialise SegNet's encoder with torchvision VGG16 weights, in place.

    Parameters
    ----------
    model : SegNet
        With ``in_channels=3`` and the default ``channels``.
    path_or_state_dict : str, os.PathLike or dict
        A torchvision ``vgg16_bn`` or ``vgg16`` state dict, or the ``.pth``
        file holding one (read with ``torch.load(..., weights_only=True)``,
        which never runs code from the file). Values may be tensors or NumPy
        arrays; a dict of arrays needs no PyTorch. Keys outside ``features``
        (the fully connected ``classifier``) are ignored.

    Returns
    -------
    list of str
        The npsegnet keys that were set.

    Notes
    -----
    With ``vgg16_bn`` weights the convolutions and the batch-norm scale,
    shift and running statistics are copied. Plain ``vgg16`` has no
    batch-norm: only the convolutions are copied and the encoder's batch-norm
    layers keep their initial values (scale 1, shift 0, running mean 0,
    running variance 1), as when SegNet was trained from VGG16 in Caffe.
    The decoder is never touched.
    """
    from .segnet import SegNet

    if not isinstance(model, SegNet):
        raise TypeError(
            f"model must be a SegNet (VGG16 encoder), got {type(model).__name__}"
        )
    if isinstance(path_or_state_dict, dict):
        state = path_or_state_dict
        source = "the state dict"
    else:
        torch = _import_torch()
        source = str(path_or_state_dict)
        state = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{source} does not hold a state dict")
    batch_norm = "features.1.running_mean" in state
    mapping = vgg16_key_map(batch_norm)
    missing = [v for v in mapping.values() if v not in state]
    if missing:
        raise ValueError(
            f"{source} is not a torchvision vgg16{'_bn' if batch_norm else ''} "
            f"state dict: missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    own = {**model.params, **model.buffers}
    arrays = {ours: _to_numpy(state[theirs]) for ours, theirs in mapping.items()}
    wrong = [
        f"{ours} ({mapping[ours]}): {a.shape} in VGG16, {own[ours].shape} in the model"
        for ours, a in arrays.items()
        if a.shape != own[ours].shape
    ]
    if wrong:
        raise ValueError(
            "VGG16 weights do not fit this SegNet (they need in_channels=3 and "
            "channels=(64, 128, 256, 512, 512)): " + "; ".join(wrong[:3])
        )
    for ours, a in arrays.items():
        own[ours][...] = a
    return list(arrays)


def to_torch_state_dict(model) -> dict:
    """The model's weights as a PyTorch state dict with npsegnet's keys.

    Returns
    -------
    dict of str to torch.Tensor
        Copies of every parameter and buffer, batch-norm's int64
        ``num_batches_tracked`` included, so that
        ``torch_module(model).load_state_dict(sd)`` is strict-clean.
    """
    torch = _import_torch()
    model = _check_model(model)
    return {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}


def export_torch(model, path) -> Path:
    """Save :func:`to_torch_state_dict` with ``torch.save`` to ``path``."""
    torch = _import_torch()
    torch.save(to_torch_state_dict(model), path)
    return Path(path)


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Copy a PyTorch state dict with npsegnet's keys into ``model``, in place.

    The inverse of :func:`to_torch_state_dict`, for weights trained with
    :func:`torch_module`.

    Returns
    -------
    model
    """
    model = _check_model(model)
    if not isinstance(state_dict, dict):
        torch = _import_torch()
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
    state = {k: _to_numpy(v) for k, v in state_dict.items()}
    _check_state_fits(model, state, "the state dict", strict=strict)
    model.load_state_dict(state, strict=strict)
    return model


@functools.cache
def _torch_classes():
    """The ``torch.nn.Module`` twins of the npsegnet stages (built once)."""
    torch = _import_torch()
    nn = torch.nn

    class TorchEncoderStage(nn.Module):
        def __init__(self, order):
            super().__init__()
            self.order = list(order)

        def forward(self, x):
            for name in self.order:
                x = getattr(self, name)(x)
            y, indices = self.pool(x)
            return y, indices, x.shape[-2:]

    class TorchDecoderStage(nn.Module):
        def __init__(self, order):
            super().__init__()
            self.order = list(order)

        def forward(self, x, indices, size):
            x = self.unpool(x, indices, output_size=size)
            for name in self.order:
                x = getattr(self, name)(x)
            return x

    class TorchSegNet(nn.Module):
        """An npsegnet model rebuilt from ``torch.nn`` layers, same keys."""

        def __init__(self, encoders, decoders, head):
            super().__init__()
            self.encoder_names = list(encoders)
            self.decoder_names = list(decoders)
            for name, stage in {**encoders, **decoders}.items():
                self.add_module(name, stage)
            self.has_head = head is not None
            if head is not None:
                self.classifier = head

        def forward(self, x):
            records = []
            for name in self.encoder_names:
                x, indices, size = getattr(self, name)(x)
                records.append((indices, size))
            for name, (indices, size) in zip(
                self.decoder_names, reversed(records), strict=True
            ):
                x = getattr(self, name)(x, indices, size)
            if self.has_head:
                x = self.classifier(x)
            return x

    return TorchEncoderStage, TorchDecoderStage, TorchSegNet


def _torch_layer(layer):
    """``torch.nn`` layers equivalent to one npsegnet layer (a list)."""
    from ..layers.batchnorm import BatchNorm2D
    from ..layers.conv import Conv2D

    nn = _import_torch().nn
    if isinstance(layer, Conv2D):
        c_out, c_in, kh, kw = layer.params["weight"].shape
        return [
            nn.Conv2d(
                c_in,
                c_out,
                (kh, kw),
                padding=layer.padding,
                bias="bias" in layer.params,
            )
        ]
    if isinstance(layer, BatchNorm2D):
        bn = nn.BatchNorm2d(
            layer.params["weight"].shape[0], eps=layer.eps, momentum=layer.momentum
        )
        return [bn, nn.ReLU()] if layer.relu else [bn]
    raise TypeError(f"no PyTorch twin for {type(layer).__name__}")  # pragma: no cover


def _torch_stage(stage: Stage, cls):
    nn = _import_torch().nn
    order, layers = [], {}
    for name in stage.order:
        twins = _torch_layer(getattr(stage, name))
        layers[name] = twins[0]
        order.append(name)
        for i, extra in enumerate(twins[1:], start=1):
            # The ReLU fused into npsegnet's batch-norm becomes its own
            # parameter-free module; its name adds no state-dict key.
            extra_name = f"{name}_relu{i}"
            layers[extra_name] = extra
            order.append(extra_name)
    twin = cls(order)
    for name, layer in layers.items():
        twin.add_module(name, layer)
    if isinstance(stage, EncoderStage):
        twin.pool = nn.MaxPool2d(2, 2, return_indices=True)
    elif isinstance(stage, DecoderStage):
        twin.unpool = nn.MaxUnpool2d(2, 2)
    return twin


def torch_module(model):
    """An equivalent ``torch.nn.Module`` holding a copy of ``model``'s weights.

    Parameters
    ----------
    model : SegNetBasic or SegNet

    Returns
    -------
    torch.nn.Module
        Same layers and state-dict keys as ``model``, float32 or float64 as
        the model, in the model's train/eval mode. ``module(x)`` maps
        ``(N, C_in, H, W)`` tensors to ``(N, num_classes, H, W)`` logits, so
        training can move to a GPU (``module.cuda()``) and come back with
        :func:`load_torch_state_dict`.
    """
    torch = _import_torch()
    model = _check_model(model)
    enc_cls, dec_cls, net_cls = _torch_classes()
    encoders = {f"enc{i}": _torch_stage(s, enc_cls) for i, s in _numbered(model, "enc")}
    decoders = {f"dec{i}": _torch_stage(s, dec_cls) for i, s in _numbered(model, "dec")}
    head = None
    if model.head is not None:
        (head,) = _torch_layer(model.head)
    net = net_cls(encoders, decoders, head)
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
    torch = _import_torch()
    x = check_float_array(x, "x", ndim=4, dtype=model.dtype)
    net = torch_module(model)
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()
