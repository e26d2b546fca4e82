"""Bayesian SegNet-Basic on CamVid: train it, then MC dropout against weight averaging.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bayesian.py \\
        --data ../shared/camvid --init-weights runs/sb_long_full/latest.npz \\
        [--scale 1.0] [--epochs 5] [--lr 0.01]

1. **Train** ``bayesian-segnet-basic`` (dropout p = 0.5 after encoders 3, 4
   and before decoders 4, 3) with ``npsegnet train``, starting from the given
   weights (a SegNet-Basic run: same parameter names, dropout has none).
   A run folder that holds ``metrics.json`` is not trained again; one that
   holds a checkpoint continues with ``--resume``.
2. **Score** it on val, one image at a time: weight averaging (one pass,
   dropout off, the default of ``evaluate``) and Monte-Carlo dropout, whose
   running mean over ``max(--samples)`` seeded samples is scored after each
   ``T`` of ``--samples`` (G, C, mIoU; BF and the uncertainty measures at the
   ``T`` of ``--uncertainty-at``): AUROC of entropy and of the class-averaged
   variance as detectors of wrong pixels, expected calibration error and the
   reliability bins (:class:`npsegnet.uncertainty.UncertaintyMetrics`). The
   weight-averaged pass is given the same measures with its own softmax
   entropy (its variance is 0). The sums so far are saved every
   ``--save-every`` images (``<out>/score_state.npz``) and a later start with
   the same weights and options continues from them, with the same result.
3. **Time** one image for each ``T`` of ``--time-samples`` with
   :func:`npsegnet.uncertainty.mc_dropout` (median of ``--repeat``), against
   one weight-averaged pass.

Writes ``--json`` (default ``docs/data/bayesian.json``), draws the
accuracy-against-T curve and the reliability diagrams of weight averaging and
of MC at the largest ``--uncertainty-at`` into ``--figures`` (default
``docs/img``), and prints a summary; ``--redraw`` only draws the figures and
prints the summary of an existing ``--json``. Sampling ``T = 50`` over the
101 val images at 360x480 took 1.5 minutes an image on a 2-core AMD Zen 1
(2.5 hours for val), a few times less on a machine with AVX-512.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from table1 import _median_seconds, shown_command  # same folder: benchmarks/

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        msg = f"expected ints like 1,2,5, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"sample counts must be >= 1, got {text!r}")
    return values


def train_command(args) -> list[str]:
    return [
        sys.executable, "-m", "npsegnet", "train",
        "--model", "bayesian-segnet-basic",
        "--dropout", str(args.dropout),
        "--data", str(args.data),
        "--scale", str(args.scale),
        "--flip",
        "--lr", str(args.lr),
        "--lr-schedule", "poly",
        "--epochs", str(args.epochs),
        "--val-every", str(args.epochs),
        "--seed", "0",
        "--no-progress",
        "--threads", str(args.threads),
        "--init-weights", str(args.init_weights),
        "--out", str(args.out),
    ]  # fmt: skip


def train(args) -> float | None:
    """Train unless the run is complete; the wall clock of this call's run."""
    if (args.out / "metrics.json").exists():
        return None
    cmd = train_command(args)
    if (args.out / "latest.npz").exists():
        cmd.append("--resume")
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _save_state(path: Path, key: dict, done: int, metrics: tuple) -> None:
    """The scoring's accumulators after ``done`` images, written atomically."""
    from npsegnet.checkpoint import atomic_savez

    blob = pickle.dumps((done, metrics), protocol=pickle.HIGHEST_PROTOCOL)
    atomic_savez(
        path,
        {"key": np.array(json.dumps(key, sort_keys=True)),
         "state": np.frombuffer(blob, np.uint8)},
    )  # fmt: skip


def _load_state(path: Path, key: dict):
    """``(done, metrics)`` saved for the same ``key``, else None."""
    if not path.is_file():
        return None
    with np.load(path) as f:
        if str(f["key"]) != json.dumps(key, sort_keys=True):
            print(f"{path} is of another scoring (weights or options): ignored")
            return None
        return pickle.loads(f["state"].tobytes())  # our own file, written above


