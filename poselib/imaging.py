"""Image tensors: ImageNet normalisation shared by data loaders, models' callers and figures."""

from __future__ import annotations

import numpy as np
import torch

#: RGB mean and standard deviation of ImageNet, on the 0..1 scale (torchvision's pretrained backbones expect these).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8`` RGB image ``(H, W, 3)`` to a normalised float tensor ``(3, H, W)``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: normalised ``(3, H, W)`` back to a ``uint8`` RGB image ``(H, W, 3)``."""
    mean = torch.tensor(IMAGENET_MEAN, device=tensor.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=tensor.device).view(3, 1, 1)
    image = (tensor.detach().float() * std + mean).clamp(0, 1).mul(255.0).round()
    return image.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
