"""benchmarks/dcnv3_gpu.py, the GPU check, in its CPU smoke mode (Triton's interpreter, tiny sizes).

Its first version set UNICONVNET_DCN_BACKEND after import, which nothing reads then: its "Triton against the
PyTorch core" check compared Triton with itself and its PyTorch-core training row timed Triton. The check now
records which sampling operator really ran on each side, and these tests hold it to that.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.slow  # runs benchmarks/dcnv3_gpu.py in child processes

SCRIPT = str(REPO / 'benchmarks' / 'dcnv3_gpu.py')


def _run(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO / 'src'))
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    result = _run('--smoke', '--out', str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = out / 'cpu-smoke'
    return json.loads((folder / 'gpu_check.json').read_text()), folder, result.stdout


def test_every_section_ran_and_passed(smoke_run):
    results, folder, stdout = smoke_run
    assert results['errors'] == []
    assert {name: s['status'] for name, s in results['sections'].items()} == dict(
        env='done', correctness='done', core='done', training='done', inference='done', compile='done')
    assert 'every check passed' in stdout
    markdown = (folder / 'gpu_check.md').read_text()
    for heading in ('## Correctness', '## DCNv3 sampling core', '## Training', '## Inference', '## torch.compile'):
        assert heading in markdown


def test_correctness_compares_two_different_implementations(smoke_run):
    correctness = smoke_run[0]['sections']['correctness']
    rows = correctness['rows']
    assert {r['dtype'] for r in rows} == {'float32', 'bfloat16'}
    for row in rows:
        assert row['backends'] == dict(triton='triton', torch='torch')
        assert row['ok'], row
        # a real comparison: equal to the core within rounding, yet not the core itself (bitwise)
        assert row['out']['rel_max'] <= row['tolerance']
    model = correctness['model']
    assert model['ops_seen'] == dict(torch=['torch'], triton=['triton'])
    assert model['backends_differ'] and model['ok']
    assert model['logits']['rel_l2'] > 0, 'identical logits: both sides ran the same code'
    assert model['grads_compared'] > 100


def test_training_rows_time_the_backend_they_name(smoke_run):
    rows = smoke_run[0]['sections']['training']['rows']
    seen = {(r['model'], r['backend']): r['ops_seen'] for r in rows}
    assert seen == {('convnext_atto', '-'): [], ('uniconvnet_a', 'triton'): ['triton'],
                    ('uniconvnet_a', 'torch'): ['torch']}
    assert all(r['images_per_s'] > 0 for r in rows)


def test_core_configs_are_checked_and_one_is_named_fastest(smoke_run):
    core = smoke_run[0]['sections']['core']
    row = core['rows'][0]
    assert row['triton_fwdbwd_ms'] > 0 and row['torch_fwdbwd_ms'] > 0
    assert set(row['configs']) == {'default', 'scalar_channels_acq_rel (before issue 23)'}
    assert all(c['ok'] and c['fwdbwd_ms'] > 0 for c in row['configs'].values())
    assert core['fastest_config']['name'] in row['configs']


def test_compile_keeps_one_graph_and_the_logits(smoke_run):
    (row,) = smoke_run[0]['sections']['compile']['rows']
    assert row['fullgraph'] is True and row['ok']
    assert row['logits']['rel_l2'] <= 2e-2


def test_report_step_writes_the_table_and_the_plot(smoke_run, tmp_path):
    _, folder, _ = smoke_run
    result = _run('--report', str(folder / 'gpu_check.json'), '--out', str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / 'gpu_table.md').read_text()
    assert '| uniconvnet_a | 77.0 |' in table and '| convnext_atto | 75.7 |' in table
    assert (tmp_path / 'gpu_frontier.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_report_step_names_a_missing_file(tmp_path):
    result = _run('--report', str(tmp_path / 'nothing.json'), '--out', str(tmp_path), timeout=300)
    assert result.returncode != 0
    assert 'no results at' in result.stderr and result.stderr.strip().count('\n') == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message for a machine without CUDA')
def test_without_cuda_one_line_and_exit_2(tmp_path):
    result = _run('--out', str(tmp_path), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0 and 'no CUDA device' in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.fixture(scope='module')
def script():
    import importlib.util
    spec = importlib.util.spec_from_file_location('dcnv3_gpu_script', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recorder(script, tmp_path):
    settings = script.smoke_settings()
    return script.Recorder(tmp_path / 'run', settings, smoke=True), settings


def test_a_failing_section_is_recorded_and_the_next_one_runs(script, tmp_path):
    recorder, settings = _recorder(script, tmp_path)

    def broken(section, settings, budget, recorder):
        section['rows'].append(dict(model='uniconvnet_a', bf16_b1=10.0))
        raise ValueError('a peer failed to build')

    def fine(section, settings, budget, recorder):
        section['rows'].append(dict(model='uniconvnet_a', skipped='budget'))
    script.run_section(recorder, 'inference', settings, broken)
    script.run_section(recorder, 'compile', settings, fine)
    saved = json.loads((tmp_path / 'run' / 'gpu_check.json').read_text())
    assert saved['sections']['inference']['status'] == 'error'
    assert saved['sections']['inference']['rows'] == [dict(model='uniconvnet_a', bf16_b1=10.0)]  # kept
    assert saved['errors'] == ['inference: ValueError: a peer failed to build']
    assert saved['sections']['compile'] == dict(rows=[dict(model='uniconvnet_a', skipped='budget')], status='done',
                                                seconds=saved['sections']['compile']['seconds'])
    assert script.failed_checks(saved) == ['inference: ValueError: a peer failed to build']
    markdown = (tmp_path / 'run' / 'gpu_check.md').read_text()
    assert '| uniconvnet_a | 77.0 | 10 |' in markdown and 'a peer failed to build' in markdown


def test_the_hard_limit_is_not_swallowed_by_a_measurement(script):
    with pytest.raises(script.SectionTimeout):
        with script.hard_limit(0.2):
            while True:
                try:  # what a measurement loop does with a model that fails to build
                    sum(range(1000))
                except Exception:  # noqa: BLE001
                    pass
    assert signal_handler_restored(script)


def signal_handler_restored(script):
    import signal
    return signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None) \
        or signal.getsignal(signal.SIGALRM).__name__ != 'expire'


def test_a_broken_cuda_context_skips_the_later_sections(script, tmp_path):
    recorder, settings = _recorder(script, tmp_path)

    def crash(section, settings, budget, recorder):
        raise RuntimeError('CUDA error: an illegal memory access was encountered')
    script.run_section(recorder, 'core', settings, crash)
    assert recorder.results['cuda_broken'].startswith('core: CUDA error')
    assert any('CUDA context broke' in line for line in script.failed_checks(recorder.results))


def test_gpu_folder_names(script):
    assert script.slug('NVIDIA H200') == 'nvidia-h200'
    assert script.slug('NVIDIA GeForce RTX 4090 (laptop)') == 'nvidia-geforce-rtx-4090-laptop'
