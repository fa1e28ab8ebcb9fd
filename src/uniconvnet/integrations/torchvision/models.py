"""torchvision detection with UniConvNet backbones: an FPN backbone over ``features_only`` and builders that
mirror torchvision's ``*_resnet50_fpn`` functions.

The backbone is the registered timm model itself (no copy of the architecture): ``features_only=True`` gives
the stage outputs, torchvision's ``FeaturePyramidNetwork`` turns them into levels.
"""
from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn

from ...models import create_model, is_uniconvnet

__all__ = ['DETECTORS', 'UniConvNetFPN', 'uniconvnet_fpn_backbone', 'uniconvnet_fpn_detector',
           'fasterrcnn_uniconvnet_fpn', 'maskrcnn_uniconvnet_fpn', 'retinanet_uniconvnet_fpn']

#: the torchvision detectors :func:`uniconvnet_fpn_detector` builds
DETECTORS = ('retinanet', 'fasterrcnn', 'maskrcnn')


class UniConvNetFPN(nn.Module):
    """Stage features of a timm backbone through an FPN. ``out_channels`` is what torchvision detectors read.

    Args:
        body: a ``features_only`` timm model (its ``feature_info`` gives the channels).
        out_channels: FPN width.
        extra_blocks: torchvision FPN extra block (max-pool P6 for R-CNNs, P6/P7 for RetinaNet).
    """

    def __init__(self, body: nn.Module, out_channels: int = 256, extra_blocks: Optional[nn.Module] = None):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.feature_info.channels()), out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def _freeze_stages(body: nn.Module, trainable_stages: int, num_stages: int = 4) -> None:
    """Train only the last ``trainable_stages`` stages; the stem trains only when all stages do.

    Like torchvision's ``trainable_layers``. ``features_only`` models name their parts ``stem_*`` and
    ``stages_<i>``.
    """
    if not 0 <= trainable_stages <= num_stages:
        raise ValueError(f'trainable_stages must be between 0 and {num_stages}, got {trainable_stages}')
    first_trainable = num_stages - trainable_stages
    for name, param in body.named_parameters():
        if name.startswith('stages_'):
            trainable = int(name.split('.')[0].split('_')[1]) >= first_trainable
        else:
            trainable = trainable_stages == num_stages
        param.requires_grad_(trainable)


def _stage_feature_indices(backbone_name: str, stages: Sequence[int]) -> Tuple[int, ...]:
    """timm ``out_indices`` of stages 0-3 (strides 4, 8, 16, 32) of any timm model.

    UniConvNet's four feature levels are exactly these stages; other timm models may list more levels (a ResNet's
    stride-2 stem comes first), so the levels are found by their reduction on a meta-device copy.
    """
    if is_uniconvnet(backbone_name):
        return tuple(stages)
    with torch.device('meta'):
        probe = timm.create_model(backbone_name, features_only=True)
    reductions = probe.feature_info.reduction()
    indices = []
    for stage in stages:
        want = 4 * 2 ** stage
        if want not in reductions:
            raise ValueError(f'{backbone_name} has no feature level at stride {want} (its strides: {reductions}); '
                             f'an FPN backbone needs levels at strides 4, 8, 16 and 32')
        indices.append(reductions.index(want))
    return tuple(indices)


