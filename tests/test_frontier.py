"""The frontier tool: the published top-1 table, peer matching and ratios, plots, and the command run small."""
import json

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.speed.frontier import format_frontier, frontier_rows
from uniconvnet.speed.plots import plot_frontier
from uniconvnet.speed.peers import PEERS, UNICONVNET, resolve_peers, resolve_variants
from uniconvnet.cli.main import main

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def test_every_quoted_top1_names_existing_timm_weights():
    for published in list(UNICONVNET.values()) + list(PEERS.values()):
        assert f'{published.model}.{published.tag}' in timm.list_pretrained(published.model + '.*'), published
        assert 60 < published.top1 < 90 and published.source
    assert [p.short_name for p in resolve_variants(['a', 'N0', 'uniconvnet_t'])] == ['A', 'N0', 'T']
    assert UNICONVNET['uniconvnet_a'].top1 == 77.0 and PEERS['convnext_femto'].top1 == 77.5


def _model(name, family, top1, latency, session=1, memory=None):
    short = name[len('uniconvnet_'):].upper() if family == 'uniconvnet' else name
    row = dict(model=name, family=family, short_name=short, tag='in1k', top1=top1, source=f'source of {name}',
               params=1e6, total_macs=1e9, latency_ms=latency, session=session)
    if memory is not None:
        row['train_peak_mb'] = memory
    return row


@pytest.fixture
def report():
    models = [
        _model('uniconvnet_a', 'uniconvnet', 77.0, {'1': 90.0, '8': 280.0}, memory=2000.0),
        _model('uniconvnet_n0', 'uniconvnet', 81.6, {'1': 108.0, '8': 374.0}, memory=3000.0),
        _model('uniconvnet_b', 'uniconvnet', 85.0, {'1': 500.0, '8': 2000.0}, memory=9000.0),
        _model('slow_accurate', 'peer', 78.0, {'1': 40.0, '8': 100.0}, memory=1000.0),
        _model('fast_accurate', 'peer', 77.5, {'1': 30.0, '8': 140.0}, memory=800.0),  # fastest at batch 1
        _model('fast_inaccurate', 'peer', 76.9, {'1': 5.0, '8': 20.0}, memory=500.0),  # faster, but below A
        _model('big', 'peer', 82.1, {'1': 72.0, '8': 537.0}, session=2, memory=4000.0),
    ]
    return {'kind': 'frontier',
            'settings': dict(image_size=224, batch_sizes=[1, 8], train_batch=16, runs=10, warmup=3, train_runs=5,
                             threads=2, device='cpu', dtype='float32'),
            'models': {m['model']: m for m in models},
            'pairs': {'uniconvnet_a': {'peer': 'fast_accurate', 'session': 1,
                                       'train_step_ms': {'uniconvnet_a': 1200.0, 'fast_accurate': 800.0}},
                      # measured against a peer that is no longer the match: not used
                      'uniconvnet_n0': {'peer': 'slow_accurate', 'session': 1,
                                        'train_step_ms': {'uniconvnet_n0': 1.0, 'slow_accurate': 1.0}}}}


def test_each_variant_is_matched_with_the_fastest_peer_at_least_as_accurate(report):
    rows = {row['variant']: row for row in frontier_rows(report)}
    a, n0, b = rows['uniconvnet_a'], rows['uniconvnet_n0'], rows['uniconvnet_b']
    assert a['peer'] == 'fast_accurate'  # not fast_inaccurate (76.9 < 77.0), not slow_accurate (40 ms at batch 1)
    assert a['latency'] == {'1': (90.0, 30.0, 3.0), '8': (280.0, 140.0, 2.0)}
    assert a['train_step'] == (1200.0, 800.0, 1.5)
    assert a['train_memory'] == (2000.0, 800.0, 2.5)
    assert a['same_session']
    assert n0['peer'] == 'big' and n0['latency']['1'] == (108.0, 72.0, 1.5)
    assert n0['train_step'] is None  # the saved pair is against another peer
    assert not n0['same_session']  # big was timed in another run
    assert b['peer'] is None and b['latency'] == {}
    # limited to some models, the match changes with them
    assert frontier_rows(report, ['uniconvnet_a', 'slow_accurate'])[0]['peer'] == 'slow_accurate'


def test_frontier_table_text(report):
    table = format_frontier(report)
    assert '| A (77) | fast_accurate (77.5) | 90.0 vs 30.0 ms: **3.00x** | 280.0 vs 140.0 ms: **2.00x** | ' \
           '1200 vs 800 ms: **1.50x** | 2000 vs 800 MB: **2.50x** |' in table
    assert '| N0 (81.6) | big (82.1) | 108.0 vs 72.0 ms: **1.50x** †' in table and '† the two latencies' in table
    assert '| B (85) | none in the table | — | — | — | — |' in table
    assert '- A: source of uniconvnet_a' in table


