"""ImageNet weights of torchvision's VGG16 into SegNet's encoder.

SegNet's encoder is VGG16's 13 convolutional layers (paper §3), so it can
start from ImageNet weights: :func:`load_vgg16_into` copies torchvision
``vgg16_bn`` (or ``vgg16``) ``features`` into :class:`~npsegnet.models.SegNet`,
and :func:`vgg16_key_map` shows which key goes where. A dict of NumPy arrays
needs no PyTorch; a ``.pth`` file is read with ``torch.load(...,
weights_only=True)``.
"""

from __future__ import annotations

from .segnet import VGG16_DEPTHS, SegNet
from .torch_bridge import import_torch, to_numpy


def vgg16_key_map(batch_norm: bool = True) -> dict[str, str]:
    """npsegnet SegNet encoder keys → torchvision ``vgg16(_bn)`` keys.

    torchvision's ``features`` is one ``Sequential``: per convolution a
    ``Conv2d`` (then ``BatchNorm2d`` with ``batch_norm``) and a ``ReLU``, and a
    ``MaxPool2d`` after each stage. So ``enc1.conv1`` is ``features.0``,
    ``enc1.bn1`` is ``features.1``, ``enc1.conv2`` is ``features.3`` (with BN;
    ``features.2`` without), and so on through the 13 convolutions.
    """
    mapping = {}
    index = 0
    for k, depth in enumerate(VGG16_DEPTHS, start=1):
        for j in range(1, depth + 1):
            for p in ("weight", "bias"):
                mapping[f"enc{k}.conv{j}.{p}"] = f"features.{index}.{p}"
            if batch_norm:
                for p in ("weight", "bias", "running_mean", "running_var"):
                    mapping[f"enc{k}.bn{j}.{p}"] = f"features.{index + 1}.{p}"
                index += 3
            else:
                index += 2
        index += 1  # the stage's MaxPool2d
    return mapping


def load_vgg16_into(model, path_or_state_dict) -> list[str]:
    """Initialise SegNet's encoder with torchvision VGG16 weights, in place.

    Parameters
    ----------
    model : SegNet
        With ``in_channels=3`` and the default ``channels``.
    path_or_state_dict : str, os.PathLike or dict
        A torchvision ``vgg16_bn`` or ``vgg16`` state dict, or the ``.pth``
        file holding one (read with ``torch.load(..., weights_only=True)``,
        which never runs code from the file). Values may be tensors or NumPy
        arrays; a dict of arrays needs no PyTorch. Keys outside ``features``
        (the fully connected ``classifier``) are ignored.

    Returns
    -------
    list of str
        The npsegnet keys that were set.

    Notes
    -----
    With ``vgg16_bn`` weights the convolutions and the batch-norm scale,
    shift and running statistics are copied. Plain ``vgg16`` has no
    batch-norm: only the convolutions are copied and the encoder's batch-norm
    layers keep their initial values (scale 1, shift 0, running mean 0,
    running variance 1), as when SegNet was trained from VGG16 in Caffe.
    The decoder is never touched.
    """
    if not isinstance(model, SegNet):
        raise TypeError(
            f"model must be a SegNet (VGG16 encoder), got {type(model).__name__}"
        )
    if isinstance(path_or_state_dict, dict):
        state = path_or_state_dict
        source = "the state dict"
    else:
        torch = import_torch()
        source = str(path_or_state_dict)
        state = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{source} does not hold a state dict")
    batch_norm = "features.1.running_mean" in state
    mapping = vgg16_key_map(batch_norm)
    missing = [v for v in mapping.values() if v not in state]
    if missing:
        raise ValueError(
            f"{source} is not a torchvision vgg16{'_bn' if batch_norm else ''} "
            f"state dict: missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    own = {**model.params, **model.buffers}
    arrays = {ours: to_numpy(state[theirs]) for ours, theirs in mapping.items()}
    wrong = [
        f"{ours} ({mapping[ours]}): {a.shape} in VGG16, {own[ours].shape} in the model"
        for ours, a in arrays.items()
        if a.shape != own[ours].shape
    ]
    if wrong:
        raise ValueError(
            "VGG16 weights do not fit this SegNet (they need in_channels=3 and "
            "channels=(64, 128, 256, 512, 512)): " + "; ".join(wrong[:3])
        )
    for ours, a in arrays.items():
        own[ours][...] = a
    return list(arrays)
