"""What dense tasks on a backbone share, whichever framework builds their heads (torchvision detectors, smp
segmenters): the backbone options, their checks, the built-in small-object data as the default, and evaluating a
finished run from its output folder.

A framework's task (``integrations/<framework>/task.py``) builds its model, :class:`~uniconvnet.engine.Task` and
datasets; training runs through :func:`~uniconvnet.engine.run.run_training` like classification.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch.nn as nn
from torch.utils.data import Dataset

from ..checkpoints import load_weights
from ..data.loader import build_loader
from ..data.small_objects import generate_small_objects
from ..models import check_model_name, is_uniconvnet
from ..models.uniconvnet import check_trunk_norm
from .config import TrainConfig
from .distributed import DistributedContext, init_distributed
from .run import RunParts, check_settings, run_training
from .trainer import Task, evaluate_task

__all__ = ['DEFAULT_DATA', 'DenseOptions', 'EvalParts', 'check_backbone_options', 'data_root', 'evaluate_run',
           'read_run', 'train_dense']

DEFAULT_DATA = Path('runs') / 'data' / 'small_objects'


@dataclass
class DenseOptions:
    """What a dense task adds to :class:`~uniconvnet.engine.TrainConfig`: its head and its backbone."""
    arch: str = ''                           # the head, e.g. retinanet, upernet
    backbone: str = 'uniconvnet_a'
    backbone_weights: Optional[str] = None
    num_classes: Optional[int] = None        # default: from the data
    trunk_norm: Optional[str] = None         # UniConvNet's stem/downsampling norms: 'layer' (default), 'batch'

    def backbone_kwargs(self) -> Dict[str, Any]:
        """Model options beyond the name, e.g. ``trunk_norm``; only those that were set."""
        return {} if self.trunk_norm is None else {'trunk_norm': self.trunk_norm}


def check_backbone_options(opts: DenseOptions, data: Optional[str]) -> None:
    """The backbone options and the data folder, checked before anything is built or written."""
    check_model_name(opts.backbone)
    if opts.trunk_norm is not None:
        if not is_uniconvnet(opts.backbone):
            raise ValueError(f'--trunk-norm is an option of UniConvNet backbones; {opts.backbone} keeps its own norms')
        check_trunk_norm(opts.trunk_norm)
    if opts.num_classes is not None and opts.num_classes < 1:
        raise ValueError(f'--num-classes must be at least 1, got {opts.num_classes}')
    if opts.backbone_weights is not None and not Path(opts.backbone_weights).is_file():
        raise FileNotFoundError(f'--backbone-weights {opts.backbone_weights}: no such file')
    if data and not Path(data).is_dir():
        raise FileNotFoundError(f'data folder not found: {data}')


def data_root(data: Optional[str], log: Callable[[str], None]) -> Path:
    """``data``, or the built-in small-object dataset (written on first use) when it is None."""
    if data:
        return Path(data)
    generate_small_objects(DEFAULT_DATA)
    log(f'no --data: using the built-in small-object dataset in {DEFAULT_DATA}')
    return DEFAULT_DATA


def train_dense(cfg: TrainConfig, opts: DenseOptions, task: str,
                build_parts: Callable[[Path, Callable[[str], None]], RunParts]) -> Dict[str, Any]:
    """Train a dense task: settings and options checked first, then :func:`run_training` with the parts that
    ``build_parts(data_root, log)`` makes (their task's ``meta`` names the class count); returns its result."""
    check_settings(cfg)
    check_backbone_options(opts, cfg.data)

    def setup(ctx: DistributedContext, log: Callable[[str], None]) -> RunParts:
        parts = build_parts(data_root(cfg.data, log), log)
        parts.describe = lambda trainer: [
            f'{task}: {opts.arch} on {opts.backbone}, {parts.task.meta["num_classes"]} classes, '
            f'{len(parts.train_set)} train / {len(parts.val_set)} val images; {trainer.lr_note}']
        return parts

    return run_training(cfg, Path(cfg.output or Path('runs') / f'{task}-{opts.arch}-{opts.backbone}'), setup)


def read_run(checkpoint: str, task: str) -> Tuple[Dict[str, Any], Path]:
    """The metadata (``config.json``) and weights of a finished run of ``task``: ``model.safetensors`` of an
    output folder, or a ``best.pt``/``last.pt`` inside one."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint not found: {checkpoint} (pass the output folder of the training run '
                                f'or a checkpoint inside it)')
    folder = path if path.is_dir() else path.parent
    config = folder / 'config.json'
    if not config.is_file():
        raise FileNotFoundError(f'{config} not found: pass the output folder of the training run or a checkpoint '
                                f'inside it')
    meta = json.loads(config.read_text())
    if meta.get('task') != task:
        raise ValueError(f'{checkpoint} holds a {meta.get("task")} model, not a {task} model')
    return meta, folder / 'model.safetensors' if path.is_dir() else path


#: what a task builds to evaluate a finished run: model, task, validation set and collate function
EvalParts = Tuple[nn.Module, Task, Dataset, Optional[Callable]]


def evaluate_run(checkpoint: str, task: str, build: Callable[[Dict[str, Any], Path], EvalParts],
                 data: Optional[str] = None, batch_size: int = 8, device: str = 'auto') -> Dict[str, float]:
    """The validation metrics of a finished run: ``build(meta, data_root)`` rebuilds its model (random weights),
    task and validation set from the run's metadata; the run's weights are loaded, then every process evaluates
    its shard."""
    if data and not Path(data).is_dir():
        raise FileNotFoundError(f'data folder not found: {data}')
    meta, weights = read_run(checkpoint, task)
    ctx = init_distributed(device)
    try:
        model, task_, val_set, collate = build(meta, data_root(data, print))
        load_weights(model, weights, source=f'{weights} (a {meta["arch"]} on {meta["backbone"]})')
        loader = build_loader(val_set, batch_size, is_training=False, collate_fn=collate,
                              world_size=ctx.world_size, rank=ctx.rank)
        return evaluate_task(task_, model.to(ctx.device), loader, ctx)
    finally:
        ctx.close()
