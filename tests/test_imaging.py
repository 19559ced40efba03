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


def test_to_tensor_matches_the_interleaved_formula_on_every_pixel():
    image = np.random.default_rng(1).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    scale = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32)
    offset = (np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32)
    interleaved = image.astype(np.float32) * scale - offset  # (H, W, 3)
    assert np.array_equal(to_tensor(image).numpy(), interleaved.transpose(2, 0, 1))
    image.flags.writeable = False  # the loaders' cached images are read-only
    assert to_tensor(image).shape == (3, 16, 12)
