"""Frontier plots: published top-1 against measured latency and memory (needs matplotlib; imported when drawing)."""
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..io import atomic_write

__all__ = ['plot_frontier']

PathLike = Union[str, Path]


def _sparse_log_label(value: float, _position: Any = None) -> str:
    """Minor tick labels at 2, 3 and 5 times a power of ten only: all eight collide within a decade."""
    leading = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return f'{value:g}' if any(math.isclose(leading, d) for d in (2, 3, 5)) else ''


def _draw(ax, points: List[Tuple[Dict[str, Any], float]], xlabel: str, title: str) -> None:
    """Top-1 against ``x`` on a log axis: UniConvNet variants as one labelled line, peers as labelled points."""
    from matplotlib.ticker import FuncFormatter
    ours = sorted(((e, x) for e, x in points if e['family'] == 'uniconvnet'), key=lambda p: p[0]['top1'])
    peers = [(e, x) for e, x in points if e['family'] == 'peer']
    if ours:
        ax.plot([x for _, x in ours], [e['top1'] for e, _ in ours], '-o', color='tab:red', label='UniConvNet',
                zorder=3)
    if peers:
        ax.scatter([x for _, x in peers], [e['top1'] for e, _ in peers], color='tab:blue', label='timm peers',
                   zorder=2)
    for entry, x in ours + peers:
        ax.annotate(entry['short_name'], (x, entry['top1']), textcoords='offset points', xytext=(4, 3),
                    fontsize=7, color='tab:red' if entry['family'] == 'uniconvnet' else 'tab:blue')
    ax.set_xscale('log')
    plain = FuncFormatter(lambda value, _: f'{value:g}')  # 20, 50, 100 rather than 2x10^1, ...
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(_sparse_log_label))
    ax.tick_params(axis='x', which='minor', labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('ImageNet-1k top-1 (%, published, 224x224)')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='best', fontsize=8)


def _save_png(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format='png', dpi=120))


def plot_frontier(report: Dict[str, Any], prefix: PathLike, names: Optional[Sequence[str]] = None) -> List[Path]:
    """Draw ``<prefix>_latency.png`` (top-1 against latency, one panel per batch size) and, when memory was
    measured, ``<prefix>_memory.png`` (top-1 against peak training memory). Needs matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('the frontier plots need matplotlib: pip install "uniconvnet[analysis]" '
                          '(or pip install matplotlib)') from None
    settings, models = report['settings'], report['models']
    names = list(names or report.get('requested') or models)
    prefix = Path(prefix)
    threads = f"{settings['threads']} thread" + ('s' if settings['threads'] != 1 else '')
    where = f"{settings['device']}, {threads}, {settings['image_size']}x{settings['image_size']}"
    batches = [str(b) for b in settings['batch_sizes']]
    figure = Figure(figsize=(6 * len(batches), 5), layout='constrained')
    for ax, batch in zip(figure.subplots(1, len(batches), squeeze=False)[0], batches):
        points = [(models[n], models[n]['latency_ms'][batch]) for n in names
                  if batch in models[n].get('latency_ms', {})]
        _draw(ax, points, 'latency (ms, median, log scale)', f'top-1 vs latency, batch {batch} ({where})')
    paths = [_save_png(figure, prefix.with_name(prefix.name + '_latency.png'))]
    points = [(models[n], models[n]['train_peak_mb']) for n in names if 'train_peak_mb' in models[n]]
    if points:
        figure = Figure(figsize=(6, 5), layout='constrained')
        _draw(figure.subplots(), points, f"peak training memory (MB, batch {settings['train_batch']}, log scale)",
              f'top-1 vs training memory ({where})')
        paths.append(_save_png(figure, prefix.with_name(prefix.name + '_memory.png')))
    return paths