def score(model, transform, data, args) -> dict:
    """Weight averaging and MC dropout after each T, over ``data``."""
    from npsegnet.metrics import SegmentationMetrics
    from npsegnet.uncertainty import (
        MCResult,
        UncertaintyMetrics,
        iter_samples,
        predictive_entropy,
        softmax,
    )

    K, ignore = data.num_classes, data.ignore_index
    Ts = args.samples
    at = set(args.uncertainty_at) & set(Ts)
    mc = {t: SegmentationMetrics(K, ignore, boundary=t in at) for t in Ts}
    unc = {t: UncertaintyMetrics(K, ignore) for t in sorted(at)}
    wa = SegmentationMetrics(K, ignore)
    wa_unc = UncertaintyMetrics(K, ignore)
    # Sampling T = 50 over val takes hours on a slow machine: the sums so far
    # are saved every few images and a later start continues from them. Each
    # image's masks are seeded by (seed, image), so that is the same result.
    key = {
        "samples": list(Ts),
        "uncertainty_at": sorted(at),
        "seed": args.seed,
        "scale": args.scale,
        "images": len(data),
        "weights": hashlib.sha256((args.out / "latest.npz").read_bytes()).hexdigest(),
    }
    state_path = args.out / "score_state.npz"
    start = 0
    saved = _load_state(state_path, key)
    if saved is not None:
        start, (mc, unc, wa, wa_unc) = saved
        print(f"continuing the scoring at image {start + 1}/{len(data)}", flush=True)
    for i in range(start, len(data)):
        image, label = data[i]
        x = transform(image[None]).astype(model.dtype, copy=False)
        y = label[None]
        model.eval()
        p = softmax(model.forward(x, keep_cache=False).astype(np.float64))
        labels = p.argmax(axis=1)
        wa.update(labels, y)
        wa_unc.update(
            MCResult(p, np.zeros_like(p), predictive_entropy(p), labels, 1), y
        )
        total = squares = None
        done = 0
        for chunk in iter_samples(model, x, Ts[-1], seed=(args.seed, i)):
            for s in chunk:
                total = s.copy() if total is None else total + s
                squares = s * s if squares is None else squares + s * s
                done += 1
                if done in mc:
                    mean = total / done
                    labels = mean.argmax(axis=1)
                    mc[done].update(labels, y)
                    if done in unc:
                        variance = np.maximum(squares / done - mean * mean, 0.0)
                        result = MCResult(
                            mean, variance, predictive_entropy(mean), labels, done
                        )
                        unc[done].update(result, y)
        if (i + 1) % args.save_every == 0 and i + 1 < len(data):
            _save_state(state_path, key, i + 1, (mc, unc, wa, wa_unc))
        if (i + 1) % 10 == 0:
            print(f"scored {i + 1}/{len(data)} images", flush=True)
    return {
        "weight_averaging": {**wa.compute(), "uncertainty": wa_unc.compute()},
        "mc": {
            str(t): {
                **mc[t].compute(),
                **({"uncertainty": unc[t].compute()} if t in unc else {}),
            }
            for t in Ts
        },
    }


def timing(model, transform, data, args) -> dict:
    """Seconds per image: one weight-averaged pass, and MC for each T."""
    from npsegnet.uncertainty import mc_dropout

    image, _ = data[0]
    x = transform(image[None]).astype(model.dtype, copy=False)

    model.eval()
    out = {
        "weight_averaging": _median_seconds(
            lambda: model.forward(x, keep_cache=False), args.repeat
        )
    }
    for t in args.time_samples:
        out[str(t)] = _median_seconds(
            lambda t=t: mc_dropout(model, x, t, seed=0), args.repeat
        )
    return out


