"""Export for deployment: ONNX with standard operators, TorchScript, and ``torch.export`` ExportedPrograms.

All three use the reference DCNv3 core, made of standard operators only: in ONNX the sampling is one
``GridSample`` (opset 16 and later) per DCN layer, so onnxruntime and other runtimes need no custom plugin. Batch
and image size stay dynamic in ONNX and ExportedPrograms; TorchScript is shape-generic by construction.
"""
import os
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from .checkpoints import load_weights, num_classes_of
from .io import atomic_write, load_checkpoint_file
from .layers import dcn_backend
from .models import create_model, unwrap_state_dict

__all__ = ['FORMATS', 'export_model', 'export_pretrained']

FORMATS = ('onnx', 'torchscript', 'exported-program')
PathLike = Union[str, os.PathLike]


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f'unsupported export format {format!r}; use one of: {", ".join(FORMATS)}')


def _check_out(out: PathLike) -> Path:
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f'output folder does not exist: {out.parent} (create it first)')
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
        format: ``'onnx'``, ``'torchscript'`` or ``'exported-program'`` (:data:`FORMATS`).
        image_size: ``(H, W)`` of the example input used for tracing; the export accepts other sizes.
        opset: ONNX opset (16 or later: GridSample).

    Returns:
        The path written. ONNX graphs take ``images`` (N, C, H, W) and return ``logits`` (or features).
    """
    _check_format(format)
    if format == 'onnx' and opset < 16:
        raise ValueError(f'ONNX opset {opset} has no GridSample; use opset 16 or later')
    out = _check_out(out)
    model.eval()
    in_chans = getattr(model, 'in_chans', 3)
    example = torch.randn(1, in_chans, *image_size)

    def write(tmp: str) -> None:
        with torch.no_grad(), dcn_backend(model, 'torch'), warnings.catch_warnings():
            # the tracer notes that shape checks are constants, and the exporter that strided slices do not
            # fold: both expected here. TorchScript's deprecation notice is for the user of the format.
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            warnings.filterwarnings('ignore', message='Constant folding')
            warnings.filterwarnings('ignore', message='`torch.jit.')
            if format == 'onnx':
                torch.onnx.export(
                    model, (example,), tmp, dynamo=False, opset_version=opset,
                    input_names=['images'], output_names=['logits'],
                    dynamic_axes={'images': {0: 'batch', 2: 'height', 3: 'width'}, 'logits': {0: 'batch'}})
            elif format == 'torchscript':
                torch.jit.save(torch.jit.script(model), tmp)
            else:
                batch = torch.export.Dim('batch', min=1, max=4096)
                # from 33 pixels: at 32 the last stage is 1x1, a size that torch.export specialises on
                height = torch.export.Dim('height', min=33, max=8192)
                width = torch.export.Dim('width', min=33, max=8192)
                program = torch.export.export(model, (torch.randn(2, in_chans, *image_size),),
                                              dynamic_shapes=({0: batch, 2: height, 3: width},))
                torch.export.save(program, tmp)

    return atomic_write(out, write)


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
    _check_out(out)
    kwargs = {}
    state_dict = None
    if checkpoint is not None:
        state_dict = unwrap_state_dict(load_checkpoint_file(checkpoint))
        num_classes = num_classes_of(state_dict)
        if num_classes:
            kwargs['num_classes'] = num_classes
    model = create_model(name, **kwargs)
    if state_dict is not None:
        load_weights(model, state_dict, source=str(checkpoint))
    if fuse and hasattr(model, 'fuse'):
        model.fuse()
    size = image_size or model.pretrained_cfg.get('input_size', (3, 224, 224))[-1]
    return export_model(model, out, format, (size, size), opset)
