"""Part I: the Pose Residual Network model, its inputs and targets, assignment, and the Max and UCR baselines."""

from __future__ import annotations

import functools

import pytest
import torch

from poselib.engine.flops import count_macs, count_params
from poselib.grouping import prn as g
from poselib.models import build_model
from poselib.models.prn import PoseResidualNetwork, prn_loss


def independent_prn_count(layers: int, hidden: int = 1024, d: int = 56 * 36 * 17) -> int:
    # weights and biases of D->h, (layers-1) x h->h, h->D
    return d * hidden + hidden + (layers - 1) * (hidden * hidden + hidden) + hidden * d + d


def test_prn_parameter_counts_match_the_released_models() -> None:
    one, two = PoseResidualNetwork(layers=1), PoseResidualNetwork(layers=2)
    assert count_params(one) == independent_prn_count(1) == 70_224_352  # Keras PRN_Seperate, about 70.2 M
    assert count_params(two) == independent_prn_count(2) == 71_273_952  # PyTorch release, about 71.3 M
    assert count_params(build_model("prn")) == count_params(one)


def test_prn_shapes_softmax_and_residual() -> None:
    torch.manual_seed(0)
    net = PoseResidualNetwork(grid=(8, 6), hidden=32).eval()
    x = torch.rand(3, 17, 8, 6)
    y = net(x)
    assert y.shape == x.shape
    assert torch.allclose(y.flatten(1).sum(1), torch.ones(3), atol=1e-5)
    per_channel = PoseResidualNetwork(grid=(8, 6), hidden=32, softmax="channel").eval()
    assert torch.allclose(per_channel(x).flatten(2).sum(2), torch.ones(3, 17), atol=1e-5)
    # the residual adds the input to the (ReLU'd) output of the perceptron
    plain = PoseResidualNetwork(grid=(8, 6), hidden=32, residual=False).eval()
    plain.load_state_dict(net.state_dict())
    assert torch.allclose(net.logits(x), plain.logits(x) + x)
    with pytest.raises(ValueError, match="expects"):
        net(torch.rand(1, 17, 6, 8))


def test_prn_macs_are_counted_on_the_paper_grid() -> None:
    cost = count_macs(PoseResidualNetwork(hidden=64), torch.zeros(1, 17, 56, 36))
    assert cost["gmacs"] == pytest.approx(2 * 56 * 36 * 17 * 64 / 1e9)


def test_prn_loss_is_bce_and_learns_to_select_the_own_person() -> None:
    pred = torch.full((1, 17, 4, 3), 0.5)
    assert prn_loss(pred, torch.zeros_like(pred)).item() == pytest.approx(0.6931, abs=1e-3)


def test_box_cells_follow_the_released_mapping() -> None:
    boxes = torch.tensor([[10.7, 20.2, 35.5, 55.1]])
    col, row = g.box_cells(torch.tensor([[10.7, 20.2], [45.0, 75.0], [100.0, -5.0]]), boxes, (56, 36))
    # int((x - int(bx)) * 36 / ceil(bw)), clamped
    assert col.tolist() == [[0, int((45 - 10) * 36 / 36), 35]]
    assert row.tolist() == [[0, int((75 - 20) * 56 / 56), 0]]


