"""The data set a training run describes in its config, rebuilt by split."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

__all__ = ["SYNTHETIC_SEEDS", "make_dataset"]

#: Seeds of the synthetic splits: fixed, so that ``--seed`` changes the
#: initialisation and the shuffling of a run but never its data.
SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}


def make_dataset(data: dict, split: str, data_path=None, scale=None):
    """Build the data set of ``split`` as described by a training config.

    Parameters
    ----------
    data : dict
        The ``data`` entry of a training config: ``{"kind": "camvid", "root",
        "scale"}`` or ``{"kind": "synthetic", "num_images", "val_images",
        "image_size"}``.
    split : {"train", "val", "test"}
    data_path : str, optional
        Read CamVid from this folder instead (for a checkpoint trained on
        synthetic data: evaluate on CamVid is refused, the classes differ).
    scale : float, optional
        Override CamVid's resize factor.

    Returns
    -------
    CamVid or SyntheticShapes
    """
    from .camvid import CamVid
    from .synthetic import SyntheticShapes

    if data["kind"] == "synthetic":
        if data_path is not None:
            raise UsageError(
                "this model was trained on the synthetic data set (5 classes); "
                "it cannot be evaluated on CamVid: leave out --data"
            )
        n = data["num_images"] if split == "train" else data["val_images"]
        return SyntheticShapes(
            num_images=n,
            image_size=tuple(data["image_size"]),
            seed=data.get("seeds", SYNTHETIC_SEEDS)[split],
        )
    root = Path(data_path if data_path is not None else data["root"])
    if not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    return CamVid(root, split, scale=data["scale"] if scale is None else scale)
