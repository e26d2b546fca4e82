"""Checkpoints: round trip, no pickle, atomic replacement, clear errors."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import npsegnet.checkpoint as ckpt
from npsegnet.checkpoint import (
    CheckpointError,
    is_checkpoint,
    load_checkpoint,
    rng_from_state,
    save_checkpoint,
)
from npsegnet.layers.base import Module
from npsegnet.optim import SGD


class Tiny(Module):
    """Two parameters and a buffer: enough to exercise the state plumbing."""

    def __init__(self, rng):
        super().__init__()
        self.add_param("weight", rng.standard_normal((2, 3)))
        self.add_param("bias", np.zeros(2))
        self.add_buffer("running_mean", rng.standard_normal(2))


@pytest.fixture
def state(rng):
    model = Tiny(rng)
    opt = SGD(model.params, model.grads, lr=0.1)
    for g in model.grads.values():
        g[...] = 1.0
    opt.step()
    gen = np.random.default_rng(7)
    gen.random(3)
    history = [{"epoch": 1, "train_loss": 0.5, "val": {"mean_iou": 0.25}}]
    config = {"model": "segnet-basic", "normalization": {"kind": "meanstd"}}
    return model, opt, gen, history, config


def save(path, state, **kw):
    model, opt, gen, history, config = state
    return save_checkpoint(
        path, model=model, optimizer=opt, epoch=3, rng=gen, history=history,
        config=config, **kw,
    )  # fmt: skip


def test_round_trip(tmp_path, state):
    model, opt, gen, history, config = state
    path = save(tmp_path / "c.npz", state, step=2, extra={"loss_sum": 1.5})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["step"] == 2
    assert loaded["history"] == history and loaded["config"] == config
    assert loaded["extra"] == {"loss_sum": 1.5}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded["model_state"][k], v)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(loaded["optimizer_state"][k], v)
    # The generator continues with the very same numbers.
    restored = rng_from_state(loaded["rng_state"])
    np.testing.assert_array_equal(restored.random(5), gen.random(5))
    assert is_checkpoint(path)


def test_readable_without_pickle(tmp_path, state):
    path = save(tmp_path / "c.npz", state)
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object
        assert str(npz["format"]) == "npsegnet-checkpoint"
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())


def test_failed_write_keeps_previous_file(tmp_path, state, monkeypatch):
    path = save(tmp_path / "latest.npz", state)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # a partial write, then a crash
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space"):
        save(path, state)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["latest.npz"]  # no temporary file left
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 3


def test_interrupted_write_keeps_previous_file(tmp_path, state, monkeypatch):
    path = save(tmp_path / "latest.npz", state)
    before = path.read_bytes()

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save(path, state)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["latest.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.npz")


def test_corrupt_and_truncated_files(tmp_path, state):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(CheckpointError, match="not a valid .npz"):
        load_checkpoint(garbage)
    good = save(tmp_path / "good.npz", state)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    assert not is_checkpoint(garbage)


def test_foreign_npz(tmp_path):
    foreign = tmp_path / "weights.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an npsegnet checkpoint"):
        load_checkpoint(foreign)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an .npz"):
        load_checkpoint(npy)
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_object_arrays_refused(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        ckpt.atomic_savez(tmp_path / "x.npz", {"a": np.array([{}], dtype=object)})


def test_rng_from_state_rejects_unknown_generator():
    with pytest.raises(CheckpointError, match="bit generator"):
        rng_from_state({"bit_generator": "Generator", "state": {}})
