"""Named model builders, used by ``poselib flops``, ``poselib train`` and the notebooks.

A paper's module registers its models with :func:`register_model`; :func:`build_model` makes one by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int]  # (H, W) the paper measures it at
    in_channels: int
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, input_size: tuple[int, int], in_channels: int = 3, description: str = ""):
    """Decorator registering a builder ``(**kwargs) -> nn.Module`` under ``name``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, builder, tuple(input_size), in_channels, description or (builder.__doc__ or "").strip().split("\n")[0])
        return builder

    return decorate


def _ensure_loaded() -> None:
    import poselib.models  # noqa: F401  (importing the package registers every paper's models)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def build_model(name: str, *, load_pretrained: bool = True, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with builder keyword arguments ``kwargs``.

    ``load_pretrained=False`` turns a ``pretrained=True`` keyword off: the same architecture without fetching
    ImageNet weights, for callers that load a checkpoint, count operations or only read an attribute."""
    return get_entry(name).builder(**(kwargs if load_pretrained else without_pretrained(kwargs)))


def without_pretrained(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Builder keyword arguments ``kwargs`` with a ``pretrained=True`` turned off (the same architecture, no
    ImageNet download); see :func:`build_model`."""
    return {**kwargs, "pretrained": False} if kwargs.get("pretrained") else dict(kwargs)


def list_models() -> list[ModelEntry]:
    _ensure_loaded()
    return [_MODELS[n] for n in sorted(_MODELS)]
