"""Bad input and damaged files: a clear error naming the problem, nothing lost.

One test per case of the reliability audit (issue 10); each says what the
command used to do.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from npsegnet import memory
from npsegnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npsegnet.cli import main
from npsegnet.data import read_image, to_rgb8
from npsegnet.metrics import score_label_files
from npsegnet.models import SegNetBasic, load_model
from npsegnet.train import TrainConfig, train

TINY = [
    "--epochs", "1", "--num-images", "4", "--val-images", "2",
    "--image-size", "16x20", "--channels", "4", "--kernel-size", "3",
    "--batch-size", "2", "--no-progress", "--lr", "0.05", "--threads", "1",
    "--no-figures",
]  # fmt: skip


def tiny_config(out, **kw):
    base = dict(
        epochs=1, num_images=4, val_images=2, image_size=(16, 20), channels=4,
        kernel_size=3, batch_size=2, progress=False, lr=0.05, threads=1,
        figures=False, out=str(out),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small trained run's ``model.npz`` (and its folder)."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out / "model.npz"


def _rewrite(src, dst, change):
    """Copy an .npz, letting ``change(dict)`` edit its arrays (bypassing checks)."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


# -- 2. diverging runs -------------------------------------------------------
def test_diverging_run_stops_and_keeps_finite_checkpoint(tmp_path):
    out = tmp_path / "div"
    with pytest.raises(FloatingPointError) as err:
        train(tiny_config(out, lr=1e6, epochs=3, num_images=8), log=lambda s: None)
    message = str(err.value)
    assert "diverged" in message and "epoch" in message and "step" in message
    assert "--lr" in message
    for path in out.glob("*.npz"):  # whatever was written is finite
        assert np.isfinite(
            load_checkpoint(path)["model_state"]["enc1.conv.weight"]
        ).all()


def test_diverging_run_from_the_cli_exits_1(tmp_path, capsys):
    out = tmp_path / "div"
    args = ["train", "--out", str(out), *TINY]
    args[args.index("0.05")] = "1e6"
    assert main(args) == 1
    assert "diverged" in capsys.readouterr().err


