"""Models: shared backbones and one module per paper. Importing this package registers every model."""

from poselib.models.registry import build_model, list_models, register_model

from poselib.models import simple_baseline  # noqa: F401,E402  (registers the Part 0 model)

__all__ = ["build_model", "list_models", "register_model"]
