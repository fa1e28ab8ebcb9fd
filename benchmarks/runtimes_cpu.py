"""UniConvNet and its CPU peers in the runtimes users deploy with: eager PyTorch, onnxruntime, OpenVINO.

Ours are exported with ``uniconvnet.export.export_model`` (the deployment form, DeformConv / DeformableConvolution
where the runtime has it); the peers the way a new user exports a timm model: ``timm.utils.reparameterize_model``,
``torch.onnx.export`` at opset 17 (dynamic batch), OpenVINO IR converted from that ONNX. Every model in every
runtime is timed in one interleaved loop per batch size (medians), so that load from other processes hits all of
them alike. onnxruntime runs with ``intra_op_num_threads = --threads`` and without spinning threads (a spinning
pool would steal the cores from the next model in the loop); OpenVINO with ``INFERENCE_NUM_THREADS = --threads``,
one stream, the latency hint, in its default precision (bfloat16 on CPUs that have it) and in float32. Random
weights (speed does not depend on them); for ours, the largest |logit| difference of OpenVINO's default precision
from float32 eager is reported beside its speed.

Then, for each UniConvNet, the fastest peer at least as accurate in the same runtime and the ratio (issue 20's
targets: A <= 2.5x, N0 and T <= 1.5x in onnxruntime and OpenVINO f32), and each runtime against our eager.

``--profile MODEL`` prints instead where the time goes in each runtime (onnxruntime's profiler, OpenVINO's
performance counters): the operator types by share of the time.

Run: ``python benchmarks/runtimes_cpu.py`` (about 15 minutes on 2 cores; writes results/runtimes_cpu.{md,json}),
``python benchmarks/runtimes_cpu.py --profile uniconvnet_a --batch 8``, ``python benchmarks/runtimes_cpu.py --smoke``.
"""
import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.export import export_model, exported_sampling
from uniconvnet.speed.benchmark import interleaved_medians
from uniconvnet.speed.peers import matchable_top1
from uniconvnet.speed.runtimes import Exporter
from uniconvnet.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / 'results'
OURS = ('uniconvnet_a', 'uniconvnet_n0', 'uniconvnet_t')
PEERS = ('convnext_femto', 'efficientnet_b0', 'convnext_tiny', 'efficientvit_b2', 'efficientvit_l1')
RUNTIMES = ('eager', 'onnxruntime', 'openvino', 'openvino_f32')
LABELS = {'eager': 'eager', 'onnxruntime': 'ORT', 'openvino': 'OV', 'openvino_f32': 'OV f32'}


def build(name: str) -> torch.nn.Module:
    model = timm.create_model(name).eval()
    if name.startswith('uniconvnet'):
        return model.fuse()
    return timm.utils.reparameterize_model(model)


def export(name: str, model: torch.nn.Module, folder: Path, size: int, sampling: str = 'auto') -> Dict[str, Path]:
    """ONNX and OpenVINO IR: ours through uniconvnet.export (DCN ``sampling`` as export_model takes it), peers as a
    new user exports them."""
    if name.startswith('uniconvnet'):
        return {'onnx': export_model(model, folder / f'{name}.onnx', 'onnx', (size, size), sampling=sampling),
                'openvino': export_model(model, folder / f'{name}.xml', 'openvino', (size, size), sampling=sampling)}
    exporter = Exporter(folder, size)  # the frontier's export of a peer: opset 17, IR converted from that ONNX
    return {format: exporter(name, model, False, format) for format in ('onnx', 'openvino')}


def ort_session(path: Path, threads: int, profile_prefix: str = '') -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def ov_request(path: Path, threads: int, f32: bool, profile: bool = False) -> Any:
    import openvino as ov
    config = {'INFERENCE_NUM_THREADS': threads, 'NUM_STREAMS': 1, 'PERFORMANCE_HINT': 'LATENCY'}
    if f32:
        config['INFERENCE_PRECISION_HINT'] = 'f32'
    if profile:
        config['PERF_COUNT'] = True
    return ov.Core().compile_model(str(path), 'CPU', config).create_infer_request()


