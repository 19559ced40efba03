import torch

from poselib.losses import keypoint_mse, ohkm_mse, per_keypoint_mse


def _maps():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    # sample 0: keypoint errors 1, 4, 0 (one cell off by 2 / 4 cells off by 2 / exact)
    pred[0, 0, 0, 0] = 2.0
    pred[0, 1] = 2.0
    # sample 1: keypoint errors 0.25, 0, 9
    pred[1, 0, 1, 1] = 1.0
    pred[1, 2] = 3.0
    return pred, target


def test_per_keypoint_mse_hand_computed_and_weighted():
    pred, target = _maps()
    weights = torch.ones(2, 3)
    expected = torch.tensor([[1.0, 4.0, 0.0], [0.25, 0.0, 9.0]])
    torch.testing.assert_close(per_keypoint_mse(pred, target, weights), expected)
    weights[1, 2] = 0
    torch.testing.assert_close(keypoint_mse(pred, target, weights), torch.tensor(0.5 * (1 + 4 + 0 + 0.25 + 0 + 0) / 6))


def test_ohkm_keeps_the_hardest_keypoints_per_sample():
    pred, target = _maps()
    weights = torch.ones(2, 3)
    # top-2 per sample: (4 + 1)/2 and (9 + 0.25)/2
    torch.testing.assert_close(ohkm_mse(pred, target, weights, topk=2), torch.tensor(0.5 * ((2.5 + 4.625) / 2)))
    # top-k larger than K falls back to all keypoints
    torch.testing.assert_close(ohkm_mse(pred, target, weights, topk=8), keypoint_mse(pred, target, weights))
