"""The accuracy-latency frontier: UniConvNet variants against timm peers of published top-1, in every runtime.

Users compare backbones where they deploy them. For every UniConvNet variant, every runtime
(:mod:`uniconvnet.speed.runtimes`: eager fp32, eager bf16 autocast, onnxruntime, OpenVINO at its default precision
and in f32) and every batch size, the table gives:

* **same runtime**: the ratio against the fastest peer at least as accurate (published ImageNet-1k top-1 at 224,
  :mod:`uniconvnet.speed.peers`) in that runtime;
* **any runtime**: the ratio against the fastest such peer in whichever runtime runs it fastest.

Distilled peers and top-1s published at another test size are shown but never picked. Every model is built with
random weights and reparameterized (``timm.utils.reparameterize_model``: UniConvNet's ``fuse()``, MobileOne's,
FastViT's and RepViT's branch folding) before it is timed or exported.

How it is measured: one loop per runtime and batch size, every model that lacks that measurement interleaved in it
(one visit to each in turn, ``runs`` times after ``warmup`` rounds; medians), so that load on the machine slows all
of them alike; each visit times the model's second call, warm (:data:`~uniconvnet.speed.benchmark.SETTLE_CALLS`);
``threads`` for every runtime. Then, optionally, a training step of each variant with its eager match
(the two interleaved) and the peak training memory of every model (each in a fresh process).

A full run takes hours, so the report is saved as JSON after every loop and reused: run again with the same
``json_path`` and only what is missing is measured (a killed run resumes, an added peer or runtime is measured
alone). A model that cannot be built, exported or run is logged, its error kept in the report, and the run goes on;
the next run tries it again. Measurements from different runs are not interleaved with each other: each records the
run it was taken in, and the table marks a ratio across runs with †.
"""
import datetime
import importlib.metadata
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..host import torch_threads
from ..models import create_model
from .benchmark import (SETTLE_CALLS, _check_counts, interleaved_medians, measure_complexity_of, save_report,
                        time_training)
from .memory import train_peak_memory_mb
from .peers import Published
from .runtimes import PEER_ONNX_OPSET, RUNTIME_BY_NAME, RUNTIMES, Exporter, check_runtimes, deployed, usable_runtimes
from .spec import ModelSpec, check_device, synchronized

__all__ = ['REPORT_VERSION', 'format_frontier', 'frontier_rows', 'load_frontier', 'measured_runtimes',
           'run_frontier']

REPORT_VERSION = 2
# settings that must match for a saved report to be extended (the rest, e.g. run counts, may differ)
_MATCHING_SETTINGS = ('image_size', 'threads', 'device', 'settle_calls')
# what a report written before a setting existed was measured with
_SETTINGS_BEFORE_RECORDED = {'settle_calls': 0}
PathLike = Union[str, Path]
Log = Callable[[str], None]


def load_frontier(path: PathLike) -> Dict[str, Any]:
    """A report written by :func:`run_frontier`; FileNotFoundError or ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no frontier report at {path} (measure first: uniconvnet bench --frontier --json '
                                f'{path})')
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not JSON ({e}); delete it or pass another --json path') from None
    if not isinstance(report, dict) or report.get('kind') != 'frontier':
        raise ValueError(f'{path} is not a frontier report (written by uniconvnet bench --frontier)')
    if report.get('version') != REPORT_VERSION:
        raise ValueError(f'{path} was written by an older frontier tool (eager latency only): pass another --json '
                         f'path, or delete it to measure afresh')
    return report


def _start_report(path: Optional[PathLike], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The saved report to extend (same settings), or a new one."""
    if path is None or not Path(path).is_file():
        return {'kind': 'frontier', 'version': REPORT_VERSION, 'settings': settings, 'sessions': [], 'models': {},
                'pairs': {}}
    report = load_frontier(path)
    saved = report['settings']
    for key, value in _SETTINGS_BEFORE_RECORDED.items():
        saved.setdefault(key, value)
    differing = [k for k in _MATCHING_SETTINGS if saved.get(k) != settings[k]]
    if settings['train_batch'] and saved.get('train_batch') and saved['train_batch'] != settings['train_batch']:
        differing.append('train_batch')
    if differing:
        old = ', '.join(f'{k}={saved.get(k)}' for k in differing)
        new = ', '.join(f'{k}={settings[k]}' for k in differing)
        raise ValueError(f'{path} was measured with {old}, not {new}: pass another --json path to start afresh, '
                         f'or the same settings to extend it')
    saved.update({k: v for k, v in settings.items() if k != 'train_batch' or v})
    return report


