#!/usr/bin/env bash
# Download COCO 2017 person keypoints (annotations, train2017 and val2017 images) into data/coco, or into the
# folder given as the first argument. Extra arguments go to `poselib data coco`, e.g.
#   data/download_coco.sh data/coco --split val2017
# Sizes and MD5s are checked, an interrupted download resumes when run again, archives are removed once
# extracted (add --keep-archives to keep them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${1:-$here/coco}"
shift || true
poselib="$here/../.venv/bin/poselib"
[ -x "$poselib" ] || poselib="poselib"
exec "$poselib" data coco --root "$root" --download "$@"
