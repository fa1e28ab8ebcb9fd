"""Safe checkpoint I/O: ``weights_only`` torch files or safetensors in, atomic writes out.

Nothing here unpickles arbitrary objects: a file that needs more than tensors and plain containers is refused.
"""
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

PathLike = Union[str, os.PathLike]

__all__ = ['CheckpointError', 'load_checkpoint_file', 'atomic_save', 'atomic_write_text', 'save_safetensors',
           'load_weights', 'convert_official_checkpoint']


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if 'global' in line.lower() or 'operand' in line.lower()),
                lines[-1] if lines else type(error).__name__)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the fix in its message."""


def load_checkpoint_file(path: PathLike) -> Dict[str, Any]:
    """Read a ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device='cpu')
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f'could not read safetensors file {path}: {e}. Is it truncated?') from e
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        if 'global' not in str(e).lower():  # garbage bytes, not a pickle that names callables
            raise CheckpointError(f'could not read checkpoint {path}: it is truncated or not a PyTorch '
                                  f'checkpoint (the unpickler stopped: {_last_line(e)})') from e
        raise CheckpointError(
            f'refusing to load {path}: it holds Python objects other than tensors, and unpickling them could run '
            f'arbitrary code (weights_only=True refused: {_last_line(e)}). If you trust the file, '
            f'extract its state dict yourself and save it with torch.save(state_dict) or safetensors.') from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f'could not read checkpoint {path}: it is truncated or not a PyTorch checkpoint '
                              f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else "no detail"})') from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: PathLike, write) -> Path:
    """Write through a temporary file in the same folder, then rename: a crash leaves the old file intact."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f'output folder does not exist: {path.parent} (create it first)')
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions of a new file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    return _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write a text file (JSON, JSON lines) atomically."""
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding='utf-8'))


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: PathLike,
                     metadata: Optional[Dict[str, str]] = None) -> Path:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _num_classes_of(state_dict: Dict[str, torch.Tensor]) -> int:
    for key in ('head.fc.weight', 'head.weight'):
        if key in state_dict and state_dict[key].dim() == 2:
            return int(state_dict[key].shape[0])
    return 0


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load an official or our checkpoint into a UniConvNet ``model`` (strict; errors name what does not fit)."""
    from .models.uniconvnet import checkpoint_filter_fn
    state_dict = checkpoint_filter_fn(load_checkpoint_file(path), model)
    head_w = state_dict.get('head.fc.weight')
    model_head = model.state_dict().get('head.fc.weight')
    if (head_w is None) != (model_head is None) or (head_w is not None and head_w.shape != model_head.shape):
        got = 0 if head_w is None else head_w.shape[0]
        want = 0 if model_head is None else model_head.shape[0]
        raise CheckpointError(f'{path} has a {got}-class head but the model has {want} classes; create the model '
                              f'with num_classes={got}, or fine-tune to re-initialise the head')
    model.load_state_dict(state_dict)
    return model


def convert_official_checkpoint(src: PathLike, dst: PathLike, model_name: str) -> Path:
    """Convert an official UniConvNet ``.pth`` into our layout as safetensors.

    Refuses, naming the keys, when anything in the checkpoint is left over or missing, or when shapes do not
    match ``model_name`` (then it names the variant the checkpoint is for).
    """
    from . import create_model
    from .models.uniconvnet import checkpoint_filter_fn, unwrap_state_dict
    state_dict = unwrap_state_dict(load_checkpoint_file(src))
    model = create_model(model_name, num_classes=_num_classes_of(state_dict), device='meta')
    converted = checkpoint_filter_fn(state_dict, model)
    expected = set(model.state_dict())
    leftover, missing = sorted(set(converted) - expected), sorted(expected - set(converted))
    if leftover or missing:
        raise CheckpointError(f'{src} does not convert cleanly to {model_name}: left over {leftover[:10]}, '
                              f'missing {missing[:10]}')
    return save_safetensors(converted, dst, metadata={'model': model_name, 'source': Path(src).name})
