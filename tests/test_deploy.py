"""The deployment form of UniConvNet (uniconvnet.deploy): the same function as the eager model, both samplings."""
import math

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.deploy import SAMPLINGS, deploy_form
from uniconvnet.layers import DCNv3

# UniConvNet-A's widths and group width, one block per stage
TINY = dict(depths=(1, 1, 1, 1), dims=(24, 48, 96, 192), dcn_group_channels=8, num_classes=7)


def _model(**kwargs):
    """Layer scales of 0.5 (every branch counts) and offsets of a few pixels (the sampling matters), not fused."""
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', **{**TINY, 'ls_init_value': 0.5, **kwargs}).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DCNv3):
                module.offset.weight.normal_(std=0.3)
                module.mask.weight.normal_(std=0.3)
    return model


@pytest.fixture(scope='module')
def model():
    return _model()


@pytest.mark.parametrize('sampling', SAMPLINGS)
def test_deploy_form_equals_the_model(model, sampling):
    form = deploy_form(model, sampling)
    assert not any(p.requires_grad for p in form.parameters())
    for shape in [(1, 3, 64, 64), (3, 3, 80, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(form(x), model(x), rtol=0, atol=2e-5)
    # built from a fused copy: the model keeps its layer scales and norm affines
    assert model.stages[0].blocks[0].ls_rfa.gamma is not None


@pytest.mark.parametrize('up_to_stride', [0, math.inf])
def test_every_norm_form_equals_the_model(model, up_to_stride):
    """Norms all as LayerNormalization between transposes (0), or all as reductions (inf: OpenVINO's form)."""
    form = deploy_form(model, 'gridsample', reduction_norms_up_to_stride=up_to_stride)
    norms = [m for m in form.modules() if type(m).__name__ == 'ChannelNorm']
    assert norms and all(n.reductions == (up_to_stride == math.inf) for n in norms)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(form(x), model(x), rtol=0, atol=2e-5)


def test_deploy_form_folds_offset_scale():
    """DCNv3 scales the kernel grid and the offsets by offset_scale; the deployment form's sampling takes plain
    pixel offsets, so the scale goes into the offset projection."""
    model = _model()
    for module in model.modules():
        if isinstance(module, DCNv3):
            module.offset_scale = 0.5
    x = torch.randn(2, 3, 64, 64)
    for sampling in SAMPLINGS:
        with torch.no_grad():
            torch.testing.assert_close(deploy_form(model, sampling)(x), model(x), rtol=0, atol=2e-5)


def test_deploy_form_of_a_single_layer_rfa():
    """With one layer operator the RFA's layer scale cannot go into the weights: the form multiplies it."""
    model = _model(kernel_sizes=(7,), dims=(24, 48, 96, 192))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deploy_form(model)(x), model(x), rtol=0, atol=2e-5)


def test_deploy_form_bad_input(model):
    with pytest.raises(TypeError, match='deploy_form takes a UniConvNet, got Sequential'):
        deploy_form(torch.nn.Sequential())
    with pytest.raises(ValueError, match="unknown DCN sampling 'bilinear'; use one of: deformconv, gridsample"):
        deploy_form(model, 'bilinear')
