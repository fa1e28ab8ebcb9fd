"""Checkpoints: loading weights into a model (:func:`load_weights`), the model a checkpoint holds
(:func:`model_from_checkpoint`), and converting official checkpoints.

:func:`load_weights` is the one loader: every route that reads weights from a file goes through it, timm's
``pretrained_cfg_overlay=dict(file=...)`` included (``UniConvNet.load_pretrained``). It lives in
:mod:`uniconvnet.io`, below the models (whose timm hook calls it), with the safe reader
:func:`~uniconvnet.io.load_checkpoint_file` (``weights_only`` torch files or safetensors: nothing unpickles arbitrary
objects) and the atomic writers; all are re-exported here, where they always were.
"""
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch.nn as nn
from timm.models import get_pretrained_cfg_value

from .io import (CheckpointError, PathLike, atomic_save, atomic_write_text, load_checkpoint_file, load_weights,
                 num_classes_of, save_safetensors, unwrap_state_dict)
from .models import checkpoint_filter_fn, create_model, infer_variant, is_uniconvnet

__all__ = ['CheckpointError', 'load_checkpoint_file', 'atomic_save', 'atomic_write_text', 'save_safetensors',
           'load_weights', 'num_classes_of', 'unwrap_state_dict', 'model_from_checkpoint',
           'convert_official_checkpoint']


def model_from_checkpoint(checkpoint: Union[PathLike, Mapping[str, Any]], model_name: Optional[str] = None, *,
                          source: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """The model a checkpoint holds, with its weights: read (safely), unwrap, count the classes, create, load.

    Args:
        checkpoint: a ``.pt``/``.pth``/``.safetensors`` file (official or ours) or what one holds.
        model_name: any timm name; default: the UniConvNet variant whose shapes the weights have.
        source: how messages name the checkpoint (default: its path).
        kwargs: more options of :func:`~uniconvnet.models.create_model`.

    The class count follows the checkpoint's classifier (for a UniConvNet, none means ``num_classes=0``). Returns
    the model in train mode on the CPU, as :func:`~uniconvnet.models.create_model` does.
    """
    source = source or (str(checkpoint) if not isinstance(checkpoint, Mapping) else 'the checkpoint')
    state_dict = unwrap_state_dict(checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint_file(checkpoint))
    name = model_name or infer_variant(state_dict)
    if name is None:
        raise CheckpointError(f'cannot tell which model {source} is for (its shapes match no UniConvNet variant); '
                              f'pass the model name (--model NAME)')
    num_classes = num_classes_of(state_dict, get_pretrained_cfg_value(name, 'classifier'))
    if num_classes or is_uniconvnet(name):
        kwargs.setdefault('num_classes', num_classes)
    return load_weights(create_model(name, **kwargs), state_dict, source=source)


def convert_official_checkpoint(src: PathLike, dst: PathLike, model_name: str) -> Path:
    """Convert an official UniConvNet ``.pth`` into our layout as safetensors.

    Refuses, naming the keys, when anything in the checkpoint is left over or missing, or when shapes do not
    match ``model_name`` (then it names the variant the checkpoint is for).
    """
    state_dict = unwrap_state_dict(load_checkpoint_file(src))
    model = create_model(model_name, num_classes=num_classes_of(state_dict), device='meta')
    converted = checkpoint_filter_fn(state_dict, model)
    expected = set(model.state_dict())
    leftover, missing = sorted(set(converted) - expected), sorted(expected - set(converted))
    if leftover or missing:
        raise CheckpointError(f'{src} does not convert cleanly to {model_name}: left over {leftover[:10]}, '
                              f'missing {missing[:10]}')
    return save_safetensors(converted, dst, metadata={'model': model_name, 'source': Path(src).name})
