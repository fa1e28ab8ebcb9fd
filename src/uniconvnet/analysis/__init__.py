"""Analysis tools: model complexity, effective receptive fields (ERF) and their Gaussian shape (AGD).

Plotting (``plots``) and reports (``erf_report``) import matplotlib when used; nothing here needs it.
"""
from .agd import AGDMetrics, GaussianFit, agd_metrics
from .complexity import ModelComplexity, count_parameters, measure_complexity, variants_table
from .erf import AreaRatio, ErfMap, erf_map, erf_maps, high_contribution_area_ratio, log_scale
from .images import NamedImage, load_images

__all__ = ['AGDMetrics', 'AreaRatio', 'ErfMap', 'GaussianFit', 'ModelComplexity', 'NamedImage', 'agd_metrics',
           'count_parameters', 'erf_map', 'erf_maps', 'high_contribution_area_ratio', 'load_images', 'log_scale',
           'measure_complexity', 'variants_table']
