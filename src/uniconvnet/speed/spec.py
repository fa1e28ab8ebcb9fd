"""What the speed tools measure: a model by name with how to run it (:class:`ModelSpec`), and a training step."""
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import torch
import torch.nn as nn

from ..models import create_model

__all__ = ['MODES', 'ModelSpec', 'Runner', 'check_device', 'synchronized', 'train_step_runner']

MODES = ('plain', 'fused', 'compile')
Runner = Callable[[], Any]


@dataclass(frozen=True)
class ModelSpec:
    """A timm model name, the keyword arguments it is built with, and how to run it.

    Modes (``NAME:MODE[,MODE]`` in :meth:`parse`): ``plain`` the reference (grid_sample) DCN core, ``fused``
    ``model.fuse()`` first (inference only), ``compile`` ``torch.compile`` (inference only).
    """
    name: str
    plain: bool = False
    fused: bool = False
    compiled: bool = False
    kwargs: Dict[str, Any] = field(default_factory=dict, hash=False)  # e.g. {'recompute': ['rfa']}

    @classmethod
    def parse(cls, text: str) -> 'ModelSpec':
        name, _, modes = text.partition(':')
        flags = [m for m in modes.split(',') if m]
        unknown = [m for m in flags if m not in MODES]
        if unknown or not name:
            raise ValueError(f'bad model spec {text!r}: use NAME or NAME:MODE[,MODE] with modes {", ".join(MODES)}')
        return cls(name, plain='plain' in flags, fused='fused' in flags, compiled='compile' in flags)

    @property
    def label(self) -> str:
        modes = [m for m, on in zip(MODES, (self.plain, self.fused, self.compiled)) if on]
        options = json.dumps(self.kwargs, sort_keys=True) if self.kwargs else ''
        return self.name + (':' + ','.join(modes) if modes else '') + options

    @property
    def trainable(self) -> bool:
        return not (self.fused or self.compiled)

    def build(self, train: bool = False, device: str = 'cpu') -> nn.Module:
        model = create_model(self.name, **self.kwargs)
        if self.plain:
            if not hasattr(model, 'set_dcn_backend'):
                raise ValueError(f'{self.name} has no DCNv3 layers; drop the "plain" mode')
            model.set_dcn_backend('torch')
        model.to(device).train(train)
        if self.fused:
            if not hasattr(model, 'fuse'):
                raise ValueError(f'{self.name} has no fuse(); drop the "fused" mode')
            model.fuse()
        return torch.compile(model) if self.compiled else model


def check_device(device: str) -> str:
    """``device`` if it is usable here, else ValueError naming the fix."""
    if device not in ('cpu', 'cuda'):
        raise ValueError(f'unknown device {device!r}: use cpu or cuda')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is visible to PyTorch; use --device cpu')
    return device


def synchronized(run: Runner, device: str) -> Runner:
    """``run`` followed by a wait for the device, so that wall time covers the work it queued."""
    if device != 'cuda':
        return run

    def run_and_wait() -> None:
        run()
        torch.cuda.synchronize()
    return run_and_wait


def train_step_runner(model: nn.Module, batch: int, image_size: int, device: str = 'cpu') -> Runner:
    """One training step of ``model`` on a fixed random batch: forward, cross-entropy, backward, AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    num_classes = getattr(model, 'num_classes', 1000)
    targets = torch.randint(0, max(num_classes, 1), (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), targets).backward()
        optimizer.step()
    return synchronized(step, device)
