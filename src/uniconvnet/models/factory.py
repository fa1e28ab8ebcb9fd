"""The model factory: names in, models out, with one answer to "is this a UniConvNet?".

Everything above ``models`` (engine, analysis, integrations, export, the command line) builds models through
:func:`create_model`, which is ``timm.create_model`` with an error that lists our variants for unknown names.
"""
from typing import Any, List, Union

import timm
import torch.nn as nn

from .uniconvnet import VARIANTS, UniConvNet

__all__ = ['check_model_name', 'create_model', 'is_uniconvnet', 'list_variants']


def list_variants() -> List[str]:
    """Names of the UniConvNet variants, smallest first."""
    return list(VARIANTS)


def is_uniconvnet(name_or_model: Union[str, nn.Module]) -> bool:
    """Whether a model name (``uniconvnet_t``, ``uniconvnet_t.in1k``) or a model is a UniConvNet.

    A model counts when it is a :class:`UniConvNet` or was built from one by timm (``features_only=True`` wraps
    the network in timm's feature classes, which keep the ``pretrained_cfg`` naming the architecture).
    """
    if isinstance(name_or_model, str):
        return name_or_model.split('.', 1)[0] in VARIANTS
    if isinstance(name_or_model, UniConvNet):
        return True
    architecture = (getattr(name_or_model, 'pretrained_cfg', None) or {}).get('architecture')
    return isinstance(architecture, str) and is_uniconvnet(architecture)


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
