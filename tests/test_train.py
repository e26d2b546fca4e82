"""Training loop: outputs, exact resume, Ctrl-C, batch-norm recomputation."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from tolerances import assert_close, network_reduction

from npsegnet.checkpoint import load_checkpoint
from npsegnet.data import SyntheticShapes, make_transform
from npsegnet.errors import UsageError
from npsegnet.models import SegNetBasic
from npsegnet.train import (
    TrainConfig,
    TrainingInterrupted,
    curves,
    recompute_bn_statistics,
    train,
)


def tiny(out, **kw) -> TrainConfig:
    """A run of a few seconds: 4-channel 3x3 SegNet-Basic on 16x16 shapes.

    One thread: on such tiny maps the parallel kernels' start-up costs more
    than their work, and resume exactness is defined for a fixed thread count.
    A fixed rate (the synthetic default decays over the run's epochs), so a
    1-epoch run resumed to 2 epochs is the 2-epoch run.
    """
    base = dict(
        out=str(out), epochs=2, batch_size=2, num_images=5, val_images=2,
        image_size=(16, 16), channels=4, kernel_size=3, progress=False,
        num_figure_images=2, lr=0.05, figures=False, threads=1,
        lr_schedule="fixed",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


def assert_same_weights(run_a, run_b):
    """Bitwise equal parameters and buffers in two runs' latest.npz."""
    a = load_checkpoint(run_a / "latest.npz")["model_state"]
    b = load_checkpoint(run_b / "latest.npz")["model_state"]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    history = train(tiny(out, figures=True), log=quiet)
    return out, history


def test_outputs_of_a_run(full_run):
    out, history = full_run
    names = {p.name for p in out.iterdir()}
    assert {"latest.npz", "best.npz", "history.json", "metrics.json"} <= names
    assert {"training_curves.png", "predictions.png"} <= names
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(len(r["step_losses"]) == 3 for r in history)  # ceil(5 / 2)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["class_names"][0] == "background"
    assert json.loads((out / "history.json").read_text()) == history
    ckpt = load_checkpoint(out / "latest.npz")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 0
    assert ckpt["config"]["normalization"]["kind"] == "meanstd"
    assert len(ckpt["config"]["class_weights"]) == 5
    c = curves(history)
    assert len(c["loss"]) == 6 and len(c["val_mean_iou"]) == 2


def test_resume_reproduces_the_uninterrupted_run(full_run, tmp_path):
    out_full, history_full = full_run
    train(tiny(tmp_path, epochs=1), log=quiet)
    history = train(tiny(tmp_path, epochs=2, resume=True), log=quiet)
    assert_same_weights(tmp_path, out_full)
    assert [r["step_losses"] for r in history] == [
        r["step_losses"] for r in history_full
    ]
    assert [r["val"] for r in history] == [r["val"] for r in history_full]


def test_interrupt_mid_epoch_saves_and_resumes_exactly(full_run, tmp_path):
    out_full, history_full = full_run

    def stop(event):
        if event["epoch"] == 2 and event["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="epoch 2, step 2") as info:
        train(tiny(tmp_path), callback=stop, log=quiet)
    assert info.value.checkpoint == tmp_path / "latest.npz"
    ckpt = load_checkpoint(tmp_path / "latest.npz")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    # epochs=None: resume to the run's own count (2), not the default (8)
    history = train(tiny(tmp_path, resume=True, epochs=None), log=quiet)
    assert_same_weights(tmp_path, out_full)
    assert [r["step_losses"] for r in history] == [
        r["step_losses"] for r in history_full
    ]


def test_sigint_stops_after_the_step(full_run, tmp_path):
    out_full, _ = full_run

    def ctrl_c(event):
        if event["epoch"] == 1 and event["step"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="step 1 of 3"):
        train(tiny(tmp_path), callback=ctrl_c, log=quiet)
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    train(tiny(tmp_path, resume=True), log=quiet)
    assert_same_weights(tmp_path, out_full)


def test_refuses_to_clobber_or_resume_nothing(full_run, tmp_path):
    out_full, _ = full_run
    with pytest.raises(UsageError, match="--resume"):
        train(tiny(out_full), log=quiet)
    with pytest.raises(UsageError, match="nothing to resume"):
        train(tiny(tmp_path / "empty", resume=True), log=quiet)
    with pytest.raises(UsageError, match="data folder not found"):
        train(tiny(tmp_path, data=str(tmp_path / "no-camvid")), log=quiet)


@pytest.fixture
def one_thread():
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def test_train_restores_the_thread_count(full_run):
    import numba

    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_recompute_bn_averages_batch_statistics(one_thread):
    """Cumulative average over batches = mean of each batch's own statistics."""
    data = SyntheticShapes(num_images=4, image_size=(16, 16), seed=3)
    transform = make_transform({"kind": "none"})
    model = SegNetBasic(num_classes=5, channels=3, kernel_size=3, seed=1)
    for v in model.buffers.values():
        v[...] = 7.0  # stale statistics must not leak into the result
    recompute_bn_statistics(model, data, transform, batch_size=2)

    per_batch = []
    for start in (0, 2):
        probe = SegNetBasic(num_classes=5, channels=3, kernel_size=3, seed=1)
        for m in probe.modules():
            if hasattr(m, "reset_running_stats"):
                m.momentum = 1.0  # running statistics := this batch's
        x = np.stack([data[i][0] for i in range(start, start + 2)])
        probe.forward(x)
        per_batch.append(probe.buffers)
    for key, value in model.buffers.items():
        if key.endswith("num_batches_tracked"):
            assert value == 2
            continue
        expected = (per_batch[0][key] + per_batch[1][key]) / 2
        # statistics of 2-image batches through the network, in float32
        assert_close(
            value,
            expected,
            reduction=network_reduction(model, 2 * int(np.prod(x.shape[2:]))),
            err_msg=key,
        )
    # the layers' own momentum is back
    assert all(
        m.momentum == 0.1 for m in model.modules() if hasattr(m, "reset_running_stats")
    )


def test_segnet_trains_too(tmp_path):
    cfg = tiny(
        tmp_path, model="segnet", channels=(2, 2, 3, 3, 3), kernel_size=None,
        image_size=(32, 32), num_images=2, epochs=1,
    )  # fmt: skip
    history = train(cfg, log=quiet)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    config = load_checkpoint(tmp_path / "latest.npz")["config"]
    assert config["model_kwargs"]["channels"] == [2, 2, 3, 3, 3]
    assert config["lr"] == 0.05


def test_training_leaves_the_allocator_alone(tmp_path, monkeypatch):
    # the models reuse their buffers, so training needs no process-wide mallopt
    import npsegnet.config as C
    from npsegnet.config import keep_freed_memory

    calls = []
    monkeypatch.setattr(C, "keep_freed_memory", lambda: calls.append(1) or True)
    train(tiny(tmp_path, epochs=1, validate=False), log=quiet)
    assert calls == []
    # the setting the bench's --mallopt applies: glibc accepts it (twice too)
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
        assert keep_freed_memory() is True


def test_without_validation_bn_is_recomputed_after_the_last_epoch_only(
    tmp_path, monkeypatch
):
    import npsegnet.train.loop as T

    calls = []
    real = T.recompute_bn_statistics

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "recompute_bn_statistics", counting)
    train(tiny(tmp_path / "noval", epochs=3, validate=False), log=quiet)
    assert len(calls) == 1  # a forward pass over the training set, once
    calls.clear()
    train(tiny(tmp_path / "val", epochs=2), log=quiet)
    assert len(calls) == 2  # before each validation


# -- the default run (``npsegnet train``): its synthetic setup --------------------
def test_synthetic_defaults_fit_the_four_poolings():
    """64x64 images keep a 4x4 bottleneck; CamVid keeps the paper's setup."""
    from npsegnet.train.config import (
        SYNTHETIC_KERNEL_SIZE,
        SYNTHETIC_LR_SCHEDULE,
        _with_data_defaults,
    )
    from npsegnet.train.prepare import learning_rate

    cfg = TrainConfig()
    assert all(side % 2**4 == 0 and side // 2**4 >= 4 for side in cfg.image_size)
    synthetic = _with_data_defaults(cfg)
    assert synthetic.kernel_size == SYNTHETIC_KERNEL_SIZE == 3
    assert synthetic.lr_schedule == SYNTHETIC_LR_SCHEDULE == "cosine"
    assert learning_rate(synthetic) == 0.05
    camvid = _with_data_defaults(TrainConfig(data="camvid"))
    assert camvid.kernel_size is None  # the model's own: the paper's 7
    assert camvid.lr_schedule == "fixed" and learning_rate(camvid) == 0.1
    vgg = _with_data_defaults(TrainConfig(model="segnet"))
    assert vgg.kernel_size is None  # VGG16 has no kernel-size option
    # what the user gives wins
    mine = _with_data_defaults(TrainConfig(kernel_size=7, lr_schedule="fixed"))
    assert (mine.kernel_size, mine.lr_schedule) == (7, "fixed")


def test_default_synthetic_setup_learns(tmp_path):
    """The default run, cut to 32 images and 3 epochs, already learns.

    Everything else is the default: 64-channel SegNet-Basic, 3x3 kernels,
    64x64 images, lr 0.05 with its cosine decay. (The full run, 384 images
    and 10 epochs, reaches val mIoU 86.8 %: docs/cli.md.)
    """
    cfg = TrainConfig(
        out=str(tmp_path), num_images=32, val_images=8, epochs=3, threads=1,
        progress=False, figures=False,
    )  # fmt: skip
    history = train(cfg, log=quiet)
    config = load_checkpoint(tmp_path / "latest.npz")["config"]
    assert config["model_kwargs"]["kernel_size"] == 3
    assert config["train"]["lr_schedule"] == "cosine"
    # Measured: the last epoch's loss is 0.42 of the first steps', val mIoU
    # 0.34 (the background everywhere scores 0.16), in about 8 s.
    first = np.mean(history[0]["step_losses"][:2])
    assert history[-1]["train_loss"] < 0.6 * first
    assert history[-1]["val"]["mean_iou"] > 0.28
