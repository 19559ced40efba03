"""Grouping: turning bottom-up keypoint detections into people, one module per algorithm (``greedy``: Simple
Pose's greedy keypoint assignment; ``prn``: MultiPoseNet's Pose Residual Network). Import the modules
directly; this package file stays minimal so each algorithm can be added independently."""
