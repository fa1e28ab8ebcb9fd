"""Semantic segmentation with segmentation_models_pytorch (optional extra ``detseg``).

smp's ``tu-`` encoders take any registered timm model, so after ``import uniconvnet``,
``smp.UPerNet(encoder_name="tu-uniconvnet_t", encoder_weights=None, classes=150)`` just works. The builder
here adds loading backbone weights from a local official or our checkpoint.
"""
from typing import Any, Optional

import torch.nn as nn

from ...models import is_uniconvnet

__all__ = ['upernet_uniconvnet']


def _import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as e:
        raise ImportError('segmentation_models_pytorch is needed for UperNet: pip install "uniconvnet[detseg]" '
                          '(or pip install segmentation-models-pytorch)') from e
    return smp


def upernet_uniconvnet(
        num_classes: int,
        backbone_name: str = 'uniconvnet_a',
        backbone_weights: Optional[str] = None,
        decoder_channels: int = 256,
        drop_path_rate: float = 0.0,
        trunk_norm: Optional[str] = None,
        **kwargs: Any,
) -> nn.Module:
    """UperNet (smp) on a UniConvNet encoder. Output: logits at the input resolution.

    Args:
        num_classes: segmentation classes (background included).
        backbone_name: variant, e.g. ``uniconvnet_a``.
        backbone_weights: official or our classification checkpoint for the encoder (the head is dropped).
        decoder_channels: UperNet width.
        trunk_norm: a UniConvNet's stem and downsampling norms, ``'layer'`` (the paper's; default) or ``'batch'``
            (for training from random weights); None: the model's default.
        kwargs: passed to ``smp.UPerNet`` (and from there to ``timm.create_model``).
    """
    smp = _import_smp()
    if trunk_norm is not None:
        if not is_uniconvnet(backbone_name):
            raise ValueError(f'trunk_norm is an option of UniConvNet backbones; {backbone_name} keeps its own norms')
        kwargs['trunk_norm'] = trunk_norm
    if backbone_weights is not None:
        kwargs.update(encoder_weights='imagenet', pretrained_cfg_overlay=dict(file=str(backbone_weights)))
    else:
        kwargs.setdefault('encoder_weights', None)
    return smp.UPerNet(encoder_name=f'tu-{backbone_name}', classes=num_classes, decoder_channels=decoder_channels,
                       drop_path_rate=drop_path_rate, **kwargs)
