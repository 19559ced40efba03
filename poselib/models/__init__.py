"""Models: shared backbones and one module per paper. Importing this package registers every model."""

from poselib.models.registry import build_model, list_models, register_model

from poselib.models import simple_baseline  # noqa: F401,E402  (registers the Part 0 model)
from poselib.models import imhn, cmunet  # noqa: F401,E402  (registers Part II's models)
from poselib.models import multiposenet, prn  # noqa: F401,E402  (registers Part I's models)
from poselib.models import mspn, hourglass  # noqa: F401,E402  (registers Part IV's models)
from poselib.models import rsn  # noqa: F401,E402  (registers Part V's models)
from poselib.models import msa_rcnn  # noqa: F401,E402  (registers Part III's models)

__all__ = ["build_model", "list_models", "register_model"]
