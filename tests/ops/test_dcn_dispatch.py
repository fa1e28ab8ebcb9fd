"""Backend choice of ``dcnv3``: argument (the layer's and model's option), the user's default from the
environment variable, auto, fallback with one log line."""
import importlib
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import timm

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, dcn_backend, set_dcn_backend
from uniconvnet.ops import BACKEND_ENV_VAR, BACKENDS, dcnv3, dcnv3_cpu, dcnv3_numba, dcnv3_torch, select_backend

# the package attribute 'dcnv3' is the function; the module holds the dispatch state
dcnv3_module = importlib.import_module('uniconvnet.ops.dcnv3')
REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')


@pytest.fixture(autouse=True)
def _fresh_dispatch_state(monkeypatch):
    monkeypatch.setattr(dcnv3_module, 'DEFAULT_BACKEND', None)
    monkeypatch.setattr(dcnv3_module, '_reported_fallbacks', set())


def _set_user_default(monkeypatch, value):
    """What UNICONVNET_DCN_BACKEND=value gives: it is read once, when uniconvnet is imported."""
    monkeypatch.setattr(dcnv3_module, 'DEFAULT_BACKEND', value.strip().lower() or None)


def _fake_cuda_problem():
    """CUDA tensors without a GPU: fake tensors carry a device and shapes but no data."""
    mode = FakeTensorMode()
    with mode:
        x = torch.empty(2, 5, 6, 16, device='cuda')
        offset = torch.empty(2, 5, 6, 36, device='cuda')
        mask = torch.empty(2, 5, 6, 18, device='cuda')
    return mode, x, offset, mask


def test_auto_uses_the_numba_kernels_on_cpu():
    pytest.importorskip('numba')
    assert select_backend(torch.zeros(1)) == 'numba'
    assert select_backend(torch.zeros(1), 'auto') == 'numba'
    assert select_backend(torch.zeros(1), 'torch') == 'torch'
    assert select_backend(torch.zeros(1, dtype=torch.int32)) == 'cpu'  # not a numba dtype: the gather core


def test_auto_uses_triton_for_cuda_tensors():
    mode, x, offset, mask = _fake_cuda_problem()
    assert select_backend(x) == 'triton'
    with mode:  # the custom op's fake implementation gives the output's shape, dtype and device
        out = dcnv3(x, offset, mask, group=2)
    assert out.shape == (2, 5, 6, 16) and out.device.type == 'cuda' and out.dtype == torch.float32
    # float64 is not a Triton dtype: auto falls back to the core
    with mode:
        assert select_backend(x.double()) == 'torch'


def test_argument_beats_user_default(monkeypatch):
    mode, x, _, _ = _fake_cuda_problem()
    _set_user_default(monkeypatch, 'torch')
    assert select_backend(x) == 'torch'
    assert select_backend(x, 'triton') == 'triton'
    assert select_backend(x, ' Triton ') == 'triton'  # case and spaces do not matter
    _set_user_default(monkeypatch, 'triton')
    assert select_backend(x) == 'triton'
    assert select_backend(x, 'torch') == 'torch'


