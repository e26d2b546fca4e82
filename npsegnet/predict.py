"""``npsegnet predict``: colour-coded label maps and overlays for images.

For each input image it writes, into ``--out``:

* ``<name>_labels.png``: the predicted class of every pixel, colour-coded
  (CamVid's palette for a CamVid model, :func:`npsegnet.viz.palette` for
  others), and
* ``<name>_overlay.png``: those colours blended over the image, and
* ``<name>_classes.png``: the class indices themselves, one byte per pixel
  (values ``0 .. K-1``, PIL mode ``L``), the format of CamVid's
  ``testannot/`` and of benchmark servers: score a folder of them against
  the annotations with :func:`npsegnet.metrics.score_label_files`.

With ``--mc-samples T`` the labels are those of Monte-Carlo dropout (the
mean softmax of ``T`` stochastic passes, Bayesian SegNet), and
``<name>_uncertainty.png`` is added: the predictive entropy of every pixel,
from 0 (black, sure) to log K (bright yellow, uniform), in the inferno colour
map.

All have the size of the input image. The image is resized by ``--scale``
(default: the factor the model was trained at) with area averaging, as
:class:`npsegnet.data.CamVid` does, normalised as in training, and the
predicted labels are brought back to the input's size by nearest neighbour.

Usage::

    npsegnet predict --checkpoint runs/segnet-basic-camvid/best.npz \\
        street1.png street2.jpg --out predictions/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import set_threads
from .data import make_transform, read_image
from .errors import UsageError, guarded
from .inference import load_for_inference, predict_labels, resolve_normalization

__all__ = ["add_arguments", "predict_image", "read_image", "run"]


def _resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Area-average resize of a ``(3, H, W)`` float image in [0, 1]."""
    from PIL import Image

    if image.shape[1:] == tuple(size_hw):
        return image
    u8 = np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)
    pil = Image.fromarray(u8).resize(size_hw[::-1], Image.Resampling.BOX)
    return np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)


def _scaled_size(model, shape_hw, scale: float, name) -> tuple[int, int]:
    """The size the network sees; a clear error when it is too small."""
    h, w = shape_hw
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if min(size) < model.min_size:
        raise ValueError(
            f"{name}: the image is {size[0]}x{size[1]} after scaling by {scale}, "
            f"but {model.name} needs at least {model.min_size}x{model.min_size}"
        )
    return size


def predict_image(
    model, image: np.ndarray, transform, scale: float = 1.0, mc_samples=None, seed=0
):
    """Labels of one image at its own size (and its uncertainty with MC).

    Parameters
    ----------
    model : SegNetBasic or SegNet
        In eval mode.
    image : ndarray of shape (3, H, W), float32 in [0, 1]
    transform : callable
        The input normalisation (:func:`npsegnet.data.make_transform`).
    scale : float
        The network sees the image resized by this factor.
    mc_samples : int, optional
        Monte-Carlo dropout with this many samples
        (:func:`npsegnet.uncertainty.mc_dropout`, seeded with ``seed``).

    Returns
    -------
    labels : ndarray of shape (H, W), int64
    entropy : ndarray of shape (H, W), float64
        Only with ``mc_samples``: the predictive entropy (nats), resized to
        the image by nearest neighbour like the labels.
    """
    from PIL import Image

    h, w = image.shape[1:]
    size = _scaled_size(model, (h, w), scale, "image")
    x = _resize(image, size)[None]
    entropy = None
    if mc_samples:
        from .uncertainty import mc_dropout

        res = mc_dropout(model, transform(x), mc_samples, seed=seed)
        labels, entropy = res.labels[0], res.entropy[0].astype(np.float32)
    else:
        labels = predict_labels(model, x, transform)[0]
    if size != (h, w):
        pil = Image.fromarray(labels.astype(np.uint8))
        labels = np.asarray(pil.resize((w, h), Image.Resampling.NEAREST))
        if entropy is not None:
            pil = Image.fromarray(entropy, mode="F")
            entropy = np.asarray(pil.resize((w, h), Image.Resampling.NEAREST))
    labels = labels.astype(np.int64)
    return labels if entropy is None else (labels, entropy.astype(np.float64))


def add_arguments(parser) -> None:
    """Options of ``npsegnet predict``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="training checkpoint (latest.npz, best.npz) or weights file",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="predictions",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize factor the network sees (default: the training one)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="weight of the label colours in the overlay (default: %(default)s)",
    )
    parser.add_argument(
        "--normalization",
        choices=("lrn", "meanstd", "none"),
        default=None,
        help="input normalisation for a weights file that does not record it",
    )
    parser.add_argument(
        "--mc-samples", type=int, default=None, metavar="T",
        help="Monte-Carlo dropout with T samples; also writes <name>_uncertainty.png",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of --mc-samples (default: 0)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="Numba threads (default: all)"
    )


def run(args) -> int:
    """Entry point of ``npsegnet predict``."""
    return guarded(_run, args)


def _run(args) -> int:
    from PIL import Image

    from . import viz
    from .data import CAMVID_CLASS_NAMES

    set_threads(args.threads)
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.scale is not None and not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    if args.mc_samples is not None and args.mc_samples < 1:
        raise UsageError(f"--mc-samples must be >= 1, got {args.mc_samples}")
    model, config = load_for_inference(args.checkpoint)
    transform = make_transform(resolve_normalization(config, args.normalization))
    data = config.get("data") or {}
    scale = args.scale if args.scale is not None else data.get("scale", 1.0)
    names = config.get("class_names")
    if names is not None and tuple(names) == tuple(CAMVID_CLASS_NAMES):
        palette = viz.CAMVID_PALETTE
    else:
        palette = viz.palette(model.num_classes)

    # Read and size every image first: a bad file fails before any is written.
    images = [(Path(p), read_image(p)) for p in args.images]
    sizes = {_scaled_size(model, im.shape[1:], scale, p) for p, im in images}
    from .memory import check_memory

    check_memory(model, 1, max(sizes, key=lambda s: s[0] * s[1]), False, "--scale")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for path, image in images:
        stem = path.stem
        k = 1
        while stem in used:  # two inputs with the same name from two folders
            k += 1
            stem = f"{path.stem}-{k}"
        used.add(stem)
        entropy = None
        if args.mc_samples:
            labels, entropy = predict_image(
                model, image, transform, scale, args.mc_samples, args.seed
            )
        else:
            labels = predict_image(model, image, transform, scale)
        colour = viz.label_to_color(labels, palette)
        blend = viz.overlay(image, labels, alpha=args.alpha, palette=palette)
        label_path = out / f"{stem}_labels.png"
        overlay_path = out / f"{stem}_overlay.png"
        classes_path = out / f"{stem}_classes.png"
        Image.fromarray(colour).save(label_path)
        Image.fromarray(blend).save(overlay_path)
        Image.fromarray(labels.astype(np.uint8), mode="L").save(classes_path)
        written = [label_path, overlay_path, classes_path]
        if entropy is not None:
            import matplotlib

            # 0 (sure) .. log K (uniform over the K classes)
            shade = matplotlib.colormaps["inferno"](entropy / np.log(model.num_classes))
            unc_path = out / f"{stem}_uncertainty.png"
            Image.fromarray((shade[..., :3] * 255).round().astype(np.uint8)).save(
                unc_path
            )
            written.append(unc_path)
        print(f"{path} -> " + ", ".join(map(str, written)))
    return 0
