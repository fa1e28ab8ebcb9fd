"""The command line, run as a user would."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the command in a child process


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


def test_unknown_variant_exit_code():
    res = run('models', 'uniconvnet_zz')
    assert res.returncode == 2
    assert 'unknown variant' in res.stderr and 'uniconvnet_t' in res.stderr
