"""``poselib predict --method M --checkpoint C IMAGES...``: poses on your own images.

Top-down methods need person boxes: pass ``--boxes FILE`` (JSON mapping an image's file name to a list of
``[x, y, w, h]`` or ``[x, y, w, h, score]``), otherwise each image is taken as one person box. Bottom-up methods
and MSA R-CNN find the people themselves; MultiPoseNet also takes its PRN's run folder (``--prn``). Writes one PNG per
image with the skeletons drawn, and ``results.json`` in COCO results format (image ids follow the order given).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from poselib.methods import METHODS

    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--checkpoint", required=True, type=Path, help="a run folder, or its final.pt / last.pt")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--boxes", type=Path, help="JSON: file name -> [[x, y, w, h(, score)], ...]")
    parser.add_argument("--prn", type=Path, help="multiposenet: PRN's run folder (--checkpoint is the network's)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--min-score", type=float, default=0.2, help="keypoints drawn above this score")


def _read_boxes(path: Path | None) -> dict[str, list[list[float]]]:
    if path is None:
        return {}
    try:
        boxes = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: cannot read boxes: {error}")
    if not isinstance(boxes, dict):
        raise SystemExit(f"{path}: expected an object mapping file names to lists of boxes")
    return boxes


def run(args: argparse.Namespace) -> int:
    import cv2

    from poselib.evaluation.results import poses_to_coco_results, write_results
    from poselib.keypoints import PERSON_CATEGORY
    from poselib.methods import get_method
    from poselib.viz import draw_poses_cv2

    if (args.prn is not None) != (args.method == "multiposenet"):
        raise SystemExit("poselib predict: --prn (PRN's run folder) is needed for multiposenet and only for it")
    method = get_method(args.method)
    if hasattr(method, "predict_command"):  # methods that bring their own image handling (detectors)
        return method.predict_command(args)
    images, decoded = [], {}
    for image_id, path in enumerate(args.images, start=1):
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"{path}: missing or not a readable image")
        decoded[image_id] = image
        height, width = image.shape[:2]
        images.append({"id": image_id, "file_name": str(path.resolve()), "width": width, "height": height})
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ann = Path(tmp) / "images.json"
        ann.write_text(json.dumps({"images": images, "annotations": [], "categories": [PERSON_CATEGORY]}))
        if hasattr(method, "predict_images"):  # bottom-up: whole images in, people out
            extra = {"prn": args.prn} if args.prn is not None else {}
            predictions = method.predict_images(args.checkpoint, ann, device=args.device, **extra)
        else:
            predictions = _predict_top_down(args, images, ann, Path(tmp) / "boxes.json")
    results = poses_to_coco_results(predictions["image_ids"], predictions["poses"], predictions["scores"])
    write_results(args.out / "results.json", results)
    for info in images:
        mine = predictions["image_ids"] == info["id"]
        rgb = cv2.cvtColor(decoded[info["id"]], cv2.COLOR_BGR2RGB)
        drawn = draw_poses_cv2(rgb, predictions["poses"][mine], min_score=args.min_score, ground_truth=False)
        target = args.out / (Path(info["file_name"]).stem + "_pose.png")
        cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"{len(results)} poses on {len(images)} images; drawings and results.json in {args.out}")
    return 0


def _predict_top_down(args: argparse.Namespace, images: list[dict], ann: Path, dets: Path) -> dict:
    """Top-down methods: one crop per box of ``--boxes`` (or the whole image), then OKS-NMS per image."""
    from poselib.data.datasets import TopDownDataset
    from poselib.methods.topdown import load_trained, nms_per_image, predict

    model, recipe = load_trained(args.checkpoint)
    boxes = _read_boxes(args.boxes)
    detections = []
    for info, path in zip(images, args.images):
        width, height = info["width"], info["height"]
        for box in boxes.get(path.name, boxes.get(str(path), [[0, 0, width, height, 1.0]])):
            if len(box) not in (4, 5) or box[2] <= 0 or box[3] <= 0:
                raise SystemExit(f"{args.boxes}: {path.name}: bad box {box}; expected [x, y, w, h(, score)] with w, h > 0")
            detections.append({"image_id": info["id"], "category_id": 1, "bbox": list(map(float, box[:4])),
                               "score": float(box[4]) if len(box) == 5 else 1.0})
    dets.write_text(json.dumps(detections))
    dataset = TopDownDataset(ann, "/", input_size=recipe.input_size, boxes=dets)
    return nms_per_image(predict(model, recipe, dataset, device=args.device))
