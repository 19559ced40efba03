"""RSN (Part V): the Residual Steps Block (eq. 1), Refine and Feature Fusion Blocks (eq. 3), the networks in
MSPN's framework, their costs against the report's Tables 3 and 4, and the recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poselib.engine.flops import count_macs
from poselib.models import build_model, list_models
from poselib.models.mspn import DownUnit, MultiStageNetwork
from poselib.models.rsn import (
    BRANCH_RANGE,
    Bottleneck,
    FeatureFusionBlock,
    RefineBlock,
    RefinedUpsampleUnit,
    ResidualStepsBlock,
    baseline_down_unit,
    branch_channels,
    rsn,
    rsn_down_unit,
    rsn_hourglass,
)

#: Cost measured on a small input: MACs scale with the area (exactly at 64x32 for 256x192), and ratios are what
#: the tests compare.
SMALL_INPUT = (64, 32)


def _eq1_reference(block: ResidualStepsBlock, x: torch.Tensor) -> list[torch.Tensor]:
    """Equation 1 written out with the report's 1-based indices, using the block's own modules."""
    f = torch.split(block.conv_in(x), block.width, dim=1)
    y: dict[tuple[int, int], torch.Tensor] = {}
    n = block.branches
    for i in range(1, n + 1):
        y[(i, 0)] = f[i - 1]
        for j in range(1, i + 1):
            K = block.steps[i - 1][j - 1]
            y[(i, j)] = K(y[(i, j - 1)]) if j == i else K(y[(i, j - 1)] + y[(i - 1, j)])
    return [y[(i, i)] for i in range(1, n + 1)]


@pytest.mark.parametrize("branches", BRANCH_RANGE)
def test_residual_steps_block_follows_equation_1(branches):
    torch.manual_seed(0)
    block = ResidualStepsBlock(24, 24, width=branch_channels(24, branches), branches=branches).eval()
    assert [len(b) for b in block.steps] == list(range(1, branches + 1))  # branch i has i 3x3 convs
    x = torch.randn(2, 24, 9, 7)
    with torch.no_grad():
        ours = block.branch_outputs(x)
        reference = _eq1_reference(block, x)
        out = block(x)
    assert len(ours) == branches
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)
    # concatenation, 1x1 fusion, identity, ReLU
    with torch.no_grad():
        expected = torch.relu(block.conv_out(torch.cat(reference, 1)) + x)
    torch.testing.assert_close(out, expected)


def test_cross_branch_adds_matter():
    # zeroing branch 1's only step must change branch 2 (y_(2,1) adds y_(1,1)) but not the shapes
    torch.manual_seed(0)
    block = ResidualStepsBlock(16, 16, width=4).eval()
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        before = block.branch_outputs(x)
        block.steps[0][0][1].weight.zero_()
        block.steps[0][0][1].bias.fill_(-1.0)  # BN -> negative -> ReLU -> y_(1,1) = 0
        after = block.branch_outputs(x)
    assert torch.count_nonzero(after[0]) == 0
    assert not torch.allclose(before[1], after[1])


@pytest.mark.parametrize("stride,in_ch,out_ch", [(1, 16, 16), (2, 16, 32), (1, 8, 32)])
def test_block_shapes_and_shortcut(stride, in_ch, out_ch):
    block = ResidualStepsBlock(in_ch, out_ch, stride, width=3)
    assert block(torch.zeros(2, in_ch, 12, 8)).shape == (2, out_ch, 12 // stride, 8 // stride)
    assert isinstance(block.shortcut, nn.Identity) == (stride == 1 and in_ch == out_ch)
    assert block.conv_in[0].stride == (stride, stride)  # stride on the 1x1, as in the released code
    assert all(step[0].stride == (1, 1) for branch in block.steps for step in branch)


def test_branch_width_rule():
    # b = floor(in * 26 / 64): 26 in layer1, 52 and 104 for 128 and 256 input channels (reference sheet 5.1)
    assert [branch_channels(c) for c in (64, 128, 256, 512)] == [26, 52, 104, 208]
    assert [branch_channels(64, n) for n in BRANCH_RANGE] == [52, 34, 26, 20, 17]  # 104 channels shared
    with pytest.raises(ValueError, match="2 to 6"):
        branch_channels(64, 7)


def test_rsn_18_down_unit_widths_match_the_released_code():
    unit = rsn_down_unit(18)
    assert isinstance(unit, DownUnit) and len(unit.layers) == 4 and unit.channels == (64, 128, 256, 512)
    widths = [[block.width for block in layer] for layer in unit.layers]
    assert widths == [[26, 26], [26, 52], [52, 104], [104, 208]]
    x = torch.zeros(1, 64, 16, 12)
    features = unit(x)
    assert [f.shape[-2:] for f in features] == [(16, 12), (8, 6), (4, 3), (2, 2)]


def test_rsn_50_designs():
    report = rsn_down_unit(50)
    assert report.channels == (256, 512, 1024, 2048)
    assert [layer[-1].width for layer in report.layers] == [26, 52, 104, 208]  # from the base width
    assert rsn_down_unit(50, design="mmpose").channels == (64, 128, 256, 512)
    released = rsn_down_unit(50, design="released", width=8)
    assert released.layers[0][1].width == 4 * (32 * 26 // 64) // 4  # from the 32 input channels
    with pytest.raises(ValueError, match="design"):
        rsn_down_unit(50, design="other")


def test_baseline_18_uses_expansion_1_bottlenecks():
    unit = baseline_down_unit(18)
    assert unit.channels == (64, 128, 256, 512)
    assert all(isinstance(block, Bottleneck) for layer in unit.layers for block in layer)
    assert baseline_down_unit(50).channels == (256, 512, 1024, 2048)


def test_parameter_counts_match_mmpose():
    # reference sheet 5.4 (mmpose, verified there): RSN-18 9.14 M, RSN-50 (mmpose design) 19.33 M
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert count(build_model("rsn-18")) == pytest.approx(9.14, abs=0.01)
    assert count(build_model("rsn-50-mmpose")) == pytest.approx(19.33, abs=0.01)
    assert count(build_model("resnet-50")) == pytest.approx(count(build_model("mspn-r50-1stage")), abs=1e-6)


def _gmacs(name: str) -> float:
    return count_macs(build_model(name), SMALL_INPUT)["gmacs"]


@pytest.mark.parametrize("depth,report_rsn,report_resnet", [(18, 2.5, 2.3), (50, 6.3, 4.4), (101, 11.5, 7.5)])
def test_cost_ratio_rsn_over_resnet_matches_table_4(depth, report_rsn, report_resnet):
    ours = _gmacs(f"rsn-{depth}") / _gmacs(f"resnet-{depth}")
    assert ours == pytest.approx(report_rsn / report_resnet, rel=0.10)


def test_mmpose_rsn_50_does_not_match_table_4():
    # why the report's RSN-50 is not mmpose's: that one is cheaper than ResNet-50
    assert _gmacs("rsn-50-mmpose") / _gmacs("resnet-50") < 0.9


def test_cost_falls_with_the_branch_count_as_in_table_3():
    costs = [_gmacs(f"rsn-50-branches-{n}") for n in BRANCH_RANGE]
    assert all(a > b for a, b in zip(costs, costs[1:]))
    assert costs[2] == pytest.approx(_gmacs("rsn-50"))


def test_registered_names_at_256x192():
    names = {entry.name: entry for entry in list_models()}
    wanted = ["rsn-18", "rsn-50", "rsn-101", *[f"rsn-50-branches-{n}" for n in BRANCH_RANGE], "rsn-hourglass-2stage",
              "4xrsn-50", "resnet-18", "resnet-50", "resnet-101"]
    for name in wanted:
        assert names[name].input_size == (256, 192), name


def test_refine_block_is_residual():
    block = RefineBlock(8).eval()
    with torch.no_grad():
        block.body[1][1].weight.zero_()  # last BN scale 0: the conv path adds nothing
    x = torch.randn(2, 8, 5, 4)
    torch.testing.assert_close(block(x), torch.relu(x))
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in block.modules()) == 2


def test_feature_fusion_block_is_equation_3():
    torch.manual_seed(0)
    block = FeatureFusionBlock(8).eval()
    x = torch.randn(2, 8, 5, 4)
    with torch.no_grad():
        out = block(x)
        k = block.conv(x)
        alpha = block.channel_weights(x)
    torch.testing.assert_close(out, k + k * alpha[:, :, None, None])
    assert alpha.shape == (2, 8) and bool(((alpha > 0) & (alpha < 1)).all())
    torch.testing.assert_close(block.last_weights, alpha)


def test_network_outputs_and_init_stage_blocks():
    net = rsn(18, num_stages=2, width=8, up_channels=16, refine=True, fusion=True).eval()
    assert isinstance(net, MultiStageNetwork)
    assert isinstance(net.stages[0].up, RefinedUpsampleUnit) and not isinstance(net.stages[1].up, RefinedUpsampleUnit)
    with torch.no_grad():
        outputs = net(torch.zeros(1, 3, 64, 32))
    assert len(outputs) == 2 and all(len(stage) == 4 for stage in outputs)
    assert all(o.shape == (1, 17, 16, 8) for stage in outputs for o in stage)
    assert net.stages[0].up.fusion_blocks[3].last_weights.shape == (1, 16)
    plain = rsn(18, width=8, up_channels=16)
    assert type(plain.stages[0].up).__name__ == "UpsampleUnit"


def test_switches_change_only_the_init_stage_cost():
    base = count_macs(rsn(18, width=8, up_channels=16, num_stages=2), SMALL_INPUT)["gmacs"]
    rb = count_macs(rsn(18, width=8, up_channels=16, num_stages=2, refine=True), SMALL_INPUT)["gmacs"]
    ffb = count_macs(rsn(18, width=8, up_channels=16, num_stages=2, fusion=True), SMALL_INPUT)["gmacs"]
    both = count_macs(rsn(18, width=8, up_channels=16, num_stages=2, refine=True, fusion=True), SMALL_INPUT)["gmacs"]
    assert rb > base and ffb > base
    assert both - base == pytest.approx((rb - base) + (ffb - base), rel=1e-3)


def test_hourglass_pair_differs_only_in_the_bottleneck():
    ours = rsn_hourglass(2, width=16, stem_channels=8)
    theirs = rsn_hourglass(2, width=16, stem_channels=8, family="resnet")
    assert ours.stages[0].down.channels == theirs.stages[0].down.channels == (16,) * 4
    assert any(isinstance(m, ResidualStepsBlock) for m in ours.modules())
    assert not any(isinstance(m, ResidualStepsBlock) for m in theirs.modules())
    with torch.no_grad():
        assert ours(torch.zeros(1, 3, 64, 32))[-1][-1].shape == (1, 17, 16, 8)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="family"):
        rsn(18, family="vgg")
    with pytest.raises(ValueError, match="depth"):
        rsn_down_unit(34)


def test_recipe_trains_both_families_identically():
    from poselib.methods import get_method

    method = get_method("rsn")
    a = method.recipe("cpu")
    b = method.recipe("cpu", family="resnet")
    assert a.model == b.model == "rsn" and a.targets == b.targets
    # the same schedule; only the memory format differs on the CPU presets (the faster one for each family)
    without_format = [{k: v for k, v in r.train.items() if k != "channels_last"} for r in (a, b)]
    assert without_format[0] == without_format[1]
    assert a.train["channels_last"] is False and b.train["channels_last"] is True
    assert method.recipe("gpu").train == method.recipe("gpu", family="resnet").train
    assert a.model_kwargs["family"] == "rsn" and b.model_kwargs["family"] == "resnet"
    smoke = method.recipe("smoke", branches=3, refine=True)
    model = build_model(smoke.model, **smoke.model_kwargs)
    assert model.stages[0].down.layers[0][0].branches == 3
    assert method.recipe("gpu").model_kwargs["width"] == 64
