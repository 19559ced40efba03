"""MultiPoseNet (Kocabas et al., ECCV 2018): a shared ResNet with two feature pyramids, a keypoint subnet and a
RetinaNet person subnet.

- **Backbone** (section 3.1): a ResNet (:mod:`poselib.models.backbones`) whose C2..C5 features (strides 4..32)
  feed two torchvision :class:`~torchvision.ops.FeaturePyramidNetwork`\\ s, one per subnet.
- **Keypoint subnet** (section 3.2, Fig. 3): the keypoint pyramid gives K2..K5 (``fpn_channels``, 256 in the
  paper); each level is reduced to D2..D5 (``d_channels``, 128) by two 3x3 convolutions with ReLU, D3..D5 are
  upsampled to stride 4, concatenated (4 x 128 = 512 channels), smoothed by a 3x3 convolution with ReLU and
  projected by a 1x1 convolution to ``K + 1`` maps (17 keypoints and the person segmentation), no activation.
  Intermediate supervision: a 1x1 convolution per K level to the same ``K + 1`` maps, upsampled to stride 4
  (as the authors describe in mkocabas/pose-residual-network#2). ``concat=False`` (Table 2's "no concat") sums
  the D levels instead of concatenating them; ``intermediate=False`` ("no int.") drops the K-level outputs.
- **Person subnet** (section 3.3): RetinaNet's head (torchvision :class:`RetinaNetHead`, one class) on its own
  pyramid over C3..C5 with the P6/P7 extra levels, anchors from torchvision's :class:`AnchorGenerator`, focal
  loss (gamma 2, alpha 0.25) and smooth L1, NMS at IoU 0.3. It is trained second, on the frozen backbone
  (:meth:`MultiPoseNet.freeze_keypoint_path`).

``MultiPoseNet.forward(images (N,3,H,W))`` returns the final keypoint maps ``(N, K+1, H/4, W/4)``; the training
and inference entry points are :meth:`~MultiPoseNet.keypoint_outputs`, :meth:`~MultiPoseNet.detector_loss` and
:meth:`~MultiPoseNet.detect`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork, batched_nms, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from poselib.models.backbones import resnet
from poselib.models.registry import register_model

NUM_KEYPOINTS = 17


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU(inplace=True))


class KeypointSubnet(nn.Module):
    """Section 3.2: K2..K5 -> D2..D5 -> concatenation at stride 4 -> ``num_outputs`` maps (see the module doc).

    ``forward(features)`` takes the keypoint pyramid's four levels (finest first, stride 4 first) and returns
    ``(final (N, num_outputs, h4, w4), intermediate)`` where ``intermediate`` is a list of four maps of the same
    shape (one per K level, upsampled) or empty when ``intermediate=False``.
    """

    def __init__(
        self,
        fpn_channels: int = 256,
        d_channels: int = 128,
        num_outputs: int = NUM_KEYPOINTS + 1,
        *,
        intermediate: bool = True,
        concat: bool = True,
        levels: int = 4,
    ):
        super().__init__()
        self.concat = concat
        self.d_layers = nn.ModuleList(
            nn.Sequential(_conv_relu(fpn_channels, d_channels), _conv_relu(d_channels, d_channels)) for _ in range(levels)
        )
        merged = d_channels * levels if concat else d_channels
        self.smooth = _conv_relu(merged, merged)
        self.predict = nn.Conv2d(merged, num_outputs, 1)
        self.intermediate = (
            nn.ModuleList(nn.Conv2d(fpn_channels, num_outputs, 1) for _ in range(levels)) if intermediate else None
        )

    def forward(self, features: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        size = features[0].shape[-2:]
        d = [layer(k) for layer, k in zip(self.d_layers, features)]
        d = [d[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in d[1:]]
        merged = torch.cat(d, dim=1) if self.concat else torch.stack(d, 0).sum(0)
        final = self.predict(self.smooth(merged))
        inter: list[Tensor] = []
        if self.intermediate is not None:
            inter = [
                F.interpolate(head(k), size=size, mode="bilinear", align_corners=False)
                for head, k in zip(self.intermediate, features)
            ]
        return final, inter


class PersonSubnet(nn.Module):
    """RetinaNet for one class on the person pyramid: anchors, head, loss and post-processing.

    ``anchor_sizes``: base anchor side per pyramid level (pixels; RetinaNet: 32..512 on P3..P7), each with the
    three octave scales ``2^(0, 1/3, 2/3)`` and ``aspect_ratios`` (height / width).
    """

    def __init__(
        self,
        in_channels: int,
        anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        *,
        nms_threshold: float = 0.3,
        score_threshold: float = 0.05,
        detections_per_image: int = 100,
        topk_candidates: int = 1000,
    ):
        super().__init__()
        sizes = tuple(tuple(int(round(s * 2 ** (i / 3))) for i in range(3)) for s in anchor_sizes)
        self.anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.head = RetinaNetHead(in_channels, num_anchors, num_classes=1)
        self.head.regression_head._loss_type = "smooth_l1"  # the paper's regression loss (torchvision: L1)
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)
        self.nms_threshold = nms_threshold
        self.score_threshold = score_threshold
        self.detections_per_image = detections_per_image
        self.topk_candidates = topk_candidates

    def anchors(self, images: Tensor, features: list[Tensor]) -> list[Tensor]:
        """Anchors ``(A, 4)`` xyxy in input pixels, one tensor per image (all identical)."""
        image_list = ImageList(images, [tuple(images.shape[-2:])] * images.shape[0])
        return self.anchor_generator(image_list, features)

    def loss(self, images: Tensor, features: list[Tensor], boxes: list[Tensor]) -> dict[str, Tensor]:
        """Focal classification loss and smooth-L1 box loss; ``boxes``: per image ``(P, 4)`` xyxy input pixels."""
        outputs = self.head(features)
        anchors = self.anchors(images, features)
        targets, matched = [], []
        for anchors_i, boxes_i in zip(anchors, boxes):
            targets.append({"boxes": boxes_i, "labels": torch.zeros(len(boxes_i), dtype=torch.int64, device=boxes_i.device)})
            if boxes_i.numel() == 0:
                matched.append(torch.full((anchors_i.shape[0],), -1, dtype=torch.int64, device=anchors_i.device))
            else:
                matched.append(self.matcher(box_iou(boxes_i, anchors_i)))
        return self.head.compute_loss(targets, outputs, anchors, matched)

    @torch.no_grad()
    def detect(self, images: Tensor, features: list[Tensor]) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes": (D, 4) xyxy input pixels, "scores": (D,)}`` after NMS, best first."""
        outputs = self.head(features)
        anchors = self.anchors(images, features)
        per_level = [f.shape[-2] * f.shape[-1] * self.anchor_generator.num_anchors_per_location()[0] for f in features]
        height, width = images.shape[-2:]
        results = []
        for i, anchors_i in enumerate(anchors):
            logits = outputs["cls_logits"][i].split(per_level)
            deltas = outputs["bbox_regression"][i].split(per_level)
            level_anchors = anchors_i.split(per_level)
            kept_boxes, kept_scores = [], []
            for logit, delta, anchor in zip(logits, deltas, level_anchors):
                scores = torch.sigmoid(logit.flatten())
                keep = scores > self.score_threshold
                scores, index = scores[keep].topk(min(self.topk_candidates, int(keep.sum())))
                idx = torch.nonzero(keep).flatten()[index]
                decoded = self.box_coder.decode_single(delta[idx], anchor[idx])
                decoded[:, 0::2] = decoded[:, 0::2].clamp(-0.5, width - 0.5)
                decoded[:, 1::2] = decoded[:, 1::2].clamp(-0.5, height - 0.5)
                kept_boxes.append(decoded)
                kept_scores.append(scores)
            boxes_i, scores_i = torch.cat(kept_boxes), torch.cat(kept_scores)
            keep = batched_nms(boxes_i, scores_i, torch.zeros_like(scores_i, dtype=torch.int64), self.nms_threshold)
            keep = keep[: self.detections_per_image]
            results.append({"boxes": boxes_i[keep], "scores": scores_i[keep]})
        return results


