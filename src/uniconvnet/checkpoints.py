"""Checkpoints: loading weights into a model (:func:`load_weights`), the model a checkpoint holds
(:func:`model_from_checkpoint`), reading timm's training checkpoints.

:func:`load_weights` is the one loader: every route that reads weights from a file goes through it, timm's
``pretrained_cfg_overlay=dict(file=...)`` included (``UniConvNet.load_pretrained``). It lives in
:mod:`uniconvnet.io`, below the models (whose timm hook calls it), with the safe reader
:func:`~uniconvnet.io.load_checkpoint_file` (``weights_only`` torch files or safetensors: nothing unpickles arbitrary
objects) and the atomic writers; all are re-exported here, where they always were.
"""
import argparse
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn
from timm.models import get_pretrained_cfg_value

from .io import (CheckpointError, PathLike, atomic_save, atomic_write_text, load_checkpoint_file, load_weights,
                 num_classes_of, save_safetensors, unwrap_state_dict)
from .models import create_model, infer_variant, is_uniconvnet

__all__ = ['CheckpointError', 'TIMM_TRAIN_CHECKPOINT_GLOBALS', 'load_checkpoint_file', 'atomic_save',
           'atomic_write_text', 'save_safetensors', 'load_weights', 'load_timm_train_checkpoint',
           'model_from_checkpoint', 'num_classes_of', 'select_weights', 'unwrap_state_dict']

#: what timm's train.py (``timm.utils.CheckpointSaver``) pickles besides tensors and plain containers: the run's
#: parsed command line. Exactly these classes are allowed when reading such a checkpoint, nothing else.
TIMM_TRAIN_CHECKPOINT_GLOBALS = (argparse.Namespace,)


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


def load_timm_train_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint that timm's train.py wrote (``model_best.pth.tar``, ``last.pth.tar``, ...).

    ``weights_only`` loading with :data:`TIMM_TRAIN_CHECKPOINT_GLOBALS` allowed (a file holding any other object
    is refused). Its ``args`` come back as a plain dict; the weights stay under ``state_dict`` and
    ``state_dict_ema``. Any other checkpoint that :func:`load_checkpoint_file` reads is returned as it is.
    """
    checkpoint = load_checkpoint_file(path, allowed_globals=TIMM_TRAIN_CHECKPOINT_GLOBALS)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('args'), argparse.Namespace):
        checkpoint = dict(checkpoint, args=vars(checkpoint['args']))
    return checkpoint


def select_weights(checkpoint: Mapping[str, Any], use_ema: bool = False, source: str = 'the checkpoint'
                   ) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint: the trained model's, or with ``use_ema`` its EMA's (``model_ema``, timm's
    ``state_dict_ema``); a checkpoint without EMA weights is an error then."""
    if use_ema:
        for key in ('model_ema', 'state_dict_ema'):
            if isinstance(checkpoint.get(key), Mapping):
                return unwrap_state_dict(dict(checkpoint[key]))
        raise CheckpointError(f'{source} holds no EMA weights (no model_ema or state_dict_ema); convert it without '
                              f'--use-ema')
    return unwrap_state_dict(dict(checkpoint))
