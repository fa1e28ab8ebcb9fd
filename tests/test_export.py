"""Export: ONNX checked against onnxruntime, OpenVINO IR against eager, TorchScript and ExportedProgram round trips,
bad input."""
import sys

import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.checkpoints import save_safetensors
from uniconvnet.cli.main import main
from uniconvnet.export import (OPENVINO_AUTO_REASON, export_model, exported_sampling, pad_depthwise_channels,
                               tidy_graph)

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


SIZES = [(64, 64), (80, 96)]  # two image sizes, each run at two batch sizes


def _check_runs_like_eager(model, run, size, batches=(1, 3), atol=1e-4):
    for batch in batches:
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            ref = model(x)
        out = torch.from_numpy(run(x.numpy()))
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= atol


def _ort_run(path):
    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'images': x})[0]


def _op_types(path):
    onnx = pytest.importorskip('onnx')
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize('size', SIZES)
def test_onnx_deformconv_form_matches_eager(tiny_model, tmp_path, size):
    """The default where onnxruntime runs DeformConv (1.32 here): one DeformConv per DCN layer, nothing computed
    from shapes at a fixed size, parity at two batch sizes."""
    path = export_model(tiny_model, tmp_path / 'tiny.onnx', 'onnx', size)
    ops = _op_types(path)
    assert ops.count('DeformConv') == 4 and 'GridSample' not in ops
    assert not {'Shape', 'Gather', 'Identity', 'Constant'} & set(ops), 'shapes are constants, weights initializers'
    # five norms per block (the RFA's first layer operator has none), 2 in the stem, 3 before the stages, 1 in the
    # head: as reductions up to stride 4 (stem, first stage, the norm after it), as LayerNormalization after
    assert ops.count('ReduceMean') == 2 * (2 + 5 + 1) and ops.count('LayerNormalization') == 3 * 5 + 2 + 1
    assert exported_sampling(path)[0] == 'DeformConv'
    _check_runs_like_eager(tiny_model, _ort_run(path), size)


@pytest.mark.parametrize('size', SIZES)
def test_onnx_gridsample_form_matches_eager(tiny_model, tmp_path, size):
    path = export_model(tiny_model, tmp_path / 'tiny.onnx', 'onnx', size, sampling='gridsample')
    ops = _op_types(path)
    assert ops.count('GridSample') == 4 and 'DeformConv' not in ops
    assert not {'Shape', 'Gather', 'Range', 'Identity', 'Constant'} & set(ops), 'grids and shapes are constants'
    assert all(node.domain in ('', 'ai.onnx') for node in pytest.importorskip('onnx').load(str(path)).graph.node)
    operator, reason = exported_sampling(path)
    assert operator == 'GridSample' and reason == 'asked for'
    _check_runs_like_eager(tiny_model, _ort_run(path), size)


@pytest.mark.parametrize('sampling', ['deformconv', 'gridsample'])
def test_dynamic_size_graph_runs_any_size(tiny_model, tmp_path, sampling):
    path = export_model(tiny_model, tmp_path / 'tiny.onnx', 'onnx', (64, 64), sampling=sampling, dynamic_size=True)
    run = _ort_run(path)
    for size in SIZES:  # the export size and another
        _check_runs_like_eager(tiny_model, run, size)


def test_depthwise_convolutions_get_channels_in_multiples_of_four(tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 1), torch.nn.Conv2d(6, 6, 7, padding=3, groups=6),
                                torch.nn.Conv2d(6, 8, 1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    path = export_model(model, tmp_path / 'dw.onnx', 'onnx', (20, 20), dynamic_size=True)
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


def test_tidy_graph_drops_constants_and_identities():
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    nodes = [helper.make_node('Constant', [], ['two'], value=numpy_helper.from_array(np.float32(2.0))),
             helper.make_node('Identity', ['x'], ['x_again']),
             helper.make_node('Mul', ['x_again', 'two'], ['y'])]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [2])])
    model = helper.make_model(graph)
    assert tidy_graph(model) == 2
    assert [(n.op_type, list(n.input)) for n in model.graph.node] == [('Mul', ['x', 'two'])]
    onnx.checker.check_model(model)
    ort = pytest.importorskip('onnxruntime')
    out = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider']).run(
        None, {'x': np.array([1.0, 3.0], np.float32)})[0]
    assert out.tolist() == [2.0, 6.0]


@pytest.mark.parametrize('size', SIZES)
def test_openvino_matches_eager(tiny_model, tmp_path, size):
    """float32 inference precision: within 1e-4 of eager (OpenVINO's default on CPUs with bfloat16 is reported in
    docs/performance.md, not tested)."""
    ov = pytest.importorskip('openvino')
    path = export_model(tiny_model, tmp_path / 'tiny.xml', 'openvino', size, sampling='deformconv')
    assert path.with_suffix('.bin').is_file()
    model = ov.Core().read_model(str(path))
    ops = [op.get_type_name() for op in model.get_ops()]
    assert ops.count('DeformableConvolution') == 4 and 'GridSample' not in ops
    constants = [op for op in model.get_ops() if op.get_type_name() == 'Constant']
    assert constants and not any(op.get_element_type() == ov.Type.f16 for op in constants), 'float32 weights'
    assert exported_sampling(path)[0] == 'DeformConv'
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    _check_runs_like_eager(tiny_model, lambda x: compiled({'images': x})[0], size)


