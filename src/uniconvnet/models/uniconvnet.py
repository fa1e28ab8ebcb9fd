"""UniConvNet, in timm's family-file order: blocks, model, checkpoint_filter_fn, default_cfgs, variants.

Paper: "UniConvNet: Expanding Effective Receptive Field while Maintaining Asymptotically Gaussian Distribution
for ConvNets of Any Scale", Yuhao Wang and Wei Xi, ICCV 2025 (arXiv:2508.09000).
Official code: https://github.com/ai-paperwithcode/UniConvNet (MIT). This file is a re-implementation that
reproduces its outputs number for number and loads its checkpoints through ``checkpoint_filter_fn``.

Each block is three residual branches, each with a layer scale:
    x = x + RFA(x)                                  (NCHW)
    x = x + DCNv3(LayerNorm(x))                     (NHWC)
    x = x + MLP(LayerNorm(x))                       (NHWC)

Blocks compute all three branches channels-last: the RFA's 1x1 convolutions are matrix products over the
channels, its LayerNorms single ``F.layer_norm`` calls, its depthwise convolutions run on channels-last memory, and
activations stay channels-last from block to block. The official code computes in NCHW; both give the official
outputs within float rounding (``tests/models/test_parity.py``).
"""
import logging
import re
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    get_device_dtype,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, named_apply, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

from ..io import PathLike, load_weights, unwrap_state_dict
from ..layers import DCNv3, Mlp, ReceptiveFieldAggregator, set_dcn_backend
from ..layers.functional import leaves_cpu_autocast
from ..layers.fusion import fold_input_affine_, fold_output_scale_, without_affine

__all__ = ['BRANCHES', 'TRUNK_NORMS', 'UniConvNet', 'UniConvNetBlock', 'UniConvNetStage', 'VARIANTS',
           'checkpoint_filter_fn', 'infer_variant', 'trunk_norm_of']

_logger = logging.getLogger(__name__)

# The residual branches of a block, in order: what ``recompute`` names
BRANCHES = ('rfa', 'dcn', 'mlp')
# The norms the trunk (stem and downsampling layers) can have: the paper's LayerNorms, or BatchNorms
TRUNK_NORMS = ('layer', 'batch')


def check_trunk_norm(trunk_norm: str) -> str:
    """``trunk_norm`` if it is one of :data:`TRUNK_NORMS`, else a ValueError naming them."""
    if trunk_norm not in TRUNK_NORMS:
        raise ValueError(f'trunk_norm={trunk_norm!r} is not one of {", ".join(map(repr, TRUNK_NORMS))}: \'layer\' is '
                         f'the paper\'s (and its checkpoints\'), \'batch\' the trunk for training from scratch on small '
                         f'objects (docs/detection-segmentation.md)')
    return trunk_norm


def trunk_norm_layer(trunk_norm: str, channels: int, device=None, dtype=None) -> nn.Module:
    """A norm of the trunk over NCHW maps: the paper's channel LayerNorm (eps 1e-6), or a BatchNorm."""
    if check_trunk_norm(trunk_norm) == 'batch':
        return nn.BatchNorm2d(channels, device=device, dtype=dtype)
    return LayerNorm2d(channels, eps=1e-6, device=device, dtype=dtype)


def trunk_norm_of(model: nn.Module) -> Optional[str]:
    """``'layer'`` or ``'batch'``: the norm of a UniConvNet's trunk, read from its stem's modules (so it works for
    ``features_only`` models, models holding one, e.g. a detector, and models pickled before the option existed);
    None for a model without one."""
    for name, module in model.named_modules():
        if any(part.startswith('stem') for part in name.split('.')):
            if isinstance(module, nn.BatchNorm2d):
                return 'batch'
            if isinstance(module, nn.LayerNorm):
                return 'layer'
    return None


def check_recompute(recompute: Sequence[str]) -> List[bool]:
    """Per branch of :data:`BRANCHES`, whether it is recomputed in the backward pass; a ValueError for other names."""
    if isinstance(recompute, str):
        recompute = (recompute,)
    unknown = [name for name in recompute if name not in BRANCHES]
    if unknown:
        raise ValueError(f'unknown branch(es) to recompute: {", ".join(map(repr, unknown))}; choose from '
                         f'{", ".join(BRANCHES)} (e.g. recompute=("rfa",)), or () for none')
    return [name in recompute for name in BRANCHES]


class LayerScale(nn.Module):
    """A branch's per-channel layer scale ``gamma`` (state-dict key ``ls_*.gamma``, timm's layout).

    The branches apply it through their projection weights (``scale_rows``) rather than by calling this module;
    :meth:`UniConvNetBlock.reparameterize` folds it into those weights for good and sets it to None.
    """

    gamma: Optional[torch.Tensor]

    def __init__(self, dim: int, init_value: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value, device=device, dtype=dtype))


