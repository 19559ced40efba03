import json

import pytest
import torch

from poselib.models import build_model, list_models
from poselib.models.backbones import PretrainedWeightsUnavailable, resnet


def test_simple_baseline_r50_matches_the_paper_parameter_count():
    # Xiao et al. 2018, Table 2: ResNet-50, 256x192: 34.0 M parameters
    model = build_model("simplebaseline-r50")
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(34.0, abs=0.05)


@pytest.mark.parametrize("num_deconv,stride", [(3, 4), (2, 8)])
def test_simple_baseline_output_stride(num_deconv, stride):
    model = build_model("simplebaseline-r18", deconv_channels=16, num_deconv=num_deconv).eval()
    out = model(torch.zeros(2, 3, 128, 96))
    assert out.shape == (2, 17, 128 // stride, 96 // stride) and model.stride == stride


def test_resnet_features_strides_and_channels():
    feats = resnet(18)(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats.values()] == [16, 8, 4, 2]


def test_registry_lists_part0_models_with_input_sizes():
    names = {entry.name: entry for entry in list_models()}
    assert names["simplebaseline-r50"].input_size == (256, 192)
    with pytest.raises(KeyError, match="registered"):
        build_model("no-such-model")


def test_pretrained_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    import torchvision.models._api

    # patched where torchvision's weight enums look it up, so no test ever touches the network
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match="resnet18.*network is unreachable"):
        resnet(18, pretrained=True)


def test_narrow_resnet_has_the_standard_layout_at_width_64():
    from poselib.models.backbones import _narrow_resnet

    import torchvision

    ours = _narrow_resnet(18, 64)
    reference = torchvision.models.resnet18(weights=None)
    count = lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.startswith("fc."))  # noqa: E731
    assert count(ours) == count(reference)
    narrow = resnet(18, width=16)
    assert narrow.out_channels == (16, 32, 64, 128)
    assert [f.shape[1] for f in narrow(torch.zeros(1, 3, 64, 64)).values()] == [16, 32, 64, 128]


def test_lateral_skips_add_to_the_deconvolutions_and_vanish_when_zeroed():
    torch.manual_seed(0)
    with_skips = build_model("simplebaseline-r18", width=8, deconv_channels=16, skips=True).eval()
    plain = build_model("simplebaseline-r18", width=8, deconv_channels=16).eval()
    missing, unexpected = plain.load_state_dict(with_skips.state_dict(), strict=False)
    assert not missing and all(key.startswith("head.laterals") for key in unexpected)
    images = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(with_skips(images), plain(images))
    for lateral in with_skips.head.laterals:
        torch.nn.init.zeros_(lateral[0].weight)
    torch.testing.assert_close(with_skips(images), plain(images))


def test_step_benchmark_times_both_memory_formats_and_prints_json_last(capsys):
    from poselib.models import benchmark

    with pytest.raises(TypeError, match="needs map outputs"):
        benchmark._sum_of_squares(None)
    argv = ["simplebaseline-r18", "--input", "32x24", "--batch", "2", "--kwargs", '{"width": 8, "deconv_channels": 8}',
            "--device", "cpu", "--repeats", "1"]
    assert benchmark.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "step" and result["input"] == [32, 24] and result["batch"] == 2
    assert set(result["ms_per_step"]) == {"contiguous", "channels_last"} and min(result["ms_per_step"].values()) > 0
    assert result["speedup"] == pytest.approx(result["ms_per_step"]["contiguous"] / result["ms_per_step"]["channels_last"], rel=1e-2)
