"""The accuracy-latency-memory frontier: UniConvNet variants against timm peers with published top-1.

For every UniConvNet variant the table names the fastest peer that is at least as accurate (published
ImageNet-1k top-1 at 224, :mod:`uniconvnet.speed.peers`) and the ratios variant / peer at each inference
batch size, for a training step and for peak training memory; two PNG plots place every model by top-1 against
latency and against peak training memory (drawn by :mod:`uniconvnet.speed.plots`). Built from :mod:`uniconvnet.speed.benchmark`'s steps:

1. parameters and MACs of every model;
2. inference latency of all models interleaved in one loop per batch size (UniConvNet ``fuse()``d, peers as
   timm builds them), the fastest peer at the first batch size deciding each variant's match;
3. a training step (forward, backward, AdamW) of each variant and its match, the two interleaved;
4. peak training memory of every model, each in a fresh process.

A full CPU run takes about an hour, so the report is saved (as JSON) after every step and reused: run again with
the same ``json_path`` and settings and only what is missing is measured (a killed run resumes; adding a peer
measures only that peer). Latencies measured in different runs are not interleaved with each other; every model
records the run (``session``) it was timed in and the table marks ratios across runs with a dagger.
"""
import datetime
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .benchmark import _check_counts, measure_complexity_of, pytorch_column, save_report, time_inference, time_training
from .memory import train_peak_memory_mb
from .spec import ModelSpec, check_device
from .peers import Published

__all__ = ['format_frontier', 'frontier_rows', 'load_frontier', 'run_frontier']

# settings that must match for a saved report to be extended (the rest, e.g. run counts, may differ)
_MATCHING_SETTINGS = ('image_size', 'batch_sizes', 'train_batch', 'threads', 'device', 'dtype')
PathLike = Union[str, Path]


def _inference_spec(entry: Dict[str, Any]) -> ModelSpec:
    # UniConvNet runs fuse()d for inference (layer scales and norm affines folded): how it is deployed
    return ModelSpec(entry['model'], fused=entry['family'] == 'uniconvnet')


def _training_spec(entry: Dict[str, Any]) -> ModelSpec:
    return ModelSpec(entry['model'])


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
    return report


