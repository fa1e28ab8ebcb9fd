"""The layers a YOLO model YAML can name: ``RFABlock``, ``C3k2RFA`` (with its inner ``C3kRFA``) and
``UniConvNetBackbone``.

Arguments follow ultralytics' conventions: the YAML parser supplies the input channels ``c1`` first; the YAML
gives the output channels next. Every argument after ``c1`` has a default, so that the registration check (the
first line of each constructor) is reached whatever arguments an unextended parser passes.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from ultralytics.nn import tasks
from ultralytics.nn.modules import C2f, C3, Conv

from ...layers.rfa import ReceptiveFieldAggregator
from ...models import create_model, is_uniconvnet
from ...models.uniconvnet import trunk_norm_of

__all__ = ['RFABlock', 'C3kRFA', 'C3k2RFA', 'UniConvNetBackbone', 'YAML_MODULES', 'is_registered']

_DEFAULT_KERNELS = (7, 9, 11)
# 'auto': BatchNorms from scratch, the paper's LayerNorms with weights; 'model': the model's own ('layer' for UniConvNet)
TRUNK_NORMS = ('auto', 'batch', 'layer', 'model')
# set on ultralytics' parse_model once register() has extended it: the one record of registration
EXTENDED_MARK = '_uniconvnet_extended'


def is_registered() -> bool:
    """Whether :func:`register` has extended ultralytics' YAML parser in this process."""
    return bool(getattr(tasks.parse_model, EXTENDED_MARK, False))


def _require_registered(name: str) -> None:
    # Outside the extended parser the YAML arguments arrive without the input channels: stop with the fix
    # instead of a shape error later.
    if not is_registered():
        raise RuntimeError(f'{name} is used before uniconvnet.integrations.ultralytics.register() was called: call '
                           f'register() once, before building a YOLO model (it also sets up the channel bookkeeping '
                           f'of the YAML parser for {name})')


class RFABlock(nn.Module):
    """Residual Receptive Field Aggregator for YOLO models: ``x + RFA(x)``, then a 1x1 Conv if ``c2 != c1``.

    The RFA is UniConvNet's (``uniconvnet.layers.RFA``, LayerNorm first, so it is safe at batch 1), not
    RFAConv, an unrelated module with a similar name.

    Args:
        c1: input channels (supplied by the YAML parser); must be divisible by ``len(kernel_sizes) + 1``.
        c2: output channels (default: ``c1``).
        kernel_sizes: one odd depthwise kernel per layer operator; the paper's ``(7, 9, 11)`` by default.
        shortcut: add the input (a residual branch, as in UniConvNet's blocks).
    """

    def __init__(self, c1: int, c2: Optional[int] = None, kernel_sizes: Sequence[int] = _DEFAULT_KERNELS,
                 shortcut: bool = True):
        _require_registered(type(self).__name__)
        super().__init__()
        self.rfa = ReceptiveFieldAggregator(c1, kernel_sizes)
        self.add = shortcut
        self.proj = Conv(c1, c2, 1) if c2 is not None and c2 != c1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rfa(x)
        return self.proj(x + y if self.add else y)


class C3kRFA(C3):
    """ultralytics' C3k with RFA blocks instead of bottlenecks (the inner block of ``C3k2RFA(c3k=True)``)."""

    def __init__(self, c1: int, c2: int, n: int = 2, shortcut: bool = True, e: float = 0.5,
                 kernel_sizes: Sequence[int] = _DEFAULT_KERNELS):
        _require_registered(type(self).__name__)
        super().__init__(c1, c2, n, shortcut, 1, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(RFABlock(hidden, hidden, kernel_sizes, shortcut) for _ in range(n)))


class C3k2RFA(C2f):
    """ultralytics' C3k2 (a C2f) whose inner blocks are RFA blocks; arguments in the order of ``C3k2``'s.

    Args:
        c1: input channels (supplied by the YAML parser).
        c2: output channels (default: ``c1``).
        n: inner blocks (the YAML repeat count, scaled by the depth multiple).
        c3k: each inner block a ``C3kRFA`` of two RFA blocks (set by the parser at the m/l/x scales, as for
            ``C3k2``) instead of one RFA block.
        e: hidden width ``int(c2 * e)``; with ``c3k`` its half must split into ``len(kernel_sizes) + 1`` parts.
        kernel_sizes: the RFA's depthwise kernels.
        shortcut: residual RFA blocks.
    """

    def __init__(self, c1: int, c2: Optional[int] = None, n: int = 1, c3k: bool = False, e: float = 0.5,
                 kernel_sizes: Sequence[int] = _DEFAULT_KERNELS, shortcut: bool = True):
        _require_registered(type(self).__name__)
        c2 = c1 if c2 is None else c2
        super().__init__(c1, c2, n, shortcut, 1, e)
        self.m = nn.ModuleList(
            C3kRFA(self.c, self.c, 2, shortcut, kernel_sizes=kernel_sizes) if c3k
            else RFABlock(self.c, self.c, kernel_sizes, shortcut)
            for _ in range(n))


