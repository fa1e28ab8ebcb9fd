"""Every recipe's training transform survives thousands of generated images (RandAugment's posterize included)."""
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from timm.data.auto_augment import AugmentOp

from uniconvnet.data import Preprocessing, build_transform
from uniconvnet.data.transforms import posterize_any_bits
from uniconvnet.engine import list_recipes, make_train_config
from uniconvnet.engine.classification import augmentation_of

SIZE = 16  # the recipes' own crops at 224/384 cost 10x more and exercise the same operations


def _generated_images(count: int, seed: int):
    """RGB images of random sizes: noise, flat colours (equalize/autocontrast edge cases) and gradients."""
    rng = np.random.RandomState(seed)
    for i in range(count):
        h, w = rng.randint(8, 48, size=2)
        kind = i % 3
        if kind == 0:
            pixels = rng.randint(0, 256, (h, w, 3))
        elif kind == 1:
            pixels = np.broadcast_to(rng.randint(0, 256, 3), (h, w, 3))
        else:
            pixels = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
        yield Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))


@pytest.mark.parametrize('recipe', list_recipes())
def test_recipe_train_transform_never_crashes(recipe):
    # in1k's rand-m9-mstd0.5-inc1 posterizes to 0 bits in about 1 image in 650 (Pillow 13 used to raise there):
    # 3,000 images hit it several times with this seed
    cfg = make_train_config(recipe, model='uniconvnet_a', image_size=SIZE)
    pre = Preprocessing().replace(image_size=SIZE, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation)
    transform = build_transform(pre, is_training=True, aug=augmentation_of(cfg))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    for img in _generated_images(3000, seed=0):
        out = transform(img)
        assert out.shape == (3, SIZE, SIZE) and torch.isfinite(out).all()


def test_posterize_keeps_the_old_black_image_for_zero_bits():
    img = Image.fromarray(np.random.RandomState(1).randint(0, 256, (9, 7, 3), dtype=np.uint8))
    assert np.array(posterize_any_bits(img, 0)).max() == 0 and posterize_any_bits(img, 0).size == img.size
    assert posterize_any_bits(img, 8) is img
    for bits in range(1, 8):
        assert np.array_equal(np.array(posterize_any_bits(img, bits)), np.array(ImageOps.posterize(img, bits)))
    # the policies' extremes, as timm's ops call it: PosterizeIncreasing at magnitude 10, Posterize at 0
    for name, magnitude in (('PosterizeIncreasing', 10), ('Posterize', 0)):
        op = AugmentOp(name, prob=1.0, magnitude=magnitude)
        op.aug_fn = posterize_any_bits
        assert np.array(op(img)).max() == 0, name


@pytest.mark.parametrize('policy', ['rand-m9-mstd0.5-inc1', 'rand-m0-n3', 'original', 'v0', 'augmix-m5-w3'])
def test_every_posterize_op_of_a_policy_is_replaced(policy):
    from uniconvnet.data import Augmentation
    from uniconvnet.data.transforms import _augment_ops
    transform = build_transform(Preprocessing().replace(image_size=SIZE), is_training=True,
                                aug=Augmentation(auto_augment=policy))
    posterize_ops = [op for op in _augment_ops(transform) if op.name.startswith('Posterize')]
    assert posterize_ops and all(op.aug_fn is posterize_any_bits for op in posterize_ops)
