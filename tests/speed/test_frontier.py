"""The frontier tool: the published top-1 table, the matching and ratio logic per runtime, tables, plots, resuming,
and the command run small in every runtime."""
import importlib.util
import json
import sys

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.cli.main import main
from uniconvnet.speed.frontier import REPORT_VERSION, format_frontier, frontier_rows
from uniconvnet.speed.peers import PEERS, PUBLISHED_SIZE, UNICONVNET, resolve_peers, resolve_variants
from uniconvnet.speed.plots import _sparse_log_label, plot_frontier
from uniconvnet.speed.runtimes import RUNTIMES

from conftest import run_child, signal_stack

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def test_checking_the_runtimes_imports_none_of_them():
    # importing openvino loads the TBB library it ships, and numba would then take TBB as the threading layer of our
    # DCN kernels (slower than its OpenMP layer) before the eager columns are timed
    code = ('import sys\n'
            'from uniconvnet.speed.frontier import _versions\n'
            'from uniconvnet.speed.runtimes import RUNTIMES, usable_runtimes\n'
            'print(sorted(usable_runtimes(RUNTIMES, "cpu", print)), sorted(_versions()))\n'
            'print("imported:", sorted(m for m in sys.modules if m.startswith(("openvino", "onnxruntime"))))\n')
    res = run_child([sys.executable, '-c', code], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'imported: []' in res.stdout, res.stdout
    for package, runtime in (('openvino', "'openvino_f32'"), ('onnxruntime', "'onnxruntime'")):
        if importlib.util.find_spec(package) is not None:  # found without importing, and its version read
            assert runtime in res.stdout and f"'{package}'" in res.stdout.splitlines()[0].split('] [')[1], res.stdout


# ---- the published table -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_peer_resolves_in_timm_and_its_tag_names_existing_weights():
    for published in list(UNICONVNET.values()) + list(PEERS.values()):
        assert published.weights in timm.list_pretrained(published.model + '.*'), published
        with torch.device('meta'):  # the architecture builds here (no weights, no memory)
            timm.create_model(published.model, pretrained=False)
        assert 60 < published.top1 < 90 and published.source, published
        # a tag that says "distilled" is marked so, and only such weights are
        assert published.distilled == ('dist' in published.tag), published
    assert [p.short_name for p in resolve_variants(['a', 'N0', 'uniconvnet_t'])] == ['A', 'N0', 'T']
    assert UNICONVNET['uniconvnet_a'].top1 == 77.0 and PEERS['convnext_femto'].top1 == 77.5


def test_the_peer_table_holds_the_families_that_own_the_cpu_frontier():
    required = ['efficientvit_b1', 'efficientvit_b2', 'efficientvit_l1', 'efficientvit_l2', 'mobilenetv4_conv_small',
                'mobilenetv4_conv_medium', 'mobilenetv4_hybrid_medium', 'efficientnet_b0', 'efficientnet_b1',
                'efficientnet_b2', 'efficientnet_b3', 'convnextv2_atto', 'convnextv2_femto', 'convnextv2_pico',
                'convnextv2_nano', 'convnextv2_tiny', 'mobileone_s0', 'mobileone_s1', 'mobileone_s2', 'mobileone_s3',
                'mobileone_s4', 'caformer_s18', 'convnext_femto', 'convnext_tiny', 'convnext_base']
    assert not [name for name in required if name not in PEERS]
    # the accuracy belongs to the tag: the ra4 EfficientNet-B0 and the 500-epoch 224 MobileNetV4-Medium weights
    assert PEERS['efficientnet_b0'].weights == 'efficientnet_b0.ra4_e3600_r224_in1k'
    assert PEERS['efficientnet_b0'].top1 == 78.584 and PEERS['efficientnet_b0'].img_size == 224
    assert PEERS['mobilenetv4_conv_medium'].weights == 'mobilenetv4_conv_medium.e500_r224_in1k'
    assert PEERS['mobilenetv4_conv_medium'].top1 == 79.094
    # shown but never matched: distilled weights, and top-1s published at another test size only
    assert PEERS['repvit_m1_1'].excluded == 'distilled'
    assert PEERS['efficientnet_b3'].excluded == 'top-1 at 320' and PEERS['efficientnet_b3'].img_size != PUBLISHED_SIZE
    assert PEERS['caformer_s18'].excluded is None


# ---- the comparisons on a synthetic report -----------------------------------------------------------------------

def _model(name, family, top1, latency, *, excluded=None, session=1, memory=None):
    short = name[len('uniconvnet_'):].upper() if family == 'uniconvnet' else name
    row = dict(model=name, family=family, short_name=short, tag='in1k', weights=f'{name}.in1k', top1=top1,
               img_size=224, distilled=excluded == 'distilled', excluded=excluded, source=f'source of {name}',
               params=1e6, total_macs=1e9, latency_ms=latency, errors={},
               timed_in={rt: {b: session for b in by_batch} for rt, by_batch in latency.items()})
    if memory is not None:
        row['train_peak_mb'] = memory
    return row


@pytest.fixture
def report():
    models = [
        _model('uniconvnet_a', 'uniconvnet', 77.0, {'eager': {'1': 90.0, '8': 280.0},
                                                    'onnxruntime': {'1': 60.0, '8': 300.0}}, memory=2000.0),
        _model('uniconvnet_n0', 'uniconvnet', 81.6, {'eager': {'1': 108.0, '8': 374.0}}, memory=3000.0),
        _model('uniconvnet_b', 'uniconvnet', 85.0, {'eager': {'1': 500.0, '8': 2000.0}}, memory=9000.0),
        # fastest in eager at batch 1 among the eligible, slow in onnxruntime
        _model('fast_eager', 'peer', 77.5, {'eager': {'1': 30.0, '8': 140.0}, 'onnxruntime': {'1': 25.0, '8': 90.0}},
               memory=800.0),
        # slower in eager, fastest in onnxruntime: the best runtime of any peer
        _model('fast_runtime', 'peer', 78.0, {'eager': {'1': 40.0, '8': 100.0}, 'onnxruntime': {'1': 6.0, '8': 45.0}},
               memory=1000.0),
        _model('fast_inaccurate', 'peer', 76.9, {'eager': {'1': 5.0, '8': 20.0}, 'onnxruntime': {'1': 1.0, '8': 4.0}}),
        # faster than every eligible peer and accurate enough, but distilled / at another test size: never picked
        _model('fast_distilled', 'peer', 80.0, {'eager': {'1': 2.0, '8': 8.0}, 'onnxruntime': {'1': 1.0, '8': 3.0}},
               excluded='distilled'),
        _model('fast_at_288', 'peer', 80.0, {'eager': {'1': 3.0, '8': 9.0}}, excluded='top-1 at 288'),
        _model('big', 'peer', 82.1, {'eager': {'1': 72.0, '8': 537.0}}, session=2, memory=4000.0),
    ]
    return {'kind': 'frontier', 'version': REPORT_VERSION,
            'settings': dict(image_size=224, batch_sizes=[1, 8], runtimes=list(RUNTIMES), train_batch=16, runs=10,
                             warmup=3, train_runs=5, threads=2, device='cpu', dtype='float32'),
            'models': {m['model']: m for m in models},
            'pairs': {'uniconvnet_a': {'peer': 'fast_eager', 'session': 1,
                                       'train_step_ms': {'uniconvnet_a': 1200.0, 'fast_eager': 800.0}}}}


def test_same_runtime_ratio_is_against_the_fastest_eligible_peer_in_that_runtime(report):
    rows = {row['variant']: row for row in frontier_rows(report)}
    a = rows['uniconvnet_a']
    assert sorted(a['eligible']) == ['big', 'fast_eager', 'fast_runtime']  # not below A, not distilled, not at 288
    eager_b1 = a['runtimes']['eager']['1']
    assert eager_b1['ms'] == 90.0
    assert eager_b1['same_runtime'] == dict(peer='fast_eager', runtime='eager', ms=30.0, ratio=3.0, same_session=True)
    assert a['runtimes']['eager']['8']['same_runtime']['peer'] == 'fast_runtime'  # the match is per batch size
    ort_b1 = a['runtimes']['onnxruntime']['1']
    assert ort_b1['same_runtime']['peer'] == 'fast_runtime' and ort_b1['same_runtime']['ratio'] == 10.0


def test_any_runtime_ratio_is_against_the_best_runtime_of_any_eligible_peer(report):
    a = {row['variant']: row for row in frontier_rows(report)}['uniconvnet_a']
    # eager A (90 ms) against fast_runtime in onnxruntime (6 ms), not against any peer's eager time
    assert a['runtimes']['eager']['1']['any_runtime'] == dict(peer='fast_runtime', runtime='onnxruntime', ms=6.0,
                                                              ratio=15.0)
    assert a['runtimes']['onnxruntime']['8']['any_runtime']['ratio'] == pytest.approx(300.0 / 45.0)


def test_excluded_peers_are_never_picked_and_missing_peers_leave_the_cell_empty(report):
    rows = {row['variant']: row for row in frontier_rows(report)}
    n0, b = rows['uniconvnet_n0'], rows['uniconvnet_b']
    assert n0['runtimes']['eager']['1']['same_runtime']['peer'] == 'big'  # fast_distilled and fast_at_288 skipped
    assert not n0['runtimes']['eager']['1']['same_runtime']['same_session']  # big was timed in another run
    assert b['eligible'] == [] and b['runtimes']['eager']['1']['same_runtime'] is None
    # limited to some models, the matches change with them
    only = {r['variant']: r for r in frontier_rows(report, ['uniconvnet_a', 'big'])}
    assert only['uniconvnet_a']['runtimes']['eager']['1']['same_runtime']['peer'] == 'big'


def test_training_columns_use_the_saved_pair(report):
    a = {row['variant']: row for row in frontier_rows(report)}['uniconvnet_a']
    assert a['train_step'] == (1200.0, 800.0, 1.5) and a['train_memory'] == (2000.0, 800.0, 2.5)


def test_tables_per_runtime_every_model_and_sources(report):
    report['models']['big']['errors'] = {'onnxruntime': 'RuntimeError: no kernel'}
    table = format_frontier(report)
    assert '### eager fp32' in table and '### onnxruntime' in table and '### OpenVINO f32' not in table
    assert '| A (77) | 90.0 | fast_eager (77.5) 30.0 | **3.00x** | fast_runtime (78), ORT 6.0 | **15.00x** |' in table
    assert '| N0 (81.6) | 108.0 | big (82.1) 72.0 | **1.50x** † |' in table and '† the two latencies' in table
    assert '| B (85) | 500.0 | none measured | — | none measured | — |' in table
    assert 'Every model, median ms at batch 8:' in table
    assert '| `fast_distilled` | 80 |' in table and 'distilled: not matched' in table
    assert 'top-1 at 288: not matched' in table
    assert '- `big`, onnxruntime: RuntimeError: no kernel' in table
    assert '- A: source of uniconvnet_a' in table
    assert '| A (77) | fast_eager (77.5) | 1200 vs 800 ms: **1.50x** | 2000 vs 800 MB: **2.50x** |' in table


def test_plots_one_per_runtime_and_memory(report, tmp_path):
    paths = plot_frontier(report, tmp_path / 'frontier')
    assert [p.name for p in paths] == ['frontier_eager.png', 'frontier_onnxruntime.png', 'frontier_memory.png']
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
    for model in report['models'].values():
        model.pop('train_peak_mb', None)
    assert [p.name for p in plot_frontier(report, tmp_path / 'no_memory')][-1] == 'no_memory_onnxruntime.png'


def test_log_axis_labels_only_2_3_5_between_decades():
    assert [_sparse_log_label(v) for v in (20, 30, 40, 50, 70, 200, 300, 500, 900)] == \
        ['20', '30', '', '50', '', '200', '300', '500', '']


# ---- the command, run small --------------------------------------------------------------------------------------

def _run(*argv):
    return main(['bench', '--frontier', *argv])


TINY = ['--size', '64', '--batch', '1', '2', '--train-batch', '0', '--runs', '1', '--warmup', '0', '--threads', '1']


@pytest.mark.slow
def test_frontier_command_in_every_runtime_resumes_and_goes_on_after_a_failure(tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('openvino')
    threads = torch.get_num_threads()
    stack_before = signal_stack() if sys.platform == 'linux' else None
    out = tmp_path / 'frontier.json'
    # resnet18 given a top-1 above A's: the only peer A can be matched with; mobileone is reparameterized
    assert _run('--variants', 'A', '--peers', 'resnet18=78', 'mobileone_s0', '--json', str(out), *TINY) == 0
    assert torch.get_num_threads() == threads  # --threads applied while measuring, PyTorch's setting restored
    if stack_before is not None:  # the OpenVINO sessions were released last opened first (see test_bench)
        assert signal_stack() == stack_before
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    models = report['models']
    assert report['version'] == REPORT_VERSION and report['requested'] == ['uniconvnet_a', 'resnet18', 'mobileone_s0']
    assert models['uniconvnet_a']['params'] == 3406732 and models['resnet18']['top1'] == 78.0
    assert models['mobileone_s0']['reparameterized'] and models['uniconvnet_a']['reparameterized']
    assert not models['resnet18']['reparameterized']
    for model in models.values():
        assert set(model['latency_ms']) == set(RUNTIMES), model['errors']
        for by_batch in model['latency_ms'].values():
            assert set(by_batch) == {'1', '2'} and all(ms > 0 for ms in by_batch.values())
    assert models['uniconvnet_a']['precision']['openvino_f32'] == 'f32'
    assert '| A (77) |' in table and 'resnet18 (78)' in table and '### OpenVINO f32' in table
    for runtime in RUNTIMES:
        assert (tmp_path / f'frontier_{runtime}.png').read_bytes()[:8] == PNG_SIGNATURE

    # extended by a peer that cannot run at this size (a ViT with a fixed 224 input): logged, the others measured
    # in a second run, the saved measurements untouched
    before = {name: m['latency_ms'] for name, m in models.items()}
    assert _run('--variants', 'A', '--peers', 'resnet18=78', 'mobileone_s0', 'vit_tiny_patch16_224=75.5',
                'convnext_atto', '--runtimes', 'eager', 'onnxruntime', '--json', str(out), *TINY) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert {name: m['latency_ms'] for name, m in report['models'].items() if name in before} == before
    assert report['models']['convnext_atto']['timed_in'] == {'eager': {'1': 2, '2': 2}, 'onnxruntime': {'1': 2, '2': 2}}
    vit = report['models']['vit_tiny_patch16_224']
    assert vit['latency_ms'] == {} and set(vit['errors']) >= {'eager', 'onnxruntime'}
    assert 'vit_tiny_patch16_224' in captured.err and '- `vit_tiny_patch16_224`, eager:' in captured.out

    # drawing again from the JSON measures nothing
    (tmp_path / 'frontier_eager.png').unlink()
    assert _run('--json', str(out), '--plot-only') == 0
    assert '| A (77) |' in capsys.readouterr().out and (tmp_path / 'frontier_eager.png').is_file()


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
    assert "unknown model 'resnet99'" in _error(capsys, '--frontier', '--peers', 'resnet99=70')
    err = _error(capsys, '--frontier', '--variants', 'A', '--peers', 'resnet18', '--runtimes', 'eager', 'tensorrt',
                 *TINY)
    assert 'unknown runtime(s) tensorrt; choose from: eager, eager_bf16, onnxruntime, openvino, openvino_f32' in err
    assert '--runtimes belong to --frontier' in _error(capsys, '--runtimes', 'eager')
    assert '--models, --no-openvino do not apply to --frontier' in _error(capsys, '--frontier', '--models',
                                                                           'resnet18', '--no-openvino')
    assert '--variants belong to --frontier' in _error(capsys, '--variants', 'A')
    assert 'pass it with --json' in _error(capsys, '--frontier', '--plot-only')
    missing = tmp_path / 'missing.json'
    assert 'no frontier report at' in _error(capsys, '--frontier', '--plot-only', '--json', str(missing))
    cold = tmp_path / 'cold.json'  # measured before visits were timed warm: not extended with warm timings
    cold.write_text(json.dumps({'kind': 'frontier', 'version': REPORT_VERSION, 'sessions': [], 'models': {},
                                'pairs': {}, 'settings': {'image_size': 64, 'threads': 1, 'device': 'cpu'}}))
    err = _error(capsys, '--frontier', '--variants', 'A', '--peers', 'resnet18', '--json', str(cold), *TINY)
    assert 'was measured with settle_calls=0, not settle_calls=1' in err and 'pass another --json path' in err
    old = tmp_path / 'old.json'  # written by the eager-only tool
    old.write_text(json.dumps({'kind': 'frontier', 'settings': {}, 'models': {}}))
    assert 'older frontier tool' in _error(capsys, '--frontier', '--plot-only', '--json', str(old))
    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'kind': 'frontier', 'version': REPORT_VERSION, 'requested': [],
                                 'settings': dict(image_size=32, batch_sizes=[1], train_batch=None, threads=1,
                                                  device='cpu', dtype='float32'),
                                 'sessions': [], 'models': {}, 'pairs': {}}))
    err = _error(capsys, '--frontier', '--variants', 'A', '--peers', 'resnet18', '--json', str(other), *TINY)
    assert 'was measured with image_size=32' in err and 'another --json path' in err
    with pytest.raises(ValueError, match='top-1 must be a percentage'):
        resolve_peers(['resnet18=180'])
    assert "unknown device 'tpu'" in _error(capsys, '--frontier', '--device', 'tpu', '--variants', 'A',
                                           '--peers', 'resnet18', *TINY)
    if not torch.cuda.is_available():
        assert 'no CUDA device' in _error(capsys, '--models', 'resnet18', '--device', 'cuda', *TINY)