def _entry(published: Published, family: str) -> Dict[str, Any]:
    return dict(model=published.model, family=family, short_name=published.short_name, tag=published.tag,
                weights=published.weights, top1=published.top1, img_size=published.img_size,
                distilled=published.distilled, excluded=published.excluded, source=published.source)


def _versions() -> Dict[str, str]:
    """Versions of torch and the installed runtimes, read from their package metadata. Not by importing them:
    importing openvino loads the TBB library it ships, and numba, whose threading layer starts on our first DCN
    forward, then picks TBB over OpenMP; UniConvNet-A's eager forward ran 1.1x slower on it (batch 1 and 8, two
    processes alternating), which would bias the eager columns."""
    versions = {'torch': torch.__version__}
    for package, distributions in (('onnxruntime', ('onnxruntime', 'onnxruntime-gpu')), ('openvino', ('openvino',))):
        for distribution in distributions:
            try:
                versions[package] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def run_frontier(
        variants: Sequence[Published],
        peers: Sequence[Published],
        *,
        image_size: int = 224,
        batch_sizes: Sequence[int] = (1, 8),
        runtimes: Sequence[str] = RUNTIMES,
        train_batch: Optional[int] = None,
        runs: int = 10,
        warmup: int = 3,
        train_runs: int = 5,
        threads: Optional[int] = None,
        device: str = 'cpu',
        memory: bool = True,
        json_path: Optional[PathLike] = None,
        log: Log = lambda message: None,
) -> Dict[str, Any]:
    """Measure what the frontier tables and plots need, reusing a saved report at ``json_path``.

    ``variants`` and ``peers`` come from :func:`~uniconvnet.speed.peers.resolve_variants` and
    :func:`~uniconvnet.speed.peers.resolve_peers`; ``runtimes`` are names from
    :data:`~uniconvnet.speed.runtimes.RUNTIMES`. ``threads`` (None: PyTorch's current count) is used by every
    runtime; PyTorch's own setting is restored afterwards. ``train_batch`` adds training steps and peak memory.
    The report is written to ``json_path`` after every loop. Returns it; the requested models are in
    ``report['requested']``.
    """
    _check_counts(runs, warmup, train_runs, batch_sizes, train_batch)
    device = check_device(device)
    runtimes = check_runtimes(runtimes)
    if not variants or not peers:
        raise ValueError('the frontier needs at least one UniConvNet variant and one peer')
    with torch_threads(threads) as threads:
        settings = dict(image_size=image_size, batch_sizes=list(batch_sizes), runtimes=list(runtimes),
                        train_batch=train_batch, runs=runs, warmup=warmup, settle_calls=SETTLE_CALLS,
                        train_runs=train_runs, threads=threads,
                        device=device, dtype='float32', versions=_versions(),
                        models='reparameterized (timm.utils.reparameterize_model; UniConvNet: fuse())',
                        exports=dict(uniconvnet='uniconvnet.export.export_model(model, path, format, (size, size))',
                                     peers=f'torch.onnx.export(opset_version={PEER_ONNX_OPSET}, dynamic batch); '
                                           f'OpenVINO IR converted from that ONNX (float32 weights)'))
        report = _start_report(json_path, settings)
        session = len(report['sessions']) + 1
        report['sessions'].append({'started': datetime.datetime.now().isoformat(timespec='seconds')})
        entries = [_entry(v, 'uniconvnet') for v in variants] + [_entry(p, 'peer') for p in peers]
        report['requested'] = list(dict.fromkeys(e['model'] for e in entries))
        models = report['models']
        for entry in entries:
            models[entry['model']] = {'latency_ms': {}, 'timed_in': {}, 'errors': {},
                                      **models.get(entry['model'], {}), **entry}

        def save() -> None:
            if json_path is not None:
                save_report(report, json_path)

        save()
        _measure_complexity(models, report['requested'], image_size, log)
        _measure_latency(report, runtimes, session, save, log)
        if train_batch:
            for variant, peer in _training_matches(report).items():
                _measure_pair(report, variant, peer, session, log)
                save()
            if memory:
                for name in report['requested']:
                    if 'train_peak_mb' not in models[name]:
                        _measure_memory(models[name], report['settings'], log)
                        save()
        save()
    return report


