"""Every registered model trains and evaluates from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from npsegnet.cli import main
from npsegnet.models import MODELS
from npsegnet.models.registry import model_options

SMALL = [
    "--epochs", "1", "--num-images", "4", "--val-images", "2", "--batch-size", "2",
    "--no-progress", "--no-figures", "--threads", "1", "--lr", "0.01",
    "--image-size", "32x32",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_evaluates(name, tmp_path, capsys):
    vgg = "kernel_size" not in model_options(name)
    width = (
        ["--channels", "2,2,3,3,3"]
        if vgg
        else ["--channels", "4", "--kernel-size", "3"]
    )
    out = tmp_path / "run"
    assert main(["train", "--model", name, "--out", str(out), *SMALL, *width]) == 0
    assert f"{name} (" in capsys.readouterr().out
    target = tmp_path / "m.json"
    args = ["evaluate", "--checkpoint", str(out / "latest.npz"), "--json", str(target)]
    assert main(args) == 0
    assert 0.0 <= json.loads(target.read_text())["global_accuracy"] <= 1.0


def test_model_options_are_checked(tmp_path, capsys):
    base = ["train", "--out", str(tmp_path / "r"), *SMALL]
    assert main([*base, "--model", "segnet", "--kernel-size", "3"]) == 2
    assert "--kernel-size applies" in capsys.readouterr().err
    assert main([*base, "--model", "fcn-basic", "--channels", "2,2,3,3,3"]) == 2
    assert "takes one --channels width" in capsys.readouterr().err
    assert main([*base, "--model", "segnet-basic", "--dropout", "0.3"]) == 2
    assert "--dropout applies to the Bayesian models" in capsys.readouterr().err


def test_monte_carlo_evaluate_and_predict(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "bayes"
    width = ["--channels", "4", "--kernel-size", "3"]
    argv = ["train", "--model", "bayesian-segnet-basic", "--out", str(out), *SMALL]
    assert main([*argv, *width]) == 0
    target = tmp_path / "mc.json"
    args = ["evaluate", "--checkpoint", str(out / "latest.npz"), "--json", str(target)]
    assert main([*args, "--mc-samples", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Monte-Carlo dropout, 3 samples" in printed and "AUROC" in printed
    result = json.loads(target.read_text())
    assert result["mc_samples"] == 3
    spread = result["uncertainty"]
    assert 0 <= spread["auroc_entropy"] <= 1 and 0 <= spread["ece"] <= 1
    assert sum(spread["reliability"]["count"]) > 0
    # the same seed gives the same figures
    assert main([*args, "--mc-samples", "3"]) == 0
    assert json.loads(target.read_text())["uncertainty"] == spread
    assert main([*args, "--mc-samples", "0"]) == 2

    image = tmp_path / "im.png"
    Image.fromarray(np.full((32, 40, 3), 120, np.uint8)).save(image)
    pred = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(out / "model.npz"), str(image),
            "--out", str(pred), "--mc-samples", "2"]  # fmt: skip
    assert main(argv) == 0
    with Image.open(pred / "im_uncertainty.png") as im:
        assert im.size == (40, 32) and im.mode == "RGB"
    assert (pred / "im_classes.png").is_file()
