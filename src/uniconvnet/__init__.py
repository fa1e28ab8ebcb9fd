"""UniConvNet for PyTorch: every variant of the ICCV 2025 ConvNet, compile-free, as timm models.

``import uniconvnet`` registers ``uniconvnet_a`` ... ``uniconvnet_xl`` with timm.
"""
from .layers import RFA, DCNv3, ReceptiveFieldAggregator
from .models import (VARIANTS, UniConvNet, check_model_name, checkpoint_filter_fn, create_model, is_uniconvnet,
                     list_variants)
from .ops import dcnv3

__version__ = '0.1.0'

__all__ = ['DCNv3', 'RFA', 'ReceptiveFieldAggregator', 'UniConvNet', 'VARIANTS',
           'check_model_name', 'checkpoint_filter_fn', 'create_model', 'dcnv3', 'is_uniconvnet', 'list_variants',
           '__version__']
