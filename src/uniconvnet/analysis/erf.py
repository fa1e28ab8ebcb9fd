"""Effective receptive fields (ERF) of any model, by RepLKNet's protocol, and their high-contribution area.

Protocol (Ding et al., RepLKNet, CVPR 2022, as used by the UniConvNet paper), for each image:

1. take a feature map ``F`` (N, C, h, w): by default the last stage, before pooling;
2. score ``s = sum_c ReLU(F[:, c, h // 2, w // 2])``, the centre position summed over channels;
3. ``G = ReLU(ds / dx)``, the positive part of the gradient of the score with respect to the input image;
4. sum ``G`` over the colour channels; the ERF is the mean of these maps over images.

Images whose gradient holds NaN or inf are skipped and counted. The maps are kept raw (linear); the area ratio,
the plots and, by default, the AGD metrics use RepLKNet's log scale ``log10(x + 1) / max``.

Works for UniConvNet, any timm model (``forward_features``, ``forward_intermediates``, ``features_only``),
any ``nn.Module`` whose output, or one of whose submodules' output, is a map, and any callable returning NCHW.
This module does not need matplotlib; plotting is in :mod:`uniconvnet.analysis.plots`.
"""
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .agd import AGDMetrics, agd_metrics
from .images import NamedImage, load_images

__all__ = ['DEFAULT_THRESHOLDS', 'AreaRatio', 'ErfMap', 'Stage', 'erf_map', 'erf_maps', 'feature_strides',
           'high_contribution_area_ratio', 'log_scale', 'resolve_stage']

DEFAULT_THRESHOLDS: Tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
MIN_MAP_SIDE = 3  # the centre of the feature map needs a neighbour on every side

# None: the last stage before pooling; int k: stage k (stride 2 ** (k + 1)); str: a submodule's output
Stage = Union[None, int, str]
ModelLike = Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]]
Images = Union[None, str, Path, torch.Tensor, Sequence[NamedImage]]


# ----------------------------------------------------------------------------------------------------------------
# Map scaling and the high-contribution area ratio
# ----------------------------------------------------------------------------------------------------------------

def log_scale(m: np.ndarray) -> np.ndarray:
    """RepLKNet's display scale: ``log10(m + 1)`` divided by its maximum (an all-zero map stays zero)."""
    out = np.log10(np.asarray(m, dtype=np.float64) + 1.0)
    peak = out.max() if out.size else 0.0
    return out / peak if peak > 0 else out


@dataclass
class AreaRatio:
    """The smallest centred square holding more than ``threshold`` of the map's total.

    ``side`` is its side in pixels and ``area_ratio`` its area as a fraction of the map; both None when no
    centred square inside the map holds that much (``reached`` is then False).
    """
    threshold: float
    side: Optional[int]
    area_ratio: Optional[float]

    @property
    def reached(self) -> bool:
        return self.side is not None


