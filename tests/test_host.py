"""uniconvnet.host: the caller's thread counts and environment survive what we run, ultralytics included (it
writes OMP_NUM_THREADS and other variables when imported and sets PyTorch's thread count when it predicts)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO

from uniconvnet.host import host_settings, kept_host_settings, torch_threads

REPO_SRC = str(REPO / 'src')


def test_kept_host_settings_undoes_threads_and_environment(monkeypatch):
    monkeypatch.setenv('UNICONVNET_TEST_KEPT', 'before')
    monkeypatch.delenv('UNICONVNET_TEST_NEW', raising=False)
    threads = torch.get_num_threads()
    with kept_host_settings():
        torch.set_num_threads(threads + 1)
        os.environ['UNICONVNET_TEST_KEPT'] = 'changed'
        os.environ['UNICONVNET_TEST_NEW'] = 'added'
    assert torch.get_num_threads() == threads
    assert os.environ['UNICONVNET_TEST_KEPT'] == 'before' and 'UNICONVNET_TEST_NEW' not in os.environ


def test_torch_threads_refuses_zero_and_restores():
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match='--threads must be at least 1, got 0'):
        with torch_threads(0):
            pass
    with torch_threads(1) as used:
        assert used == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == threads


YOLO_SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np, torch
    from PIL import Image
    threads, folder = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    import uniconvnet.host as host
    before = host.host_settings()
    from uniconvnet.integrations import ultralytics as uyolo
    after_import = host.host_settings()
    from ultralytics import YOLO  # the user's own calls of ultralytics may change what they like: not checked
    uyolo.register()
    model = YOLO(uyolo.model_yaml('yolo11n-uniconvnet-a.yaml'))
    model.save(os.path.join(folder, 'model.pt'))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(os.path.join(folder, 'image.png'))
    before_predict = host.host_settings()
    uyolo.predict(os.path.join(folder, 'image.png'), os.path.join(folder, 'model.pt'), out=os.path.join(folder, 'out'),
                  imgsz=64, save_images=False)
    after = host.host_settings()
    for what, before, found in (('import', before, after_import), ('predict', before_predict, after)):
        changed = {k: (before[k], found.get(k)) for k in before if k != 'environment' and found.get(k) != before[k]}
        env = {k for k in set(before['environment']) | set(found['environment'])
               if before['environment'].get(k) != found['environment'].get(k)}
        assert not changed and not env, f'{what} changed {changed} and environment variables {sorted(env)}'
    assert after['torch threads'] == threads
    print('ok', after['torch threads'])
''')


@pytest.mark.slow
@pytest.mark.parametrize('threads', [1, 3])
def test_yolo_predict_leaves_threads_and_environment(threads, tmp_path):
    pytest.importorskip('ultralytics')
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', YOLO_SCRIPT, str(threads), str(tmp_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ['ok', str(threads)], result.stdout


def test_the_old_thread_helper_name_warns_and_is_the_new_one():
    from uniconvnet.engine import run
    with pytest.warns(FutureWarning, match='uniconvnet.host.torch_threads'):
        assert run.cpu_threads is torch_threads


def test_host_settings_reads_numba_once_imported():
    numba = pytest.importorskip('numba')
    assert host_settings()['numba threads'] == numba.get_num_threads()
