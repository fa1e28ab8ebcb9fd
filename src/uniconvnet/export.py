"""Export for deployment: ONNX, OpenVINO IR, TorchScript, and ``torch.export`` programs.

ONNX and OpenVINO IR of a UniConvNet are traced from its deployment form (:mod:`uniconvnet.deploy`: NCHW, folded
weights, no splits), with the DCN sampling as the runtime's own operator where it has one (``sampling``):

* ``'deformconv'``: one standard ``DeformConv`` (opset 19) per DCN layer, which onnxruntime runs; for OpenVINO,
  whose ONNX reader has no ``DeformConv``, the conversion turns each into OpenVINO's own
  ``DeformableConvolution`` (opset 8, zero padding at the borders), so the IR needs no extension;
* ``'gridsample'``: standard operators only (one ``GridSample`` per DCN layer, opset 16 and later), the fallback
  for runtimes without ``DeformConv``, and OpenVINO's fastest form (its depthwise ``DeformableConvolution`` has
  only a reference kernel);
* ``'auto'`` (default): for ONNX, ``'deformconv'`` where the installed onnxruntime runs it (a one-node graph is
  tried once), else ``'gridsample'``; for OpenVINO, ``'gridsample'``. The choice and its
  reason are written into the file (ONNX metadata ``uniconvnet.dcn_sampling``, OpenVINO ``rt_info``) and
  returned by :func:`choose_sampling`, which the command line prints.

The image size is fixed by default (``dynamic_size=False``): shapes and sampling grids fold to constants, which
the runtimes compile best; the batch stays dynamic. Other modules (a detector holding DCNv3 layers) are traced as
they are, with the sampling as ``GridSample``. OpenVINO IR is kept in float32 weights. TorchScript and
ExportedPrograms hold the eager model, shape-generic.
"""
import functools
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .checkpoints import model_from_checkpoint
from . import deploy
from .deploy import deploy_form
from .io import atomic_write
from .layers import using_dcn_backend
from .models import create_model
from .models.uniconvnet import UniConvNet
from .ops.dcn.nchw import DEFORM_CONV_OPSET

__all__ = ['FORMATS', 'SAMPLINGS', 'choose_sampling', 'export_model', 'export_pretrained', 'exported_sampling',
           'onnxruntime_runs_deformconv', 'openvino_converts_deformconv', 'pad_depthwise_channels', 'tidy_graph']

FORMATS = ('onnx', 'openvino', 'torchscript', 'exported-program')
SAMPLINGS = ('auto', 'deformconv', 'gridsample')
# GridSample needs opset 16; the TorchScript-based ONNX exporter we use writes up to opset 20
ONNX_OPSETS = range(16, 21)
# opsets when none is asked for: DeformConv needs 19, and 20 writes GELU as one node; the GridSample fallback is for
# runtimes without DeformConv, so it keeps the widely read opset 17 (LayerNormalization)
DEFAULT_OPSETS = {'deformconv': 20, 'gridsample': 17}
# the ONNX metadata key (and OpenVINO rt_info path) naming the DCN sampling operator of an exported graph
SAMPLING_KEY = 'uniconvnet.dcn_sampling'
# OpenVINO 2026.4's CPU plugin runs DeformableConvolution with its reference (scalar) kernel when group > 1, which a
# depthwise sampling is: measured on 2 cores, the GridSample form of A and N0 runs 10-20% faster at batch 1 and 8
# in both precisions (benchmarks/runtimes_cpu.py --sampling; docs/performance.md)
OPENVINO_AUTO_REASON = ('OpenVINO runs GridSample faster than its DeformableConvolution, whose depthwise (grouped) '
                        'form has only a reference kernel')
# the deployment form's channel norms as reductions up to this stride, as LayerNormalization after (see
# uniconvnet.deploy.REDUCTION_NORMS_UP_TO_STRIDE): what measured fastest in each runtime
REDUCTION_NORMS_UP_TO_STRIDE = {'onnx': deploy.REDUCTION_NORMS_UP_TO_STRIDE, 'openvino': math.inf}
# ExportedPrograms keep the size dynamic from 33 pixels: at 32 the last stage is 1x1, a size torch.export
# specialises on
MIN_PROGRAM_SIZE = 33
PathLike = Union[str, os.PathLike]


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f'unsupported export format {format!r}; use one of: {", ".join(FORMATS)}')
    if format == 'openvino':
        _import_openvino()