def test_nan_weights_are_neither_saved_nor_loaded(weights, tmp_path, capsys):
    model = SegNetBasic(num_classes=3, channels=4, kernel_size=3)
    model.params["enc1.conv.weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite.*enc1.conv.weight"):
        model.save(tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_checkpoint(
            tmp_path / "c.npz", model=model, optimizer=None, epoch=1, rng=rng,
            history=[], config={},
        )  # fmt: skip

    def poison(arrays):
        arrays["enc1.conv.weight"] = arrays["enc1.conv.weight"] * np.inf

    bad = _rewrite(weights, tmp_path / "bad.npz", poison)
    with pytest.raises(ValueError, match=r"bad.npz holds NaN or infinite"):
        load_model(bad)
    for command in (["evaluate", "--checkpoint", str(bad)],):
        assert main(command) == 1
        assert "NaN or infinite" in capsys.readouterr().err


# -- 3. damaged weights file -------------------------------------------------
def test_bit_flipped_weights_file_gives_a_clear_error(weights, tmp_path, capsys):
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside some array's bytes: a CRC mismatch
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged.npz"):
        load_model(damaged)
    assert main(["evaluate", "--checkpoint", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert "damaged.npz" in err and "Traceback" not in err
    image = tmp_path / "im.png"
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(damaged), str(image)]) == 1
    assert "damaged.npz" in capsys.readouterr().err
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.npz"):
        load_model(truncated)
    with pytest.raises(zipfile.BadZipFile):  # the case is real
        with zipfile.ZipFile(damaged) as z:
            for name in z.namelist():
                z.read(name)


# -- 4. malformed __config__ --------------------------------------------------
@pytest.mark.parametrize(
    "config, expect",
    [
        ([1, 2], "JSON list"),
        ({"format": "npsegnet-weights/1", "model": "segnet-basic"}, "lacks"),
        ({"format": "npsegnet-weights/1", "model": "segnet-basic", "config": 3},
         "not an object"),
        ("{not json", "not valid JSON"),
    ],
)  # fmt: skip
def test_malformed_config_entry(weights, tmp_path, capsys, config, expect):
    text = config if isinstance(config, str) else json.dumps(config)

    def change(arrays):
        arrays["__config__"] = np.array(text)

    bad = _rewrite(weights, tmp_path / "cfg.npz", change)
    with pytest.raises(ValueError, match=expect):
        load_model(bad)
    assert main(["evaluate", "--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "__config__" in err and "expected a JSON object" in err


# -- 5. runs that cannot fit in memory ---------------------------------------
def test_memory_estimate_scales_with_pixels_and_batch():
    model = SegNetBasic(num_classes=3, channels=4, kernel_size=3)
    one = memory.estimate_bytes(model, 1, (64, 64), training=True)
    four = memory.estimate_bytes(model, 4, (64, 64), training=True)
    params = sum(p.nbytes for p in model.params.values())
    assert one > 3 * params
    assert four - 3 * params == pytest.approx(4 * (one - 3 * params), rel=0.05)
    assert memory.estimate_bytes(model, 1, (64, 64), training=False) < one


def test_a_run_too_large_for_memory_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)  # 1 kB
    out = tmp_path / "big"
    assert main(["train", "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "needs about" in err and "available" in err and "--batch-size" in err
    assert not out.exists()  # and no empty --out folder is left


# -- 6. 16-bit images ---------------------------------------------------------
def test_16_bit_greyscale_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    x = read_image(path)
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x[0], ramp / 65535, atol=1 / 255)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        rgb = np.asarray(to_rgb8(im))
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 200


# -- smaller cases -------------------------------------------------------------
def test_stale_temporary_checkpoints_are_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".latest.npz.0123456789ab.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = out / "notes.tmp"
    keep.write_text("mine")
    train(tiny_config(out), log=lambda s: None)
    assert not stale.exists() and keep.exists()


def test_bad_train_options(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--save-every", "-2", *TINY]) == 2
    assert "save_every must be an int >= 0" in capsys.readouterr().err
    args = ["train", "--out", str(out), "--resume", "--overwrite", *TINY]
    assert main(args) == 2
    assert "give one of them" in capsys.readouterr().err
    assert not out.exists()


def test_all_unlabelled_training_set_is_refused(tmp_path, monkeypatch, capsys):
    from npsegnet import data as data_module

    def unlabelled(self, rng):
        images, labels = original(self, rng)
        return images, np.full_like(labels, self.ignore_index)

    original = data_module.SyntheticShapes._generate
    monkeypatch.setattr(data_module.SyntheticShapes, "_generate", unlabelled)
    assert main(["train", "--out", str(tmp_path / "u"), *TINY]) == 2
    assert "no labelled pixel" in capsys.readouterr().err


def test_predict_folders_sizes_and_class_pngs(weights, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(weights), str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    good = tmp_path / "good.png"
    small = tmp_path / "small.png"
    Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(good)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(small)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(weights), str(good), str(small),
                 "--out", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "small.png" in err and "needs at least" in err
    assert not out.exists()  # checked before anything was written

    assert (
        main(["predict", "--checkpoint", str(weights), str(good), "--out", str(out)])
        == 0
    )
    with Image.open(out / "good_classes.png") as im:
        assert im.mode == "L" and im.size == (20, 16)
        classes = np.asarray(im)
    assert classes.max() < 5  # the synthetic shapes: 5 classes
    annot = tmp_path / "annot"
    annot.mkdir()
    Image.fromarray(classes).save(annot / "good.png")
    result = score_label_files(out, annot, num_classes=5, ignore_index=None)
    assert result["global_accuracy"] == 1.0 and result["num_images"] == 1
