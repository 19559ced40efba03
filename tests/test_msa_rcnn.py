"""MSA R-CNN (Part III): MS-RoIAlign, MS-KpsNet, output part, loss, decoders, the detector, the method's data side."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch

from poselib.models.msa_rcnn import (
    DeconvOneByOnePredictor,
    MSARCNNConfig,
    MSKpsNet,
    MSRoIAlign,
    build_msa_rcnn,
    decode_heatmaps,
    detect_multiscale,
    keypoint_softmax_loss,
    keypoint_targets,
)

TINY = dict(depth=18, width=8, frozen_bn=False, fpn_channels=16, min_size=96, max_size=96,
            anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms_train=100, rpn_post_nms_train=50, rpn_pre_nms_test=60,
            rpn_post_nms_test=30, box_batch_size=32, box_representation=32, head_channels=16, head_convs=2,
            detections_per_img=10)  # fmt: skip
MSA = dict(keypoint_levels="p2", output="deconv_1x1", keypoint_head="mskpsnet", ms_roialign="sum")


def _features(channels: int = 8, size: int = 64, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((name, torch.randn(2, channels, size // 2**i, size // 2**i, generator=g)) for i, name in enumerate("0123"))


BOXES = [torch.tensor([[4.0, 8.0, 60.0, 200.0], [100.0, 20.0, 180.0, 140.0]]), torch.tensor([[0.0, 0.0, 255.0, 255.0]])]


# ---------------------------------------------------------------------------------------------- MS-RoIAlign


@pytest.mark.parametrize("n,aggregation,channels", [(0, "sum", 8), (1, "sum", 8), (0, "concat", 32), (1, "concat", 32)])
def test_ms_roialign_shapes(n, aggregation, channels):
    pool = MSRoIAlign(8, n, aggregation)
    out = pool(_features(size=64), BOXES, [(256, 256)] * 2)
    assert out.shape == (3, channels, 2 ** (n + 3), 2 ** (n + 3))
    assert pool.out_channels == channels
    assert pool.level_sizes == tuple(2 ** (n + 3 - i) for i in range(4))  # P2 largest, P5 smallest


def test_ms_roialign_sum_and_concat_aggregate_the_same_level_reads():
    torch.manual_seed(0)
    summed = MSRoIAlign(8, 1, "sum")
    concat = MSRoIAlign(8, 1, "concat")
    concat.load_state_dict(summed.state_dict())
    feats = _features()
    reads = summed.level_features(feats, BOXES)
    assert len(reads) == 4 and all(r.shape == (3, 8, 16, 16) for r in reads)
    torch.testing.assert_close(summed(feats, BOXES, []), sum(reads))
    torch.testing.assert_close(concat(feats, BOXES, []), torch.cat(reads, 1))


@pytest.mark.parametrize("level", range(4))
def test_ms_roialign_every_level_contributes(level):
    pool = MSRoIAlign(8, 0, "sum")
    feats = {k: v.clone().requires_grad_(True) for k, v in _features().items()}
    pool(feats, BOXES, []).sum().backward()
    assert feats[str(level)].grad.abs().sum() > 0, f"P{level + 2} does not reach the output"


def test_ms_roialign_changing_one_level_moves_only_its_concat_block():
    torch.manual_seed(1)
    pool = MSRoIAlign(8, 0, "concat")
    feats = _features()
    before = pool(feats, BOXES, [])
    feats["2"] = feats["2"] + 1.0
    after = pool(feats, BOXES, [])
    changed = [(after[:, 8 * i : 8 * (i + 1)] - before[:, 8 * i : 8 * (i + 1)]).abs().max().item() > 0 for i in range(4)]
    assert changed == [False, False, True, False]


def test_ms_roialign_rejects_unknown_aggregation():
    with pytest.raises(ValueError, match="aggregation"):
        MSRoIAlign(8, 0, "max")


# ---------------------------------------------------------------------------------------------- MS-KpsNet


def test_mskpsnet_keeps_the_roi_size_and_sets_channels():
    head = MSKpsNet(8, channels=12)
    assert head(torch.randn(3, 8, 16, 16)).shape == (3, 12, 16, 16)
    wide = MSKpsNet(32, channels=12, widths=(32, 32, 12))  # the concatenation variant's first three widths
    assert wide.stem[0][0].out_channels == 32 and wide.stem[2][0].out_channels == 12
    assert wide(torch.randn(2, 32, 8, 8)).shape == (2, 12, 8, 8)


def test_mskpsnet_has_the_papers_layers():
    convs = [m for m in MSKpsNet(8, 8).modules() if isinstance(m, torch.nn.Conv2d)]
    # 3 + 2 after the poolings + 2 at the bottom + 2 skips + 2 after the upsamplings, all 3x3
    assert len(convs) == 11 and all(c.kernel_size == (3, 3) for c in convs)


def test_mskpsnet_needs_multiples_of_four():
    with pytest.raises(ValueError, match="multiples of 4"):
        MSKpsNet(8, 8)(torch.randn(1, 8, 14, 14))


def test_deconv_1x1_output_is_four_times_the_roi():
    out = DeconvOneByOnePredictor(8, 17)(torch.randn(2, 8, 16, 16))
    assert out.shape == (2, 17, 64, 64)


# ---------------------------------------------------------------------------------------------- loss


def test_keypoint_targets_cells_edges_and_validity():
    boxes = torch.tensor([[10.0, 20.0, 42.0, 52.0]])  # 32x32 pixels -> 8x8 cells of 4 pixels
    kps = torch.tensor([[[10.0, 20.0, 2], [41.9, 51.9, 1], [42.0, 52.0, 2], [26.0, 30.0, 0], [9.0, 30.0, 2]]])
    index, valid = keypoint_targets(kps, boxes, 8)
    assert index[0, :3].tolist() == [0, 63, 63]  # the right/bottom edge goes to the last cell
    assert valid[0].tolist() == [True, True, True, False, False]  # unlabelled, and outside the box


def test_keypoint_softmax_loss_is_the_mean_negative_log_probability_of_the_target_cells():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 1, 0] = math.log(3.0)  # p(target) = 3 / 6
    index = torch.tensor([[2, 0, 3]])
    valid = torch.tensor([[True, True, False]])
    expected = (-math.log(0.5) - math.log(1 / 4)) / 2  # the third keypoint does not count
    assert keypoint_softmax_loss(logits, index, valid).item() == pytest.approx(expected, rel=1e-6)


def test_keypoint_softmax_loss_without_valid_keypoints_is_zero_and_differentiable():
    logits = torch.randn(2, 17, 4, 4, requires_grad=True)
    loss = keypoint_softmax_loss(logits, torch.zeros(2, 17, dtype=torch.long), torch.zeros(2, 17, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_a_peaked_map_has_a_lower_loss_than_a_flat_one():
    index, valid = torch.tensor([[5]]), torch.tensor([[True]])
    peaked = torch.zeros(1, 1, 4, 4)
    peaked[0, 0, 1, 1] = 5.0
    assert keypoint_softmax_loss(peaked, index, valid) < keypoint_softmax_loss(torch.zeros(1, 1, 4, 4), index, valid)


# ---------------------------------------------------------------------------------------------- decoders


def _maps_with(cells: dict[tuple[int, int], float], size: int = 8) -> torch.Tensor:
    """Logits whose softmax puts (almost) all mass on ``cells`` in proportion to their weights."""
    probs = torch.full((size, size), 1e-9)
    for (y, x), w in cells.items():
        probs[y, x] = w
    return (probs / probs.sum()).log()[None, None]


def test_argmax_decoder_gives_the_cell_centre_in_box_pixels():
    box = torch.tensor([[100.0, 50.0, 132.0, 66.0]])  # 32x16 pixels over 8x8 cells: 4x2 pixels per cell
    out = decode_heatmaps(_maps_with({(3, 5): 1.0}), box, "argmax")
    assert out[0, 0, :2].tolist() == pytest.approx([100 + 5.5 * 4, 50 + 3.5 * 2])
    assert out[0, 0, 2].item() == pytest.approx(1.0, abs=1e-6)


def test_top2_decoder_averages_the_two_best_cells_by_probability():
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])  # one pixel per cell
    out = decode_heatmaps(_maps_with({(2, 2): 0.75, (2, 6): 0.25}), box, "top2")
    assert out[0, 0, :2].tolist() == pytest.approx([2.5 + 0.25 * 4, 2.5], abs=1e-5)
    same = decode_heatmaps(_maps_with({(2, 2): 0.5, (4, 2): 0.5}), box, "top2")
    assert same[0, 0, :2].tolist() == pytest.approx([2.5, 3.5], abs=1e-5)
    argmax = decode_heatmaps(_maps_with({(2, 2): 0.75, (2, 6): 0.25}), box, "argmax")
    assert argmax[0, 0, :2].tolist() == pytest.approx([2.5, 2.5], abs=1e-5)


def test_decoder_handles_no_boxes_and_rejects_unknown_names():
    assert decode_heatmaps(torch.zeros(0, 17, 8, 8), torch.zeros(0, 4)).shape == (0, 17, 3)
    with pytest.raises(ValueError, match="decoder"):
        decode_heatmaps(torch.zeros(1, 1, 2, 2), torch.zeros(1, 4), "soft-argmax")


# ---------------------------------------------------------------------------------------------- the detector


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 96, 96, generator=g) for _ in range(2)]
    kps = torch.rand(2, 17, 3, generator=g) * torch.tensor([30.0, 60.0, 0.0]) + torch.tensor([12.0, 12.0, 2.0])
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 45.0, 75.0], [50.0, 20.0, 90.0, 90.0]]),
                "labels": torch.ones(2, dtype=torch.long), "keypoints": kps} for _ in images]  # fmt: skip
    return images, targets


@pytest.mark.parametrize("switches", [{}, {"keypoint_levels": "p2", "output": "deconv_1x1"}, MSA, {**MSA, "ms_roialign": "concat"}])
def test_model_trains_and_predicts(switches):
    torch.manual_seed(0)
    model = build_msa_rcnn(MSARCNNConfig(**TINY, **switches))
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_keypoint"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det in out:
        d = len(det["boxes"])
        assert det["keypoints"].shape == (d, 17, 3) and det["keypoints_scores"].shape == (d, 17)


def test_keypoint_maps_are_four_times_the_msa_roi():
    model = build_msa_rcnn(MSARCNNConfig(**TINY, **MSA)).eval()
    feats = OrderedDict((str(i), torch.randn(1, 16, 24 // 2**i, 24 // 2**i)) for i in range(4))
    logits = model.roi_heads.keypoint_logits(feats, [torch.tensor([[0.0, 0.0, 40.0, 80.0]])], [(96, 96)])
    assert logits.shape == (1, 17, 64, 64)  # 16x16 RoIs (n = 1), x4
    baseline = build_msa_rcnn(MSARCNNConfig(**TINY)).eval()
    assert baseline.roi_heads.keypoint_logits(feats, [torch.tensor([[0.0, 0.0, 40.0, 80.0]])], [(96, 96)]).shape[-1] == 56


def test_inference_is_sequential_keypoints_on_the_final_boxes():
    torch.manual_seed(0)
    model = build_msa_rcnn(MSARCNNConfig(**TINY, **MSA, box_score_thresh=0.0)).eval()
    seen = []
    model.roi_heads.keypoint_roi_pool.register_forward_pre_hook(lambda m, args: seen.append([b.clone() for b in args[1]]))
    images, _ = _batch()
    with torch.no_grad():
        out = model(images)
    assert len(seen) == 1
    for boxes, det in zip(seen[0], out):
        torch.testing.assert_close(boxes, det["boxes"])  # refined, thresholded, NMS'd: the returned detections
    assert 0 < sum(len(d["boxes"]) for d in out) <= 2 * TINY["detections_per_img"]


def test_multiscale_with_one_scale_equals_plain_inference_and_more_scales_run():
    torch.manual_seed(0)
    model = build_msa_rcnn(MSARCNNConfig(**TINY, **MSA, box_score_thresh=0.0, decoder="top2")).eval()
    images, _ = _batch()
    with torch.no_grad():
        plain = model(images)
    single = detect_multiscale(model, images, (1.0,))
    for a, b in zip(plain, single):
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["keypoints"], b["keypoints"], atol=1e-4, rtol=0)
    multi = detect_multiscale(model, images, (0.75, 1.0, 1.25))
    assert all(d["keypoints"].shape == (len(d["boxes"]), 17, 3) for d in multi)


def test_config_rejects_bad_switches():
    with pytest.raises(ValueError, match="ms_roialign"):
        MSARCNNConfig(ms_roialign="max")
    with pytest.raises(ValueError, match="ImageNet"):
        MSARCNNConfig(width=16, pretrained=True)


def test_baseline_has_torchvision_keypoint_rcnn_parameter_count():
    from poselib.models import build_model

    # torchvision's KeypointRCNN_ResNet50_FPN_Weights metadata: 59,137,258 parameters
    assert sum(p.numel() for p in build_model("maskrcnn-kp-r50").parameters()) == 59_137_258


def test_registered_models_and_macs_of_a_small_detector():
    from poselib.engine.flops import count_macs
    from poselib.models import list_models

    entries = {e.name: e for e in list_models()}
    for name in ("maskrcnn-kp-r50", "msarcnn-r50-sum", "msarcnn-r50-concat"):
        assert entries[name].input_size == (800, 1216)
    small = build_msa_rcnn(MSARCNNConfig(**TINY, **MSA))
    cost = count_macs(small, (96, 96))  # eval mode, a batch tensor as input: torchvision takes it as a list
    assert cost["gmacs"] > 0 and cost["params_m"] == pytest.approx(sum(p.numel() for p in small.parameters()) / 1e6)
    assert small.training  # count_macs works on a copy


def test_concat_has_more_parameters_than_sum():
    from poselib.engine.flops import count_params

    summed = count_params(build_msa_rcnn(MSARCNNConfig(**TINY, **MSA)))
    concat = count_params(build_msa_rcnn(MSARCNNConfig(**TINY, **{**MSA, "ms_roialign": "concat"})))
    assert concat > summed


def test_keypoint_heatmaps_are_probability_maps_of_the_given_boxes():
    model = build_msa_rcnn(MSARCNNConfig(**TINY, **MSA))
    images, _ = _batch()
    maps = model.keypoint_heatmaps(images, [torch.tensor([[10.0, 10.0, 50.0, 90.0]]), torch.zeros(0, 4)])
    assert maps[0].shape == (1, 17, 64, 64) and maps[1].shape == (0, 17, 64, 64)
    torch.testing.assert_close(maps[0].sum((-2, -1)), torch.ones(1, 17))


def test_effective_receptive_field_is_centred_and_normalised():
    from poselib.models.msa_rcnn import effective_receptive_field

    torch.manual_seed(0)
    erf = effective_receptive_field(MSKpsNet(4, 4), 4, 16, samples=2)
    assert erf.shape == (16, 16) and erf.max().item() == pytest.approx(1.0)
    assert erf[6:10, 6:10].mean() > erf[:2, :2].mean()  # the centre matters more than the corner


def test_keypoint_rois_per_image_caps_the_keypoint_heads_training_rois():
    torch.manual_seed(0)
    model = build_msa_rcnn(MSARCNNConfig(**TINY, keypoint_rois_per_image=1))
    seen = []
    model.roi_heads.keypoint_roi_pool.register_forward_pre_hook(lambda m, args: seen.append([len(b) for b in args[1]]))
    images, targets = _batch()
    model(images, targets)
    assert seen == [[1, 1]]