def _record_error(entry: Dict[str, Any], step: str, error: BaseException, log: Log) -> None:
    entry['errors'][step] = f'{type(error).__name__}: {error}'.strip().splitlines()[0][:300]
    log(f'{entry["model"]}: {step} failed: {entry["errors"][step]}')


def _measure_complexity(models: Dict[str, Dict[str, Any]], names: Sequence[str], image_size: int, log: Log) -> None:
    for name in names:
        if 'total_macs' not in models[name]:
            log(f'complexity, {name}')
            try:
                models[name].update(measure_complexity_of(name, image_size))
                models[name]['errors'].pop('complexity', None)
            except Exception as e:  # a model timm cannot build: reported, the others go on
                _record_error(models[name], 'complexity', e, log)


def _reparameterizable(model: nn.Module) -> bool:
    return any(hasattr(m, attr) for m in model.modules() if m is not model
               for attr in ('fuse', 'reparameterize', 'switch_to_deploy'))


def _build_for_inference(entry: Dict[str, Any], device: str) -> nn.Module:
    """The architecture with random weights, in eval mode and reparameterized as for deployment."""
    from timm.utils import reparameterize_model
    model = create_model(entry['model']).eval().to(device)
    entry['reparameterized'] = _reparameterizable(model)
    return reparameterize_model(model, inplace=True)


def _missing(entry: Dict[str, Any], runtime: str, batches: Sequence[str]) -> bool:
    return any(b not in entry['latency_ms'].get(runtime, {}) for b in batches)


def _measure_latency(report: Dict[str, Any], runtimes: Sequence[str], session: int, save: Callable[[], None],
                     log: Log) -> None:
    """One interleaved loop per runtime and batch size over the requested models that lack that measurement."""
    settings, models = report['settings'], report['models']
    batches = [str(b) for b in settings['batch_sizes']]
    usable = usable_runtimes(runtimes, settings['device'], log)
    todo = {rt: [n for n in report['requested'] if _missing(models[n], rt, batches)] for rt in usable}
    needed = [n for n in report['requested'] if any(n in names for names in todo.values())]
    if not needed:
        return
    log(f'building {len(needed)} models for inference (reparameterized)')
    built: Dict[str, nn.Module] = {}
    for name in needed:
        try:
            built[name] = _build_for_inference(models[name], settings['device'])
            models[name]['errors'].pop('build', None)
        except Exception as e:
            _record_error(models[name], 'build', e, log)
    with tempfile.TemporaryDirectory(prefix='uniconvnet-frontier-') as folder:
        exporter = Exporter(Path(folder), settings['image_size'])
        for runtime in usable:
            names = [n for n in todo[runtime] if n in built]
            if names:
                _measure_runtime(report, runtime, {n: built[n] for n in names}, exporter, batches, session, save,
                                 log)


