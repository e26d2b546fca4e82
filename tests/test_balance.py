"""Prior shift (``npsegnet balance``): undoing part of the class weighting.

The shift is the closed form ``-tau log w``; these tests check it on hand
examples, that it moves only the classifier's bias and moves the scores by
exactly that much, that one pass scores several ``tau`` as a shifted model
would, and the command: the table, the written file, its record, and bad
input.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from npsegnet.cli import main
from npsegnet.data import SyntheticShapes, make_transform
from npsegnet.errors import UsageError
from npsegnet.inference import (
    evaluate_model,
    evaluate_prior_shifts,
    load_for_inference,
    prior_shift,
    shift_class_priors,
)
from npsegnet.models import build_model
from npsegnet.models.weights import read_weights

TINY = [
    "--epochs", "1", "--num-images", "4", "--val-images", "3",
    "--image-size", "16x20", "--channels", "4", "--kernel-size", "3",
    "--batch-size", "2", "--no-progress", "--lr", "0.05", "--threads", "1",
    "--no-figures",
]  # fmt: skip


def test_prior_shift_hand_example():
    w = [2.0, 0.5, 0.0, 1.0]
    np.testing.assert_allclose(
        prior_shift(w, 1.0), [-np.log(2), np.log(2), 0.0, 0.0], rtol=1e-15
    )
    np.testing.assert_allclose(
        prior_shift(w, 0.5), [-np.log(2) / 2, np.log(2) / 2, 0, 0]
    )
    assert not prior_shift(w, 0.0).any()
    for bad in ([1.0, -1.0], [1.0, np.nan], [[1.0]]):
        with pytest.raises(ValueError, match="class_weights"):
            prior_shift(bad, 1.0)
    with pytest.raises(ValueError, match="tau"):
        prior_shift([1.0], np.inf)


def test_full_shift_recovers_the_unweighted_decision(rng):
    # A loss weighted by w is minimised by softmax scores w_c p(c|x) / Z: the
    # weighted decision favours rare classes. tau = 1 takes the weights back
    # out and picks argmax p; tau = 0 keeps argmax w p.
    p = rng.dirichlet(np.ones(5), size=1000)
    w = rng.uniform(0.1, 10.0, size=5)
    scores = np.log(w * p) + rng.normal(size=(1000, 1))  # any per-pixel constant
    assert np.array_equal((scores + prior_shift(w, 1.0)).argmax(1), p.argmax(1))
    assert np.array_equal((scores + prior_shift(w, 0.0)).argmax(1), (w * p).argmax(1))
    # halfway is the decision of weights sqrt(w)
    assert np.array_equal(
        (scores + prior_shift(w, 0.5)).argmax(1), (np.sqrt(w) * p).argmax(1)
    )


def _tiny_model(dtype="float64"):
    return build_model(
        "segnet-basic", num_classes=3, channels=4, kernel_size=3, seed=1, dtype=dtype
    ).eval()


def test_shift_moves_the_bias_and_the_scores_by_the_shift(rng):
    model = _tiny_model()
    w = [0.5, 1.0, 4.0]
    x = rng.normal(size=(2, 3, 16, 16))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    logits = model.forward(x, keep_cache=False)
    shift_class_priors(model, w, 0.7)
    after = model.state_dict()
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert changed == ["classifier.bias"]
    shifted = model.forward(x, keep_cache=False)
    expect = logits + prior_shift(w, 0.7)[None, :, None, None]
    # float64: the bias enters before the channel sum, not after it
    np.testing.assert_allclose(
        shifted, expect, rtol=0, atol=1e-12 * np.abs(logits).max()
    )
    # tau counts from the trained model: 0 with the shift applied restores it
    shift_class_priors(model, w, 0.0, applied=0.7)
    restored = model.classifier.params["bias"]
    np.testing.assert_allclose(restored, before["classifier.bias"], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="2 class weights for a model of 3"):
        shift_class_priors(model, [1.0, 2.0], 0.5)


def test_a_model_without_a_classifier_bias_is_refused():
    model = build_model("fcn-basic", num_classes=3, channels=4, seed=0)
    with pytest.raises(UsageError, match="no classifier with a bias"):
        shift_class_priors(model, [1.0, 1.0, 1.0], 0.5)


def test_one_pass_scores_each_tau_as_a_shifted_model_would():
    data = SyntheticShapes(num_images=3, image_size=(16, 20), seed=4)
    transform = make_transform({"kind": "none"})
    model = _tiny_model("float32")
    w = [0.3, 1.0, 6.0]
    taus = [0.0, 0.5, 1.0]
    results = evaluate_prior_shifts(model, data, transform, w, taus, batch_size=2)
    assert [r["tau"] for r in results] == taus
    assert (
        results[0]["confusion_matrix"]
        == evaluate_model(model, data, transform, batch_size=2, boundary=True)[
            "confusion_matrix"
        ]
    )
    x = np.stack([data[i][0] for i in range(len(data))])
    logits = model.forward(transform(x), keep_cache=False)
    for tau, result in zip(taus[1:], results[1:], strict=True):
        swept = logits + prior_shift(w, tau).astype(np.float32)[None, :, None, None]
        other = _tiny_model("float32")
        shift_class_priors(other, w, tau)
        direct = other.forward(transform(x), keep_cache=False).argmax(1)
        # The two sum the bias in another order: labels may differ only where
        # the top two scores are within float32 rounding of the scores' size.
        top2 = np.sort(swept, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        tie = margin <= 16 * np.finfo(np.float32).eps * np.abs(swept).max()
        assert np.all((swept.argmax(1) == direct) | tie)
        assert result["num_images"] == 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = subprocess.run(
        [sys.executable, "-m", "npsegnet", "train", "--out", str(out), *TINY],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_balance_command_table_file_and_record(run_dir, tmp_path, capsys):
    ckpt = run_dir / "latest.npz"
    target = tmp_path / "sweep.json"
    assert main(["balance", "--checkpoint", str(ckpt), "--tau", "0", "0.5", "1",
                 "--json", str(target)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "class weights as recorded in the checkpoint" in printed
    doc = json.loads(target.read_text())
    assert [r["tau"] for r in doc["results"]] == [0.0, 0.5, 1.0]
    recorded = json.loads(str(np.load(ckpt)["config"]))["class_weights"]
    assert doc["class_weights"] == recorded and doc["split"] == "val"
    # tau = 0 is the model as trained: evaluate's figures
    assert main(["evaluate", "--checkpoint", str(ckpt), "--json",
                 str(tmp_path / "e.json")]) == 0  # fmt: skip
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert doc["results"][0]["confusion_matrix"] == evaluated["confusion_matrix"]
    assert evaluated["prior_shift_tau"] is None

    out = tmp_path / "balanced.npz"
    assert main(["balance", "--checkpoint", str(ckpt), "--tau", "0.5", "--out",
                 str(out)]) == 0  # fmt: skip
    meta, state = read_weights(out)
    assert meta["metadata"]["prior_shift"] == {
        "tau": 0.5, "class_weights": recorded, "chosen_on": "val"
    }  # fmt: skip
    assert meta["metadata"]["normalization"] == evaluated_normalization(ckpt)
    trained, _ = load_for_inference(ckpt)
    bias = trained.classifier.params["bias"]
    np.testing.assert_allclose(
        state["classifier.bias"], bias + prior_shift(recorded, 0.5),
        rtol=0, atol=4 * np.finfo(np.float32).eps * (1 + np.abs(bias).max()),
    )  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--json",
                 str(tmp_path / "b.json")]) == 0  # fmt: skip
    assert "prior shifted by tau = 0.5 (npsegnet balance, chosen on val)" in (
        capsys.readouterr().out
    )
    assert json.loads((tmp_path / "b.json").read_text())["prior_shift_tau"] == 0.5

    # The written file counts tau from the trained model: --tau 0 restores it.
    back = tmp_path / "back.npz"
    assert main(["balance", "--checkpoint", str(out), "--tau", "0", "--out",
                 str(back)]) == 0  # fmt: skip
    assert "as recorded with the shift" in capsys.readouterr().out
    np.testing.assert_allclose(
        read_weights(back)[1]["classifier.bias"], bias,
        rtol=0, atol=8 * np.finfo(np.float32).eps * (1 + np.abs(bias).max()),
    )  # fmt: skip


def evaluated_normalization(ckpt):
    return json.loads(str(np.load(ckpt)["config"]))["normalization"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tau", "0", "1", "--out", "{tmp}/x.npz"], "give one --tau, got 2"),
        (["--tau", "0.5", "--out", "{tmp}/no/x.npz"], "folder of --out"),
        (["--tau", "nan"], "--tau must be finite"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_balance_bad_input_is_one_clear_line(run_dir, tmp_path, capsys, extra, message):
    argv = ["balance", "--checkpoint", str(run_dir / "latest.npz"), *extra]
    rc = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and message in lines[0], err


def test_balance_refuses_a_model_trained_without_weighting(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["train", "--out", str(out), "--no-class-weighting", *TINY]) == 0
    capsys.readouterr()
    assert main(["balance", "--checkpoint", str(out / "latest.npz")]) == 2
    assert "without class weighting" in capsys.readouterr().err


def test_scoring_restores_the_model_mode_after_success_and_error():
    data = SyntheticShapes(num_images=2, image_size=(16, 16), seed=0)
    model = _tiny_model("float32").train()
    evaluate_prior_shifts(model, data, make_transform({"kind": "none"}), [1] * 3, [0])
    assert model.training

    def wrong_channels(x):
        return x[:, :2]

    for score in (
        lambda: evaluate_prior_shifts(model, data, wrong_channels, [1] * 3, [0]),
        lambda: evaluate_model(model, data, wrong_channels),
    ):
        with pytest.raises(ValueError):
            score()
        assert model.training
