"""Every registered DCNv3 backend against the reference core, over the one geometry table (dcn_cases.py).

Parametrised over the registry: a backend added with ``register`` is covered here with no change to this file.
Each one runs where it can take CPU tensors (Triton through its interpreter: conftest.py switches it on) and is
skipped with its own reason where it cannot. Forward in float32 and float64 (where the backend takes them), the
three gradients where it has a backward, half and bfloat16 inputs, and a whole UniConvNet through every backend
that runs natively on the CPU.
"""
import copy

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, using_dcn_backend
from uniconvnet.models import checkpoint_filter_fn
from uniconvnet.ops import BACKENDS, backend_names, dcnv3_torch
from uniconvnet.ops.dcn import REFERENCE_BACKEND
from uniconvnet.ops.dcn.geometry import sampling_locations, unnormalize

from dcn_cases import GEOMETRIES, make_inputs

# The tightest tolerance any earlier per-backend test used, for every backend: (rtol, atol).
FORWARD_TOLERANCE = {torch.float32: (0.0, 1e-5), torch.float64: (0.0, 1e-12)}
GRADIENT_TOLERANCE = {torch.float32: (1e-5, 2e-5), torch.float64: (1e-12, 4e-12)}
# half and bfloat16: both sample in float32 and round once to the low precision; gradients 4x this
LOW_PRECISION_TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 1e-3}


def _backend_or_skip(name: str, dtype: torch.dtype):
    backend = BACKENDS[name]
    reason = backend.why_not(torch.empty(0, dtype=dtype))
    if reason is not None:
        pytest.skip(reason)
    return backend


def _forward_and_grads(forward, tensors, args, grad_out=None):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = forward(*leaves, *args)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        grad_out = grad_out.to(out.dtype)
    return out, torch.autograd.grad(out, leaves, grad_out), grad_out


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=['float32', 'float64'])
@pytest.mark.parametrize('kind', ['random', 'huge'])
@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('name', backend_names())
def test_forward_matches_the_reference(name, geometry, kind, dtype):
    backend = _backend_or_skip(name, dtype)
    g = GEOMETRIES[geometry]
    tensors = make_inputs(g, dtype, kind)
    with torch.no_grad():
        out = backend.forward(*tensors, *g.args)
        ref = dcnv3_torch(*tensors, *g.args)
    assert out.shape == ref.shape and out.dtype == dtype
    rtol, atol = FORWARD_TOLERANCE[dtype]
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=['float32', 'float64'])
@pytest.mark.parametrize('kind', ['fractional', 'huge'])
@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('name', backend_names())
def test_gradients_match_the_reference(name, geometry, kind, dtype):
    backend = _backend_or_skip(name, dtype)
    if not backend.differentiable:
        pytest.skip(f'the {name} backend has no backward')
    g = GEOMETRIES[geometry]
    tensors = make_inputs(g, dtype, kind)
    ref, ref_grads, grad_out = _forward_and_grads(dcnv3_torch, tensors, g.args)
    out, grads, _ = _forward_and_grads(backend.forward, tensors, g.args, grad_out)
    rtol, atol = GRADIENT_TOLERANCE[dtype]
    for what, got, want in zip(('input', 'offset', 'mask'), grads, ref_grads):
        assert got.shape == want.shape and got.dtype == dtype, what
        assert torch.isfinite(got).all(), what
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f'grad {what}: {m}')


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bfloat16', 'float16'])
@pytest.mark.parametrize('name', backend_names())
def test_half_inputs_are_sampled_in_float32(name, dtype):
    backend = _backend_or_skip(name, dtype)
    g = GEOMETRIES['stride2_odd_group_width_scaled']
    low = make_inputs(g, dtype, 'fractional')
    out, grads, grad_out = _forward_and_grads(backend.forward, low, g.args)
    ref, ref_grads, _ = _forward_and_grads(dcnv3_torch, low, g.args, grad_out)
    assert out.dtype == dtype and all(grad.dtype == dtype for grad in grads)
    tol = LOW_PRECISION_TOLERANCE[dtype]  # at most one unit in the last place apart
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.float(), want.float(), rtol=4 * tol, atol=4 * tol)


