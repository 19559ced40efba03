"""Simple Pose's greedy keypoint assignment on hand-made scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poselib.codecs import bodyparts as bp
from poselib.grouping.greedy import GreedyConfig, find_candidates, group, match_parts, score_pairs
from poselib.keypoints import NUM_KEYPOINTS

SIZE = 96


def _figure(cx: float, top: float, scale: float = 1.0, arm_dx: float = 0.0) -> np.ndarray:
    """A front-facing stick figure ``(17, 3)`` centred on ``cx``; ``arm_dx`` moves both wrists sideways."""
    offsets = {
        0: (0, 0), 1: (-3, -3), 2: (3, -3), 3: (-6, -1), 4: (6, -1), 5: (-9, 12), 6: (9, 12), 7: (-12, 24),
        8: (12, 24), 9: (-13 + arm_dx, 36), 10: (13 + arm_dx, 36), 11: (-6, 40), 12: (6, 40), 13: (-7, 56),
        14: (7, 56), 15: (-7, 72), 16: (7, 72),
    }
    # COCO's left is the person's left, on the image's right for a front-facing person
    pose = np.zeros((NUM_KEYPOINTS, 3))
    for k, (dx, dy) in offsets.items():
        pose[k] = (cx - dx * scale, top + dy * scale, 2)
    return pose


def _maps(people: np.ndarray, encoding: str = "bodyparts") -> tuple[torch.Tensor, torch.Tensor]:
    enc = bp.BodyPartTargets(SIZE, 1, sigma_k=2.0, sigma_p=1.5, encoding=encoding, num_scales=1)
    maps = enc.encode(torch.as_tensor(people, dtype=torch.float32))
    return maps[:NUM_KEYPOINTS], maps[NUM_KEYPOINTS:]


def _match_people(found: np.ndarray, truth: np.ndarray) -> list[float]:
    """For each true person, the mean keypoint error of the found person closest to it."""
    errors = []
    for person in truth:
        dists = [np.linalg.norm(f[:, :2] - person[:, :2], axis=1).mean() for f in found]
        errors.append(min(dists))
    return errors


def test_candidates_are_refined_peaks() -> None:
    maps = torch.zeros(2, 20, 20)
    maps[0, 5, 7] = 1.0
    maps[0, 5, 8] = 1.0 / 3  # pulls the centroid a quarter pixel to the right
    maps[0, 15, 15] = 0.05  # below the threshold
    candidates = find_candidates(maps, threshold=0.1)
    assert len(candidates) == 2 and candidates[1].shape == (0, 3)
    x, y, score = candidates[0][0]
    assert (x, y, score) == pytest.approx((7.25, 5.0, 1.0))


def test_pair_scores_follow_the_part_map() -> None:
    part = torch.zeros(40, 40)
    part[10, 5:30] = 0.9  # a horizontal body part from x=5 to x=29 on row 10
    a = np.array([[5.0, 10.0, 1.0]])
    b = np.array([[29.0, 10.0, 1.0], [29.0, 30.0, 1.0]])
    score, accepted, length = score_pairs(part, a, b, image_height=40.0)
    assert accepted.tolist() == [[True, False]]
    assert score[0, 0] == pytest.approx(0.9 + (0.5 * 40 / 24 - 1))  # penalised: longer than half the height
    short, _, _ = score_pairs(part, a, np.array([[20.0, 10.0, 1.0]]), image_height=40.0)
    assert short[0, 0] == pytest.approx(0.9)  # parts shorter than half the image height are not
    assert length[0, 0] == pytest.approx(24.0)


def test_matching_is_one_to_one_and_greedy() -> None:
    score = np.array([[0.9, 0.8], [0.85, 0.1]])
    accepted = np.ones((2, 2), dtype=bool)
    rows = match_parts(score, accepted, np.ones(2), np.ones(2))
    assert rows[:, :2].astype(int).tolist() == [[0, 0], [1, 1]]  # (0,1) loses to (0,0); (1,0) lost its b


def test_two_separate_people_are_recovered() -> None:
    truth = np.stack([_figure(25, 8), _figure(70, 10)])
    poses, scores = group(*_maps(truth))
    assert len(poses) == 2
    assert max(_match_people(poses, truth)) < 0.5
    assert (poses[..., 2] > 0.9).all() and (scores > 0).all()


@pytest.mark.parametrize("encoding", ["bodyparts", "paf"])
def test_crossing_people_are_separated(encoding: str) -> None:
    # two overlapping people whose forearms cross: A's right wrist reaches past B's left wrist
    truth = np.stack([_figure(38, 8, arm_dx=-14), _figure(58, 8, arm_dx=14)])
    poses, _ = group(*_maps(truth, encoding), encoding=encoding)
    assert len(poses) == 2
    assert max(_match_people(poses, truth)) < 0.5


def test_three_people_of_different_sizes() -> None:
    truth = np.stack([_figure(15, 5, 0.6), _figure(48, 10, 1.0), _figure(80, 30, 0.7)])
    poses, _ = group(*_maps(truth))
    assert len(poses) == 3 and max(_match_people(poses, truth)) < 0.5


def test_missing_keypoints_and_min_keypoints() -> None:
    person = _figure(48, 10)
    person[[9, 10, 15, 16], 2] = 0  # wrists and ankles unlabelled
    poses, _ = group(*_maps(person[None]))
    assert len(poses) == 1
    assert (poses[0, [9, 10, 15, 16], 2] == 0).all() and (poses[0, :9, 2] > 0).all()
    lonely = np.zeros((1, NUM_KEYPOINTS, 3))
    lonely[0, 0] = (40, 40, 2)
    assert len(group(*_maps(lonely))[0]) == 0  # a single keypoint is not a person


def test_redundant_parts_reconnect_a_person_without_nose() -> None:
    # seen from the back: no nose, eyes or ears; the spanning tree alone (nose-shoulder edges) splits the person
    person = _figure(48, 10)
    person[:5, 2] = 0
    km, pm = _maps(person[None])
    full, _ = group(km, pm)
    mst_index = list(bp.MST_PARTS)
    tree, _ = group(km, pm[mst_index], parts=bp.select_parts("mst"))
    assert len(full) == 1 and (full[0, 5:, 2] > 0).all()
    assert len(tree) == 2  # left and right halves


def test_empty_maps_give_no_people() -> None:
    poses, scores = group(torch.zeros(17, 32, 32), torch.zeros(bp.NUM_PARTS, 32, 32))
    assert poses.shape == (0, 17, 3) and scores.shape == (0,)
    with pytest.raises(ValueError, match="part channels"):
        group(torch.zeros(17, 32, 32), torch.zeros(3, 32, 32))


def test_threshold_config_is_used() -> None:
    truth = _figure(48, 10)[None]
    km, pm = _maps(truth)
    assert len(group(km * 0.05, pm)[0]) == 0  # every peak below peak_threshold 0.1
    assert len(group(km * 0.05, pm, config=GreedyConfig(peak_threshold=0.01, min_mean_score=0.0))[0]) == 1
