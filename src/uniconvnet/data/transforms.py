"""Preprocessing (what a trained model expects) and the train/eval transforms built from it with timm."""
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn as nn
from PIL import Image, ImageOps
from timm.data import create_transform, resolve_data_config
from timm.data.auto_augment import AugmentOp, posterize

__all__ = ['Augmentation', 'Preprocessing', 'build_transform', 'posterize_any_bits']


@dataclass
class Preprocessing:
    """How images are turned into model input: saved in ``config.json`` beside trained weights."""
    input_size: Tuple[int, int, int] = (3, 224, 224)
    interpolation: str = 'bicubic'
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    crop_pct: float = 0.875

    @classmethod
    def from_model(cls, model: nn.Module, **overrides: Any) -> 'Preprocessing':
        """The model's pretrained cfg (timm's ``resolve_data_config``), with ``overrides`` that are not None."""
        cfg = resolve_data_config({}, model=model)
        pre = cls(tuple(cfg['input_size']), cfg['interpolation'], tuple(cfg['mean']), tuple(cfg['std']),
                  float(cfg['crop_pct']))
        return pre.replace(**overrides)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'Preprocessing':
        return cls(tuple(d['input_size']), d['interpolation'], tuple(d['mean']), tuple(d['std']),
                   float(d['crop_pct']))

    def replace(self, image_size: Optional[int] = None, **overrides: Any) -> 'Preprocessing':
        values = asdict(self)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if image_size is not None:
            values['input_size'] = (values['input_size'][0], image_size, image_size)
        return Preprocessing.from_dict(values)

    def as_dict(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Augmentation:
    """Training-time augmentation, passed to ``timm.data.create_transform``."""
    scale: Tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: Optional[str] = None
    re_prob: float = 0.0
    no_aug: bool = False  # train images are only resized and centre-cropped, as for validation


def _policy(auto_augment: Optional[str]) -> Optional[str]:
    return None if not auto_augment or auto_augment.lower() in ('none', 'off') else auto_augment


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize for every bit count its policies produce, 0 to 8: 0 bits keep nothing (a black image).

    RandAugment's ``PosterizeIncreasing`` keeps ``4 - int(4 * m / 10)`` bits, so 0 bits at magnitude 10, which
    ``rand-m9-mstd0.5`` reaches whenever its magnitude noise (std 0.5 around 9) is 2 std high; ``Posterize`` keeps
    0 bits at magnitude 0. Older Pillow had no range check and its mask turned 0 bits into a black image (the
    TensorFlow RandAugment that timm follows shifts every bit out too); Pillow 13 raises ``ValueError: bits must be
    between or equal to 1 and 8``. This keeps the old result: no image crashes, and augmentation is unchanged.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep < 1:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _augment_ops(transform: Any) -> List[Any]:
    """The ``AugmentOp``s inside a timm transform: RandAugment's and AugMix's ``ops``, AutoAugment's ``policy``."""
    ops = []
    for t in getattr(transform, 'transforms', [transform]):
        ops += list(getattr(t, 'ops', None) or [])
        ops += [op for sub_policy in getattr(t, 'policy', None) or [] for op in sub_policy]
    return [op for op in ops if isinstance(op, AugmentOp)]


def build_transform(pre: Preprocessing, is_training: bool = False, aug: Optional[Augmentation] = None) -> Callable:
    """timm's train transform (random resized crop, flips, RandAugment, random erasing) or eval transform.

    Posterize inside auto-augment policies runs :func:`posterize_any_bits` (on this transform's own ops; timm's
    tables are untouched), so no magnitude crashes under Pillow 13.
    """
    kwargs: Dict[str, Any] = dict(input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean,
                                  std=pre.std, crop_pct=pre.crop_pct)
    if is_training:
        aug = aug or Augmentation()
        kwargs.update(is_training=True, no_aug=aug.no_aug, scale=tuple(aug.scale), hflip=aug.hflip,
                      color_jitter=aug.color_jitter, auto_augment=_policy(aug.auto_augment), re_prob=aug.re_prob,
                      re_mode='pixel')
    transform = create_transform(**kwargs)
    for op in _augment_ops(transform):
        if op.aug_fn is posterize:
            op.aug_fn = posterize_any_bits
    return transform
