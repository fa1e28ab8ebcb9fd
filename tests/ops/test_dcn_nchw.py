"""DCNv3's sampling as a deformable convolution: the mapping onto ONNX ``DeformConv`` (row order of offsets and
mask, the raw mask, zero borders, offset groups, stride, dilation), proven against the reference core in eager
mode, through torchvision's ``deform_conv2d`` (the same operator family), and through onnxruntime and OpenVINO on
one-layer graphs."""
import warnings

import pytest
import torch

from uniconvnet.ops import dcnv3
from uniconvnet.ops.dcn.geometry import kernel_window_pixels
from uniconvnet.ops.dcn.nchw import dcnv3_deform_conv, dcnv3_grid_sample, deform_conv_rows, kernel_grid_base

from dcn_cases import GEOMETRIES, Geometry, make_inputs

# from the shared table (dcn_cases.py): UniConvNet's DCN (3x3, stride 1, padding 1, several offset groups), stride
# 2, 5x5 with dilation 2, no padding (the output shrinks). The deployment forms sample with offset_scale 1 (the
# model folds its scale into the offset weights), so the entries' offset scales are not used here.
DEPLOYED = ['uniconvnet_layer', 'stride2_half_scale', 'kernel5_dilation2_double_scale', 'unpadded_four_groups']


def _inputs(g: Geometry, dtype=torch.float64):
    """NHWC value, offsets and mask in DCNv3's layout. Offsets of a few pixels send many samples across the
    borders, where the zero padding decides; a signed mask checks that it is used raw (no softmax)."""
    return make_inputs(g, dtype, 'random')


def _geometry(g: Geometry):
    return dict(kernel_size=g.kernel_size, stride=g.stride, padding=g.padding, dilation=g.dilation, group=g.group)


def _deployment_layout(value, offset, mask, g: Geometry, pair):
    """The same inputs in the deployment layout: NCHW, offset and mask rows permuted by deform_conv_rows."""
    offset_rows, mask_rows = deform_conv_rows(g.kernel_size, g.group, pair)
    return (value.permute(0, 3, 1, 2), offset[..., offset_rows].permute(0, 3, 1, 2),
            mask[..., mask_rows].permute(0, 3, 1, 2))


def _reference(value, offset, mask, geometry):
    return dcnv3(value, offset, mask, **geometry, backend='torch').permute(0, 3, 1, 2)


@pytest.mark.parametrize('name', DEPLOYED)
@pytest.mark.parametrize('pair,sample', [('yx', dcnv3_deform_conv), ('xy', dcnv3_grid_sample)],
                         ids=['deform_conv', 'grid_sample'])
def test_both_forms_equal_the_reference_core(name, pair, sample):
    g = GEOMETRIES[name]
    inputs = _inputs(g)
    geometry = _geometry(g)
    out = sample(*_deployment_layout(*inputs, g, pair), **geometry)
    torch.testing.assert_close(out, _reference(*inputs, geometry), rtol=0, atol=1e-12)


@pytest.mark.parametrize('name', DEPLOYED)
def test_torchvision_deform_conv2d_with_ones_is_the_dcnv3_sampling(name):
    """The mapping itself, outside our code: a depthwise deform_conv2d with all-ones weights, DCNv3's offset groups,
    its raw mask and the permuted rows gives DCNv3's output, borders included."""
    torchvision = pytest.importorskip('torchvision')
    g = GEOMETRIES[name]
    value, offset, mask = _inputs(g)
    x, offset_dc, mask_dc = _deployment_layout(value, offset, mask, g, 'yx')
    weight = torch.ones(g.group * g.group_channels, 1, *g.kernel_size, dtype=x.dtype)
    out = torchvision.ops.deform_conv2d(x, offset_dc, weight, stride=g.stride, padding=g.padding,
                                        dilation=g.dilation, mask=mask_dc)
    reference = _reference(value, offset, mask, _geometry(g))
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    # and the row order matters: DCNv3's own order gives something else
    unpermuted = torchvision.ops.deform_conv2d(x, offset.permute(0, 3, 1, 2), weight, stride=g.stride,
                                               padding=g.padding, dilation=g.dilation, mask=mask.permute(0, 3, 1, 2))
    assert (unpermuted - reference).abs().max() > 0.1


