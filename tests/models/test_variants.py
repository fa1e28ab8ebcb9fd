"""Every variant builds with the official parameter count and key layout; small ones train a step."""
import pytest
import timm
import torch

import uniconvnet
from uniconvnet.models import VARIANTS, checkpoint_filter_fn, convert_official_key, infer_variant

SMALL = ['uniconvnet_a', 'uniconvnet_p0', 'uniconvnet_p1', 'uniconvnet_p2', 'uniconvnet_n0']


@pytest.mark.parametrize('name', list(VARIANTS))
def test_param_count_and_keys_match_official(name, official_shapes):
    official = official_shapes[name]
    model = timm.create_model(name, num_classes=1000, device='meta')
    assert sum(p.numel() for p in model.parameters()) == official['num_params']
    # the official key names and shapes convert one-to-one onto ours
    meta_sd = {k: torch.empty(shape, device='meta') for k, shape in official['keys'].items()}
    converted = checkpoint_filter_fn(meta_sd, model)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert infer_variant(meta_sd) == name


def test_all_official_keys_are_renamed(official_shapes):
    # every official key must be translated, none passed through under its old name
    for name, info in official_shapes.items():
        for key in info['keys']:
            new = convert_official_key(key)
            assert not new.startswith(('downsample_layers', 'norm.')), key
            assert '.attn.' not in new and 'gamma1' not in new and 'norm1.0' not in new, (key, new)


def test_registered_with_timm():
    names = timm.list_models('uniconvnet_*')
    assert names == sorted(VARIANTS) or set(names) == set(VARIANTS)
    tags = timm.list_pretrained('uniconvnet_*')
    # 11 ImageNet-1k@224, 3 fine-tunes at 384, 22k and 22k->1k@384 for L and XL
    assert len(tags) == 18
    assert uniconvnet.list_variants() == list(VARIANTS)


@pytest.mark.parametrize('name', SMALL)
@pytest.mark.parametrize('size', [96, 128])
def test_small_variants_forward_backward(name, size):
    model = timm.create_model(name, num_classes=7, drop_path_rate=0.1)
    model.train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
