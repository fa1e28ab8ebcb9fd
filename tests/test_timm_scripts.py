"""`python -m uniconvnet.timm SCRIPT ...`: timm's scripts run unchanged, with the UniConvNet models registered."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm

from uniconvnet.data import export_digits_folder

from conftest import REPO

pytestmark = pytest.mark.slow  # timm's scripts in child processes

TRAIN_SCRIPT = REPO / 'tests' / 'scripts' / 'timm_train_tiny.py'
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS='1', NUMBA_NUM_THREADS='1')


def run(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=ONE_THREAD)


@pytest.fixture(scope='module')
def digits_folder(tmp_path_factory) -> Path:
    return export_digits_folder(tmp_path_factory.mktemp('timm-data') / 'digits', per_class=2)  # 20 train, 20 val


def test_a_timm_script_trains_and_validates_uniconvnet(digits_folder):
    # the script uses timm's APIs only (create_model, create_dataset, create_loader, create_optimizer_v2 with
    # layer decay 0.7, ModelEmaV3) and never imports uniconvnet: the wrapper registers the models for it
    res = run('-m', 'uniconvnet.timm', TRAIN_SCRIPT, '--data-dir', digits_folder)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['model_class'] == 'UniConvNet' and out['uniconvnet_imported']
    assert out['argv'] == [str(TRAIN_SCRIPT), '--data-dir', str(digits_folder)]
    assert out['train_images'] == 20 and out['steps'] == 3 and out['losses_finite']  # 20 images, batch 6
    # layer-wise lr decay through our group_matcher: one scale per block (17 in A) and the head, 0.7 apart
    model = timm.create_model('uniconvnet_a', device='meta')
    layers = sum(len(stage.blocks) for stage in model.stages) + 1
    assert len(out['lr_scales']) == layers + 1 and out['lr_scales'][-1] == 1.0
    assert out['lr_scales'][0] == pytest.approx(0.7 ** layers)
    assert out['ema_differs']  # the EMA (decay 0.5 from the second update) is not the model
    for key in ('val', 'val_ema'):
        assert out[key]['images'] == 20 and 0 <= out[key]['top1'] <= 100


def test_without_the_wrapper_timm_does_not_know_the_model(digits_folder):
    # timm has no hook through which a package could register itself: a plain run fails with timm's own message
    res = run(TRAIN_SCRIPT, '--data-dir', digits_folder)
    assert res.returncode != 0 and 'Unknown model (uniconvnet_a)' in res.stderr


def test_the_script_runs_as_python_runs_it(tmp_path):
    script = tmp_path / 'probe' / 'probe.py'
    script.parent.mkdir()
    (script.parent / 'helper.py').write_text('VALUE = 42\n')  # a module beside the script imports, as usual
    script.write_text('import json, sys\nimport helper\nimport timm\n'
                      'print(json.dumps({"name": __name__, "argv": sys.argv, "file": __file__, "helper": helper.VALUE,'
                      ' "registered": "uniconvnet_a" in timm.list_models("uniconvnet*")}))\n'
                      'sys.exit(3)\n')
    res = run('-m', 'uniconvnet.timm', script, '--flag', 'value', '-x')
    assert res.returncode == 3, res.stderr  # the script's exit code
    assert json.loads(res.stdout) == {'name': '__main__', 'argv': [str(script), '--flag', 'value', '-x'],
                                      'file': str(script), 'helper': 42, 'registered': True}
    res = run('-m', 'uniconvnet.timm', tmp_path / 'absent.py')
    assert res.returncode == 2 and res.stderr.count('\n') == 1 and 'absent.py is not a file' in res.stderr
    res = run('-m', 'uniconvnet.timm')
    assert res.returncode == 2 and res.stderr.startswith('usage: python -m uniconvnet.timm SCRIPT')
