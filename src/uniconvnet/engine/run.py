"""One run set-up for every task: what ``uniconvnet train``, ``detect train`` and ``segment train`` share.

A task builds its model, :class:`Task` and datasets in a ``setup`` function; :func:`run_training` does the rest in
the same order for all of them: process group, determinism, threads, the output folder (and what to resume),
seeds, data loaders, the :class:`Trainer`, resuming, and :meth:`Trainer.fit`.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from .._deprecation import warn_deprecated
from ..data.loader import build_loader
from ..host import check_threads, torch_threads
from ..io import load_checkpoint_file
from .config import TrainConfig
from .distributed import DistributedContext, init_distributed
from .trainer import Task, Trainer, prepare_output, seed_everything

__all__ = ['RunParts', 'check_settings', 'run_training', 'set_deterministic']


@dataclass
class RunParts:
    """What a task's ``setup`` hands to :func:`run_training`."""
    model: nn.Module
    task: Task
    train_set: Dataset
    val_set: Dataset
    collate_fn: Optional[Callable] = None
    #: validation batch size; default the training one
    val_batch_size: Optional[int] = None
    #: lines logged before training starts, given the trainer (its lr note, updates per epoch, ...)
    describe: Callable[[Trainer], List[str]] = field(default=lambda trainer: [])


def check_settings(cfg: TrainConfig) -> None:
    """The settings every task uses, checked before anything is built; errors name the flag and what it takes."""
    at_least_one = {'epochs': cfg.epochs, 'batch_size': cfg.batch_size, 'accum_steps': cfg.accum_steps,
                    'max_bad_steps': cfg.max_bad_steps}
    for name, value in at_least_one.items():
        if value < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be at least 1, got {value}')
    if cfg.warmup_epochs < 0:
        raise ValueError(f'--warmup-epochs must be at least 0, got {cfg.warmup_epochs:g}')
    if cfg.workers < 0:
        raise ValueError(f'--workers must be at least 0 (0: load data in the training process), got {cfg.workers}')
    for name, value in (('lr', cfg.lr), ('base_lr', cfg.base_lr)):
        if value is not None and not value > 0:
            raise ValueError(f'--{name.replace("_", "-")} must be positive, got {value:g}')
    if cfg.amp not in ('none', 'bf16', 'fp16'):
        raise ValueError(f"--amp must be 'none', 'bf16' or 'fp16', got {cfg.amp!r}")
    check_threads(cfg.threads)


def set_deterministic(deterministic: bool, device: torch.device) -> None:
    """Deterministic algorithms when asked (a resumed run then repeats an uninterrupted one), else cuDNN autotuning."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True


def run_training(cfg: TrainConfig, output: Path,
                 setup: Callable[[DistributedContext, Callable[[str], None]], RunParts]) -> Dict[str, Any]:
    """Train what ``setup(ctx, log)`` builds, as ``cfg`` says, into ``output``; returns :meth:`Trainer.fit`'s dict.

    Works in one process or under ``torchrun``. ``setup`` runs after the output folder is ready and the seed is
    set, so every process builds the same initial weights.
    """
    if cfg.deterministic:  # cuBLAS reads it when CUDA starts, so before the process group; the user asked for it
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    ctx = init_distributed(cfg.device)
    try:
        with torch_threads(cfg.threads):
            return _train(cfg, output, setup, ctx)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, output: Path, setup: Callable[[DistributedContext, Callable[[str], None]], RunParts],
           ctx: DistributedContext) -> Dict[str, Any]:
    set_deterministic(cfg.deterministic, ctx.device)
    resume_path, log = prepare_output(cfg, output, ctx)
    seed_everything(cfg.seed)  # the same initial weights in every process
    parts = setup(ctx, log)
    loader_args = dict(world_size=ctx.world_size, rank=ctx.rank, seed=cfg.seed, num_workers=cfg.workers,
                       pin_memory=ctx.device.type == 'cuda', persistent_workers=not cfg.deterministic,
                       collate_fn=parts.collate_fn)
    train_loader = build_loader(parts.train_set, cfg.batch_size, is_training=True, **loader_args)
    val_loader = build_loader(parts.val_set, parts.val_batch_size or cfg.batch_size, is_training=False,
                              **loader_args)
    trainer = Trainer(cfg, parts.model, parts.task, train_loader, val_loader, ctx, output, log)
    seed_everything(cfg.seed + ctx.rank)  # augmentation, drop path and mixup differ between processes
    if resume_path is not None:
        trainer.load_state_dict(load_checkpoint_file(resume_path), str(resume_path))
        trainer.last_checkpoint = resume_path
        log(f'resumed from {resume_path}: {trainer.start_epoch} of {cfg.epochs} epochs done')
    for line in parts.describe(trainer):
        log(line)
    log(f'output: {output}')
    return trainer.fit()


def __getattr__(name: str):
    if name == 'cpu_threads':  # the thread helper before uniconvnet.host held the one copy
        warn_deprecated('uniconvnet.engine.run.cpu_threads', 'uniconvnet.host.torch_threads')
        return torch_threads
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