def measure(names: List[str], batches: List[int], size: int, runs: int, warmup: int, threads: int,
            folder: Path, sampling: str = 'auto') -> Dict[str, Any]:
    results: Dict[str, Any] = {'models': {}}
    models, sessions, requests = {name: build(name) for name in names}, {}, []
    # a forward of every model before any export: it starts numba's threading layer for our DCN kernels before the
    # exports import openvino, whose bundled TBB numba would otherwise take (slower; see uniconvnet.speed.frontier)
    with torch.inference_mode():
        for model in models.values():
            model(torch.zeros(1, 3, size, size))
    for name in names:
        start = time.perf_counter()
        paths = export(name, models[name], folder, size, sampling)
        sessions[name] = {'onnxruntime': ort_session(paths['onnx'], threads),
                          'openvino': ov_request(paths['openvino'], threads, f32=False),
                          'openvino_f32': ov_request(paths['openvino'], threads, f32=True)}
        requests += [sessions[name]['openvino'], sessions[name]['openvino_f32']]
        results['models'][name] = {'top1': matchable_top1(name),
                                   'sampling': {format: exported_sampling(path)[0] for format, path in paths.items()},
                                   'ms': {}}
        print(f'  {name}: exported in {time.perf_counter() - start:.0f} s', file=sys.stderr)
    for batch in batches:
        images = torch.randn(batch, 3, size, size)
        array = images.numpy()
        runners = {}
        for name in names:
            runners[(name, 'eager')] = lambda m=models[name]: m(images)
            runners[(name, 'onnxruntime')] = lambda s=sessions[name]['onnxruntime']: s.run(None, {'images': array})
            for key in ('openvino', 'openvino_f32'):
                runners[(name, key)] = lambda r=sessions[name][key]: r.infer({0: array})
        with torch.inference_mode():
            medians = interleaved_medians(runners, runs, warmup)
            for name in names:
                if name.startswith('uniconvnet') and batch == batches[0]:  # OpenVINO's default precision vs f32
                    reference = models[name](images).numpy()
                    out = sessions[name]['openvino'].infer({0: array})[0]
                    results['models'][name]['ov_default_max_abs_diff'] = float(np.abs(out - reference).max())
                    results['models'][name]['logit_std'] = float(reference.std())
        for (name, runtime), ms in medians.items():
            results['models'][name]['ms'].setdefault(runtime, {})[str(batch)] = ms
    # OpenVINO's CPU plugin restores the signal stack it found per compiled model: release last opened first
    for request in reversed(requests):
        del request
    return results


def fastest_peer(results: Dict[str, Any], name: str, runtime: str, batch: str):
    ours = results['models'][name]
    if ours['top1'] is None:
        return None
    peers = [(m['ms'][runtime][batch], peer) for peer, m in results['models'].items()
             if not peer.startswith('uniconvnet') and m['top1'] is not None and m['top1'] >= ours['top1']]
    return min(peers) if peers else None


