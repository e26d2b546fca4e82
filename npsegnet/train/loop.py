"""The training loop: epochs of SGD steps, validation, checkpoints, the end.

:class:`_Run` holds the state of one run, set up step by step by
:mod:`npsegnet.train.prepare`; :func:`train` drives it.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..config import set_threads
from ..data import make_dataset, make_transform
from ..inference import WEIGHTS_METADATA_KEYS, evaluate_model, format_metrics
from .bn import recompute_bn_statistics
from .config import TrainConfig, _augment, _config_to_json
from .figures import save_figures
from .interrupt import TrainingInterrupted, _SigintGuard
from .prepare import (
    class_weights,
    data_spec,
    initial_state,
    input_normalization,
    learning_rate,
    make_loss,
    make_optimizer,
    resolve_config,
    run_model,
)

__all__ = ["train"]


def _summary(val: dict | None) -> dict | None:
    if val is None:
        return None
    keys = ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1")
    return {k: val[k] for k in keys}


def _fmt_pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


class _Run:
    """State of one run: built from a config, or from a checkpoint to resume."""

    def __init__(self, cfg: TrainConfig, callback=None, log=print):
        from ..memory import check_memory

        self.log = log
        self.callback = callback
        self.out = cfg.resolved_out()
        cfg, ckpt = resolve_config(cfg, self.out)
        self.cfg = cfg

        self.data = data = data_spec(cfg)
        self.train_set = make_dataset(data, "train")
        self.val_set = make_dataset(data, "val") if cfg.validate else None
        ds = self.train_set
        # Build the model first: a run that cannot fit in memory is refused
        # before any pass over the data.
        self.model, model_kwargs = run_model(cfg, ckpt, ds.num_classes)
        self.augment = _augment(cfg, ds.ignore_index)
        step_size = cfg.crop if cfg.crop is not None else ds.image_size
        check_memory(
            self.model,
            cfg.batch_size,
            step_size,
            True,
            "--scale, --crop or --batch-size",
        )

        normalization = input_normalization(cfg, ckpt, ds)
        weights = class_weights(cfg, ckpt, ds)
        self.transform = make_transform(normalization)
        self.lr = learning_rate(cfg)
        self.config = {
            "train": _config_to_json(cfg),
            "model": cfg.model,
            "model_kwargs": model_kwargs,
            "normalization": normalization,
            "class_weights": weights,
            "class_names": list(ds.class_names),
            "num_classes": ds.num_classes,
            "ignore_index": ds.ignore_index,
            "data": data,
            "lr": self.lr,
        }
        self.loss = make_loss(self.model, weights, ds.ignore_index)
        self.optimizer = make_optimizer(self.model, self.lr, cfg)
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict] = []
        self.epoch = 0  # completed epochs
        self.step = 0  # completed steps of epoch self.epoch + 1
        self.partial: dict = {}
        self.best = None  # best validation mIoU so far
        if ckpt is None and cfg.init_weights is not None:
            self.model.load_state_dict(initial_state(cfg.init_weights, self.model))
            self.log(f"initial weights from {cfg.init_weights}")
        if ckpt is not None:
            self.restore(ckpt)

    def restore(self, ckpt: dict) -> None:
        """Continue from ``ckpt``: weights, momenta, generator, history, step."""
        from ..checkpoint import rng_from_state

        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.rng = rng_from_state(ckpt["rng_state"])
        self.history = ckpt["history"]
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.partial = ckpt["extra"].get("partial", {})
        self.best = ckpt["extra"].get("best_miou")
        where = f"epoch {self.epoch}" + (
            f", step {self.step} of epoch {self.epoch + 1}" if self.step else ""
        )
        self.log(f"resuming {self.out / 'latest.npz'} ({where})")

    # -- checkpoints --------------------------------------------------------
    def save(self, path, rng_state: dict, step: int = 0, partial=None) -> Path:
        """Write a checkpoint of the current state (``rng_state``: epoch start)."""
        from ..checkpoint import rng_from_state, save_checkpoint

        rng = rng_from_state(rng_state)
        extra = {"partial": partial or {}, "best_miou": self.best}
        return save_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            step=step,
            rng=rng,
            history=self.history,
            config=self.config,
            extra=extra,
        )

    # -- one epoch ----------------------------------------------------------
    def run_epoch(self, guard) -> None:
        """Train one epoch (or its remainder after a resume), then evaluate."""
        from tqdm import tqdm

        from ..data import batches
        from ..data.augment import batch_generator

        cfg = self.cfg
        epoch = self.epoch + 1
        epoch_rng_state = copy.deepcopy(self.rng.bit_generator.state)
        skip = self.step
        partial = self.partial or {"losses": [], "images": 0, "seconds": 0.0}
        self.partial = {}
        steps = math.ceil(len(self.train_set) / cfg.batch_size)
        buffers = self.model.buffers
        # Batch-norm running statistics as of the last completed step: forward
        # moves them, so an interrupted step must put them back.
        snapshot = {k: v.copy() for k, v in buffers.items()}
        phase = "idle"
        bar = tqdm(
            total=steps,
            initial=skip,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="step",
            file=sys.stderr,
            disable=None if cfg.progress else True,
            leave=False,
        )
        t_start = time.perf_counter()
        try:
            with bar:
                it = batches(self.train_set, cfg.batch_size, shuffle=True, rng=self.rng)
                for index, (x, y) in enumerate(it):
                    if index < skip:
                        continue  # done before the interruption
                    t0 = time.perf_counter()
                    if self.augment is not None:
                        x, y = self.augment(
                            x, y, batch_generator(cfg.seed, epoch, index)
                        )
                    phase = "forward"
                    loss = self.train_step(x, y, epoch, index)
                    self._check_finite("gradient", self.model.grads, epoch, index, loss)
                    phase = "update"
                    self.optimizer.lr = self.lr_at(epoch, index, steps)
                    self.optimizer.step()
                    self._check_finite("weights", self.model.params, epoch, index, loss)
                    phase = "idle"
                    for k, v in buffers.items():
                        snapshot[k][...] = v
                    self.step = index + 1
                    partial["losses"].append(loss)
                    partial["images"] += len(x)
                    dt = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{len(x) / dt:.1f}")
                    bar.update(1)
                    if self.callback is not None:
                        self.callback({"epoch": epoch, "step": self.step, "loss": loss})
                    if guard.requested:
                        raise KeyboardInterrupt
            phase = "epoch-end"
            partial["seconds"] += time.perf_counter() - t_start
            self.end_epoch(epoch, partial)
        except KeyboardInterrupt:
            self.interrupted(epoch, steps, phase, partial, snapshot, epoch_rng_state)

    def lr_at(self, epoch: int, index: int, steps: int) -> float:
        """The learning rate of step ``index`` (0-based) of epoch ``epoch``."""
        from ..optim import scheduled_lr

        cfg = self.cfg
        return scheduled_lr(
            self.lr,
            (epoch - 1) * steps + index,
            cfg.epochs * steps,
            cfg.lr_schedule,
            warmup_steps=round(cfg.warmup_epochs * steps),
            step_every=cfg.lr_step_epochs * steps,
            gamma=cfg.lr_gamma,
        )

    def train_step(self, x, y, epoch: int, index: int) -> float:
        """Forward, loss and backward of one batch (the update is separate)."""
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model.forward(self.transform(x).astype(self.model.dtype))
        loss = float(self.loss.forward(logits, y))
        if not math.isfinite(loss):
            self._diverged(f"the loss became {loss}", epoch, index)
        self.model.backward(self.loss.backward())
        return loss

    def _check_finite(self, what, arrays: dict, epoch: int, index: int, loss) -> None:
        """Stop the run when a gradient or weight holds NaN/inf (divergence)."""
        for key, value in arrays.items():
            if not np.isfinite(value).all():
                self._diverged(
                    f"the {what} of {key} became non-finite (loss {loss:.4g})",
                    epoch,
                    index,
                )

    def _diverged(self, what: str, epoch: int, index: int):
        latest = self.out / "latest.npz"
        kept = (
            f"the last finite checkpoint, {latest}, is kept"
            if latest.is_file()
            else "no checkpoint was written yet"
        )
        raise FloatingPointError(
            f"training diverged: {what} at epoch {epoch}, step {index + 1}; {kept}. "
            f"The learning rate ({self.lr}) is too high for this setup: try a "
            "smaller --lr (or a warm-up), or check the input data for NaN"
        )

    def interrupted(self, epoch, steps, phase, partial, snapshot, epoch_rng_state):
        """Save the last consistent state and raise :class:`TrainingInterrupted`."""
        latest = self.out / "latest.npz"
        if self.epoch == epoch:
            # The epoch was recorded before the interruption: a boundary.
            path = self.save(latest, self.rng.bit_generator.state)
            where = f"after epoch {epoch}"
        elif phase == "update":
            # Parameters are half updated: nothing consistent to save.
            raise TrainingInterrupted(
                f"interrupted inside an optimiser step of epoch {epoch}; the last "
                f"checkpoint ({latest}) is kept",
                checkpoint=latest if latest.exists() else None,
                history=self.history,
            ) from None
        else:
            for k, v in self.model.buffers.items():
                v[...] = snapshot[k]
            path = self.save(latest, epoch_rng_state, self.step, partial)
            where = f"at epoch {epoch}, step {self.step} of {steps}"
        raise TrainingInterrupted(
            f"interrupted {where}: checkpoint saved to {path}; continue with --resume",
            checkpoint=path,
            history=self.history,
        ) from None

    def end_epoch(self, epoch: int, partial: dict) -> None:
        """Recompute BN statistics, validate, record the epoch, checkpoint."""
        cfg = self.cfg
        losses = partial["losses"]
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "step_losses": losses,
            "lr": self.optimizer.lr,  # of the epoch's last step
            "seconds": partial["seconds"],
            "images_per_second": partial["images"] / max(partial["seconds"], 1e-9),
        }
        validate = self.val_set is not None and (
            epoch % cfg.val_every == 0 or epoch >= cfg.epochs
        )
        if cfg.recompute_bn and (validate or epoch >= cfg.epochs):
            recompute_bn_statistics(
                self.model, self.train_set, self.transform, cfg.batch_size, cfg.progress
            )
        val = None
        if validate:
            val = evaluate_model(
                self.model,
                self.val_set,
                self.transform,
                batch_size=cfg.batch_size,
                progress=cfg.progress,
                desc="validate",
            )
            record["val"] = _summary(val)
        # Commit: from here on the epoch counts as done.
        self.history.append(record)
        self.epoch, self.step = epoch, 0
        self.last_val = val
        improved = val is not None and (val["mean_iou"] or 0.0) > (self.best or 0.0)
        if improved or (val is not None and self.best is None):
            self.best = val["mean_iou"] or 0.0
            improved = True
        state = self.rng.bit_generator.state
        self.save(self.out / "latest.npz", state)
        if improved:
            self.save(self.out / "best.npz", state)
        if cfg.save_every and epoch % cfg.save_every == 0:
            self.save(self.out / f"epoch_{epoch:03d}.npz", state)
        line = (
            f"epoch {epoch:3d}/{cfg.epochs}  loss {record['train_loss']:.4f}  "
            f"{record['images_per_second']:.1f} img/s"
        )
        if val is not None:
            line += (
                f"  val G {_fmt_pct(val['global_accuracy'])}  C "
                f"{_fmt_pct(val['class_average_accuracy'])}  mIoU "
                f"{_fmt_pct(val['mean_iou'])}  BF {_fmt_pct(val['boundary_f1'])}"
            )
        self.log(line)

    # -- the end ------------------------------------------------------------
    def finish(self) -> dict | None:
        """Write history.json, metrics.json and the figures; return the metrics."""
        cfg = self.cfg
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        val = getattr(self, "last_val", None)
        if val is None and self.val_set is not None:
            # A resumed run that had nothing left to train: evaluate once.
            val = evaluate_model(
                self.model, self.val_set, self.transform, cfg.batch_size
            )
        if val is not None:
            result = dict(val, epoch=self.epoch, split="val", model=cfg.model)
            (self.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
            where = "synthetic" if cfg.data is None else str(cfg.data)
            self.log(
                format_metrics(
                    val,
                    f"validation metrics after epoch {self.epoch} ({where}, "
                    f"{val['num_images']} images):",
                )
            )
        if cfg.figures:
            save_figures(self)
        self.export_weights()
        self.log(f"outputs in {self.out}")
        return val

    def export_weights(self) -> None:
        """``model.npz``: the weights alone, with what inference needs to know."""
        from ..models import save_weights

        save_weights(
            self.model,
            self.out / "model.npz",
            metadata={k: self.config[k] for k in WEIGHTS_METADATA_KEYS},
        )


def train(config: TrainConfig | None = None, callback=None, log=print) -> list[dict]:
    """Train a model as ``config`` says; return the history (one dict per epoch).

    Parameters
    ----------
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``: SegNet-Basic on the synthetic shapes.
    callback : callable, optional
        Called after every SGD step with ``{"epoch", "step", "loss"}``.
        Raising ``KeyboardInterrupt`` from it behaves as Ctrl-C.
    log : callable
        Receives the text lines of the run (epoch summaries, final metrics).

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``train_loss``, ``step_losses``, ``lr``,
        ``seconds``, ``images_per_second`` and ``val`` (G, C, mIoU, BF as
        fractions) when validation runs.

    Raises
    ------
    TrainingInterrupted
        After Ctrl-C (or a ``KeyboardInterrupt`` from ``callback``), once the
        checkpoint is written.
    """
    cfg = TrainConfig() if config is None else config
    previous_threads = set_threads(cfg.threads)
    out = cfg.resolved_out()
    created = not out.exists()
    try:
        run = _Run(cfg, callback=callback, log=log)
        run.out.mkdir(parents=True, exist_ok=True)
        cfg = run.cfg
        log(
            f"{cfg.model} ({run.model.num_params():,} parameters) on "
            f"{'synthetic shapes' if cfg.data is None else cfg.data}: "
            f"{len(run.train_set)} training images of "
            f"{run.train_set.image_size[0]}x{run.train_set.image_size[1]}, "
            f"lr {run.lr}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
            f"normalisation {run.config['normalization']['kind']}"
        )
        with _SigintGuard() as guard:
            while run.epoch < cfg.epochs:
                run.run_epoch(guard)
                if guard.requested:
                    path = run.out / "latest.npz"
                    raise TrainingInterrupted(
                        f"interrupted after epoch {run.epoch}: checkpoint saved to "
                        f"{path}; continue with --resume",
                        checkpoint=path,
                        history=run.history,
                    )
        run.finish()
    except BaseException:
        # A run that failed before writing anything leaves no empty --out behind.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        import numba

        numba.set_num_threads(previous_threads)
    return run.history
