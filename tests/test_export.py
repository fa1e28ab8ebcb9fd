"""Export: ONNX checked against onnxruntime, OpenVINO IR against eager, TorchScript and ExportedProgram round trips,
bad input."""
import sys

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.checkpoints import save_safetensors
from uniconvnet.cli.main import main
from uniconvnet.export import export_model, pad_depthwise_channels

# UniConvNet-A's widths: its first stage has depthwise convolutions of 6 and 18 channels (see pad_depthwise_channels)
TINY = dict(depths=(1, 1, 1, 1), dims=(24, 48, 96, 192), dcn_group_channels=8, num_classes=7)


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', ls_init_value=0.5, **TINY).eval()
    with torch.no_grad():  # offsets of a few pixels and a non-trivial mask: the sampling matters
        for module in model.modules():
            if isinstance(module, uniconvnet.DCNv3):
                module.offset.weight.normal_(std=0.3)
                module.mask.weight.normal_(std=0.3)
    return model.fuse()


def test_onnx_matches_onnxruntime_on_two_sizes(tiny_model, tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    path = export_model(tiny_model, tmp_path / 'tiny.onnx', 'onnx', (64, 64))
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 16
    op_types = {node.op_type for node in graph.graph.node}
    assert 'GridSample' in op_types and 'Pad' in op_types  # the 6- and 18-channel depthwise convs are padded
    assert all(node.domain in ('', 'ai.onnx') for node in graph.graph.node), 'standard operators only'
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for shape in [(1, 3, 64, 64), (2, 3, 80, 96)]:  # dynamic batch and image size
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = tiny_model(x)
        out = torch.from_numpy(session.run(None, {'images': x.numpy()})[0])
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= 1e-4


def test_depthwise_convolutions_get_channels_in_multiples_of_four(tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 1), torch.nn.Conv2d(6, 6, 7, padding=3, groups=6),
                                torch.nn.Conv2d(6, 8, 1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    path = export_model(model, tmp_path / 'dw.onnx', 'onnx', (20, 20))
    graph = onnx.load(str(path))
    weights = {init.name: tuple(init.dims) for init in graph.graph.initializer}
    ops = [(node.op_type, weights.get(node.input[1]) if node.op_type == 'Conv' else None) for node in graph.graph.node]
    assert ops == [('Conv', (6, 3, 1, 1)), ('Pad', None), ('Conv', (8, 1, 7, 7)), ('Slice', None),
                   ('Conv', (8, 6, 1, 1)), ('Conv', (8, 1, 3, 3))]  # the 8-channel one is left as it was
    assert pad_depthwise_channels(graph) == 0  # nothing left to pad
    x = torch.randn(2, 3, 24, 16)
    out = ort.InferenceSession(str(path), providers=['CPUExecutionProvider']).run(None, {'images': x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-5, atol=1e-5)


def test_openvino_matches_eager_on_two_sizes(tiny_model, tmp_path):
    ov = pytest.importorskip('openvino')
    path = export_model(tiny_model, tmp_path / 'tiny.xml', 'openvino', (64, 64))
    assert path.with_suffix('.bin').is_file()
    model = ov.Core().read_model(str(path))
    constants = [op for op in model.get_ops() if op.get_type_name() == 'Constant']
    assert constants and not any(op.get_element_type() == ov.Type.f16 for op in constants), 'float32 weights'
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    for shape in [(1, 3, 64, 64), (2, 3, 80, 96)]:  # dynamic batch and image size
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = tiny_model(x)
        out = torch.from_numpy(compiled({'images': x.numpy()})[0])
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= 1e-4


def test_exported_program_round_trip(tiny_model, tmp_path):
    # (TorchScript: see test_export_command_loads_checkpoint)
    x = torch.randn(3, 3, 72, 64)  # neither the batch nor the size of the export
    with torch.no_grad():
        program = torch.export.load(export_model(tiny_model, tmp_path / 'tiny.pt2', 'exported-program', (64, 64)))
        torch.testing.assert_close(program.module()(x), tiny_model(x), rtol=1e-5, atol=1e-5)


def _cli_error(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_export_bad_input(capsys, tmp_path):
    out = str(tmp_path / 'm.onnx')
    assert 'unknown model' in _cli_error(capsys, 'export', '--model', 'uniconvnet_zz', '--out', out)
    assert 'unsupported export format' in _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--format',
                                                     'tflite', '--out', out)
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--out', str(tmp_path / 'missing' / 'm.onnx'))
    assert 'output folder does not exist' in err
    checkpoint = tmp_path / 'tiny.safetensors'
    save_safetensors(timm.create_model('uniconvnet_a', **TINY).state_dict(), checkpoint)
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_p0', '--checkpoint', str(checkpoint), '--out', out)
    assert 'does not fit' in err and 'shape mismatches' in err
    with pytest.raises(ValueError, match='ONNX opset 15 is not supported: use 16 to 20'):
        export_model(timm.create_model('uniconvnet_a', **TINY), out, 'onnx', opset=15)
    # both answered before the model is built
    assert _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--out', out, '--opset', '99') == (
        'uniconvnet export: error: ONNX opset 99 is not supported: use 16 to 20 (16 is the first with GridSample)')
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--out', out, '--size', '0')
    assert err.endswith('export image size (--size) must be at least 1 for onnx, got 0')
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--format', 'exported-program', '--size', '32',
                     '--out', str(tmp_path / 'a.pt2'))
    assert err.endswith('must be at least 33 for exported-program, got 32')


def test_openvino_export_bad_input(capsys, tmp_path, monkeypatch):
    pytest.importorskip('openvino')
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--format', 'openvino', '--out',
                     str(tmp_path / 'a.onnx'))
    assert 'OpenVINO IR is an .xml file' in err and 'a.xml' in err
    monkeypatch.setitem(sys.modules, 'openvino', None)  # as if it were not installed
    err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--format', 'openvino', '--out',
                     str(tmp_path / 'a.xml'))
    assert err.endswith('OpenVINO export needs the openvino package: pip install "uniconvnet[openvino]" '
                        '(or pip install openvino)')


def test_export_command_loads_checkpoint(tmp_path):
    # an official-layout or our checkpoint of the variant: exported with the checkpoint's class count
    model = timm.create_model('uniconvnet_a', num_classes=5).eval()
    save_safetensors(model.state_dict(), tmp_path / 'a5.safetensors')
    assert main(['export', '--model', 'uniconvnet_a', '--checkpoint', str(tmp_path / 'a5.safetensors'),
                 '--format', 'torchscript', '--out', str(tmp_path / 'a5.ts'), '--size', '64']) == 0
    scripted = torch.jit.load(str(tmp_path / 'a5.ts'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