def _check_options(format: str, image_size: Optional[int], opset: Optional[int], sampling: str,
                   dynamic_size: bool) -> None:
    """Bad sizes, opsets and sampling choices, named before anything is built."""
    smallest = MIN_PROGRAM_SIZE if format == 'exported-program' else 1
    if image_size is not None and image_size < smallest:
        raise ValueError(f'export image size (--size) must be at least {smallest} for {format}, got {image_size}')
    if sampling not in SAMPLINGS:
        raise ValueError(f'unknown DCN sampling {sampling!r} (--sampling); use one of: {", ".join(SAMPLINGS)}')
    graph_format = format in ('onnx', 'openvino')
    if not graph_format and (sampling != 'auto' or dynamic_size):
        option = f'--sampling {sampling}' if sampling != 'auto' else '--dynamic-size'
        raise ValueError(f'{option} is an option of ONNX and OpenVINO export; {format} keeps the eager model '
                         f'(shape-generic, its own DCN backend)')
    if graph_format and opset is not None:
        if opset not in ONNX_OPSETS:
            raise ValueError(f'ONNX opset {opset} is not supported: use {ONNX_OPSETS.start} to '
                             f'{ONNX_OPSETS.stop - 1} (16 is the first with GridSample)')
        if sampling == 'deformconv' and opset < DEFORM_CONV_OPSET:
            raise ValueError(f'DeformConv needs ONNX opset {DEFORM_CONV_OPSET} or later, got --opset {opset}: '
                             f'raise the opset, or use --sampling gridsample')


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ImportError('OpenVINO export needs the openvino package: pip install "uniconvnet[openvino]" '
                          '(or pip install openvino)') from None
    return openvino


def _check_out(out: PathLike, format: str) -> Path:
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f'output folder does not exist: {out.parent} (create it first)')
    if format == 'openvino' and out.suffix != '.xml':
        raise ValueError(f'OpenVINO IR is an .xml file with its weights in a .bin beside it: name the output '
                         f'{out.stem}.xml, not {out.name}')
    return out


# ---- which DCN sampling operator: probes of the installed runtimes -----------------------------------------------

def _one_deformconv_graph() -> Tuple[Any, Dict[str, np.ndarray], np.ndarray]:
    """A one-node ``DeformConv`` model (2 offset groups, mask), its inputs, and the output it must give.

    Zero offsets and a mask of ones make it a 3x3 box sum with zero padding, whose value is known exactly.
    """
    from onnx import TensorProto, helper, numpy_helper
    channels, size = 4, 5
    x = np.arange(channels * size * size, dtype=np.float32).reshape(1, channels, size, size) / 10
    inputs = {'x': x, 'offset': np.zeros((1, 2 * 9 * 2, size, size), np.float32),
              'mask': np.ones((1, 2 * 9, size, size), np.float32)}
    node = helper.make_node('DeformConv', ['x', 'weight', 'offset', '', 'mask'], ['y'], group=channels,
                            offset_group=2, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], 'deformconv_probe',
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape) for name, value in inputs.items()],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((channels, 1, 3, 3), np.float32), 'weight')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', DEFORM_CONV_OPSET)])
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(padded[..., i:i + size, j:j + size] for i in range(3) for j in range(3))
    return model, inputs, expected


@functools.lru_cache(maxsize=None)
def onnxruntime_runs_deformconv() -> Optional[str]:
    """None if the installed onnxruntime runs ONNX ``DeformConv`` correctly (a one-node graph, checked against its
    known output), else the reason it does not. Asked once per process."""
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as e:
        return f'{e.name} is not installed'
    model, inputs, expected = _one_deformconv_graph()
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
        out = session.run(None, inputs)[0]
    except Exception as e:  # any failure to load or run means: not usable here
        return f'onnxruntime {ort.__version__} cannot run DeformConv ({type(e).__name__})'
    if out.shape != expected.shape or not np.allclose(out, expected, atol=1e-4):
        return f'onnxruntime {ort.__version__} gives wrong DeformConv results'
    return None


