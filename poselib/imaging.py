"""Image tensors: ImageNet normalisation shared by data loaders, models' callers and figures."""

from __future__ import annotations

import numpy as np
import torch

#: RGB mean and standard deviation of ImageNet, on the 0..1 scale (torchvision's pretrained backbones expect these).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


#: Per-channel factor and offset of the normalisation, shaped ``(3, 1, 1)`` for channel-first arrays.
_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32).reshape(3, 1, 1)
_OFFSET = (np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32).reshape(3, 1, 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8`` RGB image ``(H, W, 3)`` to a normalised float tensor ``(3, H, W)``.

    Computed in numpy: this runs once per sample in the data loader, where torch's per-op overhead on small
    tensors costs more than the arithmetic. The bytes are made channel-first before the conversion to float and
    normalised in place, by per-channel constants broadcast over whole planes: the same values bit for bit as
    normalising the interleaved array, whose innermost axis of 3 numpy handles slowly.
    """
    normalised = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
    normalised *= _SCALE
    normalised -= _OFFSET
    return torch.from_numpy(normalised)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: normalised ``(3, H, W)`` back to a ``uint8`` RGB image ``(H, W, 3)``."""
    mean = torch.tensor(IMAGENET_MEAN, device=tensor.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=tensor.device).view(3, 1, 1)
    image = (tensor.detach().float() * std + mean).clamp(0, 1).mul(255.0).round()
    return image.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
