import numpy as np
import torch

from poselib.imaging import IMAGENET_MEAN, IMAGENET_STD, to_tensor, to_uint8


def test_to_tensor_normalises_per_channel_and_round_trips():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tensor = to_tensor(image)
    assert tensor.shape == (3, 5, 7) and tensor.dtype == torch.float32
    expected = (image[1, 2, 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert abs(tensor[0, 1, 2].item() - expected) < 1e-5
    assert np.array_equal(to_uint8(tensor), image)
