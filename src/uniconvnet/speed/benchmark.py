"""Speed and memory of models side by side: inference latency, deployment runtimes, training steps, peak memory.

Every timing is taken in one process with the models interleaved (one visit to each model in turn, repeated), so
that a machine shared with other work slows all of them alike; each visit times the model's second call
(:data:`SETTLE_CALLS`), warm, as a model serving request after request runs. Ratios against the reference model,
absolute and per multiply-accumulate, are what to compare. The deployment runtimes (:mod:`uniconvnet.speed.runtimes`:
onnxruntime, OpenVINO at its default precision and in f32) run each model's export and are interleaved with the
PyTorch models, so "vs eager" compares runs taken at the same moments. Peak training memory is measured per model
in a fresh process (:mod:`uniconvnet.speed.memory`).

Model specs are timm names with optional modes after a colon, e.g. ``uniconvnet_t:fused``:

    plain     the reference (grid_sample) DCN core, plain ATen ops: what ONNX export runs
    fused     ``model.fuse()`` first (inference only)
    compile   ``torch.compile(model)`` (inference only; compiling takes minutes on a CPU)

:func:`run_benchmark` is a sequence of steps that other tools reuse (the frontier tool,
:mod:`uniconvnet.speed.frontier`): :func:`measure_complexity_of`, :func:`time_inference` (PyTorch and runtime
columns), :func:`time_training`, :func:`train_peak_memory_mb`, then the ratios.
"""
import json
import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..io import atomic_write
from ..models import create_model, is_uniconvnet
from .complexity import measure_complexity
from .memory import train_peak_memory_mb
from ..host import torch_threads
from .runtimes import DEPLOYMENT_RUNTIMES, Exporter, Session, deployed, usable_runtimes
from .spec import ModelSpec, Runner, check_device, synchronized, train_step_runner

__all__ = ['RUNTIMES', 'SETTLE_CALLS', 'ModelSpec', 'format_benchmark', 'format_profile', 'interleaved_medians',
           'measure_complexity_of', 'profile_inference', 'pytorch_column', 'run_benchmark', 'runtime_columns',
           'save_report', 'time_inference', 'time_training', 'train_peak_memory_mb']

# deployment runtimes (CPU only) measured beside eager PyTorch; each one's latencies are reported as '<runtime>_ms'
RUNTIMES = DEPLOYMENT_RUNTIMES
# Untimed calls at each visit before the timed one. With the models interleaved, a model's first call after the
# others ran is a cold one: its weights out of the caches, fresh buffers to fault in, its runtime's threads asleep
# (or, with onnxruntime's default spinning, another session's threads still holding the cores). In a loop of the
# frontier's 57 models at batch 1 that first call took 1.7x (UniConvNet-A: 54.7 against 31.9 ms) to 1.8x
# (EfficientNet-B0: 25.3 against 14.0 ms) the second in eager PyTorch; the second and third agreed within noise.
SETTLE_CALLS = 1
# a latency column: given the input images (on the CPU), one runner per model label
Column = Callable[[torch.Tensor], Dict[str, Runner]]


def _median_ms(times: List[float]) -> float:
    return statistics.median(times) * 1e3


def interleaved_medians(runners: Mapping[Any, Runner], runs: int, warmup: int,
                        errors: Optional[Dict[Any, str]] = None, settle_calls: int = SETTLE_CALLS
                        ) -> Dict[Any, float]:
    """Median wall time (ms) of each runner, the runners visited in turn ``runs`` times after ``warmup`` rounds.

    Each visit makes ``settle_calls`` untimed calls, then the timed one (see :data:`SETTLE_CALLS`). With an
    ``errors`` dict, a runner that raises is dropped from the loop and its error recorded there (the others go on);
    without one, the exception propagates.
    """
    active = dict(runners)
    times: Dict[Any, List[float]] = {label: [] for label in runners}
    for round_index in range(warmup + runs):
        for label, run in list(active.items()):
            try:
                for _ in range(settle_calls):
                    run()
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
            except Exception as e:
                if errors is None:
                    raise
                errors[label] = f'{type(e).__name__}: {e}'.strip().splitlines()[0][:300]
                del active[label]
                continue
            if round_index >= warmup:
                times[label].append(elapsed)
    return {label: _median_ms(times[label]) for label in active}


