"""No side effects on the host's threads: every CPU backend, forward and backward, and a whole model leave
PyTorch's, numba's and OpenMP's thread settings as the caller set them.

Each check runs in a fresh process: numba starts its threading layer once per process, on first use, and that
start is what used to change PyTorch's thread count (numba's OpenMP layer sets the calling thread's OpenMP
thread count, which is PyTorch's intra-op count).
"""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # a child process per check

REPO_SRC = str(REPO / 'src')

SCRIPT = textwrap.dedent('''
    import ctypes, sys
    import torch, timm, uniconvnet
    from uniconvnet.ops import BACKENDS, dcnv3

    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    try:  # the OpenMP runtime PyTorch uses (the process's global symbols), where reachable
        openmp = ctypes.CDLL(None)
        openmp.omp_get_max_threads, openmp.omp_get_max_active_levels
    except (AttributeError, OSError, TypeError):
        openmp = None

    def settings():
        found = {'torch threads': torch.get_num_threads(), 'torch inter-op threads': torch.get_num_interop_threads()}
        if openmp is not None:
            found.update({'OpenMP max threads': openmp.omp_get_max_threads(),
                          'OpenMP max active levels': openmp.omp_get_max_active_levels()})
        if 'numba' in sys.modules:  # reading numba's count starts its threading layer: only once it is in use
            found['numba threads'] = sys.modules['numba'].get_num_threads()
        return found

    def check(expected, what):
        found = settings()
        changed = {k: (v, found[k]) for k, v in expected.items() if found.get(k, v) != v}
        assert not changed, f'{what} changed {changed} (as found, after)'

    def forward_backward(name):
        x = torch.randn(2, 6, 7, 16, requires_grad=True)
        offset = (torch.randn(2, 6, 7, 36) * 2).requires_grad_()
        mask = torch.randn(2, 6, 7, 18, requires_grad=True)
        dcnv3(x, offset, mask, group=2, backend=name).square().sum().backward()

    cpu_backends = [name for name, b in BACKENDS.items() if b.devices is None or 'cpu' in b.devices]
    assert 'numba' in cpu_backends and 'gather' in cpu_backends, cpu_backends
    for round in range(2):  # the first round starts numba, the second runs warm
        for name in cpu_backends:
            expected = settings()
            forward_backward(name)
            check(expected, f'{name} forward and backward')
        expected = settings()
        model = timm.create_model('uniconvnet_a', num_classes=3)
        model(torch.randn(1, 3, 32, 32)).sum().backward()
        check(expected, 'a UniConvNet-A forward and backward')
    assert settings()['torch threads'] == threads

    # numba's own count, set by the caller to something else than PyTorch's, stays too
    import numba
    numba.set_num_threads(1)
    expected = settings()
    forward_backward('numba')
    check(expected, 'numba forward and backward after numba.set_num_threads(1)')
    print('ok', sorted(settings()))
''')


@pytest.mark.parametrize('threads', [1, 3])
def test_cpu_backends_leave_thread_settings_as_found(threads):
    pytest.importorskip('numba')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('UNICONVNET_DCN_BACKEND', None)
    result = subprocess.run([sys.executable, '-c', SCRIPT, str(threads)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith('ok'), result.stdout
    # on Linux with PyTorch's OpenMP, every setting was compared
    if sys.platform.startswith('linux'):
        assert 'OpenMP max threads' in result.stdout and 'numba threads' in result.stdout
