"""MSA R-CNN (Moon, Chang and Lee, CVPR-W 2019) on top of torchvision's Keypoint R-CNN.

torchvision's :class:`~torchvision.models.detection.KeypointRCNN` is the Mask R-CNN keypoint baseline: ResNet-FPN,
RPN, RoIAlign on one pyramid level per RoI (by size), a box head of two fully connected layers, and a keypoint
head of eight 3x3 convolutions of 512 channels, a transposed convolution and a bilinear x2 to 56x56 maps trained
with a softmax cross-entropy against one-hot targets. This module keeps all of it and replaces only what the
paper changes, each as a switch of :class:`MSARCNNConfig` (the rungs of the paper's Table 1):

- ``keypoint_levels="p2"``: keypoint RoIs read from P2 only, whatever their size;
- ``output="deconv_1x1"``: a transposed convolution that keeps the channels, then a 1x1 convolution to the maps;
- ``keypoint_head="mskpsnet"``: :class:`MSKpsNet`, a small encoder-decoder with residual skips;
- ``ms_roialign="sum"`` or ``"concat"``: :class:`MSRoIAlign` for both the box and the keypoint head;
- ``decoder="top2"``: the probability-weighted average of the two best cells (:func:`decode_heatmaps`);
- :func:`detect_multiscale`: multi-scale test-time augmentation.

Inference is sequential (the paper's section 7, and torchvision's behaviour): the box head classifies and refines
the proposals, NMS keeps the best boxes, and only those boxes go through the keypoint head. During training the
keypoint head sees the positive proposals of the box head's sample, in parallel.

Coordinates follow torchvision: continuous pixel coordinates (the image spans ``[0, W] x [0, H]``), boxes
``(x1, y1, x2, y2)``. ``poselib.methods.msa_rcnn`` converts to and from the COCO pixel-centre convention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, keypoints_to_heatmap
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign, batched_nms, roi_align
from torchvision.ops.misc import FrozenBatchNorm2d

from poselib.codecs import decode
from poselib.keypoints import NUM_KEYPOINTS
from poselib.models.backbones import PretrainedWeightsUnavailable, resnet
from poselib.models.registry import register_model

#: Names of the FPN levels P2..P5 in torchvision's feature dictionaries, and their strides (pixels).
LEVELS: tuple[str, ...] = ("0", "1", "2", "3")
LEVEL_STRIDES: tuple[int, ...] = (4, 8, 16, 32)

DECODERS: tuple[str, ...] = ("argmax", "top2")


@dataclass(frozen=True)
class MSARCNNConfig:
    """Everything that defines a model. The defaults are torchvision's Keypoint R-CNN (ResNet-50-FPN), i.e. the
    paper's baseline; the switches below turn it into MSA R-CNN step by step.

    Backbone: ``depth`` and ``width`` of the ResNet (64: standard; narrower ones are the CPU presets' models and
    have no ImageNet weights), ``pretrained`` ImageNet weights (downloaded by torchvision), ``frozen_bn``
    (torchvision's FrozenBatchNorm2d as in Detectron; train from scratch with ordinary BatchNorm instead),
    ``fpn_channels`` (256).

    Image size: ``min_size``/``max_size`` of torchvision's resize (shorter side, longer side cap), pixels.

    RPN and box head: ``anchor_sizes`` (one per level P2..P6), ``rpn_*`` proposal counts, ``box_batch_size``
    (RoIs sampled per image, 512 in the paper with 1:3 positives), ``box_representation`` (width of the two fully
    connected layers, 1024), ``box_score_thresh``, ``detections_per_img``.

    Keypoint branch (the paper's switches): ``keypoint_levels`` "fpn" (one level per RoI, chosen by size) or "p2";
    ``keypoint_head`` "convs" (``head_convs`` 3x3 convolutions of ``head_channels``) or "mskpsnet";
    ``output`` "deconv" (torchvision's transposed convolution straight to the maps) or "deconv_1x1" (a transposed
    convolution to ``deconv_channels`` then a 1x1 convolution); ``ms_roialign`` None, "sum" or "concat" (applies
    to both heads, with ``ms_n_box`` and ``ms_n_keypoint`` the paper's ``n``); ``concat_widths`` the first three
    MS-KpsNet widths under concatenation (default ``(4C, 4C, head_channels)``, the paper's 1024, 1024, 512);
    ``keypoint_roi_size`` the keypoint RoI side without MS-RoIAlign (default 14 for the conv head, 16 for
    MS-KpsNet so that it halves twice); ``keypoint_rois_per_image`` caps the positive RoIs per image the keypoint
    head trains on (a random subset; None: all, as the paper and torchvision); ``decoder`` "argmax" or "top2". ``keypoints=False`` builds the Faster
    R-CNN detector alone (the "separate detector" of the paper's Table 4).
    """

    depth: int = 50
    width: int = 64
    pretrained: bool = False
    frozen_bn: bool = True
    fpn_channels: int = 256
    min_size: int = 800
    max_size: int = 1333
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_train: int = 2000
    rpn_post_nms_train: int = 2000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rpn_batch_size: int = 256
    box_batch_size: int = 512
    box_representation: int = 1024
    box_score_thresh: float = 0.05
    detections_per_img: int = 100
    keypoints: bool = True
    num_keypoints: int = NUM_KEYPOINTS
    keypoint_levels: str = "fpn"
    keypoint_head: str = "convs"
    head_channels: int = 512
    head_convs: int = 8
    output: str = "deconv"
    deconv_channels: int | None = None
    ms_roialign: str | None = None
    ms_n_box: int = 0
    ms_n_keypoint: int = 1
    concat_widths: tuple[int, int, int] | None = None
    keypoint_roi_size: int | None = None
    keypoint_rois_per_image: int | None = None
    decoder: str = "argmax"

    def __post_init__(self) -> None:
        for name in ("anchor_sizes", "concat_widths"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        problems = []
        choices = {"keypoint_levels": ("fpn", "p2"), "keypoint_head": ("convs", "mskpsnet"),
                   "output": ("deconv", "deconv_1x1"), "ms_roialign": (None, "sum", "concat"), "decoder": DECODERS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if len(self.anchor_sizes) != 5:
            problems.append(f"anchor_sizes needs one size per level P2..P6 (5), got {self.anchor_sizes}")
        if self.pretrained and self.width != 64:
            problems.append(f"width={self.width}: ImageNet weights exist only for width 64")
        if self.keypoint_roi_size is not None and self.keypoint_head == "mskpsnet" and self.keypoint_roi_size % 4:
            problems.append(f"keypoint_roi_size={self.keypoint_roi_size}: MS-KpsNet halves it twice, use a multiple of 4")
        if problems:
            raise ValueError("invalid MSARCNNConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "MSARCNNConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# MS-RoIAlign


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class MSRoIAlign(nn.Module):
    """Multi-scale RoIAlign: every RoI read from *every* pyramid level and the four reads aggregated.

    Level ``l`` (P2..P5, stride ``4 * 2**l``) is pooled to ``2**(n+3-l)`` cells a side, so that every read covers
    the RoI with about the same number of feature-map pixels. Each read passes one 3x3 convolution with ReLU
    (its own weights per level), is upsampled bilinearly to ``2**(n+3)``, and the four are summed
    (``aggregation="sum"``: ``C`` channels out) or concatenated (``"concat"``: ``4C``). The paper uses ``n = 0``
    for the box head (8x8) and ``n = 1`` for the keypoint head (16x16). How many convolutions each level gets
    and which upsampling it uses the paper leaves open; one convolution and bilinear are our choice.

    Call like torchvision's :class:`~torchvision.ops.MultiScaleRoIAlign`: ``forward(features, boxes,
    image_shapes) -> (R, C_out, S, S)`` with ``features`` the FPN dictionary (keys :data:`LEVELS`), ``boxes`` a
    list of ``(R_i, 4)`` xyxy tensors per image in the batch tensor's pixels and ``R = sum R_i``.
    """

    def __init__(
        self,
        in_channels: int,
        n: int,
        aggregation: str = "sum",
        *,
        levels: tuple[str, ...] = LEVELS,
        strides: tuple[int, ...] = LEVEL_STRIDES,
        sampling_ratio: int = 2,
    ):
        super().__init__()
        if aggregation not in ("sum", "concat"):
            raise ValueError(f"aggregation must be 'sum' or 'concat', got {aggregation!r}")
        if len(levels) != len(strides):
            raise ValueError(f"{len(levels)} levels but {len(strides)} strides")
        self.levels, self.strides, self.n = tuple(levels), tuple(strides), n
        self.output_size = 2 ** (n + 3)
        self.level_sizes = tuple(max(1, 2 ** (n + 3 - i)) for i in range(len(levels)))
        self.aggregation = aggregation
        self.sampling_ratio = sampling_ratio
        self.level_convs = nn.ModuleList(_conv_relu(in_channels, in_channels) for _ in levels)
        self.out_channels = in_channels * (len(levels) if aggregation == "concat" else 1)

    def level_features(self, features: dict[str, Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """The per-level reads after their convolution and upsampling: a list of ``(R, C, S, S)``, P2 first."""
        rois = torchvision.ops._utils.convert_boxes_to_roi_format(boxes)
        out = []
        for name, stride, size, conv in zip(self.levels, self.strides, self.level_sizes, self.level_convs):
            x = roi_align(features[name], rois, size, spatial_scale=1.0 / stride, sampling_ratio=self.sampling_ratio)
            x = conv(x)
            if size != self.output_size:
                x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
            out.append(x)
        return out

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        reads = self.level_features(features, boxes)
        if self.aggregation == "concat":
            return torch.cat(reads, dim=1)
        return torch.stack(reads).sum(0)


# ---------------------------------------------------------------------------------------------------------------
# MS-KpsNet and the output parts


class MSKpsNet(nn.Module):
    """The multi-scale keypoint head's body: ``(R, C_in, S, S) -> (R, channels, S, S)``, ``S`` a multiple of 4.

    Three 3x3 convolutions; two rounds of 2x2 max-pooling each followed by a convolution; two convolutions at
    S/4; two rounds of nearest 2x upsampling, each added to a one-convolution skip from the encoder feature of the
    same size and followed by a convolution. Every convolution is 3x3 with ReLU. ``widths`` sets the first three
    convolutions' outputs (the paper: all 512, or 1024, 1024, 512 after a concatenating MS-RoIAlign); the rest
    have ``channels``.
    """

    def __init__(self, in_channels: int, channels: int = 512, widths: tuple[int, int, int] | None = None):
        super().__init__()
        w1, w2, w3 = widths or (channels, channels, channels)
        self.stem = nn.Sequential(_conv_relu(in_channels, w1), _conv_relu(w1, w2), _conv_relu(w2, w3))
        self.down1 = _conv_relu(w3, channels)
        self.down2 = _conv_relu(channels, channels)
        self.bottom = nn.Sequential(_conv_relu(channels, channels), _conv_relu(channels, channels))
        self.skip1 = _conv_relu(channels, channels)  # from down1 (S/2)
        self.skip2 = _conv_relu(w3, channels)  # from the stem (S)
        self.up1 = _conv_relu(channels, channels)
        self.up2 = _conv_relu(channels, channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"MSKpsNet needs RoI features whose sides are multiples of 4, got {tuple(x.shape[-2:])}")
        full = self.stem(x)
        half = self.down1(F.max_pool2d(full, 2))
        quarter = self.bottom(self.down2(F.max_pool2d(half, 2)))
        half = self.up1(F.interpolate(quarter, scale_factor=2.0, mode="nearest") + self.skip1(half))
        return self.up2(F.interpolate(half, scale_factor=2.0, mode="nearest") + self.skip2(full))


class DeconvOneByOnePredictor(nn.Module):
    """The paper's output part (Table 1 step 3): ``(R, C, S, S) -> (R, K, 4S, 4S)``.

    A 4x4 stride-2 transposed convolution to ``deconv_channels`` with ReLU upsamples, a 1x1 convolution predicts
    the maps, bilinear x2 doubles them again; torchvision's :class:`KeypointRCNNPredictor` instead predicts the
    maps with the transposed convolution itself.
    """

    def __init__(self, in_channels: int, num_keypoints: int = NUM_KEYPOINTS, deconv_channels: int | None = None):
        super().__init__()
        deconv_channels = deconv_channels or in_channels
        self.deconv = nn.ConvTranspose2d(in_channels, deconv_channels, 4, stride=2, padding=1)
        self.score = nn.Conv2d(deconv_channels, num_keypoints, 1)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.deconv.bias)
        nn.init.normal_(self.score.weight, std=0.001)
        nn.init.zeros_(self.score.bias)
        self.out_channels = num_keypoints

    def forward(self, x: Tensor) -> Tensor:
        x = self.score(F.relu(self.deconv(x)))
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------------
# loss and decoder


def keypoint_targets(keypoints: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """One-hot targets of Mask R-CNN: the cell index ``y*size + x`` of each keypoint in its RoI's ``size x size``
    grid, and whether it counts (labelled and inside the box).

    ``keypoints (R, K, 3)`` ``[x, y, v]`` and ``boxes (R, 4)`` xyxy in the same continuous pixels; cell
    ``floor((x - x1) * size / w)``, a point on the right or bottom edge in the last cell (torchvision's
    ``keypoints_to_heatmap``). Returns ``(R, K)`` long indices and ``(R, K)`` bools.
    """
    index, valid = keypoints_to_heatmap(keypoints, boxes, size)
    return index, valid.bool()


def keypoint_softmax_loss(logits: Tensor, target_index: Tensor, valid: Tensor) -> Tensor:
    """The spatial softmax cross-entropy of Mask R-CNN and MSA R-CNN (the paper's equation 1).

    ``logits (R, K, H, W)``; ``target_index (R, K)`` the target cell ``y*W + x``; ``valid (R, K)``. Each valid
    keypoint's map is a softmax over its ``H*W`` cells; the loss is the mean negative log-probability of the target
    cells over the valid keypoints (0, still differentiable, when there is none).
    """
    r, k, h, w = logits.shape
    flat = logits.reshape(r * k, h * w)
    mask = valid.reshape(-1)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(flat[mask], target_index.reshape(-1)[mask])


def decode_heatmaps(logits: Tensor, boxes: Tensor, decoder: str = "argmax") -> Tensor:
    """Keypoints from RoI heatmaps: ``logits (R, K, H, W)`` over boxes ``(R, 4)`` xyxy -> ``(R, K, 3)``
    ``[x, y, score]`` in the boxes' continuous pixels.

    The maps are softmax-normalised per keypoint; ``"argmax"`` takes the best cell, ``"top2"`` the
    probability-weighted average of the two best cells (the paper's "average of top-2s"). A cell ``(i, j)`` stands
    for the point ``x1 + (j + 0.5) * w / W`` (torchvision's +0.5 cell). The score is the best cell's probability.
    Maps are decoded on their own grid: torchvision first resizes them to the box with bicubic interpolation,
    which moves the argmax by less than a cell.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    r, k, h, w = logits.shape
    if r == 0:
        return logits.new_zeros((0, k, 3))
    probs = logits.float().reshape(r, k, h * w).softmax(-1).reshape(r, k, h, w)
    coords, scores = decode.decode_top2_average(probs) if decoder == "top2" else decode.decode_argmax(probs)
    boxes = boxes.float()
    scale = torch.stack([(boxes[:, 2] - boxes[:, 0]) / w, (boxes[:, 3] - boxes[:, 1]) / h], -1)[:, None]
    xy = boxes[:, None, :2] + (coords + 0.5) * scale
    return torch.cat([xy, scores[..., None]], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# the detector


class MSARoIHeads(RoIHeads):
    """torchvision's :class:`RoIHeads` with the keypoint branch written out: its own loss on any map size, the
    paper's decoders, and the two stages (:meth:`detect`, :meth:`keypoint_logits`) callable separately for
    test-time augmentation. ``forward`` keeps torchvision's signature and outputs (``keypoints (D, K, 3)`` with the
    third column 1, ``keypoints_scores (D, K)``, and ``heatmaps`` are not returned)."""

    def __init__(self, *args, decoder: str = "argmax", keypoint_rois_per_image: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoder = decoder
        self.keypoint_rois_per_image = keypoint_rois_per_image

    def detect(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Box head on the proposals, box refinement, score threshold and NMS: ``[{"boxes", "scores", "labels"}]``."""
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]

    def keypoint_logits(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Heatmap logits ``(sum R_i, K, H, W)`` of the boxes (a list of ``(R_i, 4)`` per image)."""
        pooled = self.keypoint_roi_pool(features, boxes, image_shapes)
        return self.keypoint_predictor(self.keypoint_head(pooled))

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102 (torchvision's contract)
        if not self.training:
            result = self.detect(features, proposals, image_shapes)
            if self.has_keypoint():  # sequential: only the kept, refined boxes reach the keypoint head
                boxes = [r["boxes"] for r in result]
                logits = self.keypoint_logits(features, boxes, image_shapes)
                keypoints = decode_heatmaps(logits, torch.cat(boxes) if boxes else logits.new_zeros((0, 4)), self.decoder)
                for r, kps in zip(result, keypoints.split([len(b) for b in boxes])):
                    r["keypoints"] = torch.cat([kps[..., :2], torch.ones_like(kps[..., 2:])], -1)
                    r["keypoints_scores"] = kps[..., 2]
            return result, {}

        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.has_keypoint():  # in parallel with the box head: the positive proposals of the sample
            positive = [torch.where(lab > 0)[0] for lab in labels]
            cap = self.keypoint_rois_per_image
            if cap is not None:
                positive = [p[torch.randperm(len(p), device=p.device)[:cap]] for p in positive]
            boxes = [p[i] for p, i in zip(proposals, positive)]
            gt = torch.cat([t["keypoints"][m[i]] for t, m, i in zip(targets, matched_idxs, positive)])
            logits = self.keypoint_logits(features, boxes, image_shapes)
            index, valid = keypoint_targets(gt, torch.cat(boxes), logits.shape[-1])
            losses["loss_keypoint"] = keypoint_softmax_loss(logits, index, valid)
        return [], losses


def _backbone(config: MSARCNNConfig) -> BackboneWithFPN:
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if config.width == 64 and config.pretrained:
        weights = torchvision.models.get_weight(f"ResNet{config.depth}_Weights.IMAGENET1K_V1")
        norm = FrozenBatchNorm2d if config.frozen_bn else nn.BatchNorm2d
        try:
            body = getattr(torchvision.models, f"resnet{config.depth}")(weights=weights, norm_layer=norm)
        except Exception as error:  # URLError, hash mismatch, read-only cache...
            raise PretrainedWeightsUnavailable(
                f"could not load ImageNet weights for resnet{config.depth} from {weights.url}: {error}. Connect to "
                "the internet once (torchvision caches them under $TORCH_HOME/hub/checkpoints), place the file there "
                "by hand, or build the model with pretrained=False."
            ) from error
        # Detectron's choice, as torchvision's: the stem and the first stage stay frozen with ImageNet weights
        for name, parameter in body.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                parameter.requires_grad_(False)
        in_channels = [256 * 2**i // (1 if config.depth >= 50 else 4) for i in range(4)]
        return_layers = {f"layer{i + 1}": LEVELS[i] for i in range(4)}
    elif config.width == 64:
        norm = FrozenBatchNorm2d if config.frozen_bn else nn.BatchNorm2d
        body = getattr(torchvision.models, f"resnet{config.depth}")(weights=None, norm_layer=norm)
        in_channels = [256 * 2**i // (1 if config.depth >= 50 else 4) for i in range(4)]
        return_layers = {f"layer{i + 1}": LEVELS[i] for i in range(4)}
    else:  # narrow ResNets (CPU presets): poselib's, trained from scratch with BatchNorm
        body = resnet(config.depth, width=config.width)
        in_channels = list(body.out_channels)
        return_layers = {f"layer{i + 1}": LEVELS[i] for i in range(4)}
    return BackboneWithFPN(body, return_layers, in_channels, config.fpn_channels, extra_blocks=LastLevelMaxPool())


def _keypoint_parts(config: MSARCNNConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    c = config.fpn_channels
    if config.ms_roialign:
        pool = MSRoIAlign(c, config.ms_n_keypoint, config.ms_roialign)
    else:
        size = config.keypoint_roi_size or (16 if config.keypoint_head == "mskpsnet" else 14)
        names = ["0"] if config.keypoint_levels == "p2" else list(LEVELS)
        pool = MultiScaleRoIAlign(featmap_names=names, output_size=size, sampling_ratio=2)
    in_channels = getattr(pool, "out_channels", c)
    if config.keypoint_head == "mskpsnet":
        widths = None
        if config.ms_roialign == "concat":
            widths = config.concat_widths or (4 * c, 4 * c, config.head_channels)
        head = MSKpsNet(in_channels, config.head_channels, widths)
    else:
        head = KeypointRCNNHeads(in_channels, tuple(config.head_channels for _ in range(config.head_convs)))
    if config.output == "deconv_1x1":
        predictor = DeconvOneByOnePredictor(config.head_channels, config.num_keypoints, config.deconv_channels)
    else:
        predictor = KeypointRCNNPredictor(config.head_channels, config.num_keypoints)
    return pool, head, predictor


class MSARCNN(KeypointRCNN):
    """torchvision's Keypoint R-CNN built from an :class:`MSARCNNConfig` (``model.config``), with
    :class:`MSARoIHeads`.

    ``forward(images, targets=None)`` as torchvision: a list of ``(3, H, W)`` float images in [0, 1] (a batch
    tensor works too); in training mode with targets ``[{"boxes" (M,4) xyxy float, "labels" (M,) int64 (1 =
    person), "keypoints" (M,K,3) float}]`` it returns the loss dictionary (``loss_objectness``,
    ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_keypoint``); in eval mode a list of
    ``{"boxes", "labels", "scores", "keypoints", "keypoints_scores"}`` in the input images' pixels.
    """

    def __init__(self, config: MSARCNNConfig = MSARCNNConfig()):
        c = config.fpn_channels
        if config.ms_roialign:
            box_pool = MSRoIAlign(c, config.ms_n_box, config.ms_roialign)
            box_head = TwoMLPHead(box_pool.out_channels * box_pool.output_size**2, config.box_representation)
        else:
            box_pool = MultiScaleRoIAlign(featmap_names=list(LEVELS), output_size=7, sampling_ratio=2)
            box_head = TwoMLPHead(c * 7 * 7, config.box_representation)
        kp_pool, kp_head, kp_predictor = _keypoint_parts(config) if config.keypoints else (None, None, None)
        anchors = AnchorGenerator(tuple((s,) for s in config.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
        super().__init__(
            _backbone(config),
            num_classes=None,
            min_size=config.min_size,
            max_size=config.max_size,
            rpn_anchor_generator=anchors,
            rpn_pre_nms_top_n_train=config.rpn_pre_nms_train,
            rpn_post_nms_top_n_train=config.rpn_post_nms_train,
            rpn_pre_nms_top_n_test=config.rpn_pre_nms_test,
            rpn_post_nms_top_n_test=config.rpn_post_nms_test,
            rpn_batch_size_per_image=config.rpn_batch_size,
            box_roi_pool=MultiScaleRoIAlign(list(LEVELS), 7, 2),  # placeholder (type-checked), replaced below
            box_head=box_head,
            box_predictor=FastRCNNPredictor(config.box_representation, 2),
            box_score_thresh=config.box_score_thresh,
            box_detections_per_img=config.detections_per_img,
            box_batch_size_per_image=config.box_batch_size,
            keypoint_roi_pool=MultiScaleRoIAlign(["0"], 1, 1),  # placeholder, replaced below (type-checked)
            keypoint_head=nn.Identity(),
            keypoint_predictor=nn.Identity(),
        )
        old = self.roi_heads
        self.roi_heads = MSARoIHeads(
            box_pool, old.box_head, old.box_predictor,
            old.proposal_matcher.high_threshold, old.proposal_matcher.low_threshold,
            old.fg_bg_sampler.batch_size_per_image, old.fg_bg_sampler.positive_fraction,
            old.box_coder.weights, old.score_thresh, old.nms_thresh, old.detections_per_img,
            keypoint_roi_pool=kp_pool, keypoint_head=kp_head, keypoint_predictor=kp_predictor,
            decoder=config.decoder, keypoint_rois_per_image=config.keypoint_rois_per_image,
        )  # fmt: skip
        self.config = config

    @torch.no_grad()
    def keypoint_heatmaps(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """Keypoint probability maps ``(R_i, K, H, W)`` (softmax over each map) of given boxes ``(R_i, 4)`` xyxy in
        the input images' pixels, one entry per image: what the keypoint head sees for those boxes, for figures."""
        self.eval()
        batch, _ = self.transform(list(images))
        features = self.backbone(batch.tensors)
        scaled = [resize_boxes(b, tuple(img.shape[-2:]), size) for b, img, size in zip(boxes, images, batch.image_sizes)]
        logits = self.roi_heads.keypoint_logits(features, scaled, batch.image_sizes)
        r, k, h, w = logits.shape
        probs = logits.reshape(r, k, -1).softmax(-1).reshape(r, k, h, w)
        return list(probs.split([len(b) for b in boxes]))

    def set_decoder(self, decoder: str) -> None:
        """Switch the keypoint decoder (an inference-only choice)."""
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.roi_heads.decoder = decoder


def build_msa_rcnn(config: MSARCNNConfig | dict | None = None, **changes) -> MSARCNN:
    """An :class:`MSARCNN` from a config (or its dict), with keyword ``changes`` applied."""
    if config is None:
        config = MSARCNNConfig()
    elif isinstance(config, dict):
        config = MSARCNNConfig(**config)
    return MSARCNN(config.replace(**changes) if changes else config)


# ---------------------------------------------------------------------------------------------------------------
# multi-scale test-time augmentation


@torch.no_grad()
def detect_multiscale(model: MSARCNN, images: list[Tensor], scales: tuple[float, ...] = (1.0,)) -> list[dict[str, Tensor]]:
    """Inference averaged over input scales (the paper's Table 1 step 8).

    Each scale ``s`` resizes the images to ``s`` times the model's ``min_size``/``max_size``. Boxes: the
    detections of all scales, mapped back to the input, pooled and reduced by the box head's NMS to
    ``detections_per_img``. Keypoints: for those boxes, each scale's heatmaps (softmax probabilities on the same
    box-relative grid) are averaged and decoded with the model's decoder. With ``scales=(1.0,)`` the result equals
    ``model(images)``. Returns torchvision's output format (see :class:`MSARCNN`).
    """
    model.eval()
    heads: MSARoIHeads = model.roi_heads
    original_sizes = [tuple(img.shape[-2:]) for img in images]
    per_scale = []
    for s in scales:
        transform = GeneralizedRCNNTransform(
            round(model.config.min_size * s), round(model.config.max_size * s),
            model.transform.image_mean, model.transform.image_std,
        )  # fmt: skip
        batch, _ = transform(list(images))
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        detections = heads.detect(features, proposals, batch.image_sizes)
        boxes = [resize_boxes(d["boxes"], size, orig) for d, size, orig in zip(detections, batch.image_sizes, original_sizes)]
        per_scale.append((features, batch.image_sizes, boxes, [d["scores"] for d in detections]))

    results = []
    for i in range(len(images)):
        boxes = torch.cat([p[2][i] for p in per_scale])
        scores = torch.cat([p[3][i] for p in per_scale])
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), heads.nms_thresh)[: heads.detections_per_img]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": torch.ones_like(keep)})
    if not heads.has_keypoint():
        return results
    probs = None
    for features, sizes, _, _ in per_scale:
        boxes = [resize_boxes(r["boxes"], orig, size) for r, size, orig in zip(results, sizes, original_sizes)]
        logits = heads.keypoint_logits(features, boxes, sizes)
        r, k, h, w = logits.shape
        p = logits.float().reshape(r, k, -1).softmax(-1).reshape(r, k, h, w)
        probs = p if probs is None else probs + p
    probs = probs / len(per_scale)
    all_boxes = torch.cat([r["boxes"] for r in results])
    # decode_heatmaps takes logits: log-probabilities give back the averaged probabilities under its softmax
    keypoints = decode_heatmaps(probs.clamp_min(1e-12).log(), all_boxes, heads.decoder)
    for r, kps in zip(results, keypoints.split([len(r["boxes"]) for r in results])):
        r["keypoints"] = torch.cat([kps[..., :2], torch.ones_like(kps[..., 2:])], -1)
        r["keypoints_scores"] = kps[..., 2]
    return results


# ---------------------------------------------------------------------------------------------------------------
# registered paper-size models (for `poselib flops`)

#: The paper's models at full size: ResNet-50-FPN, 800-pixel shorter side (Table 2 parameters: 76.3 M, 137.2 M).
PAPER_CONFIGS: dict[str, MSARCNNConfig] = {
    "maskrcnn-kp-r50": MSARCNNConfig(),
    "msarcnn-r50-sum": MSARCNNConfig(keypoint_levels="p2", output="deconv_1x1", keypoint_head="mskpsnet",
                                     ms_roialign="sum", decoder="top2"),
    "msarcnn-r50-concat": MSARCNNConfig(keypoint_levels="p2", output="deconv_1x1", keypoint_head="mskpsnet",
                                        ms_roialign="concat", decoder="top2"),
}  # fmt: skip


def _register(name: str, description: str) -> None:
    @register_model(name, input_size=(800, 1216), description=description)
    def build(**changes) -> MSARCNN:
        # Seeded initial weights (without touching the global generator): the heads' work depends on how many
        # boxes survive, so `poselib flops` counts the same model every time (1000 proposals in the box head, the
        # 100 detections an untrained box head keeps in the keypoint head).
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build_msa_rcnn(PAPER_CONFIGS[name], **changes)


_register("maskrcnn-kp-r50", "Mask R-CNN keypoint baseline (torchvision Keypoint R-CNN), ResNet-50-FPN")
_register("msarcnn-r50-sum", "MSA R-CNN, ResNet-50-FPN, MS-RoIAlign by summation, MS-KpsNet")
_register("msarcnn-r50-concat", "MSA R-CNN, ResNet-50-FPN, MS-RoIAlign by concatenation, MS-KpsNet")


# ---------------------------------------------------------------------------------------------------------------
# receptive fields of the keypoint heads


def effective_receptive_field(head: nn.Module, in_channels: int, size: int, *, samples: int = 4, seed: int = 0) -> Tensor:
    """How strongly each input cell of a ``size x size`` RoI feature reaches the centre output cell of ``head``.

    The mean over ``samples`` random inputs (and over channels) of ``|d out[centre] / d input|``, normalised to a
    maximum of 1: the *effective* receptive field, which is concentrated near the centre even where the theoretical
    one covers the whole RoI. Returns ``(size, size)``. ``head`` is used as is (its current weights).
    """
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(size, size)
    was_training = head.training
    head.eval()
    for _ in range(samples):
        x = torch.randn(1, in_channels, size, size, generator=generator).requires_grad_(True)
        out = head(x)
        centre = out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum()
        (grad,) = torch.autograd.grad(centre, x)
        total += grad[0].abs().mean(0)
    head.train(was_training)
    return total / total.max().clamp_min(1e-12)
