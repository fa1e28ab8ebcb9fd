"""Export for deployment: ONNX with standard operators, OpenVINO IR, TorchScript, and ``torch.export`` programs.

All of them run the DCNv3 sampling as standard operators only: in ONNX one ``GridSample`` (opset 16 and later)
per DCN layer, so onnxruntime and other runtimes need no custom plugin. OpenVINO IR is converted by OpenVINO's
own ONNX frontend (optional extra ``openvino``) from an ONNX graph whose sampling arithmetic is arranged for
OpenVINO (the ``export`` DCN backend, :mod:`uniconvnet.ops.dcn.export_backend`), and kept in float32. Batch and
image size stay dynamic in ONNX, OpenVINO IR and ExportedPrograms; TorchScript is shape-generic by construction.
"""
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .checkpoints import model_from_checkpoint
from .io import atomic_write
from .layers import using_dcn_backend
from .models import create_model

__all__ = ['FORMATS', 'export_model', 'export_pretrained', 'pad_depthwise_channels']

FORMATS = ('onnx', 'openvino', 'torchscript', 'exported-program')
# GridSample needs opset 16; the TorchScript-based ONNX exporter we use writes up to opset 20
ONNX_OPSETS = range(16, 21)
# ExportedPrograms keep the size dynamic from 33 pixels: at 32 the last stage is 1x1, a size torch.export
# specialises on
MIN_PROGRAM_SIZE = 33
PathLike = Union[str, os.PathLike]


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f'unsupported export format {format!r}; use one of: {", ".join(FORMATS)}')
    if format == 'openvino':
        _import_openvino()


def _check_options(format: str, image_size: Optional[int], opset: int) -> None:
    """Bad sizes and opsets, named before anything is built."""
    smallest = MIN_PROGRAM_SIZE if format == 'exported-program' else 1
    if image_size is not None and image_size < smallest:
        raise ValueError(f'export image size (--size) must be at least {smallest} for {format}, got {image_size}')
    if format in ('onnx', 'openvino') and opset not in ONNX_OPSETS:
        raise ValueError(f'ONNX opset {opset} is not supported: use {ONNX_OPSETS.start} to {ONNX_OPSETS.stop - 1} '
                         f'(16 is the first with GridSample)')


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


def _export_onnx(model: nn.Module, example: torch.Tensor, path: PathLike, opset: int) -> None:
    import onnx  # torch.onnx.export needs it too
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=opset,
        input_names=['images'], output_names=['logits'],
        dynamic_axes={'images': {0: 'batch', 2: 'height', 3: 'width'}, 'logits': {0: 'batch'}})
    graph = onnx.load(str(path))
    if pad_depthwise_channels(graph):
        onnx.save(graph, str(path))


def pad_depthwise_channels(model: Any, multiple: int = 4) -> int:
    """Give every depthwise ``Conv`` of an ONNX model a channel count that is a multiple of ``multiple``.

    onnxruntime runs a depthwise convolution in its blocked (NCHWc) layout only when the channel count is a
    multiple of 4, and otherwise falls back to a generic path that is several times slower for large kernels
    (UniConvNet-A's 11x11 convolution on 18 channels at 56x56, batch 8: 57 ms, against 9 ms on 20 channels).
    UniConvNet-A's first stage has such convolutions (6 and 18 channels). Each becomes ``Pad`` (zero channels
    appended) -> ``Conv`` with zero-padded weights -> ``Slice`` back to the original channels: the same
    per-channel convolutions, the extra channels computing zeros. Only convolutions whose weights are
    initializers are changed. Returns how many were.
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
        if weight is None or weight.dims[0] != group or weight.dims[1] != 1 or group % multiple == 0:
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


def _export_openvino(model: nn.Module, example: torch.Tensor, out: Path, opset: int) -> Path:
    """ONNX first, then OpenVINO's ONNX frontend; the .bin and then the .xml moved into place."""
    ov = _import_openvino()
    with tempfile.TemporaryDirectory(prefix=f'.{out.stem}.', dir=out.parent) as folder:
        onnx_path, xml_path = Path(folder) / 'model.onnx', Path(folder) / 'model.xml'
        _export_onnx(model, example, onnx_path, opset)
        # float32 weights: save_model would halve them to float16 by default
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
        # OpenVINO reads the .bin named like the .xml: move the weights first, so the .xml never names a missing one
        os.replace(xml_path.with_suffix('.bin'), out.with_suffix('.bin'))
        os.replace(xml_path, out)
    return out


def export_model(
        model: nn.Module,
        out: PathLike,
        format: str = 'onnx',
        image_size: Tuple[int, int] = (224, 224),
        opset: int = 17,
) -> Path:
    """Export ``model`` (put in eval mode) to ``out``, atomically.

    Args:
        format: ``'onnx'``, ``'openvino'`` (an ``.xml`` path; the weights go to the ``.bin`` beside it),
            ``'torchscript'`` or ``'exported-program'`` (:data:`FORMATS`).
        image_size: ``(H, W)`` of the example input used for tracing; the export accepts other sizes.
        opset: ONNX opset (16 or later: GridSample), also for the ONNX graph OpenVINO IR is converted from.

    Returns:
        The path written. ONNX and OpenVINO graphs take ``images`` (N, C, H, W) and return ``logits`` (or
        features).
    """
    _check_format(format)
    _check_options(format, min(image_size), opset)
    out = _check_out(out, format)
    model.eval()
    in_chans = getattr(model, 'in_chans', 3)
    example = torch.randn(1, in_chans, *image_size)
    # the DCN sampling as plain operators; for OpenVINO in the arrangement its CPU plugin runs fastest
    backend = 'export' if format == 'openvino' else 'torch'
    with torch.no_grad(), using_dcn_backend(model, backend), warnings.catch_warnings():
        # the tracer notes that shape checks are constants, and the exporter that strided slices do not
        # fold: both expected here. TorchScript's deprecation notice is for the user of the format.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='Constant folding')
        warnings.filterwarnings('ignore', message='`torch.jit.')
        if format == 'openvino':
            return _export_openvino(model, example, out, opset)
        return atomic_write(out, lambda tmp: _write(model, example, tmp, format, opset))


def _write(model: nn.Module, example: torch.Tensor, tmp: str, format: str, opset: int) -> None:
    """One file of ``format`` at ``tmp`` (the caller renames it into place)."""
    if format == 'onnx':
        _export_onnx(model, example, tmp, opset)
    elif format == 'torchscript':
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
        opset: int = 17,
) -> Path:
    """Create model ``name`` (any timm name), load ``checkpoint`` (official or ours) and export it.

    The class count follows the checkpoint. ``fuse`` folds layer scales and norm affines first
    (:meth:`UniConvNet.fuse`); ``image_size`` defaults to the model's pretrained configuration.
    Bad input fails before anything is built: unknown format, missing output folder, unknown model, a
    checkpoint that does not fit.
    """
    _check_format(format)
    _check_options(format, image_size, opset)
    _check_out(out, format)
    model = model_from_checkpoint(checkpoint, name) if checkpoint is not None else create_model(name)
    if fuse and hasattr(model, 'fuse'):
        model.fuse()
    size = image_size if image_size is not None else model.pretrained_cfg.get('input_size', (3, 224, 224))[-1]
    return export_model(model, out, format, (size, size), opset)
