"""Our classes on torch's allow-list for restricted (``weights_only=True``) checkpoint loading.

ultralytics can load ``.pt`` checkpoints with ``torch.load(weights_only=True)`` (opt-in: ``ULTRALYTICS_SAFE_LOAD=1``
or ``torch_safe_load(..., safe_only=True)``); it then adds its own and torch's layer classes to torch's
allow-list (``torch.serialization.add_safe_globals``), and a checkpoint that references any other class is
refused. Importing this integration puts the classes that a model with our blocks and a UniConvNet backbone
pickles on the same list, so such a ``best.pt`` loads under it. Not covered: other timm backbones put in
``UniConvNetBackbone``: their timm classes are not listed (``torch.serialization.get_unsafe_globals_in_checkpoint``
names what a checkpoint needs; add those classes with ``torch.serialization.add_safe_globals``).
"""
import enum
import inspect
import sys
from typing import Any, List

import timm.layers
import timm.models._features
import torch
import torch.nn as nn

from ...layers import rfa
from . import blocks

__all__ = ['safe_globals', 'allow_safe_loading']

# the timm classes inside a features_only UniConvNet (the feature wrapper and layers the model uses)
_TIMM_CLASSES = (timm.models._features.FeatureListNet, timm.models._features.FeatureInfo, timm.layers.Format,
                 timm.layers.LayerScale, timm.layers.LayerScale2d, timm.layers.Mlp, timm.layers.DropPath)
_PACKAGE = __name__.split('.')[0]
# functions a pickled model references: the RFA's state-dict load hook (it rebuilds the merged discriminator weights)
_OWN_FUNCTIONS = (rfa._refreeze_after_load,)


def _own_classes() -> List[type]:
    """Every layer class defined in an imported module of this package (layers, models, the YAML blocks)."""
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == _PACKAGE or name.startswith(_PACKAGE + '.')):
            continue
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__ == name and issubclass(obj, (nn.Module, enum.Enum)):
                found.append(obj)
    return found


def safe_globals() -> List[Any]:
    """The allow-list entries: our layer classes and the hook functions our layers register, the timm classes a
    UniConvNet backbone holds, and the YAML blocks under the names checkpoints of uniconvnet 0.1 pickled them by
    (``...integrations.ultralytics.X``)."""
    entries: List[Any] = list(dict.fromkeys(_own_classes() + list(_OWN_FUNCTIONS) + list(_TIMM_CLASSES)))
    package = __name__.rpartition('.')[0]
    entries += [(cls, f'{package}.{name}') for name, cls in vars(blocks).items()
                if inspect.isclass(cls) and cls.__module__ == blocks.__name__ and issubclass(cls, nn.Module)]
    return entries


def allow_safe_loading() -> None:
    """Add :func:`safe_globals` to torch's allow-list for ``weights_only`` loading (done on import)."""
    torch.serialization.add_safe_globals(safe_globals())
