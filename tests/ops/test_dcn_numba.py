"""The numba DCNv3 kernels beyond the conformance tests (test_dcn_conformance.py): coordinates bit for bit,
gradcheck and partial gradients, the custom ops, dispatch, and the fallback to the gather core where numba does not
import."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from uniconvnet.ops import BACKENDS, dcnv3, dcnv3_torch, select_backend
from uniconvnet.ops.dcn import numba_backend as numba_core
from uniconvnet.ops.dcn.geometry import sampling_locations, unnormalize

from dcn_cases import GEOMETRIES, make_inputs
from conftest import REPO

dcnv3_numba = numba_core.dcnv3_numba
REPO_SRC = str(REPO / 'src')
needs_numba = pytest.mark.skipif(importlib.util.find_spec('numba') is None, reason='numba is not installed')


@needs_numba
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('geometry', ['three_groups', 'stride2_odd_group_width_scaled', 'kernel3x5_unpadded'])
def test_sampling_coordinates_are_the_references_bits(geometry, dtype):
    """The kernels' (x, y) of every sample equal PyTorch's location arithmetic plus grid_sample's
    un-normalisation (which test_dcn_gather.py ties to grid_sample itself), bit for bit."""
    g = GEOMETRIES[geometry]
    x, offset, _ = make_inputs(g, dtype)
    kernel, stride, padding, dilation, group, scale = g.args
    assert BACKENDS['numba'].why_not(x) is None
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
def test_auto_dispatch_picks_the_numba_kernels_on_cpu(monkeypatch):
    monkeypatch.setattr('uniconvnet.ops.dcn.DEFAULT_BACKEND', None)
    g = GEOMETRIES['three_groups']
    tensors = make_inputs(g, torch.float32)
    kernel, stride, padding, dilation, group, scale = g.args
    assert select_backend(tensors[0]) == 'numba'
    auto = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale)
    assert torch.equal(auto, dcnv3_numba(*tensors, kernel, stride, padding, dilation, group, scale))
    forced = dcnv3(*tensors, kernel, stride, padding, dilation, group, scale, backend='numba')
    assert torch.equal(forced, auto)


@pytest.mark.slow
def test_without_numba_auto_uses_the_gather_core():
    """With numba made unimportable: import, pick the gather core quietly, refuse numba by name, run a model."""
    script = textwrap.dedent('''
        import sys
        sys.modules['numba'] = None  # any 'import numba' now raises ImportError
        import torch, timm, uniconvnet
        from uniconvnet.ops import dcnv3, select_backend
        x = torch.randn(1, 4, 5, 8)
        assert select_backend(x) == 'gather'
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