def report(results: Dict[str, Any], batches: List[int], settings: str) -> str:
    lines = ['# Runtimes on the CPU (`benchmarks/runtimes_cpu.py`)', '', settings, '']
    header = ['model (top-1)'] + [f'{LABELS[r]} b{b}' for b in batches for r in RUNTIMES]
    lines += ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for name, m in results['models'].items():
        cells = [f'{m["ms"][r][str(b)]:.1f}' for b in batches for r in RUNTIMES]
        lines.append(f'| {name} ({m["top1"]}) | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Milliseconds, medians. UniConvNet: runtime / our eager (below 1: faster than eager), and against '
              'the fastest peer at least as accurate in the same runtime:', '',
              '| model | batch | ' + ' | '.join(f'{LABELS[r]} / eager' for r in RUNTIMES[1:]) + ' | ' +
              ' | '.join(f'vs peer ({LABELS[r]})' for r in RUNTIMES) + ' |',
              '|---|---:|' + '---:|' * (2 * len(RUNTIMES) - 1)]
    for name, m in results['models'].items():
        if not name.startswith('uniconvnet'):
            continue
        for b in map(str, batches):
            eager = m['ms']['eager'][b]
            cells = [f'{m["ms"][r][b] / eager:.2f}' for r in RUNTIMES[1:]]
            for r in RUNTIMES:
                peer = fastest_peer(results, name, r, b)
                cells.append(f'{m["ms"][r][b] / peer[0]:.2f}x {peer[1]}' if peer else '-')
            lines.append(f'| {name} | {b} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'OpenVINO in its default precision against float32 eager (largest |logit| difference, random '
              'weights; the logits\' standard deviation beside it):', '']
    for name, m in results['models'].items():
        if 'ov_default_max_abs_diff' in m:
            lines.append(f'- {name}: {m["ov_default_max_abs_diff"]:.2e} (logit std {m["logit_std"]:.2e}); '
                         f'DCN sampling: {m["sampling"]["onnx"]} in ONNX, {m["sampling"]["openvino"]} in OpenVINO')
    return '\n'.join(lines) + '\n'


def profile(name: str, batch: int, size: int, runs: int, threads: int, folder: Path, top: int = 12,
            sampling: str = 'auto') -> str:
    """Where the time goes in each runtime: operator types by share of the summed operator time."""
    model = build(name)
    paths = export(name, model, folder, size, sampling)
    array = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    lines = [f'## {name}, batch {batch}, {size}x{size}, {threads} threads', '']
    session = ort_session(paths['onnx'], threads, profile_prefix=str(folder / 'ort'))
    for _ in range(3 + runs):
        session.run(None, {'images': array})
    events = json.loads(Path(session.end_profiling()).read_text())
    run_starts = [e['ts'] for e in events if e.get('cat') == 'Session' and e['name'] == 'model_run']
    cut = run_starts[-runs]
    ops: Dict[str, float] = collections.Counter()
    for e in events:
        if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time') and e['ts'] >= cut:
            ops[e['args']['op_name']] += e['dur'] / 1e3 / runs
    lines += _share_table('onnxruntime', ops, top)
    for label, f32 in (('OpenVINO default precision', False), ('OpenVINO f32', True)):
        request = ov_request(paths['openvino'], threads, f32=f32, profile=True)
        for _ in range(3):
            request.infer({0: array})
        ops = collections.Counter()
        for _ in range(runs):
            request.infer({0: array})
            for info in request.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    ops[f'{info.node_type} ({info.exec_type})'] += info.real_time.total_seconds() * 1e3 / runs
        lines += _share_table(label, ops, top)
        del request
    return '\n'.join(lines)


def _share_table(label: str, ops: Dict[str, float], top: int) -> List[str]:
    total = sum(ops.values())
    lines = [f'{label}: {total:.1f} ms of operator time per run', '', '| operator | ms | share |', '|---|---:|---:|']
    for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f'| {op} | {ms:.2f} | {100 * ms / total:.1f}% |')
    return lines + ['']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=list(OURS + PEERS))
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--sampling', default='auto', choices=('auto', 'deformconv', 'gridsample'),
                        help="our DCN sampling in both runtimes (export_model's option; default: what it picks)")
    parser.add_argument('--profile', metavar='MODEL', help='profile MODEL in every runtime instead')
    parser.add_argument('--json', type=Path, default=RESULTS / 'runtimes_cpu.json')
    parser.add_argument('--smoke', action='store_true', help='tiny settings, writes nothing under results/')
    args = parser.parse_args()
    if args.smoke:
        args.models, args.batch, args.size, args.runs, args.warmup = ['uniconvnet_a', 'convnext_femto'], [1], 64, 2, 1
    torch.set_num_threads(args.threads)  # a benchmark script: its own process
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if args.profile:
            print(profile(args.profile, args.batch[0], args.size, args.runs, args.threads, Path(folder),
                          sampling=args.sampling))
            return
        results = measure(args.models, args.batch, args.size, args.runs, args.warmup, args.threads, Path(folder),
                          args.sampling)
    import onnxruntime
    import openvino
    settings = (f'{args.size}x{args.size}, {args.threads} threads, batches {args.batch}, medians of {args.runs} '
                f'interleaved runs; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenVINO '
                f'{openvino.__version__}; OV = OpenVINO\'s default precision, OV f32 = INFERENCE_PRECISION_HINT f32; '
                f'our DCN sampling: --sampling {args.sampling}.')
    text = report(results, args.batch, settings)
    print(text)
    if not args.smoke:
        results['settings'] = settings
        atomic_write_text(args.json, json.dumps(results, indent=1))
        atomic_write_text(args.json.with_suffix('.md'), text)


if __name__ == '__main__':
    main()