def _deformconv_to_openvino(node: Any) -> list:
    """ONNX ``DeformConv`` as OpenVINO's ``DeformableConvolution`` (opset 8): a conversion rule for OpenVINO's
    ONNX frontend, which has none for it.

    ``bilinear_interpolation_pad=True`` is ONNX's border rule (samples outside the image read zeros, a sample
    within one pixel of the border interpolates with them); OpenVINO's other rule clamps. The bias, an input of
    its own in ONNX, is added after.
    """
    from openvino import opset1, opset8

    inputs = [node.get_input(i) for i in range(node.get_input_size())]
    attribute = lambda name, default: node.get_attribute(name) if node.has_attribute(name) else default  # noqa: E731
    kernel_dims = len(attribute('kernel_shape', [0, 0]))
    pads = attribute('pads', [0] * 2 * kernel_dims)
    out = opset8.deformable_convolution(
        inputs[0], inputs[2], inputs[1],
        strides=attribute('strides', [1] * kernel_dims), pads_begin=pads[:kernel_dims], pads_end=pads[kernel_dims:],
        dilations=attribute('dilations', [1] * kernel_dims), mask=inputs[4] if len(inputs) > 4 else None,
        group=attribute('group', 1), deformable_group=attribute('offset_group', 1),
        bilinear_interpolation_pad=True)
    if len(inputs) > 3 and inputs[3].get_partial_shape().rank.is_static:  # an empty optional input has no rank
        bias_shape = opset1.constant(np.array([1, -1] + [1] * kernel_dims, dtype=np.int64))
        out = opset1.add(out, opset1.reshape(inputs[3], bias_shape, special_zero=False))
    return [out.output(0)]


def _convert_to_openvino(onnx_path: PathLike) -> Any:
    """OpenVINO's model of an ONNX file, ``DeformConv`` nodes converted by :func:`_deformconv_to_openvino`."""
    ov = _import_openvino()
    from openvino.frontend.onnx import ConversionExtension
    return ov.convert_model(str(onnx_path), extension=[ConversionExtension('DeformConv', _deformconv_to_openvino)])


@functools.lru_cache(maxsize=None)
def openvino_converts_deformconv() -> Optional[str]:
    """None if the installed OpenVINO converts and runs ONNX ``DeformConv`` correctly (a one-node graph, through
    :func:`_deformconv_to_openvino`), else the reason it does not. Asked once per process."""
    try:
        import onnx
        ov = _import_openvino()
    except ImportError as e:
        return str(e) if 'openvino' in str(e) else f'{e.name} is not installed'
    model, inputs, expected = _one_deformconv_graph()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / 'deformconv.onnx'
        onnx.save(model, str(path))
        try:
            compiled = ov.Core().compile_model(_convert_to_openvino(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
            out = compiled(inputs)[0]
        except Exception as e:  # any failure to convert or run means: not usable here
            return f'OpenVINO {ov.__version__} cannot convert DeformConv ({type(e).__name__})'
    if out.shape != expected.shape or not np.allclose(out, expected, atol=1e-4):
        return f'OpenVINO {ov.__version__} gives wrong DeformConv results'
    return None


def choose_sampling(format: str, sampling: str = 'auto', opset: Optional[int] = None) -> Tuple[str, str]:
    """The DCN sampling operator a UniConvNet export to ``format`` gets, and why: ``(name, reason)``.

    ``sampling='auto'`` takes, for ONNX, ``'deformconv'`` where the installed onnxruntime runs it (tried once per
    process on a one-node graph) and the opset allows it, else ``'gridsample'``; for OpenVINO IR always
    ``'gridsample'``, which OpenVINO runs faster (:data:`OPENVINO_AUTO_REASON`). An explicit choice is kept.
    """
    if sampling != 'auto':
        why_not = openvino_converts_deformconv() if (format, sampling) == ('openvino', 'deformconv') else None
        if why_not:
            raise ValueError(f'--sampling deformconv: {why_not}; use --sampling gridsample')
        return sampling, 'asked for'
    if format == 'openvino':
        return 'gridsample', OPENVINO_AUTO_REASON
    if opset is not None and opset < DEFORM_CONV_OPSET:
        return 'gridsample', f'ONNX opset {opset} has no DeformConv (it needs {DEFORM_CONV_OPSET})'
    reason = onnxruntime_runs_deformconv()
    if reason is None:
        return 'deformconv', 'the installed onnxruntime runs DeformConv'
    return 'gridsample', f'{reason}: standard operators instead'


# ---- ONNX graphs --------------------------------------------------------------------------------------------------

def tidy_graph(model: Any) -> int:
    """Take ``Constant`` nodes into initializers and drop ``Identity`` nodes (the exporter writes one per reused
    weight): the same graph with fewer nodes. Returns how many nodes went."""
    from onnx import numpy_helper
    graph = model.graph
    outputs = {o.name for o in graph.output}
    renamed: Dict[str, str] = {}
    kept = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == 'value'), None) if node.op_type == 'Constant' else None
        if value is not None and node.output[0] not in outputs:
            initializer = numpy_helper.from_array(numpy_helper.to_array(value), node.output[0])
            graph.initializer.append(initializer)
        elif node.op_type == 'Identity' and node.output[0] not in outputs:
            renamed[node.output[0]] = renamed.get(node.input[0], node.input[0])
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    removed = len(graph.node) - len(kept)
    del graph.node[:]
    graph.node.extend(kept)
    return removed


