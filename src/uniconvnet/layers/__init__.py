"""Building blocks of UniConvNet, each usable on its own."""
from .dcnv3 import DCNv3
from .norm import LayerNorm2d
from .rfa import RFA, LayerOperator, ReceptiveFieldAggregator, rfa_valid_widths

__all__ = ['DCNv3', 'LayerNorm2d', 'LayerOperator', 'RFA', 'ReceptiveFieldAggregator', 'rfa_valid_widths']
