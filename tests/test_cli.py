"""Command line: train / evaluate / predict on a tiny synthetic run, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from npsegnet.cli import main
from npsegnet.data import SyntheticShapes

TINY = [
    "--epochs", "1", "--num-images", "4", "--val-images", "2",
    "--image-size", "16x20", "--channels", "4", "--kernel-size", "3",
    "--batch-size", "2", "--no-progress", "--lr", "0.05", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """``python -m npsegnet train`` in a subprocess: the whole command path."""
    out = tmp_path_factory.mktemp("run")
    proc = subprocess.run(
        [sys.executable, "-m", "npsegnet", "train", "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_train_writes_outputs_and_prints_metrics(run_dir):
    out, stdout = run_dir
    for name in ("latest.npz", "best.npz", "model.npz", "metrics.json", "history.json"):
        assert (out / name).is_file(), name
    for name in ("predictions.png", "training_curves.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    metrics = json.loads((out / "metrics.json").read_text())
    # The printed percentages are the ones in metrics.json.
    for label, key in (("G", "global_accuracy"), ("mIoU", "mean_iou")):
        line = next(
            ln for ln in stdout.splitlines() if ln.strip().startswith(label + " ")
        )
        assert f"{100 * metrics[key]:.2f}" in line
    assert "boundary F1" in stdout and "epoch   1/1" in stdout


def test_evaluate_checkpoint_and_json(run_dir, tmp_path, capsys):
    out, _ = run_dir
    target = tmp_path / "m.json"
    rc = main(
        ["evaluate", "--checkpoint", str(out / "latest.npz"), "--json", str(target)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    result = json.loads(target.read_text())
    assert result["split"] == "val" and result["num_images"] == 2
    # evaluate on the same split reproduces the metrics of training's last epoch
    trained = json.loads((out / "metrics.json").read_text())
    assert result["confusion_matrix"] == trained["confusion_matrix"]
    assert "background" in printed and "mIoU" in printed


def test_evaluate_weights_file(run_dir, tmp_path, capsys):
    from npsegnet.inference import load_for_inference

    out, _ = run_dir
    # model.npz, exported by train, records the normalisation and the data.
    target = tmp_path / "w.json"
    assert main(["evaluate", "--checkpoint", str(out / "model.npz"),
                 "--json", str(target)]) == 0  # fmt: skip
    trained = json.loads((out / "metrics.json").read_text())
    assert (
        json.loads(target.read_text())["confusion_matrix"]
        == (trained["confusion_matrix"])
    )
    # A bare model.save() file does not: the user must say which to use.
    model, _ = load_for_inference(out / "latest.npz")
    bare = tmp_path / "bare.npz"
    model.save(bare)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "--normalization" in err and "Traceback" not in err
    rc = main(
        ["evaluate", "--checkpoint", str(bare), "--normalization", "none",
         "--data", str(tmp_path)]
    )  # fmt: skip
    assert rc == 1  # no CamVid list file there
    assert "val.txt" in capsys.readouterr().err


def test_predict_writes_label_pngs_and_overlays(run_dir, tmp_path, capsys):
    out, _ = run_dir
    image, _ = SyntheticShapes(num_images=1, image_size=(21, 30), seed=9)[0]
    src = tmp_path / "scene.png"
    Image.fromarray(np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(src)
    dest = tmp_path / "pred"
    rc = main(
        ["predict", "--checkpoint", str(out / "best.npz"), str(src), "--out", str(dest)]
    )
    assert rc == 0
    for name in ("scene_labels.png", "scene_overlay.png"):
        with Image.open(dest / name) as im:
            assert im.size == (30, 21) and im.mode == "RGB"
    assert "scene_labels.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/camvid", "--out", "{tmp}/x"], "data folder"),
        (["evaluate", "--checkpoint", "{tmp}/missing.npz"], "not found"),
        (["predict", "--checkpoint", "{tmp}/missing.npz", "a.png"], "not found"),
        (["predict", "--checkpoint", "{ckpt}", "{tmp}/bad.png"], "cannot read image"),
        (["predict", "--checkpoint", "{ckpt}", "{tmp}/none.png"], "image not found"),
        (["evaluate", "--checkpoint", "{tmp}/bad.png"], "not a valid .npz"),
        (["train", "--out", "{run}"], "--resume"),
    ],
)
def test_bad_input_is_one_clear_line(run_dir, tmp_path, capsys, argv, message):
    out, _ = run_dir
    (tmp_path / "bad.png").write_text("not an image")
    fill = {"tmp": str(tmp_path), "ckpt": str(out / "latest.npz"), "run": str(out)}
    rc = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("npsegnet: error:")
    assert message in lines[0]


@pytest.fixture(scope="module")
def mini_camvid(camvid, tmp_path_factory):
    """Three training and two validation images of CamVid, linked, not copied."""
    root = tmp_path_factory.mktemp("camvid")
    for split, count in (("train", 3), ("val", 2)):
        lines = (camvid / f"{split}.txt").read_text().splitlines()[:count]
        for folder in (split, split + "annot"):
            (root / folder).mkdir()
        for line in lines:
            for listed in line.split():
                parts = listed.split("/")[-2:]
                (root / parts[0] / parts[1]).symlink_to(camvid / parts[0] / parts[1])
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_camvid_train_evaluate_predict(mini_camvid, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(mini_camvid), "--out", str(out), "--scale",
            "0.1", "--epochs", "1", "--channels", "4", "--kernel-size", "3",
            "--batch-size", "2", "--no-progress", "--threads", "1",
            "--no-figures"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "normalisation lrn" in printed and "36x48" in printed
    config = json.loads(str(np.load(out / "latest.npz")["config"]))
    assert config["normalization"]["kind"] == "lrn"
    assert config["lr"] == 0.1  # the paper's rate on CamVid
    assert config["class_names"][3] == "Road"

    target = tmp_path / "val.json"
    rc = main(["evaluate", "--checkpoint", str(out / "latest.npz"), "--data",
               str(mini_camvid), "--json", str(target), "--scale", "0.1"])  # fmt: skip
    assert rc == 0
    assert (
        "scored at 36x48; batch-norm statistics recomputed" in capsys.readouterr().out
    )
    result = json.loads(target.read_text())
    assert result["num_images"] == 2 and len(result["per_class_iou"]) == 11
    assert result["resolution"] == [36, 48] and result["split"] == "val"
    assert (
        result["confusion_matrix"]
        == json.loads((out / "metrics.json").read_text())["confusion_matrix"]
    )
    # CamVid is scored at the paper's 360x480 unless --scale says otherwise
    rc = main(["evaluate", "--checkpoint", str(out / "latest.npz"), "--data",
               str(mini_camvid), "--json", str(target)])  # fmt: skip
    assert rc == 0 and json.loads(target.read_text())["resolution"] == [360, 480]

    image = sorted((mini_camvid / "val").iterdir())[0]
    rc = main(["predict", "--checkpoint", str(out / "model.npz"), str(image),
               "--out", str(tmp_path / "pred")])  # fmt: skip
    assert rc == 0
    with Image.open(tmp_path / "pred" / f"{image.stem}_labels.png") as im:
        assert im.size == (480, 360)
        colours = {tuple(c) for c in np.asarray(im).reshape(-1, 3)}
    from npsegnet.viz import CAMVID_PALETTE

    assert colours <= {tuple(c) for c in CAMVID_PALETTE}
    # The subset has no test split: one clear line, exit code 1.
    capsys.readouterr()
    rc = main(["evaluate", "--checkpoint", str(out / "latest.npz"), "--split", "test"])
    assert rc == 1 and "test.txt" in capsys.readouterr().err


def test_a_programming_error_keeps_its_traceback(capsys):
    # the guard turns bad input into one line, never a bug
    from npsegnet.errors import UsageError, guarded

    def bug(args):
        raise TypeError("a bug in the command")

    def bad_option(args):
        raise UsageError("--threads must be between 1 and 2, got 0")

    with pytest.raises(TypeError, match="a bug"):
        guarded(bug, None)
    assert guarded(bad_option, None) == 2
    assert capsys.readouterr().err == (
        "npsegnet: error: --threads must be between 1 and 2, got 0\n"
    )
