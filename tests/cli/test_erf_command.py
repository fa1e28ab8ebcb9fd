"""``uniconvnet erf`` run as a user would: figures and tables written, bad input refused with one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from uniconvnet.cli.main import main

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.slow
def test_erf_command_writes_figures_and_tables(tmp_path):
    out = tmp_path / 'erf'
    panel = 100
    cmd = [sys.executable, '-m', 'uniconvnet', 'erf', '--model', 'uniconvnet_a', '--compare', 'resnet10t',
           'convnext_atto', '--size', '96', '--num-images', '2', '--panel-px', str(panel), '--out', str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert res.returncode == 0, res.stderr
    assert '[3/3] convnext_atto' in res.stderr and '2/2' in res.stderr  # progress per model and image
    models = ['uniconvnet_a', 'resnet10t', 'convnext_atto']

    # the layout is fixed in pixels: panels of `panel` px, a 40 px title strip, a 90 px colour bar
    main_png = np.asarray(Image.open(out / 'erf.png').convert('RGB')).astype(float)
    stages_png = np.asarray(Image.open(out / 'erf_stages.png').convert('RGB')).astype(float)
    assert main_png.shape == (panel + 40, 3 * panel + 90, 3)
    assert stages_png.shape == (3 * (panel + 40), 4 * panel + 90, 3)
    for i in range(3):  # each heatmap spans the colour scale and is greener in its middle: drawn, not blank
        cell = main_png[40:, i * panel:(i + 1) * panel]
        green = cell[..., 1] - cell[..., 0]  # 0 for the scale's yellow, over 100 for its dark green
        border = np.concatenate([green[2:10].ravel(), green[-10:-2].ravel(), green[:, 2:10].ravel(),
                                 green[:, -10:-2].ravel()])
        assert green.max() > 80 and green.min() == 0, i
        assert green[25:75, 25:75].mean() > border.mean() + 5, i

    report = json.loads((out / 'erf.json').read_text())
    assert list(report['models']) == models and report['config']['num_images_used'] == 2
    for name in models:
        entry = report['models'][name]
        assert entry['erf']['images_used'] == 2 and entry['seconds_per_image'] > 0
        assert set(entry['erf']['area_ratio']) == {'0.2', '0.3', '0.5', '0.99'}
        sides = [entry['erf']['area_ratio'][t]['side'] for t in ('0.2', '0.3', '0.5', '0.99')]
        assert sides == sorted(sides) and sides[0] >= 1
        assert {'sigma', 'r2', 'monotonicity', 'is_gaussian', 'radial_profile'} <= set(entry['erf']['agd'])
        assert list(entry['stages']) == ['stage1', 'stage2', 'stage3', 'stage4']
    md = (out / 'erf.md').read_text()
    assert all(f'| {name} | random init | 2 |' in md for name in models)
    raw = np.load(out / 'erf_maps.npz')
    assert raw['uniconvnet_a'].shape == (96, 96) and 'resnet10t/stage2' in raw.files


@pytest.mark.parametrize('args, message', [
    (['--model', 'vit_tiny_patch16_224', '--size', '224', '--stages'], 'not a 4-D (N, C, H, W) map'),
    (['--model', 'uniconvnet_a', '--size', '32', '--stages'], 'too small for uniconvnet_a'),
    (['--images', '{empty}'], 'no images in'),
    (['--images', '{empty}/missing'], 'image folder not found'),
    (['--model', 'uniconvnet_a', '--checkpoint', '{empty}/none.pth'], 'checkpoint not found'),
])
def test_erf_command_refuses_bad_input(tmp_path, capsys, args, message):
    empty = tmp_path / 'empty'
    empty.mkdir()
    args = [a.replace('{empty}', str(empty)) for a in args]
    assert main(['erf', *args, '--num-images', '1', '--quiet', '--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith('uniconvnet erf: error:')
    if 'not a 4-D' in message:
        assert '--stage' in err