def test_prn_inputs_expanded_box_blur_and_targets() -> None:
    boxes = torch.tensor([[0.0, 0.0, 36.0, 56.0]])
    # nose of person A inside, nose of person B inside the 0.21 margin, nose of person C far away
    peaks = torch.zeros(17, 3, 3)
    peaks[0] = torch.tensor([[10.0, 10.0, 1.0], [-5.0, 20.0, 1.0], [200.0, 10.0, 1.0]])
    x, col, row, inside = g.prn_inputs(peaks, boxes, (56, 36), )
    assert x.shape == (1, 17, 56, 36)
    assert inside[0, 0].tolist() == [True, True, False]
    assert not inside[0, 1:].any()  # padding peaks
    assert x[0, 0, 10, 10].item() == pytest.approx(0.1592, abs=2e-3)  # sigma 1, not renormalised (skimage)
    assert x[0, 0, 20, 0].item() > 0.15  # clamped to the border cell
    assert x[0, 1:].abs().max().item() == 0
    kps = torch.zeros(1, 17, 3)
    kps[0, 0] = torch.tensor([10.0, 10.0, 2.0])
    y = g.prn_targets(kps, boxes, (56, 36))
    assert y[0, 0].argmax().item() == 10 * 36 + 10
    assert y[0, 0, 10, 10].item() == pytest.approx(1 / (2 * torch.pi * 4), rel=0.02)  # sigma 2, peak ~0.04
    assert y[0, 1:].abs().max().item() == 0


def overlapping_people() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two people whose boxes overlap: B stands half inside A's box (Fig. 4 c)."""
    kps = torch.zeros(2, 17, 3)
    kps[0, :, 0] = 20 + torch.arange(17.0) % 3
    kps[0, :, 1] = 5 + 3 * torch.arange(17.0)
    kps[1, :, 0] = 45 + torch.arange(17.0) % 3
    kps[1, :, 1] = 8 + 3 * torch.arange(17.0)
    kps[..., 2] = 2
    boxes = torch.tensor([[10.0, 0.0, 40.0, 60.0], [35.0, 2.0, 40.0, 60.0]])
    return kps, boxes, g.peaks_from_keypoints(kps)


def oracle_grouping(kps: torch.Tensor, boxes: torch.Tensor, grid: tuple[int, int]):
    targets = g.prn_targets(kps, boxes, grid)
    return lambda x: targets


def test_assignment_on_overlapping_boxes_with_a_perfect_grouping() -> None:
    kps, boxes, peaks = overlapping_people()
    grid = (56, 36)
    poses, scores = g.group(peaks, boxes, None, oracle_grouping(kps, boxes, grid), grid=grid, )
    assert torch.allclose(poses[..., :2], kps[..., :2])
    assert (poses[..., 2] == 1).all() and torch.allclose(scores, torch.ones(2))


def test_assignment_is_exclusive_and_best_first() -> None:
    # two boxes, one peak type with two peaks: both boxes prefer peak 0, box 1 more strongly
    y = torch.zeros(2, 1, 5, 5)
    col = torch.tensor([[[0, 4]], [[0, 4]]])
    row = torch.zeros(2, 1, 2, dtype=torch.long)
    y[0, 0, 0, 0], y[0, 0, 0, 4] = 0.6, 0.4
    y[1, 0, 0, 0], y[1, 0, 0, 4] = 0.9, 0.1
    inside = torch.ones(2, 1, 2, dtype=torch.bool)
    chosen = g.assign(y, col, row, inside, torch.ones(1, 2), window=1)
    assert chosen.tolist() == [[1], [0]]
    # a peak outside a box is never assigned to it
    inside[0, 0, 1] = False
    assert g.assign(y, col, row, inside, torch.ones(1, 2), window=1).tolist() == [[-1], [0]]


def test_max_picks_the_strongest_candidate_and_fails_on_overlap() -> None:
    kps, boxes, peaks = overlapping_people()
    x, *_ = g.prn_inputs(peaks, boxes, (56, 36))
    y = g.max_grouping(x)
    assert (y.flatten(2).sum(-1) == 1).all()
    assert torch.equal(y.flatten(2).argmax(-1), x.flatten(2).argmax(-1))
    # person B's keypoints are detected more confidently: inside A's box, Max takes B's joints for A
    peaks[:, 0, 2], peaks[:, 1, 2] = 0.5, 0.9
    poses, _ = g.group(peaks, boxes, None, g.max_grouping, grid=(56, 36))
    wrong = (poses[..., :2] - kps[..., :2]).abs().sum(-1) > 1e-3
    assert wrong[0].all()  # box A takes B's joints (B is left with nothing: ties go to the first box)
    assert torch.allclose(poses[0, :, :2], kps[1, :, :2])
    # the oracle grouping (what PRN learns) on the same inputs gets both people right
    oracle, _ = g.group(peaks, boxes, None, oracle_grouping(kps, boxes, (56, 36)), grid=(56, 36))
    assert torch.allclose(oracle[..., :2], kps[..., :2])


