"""The fast CPU path: the gather DCNv3 core against the reference one, fusion, torch.compile of a block."""
import pytest
import timm
import torch
import torch.nn.functional as F

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, dcn_backend
from uniconvnet.models import UniConvNetBlock, checkpoint_filter_fn
from uniconvnet.ops import dcnv3, dcnv3_output_size, dcnv3_torch
from uniconvnet.ops.dcnv3_cpu import unnormalize, dcnv3_cpu

# (n, h, w, group, group_channels, kernel, stride, pad, dilation, offset_scale, offset spread in pixels)
CORE_CASES = [
    (2, 5, 7, 3, 4, 3, 1, 1, 1, 1.0, 3.0),
    (1, 9, 6, 2, 16, 3, 1, 1, 1, 1.0, 20.0),  # most samples far outside the image
    (2, 7, 8, 2, 3, 3, 2, 1, 1, 0.7, 5.0),    # stride 2, offset scale
    (1, 6, 5, 1, 5, 5, 1, 2, 2, 1.3, 2.0),    # 5x5 kernel, dilation 2
    (1, 1, 1, 4, 2, 3, 1, 1, 1, 1.0, 1.0),    # a single pixel
]


def _inputs(case, dtype):
    n, h, w, g, gc, k, s, p, d, scale, spread = case
    out_h, out_w = dcnv3_output_size(h, w, (k, k), (s, s), (p, p), (d, d))
    x = torch.randn(n, h, w, g * gc, dtype=dtype, requires_grad=True)
    offset = (torch.randn(n, out_h, out_w, g * k * k * 2, dtype=dtype) * spread).requires_grad_()
    mask = torch.randn(n, out_h, out_w, g * k * k, dtype=dtype, requires_grad=True)
    return (x, offset, mask), ((k, k), (s, s), (p, p), (d, d), g, scale)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('case', CORE_CASES)
def test_cpu_core_matches_reference_forward_and_gradients(case, dtype, tol):
    tensors, args = _inputs(case, dtype)
    ref = dcnv3_torch(*tensors, *args)
    out = dcnv3_cpu(*tensors, *args)
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, tensors, grad_out)
    grads = torch.autograd.grad(out, tensors, grad_out)
    for name, g, r in zip(('input', 'offset', 'mask'), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol * 4, msg=lambda m: f'{name}: {m}')


def test_cpu_core_partial_gradients_and_gradcheck():
    tensors, args = _inputs(CORE_CASES[0], torch.float64)
    x, offset, mask = tensors
    # only the mask needs a gradient: the op computes just that one
    grad, = torch.autograd.grad(dcnv3_cpu(x.detach(), offset.detach(), mask, *args).sum(), (mask,))
    ref, = torch.autograd.grad(dcnv3_torch(x.detach(), offset.detach(), mask, *args).sum(), (mask,))
    torch.testing.assert_close(grad, ref)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    # away from integer sample positions, where bilinear sampling is not differentiable
    offset = (torch.rand(1, 4, 5, 36, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.randn(1, 4, 5, 18, dtype=torch.float64, requires_grad=True)
    core = lambda a, b, c: dcnv3_cpu(a, b, c, (3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0)  # noqa: E731
    assert torch.autograd.gradcheck(core, (x, offset, mask))


def test_cpu_core_coordinates_are_grid_samples_bits():
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


def test_dispatch_routes_cpu_to_the_gather_core():
    tensors, args = _inputs(CORE_CASES[1], torch.float32)
    kernel, stride, padding, dilation, group, scale = args
    fast = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='cpu')
    torch.testing.assert_close(fast, dcnv3_cpu(*tensors, *args), rtol=0, atol=0)
    forced = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='torch')
    torch.testing.assert_close(forced, dcnv3_torch(*tensors, *args), rtol=0, atol=0)


@pytest.fixture(scope='module')
def official_a_model(official_a):
    model = timm.create_model('uniconvnet_a')
    model.load_state_dict(checkpoint_filter_fn(official_a['state_dict'], model))
    return model.eval()


def _forward_and_grad(model, x):
    x = x.clone().requires_grad_()
    final, features = model.forward_intermediates(x)
    logits = model.forward_head(final)
    logits.square().sum().backward()
    return logits.detach(), [f.detach() for f in features], x.grad


def test_default_backend_matches_reference_core(official_a_model):
    # official weights (random, every branch matters) on a small input: outputs and input gradients. In float64:
    # in float32 the cores' different summation orders move some samples across pixel edges, where the bilinear
    # gradient jumps, and the jumps spread through the backward pass (up to 4e-3 on this input)
    import copy
    model = copy.deepcopy(official_a_model).double()
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    fast = _forward_and_grad(model, x)
    with dcn_backend(model, 'torch'):
        reference = _forward_and_grad(model, x)
    assert all(m.backend is None for m in model.modules() if isinstance(m, DCNv3))  # restored
    torch.testing.assert_close(fast[0], reference[0], rtol=0, atol=1e-10)
    for f, p in zip(fast[1], reference[1]):
        assert f.is_contiguous(memory_format=torch.channels_last)  # activations stay channels-last
        torch.testing.assert_close(f, p, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast[2], reference[2], rtol=1e-9, atol=1e-9)


def test_fuse_matches_unfused_and_timm_reparameterize(official_a_model):
    import copy
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = official_a_model(x)
        fused = copy.deepcopy(official_a_model).fuse()
        via_timm = timm.utils.reparameterize_model(official_a_model)  # a fused deep copy
        torch.testing.assert_close(fused(x), ref, rtol=0, atol=1e-4)
        torch.testing.assert_close(via_timm(x), fused(x), rtol=0, atol=0)
    keys = fused.state_dict().keys()
    assert not any('.ls_' in k or k.endswith(('norm_mlp.weight', 'rfa.norm.weight')) for k in keys)
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in official_a_model.parameters())
    assert 'stages.0.blocks.0.norm_dcn.weight' in keys  # feeds a zero-padded conv: not folded


