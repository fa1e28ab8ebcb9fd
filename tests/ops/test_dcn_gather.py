"""The gather backend beyond the conformance tests (test_dcn_conformance.py): partial gradients and gradcheck,
its coordinates against grid_sample's own, and the dispatch to it."""
import torch
import torch.nn.functional as F

from uniconvnet.ops import dcnv3, dcnv3_gather, dcnv3_torch
from uniconvnet.ops.dcn.geometry import unnormalize

from dcn_cases import GEOMETRIES, make_inputs


def test_partial_gradients_and_gradcheck():
    g = GEOMETRIES['three_groups']
    x, offset, mask = make_inputs(g, torch.float64)
    mask.requires_grad_()
    # only the mask needs a gradient: the op computes just that one
    grad, = torch.autograd.grad(dcnv3_gather(x, offset, mask, *g.args).sum(), (mask,))
    ref, = torch.autograd.grad(dcnv3_torch(x, offset, mask, *g.args).sum(), (mask,))
    torch.testing.assert_close(grad, ref)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    # away from integer sample positions, where bilinear sampling is not differentiable
    offset = (torch.rand(1, 4, 5, 36, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.randn(1, 4, 5, 18, dtype=torch.float64, requires_grad=True)
    core = lambda a, b, c: dcnv3_gather(a, b, c, (3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0)  # noqa: E731
    assert torch.autograd.gradcheck(core, (x, offset, mask))


def test_coordinates_are_grid_samples_bits():
    # An image that is 1 at column k and 0 elsewhere makes grid_sample return exactly frac(x) for every sample
    # with floor(x) = k - 1: the coordinate grid_sample computed, to the bit.
    width, k = 58, 30
    image = torch.zeros(1, 1, 1, width)
    image[..., k] = 1.0
    loc = (torch.rand(20000) + (k - 1) + 0.5) / width  # fractions of the width: x in [k - 1, k)
    grid = torch.stack((loc * 2 - 1, torch.zeros_like(loc)), dim=-1).view(1, 1, -1, 2)
    sampled = F.grid_sample(image, grid, mode='bilinear', padding_mode='zeros', align_corners=False).view(-1)
    x = unnormalize(loc, width)
    inside = x.floor() == k - 1
    assert inside.sum() > 19000
    assert torch.equal(sampled[inside], (x - x.floor())[inside])


def test_dispatch_routes_to_the_gather_core():
    g = GEOMETRIES['far_outside']
    tensors = make_inputs(g, torch.float32)
    kernel, stride, padding, dilation, group, scale = g.args
    fast = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='gather')
    torch.testing.assert_close(fast, dcnv3_gather(*tensors, *g.args), rtol=0, atol=0)
    forced = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='torch')
    torch.testing.assert_close(forced, dcnv3_torch(*tensors, *g.args), rtol=0, atol=0)
