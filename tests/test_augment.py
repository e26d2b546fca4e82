"""Augmentation (flips, crops, scale jitter) and learning-rate schedules."""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.checkpoint import load_checkpoint
from npsegnet.cli import main
from npsegnet.data.augment import Augment, batch_generator
from npsegnet.optim import scheduled_lr
from npsegnet.train import TrainConfig, TrainingInterrupted, train


def coded_batch(rng, N=3, H=12, W=17, K=5):
    """Images whose every channel holds the pixel's label (so they must agree)."""
    y = rng.integers(0, K, size=(N, H, W))
    x = np.repeat(y[:, None].astype(np.float32), 3, axis=1)
    return x, y


@pytest.mark.parametrize("crop", [None, (8, 10), (16, 20)])
def test_labels_follow_images_and_padding_is_ignored(rng, crop):
    x, y = coded_batch(rng)
    aug = Augment(flip=True, crop=crop, ignore_index=11)
    xa, ya = aug(x, y, batch_generator(0, 1, 0))
    out = crop or (12, 17)
    assert xa.shape == (3, 3, *out) and ya.shape == (3, *out)
    labelled = ya != 11
    np.testing.assert_array_equal(xa[:, 0][labelled], ya[labelled])
    np.testing.assert_array_equal(xa[:, :, ~labelled[0]][0], 0)  # zero padding
    if crop == (16, 20):  # larger than the image: 12 * 17 labelled pixels each
        assert (labelled.sum(axis=(1, 2)) == 12 * 17).all()


def test_scale_jitter_resizes_labels_by_nearest(rng):
    x, y = coded_batch(rng, N=4)
    xa, ya = Augment(flip=False, scale_range=(0.5, 2.0))(x, y, batch_generator(1, 1, 3))
    assert xa.shape == x.shape
    # nearest keeps label values; bilinear images agree with labels away from edges
    assert set(np.unique(ya)) <= set(range(5)) | {11}
    assert not np.array_equal(ya, y)


def test_flip_is_a_mirror_and_variants_are_reproducible(rng):
    x, y = coded_batch(rng, N=16)
    aug = Augment(flip=True)
    xa, ya = aug(x, y, batch_generator(7, 2, 5))
    flipped = [np.array_equal(ya[n], y[n][:, ::-1]) for n in range(16)]
    kept = [np.array_equal(ya[n], y[n]) for n in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 16
    xb, yb = aug(x, y, batch_generator(7, 2, 5))
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    _, yc = aug(x, y, batch_generator(7, 2, 6))
    assert not np.array_equal(ya, yc)


def test_bad_augment_arguments():
    with pytest.raises(ValueError, match="crop"):
        Augment(crop=(0, 4))
    with pytest.raises(ValueError, match="scale_range"):
        Augment(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="expected x"):
        Augment()(
            np.zeros((1, 3, 4, 4)), np.zeros((1, 5, 4), int), batch_generator(0, 1, 0)
        )


def test_schedules():
    assert scheduled_lr(0.1, 50, 100) == 0.1
    assert scheduled_lr(0.1, 0, 100, "poly") == pytest.approx(0.1)
    assert scheduled_lr(0.1, 50, 100, "poly", power=1.0) == pytest.approx(0.05)
    assert scheduled_lr(0.1, 50, 100, "cosine") == pytest.approx(0.05)
    assert scheduled_lr(0.1, 100, 100, "cosine", min_lr=1e-3) == pytest.approx(1e-3)
    assert scheduled_lr(0.1, 25, 100, "step", step_every=10) == pytest.approx(1e-3)
    warm = [scheduled_lr(0.1, s, 100, "cosine", warmup_steps=4) for s in range(6)]
    np.testing.assert_allclose(warm[:4], [0.025, 0.05, 0.075, 0.1])
    assert warm[4] == pytest.approx(0.1) and warm[5] < 0.1
    with pytest.raises(ValueError, match="schedule must be"):
        scheduled_lr(0.1, 0, 10, "exp")


def tiny(out, **kw) -> TrainConfig:
    base = dict(
        out=str(out), epochs=2, batch_size=2, num_images=5, val_images=2,
        image_size=(16, 16), channels=4, kernel_size=3, progress=False,
        lr=0.05, figures=False, threads=1, flip=True, crop=(16, 16),
        scale_jitter=(0.75, 1.25), lr_schedule="cosine", warmup_epochs=0.5,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_augmented_scheduled_run_resumes_bit_exactly(tmp_path):
    full = tmp_path / "full"
    history_full = train(tiny(full), log=lambda s: None)
    lrs = [r["lr"] for r in history_full]
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] < 0.01  # cosine to the end

    def stop(event):
        if event["epoch"] == 2 and event["step"] == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted):
        train(tiny(part), callback=stop, log=lambda s: None)
    history = train(tiny(part, resume=True, epochs=None), log=lambda s: None)
    assert [r["step_losses"] for r in history] == [
        r["step_losses"] for r in history_full
    ]
    a = load_checkpoint(full / "latest.npz")["model_state"]
    b = load_checkpoint(part / "latest.npz")["model_state"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert load_checkpoint(part / "latest.npz")["config"]["train"]["crop"] == [16, 16]


def test_init_weights_starts_from_a_previous_run(tmp_path, capsys):
    first = tmp_path / "first"
    train(tiny(first, epochs=1), log=lambda s: None)
    lines = []
    train(
        tiny(tmp_path / "second", epochs=1, init_weights=str(first / "model.npz")),
        log=lines.append,
    )
    assert any("initial weights from" in line for line in lines)
    args = ["train", "--out", str(tmp_path / "third"), "--channels", "8",
            "--kernel-size", "3", "--image-size", "16x16", "--num-images", "2",
            "--val-images", "2", "--epochs", "1", "--no-progress", "--no-figures",
            "--init-weights", str(first / "latest.npz")]  # fmt: skip
    assert main(args) == 1  # another width: the error names the shapes
    assert "enc1.conv.weight" in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "missing.npz")]) == 2


def test_validation_every_n_epochs(tmp_path):
    history = train(
        tiny(tmp_path, epochs=3, val_every=2, flip=False, crop=None, scale_jitter=None),
        log=lambda s: None,
    )
    assert ["val" in r for r in history] == [False, True, True]  # 2, and the last
    with pytest.raises(Exception, match="val_every must be a positive int"):
        train(tiny(tmp_path / "b", val_every=0), log=lambda s: None)
