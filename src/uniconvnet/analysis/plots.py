"""ERF heatmaps (needs matplotlib; imported only when drawing).

Figures are laid out in pixels so that their size is known in advance: every panel is ``panel_px`` square with a
``title_px`` strip above it, and a ``colorbar_px`` strip on the right holds the one shared colour scale. A figure
of ``rows x cols`` panels is ``cols * panel_px + colorbar_px`` wide and ``rows * (panel_px + title_px)`` high.
The colours are the upper half of matplotlib's ``RdYlGn`` (yellow for no contribution to dark green for the
most), the look of the RepLKNet and UniConvNet ERF figures.
"""
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..io import atomic_write

__all__ = ['PANEL_PX', 'TITLE_PX', 'COLORBAR_PX', 'erf_colormap', 'plot_erf_grid', 'plot_erf_row']

PANEL_PX = 320
TITLE_PX = 40
COLORBAR_PX = 90

Panel = Tuple[str, Optional[np.ndarray]]


def erf_colormap():
    """Yellow (0) to dark green (1): the upper half of ``RdYlGn``."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    return ListedColormap(colormaps['RdYlGn'](np.linspace(0.5, 1.0, 256)), name='erf')


def _fitting_fontsize(text: str, length_px: float, dpi: int, largest: float) -> float:
    """The largest font size up to ``largest`` (points) at which ``text`` fits in ``length_px`` pixels."""
    # a character is about 0.6 em wide; one point is dpi / 72 pixels
    return max(4.0, min(largest, length_px * 72 / (0.6 * max(len(text), 1) * dpi)))


def plot_erf_grid(
        rows: Sequence[Sequence[Panel]],
        path: Union[str, Path],
        *,
        panel_px: int = PANEL_PX,
        title_px: int = TITLE_PX,
        colorbar_px: int = COLORBAR_PX,
        dpi: int = 100,
        colorbar_label: str = 'log10(1 + contribution) / max',
) -> Path:
    """Draw panels of maps with values in [0, 1] on one colour scale and save a PNG.

    Args:
        rows: rows of ``(title, map)``; a None map draws an empty panel that shows only its title (e.g. a stage
            the model does not have). Maps are drawn as given: pass :func:`uniconvnet.analysis.erf.log_scale`'d
            maps to get RepLKNet's display.
        path: output PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError('nothing to draw: no panels')
    width, height = n_cols * panel_px + colorbar_px, n_rows * (panel_px + title_px)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    cmap = erf_colormap()
    pad = max(panel_px // 40, 1)
    image = None
    # one title size for all panels: the largest at which the longest title fits
    title_size = min(_fitting_fontsize(title, panel_px - 2 * pad, dpi, min(12.0, title_px * 0.3))
                     for row in rows for title, _ in row)
    for r, row in enumerate(rows):
        for c, (title, m) in enumerate(row):
            left = (c * panel_px + pad) / width
            bottom = ((n_rows - 1 - r) * (panel_px + title_px) + pad) / height
            ax = fig.add_axes((left, bottom, (panel_px - 2 * pad) / width, (panel_px - 2 * pad) / height))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=title_size, pad=2)
            if m is None:
                ax.text(0.5, 0.5, 'not available', ha='center', va='center', transform=ax.transAxes, color='0.4')
                for spine in ax.spines.values():
                    spine.set_color('0.8')
                continue
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2:
                raise ValueError(f'panel {title!r}: expected a 2-D map, got shape {m.shape}')
            # antialiased: a 1024-pixel map drawn in a few hundred pixels keeps its fine structure
            image = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=1.0, interpolation='antialiased')
    if image is not None:
        bar_ax = fig.add_axes((
            (n_cols * panel_px + colorbar_px * 0.15) / width, 0.1, colorbar_px * 0.18 / width, 0.8))
        bar = fig.colorbar(image, cax=bar_ax)
        bar.set_label(colorbar_label, fontsize=_fitting_fontsize(colorbar_label, 0.8 * height, dpi, 8.0))
        bar.ax.tick_params(labelsize=7)
    path = Path(path)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip('.') or 'png'))


def plot_erf_row(panels: Sequence[Panel], path: Union[str, Path], **kwargs) -> Path:
    """One row of ERF maps side by side (the paper's Figure 1 layout); see :func:`plot_erf_grid`."""
    return plot_erf_grid([list(panels)], path, **kwargs)
