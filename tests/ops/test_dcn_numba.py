"""The numba DCNv3 kernels against the PyTorch core: forward, all gradients, coordinates, dtypes, the custom ops,
dispatch, and the fallback to the gather core where numba does not import."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from uniconvnet.ops import dcnv3, dcnv3_output_size, dcnv3_torch, select_backend
from uniconvnet.ops import dcnv3_numba as numba_module  # noqa: F401  (the function; the module is below)
from uniconvnet.ops.dcnv3_cpu import unnormalize
from uniconvnet.ops.dcnv3_torch import sampling_locations

numba_core = sys.modules['uniconvnet.ops.dcnv3_numba']
dcnv3_numba = numba_core.dcnv3_numba
REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')
needs_numba = pytest.mark.skipif(importlib.util.find_spec('numba') is None, reason='numba is not installed')

# (n, h, w, group, group_channels, kernel (h, w), stride, pad, dilation, offset_scale, offset spread in pixels)
CASES = [
    (2, 5, 7, 3, 4, (3, 3), 1, 1, 1, 1.0, 3.0),
    (1, 9, 6, 2, 16, (3, 3), 1, 1, 1, 1.0, 20.0),  # most samples far outside the image
    (2, 7, 8, 2, 3, (3, 3), 2, 1, 1, 0.7, 5.0),    # stride 2, odd group width, offset scale
    (1, 6, 5, 1, 5, (5, 5), 1, 2, 2, 1.3, 2.0),    # 5x5 kernel, dilation 2
    (1, 6, 9, 4, 8, (3, 5), 1, 0, 1, 1.0, 1.5),    # 3x5 kernel, no padding
    (1, 8, 8, 4, 1, (3, 3), 2, 0, 1, 2.0, 1.0),    # one channel per group, stride 2 unpadded
    (1, 1, 1, 4, 2, (3, 3), 1, 1, 1, 1.0, 1.0),    # a single pixel
]


def _inputs(case, dtype, huge=False):
    n, h, w, g, gc, k, s, p, d, scale, spread = case
    out_h, out_w = dcnv3_output_size(h, w, k, (s, s), (p, p), (d, d))
    generator = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(n, h, w, g * gc, generator=generator, dtype=dtype)
    offset = torch.randn(n, out_h, out_w, g * k[0] * k[1] * 2, generator=generator, dtype=dtype) * spread
    if huge:  # samples sent far beyond any integer range, both ways (finite: infinite ones give NaN, as in the
        # reference): they read zeros
        offset.view(-1)[::7] = 1e30
        offset.view(-1)[3::11] = -1e30
    mask = torch.randn(n, out_h, out_w, g * k[0] * k[1], generator=generator, dtype=dtype)
    return (x, offset, mask), (k, (s, s), (p, p), (d, d), g, scale)


def _forward_and_grads(core, tensors, args, grad_out=None):
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = core(*leaves, *args)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return out, torch.autograd.grad(out, leaves, grad_out), grad_out


@needs_numba
@pytest.mark.parametrize('huge', [False, True])
@pytest.mark.parametrize('case', CASES)
def test_forward_and_gradients_match_the_torch_core(case, huge):
    tensors, args = _inputs(case, torch.float32, huge)
    ref, ref_grads, grad_out = _forward_and_grads(dcnv3_torch, tensors, args)
    out, grads, _ = _forward_and_grads(dcnv3_numba, tensors, args, grad_out)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name, g, r in zip(('input', 'offset', 'mask'), grads, ref_grads):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-5, atol=4e-5, msg=lambda m: f'{name}: {m}')


@needs_numba
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', [CASES[0], CASES[2], CASES[4]])
def test_sampling_coordinates_are_the_references_bits(case, dtype):
    """The kernels' (x, y) of every sample equal PyTorch's location arithmetic plus grid_sample's
    un-normalisation (which tests/test_fast_path.py ties to grid_sample itself), bit for bit."""
    tensors, (kernel, stride, padding, dilation, group, scale) = _inputs(case, dtype)
    x, offset, _ = tensors
    assert numba_core.numba_unavailable_reason(x) is None
    kernels = numba_core._kernel_module
    out_h, out_w = offset.shape[1:3]
    padded_h, padded_w = x.shape[1] + 2 * padding[0], x.shape[2] + 2 * padding[1]
    loc_x, loc_y = sampling_locations(offset, padded_h, padded_w, kernel, stride, dilation, group, scale)
    base_x, base_y = numba_core._grid(out_h, out_w, padded_h, padded_w, kernel, stride, dilation, group, scale,
                                      dtype)
    consts = kernels.constants(scale, padded_h, padded_w, base_x.dtype)
    xs, ys = kernels.sampling_coordinates(offset.reshape(-1).numpy(), base_x, base_y, consts, out_h, out_w, group,
                                          kernel[0] * kernel[1], numba_core._fused_rounding)
    assert np.array_equal(xs, unnormalize(loc_x, padded_w).reshape(-1).numpy())
    assert np.array_equal(ys, unnormalize(loc_y, padded_h).reshape(-1).numpy())


@needs_numba
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_inputs_are_sampled_in_float32(dtype):
    tensors, args = _inputs(CASES[2], torch.float32)
    low = [t.to(dtype) for t in tensors]
    out, grads, grad_out = _forward_and_grads(dcnv3_numba, low, args)
    ref, ref_grads, _ = _forward_and_grads(dcnv3_torch, low, args, grad_out)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    # both round one float32 result to the low precision: at most one unit in the last place apart
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-3
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g.float(), r.float(), rtol=4 * tol, atol=4 * tol)


@needs_numba
def test_gradcheck_float64_and_partial_gradients():
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    # away from integer sample positions, where bilinear sampling is not differentiable
    offset = (torch.rand(1, 4, 5, 36, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.randn(1, 4, 5, 18, dtype=torch.float64, requires_grad=True)
    core = lambda a, b, c: dcnv3_numba(a, b, c, (3, 3), (1, 1), (1, 1), (1, 1), 2, 0.9)  # noqa: E731
    assert torch.autograd.gradcheck(core, (x, offset, mask))
    # one gradient asked for: the op returns just that one, equal to the reference's
    for wanted in range(3):
        leaves = [t.detach().requires_grad_(i == wanted) for i, t in enumerate((x, offset, mask))]
        grad, = torch.autograd.grad(core(*leaves).sum(), leaves[wanted])
        ref, = torch.autograd.grad(dcnv3_torch(*leaves, (3, 3), (1, 1), (1, 1), (1, 1), 2, 0.9).sum(),
                                   leaves[wanted])
        torch.testing.assert_close(grad, ref)


@needs_numba
def test_custom_ops_pass_opcheck():
    tensors, (kernel, stride, padding, dilation, group, scale) = _inputs(CASES[2], torch.float32)
    x, offset, mask = (t.requires_grad_() for t in tensors)
    geometry = (list(kernel), list(stride), list(padding), list(dilation), group, scale)
    torch.library.opcheck(numba_core._forward_op, (x, offset, mask, *geometry))
    grad_out = torch.randn(x.shape[0], offset.shape[1], offset.shape[2], x.shape[3])
    torch.library.opcheck(numba_core._backward_op,
                          (grad_out, x.detach(), offset.detach(), mask.detach(), *geometry, [True, False, True]))


@needs_numba
def test_auto_dispatch_picks_the_numba_kernels_on_cpu(monkeypatch):
    monkeypatch.delenv('UNICONVNET_DCN_BACKEND', raising=False)
    tensors, (kernel, stride, padding, dilation, group, scale) = _inputs(CASES[0], torch.float32)
    assert select_backend(tensors[0]) == 'numba'
    auto = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale)
    assert torch.equal(auto, dcnv3_numba(*tensors, kernel, stride, padding, dilation, group, scale))
    forced = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='numba')
    assert torch.equal(forced, auto)


def test_without_numba_auto_uses_the_gather_core():
    """With numba made unimportable: import, pick the gather core quietly, refuse numba by name, run a model."""
    script = textwrap.dedent('''
        import sys
        sys.modules['numba'] = None  # any 'import numba' now raises ImportError
        import torch, timm, uniconvnet
        from uniconvnet.ops import dcnv3, select_backend
        x = torch.randn(1, 4, 5, 8)
        assert select_backend(x) == 'cpu'
        try:
            select_backend(x, 'numba')
            raise SystemExit('numba by name should raise without numba')
        except ValueError as error:
            assert 'numba does not import' in str(error), error
        model = timm.create_model('uniconvnet_a', num_classes=3).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('UNICONVNET_DCN_BACKEND', None)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
    assert 'falls back' not in result.stderr  # a missing optional extra is not a warning
