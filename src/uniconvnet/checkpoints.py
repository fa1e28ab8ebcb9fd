"""Checkpoints: loading weights into a model (:func:`load_weights`), reading timm's training checkpoints.

Files are read by :func:`uniconvnet.io.load_checkpoint_file` (``weights_only`` torch files or safetensors: nothing
unpickles arbitrary objects) and written by the atomic writers of :mod:`uniconvnet.io`; both are re-exported
here, where they always were.
"""
import argparse
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

from .io import CheckpointError, PathLike, atomic_save, atomic_write_text, load_checkpoint_file, save_safetensors
from .models import checkpoint_filter_fn, is_uniconvnet, unwrap_state_dict

__all__ = ['CheckpointError', 'TIMM_TRAIN_CHECKPOINT_GLOBALS', 'load_checkpoint_file', 'atomic_save',
           'atomic_write_text', 'save_safetensors', 'load_weights', 'load_timm_train_checkpoint', 'num_classes_of',
           'select_weights']

#: what timm's train.py (``timm.utils.CheckpointSaver``) pickles besides tensors and plain containers: the run's
#: parsed command line. Exactly these classes are allowed when reading such a checkpoint, nothing else.
TIMM_TRAIN_CHECKPOINT_GLOBALS = (argparse.Namespace,)


def num_classes_of(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Class count of a UniConvNet state dict (ours or official): rows of its classifier, 0 without one."""
    for key in ('head.fc.weight', 'head.weight'):
        if key in state_dict and state_dict[key].dim() == 2:
            return int(state_dict[key].shape[0])
    return 0


def _model_label(model: nn.Module) -> str:
    return (getattr(model, 'pretrained_cfg', None) or {}).get('architecture') or type(model).__name__


def _classifier_prefix(model: nn.Module) -> Optional[str]:
    """``'head.fc.'`` and the like: where ``model``'s classifier weights live, None for a model without one."""
    get_classifier = getattr(model, 'get_classifier', None)
    if get_classifier is None:
        return None
    classifier = get_classifier()
    return next((name + '.' for name, module in model.named_modules() if module is classifier and name), None)


def _rows(weights: Dict[str, torch.Tensor], prefix: str) -> int:
    return next((int(v.shape[0]) for k, v in weights.items() if k.startswith(prefix) and v.dim() == 2), 0)


def _fit_classifier(state_dict: Dict[str, torch.Tensor], model: nn.Module, source: str, reset_head: bool,
                    log: Callable[[str], None]) -> Dict[str, torch.Tensor]:
    """The state dict with the classifier checked: a head of another class count is an error, or dropped."""
    prefix = _classifier_prefix(model)
    if prefix is None:
        return state_dict
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    given = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    if given.keys() == expected.keys() and all(v.shape == expected[k].shape for k, v in given.items()):
        return state_dict
    got, want = _rows(given, prefix), _rows(expected, prefix)
    if got == want:  # same class count, other features: the body does not fit either, reported by the loader
        return state_dict
    if not reset_head:
        raise CheckpointError(f'{source} has a {got}-class head but the model has {want} classes; create the model '
                              f'with num_classes={got}, or fine-tune to re-initialise the head')
    log(f'{source} has a {got or "different"}-class head and the model has {want} classes: the head is '
        f're-initialised')
    return {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


def _adapt_first_conv(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """A first convolution trained on another number of input channels, adapted as timm does for pretrained."""
    from timm.models import adapt_input_conv
    first_conv = (getattr(model, 'pretrained_cfg', None) or {}).get('first_conv')
    key = f'{first_conv}.weight'
    want = model.state_dict().get(key)
    have = state_dict.get(key)
    if want is None or have is None or have.dim() != 4 or have.shape[1] == want.shape[1]:
        return state_dict
    return dict(state_dict, **{key: adapt_input_conv(want.shape[1], have)})


def _first_reason(error: RuntimeError) -> str:
    """The first detail line of a ``load_state_dict`` error (its first line only names the class)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[1] if len(lines) > 1 else (lines[0] if lines else 'no detail')
    return reason if len(reason) <= 300 else reason[:300] + ' ...'


def load_weights(model: nn.Module, checkpoint: Union[PathLike, Mapping[str, Any]], *, reset_head: bool = False,
                 source: Optional[str] = None, log: Callable[[str], None] = print) -> nn.Module:
    """Load a checkpoint into ``model``: the one way weights are loaded in this package.

    Args:
        model: a UniConvNet (official or our key layout), any timm model, or any ``nn.Module``.
        checkpoint: a ``.pt``/``.pth``/``.safetensors`` file (read safely, see :func:`load_checkpoint_file`) or
            what one holds. Weights under ``'model'``, ``'model_ema'`` or ``'state_dict'`` and ``module.``
            prefixes are unwrapped.
        reset_head: when the checkpoint's classifier has another class count, drop it and keep the model's
            freshly initialised head (fine-tuning) instead of failing.
        source: how messages name the checkpoint (default: its path).
        log: where the note about a re-initialised head goes.

    Anything else that does not fit fails with a :class:`CheckpointError` (a ``ValueError``) naming the
    checkpoint, the model and the first misfit; for a UniConvNet it names the variant the checkpoint is for.
    A first convolution trained on another number of input channels is adapted as timm does.
    """
    source = source or str(checkpoint if not isinstance(checkpoint, Mapping) else 'the checkpoint')
    state_dict = unwrap_state_dict(checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint_file(checkpoint))
    if is_uniconvnet(model):
        state_dict = checkpoint_filter_fn(state_dict, model)
    state_dict = _fit_classifier(state_dict, model, source, reset_head, log)
    state_dict = _adapt_first_conv(state_dict, model)
    prefix = _classifier_prefix(model) if reset_head else None
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=prefix is None)
    except RuntimeError as e:
        raise CheckpointError(f'{source} does not fit {_model_label(model)}: {_first_reason(e)}') from e
    missing = [k for k in missing if prefix is None or not k.startswith(prefix)]
    if missing or unexpected:
        raise CheckpointError(f'{source} does not fit {_model_label(model)}: missing {missing[:5]}, '
                              f'unexpected {list(unexpected)[:5]}')
    return model


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