def _measure_runtime(report: Dict[str, Any], runtime: str, built: Dict[str, nn.Module], exporter: Exporter,
                     batches: Sequence[str], session: int, save: Callable[[], None], log: Log) -> None:
    settings, models = report['settings'], report['models']
    device = settings['device'] if not RUNTIME_BY_NAME[runtime].deployment else 'cpu'
    candidates = {n: (m, models[n]['family'] == 'uniconvnet') for n, m in built.items()}
    with deployed(candidates, runtime, exporter, settings['threads'], device, log) as (sessions, errors, precisions):
        for name, error in errors.items():
            models[name]['errors'][runtime] = error
        for name, precision in precisions.items():
            models[name].setdefault('precision', {})[runtime] = precision
        for batch in batches:
            cell = [n for n in sessions if batch not in models[n]['latency_ms'].get(runtime, {})]
            if not cell:
                continue
            log(f'{runtime}, batch {batch}: {len(cell)} models interleaved')
            images = torch.randn(int(batch), 3, settings['image_size'], settings['image_size'], device=device)
            runners = {n: synchronized(lambda s=sessions[n]: s(images), device) for n in cell}
            failed: Dict[str, str] = {}
            with torch.inference_mode():
                latency = interleaved_medians(runners, settings['runs'], settings['warmup'], failed)
            del runners
            for name, ms in latency.items():
                models[name]['latency_ms'].setdefault(runtime, {})[batch] = ms
                models[name]['timed_in'].setdefault(runtime, {})[batch] = session
                models[name]['errors'].pop(runtime, None)
            for name, error in failed.items():
                models[name]['errors'][runtime] = f'batch {batch}: {error}'
                log(f'{runtime}, batch {batch}: {name} not measured: {error}')
            save()


# ---- training and memory (optional) ------------------------------------------------------------------------------

def _training_matches(report: Dict[str, Any]) -> Dict[str, str]:
    """Each requested variant's fastest equally accurate peer in eager fp32 at the first batch size."""
    models, names = report['models'], report['requested']
    first = str(report['settings']['batch_sizes'][0])
    matches = {}
    for name in names:
        if models[name]['family'] == 'uniconvnet':
            best = _fastest(models, eligible_peers(models, names, name), ['eager'], first)
            if best is not None:
                matches[name] = best['peer']
    return matches


def _measure_pair(report: Dict[str, Any], variant: str, peer: str, session: int, log: Log) -> None:
    saved = report['pairs'].get(variant)
    if saved is not None and saved['peer'] == peer:
        return
    settings = report['settings']
    log(f'training steps, {variant} and {peer} interleaved, batch {settings["train_batch"]}')
    try:
        step_ms = time_training([ModelSpec(variant), ModelSpec(peer)], settings['train_batch'],
                                settings['image_size'], settings['train_runs'], settings['device'])
    except Exception as e:
        _record_error(report['models'][variant], 'training', e, log)
        return
    report['pairs'][variant] = {'peer': peer, 'session': session,
                                'train_step_ms': {variant: step_ms[variant], peer: step_ms[peer]}}


def _measure_memory(entry: Dict[str, Any], settings: Dict[str, Any], log: Log) -> None:
    """Peak training memory in a fresh process; a failure (e.g. the process killed for memory) is logged and
    left for the next run to retry, and the other models are still measured."""
    log(f'peak training memory, {entry["model"]}, batch {settings["train_batch"]}')
    try:
        entry['train_peak_mb'] = train_peak_memory_mb(ModelSpec(entry['model']), settings['train_batch'],
                                                      settings['image_size'], settings['threads'], settings['device'])
        entry['errors'].pop('memory', None)
    except Exception as e:  # BrokenProcessPool, CUDA out of memory, ...
        _record_error(entry, 'memory', e, log)


# ---- the comparisons ---------------------------------------------------------------------------------------------

