"""Model cost as the papers report it: parameters (millions) and multiply-accumulates (GMACs).

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of convolutions and matrix
products (biases, normalisation and activations are not counted), so MACs are its total divided by 2.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def _example_inputs(
    inputs: Sequence[int] | torch.Tensor | Sequence[torch.Tensor], in_channels: int, batch: int
) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    inputs = tuple(inputs)
    if len(inputs) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in inputs):
        height, width = inputs
        if height <= 0 or width <= 0 or in_channels <= 0 or batch <= 0:
            raise ValueError(
                f"input size {height}x{width}, in_channels {in_channels}, batch {batch}: all must be positive"
            )
        # Random rather than zero images: some models' work depends on the data (e.g. how many peaks survive).
        generator = torch.Generator().manual_seed(0)
        return (torch.rand(batch, in_channels, height, width, generator=generator),)
    if inputs and all(isinstance(v, torch.Tensor) for v in inputs):
        return inputs
    raise TypeError(f"inputs must be an (H, W) pair of ints, a tensor or a tuple of tensors, got {inputs!r}")


def count_macs(
    model: nn.Module,
    inputs: Sequence[int] | torch.Tensor | Sequence[torch.Tensor],
    *,
    in_channels: int = 3,
    batch: int = 1,
) -> dict[str, float]:
    """Multiply-accumulates of one forward pass and the parameter count.

    Args:
        model: measured on a CPU copy in eval mode without gradients; ``model`` itself is not changed.
        inputs: an input size ``(H, W)`` in pixels (a random ``(batch, in_channels, H, W)`` image is used), or the
            example input tensor, or a tuple of tensors passed as ``model(*inputs)``.
        in_channels, batch: shape of the generated image when ``inputs`` is a size.

    Returns:
        ``{"gmacs": MACs / 1e9, "params_m": parameters / 1e6}``.
    """
    example = tuple(t.cpu() for t in _example_inputs(inputs, in_channels, batch))
    measured = copy.deepcopy(model).cpu().eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        measured(*example)
    macs = counter.get_total_flops() / 2
    return {"gmacs": macs / 1e9, "params_m": count_params(model) / 1e6}


def count_macs_meta(build: Callable[[], nn.Module], inputs: Sequence[int], *, in_channels: int = 3,
                    batch: int = 1) -> dict[str, float]:
    """:func:`count_macs` without arithmetic: ``build()`` runs on PyTorch's ``meta`` device, so the model holds
    no memory and the forward pass only propagates shapes. Paper-size models are counted in about a second on any
    machine. Only for models whose work does not depend on the data's values; ``inputs`` is ``(H, W)``."""
    height, width = (int(v) for v in inputs)
    with torch.device("meta"):
        model = build().eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.empty(batch, in_channels, height, width, device="meta"))
    return {"gmacs": counter.get_total_flops() / 2 / 1e9, "params_m": count_params(model) / 1e6}
