"""Backend choice of ``dcnv3``: argument (the layer's and model's option), the user's default from the
environment variable, auto, fallback with one log line; the registry it reads, and the deprecated names."""
import logging
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import timm

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, set_dcn_backend, using_dcn_backend
from uniconvnet.ops import BACKEND_ENV_VAR, BACKENDS, dcn, dcnv3, dcnv3_gather, dcnv3_numba, dcnv3_torch, select_backend

from conftest import REPO

REPO_SRC = str(REPO / 'src')


@pytest.fixture(autouse=True)
def _fresh_dispatch_state(monkeypatch):
    monkeypatch.setattr(dcn, 'DEFAULT_BACKEND', None)
    monkeypatch.setattr(dcn, '_reported_fallbacks', set())


def _set_user_default(monkeypatch, value):
    """What UNICONVNET_DCN_BACKEND=value gives: it is read once, when uniconvnet is imported."""
    monkeypatch.setattr(dcn, 'DEFAULT_BACKEND', value.strip().lower() or None)


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


@pytest.mark.slow
def test_environment_variable_is_the_default_and_never_written():
    script = textwrap.dedent('''
        import os, torch, timm, uniconvnet
        from uniconvnet.layers import using_dcn_backend
        from uniconvnet.ops import select_backend
        assert select_backend(torch.zeros(1)) == 'torch'             # the user's default from the environment
        assert select_backend(torch.zeros(1), 'gather') == 'gather'  # an explicit choice wins
        model = timm.create_model('uniconvnet_a', num_classes=3)
        with using_dcn_backend(model, 'gather'):
            assert os.environ['UNICONVNET_DCN_BACKEND'] == ' Torch'  # library code never writes it
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env[BACKEND_ENV_VAR] = ' Torch'
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_unknown_backend_names_its_source(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown DCNv3 backend 'cuda' in the backend argument; "
                                         r"choose one of: auto, torch, numba, gather, triton, export$"):
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
    assert model.set_dcn_backend('Gather') is model and _backends(model) == {'gather'}
    with using_dcn_backend(model, 'torch'):
        assert _backends(model) == {'torch'}
    assert _backends(model) == {'gather'}  # each layer's own setting is back
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
        layer.backend = 'gather'
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
    with caplog.at_level(logging.WARNING, logger='uniconvnet.ops.dcn'):
        assert select_backend(x, 'auto') == 'torch'  # no backend of choice for meta tensors: the core, silently
    assert not caplog.records


def test_forced_backend_that_cannot_run_raises():
    x = torch.zeros(1, 2, 2, 4, device='meta')
    with pytest.raises(ValueError, match=r"backend 'triton' cannot run here: the triton backend takes cuda tensors, "
                                         r"got meta tensors\. Use backend=\"torch\" or \"auto\"$"):
        select_backend(x, 'triton')


def test_user_default_fallback_logs_one_line_once(monkeypatch, caplog):
    _set_user_default(monkeypatch, 'triton')
    x = torch.randn(1, 3, 4, 8, device='meta')
    offset, mask = torch.zeros(1, 3, 4, 36, device='meta'), torch.zeros(1, 3, 4, 18, device='meta')
    with caplog.at_level(logging.WARNING, logger='uniconvnet.ops.dcn'):
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
    core = BACKENDS[select_backend(x)].forward
    assert core in (dcnv3_numba, dcnv3_gather)
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


@pytest.mark.slow
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
        assert 'uniconvnet.ops.dcn.triton_kernels' not in sys.modules
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop(BACKEND_ENV_VAR, None)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
    fallback_lines = [line for line in result.stderr.splitlines() if 'falls back from triton' in line]
    assert len(fallback_lines) == 1 and 'Triton is not installed' in fallback_lines[0]


@pytest.fixture
def fresh_deprecations(monkeypatch):
    """Deprecation warnings come once per process: start this test with none given yet."""
    from uniconvnet import _deprecation as deprecation
    monkeypatch.setattr(deprecation, '_warned', set())


def test_cpu_is_a_deprecated_name_of_gather(fresh_deprecations):
    x, offset, mask = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 36), torch.randn(1, 4, 5, 18)
    with pytest.warns(FutureWarning, match=r"^the DCNv3 backend name 'cpu' is deprecated: use 'gather'$"):
        out = dcnv3(x, offset, mask, group=2, backend='cpu')
    assert torch.equal(out, dcnv3(x, offset, mask, group=2, backend='gather'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # once per process: no second warning
        assert select_backend(x, ' CPU ') == 'gather'
        model = timm.create_model('uniconvnet_a', num_classes=3, dcn_backend='cpu')
    assert _backends(model) == {'gather'}  # layers store the new name


def test_old_function_and_context_manager_names_warn_once(fresh_deprecations):
    import uniconvnet.ops
    from uniconvnet.layers import dcn_backend
    with pytest.warns(FutureWarning,
                      match=r'uniconvnet\.ops\.dcnv3_cpu is deprecated: use uniconvnet\.ops\.dcnv3_gather'):
        assert uniconvnet.ops.dcnv3_cpu is dcnv3_gather
    model = timm.create_model('uniconvnet_a', num_classes=3, dcn_backend='torch')
    with pytest.warns(FutureWarning, match=r'uniconvnet\.layers\.dcn_backend is deprecated: '
                                           r'use uniconvnet\.layers\.using_dcn_backend'):
        with dcn_backend(model, 'gather'):
            assert _backends(model) == {'gather'}
    assert _backends(model) == {'torch'}
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with dcn_backend(model, 'numba'):
            assert _backends(model) == {'numba'}


@pytest.fixture
def toy_backend():
    """A backend registered for one test: the reference core under another name, for meta tensors only."""
    from uniconvnet.ops.dcn import registry
    backend = dcn.register(dcn.Backend(name='toy', forward=dcnv3_torch, description='the reference, renamed',
                                       devices=('meta',), auto_devices=('meta',), aliases=('old-toy',)))
    yield backend
    del registry._registry['toy'], registry._aliases['old-toy']


def test_a_registered_backend_is_a_choice_everywhere(toy_backend):
    """One registration makes a backend a choice of the dispatcher, auto, the layers, the models and the error
    messages and listings, with no list to edit."""
    assert dcn.backend_names()[-1] == 'toy' and BACKENDS['toy'] is toy_backend
    assert dcn.auto_order('meta') == ('toy',)
    x = torch.zeros(1, 4, 5, 8, device='meta')
    assert select_backend(x) == 'toy'
    assert select_backend(torch.zeros(1, 4, 5, 8), 'auto') != 'toy'  # auto tries it on meta tensors only
    assert DCNv3(8, group=2, backend='toy').backend == 'toy'
    assert timm.create_model('uniconvnet_a', num_classes=3, dcn_backend='toy').stages[0].blocks[0].dcn.backend == 'toy'
    assert 'toy ' in dcn.describe_backends() and 'the reference, renamed' in dcn.describe_backends()
    with pytest.raises(ValueError, match=r'choose one of: auto, torch, numba, gather, triton, export, toy$'):
        select_backend(x, 'toys')
    with pytest.raises(ValueError, match=r"backend 'toy' cannot run here: the toy backend takes meta tensors, "
                                         r"got cpu tensors"):
        select_backend(torch.zeros(1), 'toy')


def test_register_refuses_taken_and_reserved_names(toy_backend):
    for name in ('toy', 'old-toy', 'auto', 'Numba'):
        with pytest.raises(ValueError, match=f'DCNv3 backend name {name!r}'):
            dcn.register(dcn.Backend(name=name, forward=dcnv3_torch, description=''))
    with pytest.raises(ValueError, match="'auto' is a choice among backends"):
        dcn.get_backend('auto')
    assert dcn.get_backend('NUMBA') is BACKENDS['numba']


def test_backends_declare_what_they_take():
    for backend in BACKENDS.values():
        assert backend.description and backend.name in dcn.backend_names()
    assert BACKENDS['numba'].why_not(torch.zeros(1, dtype=torch.int32)) == \
        'the numba backend takes float32, float64, float16, bfloat16 tensors, got int32'
    assert BACKENDS['gather'].why_not(torch.zeros(1, device='meta')) == \
        'the gather backend takes cpu tensors, got meta tensors'
    assert BACKENDS['torch'].why_not(torch.zeros(1, device='meta', dtype=torch.int64)) is None
