"""Training checkpoints: one ``.npz`` file, written atomically, free of pickles.

A checkpoint holds everything a run needs to continue exactly where it
stopped:

=========================  ====================================================
key                        content
=========================  ====================================================
``format``                 ``"npsegnet-checkpoint"`` (0-d unicode), ``version``
``model.<name>``           the model's parameters and buffers (``state_dict``)
``optimizer.<name>``       the optimiser's state (momentum buffers, step count)
``epoch``, ``step``        completed epochs; completed steps of the next epoch
``rng_state``              JSON of ``Generator.bit_generator.state``
``config``, ``history``    JSON of the training config and history
``extra``                  JSON of anything else the trainer needs to resume
=========================  ====================================================

Strings are stored as 0-d unicode arrays and structured data as JSON text, so
``np.load(path, allow_pickle=False)`` reads every checkpoint: opening one never
runs code from the file.

The file is written to a temporary name in the destination folder, flushed and
``fsync``-ed, then renamed over the destination with :func:`os.replace`, which
is atomic on POSIX and Windows: a crash or a full disk during the write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "CheckpointError",
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_savez",
    "is_checkpoint",
    "rng_from_state",
    "check_finite",
]

FORMAT = "npsegnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable npsegnet checkpoint."""


def check_finite(arrays: dict, what: str) -> None:
    """Raise ``ValueError`` naming the float arrays of ``arrays`` holding NaN/inf.

    A diverged run must not overwrite a good checkpoint with NaN weights, and a
    file holding them must not be scored as if it were a model.
    """
    bad = [
        key
        for key, value in arrays.items()
        if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()
    ]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        shown = ", ".join(bad[:5]) + more
        raise ValueError(
            f"{what} holds NaN or infinite values in {len(bad)} "
            f"array{'s' if len(bad) > 1 else ''} ({shown}): the training that made "
            "them diverged; retrain with a smaller --lr, or use an earlier checkpoint"
        )


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically.

    Parameters
    ----------
    path : str or Path
        Destination; its folder is created if needed. The name is used as
        given (NumPy's habit of appending ``.npz`` does not apply).
    arrays : dict of str to ndarray
        Arrays to store; object arrays are refused (they would need pickle).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    for key, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"{key}: object arrays cannot be stored without pickle")
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open with mode 0o666 lets the umask decide the permissions, as for any
    # new file (tempfile.mkstemp would leave 0o600).
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # KeyboardInterrupt included: never leave the temporary file behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    path,
    *,
    model,
    optimizer,
    epoch: int,
    rng: np.random.Generator,
    history,
    config: dict,
    step: int = 0,
    extra: dict | None = None,
) -> Path:
    """Save a training checkpoint to ``path`` (one ``.npz``), atomically.

    Parameters
    ----------
    path : str or Path
        Destination file.
    model : Module
        Its ``state_dict()`` (parameters and buffers) is stored.
    optimizer : SGD or None
        Its ``state_dict()`` is stored (momentum buffers); ``None`` stores none.
    epoch : int
        Number of completed epochs.
    rng : numpy.random.Generator
        The training generator; its ``bit_generator.state`` is stored.
    history : list or dict
        JSON-serialisable training history.
    config : dict
        JSON-serialisable training configuration (model name and options,
        normalisation statistics, class names ...).
    step : int, default 0
        Completed optimiser steps of epoch ``epoch + 1`` (non-zero only for a
        checkpoint written when a run is interrupted within an epoch).
    extra : dict, optional
        More JSON-serialisable state (e.g. running sums of a partial epoch).

    Returns
    -------
    Path
        ``path``.
    """
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "epoch": np.array(int(epoch), dtype=np.int64),
        "step": np.array(int(step), dtype=np.int64),
        "rng_state": _json_array(rng.bit_generator.state),
        "config": _json_array(config),
        "history": _json_array(history),
        "extra": _json_array(extra or {}),
    }
    for key, value in model.state_dict().items():
        arrays[f"model.{key}"] = value
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():
            arrays[f"optimizer.{key}"] = value
    # Never replace a good checkpoint with a diverged state.
    check_finite(arrays, f"the state to save to {path}")
    return atomic_savez(path, arrays)


def _open_npz(path, what: str):
    """``np.load`` with pickles off and errors that say what went wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{what} is a folder, not a file: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {what} {path}: not a valid .npz file ({exc})"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{what} {path} is a single .npy array, not an .npz")
    return npz


def _read_all(npz, path, what: str) -> dict[str, np.ndarray]:
    try:
        with npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CheckpointError(
                f"{path} is not an npsegnet {what}: it holds pickled Python "
                "objects, which npsegnet never writes and will not load"
            ) from None
        raise CheckpointError(f"{what} {path} is corrupt ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{what} {path} is damaged ({type(exc).__name__}: {exc}); it cannot be "
            "read: use another copy or an earlier checkpoint"
        ) from None


def _json_field(arrays, key: str, path) -> object:
    try:
        return json.loads(str(arrays[key][()]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: field {key!r} is invalid ({exc})"
        ) from None


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.

    Returns
    -------
    dict
        ``model_state`` and ``optimizer_state`` (dicts of arrays, prefixes
        removed), ``epoch`` and ``step`` (int), ``rng_state`` (dict for
        ``bit_generator.state``), ``config``, ``history``, ``extra`` (decoded
        JSON) and ``path``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        (a ``ValueError``) when the file is corrupt, truncated, not an
        ``.npz``, or an ``.npz`` that is not an npsegnet checkpoint.
    """
    npz = _open_npz(path, "checkpoint")
    arrays = _read_all(npz, path, "checkpoint")
    fmt = arrays.get("format")
    if fmt is None or fmt.dtype.kind != "U" or str(fmt[()]) != FORMAT:
        raise CheckpointError(
            f"{path} is an .npz file but not an npsegnet checkpoint "
            f"(no format={FORMAT!r} entry)"
        )
    version = int(arrays["version"])
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this npsegnet "
            f"reads up to version {VERSION}"
        )
    out = {
        "path": str(path),
        "epoch": int(arrays["epoch"]),
        "step": int(arrays["step"]),
        "model_state": {
            k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")
        },
        "optimizer_state": {
            k[len("optimizer.") :]: v
            for k, v in arrays.items()
            if k.startswith("optimizer.")
        },
    }
    for key in ("rng_state", "config", "history", "extra"):
        out[key] = _json_field(arrays, key, path)
    try:
        check_finite(out["model_state"], f"checkpoint {path}")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    return out


def is_checkpoint(path) -> bool:
    """Whether ``path`` is an ``.npz`` carrying the checkpoint ``format`` entry."""
    try:
        npz = _open_npz(path, "file")
    except (FileNotFoundError, CheckpointError):
        return False
    with npz:
        if "format" not in npz.files:
            return False
        try:
            fmt = npz["format"]
        except (ValueError, OSError, zipfile.BadZipFile):
            return False
        return fmt.dtype.kind == "U" and str(fmt[()]) == FORMAT


def rng_from_state(state: dict) -> np.random.Generator:
    """A ``Generator`` whose bit generator continues from ``state``.

    Parameters
    ----------
    state : dict
        ``Generator.bit_generator.state`` as stored in a checkpoint.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generator_cls = getattr(np.random, str(name), None)
    if not (
        isinstance(bit_generator_cls, type)
        and issubclass(bit_generator_cls, np.random.BitGenerator)
    ):
        raise CheckpointError(f"unknown bit generator in the checkpoint: {name!r}")
    bit_generator = bit_generator_cls()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