def _export_onnx(model: nn.Module, example: torch.Tensor, path: PathLike, opset: int, dynamic_size: bool,
                 metadata: Optional[Dict[str, str]] = None) -> None:
    import onnx  # torch.onnx.export needs it too
    image_axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic_size else {0: 'batch'}
    # autograd_inlining=False: the sampling functions export through their own symbolic (DeformConv), and
    # inlining their eager forward breaks the exporter's peephole pass
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=opset, autograd_inlining=False,
        input_names=['images'], output_names=['logits'],
        dynamic_axes={'images': image_axes, 'logits': {0: 'batch'}})
    graph = onnx.load(str(path))
    tidy_graph(graph)
    pad_depthwise_channels(graph)
    for key, value in (metadata or {}).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def pad_depthwise_channels(model: Any, multiple: int = 4, min_kernel: int = 5) -> int:
    """Give every depthwise ``Conv`` of an ONNX model a channel count that is a multiple of ``multiple``.

    onnxruntime runs a depthwise convolution in its blocked (NCHWc) layout only when the channel count is a
    multiple of 4, and otherwise falls back to a generic path that is several times slower for large kernels
    (UniConvNet-A's 11x11 convolution on 18 channels at 56x56, batch 8: 57 ms, against 9 ms on 20 channels).
    UniConvNet-A's first stage has such convolutions (6 and 18 channels). Each becomes ``Pad`` (zero channels
    appended) -> ``Conv`` with zero-padded weights -> ``Slice`` back to the original channels: the same
    per-channel convolutions, the extra channels computing zeros. Only kernels of ``min_kernel`` and more are
    changed (a 3x3 one gains less than the two extra nodes cost), and only convolutions whose weights are
    initializers. Returns how many were.
    """
    import onnx
    from onnx import helper, numpy_helper
    initializers = {init.name: init for init in model.graph.initializer}
    nodes = []
    replaced = set()  # names of the weights and biases the padded ones replace
    changed = 0
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == 'Conv' and len(node.input) > 1 else None
        group = next((a.i for a in node.attribute if a.name == 'group'), 1)
        if (weight is None or weight.dims[0] != group or weight.dims[1] != 1 or group % multiple == 0
                or max(weight.dims[2:]) < min_kernel):
            nodes.append(node)
            continue
        channels, padded = group, -(-group // multiple) * multiple
        prefix = f'{node.name or node.output[0]}_padded'
        pad_rows = [(0, padded - channels)] + [(0, 0)] * (len(weight.dims) - 1)
        new_weight = numpy_helper.from_array(np.pad(numpy_helper.to_array(weight), pad_rows), f'{prefix}_weight')
        inputs = [f'{prefix}_input', new_weight.name]
        model.graph.initializer.append(new_weight)
        replaced.update(node.input[1:])
        if len(node.input) > 2 and node.input[2] in initializers:
            bias = np.pad(numpy_helper.to_array(initializers[node.input[2]]), (0, padded - channels))
            model.graph.initializer.append(numpy_helper.from_array(bias, f'{prefix}_bias'))
            inputs.append(f'{prefix}_bias')
        # pads: begin then end of every axis of the (N, C, H, W) input; only C's end grows
        pads = np.zeros(2 * len(weight.dims), dtype=np.int64)
        pads[len(weight.dims) + 1] = padded - channels
        model.graph.initializer.extend([
            numpy_helper.from_array(pads, f'{prefix}_pads'),
            numpy_helper.from_array(np.array([0], dtype=np.int64), f'{prefix}_start'),
            numpy_helper.from_array(np.array([channels], dtype=np.int64), f'{prefix}_end'),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f'{prefix}_axis'),
        ])
        conv = helper.make_node('Conv', inputs, [f'{prefix}_output'], name=f'{prefix}_conv')
        conv.attribute.extend(a for a in node.attribute if a.name != 'group')
        conv.attribute.append(helper.make_attribute('group', padded))
        nodes += [helper.make_node('Pad', [node.input[0], f'{prefix}_pads'], [f'{prefix}_input'], name=f'{prefix}_pad'),
                  conv,
                  helper.make_node('Slice', [f'{prefix}_output', f'{prefix}_start', f'{prefix}_end', f'{prefix}_axis'],
                                   [node.output[0]], name=f'{prefix}_slice')]
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        kept = [init for init in model.graph.initializer if init.name in used or init.name not in replaced]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        onnx.checker.check_model(model)
    return changed