def test_plots_are_pngs(report, tmp_path):
    paths = plot_frontier(report, tmp_path / 'frontier')
    assert [p.name for p in paths] == ['frontier_latency.png', 'frontier_memory.png']
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
    for model in report['models'].values():
        del model['train_peak_mb']
    assert [p.name for p in plot_frontier(report, tmp_path / 'no_memory')] == ['no_memory_latency.png']


def _run(*argv):
    return main(['bench', '--frontier', *argv])


TINY = ['--size', '32', '--batch', '1', '2', '--train-batch', '2', '--runs', '1', '--warmup', '0',
        '--train-runs', '1', '--threads', '1', '--no-memory']


def test_frontier_command_measures_reuses_and_plots(tmp_path, capsys):
    out = tmp_path / 'frontier.json'
    # resnet18 given a top-1 above A's: the only peer A can be matched with, so a training pair is timed
    assert _run('--variants', 'A', '--peers', 'resnet18=78', 'convnext_atto', '--json', str(out), *TINY) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    models = report['models']
    assert report['requested'] == ['uniconvnet_a', 'resnet18', 'convnext_atto']
    assert models['uniconvnet_a']['params'] == 3406732 and models['resnet18']['top1'] == 78.0
    for model in models.values():
        assert set(model['latency_ms']) == {'1', '2'} and all(ms > 0 for ms in model['latency_ms'].values())
        assert model['session'] == 1
    pair = report['pairs']['uniconvnet_a']
    assert pair['peer'] == 'resnet18' and all(ms > 0 for ms in pair['train_step_ms'].values())
    assert '| A (77) | resnet18 (78) |' in table
    assert (tmp_path / 'frontier_latency.png').read_bytes()[:8] == PNG_SIGNATURE

    # the same report extended by one peer: only that peer is measured, in a second run
    before = {name: dict(m['latency_ms']) for name, m in models.items()}
    assert _run('--variants', 'A', '--peers', 'resnet18=78', 'convnext_atto', 'mobilenetv3_large_100',
                '--json', str(out), *TINY) == 0
    report = json.loads(out.read_text())
    assert {name: m['latency_ms'] for name, m in report['models'].items() if name in before} == before
    assert report['models']['mobilenetv3_large_100']['session'] == 2 and len(report['sessions']) == 2
    capsys.readouterr()

    # drawing again from the JSON measures nothing
    (tmp_path / 'frontier_latency.png').unlink()
    assert _run('--json', str(out), '--plot-only') == 0
    assert '| A (77) | resnet18 (78) |' in capsys.readouterr().out
    assert (tmp_path / 'frontier_latency.png').is_file()


def _error(capsys, *argv):
    assert main(['bench', *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_frontier_bad_input(capsys, tmp_path):
    err = _error(capsys, '--frontier', '--variants', 'Q7')
    assert "variant 'Q7'" in err and 'choose from: A, P0, P1, P2, N0, N1, N2, N3, T, S, B' in err
    assert "no published top-1 for peer 'resnet99'" in _error(capsys, '--frontier', '--peers', 'resnet99')
    assert 'use NAME=TOP1' in _error(capsys, '--frontier', '--peers', 'resnet18=high')
    assert '--models do not apply to --frontier' in _error(capsys, '--frontier', '--models', 'resnet18')
    assert '--variants belong to --frontier' in _error(capsys, '--variants', 'A')
    assert 'pass it with --json' in _error(capsys, '--frontier', '--plot-only')
    missing = tmp_path / 'missing.json'
    assert 'no frontier report at' in _error(capsys, '--frontier', '--plot-only', '--json', str(missing))
    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'kind': 'frontier', 'settings': dict(image_size=64, batch_sizes=[1], train_batch=2,
                                                                      threads=1, device='cpu', dtype='float32'),
                                 'sessions': [], 'models': {}, 'pairs': {}}))
    err = _error(capsys, '--frontier', '--variants', 'A', '--peers', 'resnet18', '--json', str(other), *TINY)
    assert 'was measured with image_size=64' in err and 'another --json path' in err
    with pytest.raises(ValueError, match='top-1 must be a percentage'):
        resolve_peers(['resnet18=180'])
    assert "unknown device 'tpu'" in _error(capsys, '--frontier', '--device', 'tpu', '--variants', 'A',
                                           '--peers', 'resnet18', *TINY)
    if not torch.cuda.is_available():
        assert 'no CUDA device' in _error(capsys, '--models', 'resnet18', '--device', 'cuda', *TINY)


def test_log_axis_labels_only_2_3_5_between_decades():
    from uniconvnet.speed.plots import _sparse_log_label
    assert [_sparse_log_label(v) for v in (20, 30, 40, 50, 70, 200, 300, 500, 900)] == \
        ['20', '30', '', '50', '', '200', '300', '500', '']
