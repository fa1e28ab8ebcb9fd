"""Named training recipes: the paper's ImageNet commands, and a quick one for the built-in digits.

A recipe is a set of :class:`TrainConfig` values; a value given by the user (flag or keyword) always wins.
What a recipe does not set comes from ``TrainConfig``'s defaults, which are the in1k values.

- ``in1k``: AdamW, lr 4e-3 at effective batch 4096 (scaled linearly), weight decay 0.05, 300 epochs, 20
  warm-up, cosine to 1e-6, RandAugment rand-m9-mstd0.5-inc1, mixup 0.8 / cutmix 1.0, random erasing 0.25,
  label smoothing 0.1, EMA 0.9999; drop path per variant (A, P0, P1 0.05; P2, N0 0.08; N1-N3 0.1; T 0.2;
  S 0.4; B 0.6). P0, P1 and P2 train without mixup, cutmix and random erasing.
- ``ft384``: in1k, then 30 epochs at 384x384 (eval crop 1.0), lr 5e-5 at effective batch 512 (ConvNeXt's
  fine-tuning batch, which UniConvNet's commands follow), no warm-up, weight decay 1e-8, layer-wise lr
  decay 0.7 (0.8 for L and XL), head init scale 0.001, no mixup or cutmix; drop path T 0.4, S 0.6, B 0.8,
  L 0.3, XL 0.35 (other variants keep their in1k rate).
- ``in22k``: in1k, then 90 epochs, 5 warm-up, drop path 0.2, 21841 classes.
- ``digits``: the built-in data's quick run (see the README for its measured time and accuracy).

The paper gives no ImageNet-1k drop path for L and XL (they are pre-trained on ImageNet-22k); in1k uses B's
0.6 for them (printed at start like every other value; set ``--drop-path`` to change it).
"""
from typing import Any, Dict, List, Optional

from .config import TrainConfig

__all__ = ['RECIPES', 'list_recipes', 'make_train_config', 'recipe_values']

IN1K_DROP_PATH = {
    'uniconvnet_a': 0.05, 'uniconvnet_p0': 0.05, 'uniconvnet_p1': 0.05, 'uniconvnet_p2': 0.08,
    'uniconvnet_n0': 0.08, 'uniconvnet_n1': 0.1, 'uniconvnet_n2': 0.1, 'uniconvnet_n3': 0.1,
    'uniconvnet_t': 0.2, 'uniconvnet_s': 0.4, 'uniconvnet_b': 0.6,
}
IN1K_NO_MIXUP = ('uniconvnet_p0', 'uniconvnet_p1', 'uniconvnet_p2')
FT384_DROP_PATH = {'uniconvnet_t': 0.4, 'uniconvnet_s': 0.6, 'uniconvnet_b': 0.8, 'uniconvnet_l': 0.3,
                   'uniconvnet_xl': 0.35}
FT384_LAYER_DECAY = {'uniconvnet_l': 0.8, 'uniconvnet_xl': 0.8}
_IN1K_FALLBACK_DROP_PATH = 0.6  # B's: the paper trains L and XL on ImageNet-22k only

RECIPES: Dict[str, Dict[str, Any]] = {
    'in1k': dict(
        opt='adamw', base_lr=4e-3, base_batch=4096, weight_decay=0.05, epochs=300, warmup_epochs=20,
        sched='cosine', min_lr=1e-6, auto_augment='rand-m9-mstd0.5-inc1', mixup=0.8, cutmix=1.0, reprob=0.25,
        smoothing=0.1, ema_decay=0.9999, batch_size=128,
    ),
    'ft384': dict(
        epochs=30, base_lr=5e-5, base_batch=512, warmup_epochs=0, weight_decay=1e-8, layer_decay=0.7,
        head_init_scale=0.001, mixup=0.0, cutmix=0.0, image_size=384, crop_pct=1.0, batch_size=32,
    ),
    'in22k': dict(epochs=90, warmup_epochs=5, drop_path=0.2, num_classes=21841),
    # built-in digits: a small input (the 8x8 scans upsampled to 16x16), no ImageNet-style augmentation.
    # torch's default threads: on an idle 2-core machine a step takes 0.29 s with 2 threads and 0.86-0.94 s with
    # one (benchmarks/train_step_cpu.py); on a CPU shared with other jobs, --threads 1 avoids OpenMP threads
    # spinning while they wait for each other (README).
    'digits': dict(
        epochs=10, batch_size=64, base_lr=3e-3, base_batch=64, warmup_epochs=1, weight_decay=0.05,
        min_lr=1e-5, image_size=16, crop_pct=1.0, interpolation='bilinear', scale_min=0.6, hflip=0.0,
        color_jitter=0.0, auto_augment='', reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.1, ema_decay=0.0,
        drop_path=0.0, workers=0, channels_last=True, threads=None,
    ),
}
_BASES = {'ft384': 'in1k', 'in22k': 'in1k'}


def list_recipes() -> List[str]:
    return list(RECIPES)


def _variant(model: str) -> str:
    return model.split('.', 1)[0]


def recipe_values(name: str, model: str) -> Dict[str, Any]:
    """The values recipe ``name`` sets for ``model`` (its base recipe's first), with the per-variant rules."""
    if name not in RECIPES:
        raise ValueError(f'unknown recipe {name!r}; choose one of: {", ".join(RECIPES)}')
    variant = _variant(model)
    values: Dict[str, Any] = {}
    if name in _BASES:
        values.update(recipe_values(_BASES[name], model))
    values.update(RECIPES[name])
    if name == 'in1k':
        values['drop_path'] = IN1K_DROP_PATH.get(variant, _IN1K_FALLBACK_DROP_PATH)
        if variant in IN1K_NO_MIXUP:
            values.update(mixup=0.0, cutmix=0.0, reprob=0.0)
    elif name == 'ft384':
        values['drop_path'] = FT384_DROP_PATH.get(variant, values['drop_path'])
        values['layer_decay'] = FT384_LAYER_DECAY.get(variant, values['layer_decay'])
    return values


def make_train_config(recipe: Optional[str] = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe and explicit values (which win).

    Without ``recipe``: ``digits`` when no ``data`` is given, else ``in1k``.
    """
    unknown = sorted(set(overrides) - set(TrainConfig.field_names()))
    if unknown:
        raise ValueError(f'unknown training setting(s): {", ".join(unknown)}')
    model = overrides.get('model', TrainConfig.defaults()['model'])
    if recipe is None:
        recipe = 'digits' if overrides.get('data') is None else 'in1k'
    values = recipe_values(recipe, model)
    values.update(overrides)
    values['recipe'] = recipe
    return TrainConfig(**values)