class MultiPoseNet(nn.Module):
    """Backbone + keypoint pyramid and subnet + person pyramid and RetinaNet subnet (see the module doc).

    Args:
        depth, width, pretrained, dilation: the ResNet (:func:`poselib.models.backbones.resnet`).
        fpn_channels: channels of both pyramids (256 in the paper).
        d_channels: channels of each D level (128 in the paper).
        intermediate, concat: the keypoint subnet's Table 2 switches.
        detector: build the person subnet (False for keypoint-only models).
        anchor_sizes: RetinaNet anchor sides for P3..P7 (fewer sizes use fewer levels, finest first).
    """

    stride = 4

    def __init__(
        self,
        depth: int = 50,
        *,
        width: int = 64,
        pretrained: bool = False,
        dilation: tuple[bool, bool, bool] = (False, False, False),
        fpn_channels: int = 256,
        d_channels: int = 128,
        num_keypoints: int = NUM_KEYPOINTS,
        intermediate: bool = True,
        concat: bool = True,
        detector: bool = True,
        anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
        nms_threshold: float = 0.3,
    ):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.backbone = resnet(depth, width=width, pretrained=pretrained, dilation=tuple(dilation))
        channels = list(self.backbone.out_channels)
        self.keypoint_fpn = FeaturePyramidNetwork(channels, fpn_channels)
        self.keypoint_subnet = KeypointSubnet(
            fpn_channels, d_channels, num_keypoints + 1, intermediate=intermediate, concat=concat
        )
        self.person_fpn: FeaturePyramidNetwork | None = None
        self.person_subnet: PersonSubnet | None = None
        if detector:
            if not 1 <= len(anchor_sizes) <= 5:
                raise ValueError(f"anchor_sizes must give 1 to 5 levels (P3..P7), got {anchor_sizes}")
            self.person_levels = len(anchor_sizes)
            self.person_fpn = FeaturePyramidNetwork(channels[1:], fpn_channels, extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
            self.person_subnet = PersonSubnet(fpn_channels, tuple(anchor_sizes), nms_threshold=nms_threshold)
        self.frozen = False

    # -- keypoints ---------------------------------------------------------------------------------------------
    def features(self, images: Tensor) -> "OrderedDict[str, Tensor]":
        """Backbone features ``c2..c5``."""
        return self.backbone(images)

    def keypoint_outputs(self, images: Tensor, features: "OrderedDict[str, Tensor] | None" = None) -> tuple[Tensor, list[Tensor]]:
        """``(final (N, K+1, H/4, W/4), intermediate maps)``: channels ``0..K-1`` keypoints, ``K`` segmentation."""
        c = self.features(images) if features is None else features
        k = list(self.keypoint_fpn(c).values())
        return self.keypoint_subnet(k)

    def forward(self, images: Tensor) -> Tensor:
        return self.keypoint_outputs(images)[0]

    # -- people ------------------------------------------------------------------------------------------------
    def _person_features(self, c: "OrderedDict[str, Tensor]") -> list[Tensor]:
        if self.person_fpn is None or self.person_subnet is None:
            raise RuntimeError("this MultiPoseNet was built with detector=False")
        p = list(self.person_fpn(OrderedDict((k, c[k]) for k in ("c3", "c4", "c5"))).values())
        return p[: self.person_levels]

    def detector_loss(self, images: Tensor, boxes: list[Tensor]) -> dict[str, Tensor]:
        """RetinaNet losses ``{"classification", "bbox_regression"}``; ``boxes`` per image ``(P, 4)`` xyxy.

        When :meth:`freeze_keypoint_path` was called the backbone runs without gradients."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            c = self.features(images)
        return self.person_subnet.loss(images, self._person_features(c), boxes)  # type: ignore[union-attr]

    @torch.no_grad()
    def detect(self, images: Tensor, features: "OrderedDict[str, Tensor] | None" = None) -> list[dict[str, Tensor]]:
        """Person boxes per image: ``{"boxes": (D, 4) xyxy input pixels, "scores": (D,)}`` after NMS."""
        c = self.features(images) if features is None else features
        return self.person_subnet.detect(images, self._person_features(c))  # type: ignore[union-attr]

    @torch.no_grad()
    def infer(self, images: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """One backbone pass for both subnets: ``(keypoint maps (N, K+1, H/4, W/4), detections per image)``."""
        c = self.features(images)
        return self.keypoint_outputs(images, c)[0], self.detect(images, c)

    def freeze_keypoint_path(self) -> "MultiPoseNet":
        """Freeze the backbone, the keypoint pyramid and subnet (section 3.5: the person subnet is trained
        second, on the frozen backbone). Their batch-norm layers stay in eval mode under ``train()``."""
        self.frozen = True
        for module in (self.backbone, self.keypoint_fpn, self.keypoint_subnet):
            module.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "MultiPoseNet":
        super().train(mode)
        if self.frozen:
            for module in (self.backbone, self.keypoint_fpn, self.keypoint_subnet):
                module.eval()
        return self


class _FullPass(nn.Module):
    """The inference graph counted by ``poselib flops``: backbone, both pyramids, both subnets' convolutions."""

    def __init__(self, model: MultiPoseNet):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        c = self.model.features(images)
        maps = self.model.keypoint_outputs(images, c)[0]
        if self.model.person_subnet is not None:
            outputs = self.model.person_subnet.head(self.model._person_features(c))
            return maps.sum() + outputs["cls_logits"].sum()
        return maps


def multiposenet(depth: int = 50, **kwargs) -> MultiPoseNet:
    """A :class:`MultiPoseNet` (keyword arguments as its constructor)."""
    return MultiPoseNet(depth, **kwargs)


@register_model("multiposenet-r50", input_size=(480, 480), description="MultiPoseNet ResNet-50 (keypoint + person subnets)")
def multiposenet_r50(**kwargs) -> nn.Module:
    """MultiPoseNet with ResNet-50 at the paper's 480x480 input; ``poselib flops`` counts the full inference pass."""
    return _FullPass(MultiPoseNet(50, **kwargs))


@register_model("multiposenet-r101", input_size=(480, 480), description="MultiPoseNet ResNet-101 (keypoint + person subnets)")
def multiposenet_r101(**kwargs) -> nn.Module:
    """MultiPoseNet with ResNet-101 at the paper's 480x480 input."""
    return _FullPass(MultiPoseNet(101, **kwargs))
