"""The command line, run as a user would."""
import json
import subprocess
import sys

import pytest

import uniconvnet
from uniconvnet.analysis import measure_complexity


def run(*args):
    return subprocess.run([sys.executable, '-m', 'uniconvnet', *args], capture_output=True, text=True, timeout=300)


def test_models_table_is_computed():
    res = run('models', 'uniconvnet_a', 'uniconvnet_n0', '--json')
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r['model'] for r in rows] == ['uniconvnet_a', 'uniconvnet_n0']
    assert rows[0]['params'] == 3406732 and rows[1]['params'] == 10253506
    # the paper's table says 0.589 GFLOPs for A (MACs, counted without the deformable sampling)
    assert 0.57e9 < rows[0]['macs'] < 0.60e9
    md = run('models', 'uniconvnet_a')
    assert md.returncode == 0 and '| uniconvnet_a |' in md.stdout and '3.41' in md.stdout


def test_macs_match_a_hand_count():
    # one 3x3 conv stem of a tiny model is easy to count by hand: use the complexity of a single DCNv3 layer
    layer = uniconvnet.DCNv3(16, group=2)
    import torch

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dcn = layer

        def forward(self, x):
            return self.dcn(x.permute(0, 2, 3, 1))

    c = measure_complexity(Wrap(), (16, 5, 6))
    hw = 5 * 6
    linears = hw * 16 * (16 + 16 + 18 * 2 // 2 * 2 + 9 * 2)  # input/output proj, offset (36), mask (18)
    dw = hw * 16 * 9
    assert c.macs == hw * 16 * (16 + 16 + 36 + 18) + dw
    assert c.dcn_sampling_macs == hw * 16 * 9
    assert linears > 0


def test_unknown_variant_exit_code():
    res = run('models', 'uniconvnet_zz')
    assert res.returncode == 2
    assert 'unknown variant' in res.stderr and 'uniconvnet_t' in res.stderr