class UniConvNetBackbone(nn.Module):
    """A UniConvNet variant (or any timm model with ``features_only``) as a YOLO backbone layer: returns the
    list of the requested stage outputs.

    Put it first in the YAML and pick its outputs with ultralytics' ``Index`` rows, whose first argument is the
    stage's channel count (``channels`` below; checked when the model is built).

    Trained from scratch (no ``weights``), a UniConvNet's trunk (the stem and the downsampling layers between
    stages, not the residual blocks) has BatchNorms, the model's ``trunk_norm='batch'``. A LayerNorm there normalises each
    pixel's response vector by its own size, so the strong response of a small object and the weak one of the
    flat background around it come out the same size (at UniConvNet-A's first norm the object/background energy
    ratio falls from 10.6 to 1.6; a BatchNorm keeps 8.8). Pretrained filters have learnt to cope; random ones do
    not within ultralytics' few optimizer steps, and the detector then never learns to localise (UniConvNet-A:
    mAP 0 after 20 epochs; with BatchNorms in the trunk it learns, and with an optimizer step every batch, which
    :func:`~uniconvnet.integrations.ultralytics.training_recipe` gives a from-scratch backbone, it passes
    yolo11n; docs/yolo.md has the evidence). With ``weights``, the model is the paper's, LayerNorms and all.

    ultralytics hands every model images scaled to [0, 1]; timm models, and their pretrained weights, expect
    images normalised by their ``pretrained_cfg`` mean and std, so this layer normalises its input first.

    Args:
        variant: a UniConvNet variant name, or any timm model name.
        out_indices: stages to return; for UniConvNet ``(1, 2, 3)`` are strides 8, 16, 32 (P3, P4, P5).
        weights: a local classification checkpoint (official ``.pth`` or ``uniconvnet`` safetensors), or None
            (write ``None`` in a YAML: ultralytics' parser cannot take an empty string).
        in_chans: image channels.
        drop_path_rate: stochastic depth.
        model_kwargs: more keyword arguments of the model, e.g. ``{ls_init_value: 1.0}``.
        trunk_norm: ``'auto'``: a BatchNorm trunk when trained from scratch, the paper's LayerNorms with
            ``weights``; ``'batch'`` or ``'layer'`` to choose (UniConvNet's ``trunk_norm``); ``'model'``: the
            model's own norms (other timm models always keep theirs).
    """

    def __init__(self, variant: str = 'uniconvnet_a', out_indices: Sequence[int] = (1, 2, 3),
                 weights: Optional[str] = None, in_chans: int = 3, drop_path_rate: float = 0.0,
                 model_kwargs: Optional[Dict[str, Any]] = None, trunk_norm: str = 'auto'):
        _require_registered(type(self).__name__)
        super().__init__()
        if trunk_norm not in TRUNK_NORMS:
            raise ValueError(f'UniConvNetBackbone trunk_norm {trunk_norm!r} is not one of {", ".join(TRUNK_NORMS)}')
        kwargs: Dict[str, Any] = dict(features_only=True, out_indices=tuple(out_indices), in_chans=in_chans,
                                      drop_path_rate=drop_path_rate, **(model_kwargs or {}))
        if is_uniconvnet(variant) and trunk_norm != 'model':
            kwargs['trunk_norm'] = trunk_norm if trunk_norm != 'auto' else 'layer' if weights else 'batch'
        elif trunk_norm in ('batch', 'layer'):
            raise ValueError(f'UniConvNetBackbone trunk_norm {trunk_norm!r} is an option of UniConvNet variants; '
                             f'{variant} keeps its own norms: use trunk_norm auto or model')
        if weights:
            if not Path(weights).is_file():
                raise FileNotFoundError(f'UniConvNetBackbone weights not found: {weights}')
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
        self.variant = variant
        self.body = create_model(variant, **kwargs)
        self.channels: List[int] = list(self.body.feature_info.channels())
        mean, std = self._input_statistics(self.body, in_chans)
        # constants of the variant, rebuilt with it: not part of the state dict
        self.register_buffer('input_mean', mean, persistent=False)
        self.register_buffer('input_std', std, persistent=False)

    @staticmethod
    def _input_statistics(body: nn.Module, in_chans: int):
        cfg = getattr(body, 'pretrained_cfg', None) or {}
        mean, std = cfg.get('mean', (0.485, 0.456, 0.406)), cfg.get('std', (0.229, 0.224, 0.225))
        if len(mean) != in_chans:  # e.g. a grey or multispectral input: the average statistic for every channel
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        return (torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def trunk_norm(self) -> Optional[str]:
        """``'batch'`` or ``'layer'``: the norm of the backbone's trunk, read from its modules (models pickled
        before the option existed included); None for a timm model without a stem norm."""
        return trunk_norm_of(self.body)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        if 'input_mean' not in self._buffers:  # pickled by uniconvnet 0.1, which fed [0, 1] images unnormalised
            self.register_buffer('input_mean', None, persistent=False)
            self.register_buffer('input_std', None, persistent=False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.input_mean is not None:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        return list(self.body(x))


# YAML name -> class; what register() makes visible to ultralytics' parser
YAML_MODULES: Dict[str, type] = {'RFABlock': RFABlock, 'C3k2RFA': C3k2RFA, 'UniConvNetBackbone': UniConvNetBackbone}