def high_contribution_area_ratio(
        m: np.ndarray,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        log_scaled: bool = True,
) -> List[AreaRatio]:
    """RepLKNet's high-contribution area ratio of an ERF map, one entry per threshold.

    The map is first put on the log scale (:func:`log_scale`; ``log_scaled=False`` uses it as given). Squares
    are centred on ``(h // 2, w // 2)`` with odd sides ``1, 3, 5, ...`` as long as they fit inside the map; the
    answer for ``t`` is the first whose sum exceeds ``t`` times the total. RepLKNet's script starts at side 3,
    stops one side short of a whole odd-sized map and crashes when a threshold is never reached; here an
    unreached threshold (possible for an even-sized map, whose largest centred square misses a row and a
    column, or an all-zero map) is reported as ``AreaRatio(t, None, None)``.
    """
    m = log_scale(m) if log_scaled else np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f'expected a 2-D map, got an array of shape {m.shape}')
    h, w = m.shape
    cy, cx = h // 2, w // 2
    total = m.sum()
    half = np.arange(min(cy, cx, h - 1 - cy, w - 1 - cx) + 1)
    # integral image: the sum of any square in O(1), all squares at once
    integral = np.pad(m.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    top, bottom, left, right = cy - half, cy + half + 1, cx - half, cx + half + 1
    sums = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    results = []
    for t in thresholds:
        hit = np.nonzero(sums > t * total)[0] if total > 0 else np.array([], dtype=int)
        if hit.size:
            side = int(2 * half[hit[0]] + 1)
            results.append(AreaRatio(float(t), side, side * side / (h * w)))
        else:
            results.append(AreaRatio(float(t), None, None))
    return results


@dataclass
class ErfMap:
    """The mean ERF of one feature map over images.

    Attributes:
        map: ``(H, W)`` float64, the mean over images of ``ReLU(d score / d input)`` summed over colour channels.
        stage: what was measured (None: the last stage; k: stage k; a name: that submodule's output).
        images_used: images averaged; images_skipped: images dropped because their gradient was not finite.
        feature_shape: ``(C, h, w)`` of the feature map.
        seconds_per_image: wall time per image, forward and backward (shared with the other stages measured in
            the same pass).
    """
    map: np.ndarray
    stage: Stage
    images_used: int
    images_skipped: int
    feature_shape: Tuple[int, int, int]
    seconds_per_image: float

    def log_scaled(self) -> np.ndarray:
        """The map on RepLKNet's log scale, in [0, 1]."""
        return log_scale(self.map)

    def area_ratios(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> List[AreaRatio]:
        """:func:`high_contribution_area_ratio` of this map."""
        return high_contribution_area_ratio(self.map, thresholds)

    def agd(self, scale: str = 'log') -> AGDMetrics:
        """AGD metrics (:func:`uniconvnet.analysis.agd.agd_metrics`) on the 'log' (default) or 'linear' scale."""
        if scale not in ('log', 'linear'):
            raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
        return agd_metrics(self.log_scaled() if scale == 'log' else self.map / max(self.map.max(), 1e-300))


# ----------------------------------------------------------------------------------------------------------------
# Taking feature maps from a model
# ----------------------------------------------------------------------------------------------------------------

def _model_name(model: ModelLike) -> str:
    cfg = getattr(model, 'pretrained_cfg', None)
    if isinstance(cfg, dict) and cfg.get('architecture'):
        return cfg['architecture']
    return type(model).__name__ if isinstance(model, nn.Module) else getattr(model, '__name__', 'the callable')


def _where(stage: Stage) -> str:
    if stage is None:
        return 'the output'
    return f'stage {stage}' if isinstance(stage, int) else f'the output of layer {stage!r}'


def feature_strides(model: ModelLike) -> Optional[List[int]]:
    """Strides (timm's ``reduction``) of the model's feature levels, or None if it does not list them."""
    info = getattr(model, 'feature_info', None)
    if info is None:
        return None
    if hasattr(info, 'reduction'):  # FeatureInfo of a features_only model: only its out_indices
        return [int(r) for r in info.reduction()]
    try:
        return [int(level['reduction']) for level in info]
    except (TypeError, KeyError):
        return None


def resolve_stage(model: ModelLike, stage: int) -> int:
    """Index into the model's feature levels of stage ``stage`` (1-based: the last level at stride 2^(k+1)).

    That is layer k of a ResNet and stage k of ConvNeXt, Swin or UniConvNet; a plain ViT (stride 16
    throughout) has only stage 3, its last block.
    """
    if isinstance(stage, bool) or not isinstance(stage, int) or stage < 1:
        raise ValueError(f'stages are numbered from 1 (stage 1 is at stride 4), got {stage!r}')
    strides = feature_strides(model)
    if strides is None:
        raise ValueError(f'{_model_name(model)} does not list its feature levels (no feature_info), so stage '
                         f'{stage} has no meaning for it; name a submodule instead (e.g. stage="layer3") or pass '
                         f'a callable that returns the NCHW map')
    want = 2 ** (stage + 1)
    hits = [i for i, s in enumerate(strides) if s == want]
    if not hits:
        raise ValueError(f'{_model_name(model)} has no stage {stage}: stage k is the feature level at stride '
                         f'2^(k+1) = {want}, and its levels have strides {strides}')
    return hits[-1]


def _as_list(out) -> Optional[List[torch.Tensor]]:
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (list, tuple)):
        return list(out)
    return None


def _check_map(out, stage: Stage, name: str) -> torch.Tensor:
    hint = ('Choose a stage (stage=k in Python, --stage K on the command line), a submodule by name '
            '(stage="layer3"), or pass a callable that returns an (N, C, H, W) map.')
    if not isinstance(out, torch.Tensor):
        raise ValueError(f'{_where(stage)} of {name} is a {type(out).__name__}, not a tensor: the ERF needs one '
                         f'spatial feature map. {hint}')
    if out.dim() != 4:
        raise ValueError(f'{_where(stage)} of {name} has shape {list(out.shape)}, not a 4-D (N, C, H, W) map: '
                         f'the ERF needs a spatial feature map. {hint}')
    return out


def _final_map(model: nn.Module, out):
    """The model's last map as NCHW: timm models with ``output_fmt='NHWC'`` (e.g. Swin) give NHWC features."""
    if str(getattr(model, 'output_fmt', 'NCHW')) == 'NHWC' and isinstance(out, torch.Tensor) and out.dim() == 4:
        return out.permute(0, 3, 1, 2)
    return out


def _last_stage_map(model: nn.Module, x: torch.Tensor):
    """The last stage before pooling: ``forward_features``, else the output (a features_only model's last level)."""
    if hasattr(model, 'forward_features'):
        return _final_map(model, model.forward_features(x))
    out = model(x)
    levels = _as_list(out)
    return levels[-1] if levels else out


def _stage_maps(model: nn.Module, x: torch.Tensor, stage_index: Dict[int, int], with_final: bool, name: str
                ) -> Dict[Stage, torch.Tensor]:
    """The maps of the numbered stages (and the last stage when ``with_final``), from one forward pass.

    Through ``forward_intermediates`` where the model has it (it stops after the deepest stage asked for), else
    from the list of levels a features_only model returns.
    """
    taken: Dict[Stage, torch.Tensor] = {}
    if hasattr(model, 'forward_intermediates'):
        indices = sorted(set(stage_index.values()))
        out = model.forward_intermediates(x, indices=indices, intermediates_only=not with_final,
                                          stop_early=not with_final)
        final, levels = out if with_final else (None, out)
        taken.update({s: levels[indices.index(i)] for s, i in stage_index.items()})
        if with_final:
            taken[None] = _final_map(model, final)
        return taken
    levels = _as_list(model(x))
    if levels is None:
        raise ValueError(f'{name} lists feature levels but neither has forward_intermediates nor returns a list '
                         f'of them; create it with features_only=True')
    taken.update({s: levels[i] for s, i in stage_index.items()})
    if with_final:
        taken[None] = levels[-1]
    return taken


def _check_layer_names(model: nn.Module, layers: Sequence[str], name: str) -> Dict[str, nn.Module]:
    modules = dict(model.named_modules())
    for layer in layers:
        if layer not in modules:
            examples = ', '.join(n for n in list(modules)[1:6])
            raise ValueError(f'{name} has no submodule named {layer!r} (names look like: {examples})')
    return {layer: modules[layer] for layer in layers}


def _callable_extractor(fn: Callable, stages: Sequence[Stage], name: str
                        ) -> Callable[[torch.Tensor], List[torch.Tensor]]:
    if not callable(fn):
        raise ValueError(f'expected an nn.Module or a callable returning an NCHW map, got {type(fn).__name__}')
    if any(s is not None for s in stages):
        raise ValueError('a plain callable gives one map: stages and layer names need an nn.Module')
    return lambda x: [_check_map(fn(x), None, name)]


def _feature_extractor(model: ModelLike, stages: Sequence[Stage]) -> Callable[[torch.Tensor], List[torch.Tensor]]:
    """A function from an input batch to the NCHW maps of ``stages``, computed in one forward pass.

    Numbered stages come from the model's feature levels, named layers from forward hooks, and None (the last
    stage) from ``forward_features``; one forward pass serves them all.
    """
    name = _model_name(model)
    if not isinstance(model, nn.Module):
        return _callable_extractor(model, stages, name)
    layers = _check_layer_names(model, [s for s in stages if isinstance(s, str)], name)
    stage_index = {s: resolve_stage(model, s) for s in stages if isinstance(s, int)}
    with_final = None in stages

    def extract(x: torch.Tensor) -> List[torch.Tensor]:
        taken: Dict[Stage, torch.Tensor] = {}
        hooks = [module.register_forward_hook(lambda _m, _i, out, layer=layer: taken.__setitem__(layer, out))
                 for layer, module in layers.items()]
        try:
            if stage_index:
                taken.update(_stage_maps(model, x, stage_index, with_final, name))
            elif with_final:
                taken[None] = _last_stage_map(model, x)
            else:
                model(x)  # named layers only: the hooks take them
        finally:
            for hook in hooks:
                hook.remove()
        for layer in layers:
            if layer not in taken:
                raise ValueError(f'layer {layer!r} of {name} did not run in the forward pass; choose another one')
        return [_check_map(taken[s], s, name) for s in stages]

    return extract


@contextmanager
def _measuring(model: ModelLike, grad_checkpointing: bool) -> Iterator[None]:
    """Eval mode, frozen parameters (only the input needs a gradient), optional checkpointing; all restored."""
    if not isinstance(model, nn.Module):
        yield
        return
    training = model.training
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    checkpointing = {m: m.grad_checkpointing for m in model.modules()
                     if isinstance(getattr(m, 'grad_checkpointing', None), bool)}
    model.eval()
    for p, _ in requires_grad:
        p.requires_grad_(False)
    if grad_checkpointing and hasattr(model, 'set_grad_checkpointing'):
        try:
            model.set_grad_checkpointing(True)
        except (NotImplementedError, AssertionError, RuntimeError):
            pass  # some timm models do not support it; they run without
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(training)
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        for m, flag in checkpointing.items():
            m.grad_checkpointing = flag


def _normalisation(model: ModelLike, mean, std) -> Tuple[torch.Tensor, torch.Tensor]:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    mean = mean if mean is not None else cfg.get('mean', IMAGENET_DEFAULT_MEAN)
    std = std if std is not None else cfg.get('std', IMAGENET_DEFAULT_STD)
    as_column = lambda values: torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
    return as_column(mean), as_column(std)


def _input_batches(images: Images, model: ModelLike, size: int, num_images: int, seed: int, mean, std,
                   batch_size: int) -> Tuple[int, Iterator[torch.Tensor]]:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f'an image tensor must be a float (N, C, H, W) batch of model inputs, got '
                             f'{images.dtype} of shape {list(images.shape)}')
        return len(images), (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    if images is None or isinstance(images, (str, Path)):
        images = load_images(images, size, num_images, seed)
    images = list(images)
    if not images or not all(isinstance(i, NamedImage) for i in images):
        raise ValueError('images must be a folder, None (packaged photographs), a float NCHW tensor or a '
                         'non-empty list of NamedImage (uniconvnet.analysis.images.load_images)')
    mean_t, std_t = _normalisation(model, mean, std)

    def batches() -> Iterator[torch.Tensor]:
        for i in range(0, len(images), batch_size):
            pixels = torch.stack([img.pixels for img in images[i:i + batch_size]]).float() / 255.0
            yield (pixels - mean_t) / std_t

    return len(images), batches()


def _model_device(model: ModelLike) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device('cpu')


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextmanager
def _progress_bar(show: bool, total: int, desc: str) -> Iterator[object]:
    """A tqdm bar over images when ``show`` and tqdm is installed; else one that shows nothing."""
    bar = None
    if show:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, desc=desc, unit='img', leave=True)
        except ImportError:
            pass
    try:
        yield bar if bar is not None else _NoBar()
    finally:
        if bar is not None:
            bar.close()