def _start_report(path: Optional[PathLike], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The saved report to extend (same settings), or a new one."""
    if path is None or not Path(path).is_file():
        return {'kind': 'frontier', 'settings': settings, 'sessions': [], 'models': {}, 'pairs': {}}
    report = load_frontier(path)
    differing = [k for k in _MATCHING_SETTINGS if report['settings'].get(k) != settings[k]]
    if differing:
        old = ', '.join(f'{k}={report["settings"].get(k)}' for k in differing)
        new = ', '.join(f'{k}={settings[k]}' for k in differing)
        raise ValueError(f'{path} was measured with {old}, not {new}: pass another --json path to start afresh, '
                         f'or the same settings to extend it')
    report['settings'].update(runs=settings['runs'], warmup=settings['warmup'], train_runs=settings['train_runs'])
    return report


def _entry(published: Published, family: str) -> Dict[str, Any]:
    return dict(model=published.model, family=family, short_name=published.short_name, tag=published.tag,
                top1=published.top1, source=published.source)


def run_frontier(
        variants: Sequence[Published],
        peers: Sequence[Published],
        *,
        image_size: int = 224,
        batch_sizes: Sequence[int] = (1, 8),
        train_batch: Optional[int] = 16,
        runs: int = 10,
        warmup: int = 3,
        train_runs: int = 5,
        threads: Optional[int] = None,
        device: str = 'cpu',
        memory: bool = True,
        json_path: Optional[PathLike] = None,
        log: Callable[[str], None] = lambda message: None,
) -> Dict[str, Any]:
    """Measure what the frontier table and plots need, reusing a saved report at ``json_path``.

    ``variants`` and ``peers`` come from :func:`~uniconvnet.speed.peers.resolve_variants` and
    :func:`~uniconvnet.speed.peers.resolve_peers`. ``train_batch=None`` skips training and memory. The report
    is written to ``json_path`` after every step. Returns it; the requested models are in ``report['requested']``.
    """
    _check_counts(runs, warmup, train_runs, batch_sizes, train_batch)
    device = check_device(device)
    if not variants or not peers:
        raise ValueError('the frontier needs at least one UniConvNet variant and one peer')
    if threads:
        torch.set_num_threads(threads)
    settings = dict(image_size=image_size, batch_sizes=list(batch_sizes), train_batch=train_batch, runs=runs,
                    warmup=warmup, train_runs=train_runs, threads=torch.get_num_threads(), device=device,
                    dtype='float32', torch=torch.__version__, uniconvnet_inference='fuse()d')
    report = _start_report(json_path, settings)
    session = len(report['sessions']) + 1
    report['sessions'].append({'started': datetime.datetime.now().isoformat(timespec='seconds')})
    entries = [_entry(v, 'uniconvnet') for v in variants] + [_entry(p, 'peer') for p in peers]
    report['requested'] = [e['model'] for e in entries]
    models = report['models']
    for entry in entries:
        models[entry['model']] = {**models.get(entry['model'], {}), **entry}

    def save() -> None:
        if json_path is not None:
            save_report(report, json_path)

    _measure_complexity(models, report['requested'], image_size, log)
    _measure_latency(models, report['requested'], settings, session, log)
    save()
    if train_batch:
        for variant, peer in _matches(report).items():
            _measure_pair(report, variant, peer, settings, session, log)
            save()
        if memory:
            for name in report['requested']:
                if 'train_peak_mb' not in models[name]:
                    _measure_memory(models[name], settings, log)
                    save()
    return report


def _measure_memory(entry: Dict[str, Any], settings: Dict[str, Any], log: Callable[[str], None]) -> None:
    """Peak training memory in a fresh process; a failure (e.g. the process killed for memory) is logged and
    left for the next run to retry, and the other models are still measured."""
    log(f'peak training memory, {entry["model"]}, batch {settings["train_batch"]}')
    try:
        entry['train_peak_mb'] = train_peak_memory_mb(_training_spec(entry), settings['train_batch'],
                                                      settings['image_size'], settings['threads'], settings['device'])
    except Exception as e:  # BrokenProcessPool, CUDA out of memory, ...
        log(f'peak training memory of {entry["model"]} not measured: {type(e).__name__}: {e}')


def _measure_complexity(models: Dict[str, Dict[str, Any]], names: Sequence[str], image_size: int,
                        log: Callable[[str], None]) -> None:
    for name in names:
        if 'total_macs' not in models[name]:
            log(f'complexity, {name}')
            models[name].update(measure_complexity_of(name, image_size))


def _measure_latency(models: Dict[str, Dict[str, Any]], names: Sequence[str], settings: Dict[str, Any],
                     session: int, log: Callable[[str], None]) -> None:
    batches = [str(b) for b in settings['batch_sizes']]
    missing = [n for n in names if any(b not in models[n].get('latency_ms', {}) for b in batches)]
    if not missing:
        return
    log(f'building {len(missing)} models for inference')
    built = {name: _inference_spec(models[name]).build(train=False, device=settings['device']) for name in missing}
    log(f'inference latency, batch {", ".join(batches)}, {len(missing)} models interleaved')
    measured = time_inference({'latency_ms': pytorch_column(built, settings['device'])}, settings['batch_sizes'],
                              settings['image_size'], settings['runs'], settings['warmup'])
    for name in missing:
        models[name]['latency_ms'] = measured[name]['latency_ms']
        models[name]['session'] = session


def _fastest_peer(report: Dict[str, Any], variant: str) -> Optional[str]:
    """The requested peer with top-1 >= the variant's and the lowest latency at the first batch size."""
    models = report['models']
    first = str(report['settings']['batch_sizes'][0])
    candidates = [n for n in report['requested'] if models[n]['family'] == 'peer'
                  and models[n]['top1'] >= models[variant]['top1'] and first in models[n].get('latency_ms', {})]
    return min(candidates, key=lambda n: models[n]['latency_ms'][first], default=None)


def _matches(report: Dict[str, Any]) -> Dict[str, str]:
    matches = {}
    for name in report['requested']:
        if report['models'][name]['family'] == 'uniconvnet':
            peer = _fastest_peer(report, name)
            if peer is not None:
                matches[name] = peer
    return matches


def _measure_pair(report: Dict[str, Any], variant: str, peer: str, settings: Dict[str, Any], session: int,
                  log: Callable[[str], None]) -> None:
    saved = report['pairs'].get(variant)
    if saved is not None and saved['peer'] == peer:
        return
    models = report['models']
    log(f'training steps, {variant} and {peer} interleaved, batch {settings["train_batch"]}')
    step_ms = time_training([_training_spec(models[variant]), _training_spec(models[peer])], settings['train_batch'],
                            settings['image_size'], settings['train_runs'], settings['device'])
    report['pairs'][variant] = {'peer': peer, 'session': session,
                                'train_step_ms': {variant: step_ms[variant], peer: step_ms[peer]}}


# ---- the table ---------------------------------------------------------------------------------------------------

def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    return None if value is None or reference is None else value / reference


def frontier_rows(report: Dict[str, Any], names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """One row per UniConvNet variant among ``names`` (default: the report's requested models, else all).

    Each row: the variant, its fastest peer with top-1 >= its own among ``names`` (None when no peer is that
    accurate), and per quantity the pair of values and the ratio variant / peer: ``latency`` per batch size,
    ``train_step`` (from the pair's interleaved measurement), ``train_memory``. ``same_session`` is False when
    the two latencies come from different runs (not interleaved).
    """
    names = list(names or report.get('requested') or report['models'])
    view = dict(report, requested=names)
    models = report['models']
    rows = []
    for name in names:
        if models[name]['family'] != 'uniconvnet':
            continue
        peer = _fastest_peer(view, name)
        row: Dict[str, Any] = {'variant': name, 'peer': peer, 'latency': {}, 'train_step': None,
                               'train_memory': None, 'same_session': True}
        if peer is not None:
            v, p = models[name], models[peer]
            row['same_session'] = v.get('session') == p.get('session')
            for batch, ms in v.get('latency_ms', {}).items():
                peer_ms = p.get('latency_ms', {}).get(batch)
                row['latency'][batch] = (ms, peer_ms, _ratio(ms, peer_ms))
            pair = report['pairs'].get(name)
            if pair is not None and pair['peer'] == peer:
                steps = pair['train_step_ms']
                row['train_step'] = (steps[name], steps[peer], _ratio(steps[name], steps[peer]))
            if 'train_peak_mb' in v and 'train_peak_mb' in p:
                row['train_memory'] = (v['train_peak_mb'], p['train_peak_mb'],
                                       _ratio(v['train_peak_mb'], p['train_peak_mb']))
        rows.append(row)
    return rows


def _pair_cell(values: Optional[Tuple[float, Optional[float], Optional[float]]], unit: str, digits: int,
               mark: str = '') -> str:
    if values is None or values[1] is None:
        return '—'
    mine, theirs, ratio = values
    return f'{mine:.{digits}f} vs {theirs:.{digits}f} {unit}: **{ratio:.2f}x**{mark}'


def _name_with_top1(entry: Dict[str, Any]) -> str:
    return f"{entry['short_name']} ({entry['top1']:g})"


def format_frontier(report: Dict[str, Any], names: Optional[Sequence[str]] = None) -> str:
    """Markdown: the frontier table, every model's measurements, and the source of every top-1."""
    settings, models = report['settings'], report['models']
    names = list(names or report.get('requested') or models)
    batches = [str(b) for b in settings['batch_sizes']]
    rows = frontier_rows(report, names)
    train = settings['train_batch']
    lines = [f"{settings['image_size']}x{settings['image_size']}, float32, {settings['device']}, "
             f"{settings['threads']} threads; medians of {settings['runs']} interleaved runs (training: "
             f"{settings['train_runs']} steps of forward, backward and AdamW at batch {train}, the pair "
             f"interleaved; memory: peak of a step, each model in a fresh process). UniConvNet is fuse()d for "
             f"inference; ratios are UniConvNet / peer (below 1: UniConvNet is faster or smaller).", '',
             '| UniConvNet (top-1) | fastest peer with top-1 >= it | '
             + ' | '.join(f'batch {b}' for b in batches) + ' | training step | peak training memory |',
             '|---|---|' + '---|' * (len(batches) + 2)]
    crossed = False
    for row in rows:
        variant = models[row['variant']]
        if row['peer'] is None:
            lines.append(f"| {_name_with_top1(variant)} | none in the table |" + ' — |' * (len(batches) + 2))
            continue
        mark = '' if row['same_session'] else ' †'
        crossed = crossed or bool(mark)
        cells = [_name_with_top1(variant), _name_with_top1(models[row['peer']])]
        cells += [_pair_cell(row['latency'].get(b), 'ms', 1, mark) for b in batches]
        cells += [_pair_cell(row['train_step'], 'ms', 0), _pair_cell(row['train_memory'], 'MB', 0)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    if crossed:
        lines += ['', '† the two latencies come from different runs (resumed or extended report): not interleaved.']
    lines += ['', '| model | top-1 | timm tag of the top-1 | params (M) | GMACs | '
              + ' | '.join(f'ms @ b{b}' for b in batches) + f' | train MB @ b{train} | run |',
              '|---|---:|---|---:|---:|' + '---:|' * len(batches) + '---:|---:|']
    for name in sorted(names, key=lambda n: (models[n]['top1'], n)):
        m = models[name]
        tag = f"`{m['model']}.{m['tag']}`" if m['tag'] else '(given)'
        cells = [f"`{name}`" + (':fused' if m['family'] == 'uniconvnet' else ''), f"{m['top1']:g}", tag,
                 f"{m['params'] / 1e6:.1f}" if 'params' in m else '—',
                 f"{m['total_macs'] / 1e9:.2f}" if 'total_macs' in m else '—']
        cells += [f"{m['latency_ms'][b]:.1f}" if b in m.get('latency_ms', {}) else '—' for b in batches]
        cells += [f"{m['train_peak_mb']:.0f}" if 'train_peak_mb' in m else '—', str(m.get('session', '—'))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    sources: Dict[str, List[str]] = {}
    for name in names:
        sources.setdefault(models[name]['source'], []).append(models[name]['short_name'])
    lines += ['', 'Top-1 sources (ImageNet-1k only, 224x224):']
    lines += [f"- {', '.join(who)}: {source}" for source, who in sources.items()]
    return '\n'.join(lines)
