"""MAC and parameter counts against hand-computed answers, and the ``poselib flops`` command."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from poselib import cli
from poselib.engine.flops import count_macs, count_params
from poselib.models import registry


def test_single_conv():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    cost = count_macs(conv, (16, 20))
    assert cost["gmacs"] * 1e9 == pytest.approx(3 * 3 * 3 * 8 * 16 * 20)  # k*k*cin*cout*Hout*Wout
    assert cost["params_m"] * 1e6 == pytest.approx(3 * 3 * 3 * 8 + 8)
    assert count_macs(conv, (16, 20), batch=2)["gmacs"] == pytest.approx(2 * cost["gmacs"])


def test_transposed_conv_counts_each_input_pixel_once():
    # every input pixel is multiplied by the whole k*k*cin*cout kernel (Simple Baselines' deconvolution head)
    deconv = nn.ConvTranspose2d(4, 2, kernel_size=4, stride=2, padding=1, bias=False)
    assert count_macs(deconv, (5, 7), in_channels=4)["gmacs"] * 1e9 == pytest.approx(4 * 4 * 4 * 2 * 5 * 7)


def test_linear_with_example_tensor():
    cost = count_macs(nn.Linear(10, 5), torch.zeros(3, 10))
    assert cost["gmacs"] * 1e9 == pytest.approx(3 * 10 * 5)
    assert count_params(nn.Linear(10, 5)) == 55


def test_two_conv_block_with_strides_and_channels():
    block = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 1, bias=False)
    )
    cost = count_macs(block, (32, 32), in_channels=1)
    assert cost["gmacs"] * 1e9 == pytest.approx(9 * 1 * 4 * 16 * 16 + 4 * 6 * 16 * 16)
    assert count_params(block) == (9 * 4 + 4) + (4 + 4) + 4 * 6


def test_multiple_inputs_and_model_left_untouched():
    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(6, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    model = Bilinear().train()
    cost = count_macs(model, (torch.zeros(1, 4), torch.zeros(1, 6)))
    assert cost["gmacs"] * 1e9 == pytest.approx(4 * 2 + 6 * 2)
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(TypeError, match="H, W"):
        count_macs(model, "256x192")


@pytest.fixture
def tiny_registry(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", {})
    monkeypatch.setattr(registry, "_ensure_loaded", lambda: None)

    @registry.register_model("tiny_conv", input_size=(8, 6), in_channels=2, description="a test conv")
    def tiny_conv() -> nn.Module:
        return nn.Conv2d(2, 3, 3, padding=1)


def test_cli_prints_json_last(tiny_registry, capsys):
    assert cli.main(["flops", "tiny_conv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "tiny_conv" in lines[0] and "GMACs" in lines[0]
    out = json.loads(lines[-1])
    assert out["model"] == "tiny_conv" and out["input"] == "8x6"
    assert out["gmacs"] * 1e9 == pytest.approx(9 * 2 * 3 * 8 * 6)
    assert out["params_m"] * 1e6 == pytest.approx(9 * 2 * 3 + 3)

    assert cli.main(["flops", "tiny_conv", "--input", "16x12"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["input"] == "16x12" and out["gmacs"] * 1e9 == pytest.approx(9 * 2 * 3 * 16 * 12)


def test_cli_list_and_errors(tiny_registry, capsys):
    assert cli.main(["flops", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny_conv" in listing and "8x6" in listing and "a test conv" in listing
    assert cli.main(["flops", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet9000'" in err and "tiny_conv" in err
    assert cli.main(["flops", "tiny_conv", "--input", "16by12"]) == 2
    assert "HxW" in capsys.readouterr().err
