"""The training loop, shared by every task.

A :class:`Task` says how a batch becomes a loss and how validation batches become metrics; the
:class:`Trainer` does the rest: timm optimiser (with layer-wise lr decay) and scheduler, mixed precision,
gradient accumulation, clipping, the NaN/inf guard, EMA, DistributedDataParallel, progress, ``metrics.jsonl``,
``curves.png``, atomic ``last.pt``/``best.pt`` with everything needed to resume, and the final
``model.safetensors`` + ``config.json`` (timm's format: ``timm.create_model('local-dir:OUTPUT')`` loads it) with the
task's model card (``README.md``: the folder is a Hub model repository).
"""
import contextlib
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from ..data.folder import CorruptImageError
from ..data.loader import set_epoch
from ..io import atomic_save, atomic_write_text, save_safetensors
from .config import TrainConfig
from .distributed import DistributedContext
from .progress import Progress, format_seconds

__all__ = ['Task', 'Trainer', 'TrainingDiverged', 'TrainingInterrupted', 'effective_batch_and_lr',
           'find_resume_checkpoint', 'make_logger', 'prepare_output', 'seed_everything']


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row; the message says what to change."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.fit`: where training stopped and which checkpoint holds the last good state.

    A ``KeyboardInterrupt``, so code that does not catch it stops as before; the command line turns it into one
    line with the command that resumes (exit code 130).
    """

    def __init__(self, epoch: int, epochs: int, checkpoint: Optional[Path], epochs_saved: int, output: Path):
        self.epoch, self.epochs, self.checkpoint, self.epochs_saved = epoch, epochs, checkpoint, epochs_saved
        self.output = output
        where = f'interrupted in epoch {epoch} of {epochs}'
        if checkpoint is None:
            message = f'{where}, before the first checkpoint: nothing to resume, run the command again'
        else:
            message = f'{where}; {checkpoint} holds the last good state ({epochs_saved} of {epochs} epochs done)'
        super().__init__(message)


class Task:
    """What the trainer needs from a task (classification, detection and segmentation each have one).

    Subclasses implement :meth:`training_loss`, :meth:`evaluation_sums` and :meth:`summarize`; the trainer
    calls them inside autocast, on batches already moved to the device.
    """
    #: what the weights are for, saved in the metadata of ``model.safetensors``
    name: str = 'task'
    #: validation metric whose highest value selects ``best.pt``
    main_metric: str = 'val_loss'
    #: keys of :meth:`evaluation_sums`, summed over batches and processes
    sum_keys: Tuple[str, ...] = ('loss', 'count')

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def evaluation_sums(self, model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def summarize(self, sums: Dict[str, float]) -> Dict[str, float]:
        """Metrics (named ``val_*``) from the summed :meth:`evaluation_sums`."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def metadata(self) -> Dict[str, Any]:
        """Saved in checkpoints and ``config.json``: e.g. ``label_names`` and ``preprocessing``."""
        return {}

    def write_config(self, model: nn.Module, path: Path) -> Path:
        """``config.json`` beside the final weights: the metadata as JSON (classification writes timm's format)."""
        return atomic_write_text(path, json.dumps(self.metadata(), indent=2))

    def model_card(self, trainer: 'Trainer') -> Optional[str]:
        """``README.md`` of the finished run's output folder (a Hub model card), or None to write none."""
        return None


