"""Our own Table 1: the paper's eight decoder variants, one shared budget.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/table1.py --data ../shared/camvid [--epochs 3]

For each model of the SegNet paper's Table 1 this trains it with the same
command (``npsegnet train``, the accuracy issue's recipe shortened: half
resolution, random flips, poly schedule with a one-epoch warm-up, seed 0,
median-frequency class weights), one model at a time on the whole machine,
then measures, in this process and one model at a time:

* val G / C / mIoU / BF at the training resolution (the ``metrics.json`` the
  run writes after recomputing the batch-norm statistics);
* parameters, and the bytes the decoder keeps from the encoder for one
  360x480 image (``model.decoder_storage``, measured from the arrays);
* inference time per 360x480 image (batch 1, median of ``--repeat``) and
  the time of one training step at the training resolution (batch 4), both
  measured after all runs, one model at a time, so that they do not depend
  on what else the machine did while a row trained;
* the wall clock of each run (recorded, but only comparable on a quiet
  machine).

A model whose run folder already holds ``metrics.json`` is not trained again
(a stopped script continues where it was). Results go to
``docs/data/table1.json`` and predictions of every model on three val images
(label maps, with the image and ground truth, at the training resolution) to
``docs/data/table1_predictions.npz`` for notebook 05; the Markdown table is
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: Table 1 of the SegNet paper (CamVid test, 360x480, median-frequency
#: balanced loss; ../shared/SEGNET.md): parameters in millions, the decoder
#: storage multiplier against SegNet-Basic, then G, C, mIoU, BF.
PAPER = {
    "bilinear-interpolation": (0.625, 0, 77.9, 61.1, 43.3, 20.83),
    "segnet-basic": (1.425, 1, 82.7, 62.0, 47.7, 35.78),
    "segnet-basic-encoder-addition": (1.425, 64, 83.4, 63.6, 48.5, 35.92),
    "segnet-basic-single-channel-decoder": (0.625, 1, 81.2, 60.7, 46.1, 31.62),
    "fcn-basic": (0.65, 11, 81.7, 62.4, 47.3, 38.11),
    "fcn-basic-no-addition": (0.65, 0, 80.5, 58.6, 44.1, 31.96),
    "fcn-basic-no-dim-reduction": (1.625, 64, 84.1, 63.4, 50.1, 37.37),
    "fcn-basic-no-addition-no-dim-reduction": (1.625, 0, 80.5, 61.6, 45.9, 30.47),
}
MODELS = tuple(PAPER)
PREDICTION_IMAGES = (0, 40, 80)  # val images shown in notebook 05
METRICS = (
    "global_accuracy",
    "class_average_accuracy",
    "mean_iou",
    "boundary_f1",
)


def learning_rate(model, args) -> list[str]:
    """``--lr`` of a row: the paper's 0.1, but ``--fcn-lr`` for FCN's decoders.

    FCN's decoders are deconvolutions and additions with no batch norm (as
    in FCN and the paper's description), and at lr 0.1 fcn-basic diverged
    (loss NaN at the last step of the warm-up epoch, where the rate reaches
    0.1); the SegNet decoders normalise every convolution and train at 0.1.
    """
    return ["--lr", str(args.fcn_lr)] if model.startswith("fcn-") else []


def train_command(model, args) -> list[str]:
    """The ``npsegnet train`` command of one row (shared budget, seed 0)."""
    return [
        sys.executable, "-m", "npsegnet", "train",
        "--model", model,
        "--data", str(args.data),
        "--scale", str(args.scale),
        "--flip",
        "--lr-schedule", "poly",
        "--warmup-epochs", "1",
        "--epochs", str(args.epochs),
        "--val-every", str(args.epochs),
        "--seed", "0",
        "--no-progress",
        "--no-figures",
        "--threads", str(args.threads),
        "--out", str(args.runs / model),
        *learning_rate(model, args),
    ]  # fmt: skip


def shown_command(cmd: list[str]) -> str:
    """``npsegnet ...`` as a reader would type it: paths relative to the repo."""
    words = [
        os.path.relpath(w, ROOT) if os.path.isabs(w) and w != sys.executable else w
        for w in cmd[3:]
    ]
    return "npsegnet " + " ".join(words)


def train(model, args) -> dict:
    """Train one row unless its run is complete; return its timing."""
    out = args.runs / model
    timing_file = out / "table1_timing.json"
    if (out / "metrics.json").exists() and timing_file.exists():
        return json.loads(timing_file.read_text())
    cmd = train_command(model, args)
    if (out / "latest.npz").exists():
        cmd.append("--resume")  # a stopped row continues, bit for bit
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    history = json.loads((out / "history.json").read_text())
    timing = {
        "wall_seconds": seconds,
        "epoch_seconds": [h["seconds"] for h in history],
        "images_per_second": statistics.median(h["images_per_second"] for h in history),
    }
    timing_file.write_text(json.dumps(timing, indent=1))
    return timing


def _median_seconds(fn, repeat) -> float:
    fn()  # compile, size the buffers
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model_name, args) -> dict:
    """Parameters, decoder storage, inference and training-step time of a row.

    Times are medians of ``args.repeat`` runs, one model at a time in this
    process, so that they compare the models and not the load the machine
    had while each one trained: inference on one 360x480 image, and one SGD
    step (forward, weighted loss, backward, update) on a batch of 4 at the
    training resolution, from which an epoch of 367 images is estimated.
    """
    import npsegnet.layers as L
    from npsegnet.inference import load_for_inference
    from npsegnet.optim import SGD

    model, _ = load_for_inference(args.runs / model_name / "latest.npz")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 360, 480), dtype=np.float32)
    infer_s = _median_seconds(lambda: model.forward(x, keep_cache=False), args.repeat)
    storage = model.decoder_storage((360, 480))

    h, w = round(360 * args.scale), round(480 * args.scale)
    xb = rng.standard_normal((4, 3, h, w), dtype=np.float32)
    yb = rng.integers(0, 12, size=(4, h, w))
    loss = L.SoftmaxCrossEntropy(ignore_index=11)
    model.train()
    opt = SGD(model.params, model.grads, lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step():
        model.zero_grad()
        loss.forward(model.forward(xb), yb)
        model.backward(loss.backward())
        opt.step()

    step_s = _median_seconds(step, args.repeat)
    return {
        "parameters": int(sum(p.size for p in model.params.values())),
        "decoder_storage_bytes": int(storage["total"]),
        "inference_seconds": infer_s,
        "train_step_seconds": step_s,
        "epoch_seconds_estimate": step_s * -(-367 // 4),
    }


def predictions(args) -> None:
    """Label maps of every trained row on a few val images, for notebook 05."""
    from npsegnet.data import CamVid, make_transform
    from npsegnet.inference import (
        load_for_inference,
        predict_labels,
        resolve_normalization,
    )

    data = CamVid(args.data, split="val", scale=args.scale)
    images, labels = zip(*(data.load_uint8(i) for i in PREDICTION_IMAGES), strict=True)
    image = np.stack(images)  # (N, 3, H, W) uint8
    x = image.astype(np.float32) / np.float32(255.0)
    arrays = {
        "image_index": np.asarray(PREDICTION_IMAGES),
        "image": image,
        "labels": np.stack(labels).astype(np.uint8),
        "models": np.asarray(MODELS),
    }
    for name in MODELS:
        model, config = load_for_inference(args.runs / name / "latest.npz")
        transform = make_transform(resolve_normalization(config, None))
        arrays[f"pred/{name}"] = predict_labels(model, x, transform).astype(np.uint8)
    out = ROOT / "docs" / "data" / "table1_predictions.npz"
    np.savez_compressed(out, **arrays)
    print("wrote", out.relative_to(ROOT))


def markdown(rows) -> str:
    head = (
        "| model | params (M) | decoder storage at 360×480 (MB) | × SegNet-Basic | "
        "G | C | mIoU | BF | inference s/image | training s/epoch | "
        "paper: params, ×, G / C / mIoU / BF |\n|" + "---|" * 11
    )
    segnet = next(r for r in rows if r["model"] == "segnet-basic")
    base = segnet["decoder_storage_bytes"]
    lines = [head]
    for r in rows:
        v = {k: 100 * r["val"][k] for k in METRICS}
        p = PAPER[r["model"]]
        lines.append(
            f"| `{r['model']}` | {r['parameters'] / 1e6:.3f} "
            f"| {r['decoder_storage_bytes'] / 1e6:.2f} "
            f"| {r['decoder_storage_bytes'] / base:.1f} "
            + "".join(f"| {v[k]:.1f} " for k in METRICS)
            + f"| {r['inference_seconds']:.2f} | {r['epoch_seconds_estimate']:.0f} "
            + f"| {p[0]}M, ×{p[1]}, {p[2]} / {p[3]} / {p[4]} / {p[5]} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "camvid")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "table1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fcn-lr", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args(argv)
    for name in args.models:
        if name not in PAPER:
            parser.error(f"unknown model {name!r}; Table 1 has {', '.join(MODELS)}")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(
            f"warning: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} forces "
            "OpenBLAS's kernel; unset it for runs of this length",
            file=sys.stderr,
        )
    timings = {name: train(name, args) for name in args.models}
    rows = []
    for name in args.models:
        row = {"model": name, **measure(name, args), "training": timings[name]}
        row["val"] = json.loads((args.runs / name / "metrics.json").read_text())
        row["command"] = shown_command(train_command(name, args))
        rows.append(row)
    budget = {
        "epochs": args.epochs,
        "scale": args.scale,
        "images": "CamVid train (367), val (101)",
        "options": "--flip --lr-schedule poly --warmup-epochs 1 --seed 0",
        "lr": f"0.1 (the paper's); {args.fcn_lr} for the fcn-* rows",
    }
    out = ROOT / "docs" / "data" / "table1.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    print("wrote", out.relative_to(ROOT))
    if set(args.models) == set(MODELS):
        predictions(args)
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
