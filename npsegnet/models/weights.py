"""The weights file: one ``.npz`` holding a model's arrays and how to rebuild it.

:func:`save_weights` writes one ``.npz`` archive (NumPy's zip of ``.npy``
files, readable without npsegnet) holding

* every parameter and batch-norm buffer under its dotted name
  (``"enc1.conv.weight"``, ``"enc1.bn.running_var"``, ...), and
* ``"__config__"``: a 0-d unicode array with a JSON object
  ``{"format": "npsegnet-weights/1", "model": "segnet-basic",
  "config": {...constructor arguments...}}``,

so that :func:`load_model` can rebuild the model a file belongs to (by its
name in :data:`npsegnet.models.registry.MODELS`). Files are read with
``allow_pickle=False`` (loading a weights file never runs code) and written
atomically (:func:`npsegnet.checkpoint.atomic_savez`: a temporary file in the
target's folder, then ``os.replace``), so an interrupted save never leaves a
truncated file under the target's name.

This module knows no model class: it checks a model by what it has
(:func:`check_model`) and builds one through the registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..checkpoint import (
    CheckpointError,
    _open_npz,
    _read_all,
    atomic_savez,
    check_finite,
)
from .registry import build_model

FORMAT = "npsegnet-weights/1"
CONFIG_KEY = "__config__"


#: What a model must have for its weights to be saved and loaded.
MODEL_ATTRIBUTES = ("name", "config", "params", "buffers", "state_dict")


def check_model(model):
    """``model`` if it is an npsegnet model, else ``TypeError``.

    Checked by what the format needs (a registry ``name``, the constructor
    ``config``, ``params``, ``buffers`` and ``state_dict``), not by class, so
    this module needs no model class.
    """
    if not all(hasattr(model, a) for a in MODEL_ATTRIBUTES) or not isinstance(
        model.name, str
    ):
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
    model = check_model(model)
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


def check_state_fits(model, state: dict, source: str, strict: bool = True) -> None:
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
    model = check_model(model)
    meta, state = read_weights(path)
    if meta.get("model") != model.name:
        raise ValueError(
            f"{path} holds weights of a {meta.get('model')!r} model "
            f"({meta.get('config')}), not of a {model.name!r} model; use "
            "npsegnet.models.load_model(path) to build the right one"
        )
    check_state_fits(model, state, f"weights file {path}", strict=strict)
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
    meta, _ = read_weights(path)
    config = dict(meta["config"])
    if dtype is not None:
        config["dtype"] = np.dtype(dtype).name
    model = build_model(meta["model"], **config)
    return load_weights(model, path)
