"""Speed and memory of models side by side: inference latency, training steps, peak memory, onnxruntime.

Every timing is taken in one process with the models interleaved (one run of each model in turn, repeated), so
that a machine shared with other work slows all of them alike; ratios against the reference model, absolute and
per multiply-accumulate, are what to compare. Peak training memory is measured per model in a fresh process.

Model specs are timm names with optional modes after a colon, e.g. ``uniconvnet_t:fused``:

    plain     the reference (grid_sample) DCN core, plain ATen ops: what ONNX export runs
    fused     ``model.fuse()`` first (inference only)
    compile   ``torch.compile(model)`` (inference only; compiling takes minutes on a CPU)
"""
import json
import multiprocessing
import re
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

from ..io import atomic_write
from ..models import create_model

__all__ = ['ModelSpec', 'run_benchmark', 'format_benchmark', 'profile_inference', 'format_profile']

MODES = ('plain', 'fused', 'compile')


@dataclass(frozen=True)
class ModelSpec:
    """A timm model name and how to run it."""
    name: str
    plain: bool = False
    fused: bool = False
    compiled: bool = False

    @classmethod
    def parse(cls, text: str) -> 'ModelSpec':
        name, _, modes = text.partition(':')
        flags = [m for m in modes.split(',') if m]
        unknown = [m for m in flags if m not in MODES]
        if unknown or not name:
            raise ValueError(f'bad model spec {text!r}: use NAME or NAME:MODE[,MODE] with modes {", ".join(MODES)}')
        return cls(name, plain='plain' in flags, fused='fused' in flags, compiled='compile' in flags)

    @property
    def label(self) -> str:
        modes = [m for m, on in zip(MODES, (self.plain, self.fused, self.compiled)) if on]
        return self.name + (':' + ','.join(modes) if modes else '')

    @property
    def trainable(self) -> bool:
        return not (self.fused or self.compiled)

    def build(self, train: bool = False) -> nn.Module:
        model = create_model(self.name)
        if self.plain:
            if not hasattr(model, 'set_dcn_backend'):
                raise ValueError(f'{self.name} has no DCNv3 layers; drop the "plain" mode')
            model.set_dcn_backend('torch')
        model.train(train)
        if self.fused:
            if not hasattr(model, 'fuse'):
                raise ValueError(f'{self.name} has no fuse(); drop the "fused" mode')
            model.fuse()
        return torch.compile(model) if self.compiled else model


def _median_ms(times: List[float]) -> float:
    return statistics.median(times) * 1e3


def _interleaved(runners: Dict[str, Callable[[], None]], runs: int, warmup: int) -> Dict[str, float]:
    """Median wall time (ms) of each runner, the runners called in turn ``runs`` times after ``warmup`` rounds."""
    times: Dict[str, List[float]] = {label: [] for label in runners}
    for round_index in range(warmup + runs):
        for label, run in runners.items():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[label].append(elapsed)
    return {label: _median_ms(t) for label, t in times.items()}


def _complexity(name: str, image_size: int) -> Dict[str, int]:
    """Parameters and MACs (DCN sampling separately) of the unmodified model ``name``."""
    from .complexity import measure_complexity
    try:
        model = create_model(name, device='meta').eval()
    except Exception:  # a timm model that cannot be built on the meta device
        model = create_model(name).eval()
    return measure_complexity(model, (3, image_size, image_size)).as_dict()


def _train_step_runner(model: nn.Module, batch: int, image_size: int) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, image_size, image_size)
    num_classes = getattr(model, 'num_classes', 1000)
    targets = torch.randint(0, max(num_classes, 1), (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), targets).backward()
        optimizer.step()
    return step


def _rss_mb(field: str) -> float:
    status = Path('/proc/self/status').read_text()
    return int(re.search(rf'{field}:\s+(\d+)', status).group(1)) / 1024


def _train_peak_memory_worker(spec: ModelSpec, batch: int, image_size: int, threads: Optional[int]) -> float:
    if threads:
        torch.set_num_threads(threads)
    start = _rss_mb('VmRSS')
    model = spec.build(train=True)
    step = _train_step_runner(model, batch, image_size)
    step()  # gradients and optimizer state now exist
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak resident size to the current one
    step()
    return _rss_mb('VmHWM') - start


def train_peak_memory_mb(spec: ModelSpec, batch: int, image_size: int, threads: Optional[int] = None) -> float:
    """Peak resident memory of a training step above the process's size before the model was built (MB).

    Includes weights, gradients, AdamW state, activations and allocator slack; measured in a fresh process
    (Linux only: it reads and resets the kernel's peak-RSS counter).
    """
    context = multiprocessing.get_context('spawn')
    with context.Pool(1) as pool:
        return pool.apply(_train_peak_memory_worker, (spec, batch, image_size, threads))


