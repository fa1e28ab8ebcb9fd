"""The Triton DCNv3 kernels, run on the CPU by Triton's interpreter, beyond the conformance tests
(test_dcn_conformance.py: forward and gradients against the PyTorch core over the shared geometry table).

conftest.py switches the interpreter on (TRITON_INTERPRET=1) before anything imports triton.language.
"""
import importlib
import os
import subprocess
import sys

import pytest
import torch

from uniconvnet.layers import DCNv3
from uniconvnet.ops import dcnv3_output_size, dcnv3_torch, dcnv3_triton

from conftest import REPO


def _fractional_offsets(shape, dtype, spread=4):
    """Offsets in pixels: a whole number up to ``spread`` plus a quarter, a half or three quarters.

    Samples never land on integer positions, where bilinear sampling has a kink and two correct
    implementations may take different one-sided derivatives; the fractions are exact in every dtype.
    """
    whole = torch.randint(-spread, spread + 1, shape)
    fraction = torch.tensor([0.25, 0.5, 0.75])[torch.randint(0, 3, shape)]
    return (whole + fraction).to(dtype)


def _random_problem(n, h, w, group, group_channels, kernel, stride, pad, dilation, dtype=torch.float32):
    out_h, out_w = dcnv3_output_size(h, w, kernel, stride, pad, dilation)
    points = kernel[0] * kernel[1]
    x = torch.randn(n, h, w, group * group_channels).to(dtype)
    offset = _fractional_offsets((n, out_h, out_w, group * points * 2), dtype)
    mask = torch.randn(n, out_h, out_w, group * points).to(dtype)
    return x, offset, mask


def _forward_and_grads(core, tensors, grad_out, config):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = core(*leaves, *config)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out, grads


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_triton_low_precision_accumulates_in_float32(dtype):
    kernel, stride, pad, dilation, group, scale = (3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0
    tensors = _random_problem(2, 6, 5, group, 8, kernel, stride, pad, dilation, dtype=dtype)
    config = (kernel, stride, pad, dilation, group, scale)
    grad_out = torch.randn(2, 6, 5, 16).to(dtype)
    out, grads = _forward_and_grads(dcnv3_triton, tensors, grad_out, config)
    # reference: the PyTorch core in float32 on the same (already rounded) values
    ref, ref_grads = _forward_and_grads(dcnv3_torch, [t.float() for t in tensors], grad_out.float(), config)
    assert out.dtype == dtype and [g.dtype for g in grads] == [dtype] * 3
    # the only error left is the final conversion to the low-precision dtype: half a unit in the last place on
    # a GPU (round to nearest), up to one here (the interpreter truncates float32 to bfloat16)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref, rtol=eps, atol=eps * ref.abs().max().item())
    for name, got, want in zip(('input', 'offset', 'mask'), grads, ref_grads):
        torch.testing.assert_close(got.float(), want, rtol=eps, atol=eps * want.abs().max().item(),
                                   msg=lambda m: f'grad {name}: {m}')


def test_int64_indexing_gives_the_same_numbers(monkeypatch):
    # tensors past int32 range switch the kernels to int64 indices; force the switch on a small problem
    triton_module = importlib.import_module('uniconvnet.ops.dcn.triton_backend')
    kernel, stride, pad, dilation, group = (3, 3), (1, 1), (1, 1), (1, 1), 2
    tensors = _random_problem(1, 5, 6, group, 4, kernel, stride, pad, dilation)
    config = (kernel, stride, pad, dilation, group, 1.0)
    grad_out = torch.randn(1, 5, 6, 8)
    narrow, narrow_grads = _forward_and_grads(dcnv3_triton, tensors, grad_out, config)
    monkeypatch.setattr(triton_module, '_INT32_INDEX_LIMIT', 0)
    wide, wide_grads = _forward_and_grads(dcnv3_triton, tensors, grad_out, config)
    torch.testing.assert_close(wide, narrow, rtol=0, atol=0)
    for got, want in zip(wide_grads, narrow_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # atomics may add in another order


def test_samples_far_outside_give_zeros():
    x = torch.randn(1, 4, 5, 8)
    offset = torch.full((1, 4, 5, 36), 1e4)
    offset[..., 1::2] = -3e38  # near the float32 limit: must not overflow the index arithmetic
    mask = torch.randn(1, 4, 5, 18)
    config = ((3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0)
    grad_out = torch.randn(1, 4, 5, 8)
    out, grads = _forward_and_grads(dcnv3_triton, (x, offset, mask), grad_out, config)
    assert torch.equal(out, torch.zeros_like(out))
    for grad in grads:
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize('op', ['dcnv3_sample', 'dcnv3_sample_backward'])
def test_opcheck(op):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch with dynamic shapes."""
    kernel, stride, pad, dilation, group = [3, 3], [1, 1], [1, 1], [1, 1], 2
    x, offset, mask = _random_problem(1, 4, 5, group, 4, kernel, stride, pad, dilation)
    if op == 'dcnv3_sample':
        args = (x.requires_grad_(), offset.requires_grad_(), mask.requires_grad_())
        args = args + (kernel, stride, pad, dilation, group, 1.0)
    else:  # the saved inputs, no residuals, and which gradients are asked for
        args = (torch.randn(1, 4, 5, 8), x, offset, mask, [], kernel, stride, pad, dilation, group, 1.0,
                [True, True, True])
    result = torch.library.opcheck(getattr(torch.ops.uniconvnet, op).default, args)
    assert set(result.values()) == {'SUCCESS'}, result


def _layer_with_offsets(backend):
    layer = DCNv3(16, group=2, backend=backend)
    with torch.no_grad():  # non-zero offsets and mask so that sampling is really deformable
        layer.offset.weight.normal_(std=0.5)
        layer.mask.weight.normal_(std=0.5)
    return layer


def test_export_keeps_the_custom_op():
    layer = _layer_with_offsets(backend='triton').eval()
    x = torch.randn(1, 5, 6, 16)
    program = torch.export.export(layer, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert 'uniconvnet.dcnv3_sample.default' in targets
    assert 'aten.grid_sampler.default' not in targets  # the whole core is one node
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), layer(x))
        layer.backend = 'torch'
        torch.testing.assert_close(program.module()(x), layer(x), rtol=1e-5, atol=1e-5)


def test_compile_trains_through_the_custom_op():
    torch._dynamo.reset()
    layer = _layer_with_offsets(backend='triton')
    x = torch.randn(1, 5, 6, 16, requires_grad=True)
    # aot_eager: Dynamo and AOTAutograd (the fake and autograd registrations), without Inductor's C++ build
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), [x] + list(layer.parameters()))
    layer.backend = 'torch'
    ref = layer(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x] + list(layer.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_kernels_compile_for_a_gpu_without_one(tmp_path):
    """The interpreter runs the kernels as Python; this lowers them to an sm_90 cubin (Triton's LLVM and ptxas)."""
    script = str(REPO / 'benchmarks' / 'dcnv3_triton_registers.py')
    env = dict(os.environ, PYTHONPATH=str(REPO / 'src'), TRITON_CACHE_DIR=str(tmp_path))
    env.pop('TRITON_INTERPRET')  # compiled kernels, in a fresh process
    command = [sys.executable, script, '--arch', '90', '--group-channels', '16', '--dtypes', 'bfloat16']
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(('| forward', '| backward'))]
    assert len(rows) == 2
    for row in rows:
        registers = int(row.split('|')[5])
        assert 0 < registers <= 255
