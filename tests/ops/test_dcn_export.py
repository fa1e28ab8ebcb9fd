"""The OpenVINO-arranged DCNv3 core (``export`` backend) against the reference core: values and gradients."""
import pytest
import torch

from uniconvnet.ops import dcnv3, dcnv3_export, dcnv3_torch

# (N, H, W, group, group channels, kernel, stride, padding, dilation, offset_scale)
GEOMETRIES = [
    (2, 9, 11, 3, 8, 3, 1, 1, 1, 1.0),  # UniConvNet's DCN: 3x3, stride 1, padding 1
    (1, 10, 7, 2, 4, 3, 2, 1, 1, 0.5),
    (2, 8, 8, 1, 5, 5, 1, 2, 2, 2.0),
    (1, 7, 9, 4, 3, 3, 1, 0, 1, 1.0),
]


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


@pytest.mark.parametrize('n,h,w,group,channels,kernel,stride,padding,dilation,offset_scale', GEOMETRIES)
def test_equals_the_reference_core(n, h, w, group, channels, kernel, stride, padding, dilation, offset_scale):
    torch.manual_seed(0)
    geometry = _geometry(kernel, stride, padding, dilation, group, offset_scale)
    # float32: the same sampling locations up to rounding
    inputs = _inputs(n, h, w, group, channels, kernel, stride, padding, dilation)
    torch.testing.assert_close(dcnv3_export(*inputs, *geometry), dcnv3_torch(*inputs, *geometry), rtol=0, atol=1e-5)
    # float64: the same function, gradients included
    inputs = [t.requires_grad_() for t in _inputs(n, h, w, group, channels, kernel, stride, padding, dilation,
                                                  torch.float64)]
    ours, reference = dcnv3_export(*inputs, *geometry), dcnv3_torch(*inputs, *geometry)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, inputs, grad_out)
    reference_grads = torch.autograd.grad(reference, inputs, grad_out)
    for name, g, r in zip(('input', 'offset', 'mask'), grads, reference_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-10, msg=name)


def test_is_the_export_backend_and_keeps_half_precision_inputs():
    torch.manual_seed(0)
    inputs = _inputs(1, 6, 6, 2, 4, 3, 1, 1, 1)
    geometry = _geometry(3, 1, 1, 1, 2, 1.0)
    torch.testing.assert_close(dcnv3(*inputs, *geometry[:4], group=2, offset_scale=1.0, backend='export'),
                               dcnv3_export(*inputs, *geometry))
    half = dcnv3_export(*(t.half() for t in inputs), *geometry)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), dcnv3_torch(*(t.half() for t in inputs), *geometry).float())
