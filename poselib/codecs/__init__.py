"""Heatmap targets and decoders (no model needed).

Targets (:mod:`~poselib.codecs.heatmap`): Gaussian and MSPN-style kernel heatmaps, multi-person and
multi-resolution targets, masks at heatmap resolution. Decoders (:mod:`~poselib.codecs.decode`): argmax,
quarter offset, top-2 average, Taylor (DARK); flip testing, post-blur, peak finding, and the way back from
heatmap cells to image pixels. Cell ``i`` at stride ``s`` is centred on input coordinate ``s*i + (s-1)/2``.
"""

from poselib.codecs.decode import (
    DECODERS,
    decode_argmax,
    decode_quarter_offset,
    decode_taylor,
    decode_top2_average,
    find_peaks,
    flip_average,
    flip_back,
    gaussian_blur,
    heatmap_coords_to_image,
)
from poselib.codecs.heatmap import (
    HeatmapSpec,
    encode_gaussian_levels,
    encode_heatmaps,
    encode_multi_person,
    encode_multi_resolution,
    gaussian_kernel_1d,
    gaussian_sigma_from_kernel,
    resize_mask,
)

__all__ = [
    "DECODERS",
    "HeatmapSpec",
    "decode_argmax",
    "decode_quarter_offset",
    "decode_taylor",
    "decode_top2_average",
    "encode_gaussian_levels",
    "encode_heatmaps",
    "encode_multi_person",
    "encode_multi_resolution",
    "find_peaks",
    "flip_average",
    "flip_back",
    "gaussian_blur",
    "gaussian_kernel_1d",
    "gaussian_sigma_from_kernel",
    "heatmap_coords_to_image",
    "resize_mask",
]