def measured_runtimes(report: Dict[str, Any]) -> List[str]:
    """The runtimes any model of the report was timed in, in :data:`RUNTIMES` order."""
    return [rt for rt in RUNTIMES if any(rt in m.get('latency_ms', {}) for m in report['models'].values())]


def eligible_peers(models: Dict[str, Dict[str, Any]], names: Sequence[str], variant: str) -> List[str]:
    """The peers among ``names`` that may be a variant's match: top-1 at least the variant's, not excluded."""
    top1 = models[variant]['top1']
    return [n for n in names if models[n]['family'] == 'peer' and not models[n].get('excluded')
            and models[n]['top1'] >= top1]


def _fastest(models: Dict[str, Dict[str, Any]], candidates: Sequence[str], runtimes: Sequence[str],
             batch: str) -> Optional[Dict[str, Any]]:
    """The lowest latency at ``batch`` among ``candidates`` in any of ``runtimes``: peer, runtime, ms."""
    best = None
    for name in candidates:
        for runtime in runtimes:
            ms = models[name].get('latency_ms', {}).get(runtime, {}).get(batch)
            if ms is not None and (best is None or ms < best['ms']):
                best = {'peer': name, 'runtime': runtime, 'ms': ms}
    return best


def _timed_in(entry: Dict[str, Any], runtime: str, batch: str) -> Optional[int]:
    return entry.get('timed_in', {}).get(runtime, {}).get(batch)


