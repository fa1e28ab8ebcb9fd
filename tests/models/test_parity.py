"""Parity with the official code's outputs (tests/fixtures/official): the definition of correct.

Every fixture goes through the path a user's official checkpoint takes. Tolerance: max abs diff <= 1e-4 in
float32 on logits and all four stage outputs, both inputs. Never loosen it.
"""
import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.checkpoints import load_weights
from uniconvnet.engine import convert_checkpoint
from uniconvnet.models import checkpoint_filter_fn
from uniconvnet.ops import BACKENDS

from conftest import REPO

TOL = 1e-4
N_FAMILY_ARGS = dict(depths=(1, 1, 2, 1), dims=(48, 96, 192, 384), dcn_group_channels=16, num_classes=10)


def assert_matches_official(model: torch.nn.Module, fixture: dict) -> None:
    model.eval()
    for i in (0, 1):
        x = fixture[f'input{i}']
        with torch.no_grad():
            final, features = model.forward_intermediates(x)
            logits = model.forward_head(final)
            plain = model(x)
        assert len(features) == 4
        torch.testing.assert_close(logits, fixture[f'logits{i}'], rtol=0, atol=TOL)
        torch.testing.assert_close(plain, fixture[f'logits{i}'], rtol=0, atol=TOL)
        for stage, (ours, theirs) in enumerate(zip(features, fixture[f'features{i}'])):
            assert ours.shape == theirs.shape, f'stage {stage}'
            diff = (ours - theirs).abs().max().item()
            assert diff <= TOL, f'input{i} stage {stage}: max abs diff {diff:.3g} > {TOL}'


def test_uniconvnet_a_filter_fn(official_a):
    model = timm.create_model('uniconvnet_a')
    model.load_state_dict(checkpoint_filter_fn(official_a['state_dict'], model))
    assert_matches_official(model, official_a)


def test_nfamily_filter_fn(official_nfamily):
    model = timm.create_model('uniconvnet_n0', **N_FAMILY_ARGS)
    model.load_state_dict(checkpoint_filter_fn(official_nfamily['state_dict'], model))
    assert_matches_official(model, official_nfamily)


def test_uniconvnet_a_timm_pretrained_file(official_a, tmp_path):
    path = tmp_path / 'uniconvnet_a_official.pth'
    torch.save({'model': official_a['state_dict']}, path)
    model = timm.create_model('uniconvnet_a', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert_matches_official(model, official_a)


def test_uniconvnet_a_converter(official_a, tmp_path):
    src = tmp_path / 'official.pth'
    torch.save({'model': official_a['state_dict']}, src)
    dst = convert_checkpoint(src, tmp_path / 'a.safetensors', 'uniconvnet_a')
    assert_matches_official(load_weights(timm.create_model('uniconvnet_a'), dst), official_a)
    # our safetensors also load through timm's file overlay
    model = timm.create_model('uniconvnet_a', pretrained=True, pretrained_cfg_overlay=dict(file=str(dst)))
    assert_matches_official(model, official_a)


def test_module_prefix_and_ema_wrappers(official_a, tmp_path):
    prefixed = {f'module.{k}': v for k, v in official_a['state_dict'].items()}
    model = timm.create_model('uniconvnet_a')
    model.load_state_dict(checkpoint_filter_fn({'model_ema': prefixed}, model))
    assert_matches_official(model, official_a)


def test_features_only_matches_official_stages(official_a, tmp_path):
    path = tmp_path / 'a.pth'
    torch.save({'model': official_a['state_dict']}, path)
    model = timm.create_model('uniconvnet_a', pretrained=True, features_only=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        feats = model(official_a['input1'])
    for ours, theirs in zip(feats, official_a['features1']):
        assert (ours - theirs).abs().max().item() <= TOL


# Every registered backend that runs natively on CPU tensors (Triton's interpreter is too slow for a model) and
# samples at the reference's locations. One that reorders that arithmetic for a runtime's speed (export, for
# OpenVINO) moves float32 stage outputs by about 1e-4, the tolerance; tests/ops/test_dcn_conformance.py holds
# every CPU backend, that one included, to the reference core through a whole model in float64 (1e-10).
CPU_BACKENDS = [name for name, b in BACKENDS.items()
                if (b.devices is None or 'cpu' in b.devices) and b.reference_locations]


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_every_cpu_backend(official_a, official_nfamily, backend):
    # the default backend is covered above; the grid_sample reference core and every CPU core match too
    for name, fixture, kwargs in (('uniconvnet_a', official_a, {}), ('uniconvnet_n0', official_nfamily, N_FAMILY_ARGS)):
        model = timm.create_model(name, dcn_backend=backend, **kwargs)
        model.load_state_dict(checkpoint_filter_fn(fixture['state_dict'], model))
        assert_matches_official(model, fixture)


def test_fixtures_are_the_recorded_files():
    """The golden files in the repository are the ones their README lists, bit for bit (a re-saved or regenerated
    file fails)."""
    import hashlib
    import re
    folder = REPO / 'tests' / 'fixtures' / 'official'
    readme = (folder / 'README.md').read_text()
    recorded = dict(re.findall(r'\| `(official_[^`]+)` \| `([0-9a-f]{64})` \|', readme))
    assert len(recorded) == 3
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
