"""The building blocks on their own: RFA, DCNv3 layer and sampling core."""
import pytest
import torch
import torch.nn.functional as F

from uniconvnet.layers import RFA, DCNv3, ReceptiveFieldAggregator
from uniconvnet.ops import dcnv3, dcnv3_torch


def _layer_norm_nchw(x, norm):
    """The official channels-first LayerNorm: mean, biased variance, divide by sqrt(var + eps), affine."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + norm.eps)
    return norm.weight[:, None, None] * x + norm.bias[:, None, None]


def _conv(x, conv):
    return F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)


def reference_rfa(rfa, x):
    """The RFA as the official ConvMod computes it: NCHW, one convolution per layer and path, no merging."""
    parts = torch.split(_layer_norm_nchw(x, rfa.norm), rfa.part_chs, dim=1)
    y = parts[0]
    for i, layer in enumerate(rfa.layers):
        if not layer.first:
            y = _layer_norm_nchw(y, layer.norm)
        context = _conv(F.gelu(_conv(y, layer.context_pw)), layer.context_dw)
        amplified = _conv(context * _conv(y, layer.amp_gate), layer.amp_proj)
        discriminated = _conv(_conv(parts[i + 1], layer.disc_pw), layer.disc_dw)
        discriminated = discriminated + (context if layer.first else _conv(context, layer.context_proj))
        y = torch.cat((discriminated, amplified), dim=1)
    return y


@pytest.mark.parametrize('kernel_sizes,dim', [((7, 9, 11), 24), ((3,), 8), ((5, 7), 15)])
def test_rfa_merged_operations_equal_the_reference(kernel_sizes, dim):
    # channels-last matrix products, F.layer_norm and the merged discriminator paths against the official
    # op-by-op NCHW arithmetic: outputs and all gradients, in float64 so that only real differences show
    torch.manual_seed(0)
    rfa = ReceptiveFieldAggregator(dim, kernel_sizes).double()
    with torch.no_grad():
        for name, param in rfa.named_parameters():
            param.add_(torch.randn_like(param) * 0.3)  # biases and norm affines away from their init
    x = torch.randn(2, dim, 9, 11, dtype=torch.float64)
    x_ref = x.clone().requires_grad_()
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out, ref = rfa(x), reference_rfa(rfa, x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert out.is_contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(ref)
    params = list(rfa.parameters())
    grads = torch.autograd.grad(out, [x] + params, grad_out)
    ref_grads = torch.autograd.grad(ref, [x_ref] + params, grad_out)
    for (name, _), g, r in zip([('input', None)] + list(rfa.named_parameters()), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9, msg=lambda m: f'{name}: {m}')


def test_rfa_takes_any_memory_format():
    rfa = RFA(24).eval()
    x = torch.randn(2, 24, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(rfa(x), rfa(x.contiguous(memory_format=torch.channels_last)), rtol=0, atol=0)


@pytest.mark.parametrize('kernel_sizes,dim', [((7, 9, 11), 24), ((3,), 8), ((3, 5), 12), ((5, 7, 9, 11, 13), 30)])
def test_rfa_any_number_of_layers(kernel_sizes, dim):
    rfa = ReceptiveFieldAggregator(dim, kernel_sizes)
    assert len(rfa.layers) == len(kernel_sizes)
    assert rfa.part_chs == dim // (len(kernel_sizes) + 1)
    # the depthwise kernels are the requested ones
    assert [layer.context_dw.kernel_size[0] for layer in rfa.layers] == list(kernel_sizes)
    x = torch.randn(2, dim, 9, 11, requires_grad=True)
    y = rfa(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert all(p.grad is not None for p in rfa.parameters())


def test_rfa_receptive_field_grows_with_kernels():
    # the output at the centre depends on inputs up to the sum of the kernel radii away (plus the 3x3)
    torch.manual_seed(0)
    rfa = RFA(8, (3,)).eval()
    x = torch.randn(1, 8, 21, 21, requires_grad=True)
    rfa(x)[0, :, 10, 10].sum().backward()
    touched = (x.grad.abs().sum((0, 1)) > 0).nonzero()
    assert touched[:, 0].min() == 9 and touched[:, 0].max() == 11


def test_rfa_bad_width_names_fix():
    with pytest.raises(ValueError, match=r'30 channels cannot be split into 4 equal parts.*28 or 32'):
        ReceptiveFieldAggregator(30)
    with pytest.raises(ValueError, match='odd'):
        ReceptiveFieldAggregator(24, (7, 8, 11))


def test_dcnv3_group_error():
    with pytest.raises(ValueError, match='not divisible by group=5'):
        DCNv3(24, group=5)


def _core(x, offset, mask, group, k=3, pad=1, stride=1, dilation=1):
    return dcnv3_torch(x, offset, mask, (k, k), (stride, stride), (pad, pad), (dilation, dilation), group, 1.0)


@pytest.mark.parametrize('shape,message', [
    ((2, 8, 8, 32), r'^DCNv3 expects a channels-last \(N, H, W, C\) tensor with C=64, got shape \[2, 8, 8, 32\]$'),
    ((8, 8, 64), r'^DCNv3 expects a channels-last \(N, H, W, C\) tensor with C=64, got shape \[8, 8, 64\]$'),
    ((1, 2, 8, 8, 64), r'got shape \[1, 2, 8, 8, 64\]$'),
    ((2, 64, 8, 8), r'got shape \[2, 64, 8, 8\]; it looks \(N, C, H, W\): pass x\.permute\(0, 2, 3, 1\)$'),
])
def test_dcnv3_names_the_expected_layout(shape, message):
    layer = DCNv3(64, group=4)
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(shape))


@pytest.mark.parametrize('shape,message', [
    ((2, 32, 8, 8), r'^ReceptiveFieldAggregator expects an \(N, C, H, W\) tensor with C=64, got shape \[2, 32, 8, 8\]$'),
    ((64, 8, 8), r'got shape \[64, 8, 8\]$'),
    ((2, 8, 8, 64), r'got shape \[2, 8, 8, 64\]; it looks channels-last: pass x\.permute\(0, 3, 1, 2\)$'),
])
def test_rfa_names_the_expected_layout(shape, message):
    rfa = RFA(64)
    with pytest.raises(ValueError, match=message):
        rfa(torch.randn(shape))


def test_layout_checks_survive_scripting_and_fx_tracing():
    from timm.models import create_feature_extractor, get_graph_node_names  # timm's FX tracer: checks are leaves
    dcn, rfa = DCNv3(16, group=2).eval(), RFA(16, kernel_sizes=(3,)).eval()
    x = torch.randn(1, 5, 6, 16)
    for layer, good, bad in ((dcn, x, x[..., :8]), (rfa, x.permute(0, 3, 1, 2), x)):
        scripted = torch.jit.script(layer)
        with torch.no_grad():
            torch.testing.assert_close(scripted(good), layer(good))
        with pytest.raises(torch.jit.Error, match='expects'):
            scripted(bad)
        layer = torch.nn.Sequential(layer)  # called with the input alone, as a model calls it
        _, nodes = get_graph_node_names(layer)
        assert any('check_layout' in node for node in nodes)  # one call in the graph
        traced = create_feature_extractor(layer, return_nodes=[nodes[-1]])
        with torch.no_grad():
            torch.testing.assert_close(traced(good)[nodes[-1]], layer(good))
        with pytest.raises(ValueError, match='expects'):
            traced(bad)


def test_core_zero_offset_is_a_box_filter():
    # zero offsets and a mask of ones: a 3x3 sum with zero padding, per channel
    n, h, w, g, gc = 2, 5, 7, 3, 4
    x = torch.randn(n, h, w, g * gc)
    out = _core(x, torch.zeros(n, h, w, g * 18), torch.ones(n, h, w, g * 9), g)
    ref = F.conv2d(x.permute(0, 3, 1, 2), torch.ones(g * gc, 1, 3, 3), padding=1, groups=g * gc)
    torch.testing.assert_close(out, ref.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_core_point_order_and_integer_offsets():
    # points are x-major: p = ix * 3 + iy. Selecting point p with a one-hot mask reads input at (y+dy, x+dx).
    n, h, w = 1, 6, 8
    x = torch.randn(n, h, w, 2)
    for ix in range(3):
        for iy in range(3):
            p = ix * 3 + iy
            mask = torch.zeros(n, h, w, 9)
            mask[..., p] = 1
            offset = torch.zeros(n, h, w, 9, 2)
            offset[..., p, 0] = 1.0  # one more pixel to the right
            out = _core(x, offset.flatten(3), mask, 1)
            dy, dx = iy - 1, ix - 1 + 1
            padded = F.pad(x, (0, 0, 2, 2, 2, 2))
            ref = padded[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w]
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_core_fractional_offset_is_bilinear():
    x = torch.randn(1, 4, 4, 1)
    offset = torch.zeros(1, 4, 4, 9, 2)
    offset[..., 4, 1] = 0.25  # centre point, a quarter pixel down
    mask = torch.zeros(1, 4, 4, 9)
    mask[..., 4] = 1
    out = _core(x, offset.flatten(3), mask, 1)
    below = torch.cat([x[:, 1:], torch.zeros(1, 1, 4, 1)], 1)
    torch.testing.assert_close(out, 0.75 * x + 0.25 * below, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shape', [(1, 1, 1), (3, 5, 9), (2, 13, 6)])
def test_dcnv3_layer_any_size(shape):
    n, h, w = shape
    layer = DCNv3(16, group=2)
    with torch.no_grad():  # non-zero offsets so that sampling leaves the grid
        layer.offset.weight.normal_(std=2.0)
        layer.mask.weight.normal_()
    x = torch.randn(n, h, w, 16, requires_grad=True)
    y = layer(x)
    assert y.shape == (n, h, w, 16)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_core_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    # keep samples away from integer positions, where bilinear sampling is not differentiable
    offset = (torch.rand(1, 4, 5, 36, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.randn(1, 4, 5, 18, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: _core(a, b, c, 2), (x, offset, mask))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_dcnv3_low_precision(dtype):
    layer = DCNv3(16, group=2)
    with torch.no_grad():
        layer.offset.weight.normal_()
    layer.autocast_float32_below = 0  # follow autocast at this small size (see the test below)
    x = torch.randn(2, 7, 9, 16)
    ref = layer(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = layer(x)
    assert auto.dtype == torch.bfloat16
    torch.testing.assert_close(auto.float(), ref, rtol=0.05, atol=0.05)
    half = layer.to(dtype)(x.to(dtype))
    assert half.dtype == dtype
    torch.testing.assert_close(half.float(), ref, rtol=0.05, atol=0.05)


def test_entry_point_checks_shapes():
    x = torch.randn(1, 4, 4, 8)
    with pytest.raises(ValueError, match='offset must be'):
        dcnv3(x, torch.zeros(1, 4, 4, 10), torch.zeros(1, 4, 4, 9), group=1)
    with pytest.raises(ValueError, match='not divisible by group=3'):
        dcnv3(x, torch.zeros(1, 4, 4, 54), torch.zeros(1, 4, 4, 27), group=3)


# --- the memory-lean autograd functions: the plain ops' values and gradients, less kept for backward ---------------

def _saved_bytes(fn, *inputs):
    """Output of ``fn(*inputs)`` and the bytes autograd keeps for its backward pass (each storage once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    return out, sum(storages.values())


def _lean_cases():
    from uniconvnet.layers.functional import depthwise_channels_last, gelu_linear, product_linear
    h = torch.randn(2, 5, 7, 12)
    return [
        ('gelu_linear', gelu_linear, lambda a, w, b: F.linear(F.gelu(a), w, b),
         [h, torch.randn(6, 12), torch.randn(6)]),
        ('product_linear', product_linear, lambda a, b, w, c: F.linear(a * b, w, c),
         [h, torch.randn(2, 5, 7, 12), torch.randn(6, 12), torch.randn(6)]),
        ('gelu_depthwise', lambda x, w, b: depthwise_channels_last(x, w, b, gelu_first=True),
         lambda x, w, b: F.conv2d(F.gelu(x).permute(0, 3, 1, 2), w, b, padding=3, groups=12).permute(0, 2, 3, 1),
         [h, torch.randn(12, 1, 7, 7), torch.randn(12)]),
    ]


@pytest.mark.parametrize('case', range(3))
def test_lean_functions_equal_plain_ops_and_keep_less(case):
    name, lean, plain, inputs = _lean_cases()[case]
    inputs = [t.double().requires_grad_() for t in inputs]
    out, lean_bytes = _saved_bytes(lean, *inputs)
    ref, plain_bytes = _saved_bytes(plain, *inputs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
    # one activation-sized tensor (2 * 5 * 7 * 12 doubles) less
    assert plain_bytes - lean_bytes == 2 * 5 * 7 * 12 * 8, name
    # a gradient for some inputs only (the others are constants)
    partial = [inputs[0]] + [t.detach() for t in inputs[1:]]
    g, = torch.autograd.grad(lean(*partial), inputs[0], grad_out)
    r, = torch.autograd.grad(plain(*partial), inputs[0], grad_out)
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('case', range(3))
def test_lean_functions_under_bf16_autocast(case):
    name, lean, plain, inputs = _lean_cases()[case]
    inputs = [t.requires_grad_() for t in inputs]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, ref = lean(*inputs), plain(*inputs)
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the forward runs the very same ops
    grad_out = torch.randn_like(ref)
    for t, g, r in zip(inputs, torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out)):
        assert g.dtype == r.dtype == t.dtype
        torch.testing.assert_close(g, r, rtol=0.02, atol=0.05, msg=lambda m: f'{name}: {m}')


def test_layer_scale_through_the_projection_weights():
    # the block's DCN and MLP layer scales act on the projections' weights: same outputs and gradients
    from uniconvnet.layers import Mlp
    torch.manual_seed(0)
    mlp, dcn = Mlp(8, 32).double(), DCNv3(8, group=2).double()
    with torch.no_grad():
        dcn.offset.weight.normal_()
        dcn.mask.weight.normal_()
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    for layer in (mlp, dcn):
        scale = torch.rand(8, dtype=torch.float64, requires_grad=True)
        out = layer(x, scale)
        ref = layer(x) * scale
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        grad_out = torch.randn_like(ref)
        params = [scale] + list(layer.parameters())
        for g, r in zip(torch.autograd.grad(out, params, grad_out), torch.autograd.grad(ref, params, grad_out)):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def _randomized_rfa(dim, seed):
    torch.manual_seed(seed)
    rfa = ReceptiveFieldAggregator(dim).eval()
    with torch.no_grad():
        for param in rfa.parameters():
            param.add_(torch.randn_like(param) * 0.3)  # biases and norm affines away from their init
    return rfa


def test_reparameterized_rfa_keeps_merged_weights_that_follow_its_parameters():
    rfa = _randomized_rfa(24, 0)
    x = torch.randn(2, 24, 9, 11)
    with torch.no_grad():
        ref = rfa(x)
    rfa.reparameterize()
    assert rfa.frozen_pw_weight is not None and not any(k.startswith('frozen') for k in rfa.state_dict())
    # the stripped norm multiplies by a unit weight that is neither a parameter nor in the state dict
    assert not isinstance(rfa.norm.weight, torch.nn.Parameter) and bool((rfa.norm.weight == 1).all())
    assert 'norm.weight' not in rfa.state_dict()
    with torch.no_grad():
        frozen = rfa(x)
    fresh = rfa(x)  # gradients enabled: the merged weights are built from the parameters
    torch.testing.assert_close(frozen, fresh, rtol=0, atol=0)
    torch.testing.assert_close(frozen, ref, rtol=1e-5, atol=1e-5)
    fresh.square().sum().backward()  # a fused RFA still trains its layer operators' own weights
    assert all(layer.disc_pw.weight.grad.abs().sum() > 0 for layer in rfa.layers)
    # loaded weights reach the merged copies; so does a layer scale folded in after the merge
    other = _randomized_rfa(24, 1)
    other.reparameterize()
    rfa.load_state_dict(other.state_dict())
    scale = torch.rand(24) + 0.5
    with torch.no_grad():
        torch.testing.assert_close(rfa(x), other(x), rtol=0, atol=0)
        scaled = rfa(x) * scale[:, None, None]
        assert rfa.fold_output_scale_(scale)
        torch.testing.assert_close(rfa(x), scaled, rtol=1e-5, atol=1e-6)


def _small_layer(kind):
    """A layer and an input whose work (pixels x width^2 multiply-adds) is below the layer's default threshold."""
    if kind == 'rfa':
        rfa = _randomized_rfa(24, 0)
        return rfa, torch.randn(1, 24, 14, 14), 196 * 24 ** 2
    torch.manual_seed(0)
    dcn = DCNv3(16, group=2)
    with torch.no_grad():
        dcn.offset.weight.normal_()
        dcn.mask.weight.normal_()
    return dcn, torch.randn(2, 7, 9, 16), 126 * 16 ** 2


@pytest.mark.parametrize('kind', ['rfa', 'dcnv3'])
def test_small_layers_compute_in_float32_under_cpu_autocast(kind):
    layer, x, work = _small_layer(kind)
    assert work < layer.autocast_float32_below and layer.leaves_autocast(x) is False  # autocast off: nothing to leave
    with torch.no_grad():
        ref = layer(x)
        low_ref = layer(x.bfloat16().float())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert layer.leaves_autocast(x)
            same = layer(x)
            low = layer(x.bfloat16())
            layer.autocast_float32_below = work  # the work is no longer below it: follow autocast
            followed = layer(x)
    assert same.dtype == torch.float32 and torch.equal(same, ref)  # float32 in, float32 arithmetic out
    assert low.dtype == torch.bfloat16 and torch.equal(low, low_ref.bfloat16())  # returned in the input's dtype
    assert followed.dtype == torch.bfloat16 and not torch.equal(followed.float(), ref)
    assert F.cosine_similarity(followed.float().flatten(), ref.flatten(), dim=0) > 0.999  # the same function
