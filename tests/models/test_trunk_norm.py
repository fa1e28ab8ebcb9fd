"""``trunk_norm``: the stem and downsampling norms of UniConvNet as a model option ('layer', the paper's; 'batch')."""
import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.checkpoints import load_weights, save_safetensors
from uniconvnet.models import TRUNK_NORMS, trunk_norm_of

TINY = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), dcn_group_channels=8, num_classes=3)
TRUNK = ['stem.1', 'stem.4', 'stages.1.downsample.0', 'stages.2.downsample.0', 'stages.3.downsample.0']


def _norm_kinds(model: torch.nn.Module) -> dict:
    return {n: type(m).__name__ for n, m in model.named_modules()
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))}


def test_option_builds_the_trunk_norms_and_only_those():
    assert TRUNK_NORMS == ('layer', 'batch')
    paper = timm.create_model('uniconvnet_a', **TINY)
    batch = timm.create_model('uniconvnet_a', trunk_norm='batch', **TINY)
    paper_kinds, batch_kinds = _norm_kinds(paper), _norm_kinds(batch)
    assert {paper_kinds[n] for n in TRUNK} == {'LayerNorm2d'}
    assert sorted(n for n, kind in batch_kinds.items() if kind == 'BatchNorm2d') == sorted(TRUNK)
    # the blocks and the head keep their LayerNorms: everything outside the trunk is the same
    assert {n: k for n, k in batch_kinds.items() if n not in TRUNK} == {n: k for n, k in paper_kinds.items()
                                                                         if n not in TRUNK}
    assert (paper.trunk_norm, batch.trunk_norm) == ('layer', 'batch')
    assert (trunk_norm_of(paper), trunk_norm_of(batch)) == ('layer', 'batch')
    with pytest.raises(ValueError, match=r"trunk_norm='group' is not one of 'layer', 'batch'"):
        timm.create_model('uniconvnet_a', trunk_norm='group', **TINY)


def test_features_only_and_timm_create_model_keep_the_option():
    features = timm.create_model('uniconvnet_a', features_only=True, trunk_norm='batch', dims=TINY['dims'],
                                 depths=TINY['depths'], dcn_group_channels=8)
    assert trunk_norm_of(features) == 'batch'
    assert type(features.stem_1).__name__ == 'BatchNorm2d'
    assert type(features.stages_2.downsample[0]).__name__ == 'BatchNorm2d'
    out = features(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in out] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]


def test_checkpoints_load_with_the_default_and_name_the_other_trunk(official_a, tmp_path):
    official = tmp_path / 'official.pth'
    torch.save({'model': official_a['state_dict']}, official)
    paper = load_weights(timm.create_model('uniconvnet_a'), official)  # the default: the paper's checkpoints load
    torch.testing.assert_close(paper.stem[1].weight, official_a['state_dict']['downsample_layers.0.1.weight'])
    with pytest.raises(ValueError, match=r"LayerNorms, the model was built with trunk_norm='batch'; create the "
                                         r"model with trunk_norm='layer'"):
        load_weights(timm.create_model('uniconvnet_a', trunk_norm='batch'), official)
    # a BatchNorm-trunk checkpoint (running statistics included) round-trips, through load_weights and timm
    source = timm.create_model('uniconvnet_a', trunk_norm='batch', **TINY).train()
    source(torch.randn(4, 3, 64, 64))  # moves the running statistics away from their initial values
    save_safetensors(source.state_dict(), tmp_path / 'batch.safetensors')
    with pytest.raises(ValueError, match=r"BatchNorms, the model was built with trunk_norm='layer'"):
        load_weights(timm.create_model('uniconvnet_a', **TINY), tmp_path / 'batch.safetensors')
    for model in (load_weights(timm.create_model('uniconvnet_a', trunk_norm='batch', **TINY),
                               tmp_path / 'batch.safetensors'),
                  timm.create_model('uniconvnet_a', trunk_norm='batch', pretrained=True, **TINY,
                                    pretrained_cfg_overlay=dict(file=str(tmp_path / 'batch.safetensors')))):
        assert torch.equal(model.stem[1].running_mean, source.stem[1].running_mean)
        assert not torch.equal(model.stem[1].running_mean, torch.zeros(8))


def test_fuse_and_torchscript_with_batchnorm_trunk():
    model = timm.create_model('uniconvnet_a', trunk_norm='batch', **TINY).train()
    model(torch.randn(4, 3, 64, 64))  # running statistics that matter in eval mode
    model.eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref, rtol=0, atol=1e-5)
        fused = model.fuse()
        torch.testing.assert_close(fused(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.jit.script(fused)(x), ref, rtol=0, atol=1e-5)
