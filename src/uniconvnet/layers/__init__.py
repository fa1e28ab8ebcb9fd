"""Building blocks of UniConvNet, each usable on its own."""
from .dcnv3 import DCNv3
from .mrfa import MRFA, convert_mrfa_state_dict
from .norm import LayerNorm2d
from .rfa import RFA, LayerOperator, ReceptiveFieldAggregator, rfa_valid_widths

__all__ = ['DCNv3', 'LayerNorm2d', 'LayerOperator', 'MRFA', 'RFA', 'ReceptiveFieldAggregator', 'convert_mrfa_state_dict',
           'rfa_valid_widths']
