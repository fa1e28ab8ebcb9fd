"""What a run leaves behind and how to load it again: ``config.json``, weights, ``curves.png``.

``config.json`` is written with timm's own exporter, so an output folder is also a timm model folder:
``timm.create_model('local-dir:runs/uniconvnet_a-digits', pretrained=True)`` loads it.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn

from ..checkpoints import load_weights, num_classes_of
from ..data.transforms import Preprocessing
from ..io import CheckpointError, atomic_write, load_checkpoint_file
from ..models import create_model, infer_variant, unwrap_state_dict

__all__ = ['TrainedModelInfo', 'imagenet_class_names', 'load_trained_model', 'plot_curves', 'read_model_config',
           'write_model_config']


@dataclass
class TrainedModelInfo:
    """Model name, class names and preprocessing of a checkpoint."""
    architecture: str
    num_classes: int
    class_names: List[str]
    preprocessing: Preprocessing


def write_model_config(model: nn.Module, path: Union[str, Path], meta: Dict[str, Any]) -> Path:
    """``config.json`` in timm's format (architecture, label_names, preprocessing), written atomically.

    timm (``local-dir:``, ``hf-hub:``) and transformers (``AutoModelForImageClassification``) read it.
    """
    from timm.models._hub import save_config_for_hf
    pre = Preprocessing.from_dict(meta['preprocessing'])
    data_config = dict(input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean, std=pre.std,
                       crop_pct=pre.crop_pct)
    model_config = {'label_names': list(meta.get('label_names') or []),
                    'pretrained_cfg': {'tag': meta.get('tag', '')}}

    def write(tmp: str) -> None:
        save_config_for_hf(model, tmp, model_config=model_config, data_config=data_config)
        config = json.loads(Path(tmp).read_text())
        # timm 1.0.31 repeats num_classes in model_args; transformers' TimmWrapper passes model_args and its own
        # num_classes to timm.create_model, which then fails ("got multiple values for keyword argument
        # 'num_classes'"). timm reads the class count from the top-level num_classes either way.
        config.get('model_args', {}).pop('num_classes', None)
        Path(tmp).write_text(json.dumps(config, indent=2))
    return atomic_write(path, write)


def read_model_config(path: Union[str, Path]) -> TrainedModelInfo:
    """Read a timm-format ``config.json`` (ours, or any timm export)."""
    cfg = json.loads(Path(path).read_text())
    pre_cfg = cfg.get('pretrained_cfg', cfg)
    try:
        pre = Preprocessing(tuple(pre_cfg['input_size']), pre_cfg.get('interpolation', 'bicubic'),
                            tuple(pre_cfg['mean']), tuple(pre_cfg['std']), float(pre_cfg.get('crop_pct', 0.875)))
        num_classes = int(cfg.get('num_classes', pre_cfg.get('num_classes')))
        names = cfg.get('label_names') or pre_cfg.get('label_names') or default_class_names(num_classes)
        return TrainedModelInfo(cfg['architecture'], num_classes, [str(n) for n in names], pre)
    except (KeyError, TypeError) as e:
        raise ValueError(f'{path} is not a model config.json (missing {e})') from e


def _info_from_meta(meta: Dict[str, Any]) -> TrainedModelInfo:
    names = [str(n) for n in meta['label_names']]
    return TrainedModelInfo(meta['architecture'], len(names), names, Preprocessing.from_dict(meta['preprocessing']))


def imagenet_class_names(num_classes: int) -> Optional[List[str]]:
    """Readable ImageNet names ('tench', ...) for 1000- and 21841-class models (timm's ImageNetInfo)."""
    from timm.data import ImageNetInfo, infer_imagenet_subset
    subset = infer_imagenet_subset({'num_classes': num_classes})
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return [info.index_to_description(i).split(',')[0].strip() for i in range(num_classes)]


def default_class_names(num_classes: int) -> List[str]:
    return imagenet_class_names(num_classes) or [str(i) for i in range(num_classes)]


def readable_class_names(names: Sequence[str]) -> List[str]:
    """ImageNet synsets (n01440764 ...) become their names; anything else is kept."""
    if len(names) in (1000, 21841) and all(n.startswith('n') and n[1:].isdigit() for n in names):
        from timm.data import ImageNetInfo, infer_imagenet_subset
        info = ImageNetInfo(infer_imagenet_subset({'num_classes': len(names)}))
        try:
            return [info.label_name_to_description(n).split(',')[0].strip() for n in names]
        except KeyError:
            return list(names)
    return list(names)


def load_trained_model(checkpoint: Union[str, Path], model_name: Optional[str] = None
                       ) -> Tuple[nn.Module, TrainedModelInfo]:
    """A model (eval mode, CPU) and its info from any checkpoint we know.

    Accepts an output folder or its ``model.safetensors`` (``config.json`` beside it), our ``last.pt`` /
    ``best.pt``, or an official ``.pth``. The model name comes from ``model_name``, the metadata, or the
    weights' shapes; the class count from the weights; class names from the metadata, ImageNet's for
    1000-/21841-class models, else the class indices; preprocessing from the metadata or the model's
    pretrained cfg.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / 'model.safetensors'
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    info: Optional[TrainedModelInfo] = None
    if path.suffix == '.safetensors' and (path.parent / 'config.json').is_file():
        info = read_model_config(path.parent / 'config.json')
    raw = load_checkpoint_file(path)
    if info is None and isinstance(raw, dict) and isinstance(raw.get('meta'), dict) and raw['meta'].get('label_names'):
        info = _info_from_meta(raw['meta'])
    state_dict = unwrap_state_dict(raw)
    name = model_name or (info.architecture if info else None) or infer_variant(state_dict)
    if name is None:
        raise CheckpointError(f'cannot tell which model {path} is for; pass --model NAME')
    num_classes = num_classes_of(state_dict)
    model = load_weights(create_model(name, num_classes=num_classes), state_dict, source=str(path)).eval()
    if info is None or info.num_classes != num_classes:
        info = TrainedModelInfo(name, num_classes, default_class_names(num_classes), Preprocessing.from_model(model))
    else:
        info.architecture = name
    return model, info


def plot_curves(history: Sequence[Dict[str, Any]], path: Union[str, Path]) -> Path:
    """Loss curves on the left, the other validation metrics (accuracy) on the right, per epoch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    epochs = [r['epoch'] for r in history]
    keys = [k for k in (history[0] if history else {}) if k not in ('epoch', 'lr', 'seconds')]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for key in keys:
        ax = ax_loss if 'loss' in key else ax_metric
        ax.plot(epochs, [r.get(key, float('nan')) for r in history], marker='o', markersize=3, label=key)
    for ax, title in ((ax_loss, 'loss'), (ax_metric, 'validation accuracy (%)')):
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    plt.close(fig)
    return Path(path)
