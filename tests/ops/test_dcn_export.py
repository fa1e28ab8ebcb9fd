"""The OpenVINO-arranged DCNv3 core (``export`` backend) beyond the conformance tests (test_dcn_conformance.py,
values and gradients against the reference core): the dispatch to it, and half precision kept."""
import torch

from uniconvnet.ops import dcnv3, dcnv3_export, dcnv3_torch


def _inputs(n, h, w, group, channels, kernel, stride, padding, dilation, dtype=torch.float32):
    out_h = (h + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (w + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    points = kernel * kernel
    value = torch.randn(n, h, w, group * channels, dtype=dtype)
    offset = torch.randn(n, out_h, out_w, group * points * 2, dtype=dtype) * 1.5  # some samples leave the image
    mask = torch.randn(n, out_h, out_w, group * points, dtype=dtype) * 0.5
    return value, offset, mask


def _geometry(kernel, stride, padding, dilation, group, offset_scale):
    return (kernel, kernel), (stride, stride), (padding, padding), (dilation, dilation), group, offset_scale


def test_is_the_export_backend_and_keeps_half_precision_inputs():
    torch.manual_seed(0)
    inputs = _inputs(1, 6, 6, 2, 4, 3, 1, 1, 1)
    geometry = _geometry(3, 1, 1, 1, 2, 1.0)
    torch.testing.assert_close(dcnv3(*inputs, *geometry[:4], group=2, offset_scale=1.0, backend='export'),
                               dcnv3_export(*inputs, *geometry))
    half = dcnv3_export(*(t.half() for t in inputs), *geometry)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), dcnv3_torch(*(t.half() for t in inputs), *geometry).float())