class UniConvNetBlock(nn.Module):
    """RFA, then DCNv3, then MLP; each a residual branch with layer scale and drop path. NCHW in and out.

    The block computes channels-last (see the module docstring); its output is an NCHW view of channels-last
    memory, which the next block reads without a copy. Branches named in ``recompute`` (see :data:`BRANCHES`) keep
    only their input for the backward pass and run again there: less memory for more time.
    """

    def __init__(
            self,
            dim: int,
            dcn_group_channels: int = 16,
            kernel_sizes: Sequence[int] = (7, 9, 11),
            mlp_ratio: float = 4.0,
            ls_init_value: float = 1e-6,
            drop_path: float = 0.0,
            proj_drop: float = 0.0,
            dcn_backend: Optional[str] = None,
            recompute: Sequence[str] = (),
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.recompute = check_recompute(recompute)
        if dcn_group_channels < 1 or dim % dcn_group_channels != 0:
            raise ValueError(f'UniConvNetBlock: dim={dim} is not divisible by the DCN group width '
                             f'dcn_group_channels={dcn_group_channels}; use a width that is a multiple of it')
        self.rfa = ReceptiveFieldAggregator(dim, kernel_sizes, **dd)
        self.ls_rfa = LayerScale(dim, ls_init_value, **dd)
        self.norm_dcn = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.dcn = DCNv3(dim, kernel_size=3, stride=1, pad=1, dilation=1, group=dim // dcn_group_channels,
                         backend=dcn_backend, **dd)
        self.ls_dcn = LayerScale(dim, ls_init_value, **dd)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)
        self.ls_mlp = LayerScale(dim, ls_init_value, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NHWC from here on; free when x is channels-last in memory (the previous block's output is)
        x = x.permute(0, 2, 3, 1).contiguous()
        x = x + self.drop_path(self._run_branch(0, x))  # RFA
        x = x + self.drop_path(self._run_branch(1, x))  # DCNv3
        x = x + self.drop_path(self._run_branch(2, x))  # MLP
        return x.permute(0, 3, 1, 2)

    def _run_branch(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # TorchScript: no recomputation
            if self.recompute[index] and torch.is_grad_enabled():
                return checkpoint(self.branch, index, x, use_reentrant=False)
        return self.branch(index, x)

    def branch(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Branch ``BRANCHES[index]`` of the NHWC residual stream ``x``, its layer scale included."""
        # the layer scales act through the projections' weights: nothing extra is kept for their gradients
        if index == 0:
            return self.rfa(x.permute(0, 3, 1, 2), self.ls_rfa.gamma).permute(0, 2, 3, 1)
        if index == 1:
            return self.dcn(self.norm_dcn(x), self.ls_dcn.gamma)
        return self.mlp(self.norm_mlp(x), self.ls_mlp.gamma)

    def reparameterize(self) -> None:
        """Fold for inference, in place: layer scales into the projections before them, the MLP norm's affine
        parameters into the first MLP layer, and (inside the RFA) its norms' affine parameters into the 1x1
        convolutions after them. The DCN norm stays: it also feeds a zero-padded depthwise convolution, where a
        shift does not fold exactly. Call after loading weights; the state dict changes."""
        # the branches pass gamma = None on: no scale left to apply (the modules stay for TorchScript's typing)
        if self.ls_rfa.gamma is not None and self.rfa.fold_output_scale_(self.ls_rfa.gamma):
            self.ls_rfa.gamma = None
        for layer_scale, projection in ((self.ls_dcn, self.dcn.output_proj), (self.ls_mlp, self.mlp.fc2)):
            if layer_scale.gamma is not None:
                fold_output_scale_(projection, layer_scale.gamma)
                layer_scale.gamma = None
        if self.norm_mlp.elementwise_affine:
            fold_input_affine_(self.mlp.fc1, self.norm_mlp.weight, self.norm_mlp.bias)
            self.norm_mlp = without_affine(self.norm_mlp)


class UniConvNetStage(nn.Module):
    """Optional downsampling (a norm of ``trunk_norm``'s kind, 3x3 stride-2 conv), then ``depth`` blocks."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            depth: int,
            downsample: bool = True,
            drop_path_rates: Optional[Sequence[float]] = None,
            trunk_norm: str = 'layer',
            device=None,
            dtype=None,
            **block_kwargs: Any,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Sequential(
                trunk_norm_layer(trunk_norm, in_chs, **dd),
                nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=2, padding=1, **dd),
            )
        else:
            self.downsample = nn.Identity()
        drop_path_rates = list(drop_path_rates) if drop_path_rates is not None else [0.0] * depth
        self.blocks = nn.Sequential(*[
            UniConvNetBlock(out_chs, drop_path=drop_path_rates[i], **block_kwargs, **dd) for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x


# FX leaves registered functions as single calls (a shape check is not traceable); its auto-wrapping skips
# names that start with an underscore, hence the public name.
@register_notrace_function
def check_input_channels(x: torch.Tensor, in_chans: int) -> None:
    """Raise a ValueError naming expected and actual channels when ``x`` is not an NCHW batch that fits."""
    if x.dim() != 4:
        raise ValueError(f'UniConvNet expects an NCHW image batch, got a {x.dim()}-D tensor of shape {list(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(f'UniConvNet was built for {in_chans} input channels but got {x.shape[1]} '
                         f'(input shape {list(x.shape)}); pass in_chans={x.shape[1]} when creating the model, '
                         f'or convert the images to {in_chans} channels')


class UniConvNet(nn.Module):
    """UniConvNet image classifier and backbone.

    Args:
        in_chans: input image channels.
        num_classes: classes of the head; 0 removes the classifier.
        global_pool: head pooling ('avg', 'max', ... or '' for none).
        depths: blocks per stage.
        dims: channels per stage; each must be divisible by the RFA split and the DCN group width.
        dcn_group_channels: channels per DCNv3 group (8 for A-P2, 16 for N0-XL in the official code).
        kernel_sizes: depthwise kernels of the RFA's layer operators.
        mlp_ratio: MLP hidden width as a multiple of the stage width.
        ls_init_value: initial value of every layer scale.
        head_init_scale: factor on the initial head weights and bias.
        drop_rate: dropout before the classifier.
        proj_drop_rate: dropout inside the MLPs.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this value.
        dcn_backend: DCNv3 sampling backend of every block (see :meth:`set_dcn_backend`); None: the user's
            default (``UNICONVNET_DCN_BACKEND``, else ``'auto'``).
        recompute: branches of every block (``'rfa'``, ``'dcn'``, ``'mlp'``) that keep only their input for the
            backward pass and run again there (see :meth:`set_recompute`).
        trunk_norm: the norms of the trunk, i.e. the stem and the downsampling layers between stages (not those
            inside the blocks): ``'layer'``, the paper's LayerNorms (its checkpoints need them), or ``'batch'``,
            BatchNorms, which keep small objects standing out from a flat background when training from random
            weights (docs/detection-segmentation.md, docs/yolo.md).
    """

    # Under CPU autocast a model whose stages do fewer multiply-adds per layer than this (pixels x dim^2 of a stage,
    # the same for every stage) computes its features in float32 (the head still follows autocast): at that size
    # bfloat16's casts of inputs and weights cost more than its faster arithmetic saves, in the stem and the DCN
    # layers as in the RFAs (see their own rules). UniConvNet-A at batch 1 (1.8 M) ran 1.06-1.09x the float32 time
    # in bfloat16 without this rule (1.01x with it), at batch 8 (14.5 M) 0.81-0.89x; N0 at batch 1 (7.2 M) 0.82-0.84x
    # (`benchmarks/eager_cpu.py`). An attribute: 0 follows autocast always.
    autocast_float32_below: int = 4_000_000

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            depths: Sequence[int] = (3, 3, 15, 3),
            dims: Sequence[int] = (64, 128, 256, 512),
            dcn_group_channels: int = 16,
            kernel_sizes: Sequence[int] = (7, 9, 11),
            mlp_ratio: float = 4.0,
            ls_init_value: float = 1e-6,
            head_init_scale: float = 1.0,
            drop_rate: float = 0.0,
            proj_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            dcn_backend: Optional[str] = None,
            recompute: Sequence[str] = (),
            trunk_norm: str = 'layer',
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        check_trunk_norm(trunk_norm)
        if len(depths) != len(dims):
            raise ValueError(f'depths {tuple(depths)} and dims {tuple(dims)} must have one entry per stage')
        if dims[0] % 2 != 0:
            raise ValueError(f'dims[0]={dims[0]} must be even: the stem has dims[0] // 2 channels in the middle')
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.trunk_norm = trunk_norm
        self.feature_info: List[Dict[str, Any]] = []

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1, **dd),
            trunk_norm_layer(trunk_norm, dims[0] // 2, **dd),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1, **dd),
            trunk_norm_layer(trunk_norm, dims[0], **dd),
        )
        total = sum(depths)
        # plain Python so that construction works on the meta device
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        stages = []
        prev_chs, cursor, reduction = dims[0], 0, 4
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            if i > 0:
                reduction *= 2
            stages.append(UniConvNetStage(
                prev_chs, dim, depth,
                downsample=i > 0,
                drop_path_rates=rates[cursor:cursor + depth],
                dcn_group_channels=dcn_group_channels,
                kernel_sizes=kernel_sizes,
                mlp_ratio=mlp_ratio,
                ls_init_value=ls_init_value,
                proj_drop=proj_drop_rate,
                dcn_backend=dcn_backend,
                recompute=recompute,
                trunk_norm=trunk_norm,
                **dd,
            ))
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f'stages.{i}'))
            prev_chs, cursor = dim, cursor + depth
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev_chs
        self.head = NormMlpClassifierHead(
            prev_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6), **dd)
        named_apply(partial(_init_weights, head_init_scale=head_init_scale), self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for layer-wise lr decay: stem, then each downsample and block in order."""
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def set_recompute(self, branches: Sequence[str] = BRANCHES) -> 'UniConvNet':
        """Selective recomputation: the named branches of every block (``'rfa'``, ``'dcn'``, ``'mlp'``; ``()`` for
        none) keep only their input for the backward pass and run again there. Returns the model.

        Finer than :meth:`set_grad_checkpointing` (whole stages): e.g. ``('rfa',)`` drops the RFA's many
        small intermediates, the largest share of a block's activation memory, for one more RFA forward.
        """
        flags = check_recompute(branches)
        for module in self.modules():
            if isinstance(module, UniConvNetBlock):
                module.recompute = list(flags)
        return self

    @torch.jit.ignore
    def set_dcn_backend(self, backend: Optional[str]) -> 'UniConvNet':
        """Sampling backend of every DCNv3 layer: ``'auto'`` or a registered name (``uniconvnet.ops.backend_names()``;
        ``'torch'`` is the reference core, plain ATen ops); None: the user's default. Returns the model.

        For a block of code only: ``with uniconvnet.layers.using_dcn_backend(model, 'torch'): ...``.
        """
        return set_dcn_backend(self, backend)

    @torch.jit.ignore
    def fuse(self) -> 'UniConvNet':
        """Fold what folds exactly for inference (see :meth:`UniConvNetBlock.reparameterize`); in place.

        Returns the model. ``timm.utils.reparameterize_model(model)`` does the same through each module's
        ``reparameterize()``. Outputs move by float rounding only; the state dict changes, so load weights first.
        """
        for module in list(self.modules()):
            if module is not self and hasattr(module, 'reparameterize'):
                module.reparameterize()
        return self

    @torch.jit.ignore
    def filter_checkpoint(self, state_dict: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """A checkpoint (official or ours) in this model's layout, checked against it: what
        :func:`uniconvnet.checkpoints.load_weights` applies before loading (see :func:`checkpoint_filter_fn`)."""
        return checkpoint_filter_fn(state_dict, self)

    @torch.jit.ignore
    def load_pretrained(self, path: PathLike) -> None:
        """timm's hook for pretrained weights (``custom_load`` in every UniConvNet config): a local file
        (``pretrained_cfg_overlay=dict(file=PATH)``) or a downloaded one is loaded by
        :func:`uniconvnet.checkpoints.load_weights`, the one loader: read safely (``weights_only`` or safetensors),
        official keys converted, a head of another class count re-initialised (as timm does), a first convolution
        adapted to ``in_chans``."""
        load_weights(self, path, reset_head=True, log=_logger.info)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, reset_other: bool = False) -> None:
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, reset_other=reset_other, in_features=self.num_features, **dd)
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward that also returns the output of the chosen stages (NCHW).

        Args:
            indices: last n stages if int, all if None, else the stage indices to take.
            norm: unused; UniConvNet has no norm between the last stage and the head.
            stop_early: stop after the last stage taken.
            intermediates_only: return only the intermediates.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"UniConvNet intermediates are NCHW only, got output_fmt={output_fmt!r}")
        check_input_channels(x, self.in_chans)
        x = x.contiguous(memory_format=torch.channels_last)
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        if torch.jit.is_scripting() or not stop_early:
            stages = self.stages
        else:
            stages = self.stages[:max_index + 1]
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last one needed for ``indices`` (and the head, by default)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '', reset_other=True)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages; returns the last stage's NCHW map (before pooling). Under CPU autocast, a model with
        less work per layer than :attr:`autocast_float32_below` computes them with autocast off."""
        check_input_channels(x, self.in_chans)
        x = x.contiguous(memory_format=torch.channels_last)
        if not torch.jit.is_scripting():  # TorchScript: no autocast
            if self.leaves_autocast(x):
                with torch.autocast('cpu', enabled=False):
                    return self.stages(self.stem(x))
        return self.stages(self.stem(x))

    def leaves_autocast(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_features` of the images ``x`` runs with CPU autocast off: it is on, and the work
        per layer (a stage's pixels x its width^2, the same for every stage) is below
        :attr:`autocast_float32_below`."""
        pixels = x.shape[0] * -(-x.shape[-2] // 4) * -(-x.shape[-1] // 4)  # the first stage's map (stride 4)
        return leaves_cpu_autocast(x, pixels * self.feature_info[0]['num_chs'] ** 2, self.autocast_float32_below)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average pool, LayerNorm, (dropout), classifier."""
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module, name: Optional[str] = None, head_init_scale: float = 1.0) -> None:
    """The official init: truncated normal (std 0.02) for convs and linears, zero bias; DCNv3 its own."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        if name and name.startswith('head.'):
            module.weight.data.mul_(head_init_scale)
            module.bias.data.mul_(head_init_scale)
    elif isinstance(module, DCNv3):
        # named_apply visits children first, so this overrides the generic init above, as upstream does
        module.reset_parameters()


# --------------------------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------------------------

# (official key pattern, our key) for the whole model, then for the inside of a block. The official RFA layer
# i (1-based) has a{i}.0/a{i}.2 (context 1x1/depthwise), v{i} (amplifier gate), v{i}1 (amplifier projection),
# v{i}2 (discriminator 1x1, 'v12' for the first layer), conv3_{i} (discriminator 3x3), proj{i} (context
# projection, from the second layer) and norm{i} (norm1 is the RFA's own norm over all channels).
OFFICIAL_KEY_MAP: Tuple[Tuple[str, str], ...] = (
    (r'^downsample_layers\.0\.(\d+)\.', r'stem.\1.'),
    (r'^downsample_layers\.(\d+)\.(\d+)\.', r'stages.\1.downsample.\2.'),
    (r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'^norm\.', r'head.norm.'),
    (r'^head\.', r'head.fc.'),
)
OFFICIAL_BLOCK_KEY_MAP: Tuple[Tuple[str, str], ...] = (
    (r'^layer_scale$', 'ls_rfa.gamma'),
    (r'^gamma1$', 'ls_dcn.gamma'),
    (r'^gamma2$', 'ls_mlp.gamma'),
    (r'^norm1\.0\.', 'norm_dcn.'),
    (r'^norm2\.0\.', 'norm_mlp.'),
    (r'^dcn\.dw_conv\.0\.', 'dcn.dw_conv.'),
    (r'^attn\.norm1\.', 'rfa.norm.'),
)
_OFFICIAL_RFA_KEY = re.compile(r'^attn\.(a(\d)\.([02])|v(\d)([12]?)|conv3_(\d)|proj(\d)|norm(\d))\.(weight|bias)$')


def _convert_official_block_key(key: str) -> str:
    for pattern, repl in OFFICIAL_BLOCK_KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    m = _OFFICIAL_RFA_KEY.match(key)
    if m is None:
        return key  # mlp.fc1/fc2 and dcn projections share our names; anything else is reported as left over
    _, a_idx, a_pos, v_idx, v_kind, conv_idx, proj_idx, norm_idx, param = m.groups()
    if a_idx:
        layer, name = a_idx, 'context_pw' if a_pos == '0' else 'context_dw'
    elif v_idx:
        layer, name = v_idx, {'': 'amp_gate', '1': 'amp_proj', '2': 'disc_pw'}[v_kind]
    elif conv_idx:
        layer, name = conv_idx, 'disc_dw'
    elif proj_idx:
        layer, name = proj_idx, 'context_proj'
    else:
        layer, name = norm_idx, 'norm'
    return f'rfa.layers.{int(layer) - 1}.{name}.{param}'


def convert_official_key(key: str) -> str:
    """Map one key of an official UniConvNet checkpoint to this implementation's name."""
    for pattern, repl in OFFICIAL_KEY_MAP:
        if re.match(pattern, key):
            key = re.sub(pattern, repl, key)
            break
    m = re.match(r'^(stages\.\d+\.blocks\.\d+\.)(.*)$', key)
    if m:
        key = m.group(1) + _convert_official_block_key(m.group(2))
    return key


def is_official_state_dict(state_dict: Dict[str, Any]) -> bool:
    return 'downsample_layers.0.0.weight' in state_dict


def _architecture_of(state_dict: Dict[str, torch.Tensor]) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...], int]]:
    """(depths, dims, dcn_group_channels) of a state dict in our layout, or None if it cannot be read."""
    depths, dims, group_chs = [], [], None
    for i in range(8):
        blocks = {int(m.group(1)) for k in state_dict for m in [re.match(rf'^stages\.{i}\.blocks\.(\d+)\.', k)] if m}
        if not blocks:
            break
        depths.append(max(blocks) + 1)
        w = state_dict.get(f'stages.{i}.blocks.0.ls_mlp.gamma')
        mask = state_dict.get(f'stages.{i}.blocks.0.dcn.mask.weight')
        if w is None or mask is None:
            return None
        dims.append(int(w.shape[0]))
        group_chs = int(w.shape[0]) // max(int(mask.shape[0]) // 9, 1)
    if not depths or group_chs is None:
        return None
    return tuple(depths), tuple(dims), group_chs


def infer_variant(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """Name of the variant (``uniconvnet_t`` ...) whose architecture this state dict has, if any."""
    sd = unwrap_state_dict(state_dict)
    if is_official_state_dict(sd):
        sd = {convert_official_key(k): v for k, v in sd.items()}
    arch = _architecture_of(sd)
    for name, cfg in VARIANTS.items():
        if arch == (tuple(cfg['depths']), tuple(cfg['dims']), cfg['dcn_group_channels']):
            return name
    return None


def _check_same_trunk(state_dict: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> None:
    """A checkpoint of one ``trunk_norm`` does not load into a model of the other: say which to build."""
    if 'stem.1.weight' not in state_dict or 'stem.1.weight' not in expected:
        return
    have = 'batch' if 'stem.1.running_mean' in state_dict else 'layer'
    want = 'batch' if 'stem.1.running_mean' in expected else 'layer'
    if have != want:
        raise ValueError(f'checkpoint does not fit this model: its trunk (stem and downsampling) has '
                         f'{have.capitalize()}Norms, the model was built with trunk_norm={want!r}; create the model '
                         f'with trunk_norm={have!r}')


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Turn an official checkpoint (or ours) into a state dict for ``model``.

    Accepts the dict under 'model', 'model_ema' or 'state_dict', or a bare one, with or without 'module.'
    prefixes. Shapes are checked here so that a checkpoint of another variant fails with a message naming the
    mismatching tensors and the variant the checkpoint is for. The classifier is left to timm, which drops it
    when the class count differs.
    """
    sd = unwrap_state_dict(state_dict)
    if is_official_state_dict(sd):
        sd = {convert_official_key(k): v for k, v in sd.items()}
    expected = model.state_dict()
    is_head = lambda k: k.startswith('head.fc.')  # noqa: E731

    def fits(key: str, shape: torch.Size) -> bool:
        want = expected[key].shape
        if key == 'stem.0.weight' and len(shape) == 4 and shape[:1] + shape[2:] == want[:1] + want[2:]:
            return True  # other in_chans: timm adapts the first conv after this filter
        return shape == want

    _check_same_trunk(sd, expected)
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
                  for k, v in sd.items() if k in expected and not is_head(k) and not fits(k, v.shape)]
    unexpected = [k for k in sd if k not in expected and not is_head(k)]
    missing = [k for k in expected if k not in sd and not is_head(k)]
    if mismatched or unexpected or missing:
        variant = infer_variant(sd)
        hint = (f'the checkpoint is for {variant}; create that model instead' if variant
                else 'it matches no UniConvNet variant')
        details = []
        if mismatched:
            details.append(f'{len(mismatched)} shape mismatches, e.g. ' + '; '.join(mismatched[:5]))
        if unexpected:
            details.append(f'{len(unexpected)} unexpected keys, e.g. ' + ', '.join(unexpected[:5]))
        if missing:
            details.append(f'{len(missing)} missing keys, e.g. ' + ', '.join(missing[:5]))
        raise ValueError(f'checkpoint does not fit this model ({hint}): ' + ' | '.join(details))
    return sd


# --------------------------------------------------------------------------------------------------------------
# Pretrained configs and variants
# --------------------------------------------------------------------------------------------------------------

_HF = 'https://huggingface.co/ai-modelwithcode/UniConvNet/resolve/main/'


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0', 'classifier': 'head.fc',
        'license': 'mit', 'paper_ids': 'arXiv:2508.09000',
        'paper_name': 'UniConvNet: Expanding Effective Receptive Field while Maintaining Asymptotically '
                      'Gaussian Distribution for ConvNets of Any Scale',
        'origin_url': 'https://github.com/ai-paperwithcode/UniConvNet',
        # timm hands the file (local or downloaded) to UniConvNet.load_pretrained, i.e. to our one loader
        'custom_load': True,
        **kwargs,
    }


_cfg384 = partial(_cfg, input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)

default_cfgs = generate_default_cfgs({
    'uniconvnet_a.in1k': _cfg(_HF + 'uniconvnet_a_1k_224.pth'),
    'uniconvnet_p0.in1k': _cfg(_HF + 'uniconvnet_p0_1k_224_ema.pth'),
    'uniconvnet_p1.in1k': _cfg(_HF + 'uniconvnet_p1_1k_224_ema.pth'),
    'uniconvnet_p2.in1k': _cfg(_HF + 'uniconvnet_p2_1k_224_ema.pth'),
    'uniconvnet_n0.in1k': _cfg(_HF + 'uniconvnet_n0_1k_224_ema.pth'),
    'uniconvnet_n1.in1k': _cfg(_HF + 'uniconvnet_n1_1k_224.pth'),
    'uniconvnet_n2.in1k': _cfg(_HF + 'uniconvnet_n2_1k_224_ema.pth'),
    'uniconvnet_n3.in1k': _cfg(_HF + 'uniconvnet_n3_1k_224_ema.pth'),
    'uniconvnet_t.in1k': _cfg(_HF + 'uniconvnet_t_1k_224_ema.pth'),
    'uniconvnet_t.in1k_384': _cfg384(_HF + 'uniconvnet_t_1k_384.pth'),
    'uniconvnet_s.in1k': _cfg(_HF + 'uniconvnet_s_1k_224_ema.pth'),
    'uniconvnet_s.in1k_384': _cfg384(_HF + 'uniconvnet_s_1k_384.pth'),
    'uniconvnet_b.in1k': _cfg(_HF + 'uniconvnet_b_1k_224_ema.pth'),
    'uniconvnet_b.in1k_384': _cfg384(_HF + 'uniconvnet_b_1k_384.pth'),
    # L and XL: the first tag is the default, the ImageNet-1k fine-tune (there is no 1k model at 224)
    'uniconvnet_l.in22k_ft_in1k_384': _cfg384(_HF + 'uniconvnet_l_22k_1k_384.pth'),
    'uniconvnet_l.in22k': _cfg(_HF + 'uniconvnet_l_22k_224.pth', num_classes=21841),
    'uniconvnet_xl.in22k_ft_in1k_384': _cfg384(_HF + 'uniconvnet_xl_22k_1k_384.pth'),
    'uniconvnet_xl.in22k': _cfg(_HF + 'uniconvnet_xl_22k_224.pth', num_classes=21841),
})

# The paper's variants: A-P2 use 8 channels per DCN group, N0-XL 16 (the official code's two model files).
VARIANTS: Dict[str, Dict[str, Any]] = {
    'uniconvnet_a': dict(depths=(2, 3, 9, 2), dims=(24, 48, 96, 192), dcn_group_channels=8),
    'uniconvnet_p0': dict(depths=(2, 2, 7, 2), dims=(32, 64, 128, 256), dcn_group_channels=8),
    'uniconvnet_p1': dict(depths=(2, 3, 6, 3), dims=(32, 64, 128, 256), dcn_group_channels=8),
    'uniconvnet_p2': dict(depths=(3, 3, 11, 3), dims=(32, 64, 128, 256), dcn_group_channels=8),
    'uniconvnet_n0': dict(depths=(2, 2, 7, 2), dims=(48, 96, 192, 384), dcn_group_channels=16),
    'uniconvnet_n1': dict(depths=(2, 2, 8, 3), dims=(48, 96, 192, 384), dcn_group_channels=16),
    'uniconvnet_n2': dict(depths=(3, 3, 11, 3), dims=(48, 96, 192, 384), dcn_group_channels=16),
    'uniconvnet_n3': dict(depths=(3, 3, 19, 3), dims=(48, 96, 192, 384), dcn_group_channels=16),
    'uniconvnet_t': dict(depths=(3, 3, 15, 3), dims=(64, 128, 256, 512), dcn_group_channels=16),
    'uniconvnet_s': dict(depths=(3, 3, 17, 3), dims=(80, 160, 320, 640), dcn_group_channels=16),
    'uniconvnet_b': dict(depths=(4, 4, 13, 4), dims=(112, 224, 448, 896), dcn_group_channels=16),
    'uniconvnet_l': dict(depths=(3, 3, 18, 3), dims=(160, 320, 640, 1280), dcn_group_channels=16),
    'uniconvnet_xl': dict(depths=(3, 3, 22, 3), dims=(160, 320, 640, 1280), dcn_group_channels=16),
}


def _check_out_indices(variant: str, out_indices: Any, num_levels: int) -> None:
    """timm indexes the feature levels with ``out_indices`` deep inside its wrappers; check them here instead."""
    fix = (f'{variant} has {num_levels} feature levels (its stages): use indices 0..{num_levels - 1} '
           f'(or -{num_levels}..-1 from the end), e.g. out_indices={tuple(range(num_levels))}')
    is_int = lambda i: isinstance(i, int) and not isinstance(i, bool)  # noqa: E731
    if is_int(out_indices):
        if not 1 <= out_indices <= num_levels:
            raise ValueError(f'out_indices={out_indices}: a number n selects the last n feature levels, so it must '
                             f'be 1..{num_levels}; {fix}')
        return
    indices = list(out_indices) if isinstance(out_indices, (list, tuple)) else []
    if not indices or not all(is_int(i) and -num_levels <= i < num_levels for i in indices):
        raise ValueError(f'out_indices={out_indices!r} is not valid: {fix}')


def _check_create_options(variant: str, kwargs: Dict[str, Any]) -> None:
    """Options of ``timm.create_model`` that timm passes on unchecked, answered with what would work."""
    if 'out_indices' in kwargs:
        if not kwargs.get('features_only'):
            raise ValueError(f'out_indices selects the feature maps of a feature extractor: create it with '
                             f'features_only=True, out_indices={kwargs["out_indices"]!r} (or use '
                             f'model.forward_intermediates(x, indices=...))')
        _check_out_indices(variant, kwargs['out_indices'], len(kwargs.get('depths', VARIANTS[variant]['depths'])))
    drop_path_rate = kwargs.get('drop_path_rate', 0.0)
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f'drop_path_rate={drop_path_rate} must be in [0, 1): it is the probability of dropping the '
                         f'last block (the paper uses 0.1-0.5 by model size)')
    if kwargs.get('in_chans', 3) < 1:
        raise ValueError(f'in_chans={kwargs["in_chans"]} must be at least 1 (3 for RGB, 1 for grey images)')
    if kwargs.get('num_classes', 0) < 0:
        raise ValueError(f'num_classes={kwargs["num_classes"]} must be at least 0 (0: no classifier, the pooled '
                         f'features are returned)')


def _create_uniconvnet(variant: str, pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    _check_create_options(variant, kwargs)
    if kwargs.get('pretrained_cfg_overlay'):
        # timm turns custom_load off when the overlay names a weight source (e.g. file=PATH): keep ours on
        kwargs['pretrained_cfg_overlay'] = dict(kwargs['pretrained_cfg_overlay'])
        kwargs['pretrained_cfg_overlay'].setdefault('custom_load', True)
    model_args = dict(VARIANTS[variant], **kwargs)
    model = build_model_with_cfg(
        UniConvNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **model_args,
    )
    return model


@register_model
def uniconvnet_a(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-A, 3.4M parameters."""
    return _create_uniconvnet('uniconvnet_a', pretrained, **kwargs)


@register_model
def uniconvnet_p0(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-P0, 5.2M parameters."""
    return _create_uniconvnet('uniconvnet_p0', pretrained, **kwargs)


@register_model
def uniconvnet_p1(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-P1, 6.1M parameters."""
    return _create_uniconvnet('uniconvnet_p1', pretrained, **kwargs)


@register_model
def uniconvnet_p2(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-P2, 7.6M parameters."""
    return _create_uniconvnet('uniconvnet_p2', pretrained, **kwargs)


@register_model
def uniconvnet_n0(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-N0, 10.3M parameters."""
    return _create_uniconvnet('uniconvnet_n0', pretrained, **kwargs)


@register_model
def uniconvnet_n1(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-N1, 13.1M parameters."""
    return _create_uniconvnet('uniconvnet_n1', pretrained, **kwargs)


@register_model
def uniconvnet_n2(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-N2, 15.0M parameters."""
    return _create_uniconvnet('uniconvnet_n2', pretrained, **kwargs)


@register_model
def uniconvnet_n3(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-N3, 19.7M parameters."""
    return _create_uniconvnet('uniconvnet_n3', pretrained, **kwargs)


@register_model
def uniconvnet_t(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-T, 30.3M parameters."""
    return _create_uniconvnet('uniconvnet_t', pretrained, **kwargs)


@register_model
def uniconvnet_s(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-S, 50.0M parameters."""
    return _create_uniconvnet('uniconvnet_s', pretrained, **kwargs)


@register_model
def uniconvnet_b(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-B, 97.7M parameters."""
    return _create_uniconvnet('uniconvnet_b', pretrained, **kwargs)


@register_model
def uniconvnet_l(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-L, 202.0M parameters (ImageNet-22k weights)."""
    return _create_uniconvnet('uniconvnet_l', pretrained, **kwargs)


@register_model
def uniconvnet_xl(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    """UniConvNet-XL, 226.7M parameters (ImageNet-22k weights)."""
    return _create_uniconvnet('uniconvnet_xl', pretrained, **kwargs)