def _export_openvino(model: nn.Module, example: torch.Tensor, out: Path, opset: int, dynamic_size: bool,
                     metadata: Dict[str, str]) -> Path:
    """ONNX first, then OpenVINO's ONNX frontend; the .bin and then the .xml moved into place."""
    ov = _import_openvino()
    with tempfile.TemporaryDirectory(prefix=f'.{out.stem}.', dir=out.parent) as folder:
        onnx_path, xml_path = Path(folder) / 'model.onnx', Path(folder) / 'model.xml'
        _export_onnx(model, example, onnx_path, opset, dynamic_size)
        converted = _convert_to_openvino(onnx_path)
        for key, value in metadata.items():
            converted.set_rt_info(value, key.split('.'))
        # float32 weights: save_model would halve them to float16 by default
        ov.save_model(converted, str(xml_path), compress_to_fp16=False)
        # OpenVINO reads the .bin named like the .xml: move the weights first, so the .xml never names a missing one
        os.replace(xml_path.with_suffix('.bin'), out.with_suffix('.bin'))
        os.replace(xml_path, out)
    return out


def export_model(
        model: nn.Module,
        out: PathLike,
        format: str = 'onnx',
        image_size: Tuple[int, int] = (224, 224),
        opset: Optional[int] = None,
        sampling: str = 'auto',
        dynamic_size: bool = False,
) -> Path:
    """Export ``model`` (put in eval mode) to ``out``, atomically.

    Args:
        format: ``'onnx'``, ``'openvino'`` (an ``.xml`` path; the weights go to the ``.bin`` beside it),
            ``'torchscript'`` or ``'exported-program'`` (:data:`FORMATS`).
        image_size: ``(H, W)`` of the images the graph takes (ONNX, OpenVINO; with ``dynamic_size`` the example
            size for tracing), or of the example input (TorchScript, ExportedProgram: any size after).
        opset: ONNX opset, also for the graph OpenVINO IR is converted from; None: 20 for the DeformConv form
            (19 is the first with DeformConv, 20 has GELU as one node), 17 otherwise.
        sampling: the DCN sampling operator of a UniConvNet in ONNX and OpenVINO: ``'auto'``, ``'deformconv'`` or
            ``'gridsample'`` (see the module docstring and :func:`choose_sampling`).
        dynamic_size: ONNX and OpenVINO graphs that take any image size (slower to run); the batch is always
            dynamic.

    Returns:
        The path written. ONNX and OpenVINO graphs take ``images`` (N, C, H, W) and return ``logits`` (or
        features).
    """
    _check_format(format)
    _check_options(format, min(image_size), opset, sampling, dynamic_size)
    out = _check_out(out, format)
    model.eval()
    in_chans = getattr(model, 'in_chans', 3)
    example = torch.randn(1, in_chans, *image_size)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer notes that shape checks and fixed sizes are constants, and the exporter that strided slices
        # do not fold: both expected here. TorchScript's deprecation notice is for the user of the format.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='Constant folding')
        warnings.filterwarnings('ignore', message='`torch.jit.')
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', message='The feature will be removed')
        if format in ('torchscript', 'exported-program'):
            return atomic_write(out, lambda tmp: _write_program(model, example, tmp, format))
        if isinstance(model, UniConvNet):
            chosen, reason = choose_sampling(format, sampling, opset)
            graph = deploy_form(model, chosen, dynamic_size, REDUCTION_NORMS_UP_TO_STRIDE[format])
        elif sampling == 'deformconv':
            raise ValueError(f'--sampling deformconv builds the deployment form of a UniConvNet; '
                             f'{type(model).__name__} is exported as it is, with GridSample')
        else:
            chosen, reason = 'gridsample', f'{type(model).__name__} is exported as it is'
            graph = model
        opset = DEFAULT_OPSETS[chosen] if opset is None else opset
        metadata = {SAMPLING_KEY: {'deformconv': 'DeformConv', 'gridsample': 'GridSample'}[chosen],
                    f'{SAMPLING_KEY}_reason': reason}
        # a module exported as it is: its DCN layers with the plain-operator core, arranged for OpenVINO there
        backend = 'export' if format == 'openvino' else 'torch'
        with using_dcn_backend(graph, backend):
            if format == 'openvino':
                return _export_openvino(graph, example, out, opset, dynamic_size, metadata)
            return atomic_write(out, lambda tmp: _export_onnx(graph, example, tmp, opset, dynamic_size, metadata))