def uniconvnet_fpn_backbone(
        backbone_name: str = 'uniconvnet_a',
        backbone_weights: Optional[str] = None,
        trainable_stages: int = 4,
        returned_stages: Sequence[int] = (0, 1, 2, 3),
        out_channels: int = 256,
        extra_blocks: Optional[nn.Module] = None,
        drop_path_rate: float = 0.0,
        trunk_norm: Optional[str] = None,
) -> UniConvNetFPN:
    """An FPN backbone from a UniConvNet variant (or any timm model with stride 4-32 levels, e.g. ``resnet18``).

    Args:
        backbone_name: variant name, e.g. ``uniconvnet_a``; other timm names work too (``trainable_stages=4``).
        backbone_weights: an official or our classification checkpoint (loaded through ``checkpoint_filter_fn``;
            the classifier is dropped).
        trainable_stages: how many of the last stages train (0-4); with 4 the stem trains too.
        returned_stages: stage indices fed to the FPN.
        out_channels: FPN width.
        extra_blocks: FPN extra levels (default: max-pooled P6, as torchvision's R-CNN builders).
        drop_path_rate: stochastic depth of the backbone.
        trunk_norm: a UniConvNet's stem and downsampling norms, ``'layer'`` (the paper's; default) or ``'batch'``
            (for training from random weights); None: the model's default.
    """
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if trainable_stages != 4 and not is_uniconvnet(backbone_name):
        raise ValueError(f'trainable_stages={trainable_stages} needs a UniConvNet backbone (stage names); '
                         f'{backbone_name} trains whole: use trainable_stages=4')
    kwargs: Dict[str, Any] = dict(features_only=True, out_indices=_stage_feature_indices(backbone_name, returned_stages),
                                  drop_path_rate=drop_path_rate)
    if trunk_norm is not None:
        if not is_uniconvnet(backbone_name):
            raise ValueError(f'trunk_norm is an option of UniConvNet backbones; {backbone_name} keeps its own norms')
        kwargs['trunk_norm'] = trunk_norm
    if backbone_weights is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(backbone_weights)))
    body = create_model(backbone_name, **kwargs)
    _freeze_stages(body, trainable_stages)
    return UniConvNetFPN(body, out_channels, extra_blocks if extra_blocks is not None else LastLevelMaxPool())


def uniconvnet_fpn_detector(
        arch: str,
        num_classes: int = 91,
        backbone_name: str = 'uniconvnet_a',
        backbone_weights: Optional[str] = None,
        trainable_stages: int = 4,
        drop_path_rate: float = 0.0,
        fpn_channels: int = 256,
        trunk_norm: Optional[str] = None,
        **kwargs: Any,
) -> nn.Module:
    """A torchvision detector (``arch``: one of :data:`DETECTORS`) on a UniConvNet FPN backbone, as torchvision's
    ``*_resnet50_fpn`` builders arrange it: the R-CNNs on stages 1-4 plus a max-pooled P6, RetinaNet on stages 2-4
    plus P6/P7.

    Args:
        backbone_name, backbone_weights, trainable_stages, drop_path_rate, trunk_norm: see
            :func:`uniconvnet_fpn_backbone`.
        fpn_channels: FPN (and RetinaNet head) width.
        kwargs: passed to torchvision's ``FasterRCNN``, ``MaskRCNN`` or ``RetinaNet``.
    """
    from torchvision.models import detection
    if arch not in DETECTORS:
        raise ValueError(f'unknown detector {arch!r}; choose one of {", ".join(DETECTORS)}')
    backbone_args: Dict[str, Any] = dict(out_channels=fpn_channels, drop_path_rate=drop_path_rate,
                                         trunk_norm=trunk_norm)
    if arch == 'retinanet':
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7
        backbone_args.update(returned_stages=(1, 2, 3), extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
    backbone = uniconvnet_fpn_backbone(backbone_name, backbone_weights, trainable_stages, **backbone_args)
    detector = {'retinanet': detection.RetinaNet, 'fasterrcnn': detection.FasterRCNN,
                'maskrcnn': detection.MaskRCNN}[arch]
    return detector(backbone, num_classes=num_classes, **kwargs)


def fasterrcnn_uniconvnet_fpn(num_classes: int = 91, *args: Any, **kwargs: Any) -> nn.Module:
    """Faster R-CNN with a UniConvNet FPN backbone: :func:`uniconvnet_fpn_detector` with ``'fasterrcnn'``."""
    return uniconvnet_fpn_detector('fasterrcnn', num_classes, *args, **kwargs)


def maskrcnn_uniconvnet_fpn(num_classes: int = 91, *args: Any, **kwargs: Any) -> nn.Module:
    """Mask R-CNN with a UniConvNet FPN backbone: :func:`uniconvnet_fpn_detector` with ``'maskrcnn'``."""
    return uniconvnet_fpn_detector('maskrcnn', num_classes, *args, **kwargs)


def retinanet_uniconvnet_fpn(num_classes: int = 91, *args: Any, **kwargs: Any) -> nn.Module:
    """RetinaNet with a UniConvNet FPN backbone: :func:`uniconvnet_fpn_detector` with ``'retinanet'``."""
    return uniconvnet_fpn_detector('retinanet', num_classes, *args, **kwargs)