def test_environment_variable_is_the_default_and_never_written():
    script = textwrap.dedent('''
        import os, torch, timm, uniconvnet
        from uniconvnet.layers import dcn_backend
        from uniconvnet.ops import select_backend
        assert select_backend(torch.zeros(1)) == 'torch'           # the user's default from the environment
        assert select_backend(torch.zeros(1), 'cpu') == 'cpu'      # an explicit choice wins
        model = timm.create_model('uniconvnet_a', num_classes=3)
        with dcn_backend(model, 'cpu'):
            assert os.environ['UNICONVNET_DCN_BACKEND'] == ' Torch'  # library code never writes it
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env[BACKEND_ENV_VAR] = ' Torch'
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_unknown_backend_names_its_source(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown DCNv3 backend 'cuda' in the backend argument.*auto, torch, cpu, numba, triton"):
        select_backend(torch.zeros(1), 'cuda')
    with pytest.raises(ValueError, match=r"unknown DCNv3 backend 'gpu'.*choose one of: auto, torch"):
        DCNv3(16, group=2, backend='gpu')
    with pytest.raises(ValueError, match=r"unknown DCNv3 backend 'fast'"):
        timm.create_model('uniconvnet_a', dcn_backend='fast')
    _set_user_default(monkeypatch, 'fast')
    with pytest.raises(ValueError, match=f"'fast' in the {BACKEND_ENV_VAR} environment variable"):
        dcnv3(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 18), torch.zeros(1, 2, 2, 9))


def _backends(model):
    return {m.backend for m in model.modules() if isinstance(m, DCNv3)}


def test_backend_is_an_option_of_the_layer_and_the_model():
    model = timm.create_model('uniconvnet_a', num_classes=3, dcn_backend='torch')
    assert _backends(model) == {'torch'}
    assert model.set_dcn_backend('CPU') is model and _backends(model) == {'cpu'}
    with dcn_backend(model, 'torch'):
        assert _backends(model) == {'torch'}
    assert _backends(model) == {'cpu'}  # each layer's own setting is back
    set_dcn_backend(model, None)
    assert _backends(model) == {None}
    assert "backend='torch'" in repr(DCNv3(16, group=2, backend='torch'))


def test_layer_backend_decides_what_runs():
    layer = DCNv3(16, group=2, backend='torch').eval()
    with torch.no_grad():
        layer.offset.weight.normal_()
        layer.mask.weight.normal_()
        x = torch.randn(1, 5, 6, 16)
        reference = layer(x)
        layer.backend = 'cpu'
        gather = layer(x)
    value = layer.input_proj(x)
    query = layer.dw_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    args = ((3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0)
    expected = layer.output_proj(dcnv3_torch(value, layer.offset(query), layer.mask(query), *args))
    assert torch.equal(reference, expected)
    assert not torch.equal(gather, reference)  # another summation order: another rounding
    torch.testing.assert_close(gather, reference, rtol=0, atol=1e-5)


def test_explicit_auto_falls_back_instead_of_raising(caplog):
    x = torch.randn(1, 3, 4, 8, device='meta')
    with caplog.at_level(logging.WARNING, logger='uniconvnet.ops.dcnv3'):
        assert select_backend(x, 'auto') == 'torch'  # no backend of choice for meta tensors: the core, silently
    assert not caplog.records


def test_forced_backend_that_cannot_run_raises():
    x = torch.zeros(1, 2, 2, 4, device='meta')
    with pytest.raises(ValueError, match=r"backend 'triton' cannot run here: .*need CUDA tensors.*backend=\"torch\""):
        select_backend(x, 'triton')


def test_user_default_fallback_logs_one_line_once(monkeypatch, caplog):
    _set_user_default(monkeypatch, 'triton')
    x = torch.randn(1, 3, 4, 8, device='meta')
    offset, mask = torch.zeros(1, 3, 4, 36, device='meta'), torch.zeros(1, 3, 4, 18, device='meta')
    with caplog.at_level(logging.WARNING, logger='uniconvnet.ops.dcnv3'):
        for _ in range(3):
            assert select_backend(x) == 'torch'
            assert dcnv3(x, offset, mask, group=2).shape == x.shape
    assert len(caplog.records) == 1
    assert 'falls back from triton to the PyTorch core' in caplog.records[0].getMessage()


def test_torch_backend_is_the_core_bit_for_bit():
    x, offset, mask = torch.randn(2, 5, 7, 12), torch.randn(2, 5, 7, 54), torch.randn(2, 5, 7, 27)
    ref = dcnv3_torch(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1), 3, 1.0)
    assert torch.equal(dcnv3(x, offset, mask, group=3, backend='torch'), ref)
    # auto on the CPU is the numba kernels (the gather core without numba): the same samples, summed in
    # another order
    auto = dcnv3(x, offset, mask, group=3)
    core = BACKENDS[select_backend(x)][0]
    assert core in (dcnv3_numba, dcnv3_cpu)
    assert torch.equal(auto, core(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1), 3, 1.0))
    torch.testing.assert_close(auto, ref, rtol=0, atol=1e-5)


def test_torchscript_uses_the_core_whatever_the_backend():
    layer = DCNv3(16, group=2, backend='triton').eval()  # ignored by TorchScript, which has only the core
    with torch.no_grad():  # non-zero offsets and mask: the zero init would make the output trivial
        layer.offset.weight.normal_()
        layer.mask.weight.normal_()
    scripted = torch.jit.script(layer)
    x = torch.randn(1, 5, 6, 16)
    with torch.no_grad():
        layer.backend = 'torch'
        ref = layer(x)  # the PyTorch core
        torch.testing.assert_close(scripted(x), ref, rtol=0, atol=0)


def test_import_and_cpu_use_need_no_triton():
    """With Triton made unimportable: import, run on the CPU, and fall back (one line) for CUDA tensors."""
    script = textwrap.dedent('''
        import sys
        sys.modules['triton'] = None  # any 'import triton' now raises ImportError
        import torch, timm, uniconvnet
        from torch._subclasses.fake_tensor import FakeTensorMode
        from uniconvnet.ops import select_backend
        model = timm.create_model('uniconvnet_a', num_classes=3).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
        with FakeTensorMode():
            x = torch.empty(1, 4, 4, 8, device='cuda')
            assert select_backend(x) == 'torch'
            assert select_backend(x) == 'torch'
        assert 'uniconvnet.ops.dcnv3_triton_kernels' not in sys.modules
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop(BACKEND_ENV_VAR, None)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
    fallback_lines = [line for line in result.stderr.splitlines() if 'falls back from triton' in line]
    assert len(fallback_lines) == 1 and 'Triton is not installed' in fallback_lines[0]
