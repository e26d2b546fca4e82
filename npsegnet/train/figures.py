"""The figures of a run, drawn by :mod:`npsegnet.viz` (no pyplot)."""

from __future__ import annotations

import numpy as np

__all__ = ["curves", "save_figures"]


def curves(history: list[dict]) -> dict[str, list]:
    """The history as :func:`npsegnet.viz.plot_training_curves` takes it.

    Per-step losses under ``loss``/``step``, per-epoch mean loss under
    ``train_loss``/``epoch`` and validation metrics as ``val_<metric>``.
    """
    losses = [v for record in history for v in record["step_losses"]]
    out = {
        "loss": losses,
        "step": list(range(1, len(losses) + 1)),
        "epoch": [record["epoch"] for record in history],
        "train_loss": [record["train_loss"] for record in history],
    }
    if any("val" in record for record in history):
        for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
            out[f"val_{key}"] = [
                (record.get("val") or {}).get(key) for record in history
            ]
        out["val_boundary_f1"] = [
            (record.get("val") or {}).get("boundary_f1") for record in history
        ]
    return out


def save_figures(run) -> None:
    """``training_curves.png`` and ``predictions.png`` in the run's folder.

    The predictions are those of the first validation images (training
    images without validation).
    """
    from .. import viz
    from ..inference import predict_labels

    fig = viz.plot_training_curves(curves(run.history))
    fig.savefig(run.out / "training_curves.png", dpi=100)
    dataset = run.val_set if run.val_set is not None else run.train_set
    k = min(run.cfg.num_figure_images, len(dataset))
    if k == 0:
        return
    items = [dataset[i] for i in range(k)]
    images = np.stack([im for im, _ in items])
    labels = np.stack([lab for _, lab in items])
    run.model.eval()
    preds = predict_labels(run.model, images, run.transform)
    run.model.train()
    fig = viz.plot_predictions(
        images,
        labels,
        preds,
        class_names=dataset.class_names,
        ignore_index=dataset.ignore_index,
    )
    fig.savefig(run.out / "predictions.png", dpi=100)
