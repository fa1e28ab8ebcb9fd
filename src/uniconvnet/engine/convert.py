"""``uniconvnet convert``: any checkpoint we can read safely, as our safetensors (and a Hub-format folder).

Sources: an official UniConvNet ``.pth``, a checkpoint written by timm's train.py (``.pth.tar``: ``state_dict``,
``state_dict_ema``, the run's ``argparse.Namespace`` and bookkeeping; read with exactly that class allowed), or one
of ours. Destination: a ``.safetensors`` file (the weights alone), or a folder that timm, transformers and every
``uniconvnet`` command load: ``model.safetensors`` + ``config.json``.
"""
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from timm.data import resolve_data_config
from timm.models import parse_model_name

from ..checkpoints import load_timm_train_checkpoint, load_weights, num_classes_of, select_weights
from ..data.transforms import Preprocessing
from ..io import CheckpointError, PathLike, save_safetensors
from ..models import check_model_name, create_model, infer_variant
from .artifacts import default_class_names, write_model_config

__all__ = ['convert_checkpoint']


def _model_name(checkpoint: Mapping[str, Any], weights: Dict[str, Any], given: Optional[str], src: PathLike) -> str:
    """``--model``, else the name the checkpoint records (timm's ``args.model``, our metadata), else the shapes'."""
    args = checkpoint.get('args') if isinstance(checkpoint.get('args'), dict) else {}
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    recorded = args.get('model') or checkpoint.get('arch') or meta.get('architecture')
    if isinstance(recorded, str) and parse_model_name(recorded)[0] is not None:
        recorded = None  # 'hf-hub:...' / 'local-dir:...': the architecture is in that config, not here
    name = given or recorded or infer_variant(weights)
    if not name:
        raise CheckpointError(f'cannot tell which model {src} is for; pass --model NAME')
    return check_model_name(name)


def _preprocessing(checkpoint: Mapping[str, Any], model) -> Preprocessing:
    """What the run fed the model: timm's train.py arguments (``--img-size``, ``--mean`` ...) over the model's."""
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    if isinstance(meta.get('preprocessing'), dict):
        return Preprocessing.from_dict(meta['preprocessing'])
    args = checkpoint.get('args') if isinstance(checkpoint.get('args'), dict) else {}
    cfg = resolve_data_config(args, model=model)  # timm's own reading of its arguments
    return Preprocessing(tuple(cfg['input_size']), cfg['interpolation'], tuple(cfg['mean']), tuple(cfg['std']),
                         float(cfg['crop_pct']))


def convert_checkpoint(src: PathLike, dst: PathLike, model: Optional[str] = None, use_ema: bool = False,
                       log: Callable[[str], None] = print) -> Path:
    """Convert ``src`` to our layout; returns what was written (``dst``).

    Args:
        src: official ``.pth``, timm train.py ``.pth.tar`` or our checkpoint.
        dst: ``*.safetensors`` for the weights alone, else a folder (created) with ``model.safetensors`` and
            timm's ``config.json`` (model name, class names, preprocessing).
        model: the model name; default the one the checkpoint records, else the variant its shapes match.
        use_ema: take the EMA weights (timm's ``state_dict_ema``, our ``model_ema``) instead of the model's.

    Every tensor must fit the model: anything left over or missing stops with the keys (and, for a UniConvNet,
    the variant the checkpoint is for), before anything is written.
    """
    src, dst = Path(src), Path(dst)
    checkpoint = load_timm_train_checkpoint(src)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{src} is not a checkpoint (a {type(checkpoint).__name__}, not a dict of weights)')
    weights = select_weights(checkpoint, use_ema, source=str(src))
    name = _model_name(checkpoint, weights, model, src)
    args = checkpoint.get('args') if isinstance(checkpoint.get('args'), dict) else {}
    kwargs = {'in_chans': args['in_chans']} if args.get('in_chans') else {}
    net = load_weights(create_model(name, num_classes=num_classes_of(weights), **kwargs), weights, source=str(src))
    what = f'{name}, {"EMA" if use_ema else "model"} weights'
    if dst.suffix == '.safetensors':
        save_safetensors(net.state_dict(), dst, metadata={'model': name, 'source': src.name})
        log(f'wrote {dst} ({what})')
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    names = meta.get('label_names') or default_class_names(net.num_classes)
    save_safetensors(net.state_dict(), dst / 'model.safetensors', metadata={'model': name, 'source': src.name})
    write_model_config(net, dst / 'config.json', {'preprocessing': _preprocessing(checkpoint, net).as_dict(),
                                                  'label_names': names, 'tag': meta.get('tag', '')})
    log(f'wrote {dst}/model.safetensors and config.json ({what}); load it with uniconvnet eval/predict '
        f'--checkpoint {dst}, or timm.create_model("local-dir:{dst}", pretrained=True) after import uniconvnet')
    return dst
