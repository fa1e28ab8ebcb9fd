"""ERF maps, area ratios and AGD metrics, checked against answers known in closed form."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

from timm.models import FeatureListNet

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.analysis.agd import agd_metrics, fit_gaussian_2d, monotonic_decrease, radial_profile
from uniconvnet.analysis.erf import erf_map, erf_maps, high_contribution_area_ratio, log_scale, resolve_stage
from uniconvnet.analysis.images import load_images

pytestmark = pytest.mark.usefixtures('one_thread')


def ones_conv(cin: int, k: int, padding: int = 0, value: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, 1, k, padding=padding, bias=False)
    nn.init.constant_(conv.weight, value)
    return conv


def placed(kernel_1d: np.ndarray, size: int, top_left: int) -> np.ndarray:
    """``outer(kernel, kernel)`` in a ``size`` x ``size`` zero map, its corner at ``(top_left, top_left)``."""
    out = np.zeros((size, size))
    n = len(kernel_1d)
    out[top_left:top_left + n, top_left:top_left + n] = np.outer(kernel_1d, kernel_1d)
    return out


def trinomial(n: int) -> np.ndarray:
    """Coefficients of (1 + x + x^2)^n: sum over j (the x^2 picks) of C(n, j) C(n - j, m - 2j)."""
    return np.array([sum(math.comb(n, j) * math.comb(n - j, m - 2 * j) for j in range(m // 2 + 1) if m - 2 * j <= n - j)
                     for m in range(2 * n + 1)], dtype=np.float64)


@pytest.fixture(scope='module')
def tiny_uniconvnet():
    return timm.create_model('uniconvnet_a', depths=(1, 1, 1, 1))


# ------------------------------------------------------------------------------------------------------------------
# closed-form maps
# ------------------------------------------------------------------------------------------------------------------

def test_single_box_conv_gives_exactly_the_box():
    # one 9x9 conv of ones: the centre output sees a 9x9 window with weight 1 in each of 3 colour channels
    erf = erf_map(ones_conv(3, 9, padding=4), torch.rand(2, 3, 33, 33) + 0.1)
    assert np.array_equal(erf.map, 3 * placed(np.ones(9), 33, 16 - 4))
    assert (erf.images_used, erf.images_skipped, erf.feature_shape) == (2, 0, (1, 33, 33))


def test_stacked_2x2_boxes_give_the_binomial():
    n, size = 6, 20
    stack = nn.Sequential(*[ones_conv(3 if i == 0 else 1, 2) for i in range(n)])
    erf = erf_map(stack, torch.ones(1, 3, size, size))
    # output is 14x14, its centre (7, 7) sees input rows 7 .. 7 + n with weights C(n, i) C(n, j)
    binomial = np.array([math.comb(n, i) for i in range(n + 1)], dtype=np.float64)
    assert np.array_equal(erf.map, 3 * placed(binomial, size, 7))


def test_stacked_3x3_boxes_give_the_trinomial_and_tend_to_a_gaussian():
    n, size = 5, 31
    stack = nn.Sequential(*[ones_conv(3 if i == 0 else 1, 3, padding=1) for i in range(n)])
    erf = erf_map(stack, torch.ones(1, 3, size, size))
    assert np.array_equal(erf.map, 3 * placed(trinomial(n), size, 15 - n))
    # many 3x3 boxes: the central limit theorem makes it Gaussian, each axis a sum of n uniform {-1, 0, 1}
    n = 16
    stack = nn.Sequential(*[ones_conv(3 if i == 0 else 1, 3, padding=1, value=1 / 9) for i in range(n)])
    agd = erf_map(stack, torch.ones(1, 3, 65, 65)).agd(scale='linear')
    assert agd.is_gaussian and agd.fit.r2 > 0.999 and agd.monotonicity == 1.0
    assert agd.sigma == pytest.approx(math.sqrt(n * 2 / 3), rel=0.02)


def test_area_ratio_equals_the_hand_count():
    # box of side 9 in a 33x33 map: log scale keeps it flat (1 inside, 0 outside); squares of side 1, 3, 5, 7, 9
    # hold 1, 9, 25, 49, 81 of 81: > 20% first at 5, > 30% at 5 (30.9%), > 50% at 7 (60.5%), > 99% at 9
    erf = erf_map(ones_conv(3, 9, padding=4), torch.ones(1, 3, 33, 33))
    got = [(a.threshold, a.side, a.area_ratio) for a in erf.area_ratios()]
    assert got == [(0.2, 5, 25 / 33 ** 2), (0.3, 5, 25 / 33 ** 2), (0.5, 7, 49 / 33 ** 2), (0.99, 9, 81 / 33 ** 2)]


def test_unreached_threshold_is_reported_not_a_crash():
    # flat 8x8 map: the largest centred square (side 7) holds 49/64 = 77% < 99%
    ratios = high_contribution_area_ratio(np.ones((8, 8)))
    assert [(a.side, a.reached) for a in ratios] == [(5, True), (5, True), (7, True), (None, False)]
    assert ratios[-1].area_ratio is None
    assert not any(a.reached for a in high_contribution_area_ratio(np.zeros((9, 9))))


def test_log_scale_is_replknet_scale():
    m = np.array([[0.0, 9.0], [99.0, 0.0]])
    assert np.allclose(log_scale(m), [[0, 0.5], [1, 0]])


# ------------------------------------------------------------------------------------------------------------------
# AGD metrics
# ------------------------------------------------------------------------------------------------------------------

def _grid(size: int = 65):
    y, x = np.mgrid[:size, :size] - size // 2
    return y.astype(float), x.astype(float)


def test_agd_calls_a_gaussian_blob_gaussian():
    y, x = _grid()
    agd = agd_metrics(np.exp(-0.5 * ((y / 8) ** 2 + (x / 4) ** 2)))
    assert agd.is_gaussian and agd.fit.r2 > 0.9999 and agd.monotonicity == 1.0
    assert (agd.fit.sigma_y, agd.fit.sigma_x) == (pytest.approx(8, rel=1e-4), pytest.approx(4, rel=1e-4))
    assert agd.sigma == pytest.approx(math.sqrt(32), rel=1e-4)
    assert agd.sigma_fraction == pytest.approx(math.sqrt(32) / 65, rel=1e-4)


def test_agd_calls_a_flat_box_and_a_ring_not_gaussian():
    y, x = _grid()
    box = agd_metrics(((abs(y) <= 10) & (abs(x) <= 10)).astype(float))
    assert not box.is_gaussian and box.fit.r2 < 0.85
    assert box.monotonicity == 1.0  # a box never rises from its centre: the fit is what tells it apart
    ring = agd_metrics(np.exp(-0.5 * ((np.hypot(y, x) - 20) / 3) ** 2))
    assert not ring.is_gaussian and ring.fit.r2 < 0.5
    assert ring.monotonicity == pytest.approx(0.5, abs=0.02)


def test_radial_profile_and_monotonicity_by_hand():
    y, x = _grid(41)
    cone = np.clip(15 - np.hypot(y, x), 0, None)
    profile = radial_profile(cone)
    assert len(profile) == 21 and profile[0] == 15
    assert np.allclose(profile[1:15], 15 - np.arange(1, 15), atol=0.25)  # a ring k averages distances within 0.21 of k
    assert monotonic_decrease([3, 2, 1]) == 1.0 and monotonic_decrease([1, 2, 3]) == 0.0
    assert monotonic_decrease([0, 1, 0]) == 0.5 and math.isnan(monotonic_decrease([1, 1, 1]))
    assert math.isnan(fit_gaussian_2d(np.zeros((5, 5))).r2)


# ------------------------------------------------------------------------------------------------------------------
# any model: UniConvNet, timm, features_only, named layers, callables
# ------------------------------------------------------------------------------------------------------------------

def test_every_route_to_the_last_stage_gives_the_same_map(tiny_uniconvnet):
    model = tiny_uniconvnet
    x = torch.randn(2, 3, 96, 96)
    maps = erf_maps(model, x, (None, 4, 'stages.3', 1))
    assert np.array_equal(maps[None].map, maps[4].map) and np.allclose(maps[None].map, maps['stages.3'].map)
    assert maps[None].feature_shape == (192, 3, 3) and maps[1].feature_shape == (24, 24, 24)
    assert maps[1].map.sum() < maps[None].map.sum()
    features = FeatureListNet(model, out_indices=(0, 1, 2, 3), flatten_sequential=True)  # shares the weights
    one_by_one = erf_map(model, x, grad_checkpointing=False, batch_size=1)
    # equal up to float rounding, measured against the map's scale: the routes differ in batch layout and in
    # whether gradient checkpointing recomputes the forward, which changes summation orders in the backward
    scale = 1e-6 * maps[None].map.max()
    assert np.allclose(erf_map(features, x).map, maps[None].map, rtol=1e-5, atol=scale)
    assert np.allclose(erf_map(lambda t: model.forward_features(t), x).map, maps[None].map, rtol=1e-5, atol=scale)
    assert np.allclose(one_by_one.map, maps[None].map, rtol=1e-5, atol=scale)
    # the model is handed back as it came
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(s.grad_checkpointing for s in model.stages)


def test_stages_follow_the_stride_convention():
    assert resolve_stage(timm.create_model('resnet10t'), 1) == 1  # levels: stem (2), layer1 (4), ...
    assert resolve_stage(timm.create_model('uniconvnet_a', depths=(1, 1, 1, 1)), 1) == 0
    vit = timm.create_model('vit_tiny_patch16_224', depth=2)
    assert resolve_stage(vit, 3) == 1  # stride 16 throughout: stage 3 is the last block
    with pytest.raises(ValueError, match='no stage 4.*strides'):
        resolve_stage(vit, 4)
    with pytest.raises(ValueError, match='numbered from 1'):
        resolve_stage(vit, 0)
    # a ViT's stage 3 comes out of forward_intermediates as an NCHW map
    erf = erf_map(vit, torch.randn(1, 3, 224, 224), stage=3)
    assert erf.feature_shape == (192, 14, 14) and erf.map.shape == (224, 224)


def test_nan_gradients_are_skipped_and_counted():
    conv = ones_conv(3, 5, padding=2)

    def model(x):  # adds 0, but its gradient is 0 * d sqrt(x)/dx = 0 * inf = NaN where the corner pixel is 0
        return conv(x) + 0 * torch.sqrt(x[:, :1, :1, :1])

    images = torch.ones(3, 3, 21, 21)
    images[1, 0, 0, 0] = 0
    for batch_size in (1, 3):
        erf = erf_map(model, images, batch_size=batch_size)
        assert (erf.images_used, erf.images_skipped) == (2, 1)
        assert np.array_equal(erf.map, 3 * placed(np.ones(5), 21, 8))
    with pytest.raises(ValueError, match='all 1 images gave NaN'):
        erf_map(model, images[1:2])


def test_packaged_photographs_and_views():
    images = load_images(None, size=(40, 48), num_images=5, seed=3)
    assert len(images) == 5 and all(i.pixels.shape == (3, 40, 48) and i.pixels.dtype == torch.uint8 for i in images)
    names = [i.name for i in images]
    assert len(set(names)) == 5 and any('#view' in n for n in names)
    assert all(i.pixels.float().std() > 10 for i in images)  # photographs, not blank
    again = load_images(None, size=(40, 48), num_images=5, seed=3)
    assert all(torch.equal(a.pixels, b.pixels) for a, b in zip(images, again))


@pytest.mark.slow
def test_erf_is_importable_without_matplotlib():
    code = ('import sys; sys.modules["matplotlib"] = None\n'
            'import torch, uniconvnet.analysis.erf as e\n'
            'conv = torch.nn.Conv2d(3, 1, 3, padding=1, bias=False)\n'
            'torch.nn.init.ones_(conv.weight)\n'
            'm = e.erf_map(conv, torch.ones(1, 3, 9, 9))\n'
            'print(m.area_ratios()[0].side, m.agd().monotonicity)')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['3', '1.0']


# ------------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------------

def test_output_that_is_not_a_map_suggests_the_stage_option():
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r'shape \[1, 4\], not a 4-D.*stage=k.*--stage'):
        erf_map(classifier, torch.randn(1, 3, 16, 16))
    vit = timm.create_model('vit_tiny_patch16_224', depth=1)
    with pytest.raises(ValueError, match=r'not a 4-D.*--stage'):
        erf_map(vit, torch.randn(1, 3, 224, 224))


def test_empty_image_folder(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    with pytest.raises(FileNotFoundError, match='no images in'):
        load_images(tmp_path, size=32, num_images=2)
    with pytest.raises(FileNotFoundError, match='not found'):
        load_images(tmp_path / 'missing', size=32)


def test_input_too_small_for_the_model(tiny_uniconvnet):
    with pytest.raises(ValueError, match=r'too small.*1x1 map \(stride 32\).*size >= 96'):
        erf_map(tiny_uniconvnet, torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='too small for the model'):  # the model itself cannot run on it
        erf_map(nn.Conv2d(3, 1, 7), torch.randn(1, 3, 5, 5))