def test_rows_are_a_permutation_with_pairs_swapped():
    offset_rows, mask_rows = deform_conv_rows((3, 3), 2, 'yx')
    assert sorted(offset_rows.tolist()) == list(range(36)) and sorted(mask_rows.tolist()) == list(range(18))
    # first row of the layout: group 0, (ky, kx) = (0, 0), dy; DCNv3 keeps that point at p = 0 with (dx, dy)
    assert offset_rows[:2].tolist() == [1, 0]
    # (ky, kx) = (0, 1) is DCNv3's point p = kx * kh + ky = 3
    assert mask_rows[1].item() == 3 and offset_rows[2:4].tolist() == [7, 6]
    assert mask_rows[9].item() == 9  # group 1 starts at its own rows
    with pytest.raises(ValueError, match="pair must be 'yx'"):
        deform_conv_rows((3, 3), 1, 'dxdy')


def test_kernel_window_orders_points_for_each_layout():
    # a 3x2 kernel (kh=3, kw=2), dilation 2 down and 1 across, stride 2 down
    centre_y, centre_x, point_y, point_x = kernel_window_pixels(2, 3, (3, 2), (2, 1), (2, 1), torch.float64, None)
    assert centre_y.tolist() == [2.5, 4.5]  # half of the dilated window (2) + 0.5, then every 2 rows
    assert centre_x.tolist() == [0.5, 1.5, 2.5]  # a 2-wide window has no centre pixel: (1 * 1) // 2 = 0
    # x-major (DCNv3): p = kx * kh + ky
    assert point_y.tolist() == [-2, 0, 2, -2, 0, 2] and point_x.tolist() == [0, 0, 0, 1, 1, 1]
    _, _, point_y, point_x = kernel_window_pixels(2, 3, (3, 2), (2, 1), (2, 1), torch.float64, None, x_major=False)
    # row-major (DeformConv): p = ky * kw + kx
    assert point_y.tolist() == [-2, -2, 0, 0, 2, 2] and point_x.tolist() == [0, 1, 0, 1, 0, 1]


def test_grid_sample_base_puts_the_first_point_at_the_padded_corner():
    # 8x8 input, 3x3 kernel, padding 1: output pixel (0, 0)'s first point is the padding pixel (-1, -1), whose
    # centre is half a pixel outside the image: (-1 + 0.5) * 2 / 8 - 1 = -1.125
    base = kernel_grid_base(8, 8, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64)
    assert base.shape == (1, 9, 64, 2)
    assert base[0, 0, 0].tolist() == [-1.125, -1.125]
    assert base[0, 4, 0].tolist() == [-0.875, -0.875]  # the centre point: pixel (0, 0) itself
    assert base[0, 1, 0].tolist() == [-0.875, -1.125]  # row-major: point 1 is one step in x, as (x, y)


class _OneLayer(torch.nn.Module):
    def __init__(self, geometry):
        super().__init__()
        self.geometry = geometry

    def forward(self, value, offset, mask):
        return dcnv3_deform_conv(value, offset, mask, **self.geometry)


def _one_layer_onnx(tmp_path, geometry, example):
    onnx = pytest.importorskip('onnx')
    path = tmp_path / 'deformconv.onnx'
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)  # dcnv3's shape checks: constants in the trace
        warnings.simplefilter('ignore', DeprecationWarning)  # the TorchScript-based exporter, which we use
        torch.onnx.export(_OneLayer(geometry), example, str(path), dynamo=False, opset_version=19,
                          autograd_inlining=False, input_names=['value', 'offset', 'mask'])
    nodes = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert nodes.count('DeformConv') == 1 and 'GridSample' not in nodes
    return path


@pytest.mark.parametrize('name', DEPLOYED)
def test_onnxruntime_deformconv_equals_the_reference_core(tmp_path, name):
    ort = pytest.importorskip('onnxruntime')
    g = GEOMETRIES[name]
    inputs = _inputs(g, torch.float32)
    geometry = _geometry(g)
    example = _deployment_layout(*inputs, g, 'yx')
    session = ort.InferenceSession(str(_one_layer_onnx(tmp_path, geometry, example)),
                                   providers=['CPUExecutionProvider'])
    out = session.run(None, dict(zip(('value', 'offset', 'mask'), (t.numpy() for t in example))))[0]
    torch.testing.assert_close(torch.from_numpy(out), _reference(*inputs, geometry), rtol=0, atol=1e-5)


