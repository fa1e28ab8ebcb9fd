"""Building blocks of UniConvNet, each usable on its own."""
from .dcnv3 import DCNv3, dcn_backend, set_dcn_backend, using_dcn_backend
from .mlp import Mlp
from .mrfa import MRFA, convert_mrfa_state_dict
from .rfa import RFA, LayerOperator, ReceptiveFieldAggregator, rfa_valid_widths

__all__ = ['DCNv3', 'LayerOperator', 'MRFA', 'Mlp', 'RFA', 'ReceptiveFieldAggregator', 'convert_mrfa_state_dict',
           'dcn_backend', 'rfa_valid_widths', 'set_dcn_backend', 'using_dcn_backend']
