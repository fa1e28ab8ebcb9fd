"""The fast CPU path: fusion, recomputation, large depthwise convolutions, torch.compile of a block.

The DCN cores are tested in tests/ops/ (test_dcn_conformance.py: every backend against the reference core)."""
import pytest
import timm
import torch
import torch.nn.functional as F

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.models import UniConvNetBlock, checkpoint_filter_fn

@pytest.fixture(scope='module')
def official_a_model(official_a):
    model = timm.create_model('uniconvnet_a')
    model.load_state_dict(checkpoint_filter_fn(official_a['state_dict'], model))
    return model.eval()


def test_fuse_matches_unfused_and_timm_reparameterize(official_a_model):
    import copy
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = official_a_model(x)
        fused = copy.deepcopy(official_a_model).fuse()
        via_timm = timm.utils.reparameterize_model(official_a_model)  # a fused deep copy
        torch.testing.assert_close(fused(x), ref, rtol=0, atol=1e-4)
        torch.testing.assert_close(via_timm(x), fused(x), rtol=0, atol=0)
    keys = fused.state_dict().keys()
    assert not any('.ls_' in k or k.endswith(('norm_mlp.weight', 'rfa.norm.weight')) for k in keys)
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in official_a_model.parameters())
    assert 'stages.0.blocks.0.norm_dcn.weight' in keys  # feeds a zero-padded conv: not folded


def test_single_layer_rfa_keeps_its_layer_scale():
    block = UniConvNetBlock(16, dcn_group_channels=8, kernel_sizes=(3,), ls_init_value=0.7).eval()
    x = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)
    assert block.ls_rfa.gamma is not None  # the context is added without a projection: the scale stays
    assert block.ls_mlp.gamma is None and block.ls_dcn.gamma is None  # folded into fc2 and output_proj


def test_compile_block_without_graph_breaks():
    torch.manual_seed(0)
    block = UniConvNetBlock(32, dcn_group_channels=8, ls_init_value=0.5)
    with torch.no_grad():
        block.dcn.offset.weight.normal_(std=0.5)
        block.dcn.mask.weight.normal_(std=0.5)
    x = torch.randn(2, 32, 9, 11, requires_grad=True)
    # fullgraph: a graph break inside the block (the DCN core included) is an error; aot_eager traces the
    # backward too without compiling C++, to keep this test fast
    compiled = torch.compile(block, fullgraph=True, backend='aot_eager')
    out = compiled(x)
    grad, = torch.autograd.grad(out.square().sum(), x)
    ref = block(x)
    ref_grad, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize('kernel', [7, 11])
def test_large_depthwise_conv_gradients(kernel):
    from uniconvnet.layers.functional import depthwise_conv as large_depthwise_conv
    x = torch.randn(2, 6, 9, 13, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 1, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = large_depthwise_conv(*inputs)
    ref_inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ref = F.conv2d(ref_inputs[0], ref_inputs[1], ref_inputs[2], padding=kernel // 2, groups=6)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, ref_inputs, grad_out)):
        torch.testing.assert_close(g, r)


def test_recompute_gives_the_same_gradients_and_reruns_the_branch():
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=5, ls_init_value=0.5)
    x = torch.randn(2, 3, 48, 48)
    params = [p for p in model.parameters()]

    def grads():
        return torch.autograd.grad(model(x).square().sum(), params)

    calls = []
    # a pre-hook: the recomputation stops as soon as it has what the backward needs, before the RFA returns
    hook = model.stages[1].blocks[0].rfa.register_forward_pre_hook(lambda *_: calls.append(1))
    plain = grads()
    assert len(calls) == 1
    assert model.set_recompute(('rfa', 'mlp')) is model
    recomputed = grads()
    assert len(calls) == 3  # forward, then again in the backward pass
    hook.remove()
    for g, r in zip(recomputed, plain):
        torch.testing.assert_close(g, r, rtol=0, atol=0)  # the same ops on the same values
    model.set_recompute(())
    assert all(not any(b.recompute) for b in model.modules() if isinstance(b, UniConvNetBlock))


def test_recompute_rejects_unknown_branches():
    with pytest.raises(ValueError, match=r"unknown branch\(es\) to recompute: 'attn'; choose from rfa, dcn, mlp"):
        timm.create_model('uniconvnet_a', recompute=('attn',))
    with pytest.raises(ValueError, match='choose from rfa, dcn, mlp'):
        timm.create_model('uniconvnet_a').set_recompute(['mlp', 'stem'])


def test_small_model_computes_its_features_in_float32_under_cpu_autocast():
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)  # 16 x 16 pixels x 24^2 = 147 k multiply-adds per layer: below the threshold
    assert model.leaves_autocast(torch.randn(1, 3, 64, 64)) is False  # autocast off: nothing to leave
    with torch.no_grad():
        ref_features, ref_logits = model.forward_features(x), model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert model.leaves_autocast(x)
            features, logits = model.forward_features(x), model(x)
            model.autocast_float32_below = 16 * 16 * 24 ** 2  # the work is no longer below it
            assert not model.leaves_autocast(x)
            followed = model.forward_features(x)
    assert features.dtype == torch.float32 and torch.equal(features, ref_features)  # float32 arithmetic
    assert logits.dtype == torch.bfloat16  # the head still follows autocast
    torch.testing.assert_close(logits.float(), ref_logits, rtol=0.02, atol=0.02)
    assert not torch.equal(followed, ref_features)  # above the threshold: bfloat16 products inside
    assert F.cosine_similarity(followed.flatten(), ref_features.flatten(), dim=0) > 0.999