def test_single_layer_rfa_keeps_its_layer_scale():
    block = UniConvNetBlock(16, dcn_group_channels=8, kernel_sizes=(3,), ls_init_value=0.7).eval()
    x = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)
    assert block.ls_rfa.gamma is not None  # the context is added without a projection: the scale stays
    assert block.ls_mlp.gamma is None and block.ls_dcn.gamma is None  # folded into fc2 and output_proj


def test_compile_block_without_graph_breaks():
    torch.manual_seed(0)
    block = UniConvNetBlock(32, dcn_group_channels=8, ls_init_value=0.5)
    with torch.no_grad():
        block.dcn.offset.weight.normal_(std=0.5)
        block.dcn.mask.weight.normal_(std=0.5)
    x = torch.randn(2, 32, 9, 11, requires_grad=True)
    # fullgraph: a graph break inside the block (the DCN core included) is an error; aot_eager traces the
    # backward too without compiling C++, to keep this test fast
    compiled = torch.compile(block, fullgraph=True, backend='aot_eager')
    out = compiled(x)
    grad, = torch.autograd.grad(out.square().sum(), x)
    ref = block(x)
    ref_grad, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize('kernel', [7, 11])
def test_large_depthwise_conv_gradients(kernel):
    from uniconvnet.layers.functional import depthwise_conv as large_depthwise_conv
    x = torch.randn(2, 6, 9, 13, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 1, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = large_depthwise_conv(*inputs)
    ref_inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ref = F.conv2d(ref_inputs[0], ref_inputs[1], ref_inputs[2], padding=kernel // 2, groups=6)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, ref_inputs, grad_out)):
        torch.testing.assert_close(g, r)


def test_recompute_gives_the_same_gradients_and_reruns_the_branch():
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=5, ls_init_value=0.5)
    x = torch.randn(2, 3, 48, 48)
    params = [p for p in model.parameters()]

    def grads():
        return torch.autograd.grad(model(x).square().sum(), params)

    calls = []
    # a pre-hook: the recomputation stops as soon as it has what the backward needs, before the RFA returns
    hook = model.stages[1].blocks[0].rfa.register_forward_pre_hook(lambda *_: calls.append(1))
    plain = grads()
    assert len(calls) == 1
    assert model.set_recompute(('rfa', 'mlp')) is model
    recomputed = grads()
    assert len(calls) == 3  # forward, then again in the backward pass
    hook.remove()
    for g, r in zip(recomputed, plain):
        torch.testing.assert_close(g, r, rtol=0, atol=0)  # the same ops on the same values
    model.set_recompute(())
    assert all(not any(b.recompute) for b in model.modules() if isinstance(b, UniConvNetBlock))


def test_recompute_rejects_unknown_branches():
    with pytest.raises(ValueError, match=r"unknown branch\(es\) to recompute: 'attn'; choose from rfa, dcn, mlp"):
        timm.create_model('uniconvnet_a', recompute=('attn',))
    with pytest.raises(ValueError, match='choose from rfa, dcn, mlp'):
        timm.create_model('uniconvnet_a').set_recompute(['mlp', 'stem'])
