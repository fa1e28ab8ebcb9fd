"""Analysis tools for receptive fields: effective receptive fields (ERF) and their Gaussian shape (AGD).

Plotting (``plots``) and reports (``erf_report``) import matplotlib when used; nothing here needs it. Speed, memory,
complexity, peers and the frontier live in :mod:`uniconvnet.speed` (their old names here still import, with a
deprecation warning, until the next release).
"""
import warnings
from typing import Any

from .agd import AGDMetrics, GaussianFit, agd_metrics
from .erf import AreaRatio, ErfMap, erf_map, erf_maps, high_contribution_area_ratio, log_scale
from .images import NamedImage, load_images

__all__ = ['AGDMetrics', 'AreaRatio', 'ErfMap', 'GaussianFit', 'NamedImage', 'agd_metrics', 'erf_map', 'erf_maps',
           'high_contribution_area_ratio', 'load_images', 'log_scale']

# names that moved to uniconvnet.speed, still reachable here for one release
_MOVED = {'ModelComplexity', 'count_parameters', 'measure_complexity', 'variants_table'}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f'uniconvnet.analysis.{name} moved to uniconvnet.speed.{name}; the old name will be removed '
                      f'in the next release', DeprecationWarning, stacklevel=2)
        from ..speed import complexity
        return getattr(complexity, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
