"""Part IV (MSPN): the multi-stage framework's contract, model sizes, coarse-to-fine targets, OHKM, decoding."""

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from poselib.codecs import decode, heatmap
from poselib.engine.flops import count_macs, count_params
from poselib.methods import mspn as method
from poselib.methods import topdown
from poselib.models import build_model, list_models
from poselib.models.hourglass import hourglass_down_unit
from poselib.models.mspn import DownUnit, MultiStageNetwork, mspn, resnet_down_unit


def tiny(num_stages: int, **kwargs) -> MultiStageNetwork:
    return mspn(num_stages, 18, width=8, up_channels=16, **kwargs)


# ---------------------------------------------------------------- the contract Part V relies on


@pytest.mark.parametrize("depth,expansion", [(18, 1), (50, 4)])
def test_resnet_down_unit_layers_strides_and_channels(depth, expansion):
    unit = resnet_down_unit(depth, width=8)
    assert isinstance(unit.layers, nn.ModuleList) and len(unit.layers) == 4
    assert unit.channels == tuple(8 * 2**i * expansion for i in range(4)) and unit.in_channels == 8
    features = unit(torch.zeros(1, 8, 32, 24))
    assert [f.shape[1] for f in features] == list(unit.channels)
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 24), (16, 12), (8, 6), (4, 3)]


@pytest.mark.parametrize("num_stages", [1, 2, 3])
def test_outputs_per_stage_and_unit_are_stride_4_heatmaps(num_stages):
    model = tiny(num_stages).eval()
    out = model(torch.zeros(2, 3, 128, 96))
    assert model.stride == 4 and len(out) == num_stages
    for stage in out:
        assert len(stage) == 4 and all(o.shape == (2, 17, 32, 24) for o in stage)
    assert topdown.model_heatmaps(model, torch.zeros(2, 3, 128, 96)).shape == (2, 17, 32, 24)


def test_cross_stage_switch_adds_exactly_the_skip_convolutions():
    with_csfa, without = tiny(2), tiny(2, cross_stage=False)
    c = resnet_down_unit(18, 8).channels
    up = 16
    # skip1: C->C 1x1 + BN; skip2: up->C 1x1 + BN (per scale)
    expected = sum(ci * ci + 2 * ci + up * ci + 2 * ci for ci in c)
    assert count_params(with_csfa) - count_params(without) == expected
    assert without.stages[0].to_next is not None and not without.stages[0].to_next.aggregate


def test_cross_stage_features_reach_the_next_stage():
    """Stage 2's down features change with stage 1's skips: zeroing skip convs changes stage 2's output."""
    torch.manual_seed(0)
    model = tiny(2).eval()
    x = torch.randn(1, 3, 64, 64)
    before = model(x)[1][-1].clone()
    with torch.no_grad():
        for conv in model.stages[0].to_next.skip1:
            conv[0].weight.mul_(3.0)
    assert not torch.allclose(model(x)[1][-1], before)
    assert torch.allclose(model(x)[0][-1], model(x)[0][-1])


def test_a_custom_down_unit_plugs_in():
    class Plain(DownUnit):
        def __init__(self):
            layers = [nn.Conv2d(8, 12, 3, padding=1)] + [nn.Conv2d(12, 12, 3, stride=2, padding=1) for _ in range(3)]
            super().__init__(layers, (12, 12, 12, 12), in_channels=8)

    model = MultiStageNetwork(Plain, 2, num_keypoints=5, up_channels=8, stem_channels=8).eval()
    out = model(torch.zeros(1, 3, 64, 32))
    assert len(out) == 2 and out[1][3].shape == (1, 5, 16, 8)
    with pytest.raises(ValueError, match="cross_channels"):
        MultiStageNetwork(Plain, 2, stem_channels=8, cross_channels=16)
    with pytest.raises(TypeError, match="DownUnit"):
        MultiStageNetwork(lambda: nn.Identity(), 1)


# ---------------------------------------------------------------- sizes (reference sheet 4.1 / mmpose)