def _first_forward(extract: Callable[[torch.Tensor], List[torch.Tensor]], x: torch.Tensor, name: str
                   ) -> List[torch.Tensor]:
    """The first batch's maps; a model that fails on this input size says so, with the size to use."""
    try:
        return extract(x)
    except (RuntimeError, AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        size_hw = f'{x.shape[-2]}x{x.shape[-1]}'
        if isinstance(e, AssertionError):  # timm's input-size checks, e.g. a ViT built for 224x224
            raise ValueError(f'{name} refused a {size_hw} input ({first}); use an input size the model '
                             f'accepts, or create it with dynamic_img_size=True / another img_size') from e
        if min(x.shape[-2:]) < 224:
            raise ValueError(f'{name} failed on a {size_hw} input ({first}); the input is probably too '
                             f'small for the model: use a larger size (the paper uses 1024)') from e
        raise


def _check_map_sizes(maps: Sequence[torch.Tensor], stages: Sequence[Stage], x: torch.Tensor, name: str
                     ) -> List[Tuple[int, int, int]]:
    """``(C, h, w)`` of each map; a map too small to have a centre with neighbours names the input size to use."""
    shapes = []
    for s, fmap in zip(stages, maps):
        h, w = fmap.shape[-2:]
        if min(h, w) < MIN_MAP_SIDE:
            stride = max(round(x.shape[-2] / h), round(x.shape[-1] / w), 1)
            raise ValueError(f'input size {x.shape[-2]}x{x.shape[-1]} is too small for {name}: {_where(s)} is a '
                             f'{h}x{w} map (stride {stride}) and the ERF needs at least {MIN_MAP_SIDE}x'
                             f'{MIN_MAP_SIDE} (a centre with neighbours); use size >= {MIN_MAP_SIDE * stride} (the '
                             f'paper uses 1024)')
        shapes.append(tuple(int(d) for d in fmap.shape[1:]))
    return shapes


def _input_gradients(maps: Sequence[torch.Tensor], stages: Sequence[Stage], x: torch.Tensor, name: str
                     ) -> List[torch.Tensor]:
    """``ReLU(d score / d x)`` summed over colour channels, (N, H, W), for each map.

    Maps that are the same tensor (the last stage asked for twice, as a number and as None) share one backward
    pass; the graph is kept until the last one.
    """
    first_of: Dict[int, int] = {}
    for j, fmap in enumerate(maps):
        first_of.setdefault(id(fmap), j)
    unique = sorted(set(first_of.values()))
    grads: Dict[int, torch.Tensor] = {}
    for n, j in enumerate(unique):
        fmap = maps[j]
        h, w = fmap.shape[-2:]
        score = F.relu(fmap[:, :, h // 2, w // 2]).sum()
        if not score.requires_grad:
            raise ValueError(f'{_where(stages[j])} of {name} does not depend on the input image')
        x.grad = None
        score.backward(retain_graph=n < len(unique) - 1)
        grads[j] = F.relu(x.grad).sum(1).double()
    return [grads[first_of[id(fmap)]] for fmap in maps]


class _GradientSums:
    """Per-map sums of the input gradients over images; images whose gradient is not finite are counted apart."""

    def __init__(self, count: int):
        self.sums: List[Optional[torch.Tensor]] = [None] * count
        self.used, self.skipped = [0] * count, [0] * count

    def add(self, grads: Sequence[torch.Tensor]) -> None:
        for j, g in enumerate(grads):
            finite = torch.isfinite(g).flatten(1).all(1)
            self.used[j] += int(finite.sum())
            self.skipped[j] += int((~finite).sum())
            part = g[finite].sum(0).cpu()
            self.sums[j] = part if self.sums[j] is None else self.sums[j] + part

    def erf(self, j: int, stage: Stage, feature_shape: Tuple[int, int, int], seconds: float, name: str) -> ErfMap:
        """The mean map of map ``j``; all images non-finite is an error that says what to check."""
        if self.used[j] == 0:
            raise ValueError(f'all {self.skipped[j]} images gave NaN or inf gradients for {_where(stage)} of '
                             f'{name}; check the weights (a broken checkpoint?) or run in float32')
        return ErfMap((self.sums[j] / self.used[j]).numpy(), stage, self.used[j], self.skipped[j], feature_shape,
                      seconds)


def erf_maps(
        model: ModelLike,
        images: Images = None,
        stages: Sequence[Stage] = (1, 2, 3, 4),
        *,
        size: int = 1024,
        num_images: int = 50,
        seed: int = 0,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        batch_size: int = 1,
        grad_checkpointing: bool = True,
        device: Optional[Union[str, torch.device]] = None,
        progress: bool = False,
        desc: Optional[str] = None,
) -> Dict[Stage, ErfMap]:
    """ERFs of several feature maps of one model, from one forward pass per batch of images.

    Args:
        model: an ``nn.Module`` (UniConvNet, any timm model, a features_only model, any module) or a callable
            that returns an NCHW map.
        images: None for the packaged photographs (:func:`uniconvnet.analysis.images.load_images`), a folder,
            a list of :class:`NamedImage`, or a float ``(N, C, H, W)`` tensor of ready model inputs.
        stages: what to measure, each None (the last stage, before pooling: ``forward_features``, the
            model's output, or a features_only model's last level), an int k (stage k, 1-based, see
            :func:`resolve_stage`) or a submodule name (its output, through a forward hook).
        size, num_images, seed: image size, count and sampling seed when images are loaded here.
        mean, std: normalisation; default the model's ``pretrained_cfg`` or ImageNet's.
        batch_size: images per forward pass (results do not depend on it; the model runs in eval mode).
        grad_checkpointing: recompute activations in the backward pass when the model supports it (timm's
            ``set_grad_checkpointing``), which is what makes 1024x1024 fit in a few GB; restored afterwards.
        device: where to run (the model is moved there); default the model's device.
        progress: show a progress bar (tqdm, when installed) over images.

    Returns:
        ``{stage: ErfMap}`` in the order of ``stages``.
    """
    stages = list(dict.fromkeys(stages))
    if not stages:
        raise ValueError('no stages to measure')
    if batch_size < 1:
        raise ValueError(f'batch_size must be at least 1, got {batch_size}')
    name = _model_name(model)
    device = torch.device(device) if device is not None else _model_device(model)
    if isinstance(model, nn.Module):
        model.to(device)
    extract = _feature_extractor(model, stages)
    total, batches = _input_batches(images, model, size, num_images, seed, mean, std, batch_size)
    sums = _GradientSums(len(stages))
    feature_shapes: List[Tuple[int, int, int]] = [(0, 0, 0)] * len(stages)
    start = time.perf_counter()
    with _measuring(model, grad_checkpointing), _progress_bar(progress, total, desc or name) as bar:
        for batch_index, batch in enumerate(batches):
            x = batch.to(device=device, dtype=torch.float32).requires_grad_(True)
            if batch_index == 0:
                maps = _first_forward(extract, x, name)
                feature_shapes = _check_map_sizes(maps, stages, x, name)
            else:
                maps = extract(x)
            sums.add(_input_gradients(maps, stages, x, name))
            del maps, x
            bar.update(len(batch))
    seconds = (time.perf_counter() - start) / max(total, 1)
    return {s: sums.erf(j, s, feature_shapes[j], seconds, name) for j, s in enumerate(stages)}


def erf_map(
        model: ModelLike,
        images: Images = None,
        stage: Stage = None,
        **kwargs,
) -> ErfMap:
    """The ERF of one feature map (default: the last stage, before pooling); see :func:`erf_maps`.

    Example::

        import timm, uniconvnet
        from uniconvnet.analysis.erf import erf_map
        erf = erf_map(timm.create_model('uniconvnet_t'), size=1024, num_images=50)
        erf.area_ratios()   # [AreaRatio(threshold=0.2, side=..., area_ratio=...), ...]
        erf.agd().is_gaussian
    """
    return erf_maps(model, images, (stage,), **kwargs)[stage]