@pytest.mark.parametrize('name', DEPLOYED)
def test_openvino_deformable_convolution_equals_the_reference_core(tmp_path, name):
    """ONNX DeformConv converted to OpenVINO's DeformableConvolution (bilinear_interpolation_pad): the same
    samples, borders included."""
    ov = pytest.importorskip('openvino')
    from uniconvnet.export import _convert_to_openvino
    g = GEOMETRIES[name]
    inputs = _inputs(g, torch.float32)
    geometry = _geometry(g)
    example = _deployment_layout(*inputs, g, 'yx')
    model = _convert_to_openvino(_one_layer_onnx(tmp_path, geometry, example))
    assert [op.get_type_name() for op in model.get_ops()].count('DeformableConvolution') == 1
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    out = compiled(dict(zip(('value', 'offset', 'mask'), (t.numpy() for t in example))))[0]
    torch.testing.assert_close(torch.from_numpy(out), _reference(*inputs, geometry), rtol=0, atol=1e-5)


def test_borders_sample_zeros_in_every_form(tmp_path):
    """Samples placed exactly on and around the borders: at -1 and at the size (all four corners outside: zero),
    within one pixel outside (interpolated with zeros) and at the last pixel. A constant image of ones makes each
    sample's value its in-image bilinear weight."""
    ort = pytest.importorskip('onnxruntime')
    ov = pytest.importorskip('openvino')
    from uniconvnet.export import _convert_to_openvino
    size = 4
    geometry = dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), group=1)
    value = torch.ones(1, 1, size, size)
    # every kernel point of every output pixel gets the same offset (dy, dx); the mask keeps only the centre point
    offsets = [(-0.25, 0.0), (-1.0, 0.0), (0.0, 0.75), (0.0, 2.0), (0.5, -0.5), (-1.0, -1.0)]
    mask = torch.zeros(1, 9, size, size)
    mask[:, 4] = 1
    expected = {}
    for dy, dx in offsets:
        # the centre point of output pixel (i, j) samples (i + dy, j + dx): weight of the in-image corners
        rows = torch.arange(size, dtype=torch.float32) + dy
        cols = torch.arange(size, dtype=torch.float32) + dx
        inside = lambda t: (1 - (t - t.floor())) * ((t.floor() >= 0) & (t.floor() <= size - 1)) + \
            (t - t.floor()) * ((t.floor() + 1 >= 0) & (t.floor() + 1 <= size - 1))  # noqa: E731
        expected[(dy, dx)] = (inside(rows)[:, None] * inside(cols)[None, :])[None, None]
    example = (value, torch.zeros(1, 18, size, size), mask)
    path = _one_layer_onnx(tmp_path, geometry, example)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    compiled = ov.Core().compile_model(_convert_to_openvino(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    for (dy, dx), want in expected.items():
        offset = torch.tensor([dy, dx]).repeat(9).view(1, 18, 1, 1).expand(1, 18, size, size).contiguous()
        outs = {
            'reference': dcnv3(value.permute(0, 2, 3, 1), *(t.permute(0, 2, 3, 1) for t in _back_to_dcnv3(
                offset, mask)), **geometry, backend='torch').permute(0, 3, 1, 2),
            'deform_conv': dcnv3_deform_conv(value, offset, mask, **geometry),
            'onnxruntime': torch.from_numpy(session.run(None, {'value': value.numpy(), 'offset': offset.numpy(),
                                                               'mask': mask.numpy()})[0]),
            'openvino': torch.from_numpy(compiled({'value': value.numpy(), 'offset': offset.numpy(),
                                                   'mask': mask.numpy()})[0]),
        }
        for name, out in outs.items():
            torch.testing.assert_close(out, want, rtol=0, atol=1e-6, msg=f'{name} at offset {(dy, dx)}')


def _back_to_dcnv3(offset, mask):
    """Inverse of the deployment layout for a 3x3, one-group case: NCHW in DCNv3's row order."""
    offset_rows, mask_rows = deform_conv_rows((3, 3), 1, 'yx')
    return offset[:, offset_rows.argsort()], mask[:, mask_rows.argsort()]