@pytest.mark.parametrize("stages,params_m", [(1, 25.11), (2, 56.80), (3, 88.49), (4, 120.18)])
def test_mspn_r50_parameters_within_2_percent(stages, params_m):
    with torch.device("meta"):  # shapes only: no weight initialisation
        model = build_model(f"mspn-r50-{stages}stage")
    assert count_params(model) / 1e6 == pytest.approx(params_m, rel=0.02)


@pytest.mark.parametrize("stages,gmacs", [(1, 5.07), (2, 11.26), (3, 17.45), (4, 23.64)])
def test_mspn_r50_gmacs_within_2_percent(stages, gmacs):
    cost = method.paper_size_complexity(f"mspn-r50-{stages}stage")  # 256x192, counted on the meta device
    assert cost["gmacs"] == pytest.approx(gmacs, rel=0.02)


def test_meta_device_count_equals_the_engine_count():
    model = tiny(2)
    engine = count_macs(model, (128, 96))
    meta = method.paper_size_complexity("mspn", (128, 96), num_stages=2, depth=18, width=8, up_channels=16)
    assert meta["gmacs"] == pytest.approx(engine["gmacs"], rel=1e-9) and meta["params_m"] == pytest.approx(engine["params_m"])
    # every map size at 128x96 is exactly half that at 256x192 (down to 4x3), so MACs scale by exactly 4
    assert 4 * engine["gmacs"] == pytest.approx(method.paper_size_complexity("mspn", num_stages=2, depth=18, width=8, up_channels=16)["gmacs"])


def test_registered_models():
    names = {entry.name for entry in list_models()}
    wanted = {f"mspn-r50-{s}stage" for s in (1, 2, 3, 4)} | {f"hourglass-{s}stage" for s in (1, 2, 4, 8)}
    assert wanted <= names and {"simplebaseline-r50", "simplebaseline-r101", "simplebaseline-r152"} <= names


def test_hourglass_has_equal_widths_and_the_same_outputs():
    unit = hourglass_down_unit(width=16, blocks=1, in_channels=8)
    assert unit.channels == (16, 16, 16, 16)
    model = build_model("hourglass", num_stages=2, width=16, stem_channels=8).eval()
    out = model(torch.zeros(1, 3, 64, 64))
    assert len(out) == 2 and all(o.shape == (1, 17, 16, 16) for o in out[1])
    assert resnet_down_unit(50).channels == (256, 512, 1024, 2048)  # Table 1: MSPN doubles, hourglass does not


# ---------------------------------------------------------------- coarse-to-fine targets


def test_kernel_schedules():
    assert method.kernel_schedule(1) == [[11, 9, 7, 5]]
    assert method.kernel_schedule(3) == [[15, 11, 9, 7], [15, 11, 9, 7], [11, 9, 7, 5]]
    # Table 7: settings 1, 2, 3 give the finest kernel per stage
    assert method.kernel_schedule(2, (7, 7)) == [[15, 11, 9, 7]] * 2
    assert method.kernel_schedule(2, (5, 5)) == [[11, 9, 7, 5]] * 2
    assert method.kernel_schedule(2, (7, 5)) == method.kernel_schedule(2, "ctf")
    assert method.kernel_schedule(2, "base") == [[0, 0, 0, 5], [0, 0, 0, 5]]
    with pytest.raises(ValueError, match="larger kernels"):
        method.kernel_schedule(1, (15,))


