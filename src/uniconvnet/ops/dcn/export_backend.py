"""The ``export`` backend: the reference ``grid_sample`` core with its arithmetic arranged for OpenVINO; what
OpenVINO export uses.

Same operators as :func:`.torch_backend.dcnv3_torch` (one ``GridSample`` per layer, element-wise arithmetic,
a sum), so that any ONNX runtime runs it; only the arrangement around the sampling differs, in two places where
OpenVINO's CPU plugin (2026.4) is slow and onnxruntime is not:

* the sampling grid is one multiply-add on the offsets as they come, ``(dx, dy)`` pairs in the last
  dimension: ``offset * (2 * offset_scale / size) + base``, with ``base`` the regular kernel grid in
  ``grid_sample`` coordinates. The reference splits the pairs, follows the official step-by-step location
  arithmetic and stacks them again, a concatenation on a last dimension of 2 of a 6-D tensor that costs
  OpenVINO more than the sampling itself;
* the mask-weighted sum multiplies 3-D tensors, ``(N * group, C / group, L * P) * (N * group, 1, L * P)``, where
  OpenVINO's 4-D broadcast multiply of the reference is three times slower.

Measured on UniConvNet-A (224x224, one thread): the DCN layer alone 1.5x faster in OpenVINO, the whole model
0.83x / 0.88x eager PyTorch's latency at batch 1 / 8 instead of 0.97x / 1.10x; in onnxruntime this arrangement
is 5-10% slower than the reference one, so ONNX export keeps the ``torch`` backend and OpenVINO export uses
this one.

The sampling locations equal the reference's up to float rounding (the multiply-add instead of the official
order of operations), so outputs differ from :func:`.torch_backend.dcnv3_torch` by float rounding: the bilinear
interpolation turns a location difference of one unit in the last place into an output difference of that
times the local image gradient, about 1e-5 for unit-variance inputs in float32.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from .geometry import kernel_window_pixels, sampling_dtype
from .registry import Backend, register

__all__ = ['dcnv3_export']


def _base_grid(
        out_h: int,
        out_w: int,
        scale: torch.Tensor,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        dilation: Tuple[int, int],
        offset_scale: float,
        dtype: torch.dtype,
        device: torch.device,
) -> torch.Tensor:
    """Every sample's ``grid_sample`` coordinate before its offset, ``(1, H_out, W_out, 1, P, 2)`` as ``(x, y)``.

    ``scale`` is ``2 / (padded width, padded height)``. Kernel points are ordered x-major, as in the reference.
    """
    num_points = kernel_size[0] * kernel_size[1]
    centre_y, centre_x, point_y, point_x = kernel_window_pixels(out_h, out_w, kernel_size, stride, dilation, dtype,
                                                                device)
    # pixel positions in the padded input: window centres, plus the (scaled) kernel grid around them
    x = centre_x.view(1, out_w, 1) + point_x.view(1, 1, num_points) * offset_scale
    y = centre_y.view(out_h, 1, 1) + point_y.view(1, 1, num_points) * offset_scale
    pixels = torch.stack((x.expand(out_h, out_w, num_points), y.expand(out_h, out_w, num_points)), dim=-1)
    return (pixels * scale - 1).view(1, out_h, out_w, 1, num_points, 2)


def dcnv3_export(
        input: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        padding: Tuple[int, int],
        dilation: Tuple[int, int],
        group: int,
        offset_scale: float,
) -> torch.Tensor:
    """DCNv3 sampling with ``F.grid_sample``; same arguments and result as :func:`.torch_backend.dcnv3_torch`.

    Half and bfloat16 inputs are sampled in float32, as in the reference.
    """
    n, _, _, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    group_channels = channels // group
    num_points = kernel_size[0] * kernel_size[1]
    samples = out_h * out_w * num_points
    compute_dtype = sampling_dtype(input.dtype)

    value = F.pad(input.to(compute_dtype), [0, 0, padding[1], padding[1], padding[0], padding[0]])
    padded_h, padded_w = value.shape[1], value.shape[2]
    # 2 / size as a tensor of the traced sizes, so that exported graphs keep dynamic image sizes
    size = torch.stack((torch.full((), padded_w, dtype=compute_dtype, device=input.device),
                        torch.full((), padded_h, dtype=compute_dtype, device=input.device)))
    scale = 2 / size
    base = _base_grid(out_h, out_w, scale, kernel_size, stride, dilation, offset_scale, compute_dtype, input.device)
    grid = offset.to(compute_dtype).view(n, out_h, out_w, group, num_points, 2) * (scale * offset_scale) + base
    grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(n * group, out_h * out_w, num_points, 2)
    value = value.reshape(n, padded_h * padded_w, group, group_channels)
    value = value.permute(0, 2, 3, 1).reshape(n * group, group_channels, padded_h, padded_w)
    sampled = F.grid_sample(value, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    weight = mask.to(compute_dtype).reshape(n, out_h * out_w, group, num_points)
    weight = weight.permute(0, 2, 1, 3).reshape(n * group, 1, samples)
    out = (sampled.reshape(n * group, group_channels, samples) * weight)
    out = out.reshape(n * group, group_channels, out_h * out_w, num_points).sum(-1)
    out = out.reshape(n, channels, out_h * out_w).transpose(1, 2).reshape(n, out_h, out_w, channels)
    return out.to(input.dtype)


register(Backend(
    name='export',
    forward=dcnv3_export,
    description='the reference arranged for OpenVINO (what OpenVINO export uses); plain ATen ops',
    reference_locations=False,  # the sampling grid is one multiply-add on the offsets
))
