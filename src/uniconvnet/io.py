"""Files in and out: checkpoints are read safely, every file the package writes is written atomically.

Reading (:func:`load_checkpoint_file`) never unpickles arbitrary objects: a file that needs more than tensors and
plain containers is refused. Writing goes through :func:`atomic_write`: a crash or Ctrl-C while writing leaves the
previous file intact, never a half-written one.
"""
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch

PathLike = Union[str, os.PathLike]

__all__ = ['CheckpointError', 'PathLike', 'atomic_save', 'atomic_write', 'atomic_write_text', 'load_checkpoint_file',
           'save_safetensors']


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if 'global' in line.lower() or 'operand' in line.lower()),
                lines[-1] if lines else type(error).__name__)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the fix in its message."""


def _refusal(path: Path, error: BaseException) -> str:
    """Why an unpickler refused ``path``, and the fix: timm's train.py checkpoints have a command of their own."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # a reader that cannot list them: the generic message
        unsafe = []
    if unsafe == ['argparse.Namespace']:  # what timm's train.py (CheckpointSaver) pickles besides tensors
        return (f'{path} is a checkpoint of timm\'s train.py (it holds the run\'s argparse.Namespace): convert it once '
                f'with `uniconvnet convert {path} OUTPUT_FOLDER` (model.safetensors and config.json), then use '
                f'OUTPUT_FOLDER')
    return (f'refusing to load {path}: it holds Python objects other than tensors, and unpickling them could run '
            f'arbitrary code (weights_only=True refused: {_last_line(error)}). If you trust the file, '
            f'extract its state dict yourself and save it with torch.save(state_dict) or safetensors.')


def load_checkpoint_file(path: PathLike, allowed_globals: Sequence[type] = ()) -> Dict[str, Any]:
    """Read a ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file onto the CPU.

    ``allowed_globals``: classes the unpickler may build besides tensors and plain containers (for example
    ``argparse.Namespace`` in timm's training checkpoints), allowed for this call only.
    """
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
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        if 'global' not in str(e).lower():  # garbage bytes, not a pickle that names callables
            raise CheckpointError(f'could not read checkpoint {path}: it is truncated or not a PyTorch '
                                  f'checkpoint (the unpickler stopped: {_last_line(e)})') from e
        raise CheckpointError(_refusal(path, e)) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f'could not read checkpoint {path}: it is truncated or not a PyTorch checkpoint '
                              f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else "no detail"})') from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The folder must exist (FileNotFoundError naming it otherwise). The file gets the usual permissions of a new
    file; if ``write`` fails, the temporary file is removed and ``path`` is untouched.
    """
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
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write a text file (JSON, JSON lines, Markdown) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding='utf-8'))


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: PathLike,
                     metadata: Optional[Dict[str, str]] = None) -> Path:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
