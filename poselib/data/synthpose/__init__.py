"""SynthPose: procedurally rendered multi-person images labelled in COCO keypoint format.

Real COCO cannot be downloaded everywhere and trains for GPU-days, so posebook runs by default on SynthPose:
articulated 2.5-D figures with the COCO 17-keypoint skeleton (:mod:`.figure`), drawn with cv2 into an image and
a label map (:mod:`.render`) over cluttered backdrops (:mod:`.background`), composed into scenes with depth
order and occlusion (:mod:`.scene`), labelled from the label map (:mod:`.labels`) and written as COCO files
(:mod:`.writer`). Difficulty knobs and the named data sets live in :mod:`.config`; :mod:`.stats` measures a
keypoint file and :mod:`.benchmark` times rendering (``poselib bench synth``).

Typical use::

    from poselib.data.synthpose import ensure_split
    folder = ensure_split("synthpose", "val")   # folder/annotations.json, folder/images/*.jpg
"""

from poselib.data.synthpose.config import NAMED_CONFIGS, SPLITS, NamedConfig, SplitSpec, SynthConfig, get_named_config
from poselib.data.synthpose.scene import RenderedScene, render_example, render_figure, render_scene, sample_scene
from poselib.data.synthpose.writer import ensure_split, generate, split_dir

__all__ = [
    "NAMED_CONFIGS", "SPLITS", "NamedConfig", "SplitSpec", "SynthConfig", "get_named_config",
    "RenderedScene", "render_example", "render_figure", "render_scene", "sample_scene",
    "ensure_split", "generate", "split_dir",
]