def test_targets_are_blurred_impulses_per_stage_and_unit():
    encoder = method.MSPNTargets((64, 48), 4, method.kernel_schedule(2))
    keypoints = torch.zeros(17, 3)
    keypoints[:, :2] = torch.tensor([4 * 8 + 1.5, 4 * 6 + 1.5])  # centre of cell (x=8, y=6)
    keypoints[:, 2] = 2
    keypoints[3, 2] = 0
    sample = encoder({"keypoints": keypoints})
    maps, levels = sample["mspn_heatmaps"], sample["mspn_levels"]
    assert maps.shape == (5, 17, 16, 12) and encoder.kernel_levels == [15, 11, 9, 7, 5]
    assert levels.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    assert sample["target_weight"][3] == 0 and maps[:, 3].abs().sum() == 0
    for level, k in enumerate(encoder.kernel_levels):
        impulse = np.zeros((16, 12), np.float32)
        impulse[6, 8] = 1
        expected = cv2.GaussianBlur(impulse, (k, k), 0)
        np.testing.assert_allclose(maps[level, 0].numpy(), expected / expected.max(), atol=1e-5)
    # coarser targets are wider: more mass, same peak
    mass = maps[:, 0].sum((-1, -2))
    assert (mass[:-1] > mass[1:]).all() and torch.allclose(maps[:, 0].amax((-1, -2)), torch.ones(5))


def test_sigma_scale_gives_gaussians_of_scaled_opencv_sigma():
    encoder = method.MSPNTargets((64, 48), 4, [[11, 9, 7, 5]], sigma_scale=0.5)
    keypoints = torch.tensor([[4 * 5 + 1.5, 4 * 7 + 1.5, 2.0]] * 17)
    maps = encoder({"keypoints": keypoints})["mspn_heatmaps"]
    sigma = heatmap.gaussian_sigma_from_kernel(5) * 0.5
    assert float(maps[3, 0, 7, 6]) == pytest.approx(np.exp(-1 / (2 * sigma**2)), rel=1e-5)


# ---------------------------------------------------------------- loss


def test_ohkm_averages_the_hardest_keypoints_by_hand():
    pred = torch.zeros(1, 4, 1, 1)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)  # per-keypoint MSE 1, 4, 9, 16
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the hardest one is unlabelled
    assert float(method.ohkm_loss(pred, target, weights, topk=2)) == pytest.approx((9 + 4) / 2)
    assert float(method.ohkm_loss(pred, target, weights, topk=0)) == pytest.approx((1 + 4 + 9) / 4)


def test_mspn_loss_weights_coarse_units_by_a_quarter():
    targets = torch.zeros(1, 2, 4, 1, 1)
    targets[:, 0] = 1.0  # level 0: all ones; level 1: zeros
    outputs = [[torch.zeros(1, 4, 1, 1), torch.full((1, 4, 1, 1), 2.0)]]
    weights = torch.ones(1, 4)
    levels = torch.tensor([[0, 1]])
    loss, logs = method.mspn_loss(outputs, targets, levels, weights, coarse_weight=0.25, topk=2)
    # coarse unit: MSE 1 x 0.25; finest unit against zeros: per-keypoint 4, top-2 mean 4
    assert float(loss) == pytest.approx(0.25 + 4.0) and logs["finest"] == pytest.approx(4.0)
    loss, _ = method.mspn_loss(outputs, targets, torch.tensor([[-1, 1]]), weights, topk=2)
    assert float(loss) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="outputs per stage"):
        method.mspn_loss(outputs, targets, torch.tensor([[0, 1, 1]]), weights)


