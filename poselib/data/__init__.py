"""Data sets in COCO keypoint format.

Submodules, imported on demand so that ``import poselib.data.synthpose`` stays cheap:

- :mod:`poselib.data.errors`: :class:`~poselib.data.errors.DataError`, raised for bad files and records.
- :mod:`poselib.data.coco`: load and validate a COCO keypoint file (:func:`~poselib.data.coco.load_coco_keypoints`),
  read images, decode segmentations.
- :mod:`poselib.data.inspect`: counts and problems of a keypoint file and its images (``poselib data inspect``).
- :mod:`poselib.data.download`: fetch COCO 2017 person keypoints and say where its files live
  (``poselib data coco``).
- :mod:`poselib.data.transforms`: the affine augmentation shared by images, keypoints and masks.
- :mod:`poselib.data.datasets`: the top-down (one person per sample) and bottom-up (one image per sample)
  torch data sets.
- :mod:`poselib.data.synthpose`: the SynthPose renderer.
"""