def _check_counts(runs: int, warmup: int, train_runs: int, batch_sizes: Sequence[int],
                  train_batch: Optional[int]) -> None:
    if runs < 1 or warmup < 0 or train_runs < 1:
        raise ValueError(f'runs and train_runs must be at least 1 and warmup at least 0, got {runs}, '
                         f'{train_runs}, {warmup}')
    if not batch_sizes or any(b < 1 for b in batch_sizes) or (train_batch is not None and train_batch < 1):
        raise ValueError(f'batch sizes must be positive, got {list(batch_sizes)} and train batch {train_batch}')


# ---- step: complexity -------------------------------------------------------------------------------------------

def measure_complexity_of(name: str, image_size: int) -> Dict[str, int]:
    """Parameters and MACs (DCN sampling separately) of the unmodified model ``name``, built on the meta device."""
    try:
        model = create_model(name, device='meta').eval()
    except Exception:  # a timm model that cannot be built on the meta device
        model = create_model(name).eval()
    return measure_complexity(model, (3, image_size, image_size)).as_dict()


# ---- step: inference latency (PyTorch and deployment runtimes) ---------------------------------------------------

def pytorch_column(models: Mapping[str, nn.Module], device: str = 'cpu') -> Column:
    """The PyTorch latency column: each model's forward on the images moved to ``device``."""
    def runners(images: torch.Tensor) -> Dict[str, Runner]:
        x = images.to(device)
        return {label: synchronized(lambda m=model: m(x), device) for label, model in models.items()}
    return runners