def draw_figures(result: dict, folder: Path) -> list[Path]:
    """The curve of accuracy against T and the reliability diagrams, as PNGs."""
    from npsegnet.viz import plot_accuracy_vs_samples, plot_reliability

    scores = result["scores"]
    Ts = sorted(int(t) for t in scores["mc"])
    keys = METRICS[:3]
    curve = {
        "samples": Ts,
        "mc": {k: [scores["mc"][str(t)][k] for t in Ts] for k in keys},
        "weight_averaging": {k: scores["weight_averaging"][k] for k in keys},
    }
    folder.mkdir(parents=True, exist_ok=True)
    figures = {"bayesian_accuracy_vs_samples.png": plot_accuracy_vs_samples(curve)}
    with_unc = [t for t in Ts if "uncertainty" in scores["mc"][str(t)]]
    wa = scores["weight_averaging"]["uncertainty"]["reliability"]
    figures["bayesian_reliability_wa.png"] = plot_reliability(wa, "weight averaging")
    if with_unc:
        t = with_unc[-1]
        mc = scores["mc"][str(t)]["uncertainty"]["reliability"]
        figures["bayesian_reliability_mc.png"] = plot_reliability(
            mc, f"MC dropout, T = {t}"
        )
    paths = []
    for name, fig in figures.items():
        fig.savefig(folder / name)
        paths.append(folder / name)
    return paths


def markdown(result: dict) -> str:
    """The table of docs/results.md: one row for weight averaging, one per T."""
    scores, seconds = result["scores"], result["seconds_per_image"]

    def row(name: str, m: dict, t: str | None) -> str:
        cells = [f"{100 * m[k]:.1f}" if m.get(k) is not None else "" for k in METRICS]
        u = m.get("uncertainty")
        cells += (
            [f"{u['auroc_entropy']:.3f}",
             "" if t is None else f"{u['auroc_variance']:.3f}",
             f"{100 * u['ece']:.2f}"]
            if u else ["", "", ""]
        )  # fmt: skip
        s = seconds.get("weight_averaging" if t is None else t)
        cells.append("" if s is None else f"{s:.2f}")
        return f"| {name} | " + " | ".join(cells) + " |"

    head = (
        "| prediction | G | C | mIoU | BF | AUROC entropy | AUROC variance "
        "| ECE % | s/image |\n|" + "---|" * 9
    )
    lines = [head, row("weight averaging (1 pass)", scores["weight_averaging"], None)]
    for t, m in sorted(scores["mc"].items(), key=lambda kv: int(kv[0])):
        lines.append(row(f"MC, T = {t}", m, t))
    return "\n".join(lines)


def summary(result: dict) -> None:
    print(markdown(result))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "camvid")
    parser.add_argument("--init-weights", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bayesian")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samples", type=_ints, default=_ints("1,2,3,4,5,6,8,10,15,20,30,40,50")
    )
    parser.add_argument("--uncertainty-at", type=_ints, default=_ints("10,50"))
    parser.add_argument("--time-samples", type=_ints, default=_ints("1,2,5,10,20,50"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--save-every",
        type=int,
        default=5,
        help="save the scoring's sums every N images (<out>/score_state.npz); "
        "a later start continues from them",
    )
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "data" / "bayesian.json"
    )
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="only draw the figures of an existing --json and print its summary",
    )
    args = parser.parse_args(argv)
    if args.redraw:
        if not args.json.is_file():
            parser.error(f"--redraw: no such file {args.json}")
        result = json.loads(args.json.read_text())
        for path in draw_figures(result, args.figures):
            print("drew", path)
        summary(result)
        return 0
    if args.init_weights is None:
        parser.error("--init-weights is required (unless --redraw)")
    if not args.init_weights.is_file():
        parser.error(f"--init-weights: no such file {args.init_weights}")

    from npsegnet.data import CamVid, make_transform
    from npsegnet.inference import load_for_inference, resolve_normalization

    wall = train(args)
    model, config = load_for_inference(args.out / "latest.npz")
    transform = make_transform(resolve_normalization(config, None))
    data = CamVid(args.data, split="val", scale=args.scale)
    result = {
        "command": shown_command(train_command(args)),
        "train_wall_seconds": wall,
        "scale": args.scale,
        "seed": args.seed,
        "scores": score(model, transform, data, args),
        "seconds_per_image": timing(model, transform, data, args),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print("wrote", args.json)
    (args.out / "score_state.npz").unlink(missing_ok=True)
    for path in draw_figures(result, args.figures):
        print("drew", path)
    summary(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