def test_ucr_prior_and_grouping() -> None:
    kps, boxes, _ = overlapping_people()
    targets = g.prn_targets(kps, boxes, (56, 36))
    prior = g.ucr_prior([targets[:1], targets[1]])
    assert prior.shape == (17, 56, 36)
    assert torch.allclose(prior.flatten(1).amax(1), torch.ones(17))
    x = torch.rand(2, 17, 56, 36)
    assert torch.allclose(g.ucr_grouping(x, prior), x * prior)
    with pytest.raises(ValueError):
        g.ucr_prior([])
    # a prior that favours the left half of the box steers assignment to the left person
    left = torch.zeros(17, 56, 36)
    left[..., :18] = 1
    _, _, peaks = overlapping_people()
    poses, _ = g.group(peaks, boxes[:1], None, functools.partial(g.ucr_grouping, prior=left), grid=(56, 36), )
    assert torch.allclose(poses[0, :, :2], kps[0, :, :2])


def test_group_accepts_external_peaks_and_handles_empty_inputs() -> None:
    kps, boxes, peaks = overlapping_people()
    net = PoseResidualNetwork(grid=(28, 18), hidden=16)
    poses, scores = g.group(peaks, boxes, torch.tensor([0.9, 0.5]), net, grid=(28, 18))
    assert poses.shape == (2, 17, 3) and scores.shape == (2,)
    assert (scores <= torch.tensor([0.9, 0.5]) + 1e-6).all()
    empty_poses, empty_scores = g.group(peaks, torch.zeros(0, 4), None, net, grid=(28, 18))
    assert empty_poses.shape == (0, 17, 3) and empty_scores.shape == (0,)
    none, _ = g.group(torch.zeros(17, 0, 3), boxes, None, g.max_grouping, grid=(28, 18))
    assert (none[..., 2] == 0).all()
    with pytest.raises(ValueError, match="peaks"):
        g.group(torch.zeros(17, 3), boxes)


def test_peaks_from_heatmaps_in_input_pixels() -> None:
    maps = torch.zeros(1, 17, 16, 16)
    maps[0, 3, 5, 7] = 0.9
    maps[0, 3, 5, 8] = 0.5  # the right neighbour is higher than the left: a quarter cell to the right
    peaks = g.peaks_from_heatmaps(maps, stride=4, threshold=0.1, max_peaks=4)
    assert peaks.shape == (1, 17, 4, 3)
    assert peaks[0, 3, 0].tolist() == pytest.approx([4 * 7.25 + 1.5, 4 * 5 + 1.5, 0.9])
    assert peaks[0, 0, :, 2].abs().max().item() == 0


def test_prn_samples_curriculum_and_distractors() -> None:
    def ann(x, labelled):
        k = [0.0] * 51
        for j in range(labelled):
            k[3 * j : 3 * j + 3] = [x + j % 3, 5 + 3 * j, 2]
        return {"bbox": [x - 10, 0, 40, 60], "keypoints": k}

    people = {1: [ann(20, 5), ann(45, 17)], 2: [ann(20, 1)]}
    samples = g.PRNSamples(people, (28, 18), min_keypoints=2)
    assert len(samples) == 2  # the person with one keypoint is left out
    assert samples.items[0] == (1, 1)  # most keypoints first
    item = samples[1]
    assert item["x"].shape == item["y"].shape == (17, 28, 18)
    # the input holds the other person's keypoints too (distractors), the target only the own
    assert item["x"][5:].sum() > 0 and item["y"][5:].sum() == 0