def time_inference(columns: Mapping[str, Column], batch_sizes: Sequence[int], image_size: int, runs: int,
                   warmup: int) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Median latency (ms) of every runner of every column, per batch size, all interleaved in one loop.

    Returns ``{model label: {column key: {batch: ms}}}`` (batch sizes as strings, JSON keys).
    """
    result: Dict[str, Dict[str, Dict[str, float]]] = {}
    for batch in batch_sizes:
        images = torch.randn(batch, 3, image_size, image_size)
        runners = {(key, label): run for key, column in columns.items() for label, run in column(images).items()}
        with torch.inference_mode():
            latency = interleaved_medians(runners, runs, warmup)
        for (key, label), ms in latency.items():
            result.setdefault(label, {}).setdefault(key, {})[str(batch)] = ms
    return result


@contextmanager
def runtime_columns(models: Mapping[str, Tuple[nn.Module, bool]], runtimes: Sequence[str], exporter: Exporter,
                    threads: int, log: Callable[[str], None] = lambda message: None) -> Iterator[Dict[str, Column]]:
    """One latency column per deployment runtime (report key ``<runtime>_ms``), on each model's export for it.

    ``models`` maps a label to ``(module, ours)`` (see :func:`~uniconvnet.speed.runtimes.deployed`). A model that
    cannot be exported or opened in a runtime is logged and left out of that column. Sessions are released on
    exit, the last opened first.
    """
    with ExitStack() as stack:
        columns: Dict[str, Column] = {}
        for runtime in runtimes:
            sessions, _, _ = stack.enter_context(deployed(models, runtime, exporter, threads, log=log))

            def column(images: torch.Tensor, sessions: Dict[str, Session] = sessions) -> Dict[str, Runner]:
                return {label: (lambda s=session: s(images)) for label, session in sessions.items()}
            columns[f'{runtime}_ms'] = column
        yield columns


# ---- step: training ----------------------------------------------------------------------------------------------

def time_training(specs: Sequence[ModelSpec], batch: int, image_size: int, runs: int,
                  device: str = 'cpu') -> Dict[str, float]:
    """Median time (ms) of a training step (forward, backward, AdamW) of each spec, interleaved, after one warm-up.

    Every step is timed (no settling calls): a step is long beside what a cold start adds, and each untimed one
    would cost a whole step."""
    steps = {s.label: train_step_runner(s.build(train=True, device=device), batch, image_size, device) for s in specs}
    return interleaved_medians(steps, runs, 1, settle_calls=0)


# ---- the whole benchmark -----------------------------------------------------------------------------------------

def _specs_with_reference(models: Sequence[str], reference: str) -> List[ModelSpec]:
    specs = [ModelSpec.parse(m) for m in models]
    reference_spec = ModelSpec.parse(reference)
    if reference_spec.label not in [s.label for s in specs]:
        specs.insert(0, reference_spec)
    return specs


def run_benchmark(
        models: Sequence[str],
        reference: str = 'convnext_tiny',
        image_size: int = 224,
        batch_sizes: Sequence[int] = (1, 8),
        train_batch: Optional[int] = 16,
        runs: int = 10,
        warmup: int = 3,
        train_runs: int = 5,
        threads: Optional[int] = None,
        runtimes: Sequence[str] = RUNTIMES,
        memory: bool = True,
        device: str = 'cpu',
        log: Callable[[str], None] = lambda message: None,
) -> Dict[str, Any]:
    """Measure ``models`` (specs, see the module docstring) and ``reference`` side by side.

    Returns a JSON-ready dict: settings, and per model its parameters, MACs, inference latency (median ms) and
    throughput per batch size, the latency of each of ``runtimes`` that is installed (``onnxruntime_ms``,
    ``openvino_ms`` at OpenVINO's default precision, ``openvino_f32_ms``; CPU only), training-step time and peak
    memory at ``train_batch`` (``None`` to skip), and ratios against the reference.
    """
    _check_counts(runs, warmup, train_runs, batch_sizes, train_batch)
    device = check_device(device)
    specs = _specs_with_reference(models, reference)
    usable = [r for r in usable_runtimes(runtimes, device, log) if r in RUNTIMES] if runtimes else []
    with torch_threads(threads) as threads:
        report: Dict[str, Any] = {
            'settings': dict(image_size=image_size, batch_sizes=list(batch_sizes), train_batch=train_batch,
                             runs=runs, warmup=warmup, train_runs=train_runs, threads=threads,
                             reference=ModelSpec.parse(reference).label, runtimes=usable,
                             torch=torch.__version__, dtype='float32', device=device),
            'models': {s.label: {} for s in specs},
        }
        rows = report['models']
        log('complexity')
        for spec in specs:
            rows[spec.label].update(measure_complexity_of(spec.name, image_size))
        _measure_inference(rows, specs, usable, report['settings'], log)
        if train_batch:
            _measure_training(rows, specs, report['settings'], memory, log)
    _add_ratios(report)
    return report


def _measure_inference(rows: Dict[str, Dict[str, Any]], specs: Sequence[ModelSpec], runtimes: Sequence[str],
                       settings: Dict[str, Any], log: Callable[[str], None]) -> None:
    """Eager PyTorch and every runtime, all models interleaved in one loop per batch size."""
    log('building models')
    inference = {s.label: s.build(train=False, device=settings['device']) for s in specs}
    columns = {'latency_ms': pytorch_column(inference, settings['device'])}
    with tempfile.TemporaryDirectory() as folder, ExitStack() as sessions:
        if runtimes:
            log(f'exporting for {", ".join(runtimes)}')
            exportable = {s.label: (inference[s.label], is_uniconvnet(s.name)) for s in specs if not s.compiled}
            columns.update(sessions.enter_context(runtime_columns(
                exportable, runtimes, Exporter(Path(folder), settings['image_size']), settings['threads'], log)))
        batches = ', '.join(map(str, settings['batch_sizes']))
        log(f'inference, batch {batches}: {", ".join(columns)}')
        measured = time_inference(columns, settings['batch_sizes'], settings['image_size'], settings['runs'],
                                  settings['warmup'])
        for label, latencies in measured.items():
            rows[label].update(latencies)
    for row in rows.values():
        row['images_per_s'] = {b: int(b) / ms * 1e3 for b, ms in row['latency_ms'].items()}


def _measure_training(rows: Dict[str, Dict[str, Any]], specs: Sequence[ModelSpec], settings: Dict[str, Any],
                      memory: bool, log: Callable[[str], None]) -> None:
    trainable = [s for s in specs if s.trainable]
    batch, size, device = settings['train_batch'], settings['image_size'], settings['device']
    log(f'training steps, batch {batch}')
    for label, ms in time_training(trainable, batch, size, settings['train_runs'], device).items():
        rows[label]['train_step_ms'] = ms
    if memory:
        for spec in trainable:
            log(f'peak training memory, {spec.label}')
            rows[spec.label]['train_peak_mb'] = train_peak_memory_mb(spec, batch, size, settings['threads'], device)


def _add_ratios(report: Dict[str, Any]) -> None:
    """Ratios against the reference: absolute, and per MAC (time per multiply-accumulate)."""
    rows = report['models']
    ref = rows[report['settings']['reference']]
    latency_keys = ['latency_ms'] + [f'{runtime}_ms' for runtime in RUNTIMES]
    for row in rows.values():
        per_mac = ref['total_macs'] / row['total_macs']
        ratios: Dict[str, Any] = {}
        for key in latency_keys:
            if key in row and key in ref:
                ratios[key] = {b: row[key][b] / ref[key][b] for b in row[key] if b in ref[key]}
                ratios[key + '_per_mac'] = {b: r * per_mac for b, r in ratios[key].items()}
        if 'train_step_ms' in row and 'train_step_ms' in ref:
            ratios['train_step_ms'] = row['train_step_ms'] / ref['train_step_ms']
            ratios['train_step_ms_per_mac'] = ratios['train_step_ms'] * per_mac
        if 'train_peak_mb' in row and 'train_peak_mb' in ref:
            ratios['train_peak_mb'] = row['train_peak_mb'] / ref['train_peak_mb']
        for runtime in RUNTIMES:
            if f'{runtime}_ms' in row and 'latency_ms' in row:
                ratios[f'{runtime}_vs_eager'] = {b: ms / row['latency_ms'][b]
                                                 for b, ms in row[f'{runtime}_ms'].items()}
        row['ratios'] = ratios


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return '—' if value is None else f'{value:.{digits}f}'


def format_benchmark(report: Dict[str, Any]) -> str:
    """Markdown tables (inference, each runtime, training) of a :func:`run_benchmark` report."""
    settings, rows = report['settings'], report['models']
    batches = [str(b) for b in settings['batch_sizes']]
    ref = settings['reference']
    lines = [f"{settings['image_size']}x{settings['image_size']}, float32, {settings['threads']} threads, "
             f"medians of {settings['runs']} interleaved runs; ratios against `{ref}` (per MAC: time per "
             f"multiply-accumulate, MACs without the DCN sampling in the first column and with it in the ratio)", '']
    header = ['model', 'params (M)', 'GMACs (+ DCN)']
    for b in batches:
        header += [f'ms @ b{b}', f'img/s @ b{b}', f'vs ref @ b{b}', f'per MAC @ b{b}']
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * 3 + '---:|' * (4 * len(batches))]
    for label, row in rows.items():
        cells = [f'`{label}`', f"{row['params'] / 1e6:.1f}",
                 f"{row['macs'] / 1e9:.2f} (+{row['dcn_sampling_macs'] / 1e9:.3f})"]
        for b in batches:
            r = row['ratios'].get('latency_ms', {})
            cells += [_fmt(row['latency_ms'].get(b)), _fmt(row['images_per_s'].get(b)), _fmt(r.get(b), 2),
                      _fmt(row['ratios'].get('latency_ms_per_mac', {}).get(b), 2)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    for runtime in RUNTIMES:
        key = f'{runtime}_ms'
        if not any(key in row for row in rows.values()):
            continue
        lines += ['', f'| model ({runtime}) | ' + ' | '.join(f'ms @ b{b} | vs eager @ b{b} | per MAC vs ref @ b{b}'
                                                           for b in batches) + ' |',
                  '|---|' + '---:|' * (3 * len(batches))]
        for label, row in rows.items():
            if key in row:
                r = row['ratios']
                cells = [f'`{label}`']
                for b in batches:
                    cells += [_fmt(row[key].get(b)), _fmt(r[f'{runtime}_vs_eager'].get(b), 2),
                              _fmt(r.get(f'{key}_per_mac', {}).get(b), 2)]
                lines.append('| ' + ' | '.join(cells) + ' |')
    if any('train_step_ms' in row for row in rows.values()):
        lines += ['', f"| model (training, batch {settings['train_batch']}) | step ms | vs ref | per MAC | "
                      f"peak MB | vs ref |", '|---|---:|---:|---:|---:|---:|']
        for label, row in rows.items():
            if 'train_step_ms' in row:
                r = row['ratios']
                lines.append(f"| `{label}` | {_fmt(row['train_step_ms'], 0)} | {_fmt(r.get('train_step_ms'), 2)} | "
                             f"{_fmt(r.get('train_step_ms_per_mac'), 2)} | {_fmt(row.get('train_peak_mb'), 0)} | "
                             f"{_fmt(r.get('train_peak_mb'), 2)} |")
    return '\n'.join(lines)


@contextmanager
def _profiled() -> Iterator[Any]:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yield prof


_CATEGORIES = (
    ('DCN sampling core', ('uniconvnet::',)),
    ('matrix products (linears, 1x1 convs)', ('aten::addmm', 'aten::mm', 'aten::bmm', 'aten::matmul')),
    ('convolutions (depthwise, stem, downsampling)', ('aten::mkldnn_convolution', 'aten::_slow_conv2d',
                                                      'aten::thnn_conv', 'aten::convolution_overrideable')),
    ('GELU', ('aten::gelu',)),
)


def profile_inference(spec: str, batch: int = 1, image_size: int = 224, runs: int = 3,
                      threads: Optional[int] = None) -> Dict[str, Any]:
    """Where inference time goes: self CPU time per category and per op, summed over ``runs`` forwards.

    Ops called inside the DCN core count towards it; everything not in a named category (elementwise
    arithmetic, norms, copies, concatenation) is 'elementwise, norms, copies'.
    """
    model_spec = ModelSpec.parse(spec)
    model = model_spec.build(train=False)
    images = torch.randn(batch, 3, image_size, image_size)
    with torch_threads(threads), torch.inference_mode():
        model(images)
        with _profiled() as prof:
            for _ in range(runs):
                model(images)
    categories: Dict[str, float] = {}
    ops: Dict[str, float] = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue
        owner, parent = event.name, event.cpu_parent
        while parent is not None:
            if parent.name.startswith('uniconvnet::'):
                owner = parent.name
            parent = parent.cpu_parent
        category = next((c for c, prefixes in _CATEGORIES if owner.startswith(prefixes)),
                        'elementwise, norms, copies')
        ms = event.self_cpu_time_total / 1e3 / runs
        categories[category] = categories.get(category, 0.0) + ms
        ops[event.name] = ops.get(event.name, 0.0) + ms
    total = sum(categories.values())
    return dict(model=model_spec.label, batch=batch, image_size=image_size, total_ms=total,
                categories=dict(sorted(categories.items(), key=lambda kv: -kv[1])),
                ops=dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12]))


def format_profile(profile: Dict[str, Any]) -> str:
    """Markdown table of a :func:`profile_inference` result."""
    total = profile['total_ms']
    lines = [f"`{profile['model']}`, batch {profile['batch']}: {total:.0f} ms of op time per forward "
             f"(profiler self time)", '', '| where | ms | share |', '|---|---:|---:|']
    lines += [f'| {name} | {ms:.1f} | {ms / total:.0%} |' for name, ms in profile['categories'].items()]
    lines += ['', '| top ops | ms | share |', '|---|---:|---:|']
    lines += [f'| `{name}` | {ms:.1f} | {ms / total:.0%} |' for name, ms in profile['ops'].items()]
    return '\n'.join(lines)


def save_report(report: Dict[str, Any], path) -> Path:
    """Write a report as JSON, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
