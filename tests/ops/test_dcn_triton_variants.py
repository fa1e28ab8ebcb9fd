"""Every launch config of the Triton DCNv3 kernels computes the PyTorch core's numbers (Triton's interpreter).

The GPU benchmark (benchmarks/dcnv3_gpu.py) times these configs side by side and the library launches the
fastest (``triton_backend.DEFAULT_CONFIG``), so each must be right before it is timed: vector channels on and off
(the group width as a compile-time constant, or a run-time value with masked channels), relaxed and
acquire-release atomics, and tiles from 4 pixels per program to many, with one or several warps.
conftest.py switches the interpreter on (TRITON_INTERPRET=1).
"""
import importlib

import pytest
import torch

from uniconvnet.ops import dcnv3_output_size, dcnv3_torch, dcnv3_triton

# the module, not the function of the same name that uniconvnet.ops exports
triton_backend = importlib.import_module(dcnv3_triton.__module__)
TritonConfig = triton_backend.TritonConfig

CONFIGS = {
    'default': triton_backend.DEFAULT_CONFIG,
    'scalar_channels_acq_rel': TritonConfig(vector_channels=False, relaxed_atomics=False),
    'vector_channels_acq_rel': TritonConfig(vector_channels=True, relaxed_atomics=False),
    'small_tile_one_warp': TritonConfig(tile_elements=32, num_warps=1),  # the 4-pixel minimum for wide groups
    'large_tile_eight_warps': TritonConfig(tile_elements=2048, num_warps=8),  # more pixels than the image has
}

PROBLEMS = {
    # name: (n, h, w, group, group_channels, stride): group widths 8 and 16 take the constant-width path
    # (EVEN_C) when vector_channels is on, 5 is padded to 8 and masked whatever the config
    'width8_3groups': (2, 5, 6, 3, 8, 1),
    'width16_stride2': (1, 7, 6, 2, 16, 2),
    'width5_padded': (1, 6, 5, 2, 5, 1),
}


def _problem(n, h, w, group, group_channels, stride, dtype=torch.float32):
    out_h, out_w = dcnv3_output_size(h, w, (3, 3), (stride, stride), (1, 1), (1, 1))
    x = torch.randn(n, h, w, group * group_channels)
    # offsets of whole pixels plus a quarter, half or three quarters (never on the bilinear kink), up to 3.75 px,
    # so that some samples leave the image
    shape = (n, out_h, out_w, group * 18)
    offset = torch.randint(-3, 4, shape) + torch.tensor([0.25, 0.5, 0.75])[torch.randint(0, 3, shape)]
    mask = torch.randn(n, out_h, out_w, group * 9)
    grad_out = torch.randn(n, out_h, out_w, group * group_channels)
    config = ((3, 3), (stride, stride), (1, 1), (1, 1), group, 1.0)
    return [t.to(dtype) for t in (x, offset, mask)], grad_out.to(dtype), config


def _reference(tensors, grad_out, config):
    leaves = [t.detach().float().requires_grad_() for t in tensors]
    out = dcnv3_torch(*leaves, *config)
    return out, torch.autograd.grad(out, leaves, grad_out.float())


@pytest.mark.parametrize('config_name', list(CONFIGS))
@pytest.mark.parametrize('problem', list(PROBLEMS))
def test_every_config_matches_the_torch_core(config_name, problem):
    tensors, grad_out, config = _problem(*PROBLEMS[problem])
    launch = CONFIGS[config_name]
    out = triton_backend.dcnv3_forward_triton(*tensors, *config, config=launch)
    grads = triton_backend.dcnv3_backward_triton(grad_out, *tensors, *config, config=launch)
    ref, ref_grads = _reference(tensors, grad_out, config)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name, got, want in zip(('input', 'offset', 'mask'), grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5, msg=lambda m: f'grad {name}: {m}')


@pytest.mark.parametrize('vector_channels', [True, False])
def test_bfloat16_with_and_without_vector_channels(vector_channels):
    tensors, grad_out, config = _problem(2, 5, 6, 2, 8, 1, dtype=torch.bfloat16)
    launch = TritonConfig(vector_channels=vector_channels)
    out = triton_backend.dcnv3_forward_triton(*tensors, *config, config=launch)
    grads = triton_backend.dcnv3_backward_triton(grad_out, *tensors, *config, config=launch)
    ref, ref_grads = _reference(tensors, grad_out, config)
    eps = torch.finfo(torch.bfloat16).eps  # float32 accumulation: only the final rounding to bfloat16 is left
    assert out.dtype == torch.bfloat16 and [g.dtype for g in grads] == [torch.bfloat16] * 3
    torch.testing.assert_close(out.float(), ref, rtol=eps, atol=eps * ref.abs().max().item())
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.float(), want, rtol=eps, atol=eps * want.abs().max().item())


@pytest.mark.parametrize('group_channels, vector_channels, even', [
    (8, True, True), (16, True, True), (32, True, True),  # powers of two: the width becomes a constant
    (8, False, False),  # switched off: the run-time width, as before the option existed
    (5, True, False), (12, True, False),  # padded to 8 and 16: the masked path whatever the config
])
def test_constant_width_only_where_the_width_is_the_tile_width(group_channels, vector_channels, even):
    tensors, _, config = _problem(1, 4, 4, 2, group_channels, 1)
    _, _, meta = triton_backend._launch_arguments(tensors[0], tensors[1], *config,
                                                  TritonConfig(vector_channels=vector_channels))
    assert meta['EVEN_C'] is even
    assert meta['BLOCK_C'] >= group_channels


@pytest.mark.parametrize('tile_elements, group_channels, pixels', [(512, 16, 32), (512, 8, 64), (32, 16, 4),
                                                                   (1024, 5, 128)])
def test_tile_elements_set_the_pixels_per_program(tile_elements, group_channels, pixels):
    assert TritonConfig(tile_elements=tile_elements).block_sizes(group_channels)[0] == pixels


def test_the_custom_op_launches_the_default_config():
    tensors, grad_out, config = _problem(1, 5, 6, 2, 8, 1)
    leaves = [t.detach().requires_grad_() for t in tensors]
    out = dcnv3_triton(*leaves, *config)
    grads = torch.autograd.grad(out, leaves, grad_out)
    default = triton_backend.DEFAULT_CONFIG
    assert torch.equal(out, triton_backend.dcnv3_forward_triton(*tensors, *config, config=default))
    for got, want in zip(grads, triton_backend.dcnv3_backward_triton(grad_out, *tensors, *config, config=default)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # atomics may add in another order