@pytest.mark.parametrize('name', backend_names())
def test_custom_ops_pass_opcheck(name):
    """Schema, fake (meta) implementations, autograd registration and AOT dispatch with dynamic shapes of the
    forward op and the backward op, for each gradient request the autograd formula makes."""
    backend = _backend_or_skip(name, torch.float32)
    op = backend.custom_op
    if op is None:
        pytest.skip(f'the {name} backend is plain ATen ops, no custom op')
    g = GEOMETRIES['stride2_odd_group_width_scaled']
    x, offset, mask = (t.requires_grad_() for t in make_inputs(g, torch.float32, 'fractional'))
    kernel, stride, padding, dilation, group, scale = g.args
    geometry = (list(kernel), list(stride), list(padding), list(dilation), group, scale)
    result = torch.library.opcheck(op.forward_op, (x, offset, mask, *geometry))
    assert set(result.values()) == {'SUCCESS'}, result
    x, offset, mask = x.detach(), offset.detach(), mask.detach()
    residuals = list(op.forward_op(x, offset, mask, *geometry)[1:]) if op.num_residuals else []
    grad_out = torch.randn(x.shape[0], offset.shape[1], offset.shape[2], x.shape[3])
    for needed in ([True, True, True], [True, False, True], [False, True, False]):
        result = torch.library.opcheck(op.backward_op, (grad_out, x, offset if op.saves_offset else None, mask,
                                                        residuals, *geometry, needed))
        assert set(result.values()) == {'SUCCESS'}, result


def _fraction_outside(g, offset) -> float:
    """Share of samples whose four bilinear corners all lie outside the (unpadded) image."""
    padded_h, padded_w = g.height + 2 * g.padding[0], g.width + 2 * g.padding[1]
    loc_x, loc_y = sampling_locations(offset, padded_h, padded_w, g.kernel_size, g.stride, g.dilation, g.group,
                                      g.offset_scale)
    x, y = unnormalize(loc_x, padded_w) - g.padding[1], unnormalize(loc_y, padded_h) - g.padding[0]
    outside = (x <= -1) | (x >= g.width) | (y <= -1) | (y >= g.height)
    return outside.double().mean().item()


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
def test_gradient_inputs_send_samples_outside_the_image(geometry):
    """Zero padding is tested: part of every geometry's samples leave the image entirely."""
    g = GEOMETRIES[geometry]
    assert _fraction_outside(g, make_inputs(g, torch.float64, 'fractional')[1]) > 0.05


# Backends that run natively on CPU tensors (an interpreter is too slow for a whole model)
CPU_BACKENDS = [name for name, b in BACKENDS.items() if name != REFERENCE_BACKEND
                and (b.devices is None or 'cpu' in b.devices)]


@pytest.fixture(scope='module')
def official_a_model_float64(official_a):
    model = timm.create_model('uniconvnet_a')
    model.load_state_dict(checkpoint_filter_fn(official_a['state_dict'], model))
    return model.eval().double()


def _model_forward_and_grad(model, x):
    x = x.clone().requires_grad_()
    final, features = model.forward_intermediates(x)
    logits = model.forward_head(final)
    logits.square().sum().backward()
    return logits.detach(), [f.detach() for f in features], x.grad


@pytest.mark.parametrize('name', CPU_BACKENDS)
def test_model_through_every_cpu_backend(official_a_model_float64, name):
    """Official weights (random: every branch matters) on a small input: outputs and input gradients in float64.

    In float32 the backends' different summation orders move some samples across pixel edges, where the bilinear
    gradient jumps, and the jumps spread through the backward pass (up to 4e-3 on this input).
    """
    _backend_or_skip(name, torch.float64)
    model = copy.deepcopy(official_a_model_float64)
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with using_dcn_backend(model, name):
        ours = _model_forward_and_grad(model, x)
    with using_dcn_backend(model, REFERENCE_BACKEND):
        reference = _model_forward_and_grad(model, x)
    assert all(m.backend is None for m in model.modules() if isinstance(m, DCNv3))  # restored
    torch.testing.assert_close(ours[0], reference[0], rtol=0, atol=1e-10)
    for got, want in zip(ours[1], reference[1]):
        assert got.is_contiguous(memory_format=torch.channels_last)  # activations stay channels-last
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours[2], reference[2], rtol=1e-9, atol=1e-9)
