"""The benchmark harness, run small: every measurement is taken and the ratios follow their definitions."""
import json
import signal
import sys
import time

import pytest
import torch

from conftest import run_child, signal_stack
from uniconvnet.speed.benchmark import SETTLE_CALLS, ModelSpec, format_profile, interleaved_medians, profile_inference
from uniconvnet.cli.main import main


def test_model_specs():
    spec = ModelSpec.parse('uniconvnet_t:plain,fused')
    assert (spec.name, spec.plain, spec.fused, spec.compiled) == ('uniconvnet_t', True, True, False)
    assert spec.label == 'uniconvnet_t:plain,fused' and not spec.trainable
    with pytest.raises(ValueError, match='modes plain, fused, compile'):
        ModelSpec.parse('uniconvnet_t:fast')


@pytest.mark.slow
class _ColdFirstCall:
    """A runner whose first call of each visit is slow, as a model's is after the others ran."""

    def __init__(self, last_caller: list):
        self.last_caller, self.calls = last_caller, 0

    def __call__(self):
        self.calls += 1
        if self.last_caller[0] is not self:  # another runner ran since this one's last call: a new visit
            time.sleep(0.03)
            self.last_caller[0] = self


def test_interleaved_medians_time_each_visit_warm():
    last_caller = [None]
    a, b = _ColdFirstCall(last_caller), _ColdFirstCall(last_caller)
    warm = interleaved_medians({'a': a, 'b': b}, runs=3, warmup=1)
    assert SETTLE_CALLS == 1 and a.calls == b.calls == 4 * 2  # every visit: one untimed call, then the timed one
    assert all(ms < 15 for ms in warm.values()), warm
    cold = interleaved_medians({'a': a, 'b': b}, runs=3, warmup=1, settle_calls=0)
    assert all(ms >= 30 for ms in cold.values()), cold
    errors = {}

    def failing():
        raise RuntimeError('broken model')
    assert set(interleaved_medians({'a': a, 'bad': failing}, runs=1, warmup=0, errors=errors)) == {'a'}
    assert errors == {'bad': 'RuntimeError: broken model'}


def test_onnxruntime_sessions_do_not_spin(tmp_path):
    pytest.importorskip('onnxruntime')
    from uniconvnet.speed.runtimes import Exporter, _onnxruntime_session
    path = Exporter(tmp_path, 32)('resnet', torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()),
                                  False, 'onnx')
    session = _onnxruntime_session(path, threads=2)
    options = session._objects[0].get_session_options()
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    assert options.intra_op_num_threads == 2
    assert session(torch.zeros(1, 3, 32, 32)).__class__.__name__ == 'list'


def test_bench_command_small(tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('openvino')
    out = tmp_path / 'bench.json'
    stack_before = signal_stack() if sys.platform == 'linux' else None
    threads = torch.get_num_threads()
    assert main(['bench', '--models', 'uniconvnet_a:plain', '--reference', 'resnet18',
                 '--size', '64', '--batch', '1', '2', '--train-batch', '2', '--runs', '1', '--warmup', '0',
                 '--train-runs', '1', '--threads', '1', '--json', str(out)]) == 0
    assert torch.get_num_threads() == threads  # --threads 1 while measuring; PyTorch's setting restored after
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report['models']
    assert list(rows) == ['resnet18', 'uniconvnet_a:plain']  # the reference is added, first
    ref, plain = rows['resnet18'], rows['uniconvnet_a:plain']
    assert plain['params'] == 3406732 and plain['dcn_sampling_macs'] > 0
    for row in rows.values():
        for key in ('latency_ms', 'onnxruntime_ms', 'openvino_ms', 'openvino_f32_ms'):  # all interleaved
            assert set(row[key]) == {'1', '2'} and all(ms > 0 for ms in row[key].values())
        vs_eager = row['openvino_ms']['2'] / row['latency_ms']['2']
        assert row['ratios']['openvino_vs_eager']['2'] == pytest.approx(vs_eager)
    assert ref['ratios']['latency_ms'] == {'1': 1.0, '2': 1.0}
    ratio = plain['ratios']['latency_ms']['2']
    assert ratio == pytest.approx(plain['latency_ms']['2'] / ref['latency_ms']['2'])
    per_mac = plain['ratios']['latency_ms_per_mac']['2']
    assert per_mac == pytest.approx(ratio * ref['total_macs'] / plain['total_macs'])
    assert plain['train_step_ms'] > 0 and plain['train_peak_mb'] > 0  # trained and measured in its own process
    assert '| `uniconvnet_a:plain` |' in table and 'per MAC' in table
    for runtime in ('onnxruntime', 'openvino', 'openvino_f32'):
        assert f'| model ({runtime}) |' in table
    if stack_before is not None:
        # two OpenVINO models were compiled: released out of order, they leave a freed signal stack installed
        # and the next signal handled (a DataLoader worker's SIGCHLD) crashes the process (it did, in this suite)
        assert signal_stack() == stack_before


def test_profile_names_where_time_goes():
    profile = profile_inference('uniconvnet_a', batch=1, image_size=64, runs=1, threads=1)
    assert profile['categories']['DCN sampling core'] > 0  # the core's inner ops are counted as the core
    assert profile['categories']['matrix products (linears, 1x1 convs)'] > 0
    assert sum(profile['categories'].values()) == pytest.approx(profile['total_ms'])
    assert '| DCN sampling core |' in format_profile(profile)


@pytest.mark.slow
def test_ctrl_c_stops_bench_in_one_line(tmp_path):
    """Ctrl-C during a measurement: the command's one-line answer and the shell's code 130, no traceback."""
    def interrupt(proc):
        time.sleep(1)  # timing has started
        proc.send_signal(signal.SIGINT)

    res = run_child([sys.executable, '-m', 'uniconvnet', 'bench', '--models', 'uniconvnet_a', '--size', '64',
                     '--batch', '1', '--runs', '100000', '--warmup', '0', '--train-batch', '0', '--no-onnxruntime',
                     '--no-openvino', '--no-memory'], until='[bench] inference', then=interrupt, stream='stderr',
                    timeout=300, cwd=tmp_path)
    lines = res.stderr.splitlines()
    assert res.returncode == 130
    assert lines[-1].strip() == ('uniconvnet bench: interrupted; nothing half-written is left behind (every file '
                                 'is written atomically)')
    assert not any('Traceback' in line for line in lines)


@pytest.mark.parametrize('module', ['benchmark', 'frontier', 'peers', 'complexity'])
def test_old_import_paths_still_work_with_a_deprecation_warning(module):
    """The speed tools moved from uniconvnet.analysis to uniconvnet.speed; the old names import for one release."""
    import importlib
    import sys
    sys.modules.pop(f'uniconvnet.analysis.{module}', None)
    with pytest.warns(DeprecationWarning, match=f'uniconvnet.analysis.{module} moved to uniconvnet.speed.{module}'):
        old = importlib.import_module(f'uniconvnet.analysis.{module}')
    assert old is importlib.import_module(f'uniconvnet.speed.{module}')  # the same module: private names too
    import uniconvnet.analysis
    with pytest.warns(DeprecationWarning, match='uniconvnet.speed.measure_complexity'):
        assert uniconvnet.analysis.measure_complexity is importlib.import_module('uniconvnet.speed').measure_complexity