def make_logger(path: Path, enabled: bool) -> Callable[[str], None]:
    """``log(message)``: print and append to ``path`` with a timestamp (a no-op when not ``enabled``)."""
    def log(message: str) -> None:
        if not enabled:
            return
        print(message, flush=True)
        with open(path, 'a', encoding='utf-8') as f:
            f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")}  {message}\n')
    return log


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _rng_state() -> Dict[str, Any]:
    """All RNG states, as tensors and plain values (so that ``weights_only`` loading accepts them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {'python': random.getstate(), 'torch': torch.get_rng_state(),
             'numpy': (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def effective_batch_and_lr(cfg: TrainConfig, world_size: int) -> Tuple[int, float, str]:
    """``(effective batch, learning rate, one-line explanation)``: linear scaling unless ``cfg.lr`` is set."""
    batch = cfg.batch_size * cfg.accum_steps * world_size
    how = f'{cfg.batch_size} per step x {cfg.accum_steps} accumulation x {world_size} process(es)'
    if cfg.lr is not None:
        return batch, cfg.lr, f'effective batch {batch} ({how}); lr {cfg.lr:.3g} (given)'
    lr = cfg.base_lr * batch / cfg.base_batch
    return batch, lr, (f'effective batch {batch} ({how}); lr {lr:.3g} (= {cfg.base_lr:g} x {batch} / '
                       f'{cfg.base_batch}, scaled linearly)')


def find_resume_checkpoint(resume: Optional[str], output: Path) -> Optional[Path]:
    """The checkpoint ``--resume`` points to: 'auto' is ``output/last.pt`` if it exists, else None."""
    if not resume:
        return None
    if resume == 'auto':
        path = output / 'last.pt'
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f'--resume {resume}: no such checkpoint; pass the path of a last.pt or best.pt, '
                                f'or --resume auto to continue the run in the output folder')
    return path


def prepare_output(cfg: TrainConfig, output: Path, ctx: DistributedContext
                   ) -> Tuple[Optional[Path], Callable[[str], None]]:
    """Check and create the output folder of a run; returns the checkpoint to resume from and the logger.

    A folder that holds a run (``last.pt``) is only reused with ``--resume`` or ``--overwrite`` (which removes
    the previous run's checkpoints and metrics first), so that nothing is overwritten by accident.
    """
    resume_path = find_resume_checkpoint(cfg.resume, output)
    if (output / 'last.pt').is_file() and resume_path is None:
        if not cfg.overwrite:
            raise ValueError(f'{output} already holds a training run (last.pt): continue it with --resume auto, '
                             f'or start over with --overwrite or another --output')
        if ctx.is_main:
            for name in ('last.pt', 'best.pt', 'metrics.jsonl'):
                (output / name).unlink(missing_ok=True)
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    log = make_logger(output / 'train.log', ctx.is_main)
    if cfg.resume == 'auto' and resume_path is None:
        log(f'--resume auto: nothing to resume in {output} (no last.pt): starting fresh')
    return resume_path, log


def _move(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _move(v, device, channels_last) for k, v in batch.items()}
    return batch


def _grad_norm(params: Sequence[nn.Parameter], max_norm: Optional[float]) -> torch.Tensor:
    """Total gradient norm, clipping to ``max_norm`` when given (the norm before clipping is returned)."""
    if max_norm:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def _clean_worker_error(error: CorruptImageError) -> CorruptImageError:
    """A data-loader worker wraps the error in its traceback: keep the one line that names the file."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else str(error)
    return CorruptImageError(last.split('CorruptImageError: ', 1)[-1])


class Trainer:
    """Runs ``cfg.epochs`` epochs of ``task`` on ``model``; rank 0 alone writes to ``output``."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, task: Task, train_loader: DataLoader,
                 val_loader: DataLoader, ctx: DistributedContext, output: Path,
                 log: Optional[Callable[[str], None]] = None):
        self.cfg, self.task, self.ctx, self.output = cfg, task, ctx, Path(output)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.log = log or (lambda msg: None)
        self.device = ctx.device
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)

        self.effective_batch, self.lr, self.lr_note = effective_batch_and_lr(cfg, ctx.world_size)
        self.optimizer = create_optimizer_v2(self.model, opt=cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay,
                                             layer_decay=cfg.layer_decay, eps=cfg.opt_eps)
        self.batches_per_epoch = len(train_loader)
        if cfg.limit_train_batches:
            self.batches_per_epoch = min(self.batches_per_epoch, cfg.limit_train_batches)
        if self.batches_per_epoch == 0:
            raise ValueError(f'the training set gives no full batch of {cfg.batch_size} per process; lower '
                             f'--batch-size or add images')
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / cfg.accum_steps)
        warmup = cfg.warmup_epochs
        if warmup >= cfg.epochs:
            self.log(f'note: a {warmup:g}-epoch warm-up does not fit in {cfg.epochs} epoch(s): no warm-up')
            warmup = 0
        # warm-up, then the schedule over the remaining epochs (ConvNeXt's and the official code's arithmetic)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=cfg.sched, num_epochs=cfg.epochs - warmup, warmup_epochs=warmup,
            min_lr=min(cfg.min_lr, self.lr), warmup_lr=cfg.warmup_lr, warmup_prefix=True, step_on_epochs=False,
            updates_per_epoch=self.updates_per_epoch)

        self.amp_dtype = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[cfg.amp]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.amp == 'fp16' else None
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None

        self.train_model: nn.Module = self.model
        if ctx.distributed:
            # depthwise weights (N, 1, k, k) have equivalent strides that DDP's layout check still reports
            warnings.filterwarnings('ignore', message='Grad strides do not match bucket view strides')
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

        self.start_epoch = 0
        self.num_updates = 0
        self.bad_steps = 0
        self.history: List[Dict[str, Any]] = []
        self.best_metric = -math.inf
        #: the checkpoint that holds the last good state (the one resumed from, then each ``last.pt`` written)
        self.last_checkpoint: Optional[Path] = None
        self.saved_epochs = 0

    # ------------------------------------------------------------------ steps

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _optimizer_step(self, losses: List[torch.Tensor], epoch: int, step: int) -> Optional[float]:
        """Apply the accumulated gradients unless the loss or the gradients are not finite.

        Returns the loss averaged over processes, or None when the update was skipped.
        """
        loss = torch.stack(losses).float().mean()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = _grad_norm(list(self.model.parameters()), self.cfg.clip_grad).to(loss.device)
        finite_loss = torch.isfinite(loss)
        stats = torch.stack([torch.where(finite_loss, loss, torch.zeros_like(loss)),
                             (~finite_loss).float(), norm.float()])
        total_loss, bad_losses, total_norm = self.ctx.all_reduce_sum(stats).tolist()
        # with fp16 the scaler skips overflowing gradients itself (and lowers the scale): not a bad step
        ok = bad_losses == 0 and (self.scaler is not None or math.isfinite(total_norm))
        if ok:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.bad_steps = 0
        else:
            if self.scaler is not None:
                self.scaler.update()
            self.bad_steps += 1
            what = 'loss' if bad_losses else 'gradient norm'
            self.log(f'warning: epoch {epoch + 1} step {step}: non-finite {what}, update skipped '
                     f'({self.bad_steps} in a row, stopping at {self.cfg.max_bad_steps})')
            if self.bad_steps >= self.cfg.max_bad_steps:
                raise TrainingDiverged(
                    f'training diverged: {self.bad_steps} updates in a row had a non-finite (NaN/inf) {what} '
                    f'(epoch {epoch + 1}, step {step}); lower the learning rate (--lr/--base-lr), set --clip-grad, '
                    f'use --amp bf16 rather than fp16, or check the data; then --resume auto from the last '
                    f'good checkpoint')
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        self.scheduler.step_update(num_updates=self.num_updates)
        if ok and self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        return total_loss / self.ctx.world_size if ok else None

    def current_lr(self) -> float:
        return max(group['lr'] for group in self.optimizer.param_groups)

    def train_one_epoch(self, epoch: int) -> float:
        """One pass over the training data; returns the mean loss of the applied updates."""
        cfg = self.cfg
        self.train_model.train()
        set_epoch(self.train_loader, epoch)
        n = self.batches_per_epoch
        progress = Progress(n, f'epoch {epoch + 1}/{cfg.epochs}', self.ctx.is_main, log_interval=cfg.log_interval,
                            write=self.log)
        loss_sum, loss_count, images, losses = 0.0, 0, 0, []
        last_loss = float('nan')
        start = time.perf_counter()
        batches = iter(self.train_loader)
        try:
            for i in range(n):
                try:
                    batch = next(batches)
                except CorruptImageError as e:
                    raise _clean_worker_error(e) from None
                batch = _move(batch, self.device, cfg.channels_last)
                group_start = i - i % cfg.accum_steps
                group_size = min(cfg.accum_steps, n - group_start)
                is_update = i + 1 == group_start + group_size
                sync = contextlib.nullcontext()
                if self.ctx.distributed and not is_update:
                    sync = self.train_model.no_sync()
                with sync:
                    with self._autocast():
                        loss = self.task.training_loss(self.train_model, batch)
                    losses.append(loss.detach())
                    scaled = loss / group_size
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
                images += self.task.batch_size(batch) * self.ctx.world_size
                if is_update:
                    step_loss = self._optimizer_step(losses, epoch, i + 1)
                    losses = []
                    if step_loss is not None:
                        loss_sum, loss_count, last_loss = loss_sum + step_loss, loss_count + 1, step_loss
                progress.update(i + 1, last_loss, self.current_lr(), images / (time.perf_counter() - start))
        finally:
            progress.close()
        return loss_sum / max(loss_count, 1) if loss_count else float('nan')

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Optional[DataLoader] = None) -> Dict[str, float]:
        """The task's validation metrics of ``model``, over every process's shard of ``loader``."""
        return evaluate_task(self.task, model, loader or self.val_loader, self.ctx, self.amp_dtype,
                             self.cfg.channels_last, self.cfg.limit_val_batches)

    # ------------------------------------------------------------- checkpoints

    def state_dict(self, epoch: int) -> Dict[str, Any]:
        rng = self.ctx.all_gather_object(_rng_state())
        return {
            'model': self.model.state_dict(),
            'model_ema': self.ema.module.state_dict() if self.ema is not None else None,
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(),
            'scaler': self.scaler.state_dict() if self.scaler is not None else None,
            'epoch': epoch, 'step': self.num_updates, 'rng': rng, 'world_size': self.ctx.world_size,
            'history': self.history, 'best_metric': self.best_metric,
            'config': self.cfg.as_dict(), 'meta': self.task.metadata(),
        }

    def load_state_dict(self, state: Dict[str, Any], source: str = 'checkpoint') -> None:
        """Restore everything :meth:`state_dict` saved; errors name what does not match."""
        missing = [k for k in ('model', 'optimizer', 'epoch', 'config') if k not in state]
        if missing:
            raise ValueError(f'{source} is not a training checkpoint (no {", ".join(missing)}); to start from '
                             f'its weights use --finetune {source}')
        saved_model = state['config'].get('model')
        if saved_model != self.cfg.model:
            raise ValueError(f'{source} is a checkpoint of {saved_model}, but this run trains {self.cfg.model}; '
                             f'pass --model {saved_model} or use another --output')
        try:
            self.model.load_state_dict(state['model'])
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise ValueError(f'{source} does not fit this model ({"; ".join(first[1:3]).strip()}); was it '
                             f'trained with another class count or model?') from e
        try:
            self.optimizer.load_state_dict(state['optimizer'])
        except ValueError as e:
            raise ValueError(f'{source}: optimiser state does not fit this run ({e}); resume with the same '
                             f'--opt and --layer-decay') from e
        self.scheduler.load_state_dict(state['scheduler'])
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        if self.ema is not None:
            self.ema.module.load_state_dict(state['model_ema'] if state.get('model_ema') else state['model'])
        self.start_epoch = int(state['epoch'])
        self.num_updates = int(state['step'])
        self.history = list(state.get('history', []))
        self.best_metric = float(state.get('best_metric', -math.inf))
        rng = state.get('rng') or []
        if len(rng) == self.ctx.world_size:
            _set_rng_state(rng[self.ctx.rank])
        else:
            self.log(f'note: {source} was written by {len(rng)} process(es), this run has {self.ctx.world_size}; '
                     f'random streams are re-seeded')
            seed_everything(self.cfg.seed + 1000 * self.start_epoch + self.ctx.rank)

    def save(self, epoch: int, is_best: bool) -> None:
        state = self.state_dict(epoch)  # every rank joins the RNG gather; rank 0 writes
        if self.ctx.is_main:
            atomic_save(state, self.output / 'last.pt')
            if is_best:
                atomic_save(state, self.output / 'best.pt')
        self.last_checkpoint, self.saved_epochs = self.output / 'last.pt', epoch

    def export(self) -> None:
        """``model.safetensors`` (+ ``model_ema.safetensors``) and the task's ``config.json``."""
        metadata = {'model': self.cfg.model, 'task': self.task.name}
        save_safetensors(self.model.state_dict(), self.output / 'model.safetensors', metadata)
        if self.ema is not None:
            save_safetensors(self.ema.module.state_dict(), self.output / 'model_ema.safetensors', metadata)
        self.task.write_config(self.model, self.output / 'config.json')

    # -------------------------------------------------------------------- loop

    def _write_records(self) -> None:
        from .artifacts import plot_curves
        # NaN/inf (e.g. the loss of an epoch whose updates were all skipped) become null: strict JSON
        lines = (json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()})
                 for r in self.history)
        atomic_write_text(self.output / 'metrics.jsonl', ''.join(line + '\n' for line in lines))
        try:
            plot_curves(self.history, self.output / 'curves.png')
        except ImportError as e:  # matplotlib is an optional extra
            self.log(f'note: curves.png not drawn ({e}); pip install matplotlib')

    def fit(self) -> Dict[str, Any]:
        """Train from ``start_epoch`` to ``cfg.epochs``; returns the history and the best metric.

        Ctrl-C raises :class:`TrainingInterrupted`, naming the checkpoint to resume from.
        """
        if self.start_epoch >= self.cfg.epochs:
            self.log(f'nothing left to train: the checkpoint has {self.start_epoch} of {self.cfg.epochs} epochs '
                     f'(raise --epochs to train longer)')
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                self._fit_epoch(epoch)
            if self.ctx.is_main:
                self.export()
                self._write_records()
                card = self.task.model_card(self)
                if card:
                    atomic_write_text(self.output / 'README.md', card)
        except KeyboardInterrupt:
            raise TrainingInterrupted(min(epoch + 1, self.cfg.epochs), self.cfg.epochs, self.last_checkpoint,
                                      max(self.saved_epochs, self.start_epoch), self.output) from None
        self.ctx.barrier()
        if self.history:
            last = self.history[-1].get(self.task.main_metric, math.nan)
            self.log(f'done: {self.task.main_metric} {last:.4f} (best {self.best_metric:.4f}); weights '
                     f'{self.output / "model.safetensors"}')
        return {'history': self.history, 'best_metric': self.best_metric, 'output': str(self.output)}

    def _fit_epoch(self, epoch: int) -> None:
        """Train one epoch, validate (the EMA too), record the metrics, save ``last.pt`` (and ``best.pt``)."""
        start = time.perf_counter()
        train_loss = self.train_one_epoch(epoch)
        lr = self.current_lr()
        metrics = self.evaluate(self.model)
        if self.ema is not None:
            metrics.update({f'{k}_ema': v for k, v in self.evaluate(self.ema.module).items()})
        record = {'epoch': epoch + 1, 'train_loss': train_loss, **metrics, 'lr': lr,
                  'seconds': time.perf_counter() - start}
        self.history.append(record)
        score = metrics.get(self.task.main_metric, -math.inf)
        self.scheduler.step(epoch + 1, metric=score)  # per-update schedules ignore it; 'plateau' needs it
        is_best = score > self.best_metric
        if is_best:
            self.best_metric = score
        shown = '  '.join(f'{k} {v:.4f}' for k, v in metrics.items())
        self.log(f'epoch {epoch + 1}/{self.cfg.epochs}  train_loss {train_loss:.4f}  {shown}  '
                 f'({format_seconds(record["seconds"])}){"  *best*" if is_best else ""}')
        if self.ctx.is_main:
            self._write_records()
        self.save(epoch + 1, is_best)


@torch.no_grad()
def evaluate_task(task: Task, model: nn.Module, loader: DataLoader, ctx: DistributedContext,
                  amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
                  max_batches: Optional[int] = None) -> Dict[str, float]:
    """Sum ``task.evaluation_sums`` over ``loader`` (its first ``max_batches``) and every process, then summarize."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(task.sum_keys), dtype=torch.float64, device=ctx.device)
    autocast = (torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    batches = iter(loader)
    seen = 0
    while max_batches is None or seen < max_batches:  # to the end: a shard stream's length is only an estimate
        try:
            batch = next(batches)
        except StopIteration:
            break
        except CorruptImageError as e:
            raise _clean_worker_error(e) from None
        seen += 1
        batch = _move(batch, ctx.device, channels_last)
        with autocast:
            out = task.evaluation_sums(model, batch)
        sums += torch.stack([out[k].double() for k in task.sum_keys])
    ctx.all_reduce_sum(sums)
    model.train(was_training)
    return task.summarize(dict(zip(task.sum_keys, sums.tolist())))