def frontier_rows(report: Dict[str, Any], names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """One row per UniConvNet variant among ``names`` (default: the report's requested models, else all).

    ``row['runtimes'][runtime][batch]`` holds ``ms`` (the variant's latency) and two matches among the eligible
    peers (:func:`eligible_peers`), each ``None`` or a dict of ``peer``, ``runtime``, ``ms`` and ``ratio``
    (variant / peer): ``same_runtime``, the fastest in this runtime, with ``same_session`` (False when the two were
    timed in different runs); ``any_runtime``, the fastest in any runtime. ``train_step`` and ``train_memory`` are
    ``(variant, peer, ratio)`` against the eager match when measured, else None.
    """
    models = report['models']
    names = list(names or report.get('requested') or models)
    runtimes = measured_runtimes(report)
    rows = []
    for name in names:
        variant = models[name]
        if variant['family'] != 'uniconvnet':
            continue
        candidates = eligible_peers(models, names, name)
        row: Dict[str, Any] = {'variant': name, 'eligible': candidates, 'runtimes': {}, 'train_step': None,
                               'train_memory': None}
        for runtime in runtimes:
            for batch, ms in variant.get('latency_ms', {}).get(runtime, {}).items():
                cell: Dict[str, Any] = {'ms': ms, 'same_runtime': None, 'any_runtime': None}
                for key, among in (('same_runtime', [runtime]), ('any_runtime', runtimes)):
                    best = _fastest(models, candidates, among, batch)
                    if best is not None:
                        cell[key] = dict(best, ratio=ms / best['ms'])
                if cell['same_runtime'] is not None:
                    peer = models[cell['same_runtime']['peer']]
                    cell['same_runtime']['same_session'] = (_timed_in(variant, runtime, batch)
                                                            == _timed_in(peer, runtime, batch))
                row['runtimes'].setdefault(runtime, {})[batch] = cell
        pair = report.get('pairs', {}).get(name)
        if pair is not None and pair['peer'] in candidates:
            steps = pair['train_step_ms']
            row['train_step'] = (steps[name], steps[pair['peer']], steps[name] / steps[pair['peer']])
            peer = models[pair['peer']]
            if 'train_peak_mb' in variant and 'train_peak_mb' in peer:
                row['train_memory'] = (variant['train_peak_mb'], peer['train_peak_mb'],
                                       variant['train_peak_mb'] / peer['train_peak_mb'])
            row['training_peer'] = pair['peer']
        rows.append(row)
    return rows


# ---- the tables --------------------------------------------------------------------------------------------------

def _settle_note(settings: Dict[str, Any]) -> str:
    calls = settings.get('settle_calls', _SETTINGS_BEFORE_RECORDED['settle_calls'])
    if not calls:
        return ", each visit timing a model's first call after the others ran"
    return f', each visit timing the call after {calls} untimed one{"s" if calls > 1 else ""} (warm)'


def _name_with_top1(entry: Dict[str, Any]) -> str:
    return f"{entry['short_name']} ({entry['top1']:g})"


def _runtime_title(runtime: str) -> str:
    return RUNTIME_BY_NAME[runtime].title


def _same_runtime_cell(match: Optional[Dict[str, Any]], models: Dict[str, Dict[str, Any]]) -> List[str]:
    if match is None:
        return ['none measured', '—']
    mark = '' if match['same_session'] else ' †'
    return [f"{_name_with_top1(models[match['peer']])} {match['ms']:.1f}", f"**{match['ratio']:.2f}x**{mark}"]


def _any_runtime_cell(match: Optional[Dict[str, Any]], models: Dict[str, Dict[str, Any]]) -> List[str]:
    if match is None:
        return ['none measured', '—']
    return [f"{_name_with_top1(models[match['peer']])}, {RUNTIME_BY_NAME[match['runtime']].short} {match['ms']:.1f}",
            f"**{match['ratio']:.2f}x**"]


def _runtime_table(runtime: str, rows: List[Dict[str, Any]], models: Dict[str, Dict[str, Any]],
                   batches: Sequence[str]) -> List[str]:
    header = ['UniConvNet (top-1)']
    for b in batches:
        header += [f'b{b} ms', f'b{b} same runtime: peer, ms', 'x', f'b{b} any runtime: peer, runtime, ms', 'x']
    lines = [f'### {_runtime_title(runtime)}', '', '| ' + ' | '.join(header) + ' |',
             '|---|' + '---:|---|---:|---|---:|' * len(batches)]
    for row in rows:
        cells = [_name_with_top1(models[row['variant']])]
        for b in batches:
            cell = row['runtimes'].get(runtime, {}).get(b)
            if cell is None:
                cells += ['—'] * 5
                continue
            cells += [f"{cell['ms']:.1f}", *_same_runtime_cell(cell['same_runtime'], models),
                      *_any_runtime_cell(cell['any_runtime'], models)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines + ['']


def _note(entry: Dict[str, Any]) -> str:
    notes = []
    if entry.get('excluded'):
        notes.append(f"{entry['excluded']}: not matched")
    if entry.get('errors'):
        notes.append('errors: ' + ', '.join(entry['errors']))
    return '; '.join(notes)


def _models_table(names: Sequence[str], models: Dict[str, Dict[str, Any]], runtimes: Sequence[str],
                  batch: str) -> List[str]:
    header = ['model', 'top-1', 'weights of the top-1 (test size)', 'params (M)', 'GMACs']
    header += [RUNTIME_BY_NAME[rt].short for rt in runtimes] + ['note']
    lines = [f'Every model, median ms at batch {batch}:', '', '| ' + ' | '.join(header) + ' |',
             '|---|---:|---|---:|---:|' + '---:|' * len(runtimes) + '---|']
    for name in sorted(names, key=lambda n: (models[n]['top1'], n)):
        m = models[name]
        weights = f"`{m['weights']}` ({m['img_size']})" if m.get('tag') else '(top-1 given)'
        cells = [f"`{name}`", f"{m['top1']:g}", weights,
                 f"{m['params'] / 1e6:.1f}" if 'params' in m else '—',
                 f"{m['total_macs'] / 1e9:.2f}" if 'total_macs' in m else '—']
        cells += [f"{m['latency_ms'][rt][batch]:.1f}" if batch in m.get('latency_ms', {}).get(rt, {}) else '—'
                  for rt in runtimes]
        cells.append(_note(m))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines + ['']


def _pair_cell(values: Optional[tuple], unit: str) -> str:
    if values is None:
        return '—'
    mine, theirs, ratio = values
    return f'{mine:.0f} vs {theirs:.0f} {unit}: **{ratio:.2f}x**'


def _training_table(rows: List[Dict[str, Any]], models: Dict[str, Dict[str, Any]], train_batch: int) -> List[str]:
    lines = [f'Training (batch {train_batch}) against the eager fp32 match at the first batch size: a step '
             f'(forward, backward, AdamW; the pair interleaved) and its peak memory (each model in a fresh process).',
             '', '| UniConvNet (top-1) | peer | training step | peak training memory |', '|---|---|---|---|']
    for row in rows:
        peer = row.get('training_peer')
        lines.append(f"| {_name_with_top1(models[row['variant']])} | "
                     f"{_name_with_top1(models[peer]) if peer else '—'} | {_pair_cell(row['train_step'], 'ms')} | "
                     f"{_pair_cell(row['train_memory'], 'MB')} |")
    return lines + ['']


def format_frontier(report: Dict[str, Any], names: Optional[Sequence[str]] = None) -> str:
    """Markdown: a table per runtime, every model's latencies per batch size, training, and every top-1's source."""
    settings, models = report['settings'], report['models']
    names = list(names or report.get('requested') or models)
    batches = [str(b) for b in settings['batch_sizes']]
    runtimes = measured_runtimes(report)
    rows = frontier_rows(report, names)
    precisions = sorted({p for m in models.values() for rt, p in m.get('precision', {}).items() if rt == 'openvino'})
    lines = [f"{settings['image_size']}x{settings['image_size']} images, {settings['device']}, {settings['threads']} "
             f"threads in every runtime; medians of {settings['runs']} runs, all models interleaved in one loop per "
             f"runtime and batch size{_settle_note(settings)}. Every model reparameterized "
             f"(`timm.utils.reparameterize_model`; UniConvNet: `fuse()`); UniConvNet exported with "
             f"`uniconvnet.export.export_model`, peers with `torch.onnx.export` "
             f"(opset {PEER_ONNX_OPSET}) and OpenVINO IR converted from that ONNX."
             + (f" OpenVINO's default precision here: {', '.join(precisions)}." if precisions else '')
             + ' For each UniConvNet variant (top-1), runtime and batch size: its latency (ms); the fastest peer at '
               'least as accurate in the same runtime, and the fastest such peer in any runtime, with the ratio '
               'x = UniConvNet / peer (below 1: UniConvNet is faster). Peers: published ImageNet-1k top-1 at 224 '
               'at least the variant\'s; distilled weights and top-1s at other test sizes are never matched. "Any '
               'runtime" compares with loops of other runtimes, timed at other moments. Runtimes: '
               + ', '.join(f'{RUNTIME_BY_NAME[rt].short} = {RUNTIME_BY_NAME[rt].title}' for rt in runtimes) + '.', '']
    for runtime in runtimes:
        lines += _runtime_table(runtime, rows, models, batches)
    if any('†' in line for line in lines):
        lines += ['† the two latencies come from different runs (resumed or extended report): not interleaved.', '']
    for batch in batches:
        lines += _models_table(names, models, runtimes, batch)
    if any(row['train_step'] or row['train_memory'] for row in rows):
        lines += _training_table(rows, models, settings['train_batch'])
    errors = [(n, step, e) for n in names for step, e in models[n].get('errors', {}).items()]
    if errors:
        lines += ['Not measured (the next run tries again):', '']
        lines += [f'- `{n}`, {step}: {e}' for n, step, e in errors] + ['']
    sources: Dict[str, List[str]] = {}
    for name in names:
        sources.setdefault(models[name]['source'], []).append(models[name]['short_name'])
    lines += ['Top-1 sources (ImageNet-1k only):']
    lines += [f"- {', '.join(who)}: {source}" for source, who in sources.items()]
    return '\n'.join(lines)
