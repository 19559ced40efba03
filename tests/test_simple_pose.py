"""Simple Pose (Part II): targets, focal L2, the IMHN and CMU-Net, the recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from poselib.codecs import bodyparts as bp
from poselib.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from poselib.losses import SIMPLE_POSE_SCALE_WEIGHTS, focal_l2, focal_l2_factor, multi_scale_focal_l2
from poselib.models.cmunet import CMUNet
from poselib.models.imhn import IMHN


def _person(points: dict[int, tuple[float, float]]) -> torch.Tensor:
    kpts = torch.zeros(1, NUM_KEYPOINTS, 3)
    for k, (x, y) in points.items():
        kpts[0, k] = torch.tensor([x, y, 2.0])
    return kpts


# ------------------------------------------------------------------------------------------------ targets


def test_cell_centres_follow_the_stride_convention() -> None:
    # cell i at stride s is centred on s*i + (s-1)/2: the reference's 4i + 1.5 for stride 4
    assert bp.cell_centres(3, 4).tolist() == [1.5, 5.5, 9.5]
    assert bp.cell_centres(2, 1).tolist() == [0.0, 1.0]


def test_keypoint_peak_value_position_and_truncation() -> None:
    sigma, thre = 3.0, 0.01
    maps = bp.keypoint_heatmaps(_person({0: (4 * 5 + 1.5, 4 * 7 + 1.5)}), (16, 16), 4, sigma, thre)
    assert maps.shape == (17, 16, 16)
    assert maps[0, 7, 5] == pytest.approx(1.0)
    assert maps[0].argmax().item() == 7 * 16 + 5
    # a neighbour one cell (4 px) away
    assert maps[0, 7, 6] == pytest.approx(math.exp(-16 / (2 * sigma**2)), rel=1e-5)
    # truncation: nothing below thre survives, and the cut is where the Gaussian falls under thre
    values = maps[0][maps[0] > 0]
    assert values.min() >= thre
    radius = math.sqrt(-2 * sigma**2 * math.log(thre))
    d = (bp.cell_centres(16, 4)[None, :] - 21.5) ** 2 + (bp.cell_centres(16, 4)[:, None] - 29.5) ** 2
    assert torch.equal(maps[0] > 0, d.sqrt() <= radius)
    assert maps[1:].abs().sum() == 0  # unlabelled keypoints give empty maps


def test_keypoint_maps_take_the_maximum_over_people() -> None:
    two = torch.cat([_person({0: (9.5, 9.5)}), _person({0: (13.5, 9.5)})])
    maps = bp.keypoint_heatmaps(two, (8, 8), 4, 3.0)
    assert maps[0, 2, 2] == pytest.approx(1.0) and maps[0, 2, 3] == pytest.approx(1.0)


def test_bodypart_map_is_a_gaussian_of_the_distance_to_the_line_inside_the_box() -> None:
    # right shoulder (6) to right elbow (8), horizontal at y = 17.5, from x = 9.5 to 41.5
    kpts = _person({6: (9.5, 17.5), 8: (41.5, 17.5)})
    sigma = 4.0
    maps = bp.bodypart_heatmaps(kpts, (16, 16), 4, sigma, 0.01)
    part = bp.BODY_PARTS.index((6, 8))
    m = maps[part]
    assert maps.shape == (bp.NUM_PARTS, 16, 16)
    assert torch.allclose(m[4, 2:11], torch.ones(9))  # on the segment, cells 2..10 (x = 9.5 .. 41.5)
    assert m[5, 5] == pytest.approx(math.exp(-16 / (2 * sigma**2)), rel=1e-5)  # one cell off the line
    # the box ends one stride beyond the end points: x in [5.5, 45.5] -> cells 1..11
    assert m[4, 1] == pytest.approx(1.0) and m[4, 11] == pytest.approx(1.0)
    assert m[4, 0] == 0 and m[4, 12] == 0
    assert (m[(m > 0)] >= 0.01).all()  # truncated at thre
    other = [i for i in range(bp.NUM_PARTS) if i != part]
    assert maps[other].abs().sum() == 0


def test_bodypart_floor_reproduces_the_reference_code() -> None:
    kpts = _person({6: (9.5, 9.5), 8: (41.5, 41.5)})  # a diagonal: its box holds cells far from the line
    part = bp.BODY_PARTS.index((6, 8))
    floor = bp.bodypart_heatmaps(kpts, (16, 16), 4, 2.0, 0.01, floor=0.01)[part]
    paper = bp.bodypart_heatmaps(kpts, (16, 16), 4, 2.0, 0.01)[part]
    # inside the box, far from the line, the reference writes 0.01 where the paper truncates to 0
    assert floor[10, 2] == pytest.approx(0.01) and paper[10, 2] == 0
    assert floor[15, 2] == 0  # outside the box (rows beyond y = 45.5)
    assert floor[5, 5] == pytest.approx(1.0)


def test_bodyparts_average_over_people() -> None:
    a = _person({6: (9.5, 17.5), 8: (41.5, 17.5)})
    b = _person({6: (25.5, 1.5), 8: (25.5, 41.5)})  # crossing vertically at x = 25.5 (cell 6)
    maps = bp.bodypart_heatmaps(torch.cat([a, b]), (16, 16), 4, 4.0)[bp.BODY_PARTS.index((6, 8))]
    alone = bp.bodypart_heatmaps(a, (16, 16), 4, 4.0)[bp.BODY_PARTS.index((6, 8))]
    assert maps[4, 6] == pytest.approx(1.0)  # both are 1 at the crossing: the mean stays 1
    assert maps[4, 3] == pytest.approx(alone[4, 3].item())  # only one person covers this cell
    assert maps.max() <= 1.0


def test_paf_is_the_unit_direction_on_the_limb() -> None:
    kpts = _person({6: (9.5, 17.5), 8: (41.5, 17.5)})
    fields = bp.part_affinity_fields(kpts, (16, 16), 4, width=4.0)
    part = bp.BODY_PARTS.index((6, 8))
    fx, fy = fields[2 * part], fields[2 * part + 1]
    assert fields.shape == (2 * bp.NUM_PARTS, 16, 16)
    assert fx[4, 2:11].tolist() == [1.0] * 9 and fy.abs().sum() == 0
    assert fx[4, 1] == 0 and fx[4, 11] == 0  # beyond the end points
    assert fx[3, 5] == 1.0 and fx[6, 5] == 0  # 4 px off the line is within width, 8 px is not


def test_thirty_reference_parts_map_onto_coco() -> None:
    assert len(bp.REFERENCE_PARTS) == 30 == len(bp.REFERENCE_PART_MAP)
    covered = {i for targets in bp.REFERENCE_PART_MAP for i in targets}
    assert covered == set(range(bp.NUM_PARTS))  # every COCO part comes from a reference part
    assert len(set(map(frozenset, bp.BODY_PARTS))) == bp.NUM_PARTS  # no duplicates


def test_mst_is_a_spanning_tree() -> None:
    edges = [bp.BODY_PARTS[i] for i in bp.MST_PARTS]
    assert len(edges) == NUM_KEYPOINTS - 1
    parent = list(range(NUM_KEYPOINTS))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        assert ra != rb, f"edge {a}-{b} closes a cycle"
        parent[ra] = rb
    assert len({root(i) for i in range(NUM_KEYPOINTS)}) == 1


@pytest.mark.parametrize("encoding", ["bodyparts", "paf"])
def test_flip_back_undoes_a_mirrored_encoding(encoding: str) -> None:
    rng = np.random.default_rng(0)
    kpts = torch.tensor(np.concatenate([rng.uniform(4, 60, (2, 17, 2)), np.full((2, 17, 1), 2.0)], -1), dtype=torch.float32)
    enc = bp.BodyPartTargets(64, 1, sigma_k=3.0, sigma_p=2.0, encoding=encoding, num_scales=1)
    mirrored = kpts.clone()
    mirrored[..., 0] = 63 - kpts[..., 0]
    mirrored = mirrored[:, list(FLIP_INDEX)]  # a mirrored left shoulder is labelled right shoulder
    direct = enc.encode(kpts)
    back = bp.flip_back(enc.encode(mirrored)[None], encoding=encoding)[0]
    assert torch.allclose(direct, back, atol=1e-5)


def test_encoder_gives_pyramids_and_masks() -> None:
    enc = bp.BodyPartTargets(64, 4, sigma_k=3.0, sigma_p=2.0)
    ignore = torch.zeros(64, 64)
    ignore[:8, :8] = 1
    sample = enc({"keypoints": _person({6: (9.5, 17.5), 8: (41.5, 17.5)}), "ignore_mask": ignore})
    assert [tuple(t.shape) for t in sample["targets"]] == [(41, 16, 16), (41, 8, 8), (41, 4, 4), (41, 2, 2), (41, 1, 1)]
    assert torch.allclose(sample["targets"][1], torch.nn.functional.avg_pool2d(sample["targets"][0][None], 2)[0])
    assert sample["masks"][0][:2, :2].sum() == 0 and sample["masks"][0][2:, 2:].min() == 1
    assert enc.num_channels == 41


# ------------------------------------------------------------------------------------------------ losses


def test_focal_factor_hand_computed() -> None:
    pred = torch.tensor([0.9, 0.3, 0.05, 0.5])
    target = torch.tensor([1.0, 0.5, 0.0, 0.005])  # foreground, foreground, background, background (<= thre)
    got = focal_l2_factor(pred, target, thre=0.01, alpha=0.1, beta=0.02, gamma=2.0)
    expected = [(1 - 0.9 + 0.1) ** 2, (1 - 0.3 + 0.1) ** 2, (0.05 + 0.02) ** 2, (0.5 + 0.02) ** 2]
    assert got.tolist() == pytest.approx(expected)
    released = focal_l2_factor(pred, target, thre=0.01, alpha=0.0, beta=0.0, gamma=1.0)
    assert released.tolist() == pytest.approx([0.1, 0.7, 0.05, 0.5])


def test_focal_l2_weights_keypoints_and_masks() -> None:
    pred = torch.zeros(1, 3, 1, 2)
    target = torch.zeros(1, 3, 1, 2)
    pred[0, :, 0, 0] = 0.5  # error 0.5 on background pixels (factor (0.5 + beta)^gamma)
    plain = focal_l2(pred, target, num_keypoints=1, eta=2.0, gamma=0.0)
    assert plain.tolist() == pytest.approx([0.25 * 3 + 0.25 + 0.25])  # keypoint channel weighs eta + 1
    focal = focal_l2(pred, target, num_keypoints=1, eta=2.0, gamma=2.0, beta=0.02)
    assert focal.tolist() == pytest.approx([(0.25 * 3 + 0.5) * 0.52**2])
    mask = torch.tensor([[[0.0, 1.0]]])
    assert focal_l2(pred, target, mask, num_keypoints=1).item() == 0.0
    kp_only = focal_l2(pred, target, num_keypoints=1, eta=2.0, gamma=2.0, beta=0.02, focal_channels="keypoints")
    assert kp_only.tolist() == pytest.approx([0.25 * 3 * 0.52**2 + 0.5])


def test_multi_scale_loss_weights_scales_and_sums_stages() -> None:
    targets = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    stage = [torch.full((2, 1, 4, 4), 0.1), torch.full((2, 1, 2, 2), 0.2)]
    l0 = 16 * 0.01 * 3  # per image, one keypoint channel (weight 3)
    l1 = 4 * 0.04 * 3
    expected = (1 * l0 + 2 * l1) / 3
    got = multi_scale_focal_l2([stage, stage], targets, scale_weights=SIMPLE_POSE_SCALE_WEIGHTS, num_keypoints=1, gamma=0.0)
    assert got.item() == pytest.approx(2 * expected)


def test_focal_loss_prefers_hard_pixels() -> None:
    target = torch.tensor([[[[1.0, 0.0]]]])
    easy = torch.tensor([[[[0.9, 0.0]]]], requires_grad=True)
    hard = torch.tensor([[[[0.3, 0.0]]]], requires_grad=True)
    l2_ratio = (0.7**2) / (0.1**2)
    focal_ratio = focal_l2(hard, target, num_keypoints=1).item() / focal_l2(easy, target, num_keypoints=1).item()
    assert focal_ratio > l2_ratio


# ------------------------------------------------------------------------------------------------ networks


def _independent_imhn_count(stages: int, outputs: int, c: int = 256, growth: int = 128, order: int = 4) -> int:
    """Parameters from the fact sheet's layer list (written without looking at the module)."""

    def conv_bn(cin, cout, k):
        return cin * cout * k * k + 2 * cout

    def res(cin, cout):
        n = conv_bn(cin, cout // 2, 1) + conv_bn(cout // 2, cout // 2, 3) + conv_bn(cout // 2, cout, 1)
        return n + (0 if cin == cout else conv_bn(cin, cout, 1))

    def hg(level, ch):
        inner = hg(level - 1, ch + growth) if level > 1 else res(ch + growth, ch + growth)
        return res(ch, ch) + res(ch, ch + growth) + inner + res(ch + growth, ch) + conv_bn(ch, ch, 3)

    stem = conv_bn(3, c // 4, 7) + res(c // 4, c // 2) + res(c // 2, c // 2) + 6 * conv_bn(c // 2, c // 2, 3)
    levels = [c + j * growth for j in range(order + 1)]
    se = 2 * c * (c // 16) + c // 16 + c
    heads = sum(conv_bn(l, c, 3) + conv_bn(c, c, 3) + se + c * outputs + outputs for l in levels)
    maps = sum(conv_bn(outputs, l, 1) + conv_bn(c, l, 1) for l in levels)
    return stem + stages * (hg(order, c) + heads) + (stages - 1) * maps


@pytest.mark.parametrize("stages, reference_m", [(4, 129.0), (3, 96.8)])
def test_imhn_parameters_match_the_reference_count(stages: int, reference_m: float) -> None:
    with torch.device("meta"):
        model = IMHN(stages, 50)
    count = sum(p.numel() for p in model.parameters())
    assert count == _independent_imhn_count(stages, 50)
    assert count / 1e6 == pytest.approx(reference_m, abs=0.05)


def test_cmunet_six_stages_has_cmu_poses_parameter_count() -> None:
    with torch.device("meta"):
        model = CMUNet(6, (38, 19))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(52.31, abs=0.01)


def test_imhn_shapes_at_every_scale_and_stage() -> None:
    model = IMHN(2, 41, channels=16, growth=8, order=4).eval()
    with torch.no_grad():
        outputs, features = model(torch.rand(1, 3, 64, 64), return_features=True)
    assert len(outputs) == 2
    for stage, feats in zip(outputs, features):
        assert [tuple(o.shape) for o in stage] == [(1, 41, 16 >> j, 16 >> j) for j in range(5)]
        assert [f.shape[1] for f in feats] == [16] * 5
    se = model.se_blocks()
    assert all(block is not None and block.last_weights.shape == (1, 16) for stage in se for block in stage)
    with pytest.raises(ValueError, match="divisible by 64"):
        model(torch.rand(1, 3, 48, 48))


def test_imhn_switches() -> None:
    no_spatial = IMHN(2, 41, channels=16, growth=8, spatial_attention=False).eval()
    with torch.no_grad():
        out = no_spatial(torch.rand(1, 3, 64, 64))
    assert [len(s) for s in out] == [1, 1] and out[0][0].shape == (1, 41, 16, 16)
    no_se = IMHN(2, 41, channels=16, growth=8, channel_attention=False)
    assert all(b is None for stage in no_se.se_blocks() for b in stage)
    plain = IMHN(2, 41, channels=16, growth=8, identity_mapping=False)
    full = IMHN(2, 41, channels=16, growth=8)
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in full.parameters())


def test_identity_mapping_reaches_the_next_stage_at_every_scale() -> None:
    torch.manual_seed(0)
    model = IMHN(2, 5, channels=16, growth=8, order=2, init_std=None).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)[1]
        model.mappings[0][2].pred[0].weight.add_(1.0)  # the coarsest scale's mapping only
        after = model(x)[1]
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


def test_cmunet_shapes() -> None:
    model = CMUNet(3, (17, 48), width=0.125).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert [tuple(s[0].shape) for s in out] == [(1, 65, 8, 8)] * 3


def test_registered_models_count_macs_on_small_inputs() -> None:
    from poselib.engine.flops import count_macs
    from poselib.models import build_model, list_models

    names = {e.name for e in list_models()}
    assert {"imhn-3stage", "imhn-4stage", "cmunet-3stage"} <= names
    small = count_macs(build_model("imhn", num_stages=1, channels=16, growth=8), (64, 64))
    assert small["gmacs"] > 0


# ------------------------------------------------------------------------------------------------ recipe


def test_smoke_recipe_step_runs_and_learns_shapes() -> None:
    from poselib.data.datasets import collate_bottomup
    from poselib.methods import simple_pose as sp

    recipe = sp.recipe("smoke")
    model = sp.build(recipe)
    enc = sp.encoder(recipe)
    samples = []
    for i in range(2):
        image = torch.rand(3, 64, 64)
        kpts = _person({6: (20.0 + i, 20.0), 8: (40.0, 22.0), 0: (30.0, 10.0), 5: (35.0, 20.0)})
        samples.append(enc({"image": image, "keypoints": kpts, "ignore_mask": torch.zeros(64, 64), "image_id": i}))
    batch = collate_bottomup(samples)
    outputs = model(batch["image"])
    loss = sp.loss_fn(recipe, outputs, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    variants = {name: sp.ablation_recipe(recipe, name) for name in sp.ABLATIONS}
    assert variants["paf"].num_outputs == 17 + 48 and variants["mst"].num_outputs == 17 + 16
    assert variants["more_stages"].model_kwargs["num_stages"] == recipe.model_kwargs["num_stages"] + 1
    assert len({hash(str(v)) for v in variants.values()}) == len(variants)


def test_multi_scale_flip_maps_is_consistent_with_the_stride_convention() -> None:
    from poselib.methods.bottomup import multi_scale_flip_maps

    ramp = torch.arange(64, dtype=torch.float32).expand(1, 3, 64, 64).contiguous()  # x coordinate as the value

    def forward(images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images[:, :1], 4)  # cell i holds the mean x of its pixels

    single = multi_scale_flip_maps(forward, ramp, 4)
    # upsampled back to input resolution, each pixel recovers its own x away from the clamped borders (to within
    # 0.2 px: PyTorch's bicubic kernel, a = -0.75, does not reproduce straight lines exactly), with no shift
    x = torch.arange(8, 56, dtype=torch.float32)
    assert torch.allclose(single[0, 0, 10, 8:56], x, atol=0.2)
    assert abs(float((single[0, 0, 10, 8:56] - x).mean())) < 1e-3
    flipped = multi_scale_flip_maps(forward, ramp, 4, flip=lambda m: m.flip(-1))
    assert torch.allclose(flipped, single, atol=1e-4)
    scaled = multi_scale_flip_maps(forward, ramp, 4, scales=(1.0, 2.0))
    assert torch.allclose(scaled[0, 0, 10, 16:48], x[8:40], atol=0.2)


def test_meta_device_mac_count_equals_the_real_count() -> None:
    from poselib.engine.flops import count_macs, count_macs_meta
    from poselib.models import build_model

    kwargs = {"num_stages": 2, "channels": 16, "growth": 8}
    real = count_macs(build_model("imhn", **kwargs), (64, 64))
    meta = count_macs_meta(lambda: build_model("imhn", **kwargs), (64, 64))
    assert meta == pytest.approx(real)
    big = count_macs_meta(lambda: build_model("imhn-4stage"), (64, 64))
    assert big["params_m"] == pytest.approx(129.0, abs=0.05)


def test_evaluate_trained_computes_each_test_time_setting_once(tmp_path, monkeypatch) -> None:
    from poselib.methods import simple_pose as sp

    monkeypatch.setenv("POSELIB_CACHE", str(tmp_path / "cache"))
    recipe = sp.recipe("smoke", train={"max_steps": 1})
    trained = sp.train(recipe, seed=0, progress=False)
    calls = []
    real_evaluate = sp.evaluate

    def counting_evaluate(*args, **kwargs):
        calls.append(kwargs.get("scales"))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(sp, "evaluate", counting_evaluate)
    first = sp.evaluate_trained(trained, recipe)
    # the recipe's own test scales and flip spelled out are the same evaluation
    assert sp.evaluate_trained(trained, recipe, scales=recipe.test_scales, flip=recipe.flip_test) == first
    assert len(calls) == 1 and set(first) >= {"AP", "AP50"}
    sp.evaluate_trained(trained, recipe, flip=not recipe.flip_test)
    assert len(calls) == 2