def exported_sampling(path: PathLike) -> Tuple[Optional[str], Optional[str]]:
    """The DCN sampling operator recorded in an exported ONNX (``.onnx``) or OpenVINO (``.xml``) file and the
    reason it was chosen: ``('DeformConv', reason)``, ``('GridSample', reason)``, or Nones for a file without the
    record."""
    path = Path(path)
    keys = (SAMPLING_KEY, f'{SAMPLING_KEY}_reason')
    if path.suffix == '.xml':
        model = _import_openvino().Core().read_model(str(path))
        found = [model.get_rt_info(k.split('.')).astype(str) if model.has_rt_info(k.split('.')) else None
                 for k in keys]
    else:
        import onnx
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        found = [props.get(k) for k in keys]
    return found[0], found[1]


def _write_program(model: nn.Module, example: torch.Tensor, tmp: str, format: str) -> None:
    """TorchScript or an ExportedProgram of the eager model at ``tmp`` (the caller renames it into place)."""
    if format == 'torchscript':
        torch.jit.save(torch.jit.script(model), tmp)
    else:
        batch = torch.export.Dim('batch', min=1, max=4096)
        height = torch.export.Dim('height', min=MIN_PROGRAM_SIZE, max=8192)
        width = torch.export.Dim('width', min=MIN_PROGRAM_SIZE, max=8192)
        program = torch.export.export(model, (example.repeat(2, 1, 1, 1),),
                                      dynamic_shapes=({0: batch, 2: height, 3: width},))
        torch.export.save(program, tmp)


def export_pretrained(
        name: str,
        out: PathLike,
        format: str = 'onnx',
        checkpoint: Optional[PathLike] = None,
        fuse: bool = True,
        image_size: Optional[int] = None,
        opset: Optional[int] = None,
        sampling: str = 'auto',
        dynamic_size: bool = False,
) -> Path:
    """Create model ``name`` (any timm name), load ``checkpoint`` (official or ours) and export it.

    The class count follows the checkpoint. ``fuse`` folds layer scales and norm affines first
    (:meth:`UniConvNet.fuse`; the ONNX and OpenVINO forms of a UniConvNet always fold them); ``image_size``
    defaults to the model's pretrained configuration; the other options are :func:`export_model`'s.
    Bad input fails before anything is built: unknown format, bad option, missing output folder, unknown model, a
    checkpoint that does not fit.
    """
    _check_format(format)
    _check_options(format, image_size, opset, sampling, dynamic_size)
    _check_out(out, format)
    model = model_from_checkpoint(checkpoint, name) if checkpoint is not None else create_model(name)
    if fuse and hasattr(model, 'fuse'):
        model.fuse()
    size = image_size if image_size is not None else model.pretrained_cfg.get('input_size', (3, 224, 224))[-1]
    return export_model(model, out, format, (size, size), opset, sampling, dynamic_size)
