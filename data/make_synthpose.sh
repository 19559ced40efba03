#!/usr/bin/env bash
# Render SynthPose splits up front. Notebooks and `poselib train` render a split on first use anyway
# (poselib.data.synthpose.ensure_split), so this is only for having the data ready before going offline or
# before timing something.
#
#   data/make_synthpose.sh                      # the default data set: synthpose (cpu preset)
#   data/make_synthpose.sh synthpose-mini synthpose-large
#
# Splits land in data/synthpose/<config>/<split>/ (or under $POSELIB_DATA); a split that is already there and
# current is left alone. Set PYTHON to choose the interpreter (default: the project's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [ ! -x "$PYTHON" ]; then PYTHON=python3; fi
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then configs=(synthpose); fi
for config in "${configs[@]}"; do
  for split in train val; do
    "$PYTHON" -m poselib synth --config "$config" --split "$split"
  done
done