def _onnxruntime_sessions(models: Dict[str, nn.Module], image_size: int, threads: int, folder: Path) -> Dict[str, Any]:
    import onnxruntime as ort
    from ..export import export_model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sessions = {}
    for label, model in models.items():
        path = export_model(model, folder / f'{re.sub(r"[^A-Za-z0-9_]", "_", label)}.onnx', 'onnx',
                            (image_size, image_size))
        sessions[label] = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    return sessions


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
        onnxruntime: bool = True,
        memory: bool = True,
        log: Callable[[str], None] = lambda message: None,
) -> Dict[str, Any]:
    """Measure ``models`` (specs, see the module docstring) and ``reference`` side by side.

    Returns a JSON-ready dict: settings, and per model its parameters, MACs, inference latency (median ms) and
    throughput per batch size, training-step time and peak memory at ``train_batch`` (``None`` to skip),
    onnxruntime latency per batch size (when installed and ``onnxruntime``), and ratios against the reference.
    """
    if runs < 1 or warmup < 0 or train_runs < 1:
        raise ValueError(f'runs and train_runs must be at least 1 and warmup at least 0, got {runs}, '
                         f'{train_runs}, {warmup}')
    if any(b < 1 for b in batch_sizes) or (train_batch is not None and train_batch < 1):
        raise ValueError(f'batch sizes must be positive, got {list(batch_sizes)} and train batch {train_batch}')
    specs = [ModelSpec.parse(m) for m in models]
    reference_spec = ModelSpec.parse(reference)
    if reference_spec.label not in [s.label for s in specs]:
        specs.insert(0, reference_spec)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    report: Dict[str, Any] = {
        'settings': dict(image_size=image_size, batch_sizes=list(batch_sizes), train_batch=train_batch, runs=runs,
                         warmup=warmup, train_runs=train_runs, threads=threads, reference=reference_spec.label,
                         torch=torch.__version__, dtype='float32'),
        'models': {s.label: {} for s in specs},
    }
    rows = report['models']

    log('complexity')
    for spec in specs:
        rows[spec.label].update(_complexity(spec.name, image_size))

    log('building models')
    inference = {s.label: s.build(train=False) for s in specs}
    for batch in batch_sizes:
        log(f'inference, batch {batch}')
        images = torch.randn(batch, 3, image_size, image_size)
        runners = {label: (lambda m=model: m(images)) for label, model in inference.items()}
        with torch.inference_mode():
            latency = _interleaved(runners, runs, warmup)
        for label, ms in latency.items():
            rows[label].setdefault('latency_ms', {})[str(batch)] = ms
            rows[label].setdefault('images_per_s', {})[str(batch)] = batch / ms * 1e3

    if onnxruntime:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            onnxruntime = False
            log('onnxruntime is not installed: skipping its latency')
    if onnxruntime:
        exportable = {s.label: inference[s.label] for s in specs if not s.compiled}
        with tempfile.TemporaryDirectory() as folder:
            log('exporting to ONNX')
            sessions = _onnxruntime_sessions(exportable, image_size, threads, Path(folder))
            for batch in batch_sizes:
                log(f'onnxruntime, batch {batch}')
                feed = {'images': torch.randn(batch, 3, image_size, image_size).numpy()}
                runners = {label: (lambda s=session: s.run(None, feed)) for label, session in sessions.items()}
                latency = _interleaved(runners, runs, warmup)
                for label, ms in latency.items():
                    rows[label].setdefault('onnxruntime_ms', {})[str(batch)] = ms
    del inference

    if train_batch:
        trainable = [s for s in specs if s.trainable]
        log(f'training steps, batch {train_batch}')
        steps = {s.label: _train_step_runner(s.build(train=True), train_batch, image_size) for s in trainable}
        step_ms = _interleaved(steps, train_runs, 1)
        del steps
        for label, ms in step_ms.items():
            rows[label]['train_step_ms'] = ms
        if memory:
            for spec in trainable:
                log(f'peak training memory, {spec.label}')
                rows[spec.label]['train_peak_mb'] = train_peak_memory_mb(spec, train_batch, image_size, threads)

    _add_ratios(report)
    return report


def _add_ratios(report: Dict[str, Any]) -> None:
    """Ratios against the reference: absolute, and per MAC (time per multiply-accumulate)."""
    rows = report['models']
    ref = rows[report['settings']['reference']]
    for row in rows.values():
        per_mac = ref['total_macs'] / row['total_macs']
        ratios: Dict[str, Any] = {}
        for key in ('latency_ms', 'onnxruntime_ms'):
            if key in row and key in ref:
                ratios[key] = {b: row[key][b] / ref[key][b] for b in row[key] if b in ref[key]}
                ratios[key + '_per_mac'] = {b: r * per_mac for b, r in ratios[key].items()}
        if 'train_step_ms' in row and 'train_step_ms' in ref:
            ratios['train_step_ms'] = row['train_step_ms'] / ref['train_step_ms']
            ratios['train_step_ms_per_mac'] = ratios['train_step_ms'] * per_mac
        if 'train_peak_mb' in row and 'train_peak_mb' in ref:
            ratios['train_peak_mb'] = row['train_peak_mb'] / ref['train_peak_mb']
        if 'onnxruntime_ms' in row:
            ratios['onnxruntime_vs_eager'] = {b: row['onnxruntime_ms'][b] / row['latency_ms'][b]
                                              for b in row['onnxruntime_ms']}
        row['ratios'] = ratios


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return '—' if value is None else f'{value:.{digits}f}'


def format_benchmark(report: Dict[str, Any]) -> str:
    """Markdown tables (inference, onnxruntime, training) of a :func:`run_benchmark` report."""
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
    if any('onnxruntime_ms' in row for row in rows.values()):
        lines += ['', '| model (onnxruntime) | ' + ' | '.join(f'ms @ b{b} | vs eager @ b{b} | per MAC vs ref @ b{b}'
                                                          for b in batches) + ' |',
                  '|---|' + '---:|' * (3 * len(batches))]
        for label, row in rows.items():
            if 'onnxruntime_ms' in row:
                r = row['ratios']
                cells = [f'`{label}`']
                for b in batches:
                    cells += [_fmt(row['onnxruntime_ms'].get(b)), _fmt(r['onnxruntime_vs_eager'].get(b), 2),
                              _fmt(r.get('onnxruntime_ms_per_mac', {}).get(b), 2)]
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
    if threads:
        torch.set_num_threads(threads)
    model_spec = ModelSpec.parse(spec)
    model = model_spec.build(train=False)
    images = torch.randn(batch, 3, image_size, image_size)
    with torch.inference_mode():
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
