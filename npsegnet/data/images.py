"""Reading images: any PIL mode as 8-bit RGB, image files as float arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_image", "to_rgb8"]

#: PIL modes of images with more than 8 bits per sample, and their full scale.
_WIDE_MODES = {
    "I;16": 65535,
    "I;16L": 65535,
    "I;16B": 65535,
    "I;16N": 65535,
    "I": 65535,
    "F": 1.0,
}


def to_rgb8(im):
    """A PIL image of any mode as an 8-bit RGB PIL image, keeping its range.

    ``Image.convert("RGB")`` clips 16-bit greyscale (modes ``I;16``, ``I``)
    to 255, so a 16-bit PNG would read as all white; here such samples are
    scaled from their full range (65535; 1.0 for float images) to 0..255
    first. Other modes (L, P, RGBA, CMYK, ...) convert as Pillow converts them.
    """
    from PIL import Image

    if im.mode == "RGB":
        return im.copy()
    full = _WIDE_MODES.get(im.mode)
    if full is None:
        return im.convert("RGB")
    a = np.asarray(im, dtype=np.float64)
    grey = np.clip(np.round(a * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def read_image(path) -> np.ndarray:
    """Read an image file as float32 ``(3, H, W)`` RGB in ``[0, 1]``.

    Parameters
    ----------
    path : str or Path
        Any format Pillow reads; 16-bit greyscale keeps its range
        (:func:`to_rgb8`).

    Returns
    -------
    ndarray of shape (3, H, W), float32

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` is a folder, or Pillow cannot read it as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder; give image files (a shell glob such as "
            f"{path}/*.png names every image in it)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