def test_mspn_step_trains_any_multi_stage_network():
    torch.manual_seed(0)
    model = tiny(2)
    encoder = method.MSPNTargets((64, 48), 4, method.kernel_schedule(2), sigma_scale=0.5)
    samples = []
    for i in range(2):
        kp = torch.rand(17, 3) * torch.tensor([48.0, 64.0, 0.0])
        kp[:, 2] = 2
        samples.append(encoder({"image": torch.randn(3, 64, 48), "keypoints": kp}))
    batch = torch.utils.data.default_collate(samples)
    loss, logs = method.mspn_step(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and "finest" in logs
    assert model.stages[0].up.predictions[0][1][0].weight.grad.abs().sum() > 0  # coarsest unit of stage 1 is supervised


# ---------------------------------------------------------------- recipe and test-time decoding


def test_recipe_carries_targets_and_keeps_plain_recipes_hash():
    recipe = method.recipe("cpu", num_stages=2, setting=(7, 7))
    assert recipe.targets["kernels"] == [[15, 11, 9, 7]] * 2 and recipe.model_kwargs["num_stages"] == 2
    assert recipe.decoder == "quarter_second_max" and isinstance(method.target_encoder(recipe, 4), method.MSPNTargets)
    from poselib.methods import simple_baseline

    assert not {"targets", "backbone_from"} & set(topdown.recipe_config(simple_baseline.recipe("cpu")))
    assert "targets" in topdown.recipe_config(recipe)


def test_a_resnet_starts_the_stem_and_every_stage():
    from poselib.models.backbones import resnet

    source = resnet(18, width=8)
    network = mspn(3, 18, width=8, up_channels=16)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    network.load_resnet_backbone(source.state_dict())
    state = network.state_dict()
    for s in range(3):
        assert torch.equal(state[f"stages.{s}.down.layers.3.1.conv2.weight"], source.layer4[1].conv2.weight)
        assert torch.equal(state[f"stages.{s}.down.layers.0.0.bn1.running_var"], source.layer1[0].bn1.running_var)
    assert torch.equal(state["stem.0.weight"], source.stem[0].weight)
    # the upsample units and the cross-stage convolutions keep their own start
    assert all(torch.equal(state[k], before[k]) for k in state if ".up." in k or ".to_next." in k)
    with pytest.raises(ValueError, match="depth and width"):
        network.load_resnet_backbone(resnet(34, width=8).state_dict())
    with pytest.raises(ValueError, match="differ in shape"):
        network.load_resnet_backbone(resnet(18, width=16).state_dict())


class FixedMaps(nn.Module):
    """A 'multi-stage network' whose last stage's finest output is a fixed map (for the decoding path)."""

    stride = 4

    def __init__(self, maps: torch.Tensor):
        super().__init__()
        self.maps = maps

    def forward(self, images):
        n = images.shape[0]
        last = self.maps.expand(n, -1, -1, -1)
        return [[torch.zeros_like(last)] * 4, [torch.zeros_like(last)] * 3 + [last]]


def test_decoding_uses_the_last_finest_output_flip_average_and_second_max():
    maps = torch.zeros(1, 17, 8, 6)
    maps[..., 4, 2] = 1.0
    maps[..., 4, 3] = 0.5  # second maximum to the right
    model = FixedMaps(maps)
    images = torch.zeros(1, 3, 32, 24)
    assert torch.equal(topdown.model_heatmaps(model, images), maps)
    averaged = decode.flip_average(topdown.model_heatmaps(model, images), topdown.model_heatmaps(model, images.flip(3)))
    # nose (channel 0) maps to itself: peak 1 at x=2 mirrored to x=3, so x=2 and x=3 average to 0.75 each
    assert averaged[0, 0, 4, 2] == pytest.approx(0.75) and averaged[0, 0, 4, 3] == pytest.approx(0.75)
    # left eye (1) takes the mirrored right eye (2)
    assert torch.allclose(averaged[0, 1], 0.5 * (maps[0, 1] + maps[0, 2].flip(-1)))
    coords, _ = decode.decode_quarter_offset(maps, mode="second_max")
    assert torch.allclose(coords[0, 0], torch.tensor([2.25, 4.0]))


def test_unknown_targets_kind_is_named():
    from dataclasses import replace

    bad = replace(method.recipe("smoke"), targets={"kind": "nope"})
    with pytest.raises(ValueError, match="nope"):
        topdown.build_datasets(bad, stride=4)


def test_smoke_recipe_trains_and_evaluates_end_to_end(tmp_path, monkeypatch):
    """The recipe's targets pick MSPN's encoder and step inside topdown.train; predict decodes the last stage."""
    monkeypatch.setenv("POSELIB_CACHE", str(tmp_path / "cache"))
    # from scratch: the pretrained start is tested in test_pretraining, which trains its source once
    recipe = method.recipe("smoke", num_stages=2, train={"max_steps": 1}, val_every_epoch=False, flip_test=False,
                           backbone_from=None)
    trained = topdown.train(recipe, seed=0, progress=False)
    assert (trained.run_dir / "final.pt").is_file()
    train_set, _ = topdown.build_datasets(recipe, stride=4)
    assert isinstance(train_set.encoder, method.MSPNTargets)
    metrics = topdown.evaluate(trained.model, recipe, trained.val_set, progress=False)
    assert 0.0 <= metrics["AP"] <= 1.0


def test_beyond_spread_needs_twice_the_range():
    assert not method.beyond_spread(1.9, 1.0) and method.beyond_spread(2.1, 1.0) and method.beyond_spread(-2.1, 1.0)
    assert method.beyond_spread(1.5, 1.0, factor=1.0)
    assert not method.beyond_spread(50.0, float("nan"))


def test_pretrained_loads_imagenet_into_every_stage_unless_the_caller_turns_it_off(monkeypatch):
    """``pretrained=True`` (the coco recipe) fetches one ResNet for the stem and every stage; ``build_model(...,
    load_pretrained=False)`` (checkpoint loading, counting, reading the stride) builds the same network without it.
    The download is replaced by a random ResNet here: tests never download."""
    import poselib.models.mspn as mspn_module
    from poselib.models.backbones import resnet

    fetched = []

    def fake_resnet(depth, *, width=64, pretrained=False):
        fetched.append((depth, width, pretrained))
        return resnet(depth, width=width)

    monkeypatch.setattr(mspn_module, "resnet", fake_resnet)
    kwargs = dict(num_stages=2, depth=18, width=8, up_channels=16, pretrained=True)
    network = build_model("mspn", **kwargs)
    assert fetched == [(18, 8, True)]
    state = network.state_dict()
    assert torch.equal(state["stages.0.down.layers.1.0.conv1.weight"], state["stages.1.down.layers.1.0.conv1.weight"])
    plain = build_model("mspn", load_pretrained=False, **kwargs)
    assert fetched == [(18, 8, True)] and count_params(plain) == count_params(network)


def test_verdict_and_ablation_steps_judge_changes_against_the_spread():
    import math

    import pandas as pd

    assert [method.verdict(d, 0.3) for d in (1.0, -1.0, 0.5, math.nan)] == ["a gain", "a loss", "a tie", "not measured"]
    assert method.verdict(5.0, math.nan) == "a tie"  # an unknown spread decides nothing
    table = pd.DataFrame({"paper AP": [73.3, 74.2, 74.5, 74.0, 70.0], "our AP": [40.0, 41.0, 39.0, 39.8, math.nan]},
                         index=["base", "ctf", "full", "near", "missing"])
    table.loc["unpublished"] = [math.nan, 30.0]
    steps = method.ablation_steps(table, [("base", "ctf", "+CTF"), ("ctf", "full", "+CSFA"), ("full", "near", "k"),
                                        ("base", "missing", "m"), ("unpublished", "ctf", "u")], spread=0.4)
    assert steps["paper change"].round(2).tolist()[:4] == [0.9, 0.3, -0.5, -3.3]
    assert steps["our change"].round(2).tolist()[:3] == [1.0, -2.0, 0.8]
    assert steps["our verdict"].tolist() == ["a gain", "a loss", "a tie", "not measured", "a gain"]
    assert steps["direction"].tolist() == ["agrees", "opposite", "tie", "not measured", "no paper figure"]
    assert (steps["spread"] == 0.4).all()


def test_an_experiment_starts_from_chapter_0_4_only_where_its_resnet_18_fits():
    starts = {name: method.experiment_recipe(name, "cpu") for name in method.EXPERIMENTS}
    for name, r in starts.items():
        if r.backbone_from is not None:
            assert r.model == "mspn" and r.model_kwargs["depth"] == 18, name
    assert {name for name, r in starts.items() if r.backbone_from is None} == {
        "hourglass-1stage", "hourglass-2stage", "hourglass-4stage", "hourglass-8stage", "hourglass-4stage-base",
        "hourglass-4stage-ctf", "single-r18", "single-r50", "single-r101", "single-r152"}
