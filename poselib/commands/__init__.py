"""Command-line faces of poselib: one module per ``poselib`` sub-command (see :mod:`poselib.cli`)."""
