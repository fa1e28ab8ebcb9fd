"""The OpenVINO-arranged DCNv3 core (``export`` backend) beyond the conformance tests (test_dcn_conformance.py,
values and gradients against the reference core): the dispatch to it, and half precision kept."""
import torch

from uniconvnet.ops import dcnv3, dcnv3_export, dcnv3_torch

from dcn_cases import GEOMETRIES, make_inputs


def test_is_the_export_backend_and_keeps_half_precision_inputs():
    g = GEOMETRIES['three_groups']
    inputs = make_inputs(g, torch.float32)
    kernel, stride, padding, dilation, group, scale = g.args
    torch.testing.assert_close(dcnv3(*inputs, kernel, stride, padding, dilation, group=group, offset_scale=scale,
                                     backend='export'),
                               dcnv3_export(*inputs, *g.args))
    half = dcnv3_export(*(t.half() for t in inputs), *g.args)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), dcnv3_torch(*(t.half() for t in inputs), *g.args).float())
