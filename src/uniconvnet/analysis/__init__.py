"""Analysis tools: model complexity (and, later, effective receptive fields)."""
from .complexity import ModelComplexity, count_parameters, measure_complexity, variants_table

__all__ = ['ModelComplexity', 'count_parameters', 'measure_complexity', 'variants_table']
