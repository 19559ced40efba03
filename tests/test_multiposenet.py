"""Part I: MultiPoseNet's backbone, keypoint subnet, RetinaNet person subnet, losses and the method's pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork

from poselib.engine.flops import count_macs, count_params
from poselib.methods import multiposenet as method
from poselib.models import build_model
from poselib.models.backbones import resnet
from poselib.models.multiposenet import KeypointSubnet, MultiPoseNet

TINY = dict(depth=18, width=8, fpn_channels=16, d_channels=8, anchor_sizes=(16, 32, 64))


def test_keypoint_subnet_shapes_and_switches() -> None:
    feats = [torch.rand(2, 16, 32 // 2**i, 32 // 2**i) for i in range(4)]
    final, inter = KeypointSubnet(16, 8, 18)(feats)
    assert final.shape == (2, 18, 32, 32)
    assert len(inter) == 4 and all(t.shape == final.shape for t in inter)
    no_int = KeypointSubnet(16, 8, 18, intermediate=False)
    assert no_int(feats)[1] == []
    # concatenation: the smoothing conv sees 4 x d channels; without it, d channels
    assert KeypointSubnet(16, 8, 18).smooth[0].in_channels == 32
    assert KeypointSubnet(16, 8, 18, concat=False).smooth[0].in_channels == 8


def test_keypoint_subnet_matches_section_3_2_at_paper_width() -> None:
    subnet = KeypointSubnet()  # K 256 channels, D 128, K+1 = 18 outputs
    d = subnet.d_layers[0]
    assert [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv2d)] == [128, 128]
    assert all(m.kernel_size == (3, 3) for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert subnet.smooth[0].in_channels == 512 and subnet.smooth[0].kernel_size == (3, 3)
    assert subnet.predict.kernel_size == (1, 1) and subnet.predict.out_channels == 18


def test_multiposenet_outputs_stride_4_and_two_pyramids() -> None:
    model = MultiPoseNet(**TINY).eval()
    assert isinstance(model.keypoint_fpn, FeaturePyramidNetwork) and isinstance(model.person_fpn, FeaturePyramidNetwork)
    x = torch.rand(1, 3, 64, 64)
    maps, detections = model.infer(x)
    assert maps.shape == (1, 18, 16, 16)
    assert set(detections[0]) == {"boxes", "scores"}
    assert model.person_subnet.nms_threshold == 0.3
    assert model.person_subnet.head.regression_head._loss_type == "smooth_l1"


def test_detector_trains_on_the_frozen_backbone() -> None:
    torch.manual_seed(0)
    model = MultiPoseNet(**TINY).freeze_keypoint_path()
    model.train()
    assert not model.backbone.training and model.person_subnet.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.rand(2, 3, 64, 64)
    boxes = [torch.tensor([[8.0, 4.0, 30.0, 60.0]]), torch.zeros(0, 4)]
    first = None
    for _ in range(5):
        losses = model.detector_loss(x, boxes)
        assert set(losses) == {"classification", "bbox_regression"}
        loss = losses["classification"] + losses["bbox_regression"]
        first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < first
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics


def test_focal_loss_is_the_papers() -> None:
    from torchvision.ops import sigmoid_focal_loss

    logits, target = torch.tensor([0.3, -1.0]), torch.tensor([1.0, 0.0])
    p = torch.sigmoid(logits)
    expected = -(0.25 * (1 - p[0]) ** 2 * torch.log(p[0])) - (0.75 * p[1] ** 2 * torch.log(1 - p[1]))
    assert sigmoid_focal_loss(logits, target, reduction="sum").item() == pytest.approx(expected.item(), rel=1e-5)


def test_keypoint_loss_is_masked_by_w() -> None:
    target = torch.zeros(1, 18, 8, 8)
    pred = torch.zeros(1, 18, 8, 8)
    pred[..., :4, :] = 1.0  # wrong in the top half
    weight = torch.ones(1, 8, 8)
    full, _ = method.keypoint_loss(pred, [], target, weight)
    weight[:, :4] = 0  # W = 0 over an unannotated person up there
    masked, _ = method.keypoint_loss(pred, [], target, weight)
    assert full.item() > 0 and masked.item() == 0
    with_inter, _ = method.keypoint_loss(pred, [pred, pred], target, torch.ones(1, 8, 8))
    assert with_inter.item() == pytest.approx(3 * full.item())


def test_registered_models_and_independent_parameter_count() -> None:
    # backbone + two FPNs + subnets, counted part by part
    net = build_model("multiposenet-r50").model
    parts = resnet(50)
    expected = count_params(parts) + count_params(FeaturePyramidNetwork([256, 512, 1024, 2048], 256))
    expected += count_params(net.keypoint_subnet) + count_params(net.person_fpn) + count_params(net.person_subnet)
    assert count_params(net) == expected
    # the keypoint subnet alone: 4 x (256*128*9+128 + 128*128*9+128) + 512*512*9+512 + 512*18+18 + 4 x (256*18+18)
    subnet = 4 * (256 * 128 * 9 + 128 + 128 * 128 * 9 + 128) + 512 * 512 * 9 + 512 + 512 * 18 + 18 + 4 * (256 * 18 + 18)
    assert count_params(net.keypoint_subnet) == subnet
    assert count_params(build_model("multiposenet-r101")) > count_params(build_model("multiposenet-r50")) + 15e6


def test_macs_grow_with_the_input_area() -> None:
    model = build_model("multiposenet-r50", **{k: v for k, v in TINY.items() if k != "depth"})
    small, large = count_macs(model, (64, 64))["gmacs"], count_macs(model, (128, 128))["gmacs"]
    assert 3.5 < large / small < 4.5


def test_recipes_per_preset_and_overrides() -> None:
    cpu = method.recipe("cpu")
    assert cpu.grid == (21, 14) and cpu.prn["hidden"] == 1024
    gpu = method.recipe("gpu")
    assert gpu.input_size == 480 and gpu.grid == (56, 36) and gpu.prn["dropout"] == 0.5
    variant = method.recipe("cpu", model_kwargs={"concat": False}, prn={"layers": 2})
    assert variant.model_kwargs["concat"] is False and variant.model_kwargs["depth"] == 18
    assert variant.prn["layers"] == 2 and variant.prn["hidden"] == 1024
    # the CPU presets train both convolutional stages channels-last (the faster format there; smoke runs that path)
    for preset in ("smoke", "cpu"):
        small = method.recipe(preset)
        assert small.train["channels_last"] is True and small.detector_train["channels_last"] is True
    with pytest.raises(ValueError):
        method.recipe("nope")


def test_bottom_up_targets_add_segmentation_and_w() -> None:
    encoder = method.BottomUpTargets(32, sigma=1.0)
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, 0] = torch.tensor([13.5, 9.5, 2.0])
    person = torch.zeros(32, 32)
    person[4:20, 8:16] = 1
    ignore = torch.zeros(32, 32)
    ignore[24:, 24:] = 1
    sample = encoder({"keypoints": keypoints, "person_mask": person, "ignore_mask": ignore})
    assert sample["targets"].shape == (18, 8, 8) and sample["weight"].shape == (8, 8)
    assert sample["targets"][0].argmax().item() == 2 * 8 + 3
    assert sample["targets"][17, 1:5, 2:4].min().item() == 1.0 and sample["targets"][17, 6:].max().item() == 0.0
    assert sample["weight"][6:, 6:].max().item() == 0 and sample["weight"][:6].min().item() == 1


def test_ground_truth_grouping_on_synthpose_mini_scores_high() -> None:
    r = method.recipe("smoke")
    _, val_set = method.build_datasets(r)
    image_id = val_set.image_ids[0]
    peaks, boxes, kps = method.ground_truth_parts(val_set, image_id)
    assert peaks.shape == (17, len(boxes), 3) and kps.shape == (len(boxes), 17, 3)
    oracle = method.ImageParts
    parts = [oracle(i, torch.zeros(17, 0, 3), torch.zeros(0, 4), torch.zeros(0), torch.zeros(1, 1), None) for i in val_set.image_ids]
    prior = torch.ones(17, *r.grid)
    ucr = method.evaluate_poses(method.group_parts(parts, val_set, method.make_grouping("ucr", prior=prior), grid=r.grid,
                                                   keypoints="gt", boxes="gt"), val_set)
    assert ucr["AP"] > 0.2  # a flat prior is Max with exclusivity: most people are still right
    ours = method.group_parts(parts, val_set, method.make_grouping("max"), grid=r.grid, keypoints="ours", boxes="gt")
    assert method.evaluate_poses(ours, val_set)["AP"] == 0  # no detected peaks: nothing to assign
    with pytest.raises(ValueError, match="needs"):
        method.make_grouping("prn")


def test_snap_to_grid_moves_points_to_output_cell_centres() -> None:
    peaks = torch.tensor([[[9.9, 0.2, 1.0], [4.0, 7.6, 0.5]]])
    scale_two = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # input pixel x -> image pixel 2x
    snapped = method.snap_to_grid(peaks, scale_two, stride=4)
    # image 9.9 -> input 4.95 -> cell 1 -> centre 5.5 -> image 11; image 0.2 -> cell 0 -> 1.5 -> 3
    assert snapped[0, 0].tolist() == pytest.approx([11.0, 3.0, 1.0])
    assert snapped[0, 1].tolist() == pytest.approx([3.0, 3.0, 0.5])


def test_crop_augment_keeps_the_test_resolution() -> None:
    from poselib.data.transforms import AugmentConfig
    from poselib.methods import bottomup

    config = AugmentConfig.bottom_up()
    crops = bottomup.crop_augment(config, 128, 256)
    assert crops.scale_range == (config.scale_range[0] / 2, config.scale_range[1] / 2)
    assert crops.translate == 0.5  # a crop of half the image may centre anywhere from one quarter to three quarters
    assert bottomup.crop_augment(config, 128, 128) == config
    with pytest.raises(ValueError, match="must not be smaller"):
        bottomup.crop_augment(config, 256, 128)


def test_training_crops_and_whole_test_images_share_one_resolution() -> None:
    cpu, gpu = method.recipe("cpu"), method.recipe("gpu")
    assert (cpu.input_size, cpu.test_input_size, cpu.model_kwargs["anchor_sizes"]) == (128, 256, (32, 64, 128))
    assert gpu.test_size is None and gpu.test_input_size == gpu.input_size == 480
    # SynthPose-mini's 128-pixel images: read whole at 128, trained on 96-pixel crops at the same resolution
    r = method.recipe("smoke", test_size=128)
    train_set, val_set = method.build_datasets(r)
    assert val_set[0]["image"].shape[-2:] == (128, 128) and train_set[0]["image"].shape[-2:] == (96, 96)

    def image_pixels_per_input_pixel(sample) -> float:
        return float(np.linalg.norm(np.asarray(sample["input_to_image"], dtype=float)[:, 0]))

    assert image_pixels_per_input_pixel(val_set[0]) == pytest.approx(1.0)
    low, high = r.augment["scale_range"]  # the augmentation's zoom, around the test resolution
    scales = [image_pixels_per_input_pixel(train_set[i]) for i in range(8)]
    assert all(low - 1e-6 <= s <= high + 1e-6 for s in scales) and max(scales) - min(scales) > 0.05


def test_network_without_pretrained_weights_never_downloads(monkeypatch) -> None:
    """The coco recipe asks for an ImageNet backbone; loading a checkpoint and counting MACs build the same network
    without fetching it (the fetch is replaced by a recorder here: tests never download)."""
    import poselib.models.multiposenet as model_module

    fetched = []

    def fake_resnet(depth, *, width=64, pretrained=False, dilation=(False, False, False)):
        fetched.append(pretrained)
        return resnet(depth, width=width, dilation=dilation)

    monkeypatch.setattr(model_module, "resnet", fake_resnet)
    recipe = method.recipe("smoke", model_kwargs={"pretrained": True})
    method.build_network(recipe, load_pretrained=False)
    assert fetched == [False] and recipe.model_kwargs["pretrained"] is True  # the recipe itself is left alone
    method.build_network(recipe)
    assert fetched == [False, True]