def test_openvino_gridsample_matches_eager(tiny_model, tmp_path):
    """GridSample is what 'auto' picks for OpenVINO (faster there than its reference DeformableConvolution)."""
    ov = pytest.importorskip('openvino')
    path = export_model(tiny_model, tmp_path / 'tiny.xml', 'openvino', (64, 64))
    assert exported_sampling(path) == ('GridSample', OPENVINO_AUTO_REASON)
    ops = [op.get_type_name() for op in ov.Core().read_model(str(path)).get_ops()]
    assert ops.count('GridSample') == 4 and 'DeformableConvolution' not in ops
    # every channel norm as reductions over the channels (OpenVINO's fastest form): no transposes around them, only
    # the one of each sampling (38 with the ONNX form's LayerNormalization norms in this model, 4 without)
    assert ops.count('Transpose') <= ops.count('GridSample')
    compiled = ov.Core().compile_model(str(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    _check_runs_like_eager(tiny_model, lambda x: compiled({'images': x})[0], (64, 64))


def test_auto_sampling_falls_back_to_gridsample(tiny_model, tmp_path, monkeypatch):
    """Where the installed runtime cannot run DeformConv, 'auto' exports GridSample and says why."""
    import uniconvnet.export as export
    assert export.onnxruntime_runs_deformconv() is None  # onnxruntime 1.32 runs it (probed on a one-node graph)
    assert export.choose_sampling('onnx') == ('deformconv', 'the installed onnxruntime runs DeformConv')
    assert export.choose_sampling('onnx', opset=17)[0] == 'gridsample'
    assert export.choose_sampling('openvino') == ('gridsample', OPENVINO_AUTO_REASON)
    monkeypatch.setattr(export, 'onnxruntime_runs_deformconv', lambda: 'onnxruntime 1.16 cannot run DeformConv')
    path = export_model(tiny_model, tmp_path / 'tiny.onnx', 'onnx', (64, 64))
    operator, reason = exported_sampling(path)
    assert operator == 'GridSample'
    assert reason == 'onnxruntime 1.16 cannot run DeformConv: standard operators instead'
    assert 'DeformConv' not in _op_types(path) and pytest.importorskip('onnx').load(str(path)).opset_import[0].version == 17


def test_deformconv_for_openvino_that_cannot_convert_it_is_one_line(tiny_model, tmp_path, monkeypatch):
    import uniconvnet.export as export
    monkeypatch.setattr(export, 'openvino_converts_deformconv', lambda: 'OpenVINO 2023.0 cannot convert DeformConv')
    with pytest.raises(ValueError) as error:
        export_model(tiny_model, tmp_path / 'tiny.xml', 'openvino', (64, 64), sampling='deformconv')
    assert str(error.value) == ('--sampling deformconv: OpenVINO 2023.0 cannot convert DeformConv; '
                                'use --sampling gridsample')
    assert not list(tmp_path.iterdir())


def test_probe_says_why_without_onnxruntime(monkeypatch):
    import uniconvnet.export as export
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # as if it were not installed
    export.onnxruntime_runs_deformconv.cache_clear()
    try:
        assert export.onnxruntime_runs_deformconv() == 'onnxruntime is not installed'
    finally:
        export.onnxruntime_runs_deformconv.cache_clear()


@pytest.mark.slow
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


def test_export_bad_sampling_options(capsys, tmp_path):
    """Every new option answered in one line, before the model is built."""
    out = str(tmp_path / 'm.onnx')
    assert _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--out', out, '--sampling', 'bilinear') == (
        "uniconvnet export: error: unknown DCN sampling 'bilinear' (--sampling); use one of: auto, deformconv, "
        "gridsample")
    assert _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--out', out, '--sampling', 'deformconv',
                      '--opset', '17') == (
        'uniconvnet export: error: DeformConv needs ONNX opset 19 or later, got --opset 17: raise the opset, or use '
        '--sampling gridsample')
    for option in (['--sampling', 'gridsample'], ['--dynamic-size']):
        err = _cli_error(capsys, 'export', '--model', 'uniconvnet_a', '--format', 'torchscript', *option,
                         '--out', str(tmp_path / 'a.ts'))
        assert err.endswith(f'{" ".join(option)} is an option of ONNX and OpenVINO export; torchscript keeps the '
                            f'eager model (shape-generic, its own DCN backend)')
    with pytest.raises(ValueError, match='--sampling deformconv builds the deployment form of a UniConvNet; '
                                         'Sequential is exported as it is, with GridSample'):
        export_model(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), out, 'onnx', (8, 8), sampling='deformconv')


@pytest.mark.slow
def test_export_command_reports_the_sampling(capsys, tmp_path):
    assert main(['export', '--model', 'uniconvnet_a', '--out', str(tmp_path / 'a.onnx'), '--size', '64']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == 'DCN sampling: DeformConv (the installed onnxruntime runs DeformConv)'
    assert main(['export', '--model', 'uniconvnet_a', '--out', str(tmp_path / 'g.onnx'), '--size', '64',
                 '--sampling', 'gridsample']) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == 'DCN sampling: GridSample (asked for)'


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
