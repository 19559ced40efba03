"""poselib: the library behind posebook.

Five multi-person pose estimation papers (MultiPoseNet/PRN, Simple Pose, MSA R-CNN, MSPN, RSN) rebuilt
on shared parts: SynthPose and COCO data (:mod:`poselib.data`), heatmap targets and decoders
(:mod:`poselib.codecs`), COCO evaluation (:mod:`poselib.evaluation`), one training engine
(:mod:`poselib.engine`), models (:mod:`poselib.models`), and figures (:mod:`poselib.viz`).
"""

__version__ = "0.1.0"
