"""UniConvNet for PyTorch: every variant of the ICCV 2025 ConvNet, compile-free, as timm models.

``import uniconvnet`` registers ``uniconvnet_a`` ... ``uniconvnet_xl`` with timm.
"""
from typing import Any, List

import timm
import torch.nn as nn

from .layers import RFA, DCNv3, ReceptiveFieldAggregator
from .models import VARIANTS, UniConvNet, checkpoint_filter_fn
from .ops import dcnv3

__version__ = '0.1.0'

__all__ = ['DCNv3', 'RFA', 'ReceptiveFieldAggregator', 'UniConvNet', 'VARIANTS',
           'check_model_name', 'checkpoint_filter_fn', 'create_model', 'dcnv3', 'list_variants', '__version__']


def list_variants() -> List[str]:
    """Names of the UniConvNet variants, smallest first."""
    return list(VARIANTS)


def check_model_name(name: str) -> str:
    """``name`` if timm knows it (a UniConvNet variant or any timm model), else a ValueError listing ours."""
    base = name.split('.', 1)[0]
    if base not in timm.list_models(base):
        raise ValueError(f'unknown model {name!r}. UniConvNet variants: {", ".join(VARIANTS)} '
                         f'(any other timm model name works as well)')
    return name


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown names. Any timm model name works too."""
    return timm.create_model(check_model_name(name), pretrained=pretrained, **kwargs)
