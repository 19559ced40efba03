"""Receptive fields: equation 2 of the RSN report on traced module graphs, Table 1, and the gradient check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poselib.models.receptive_field import (
    bottleneck_fields,
    grow,
    measured_bottleneck_fields,
    measured_receptive_field,
    positive_copy,
    receptive_fields,
    sizes,
)
from poselib.models.rsn import Bottleneck, ResidualStepsBlock, rsn_layers

#: The report's Table 1 (RSN row): receptive fields of y1..y4 of the four-branch bottleneck.
TABLE1_RSN = [[3], [5, 7], [7, 9, 11], [9, 11, 13, 15]]


def test_equation_2_with_strides_and_dilation():
    assert grow({(1, 1)}, 3, stride=2) == {(3, 2)}
    assert grow({(3, 2)}, 3) == {(7, 2)}  # a 3x3 after a stride-2 layer adds 2 * 2
    assert grow({(1, 1)}, 3, dilation=2) == {(5, 1)}
    net = nn.Sequential(nn.Conv2d(1, 1, 7, 2, 3), nn.MaxPool2d(3, 2, 1), nn.Conv2d(1, 1, 3, padding=1))
    _, fields = receptive_fields(net)
    assert sizes(fields["output"]) == [7 + 2 * 2 + 2 * 4]  # ResNet stem + one 3x3: 19


def test_table1_rsn_from_the_module_definition():
    assert bottleneck_fields(ResidualStepsBlock(16, 16, width=4)) == TABLE1_RSN


def test_table1_resnet_bottleneck_sees_one_scale():
    assert bottleneck_fields(Bottleneck(16, 16)) == [[3]]


@pytest.mark.parametrize("branches", [2, 3, 4, 5, 6])
def test_branch_fields_follow_the_step_wiring(branches):
    # branch i's paths pass through i..2i-1 convolutions (its own i steps, plus one per hop to a previous branch)
    expected = [[1 + 2 * k for k in range(i, 2 * i)] for i in range(1, branches + 1)]
    assert bottleneck_fields(ResidualStepsBlock(12, 12, width=2, branches=branches)) == expected


def test_stride_on_the_first_1x1_doubles_every_step():
    fields = bottleneck_fields(ResidualStepsBlock(8, 16, stride=2, width=2))
    assert fields == [[1 + 2 * (s - 1) for s in row] for row in TABLE1_RSN]


@pytest.mark.parametrize("branches", [2, 4, 6])
def test_measured_largest_field_matches_the_calculator(branches):
    block = ResidualStepsBlock(8, 8, width=2, branches=branches)
    assert measured_bottleneck_fields(block, 8) == [row[-1] for row in bottleneck_fields(block)]
    assert measured_bottleneck_fields(Bottleneck(8, 8), 8) == [3]


def test_measured_field_of_a_whole_layer():
    layer = rsn_layers(18, width=8)[0][0]  # layer1: two blocks at stride 1
    _, fields = receptive_fields(layer)
    largest = sizes(fields["output"])[-1]
    assert largest == 1 + 2 * 14  # each block's longest path has 7 3x3 convs
    assert measured_receptive_field(positive_copy(layer), 8, (45, 45)) == largest


def test_measurement_refuses_a_clipped_field():
    with pytest.raises(ValueError, match="clips"):
        measured_receptive_field(positive_copy(nn.Conv2d(1, 1, 9, padding=4)), 1, (5, 5))


def test_unknown_operations_are_named():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2)

    with pytest.raises(NotImplementedError, match="interpolate"):
        receptive_fields(Odd())
