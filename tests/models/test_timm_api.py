"""The timm model API: features, intermediates, heads, checkpointing, layer decay, meta device, configs."""
import pytest
import timm
import torch
from timm.optim import create_optimizer_v2

import uniconvnet
from uniconvnet import UniConvNet


@pytest.fixture(scope='module')
def model_a():
    return timm.create_model('uniconvnet_a').eval()


def test_features_only_levels():
    model = timm.create_model('uniconvnet_a', features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [24, 48, 96, 192]
    feats = model(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    sub = timm.create_model('uniconvnet_a', features_only=True, out_indices=(1, 3))
    assert sub.feature_info.channels() == [48, 192]
    assert len(sub(torch.randn(1, 3, 64, 64))) == 2


def test_forward_intermediates_agree_with_features_only(model_a, tmp_path):
    x = torch.randn(1, 3, 64, 96)
    torch.save(model_a.state_dict(), tmp_path / 'a.pth')
    feats_model = timm.create_model('uniconvnet_a', features_only=True, pretrained=True,
                                    pretrained_cfg_overlay=dict(file=str(tmp_path / 'a.pth'))).eval()
    with torch.no_grad():
        final, inter = model_a.forward_intermediates(x)
        only = model_a.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        early = model_a.forward_intermediates(x, indices=1, stop_early=True, intermediates_only=True)
        feats = feats_model(x)
    torch.testing.assert_close(final, model_a.forward_features(x))
    for a, b in zip(inter, feats):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(only[0], inter[1])
    torch.testing.assert_close(early[0], inter[3])


def test_prune_intermediate_layers():
    model = timm.create_model('uniconvnet_a').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = model.prune_intermediate_layers([1])
        assert kept == [1] and len(model.stages) == 2
        torch.testing.assert_close(model.forward_features(x), taps[1])


def test_head_api(model_a):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model_a.forward_features(x)
        assert feats.shape == (2, 192, 2, 2)
        assert model_a.forward_head(feats, pre_logits=True).shape == (2, 192)
        assert model_a.get_classifier().out_features == 1000
    model = timm.create_model('uniconvnet_a', num_classes=5)
    model.reset_classifier(12)
    assert model.get_classifier().out_features == 12 and model(x).shape == (2, 12)
    model.reset_classifier(0)
    assert model(x).shape == (2, 192)
    model.reset_classifier(0, '')
    assert model(x).shape == (2, 192, 2, 2)


def test_grad_checkpointing_same_output_and_grads():
    model = timm.create_model('uniconvnet_a', num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    ref.sum().backward()
    ref_grad = model.stem[0].weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(model.stem[0].weight.grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_layer_decay_groups_cover_every_parameter():
    model = timm.create_model('uniconvnet_t', device='meta')
    groups = timm.models.group_parameters(model, model.group_matcher(coarse=False))
    # stem, one group per block (a stage's downsample joins its first block), then the head
    assert len(groups) == 1 + sum((3, 3, 15, 3)) + 1
    model_a = timm.create_model('uniconvnet_a')
    opt = create_optimizer_v2(model_a, 'adamw', lr=1e-3, layer_decay=0.7)
    scales = sorted({g['lr_scale'] for g in opt.param_groups})
    assert len(scales) > 10 and scales[-1] == 1.0
    n_params = sum(len(g['params']) for g in opt.param_groups)
    assert n_params == len(list(model_a.parameters()))


def test_constructor_options():
    model = timm.create_model('uniconvnet_a', in_chans=1, num_classes=4, drop_path_rate=0.2, drop_rate=0.1)
    assert model.in_chans == 1
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 4)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks if hasattr(b.drop_path, 'drop_prob')]
    assert max(rates) == pytest.approx(0.2)
    with pytest.raises(TypeError):
        timm.create_model('uniconvnet_a', not_an_argument=1)


def test_meta_device_construction_and_forward():
    model = timm.create_model('uniconvnet_xl', device='meta')
    assert all(p.device.type == 'meta' for p in model.parameters())
    out = model(torch.empty(1, 3, 64, 64, device='meta'))
    assert out.shape == (1, 1000) and out.device.type == 'meta'


def test_pretrained_cfgs():
    cfg = timm.models.get_pretrained_cfg('uniconvnet_t.in1k')
    assert cfg.url.endswith('uniconvnet_t_1k_224_ema.pth')
    assert cfg.interpolation == 'bicubic' and cfg.crop_pct == 0.875 and cfg.input_size == (3, 224, 224)
    assert cfg.license == 'mit' and 'arXiv:2508.09000' in cfg.paper_ids
    c384 = timm.models.get_pretrained_cfg('uniconvnet_b.in1k_384')
    assert c384.crop_pct == 1.0 and c384.input_size == (3, 384, 384)
    c22k = timm.models.get_pretrained_cfg('uniconvnet_xl.in22k')
    assert c22k.num_classes == 21841
    assert timm.create_model('uniconvnet_l.in22k', device='meta').num_classes == 21841


def test_wrong_input_channels_message(model_a):
    with pytest.raises(ValueError, match=r'built for 3 input channels but got 4'):
        model_a(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match='NCHW'):
        model_a(torch.randn(3, 32, 32))


def test_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError, match=r'unknown model .uniconvnet_q9.*uniconvnet_a, uniconvnet_p0'):
        uniconvnet.create_model('uniconvnet_q9')


def test_bad_create_model_options_name_the_valid_values():
    # timm itself answers out_indices=(5,) with "IndexError: list index out of range"
    with pytest.raises(ValueError, match=r'out_indices=\(5,\) is not valid: uniconvnet_a has 4 feature levels .*'
                                         r'use indices 0\.\.3 \(or -4\.\.-1 from the end\)'):
        timm.create_model('uniconvnet_a', features_only=True, out_indices=(5,), device='meta')
    with pytest.raises(ValueError, match=r'out_indices=5: .* must be 1\.\.4'):
        timm.create_model('uniconvnet_a', features_only=True, out_indices=5, device='meta')
    with pytest.raises(ValueError, match='create it with features_only=True'):
        timm.create_model('uniconvnet_a', out_indices=(1, 2), device='meta')
    with pytest.raises(ValueError, match=r'drop_path_rate=1\.5 must be in \[0, 1\)'):
        timm.create_model('uniconvnet_a', drop_path_rate=1.5, device='meta')
    with pytest.raises(ValueError, match='in_chans=0 must be at least 1'):
        timm.create_model('uniconvnet_a', in_chans=0, device='meta')
    with pytest.raises(ValueError, match='num_classes=-2 must be at least 0'):
        timm.create_model('uniconvnet_a', num_classes=-2, device='meta')
    # the valid forms still work: the last n levels, negative indices
    assert timm.create_model('uniconvnet_a', features_only=True, out_indices=2,
                             device='meta').feature_info.reduction() == [16, 32]
    assert timm.create_model('uniconvnet_a', features_only=True, out_indices=(0, -1),
                             device='meta').feature_info.reduction() == [4, 32]


def test_bad_widths_raise_clear_errors():
    with pytest.raises(ValueError, match='DCN group width'):
        UniConvNet(depths=(1, 1, 1, 1), dims=(24, 48, 96, 200), dcn_group_channels=16)
    with pytest.raises(ValueError, match='cannot be split into 4 equal parts'):
        UniConvNet(depths=(1, 1, 1, 1), dims=(32, 64, 128, 250), dcn_group_channels=2)


@pytest.mark.slow
def test_torch_script_and_fx():
    model = timm.create_model('uniconvnet_a', num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref)
    from torchvision.models.feature_extraction import create_feature_extractor
    from timm.models import get_notrace_functions, get_notrace_modules
    fx = create_feature_extractor(model, return_nodes={'stages.2': 's2'}, tracer_kwargs=dict(
        leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions()))
    with torch.no_grad():
        torch.testing.assert_close(fx(x)['s2'], model.forward_intermediates(x, indices=[2], intermediates_only=True)[0])
