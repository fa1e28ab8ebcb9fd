"""Frontier plots: published top-1 against measured latency, one figure per runtime, and against training memory.

Needs matplotlib (imported when drawing). Each latency figure has one panel per batch size, latency on a log axis.
UniConvNet's variants are a red line; peers that may be matched are blue points, distilled peers and top-1s at
another test size grey hollow ones; the peers' frontier (the fastest model at each accuracy) is a dashed step line.
Labels are placed alternately above and below their point, in order of latency, so that neighbours do not overlap.
"""
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..io import atomic_write
from .frontier import measured_runtimes
from .runtimes import RUNTIME_BY_NAME

__all__ = ['plot_frontier']

PathLike = Union[str, Path]
Point = Tuple[Dict[str, Any], float]


def _sparse_log_label(value: float, _position: Any = None) -> str:
    """Minor tick labels at 2, 3 and 5 times a power of ten only: all eight collide within a decade."""
    leading = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return f'{value:g}' if any(math.isclose(leading, d) for d in (2, 3, 5)) else ''


def _pareto(points: List[Point]) -> List[Tuple[float, float]]:
    """The step line through the points no other point beats on both latency and top-1."""
    front: List[Tuple[float, float]] = []
    for entry, x in sorted(points, key=lambda p: (p[1], -p[0]['top1'])):
        if not front or entry['top1'] > front[-1][1]:
            front.append((x, entry['top1']))
    return front


def _label(ax, points: List[Point], color: str, fontsize: float) -> None:
    for i, (entry, x) in enumerate(sorted(points, key=lambda p: p[1])):
        dy = 4 if i % 2 == 0 else -9
        ax.annotate(entry['short_name'], (x, entry['top1']), textcoords='offset points', xytext=(4, dy),
                    fontsize=fontsize, color=color)


def _draw(ax, points: List[Point], xlabel: str, title: str) -> None:
    """Top-1 against ``x`` on a log axis."""
    from matplotlib.ticker import FuncFormatter
    ours = sorted(((e, x) for e, x in points if e['family'] == 'uniconvnet'), key=lambda p: p[0]['top1'])
    peers = [(e, x) for e, x in points if e['family'] == 'peer' and not e.get('excluded')]
    shown = [(e, x) for e, x in points if e['family'] == 'peer' and e.get('excluded')]
    if peers:
        front = _pareto(peers)
        ax.step([x for x, _ in front], [y for _, y in front], where='post', color='tab:blue', alpha=0.35,
                linestyle='--', zorder=1)
        ax.scatter([x for _, x in peers], [e['top1'] for e, _ in peers], color='tab:blue', s=18, zorder=2,
                   label='timm peers')
        _label(ax, peers, 'tab:blue', 6.5)
    if shown:
        ax.scatter([x for _, x in shown], [e['top1'] for e, _ in shown], facecolors='none', edgecolors='0.55', s=18,
                   zorder=2, label='distilled or top-1 not at 224 (not matched)')
        _label(ax, shown, '0.45', 6)
    if ours:
        ax.plot([x for _, x in ours], [e['top1'] for e, _ in ours], '-o', color='tab:red', markersize=4, zorder=3,
                label='UniConvNet')
        _label(ax, ours, 'tab:red', 7.5)
    ax.set_xscale('log')
    ax.margins(x=0.12, y=0.06)  # room for the labels of the outermost points
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f'{value:g}'))  # 20, 50, 100 rather than 2x10^1
    ax.xaxis.set_minor_formatter(FuncFormatter(_sparse_log_label))
    ax.tick_params(axis='x', which='minor', labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('ImageNet-1k top-1 (%, published)')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='upper left', fontsize=7)  # fast and accurate: the corner points rarely reach


def _save_png(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format='png', dpi=120))


def plot_frontier(report: Dict[str, Any], prefix: PathLike, names: Optional[Sequence[str]] = None) -> List[Path]:
    """Draw ``<prefix>_<runtime>.png`` for every runtime measured (top-1 against latency, one panel per batch size)
    and, when memory was measured, ``<prefix>_memory.png``. Returns the paths written. Needs matplotlib."""
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
    paths = []
    for runtime in measured_runtimes(report):
        title = RUNTIME_BY_NAME[runtime].title
        figure = Figure(figsize=(7 * len(batches), 6), layout='constrained')
        for ax, batch in zip(figure.subplots(1, len(batches), squeeze=False)[0], batches):
            points = [(models[n], models[n]['latency_ms'][runtime][batch]) for n in names
                      if batch in models[n].get('latency_ms', {}).get(runtime, {})]
            _draw(ax, points, 'latency (ms, median, log scale)', f'{title}, batch {batch} ({where})')
        paths.append(_save_png(figure, prefix.with_name(f'{prefix.name}_{runtime}.png')))
    points = [(models[n], models[n]['train_peak_mb']) for n in names if 'train_peak_mb' in models[n]]
    if points:
        figure = Figure(figsize=(7, 6), layout='constrained')
        _draw(figure.subplots(), points, f"peak training memory (MB, batch {settings['train_batch']}, log scale)",
              f'top-1 vs training memory ({where})')
        paths.append(_save_png(figure, prefix.with_name(prefix.name + '_memory.png')))
    return paths
