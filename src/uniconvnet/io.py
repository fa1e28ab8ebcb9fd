"""Files in and out: checkpoints are read safely, every file the package writes is written atomically.

Reading (:func:`load_checkpoint_file`) never unpickles arbitrary objects: a file that needs more than tensors and
plain containers is refused. Writing goes through :func:`atomic_write`: a crash or Ctrl-C while writing leaves the
previous file intact, never a half-written one.
"""
import errno
import io
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

PathLike = Union[str, os.PathLike]

__all__ = ['CheckpointError', 'OutOfSpaceError', 'PathLike', 'atomic_save', 'atomic_save_image', 'atomic_write',
           'atomic_write_text',
           'load_checkpoint_file', 'load_weights', 'num_classes_of', 'out_of_space_errno', 'save_safetensors',
           'serialized_size', 'unwrap_state_dict']


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


def unwrap_state_dict(checkpoint: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The weights inside a checkpoint dict: under 'model', 'model_ema', 'state_dict' or bare; no 'module.'."""
    state_dict = checkpoint
    for key in ('model', 'model_ema', 'state_dict', 'state_dict_ema'):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError('not a UniConvNet checkpoint: expected a dict of tensors, or one under "model", '
                         '"model_ema" or "state_dict"')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


def num_classes_of(state_dict: Mapping[str, torch.Tensor], classifier: Optional[str] = None) -> int:
    """Class count of a state dict: rows of its classifier (``classifier``, e.g. timm's ``pretrained_cfg``
    name ``'fc'``, else a UniConvNet's, ours or official), 0 without one."""
    names = ((classifier,) if classifier else ()) + ('head.fc', 'head')
    for key in (f'{name}.weight' for name in names):
        if key in state_dict and state_dict[key].dim() == 2:
            return int(state_dict[key].shape[0])
    return 0


def _model_label(model: nn.Module) -> str:
    return (getattr(model, 'pretrained_cfg', None) or {}).get('architecture') or type(model).__name__


def _classifier_prefix(model: nn.Module) -> Optional[str]:
    """``'head.fc.'`` and the like: where ``model``'s classifier weights live, None for a model without one."""
    get_classifier = getattr(model, 'get_classifier', None)
    if get_classifier is None:
        return None
    classifier = get_classifier()
    return next((name + '.' for name, module in model.named_modules() if module is classifier and name), None)


def _rows(weights: Dict[str, torch.Tensor], prefix: str) -> int:
    return next((int(v.shape[0]) for k, v in weights.items() if k.startswith(prefix) and v.dim() == 2), 0)


def _fit_classifier(state_dict: Dict[str, torch.Tensor], model: nn.Module, source: str, reset_head: bool,
                    log: Callable[[str], None]) -> Dict[str, torch.Tensor]:
    """The state dict with the classifier checked: a head of another class count is an error, or dropped."""
    prefix = _classifier_prefix(model)
    if prefix is None:
        return state_dict
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    given = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    if given.keys() == expected.keys() and all(v.shape == expected[k].shape for k, v in given.items()):
        return state_dict
    got, want = _rows(given, prefix), _rows(expected, prefix)
    if got == want:  # same class count, other features: the body does not fit either, reported by the loader
        return state_dict
    if not reset_head:
        raise CheckpointError(f'{source} has a {got}-class head but the model has {want} classes; create the model '
                              f'with num_classes={got}, or fine-tune to re-initialise the head')
    log(f'{source} has a {got or "different"}-class head and the model has {want} classes: the head is '
        f're-initialised')
    return {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


def _adapt_first_conv(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """A first convolution trained on another number of input channels, adapted as timm does for pretrained."""
    from timm.models import adapt_input_conv
    first_conv = (getattr(model, 'pretrained_cfg', None) or {}).get('first_conv')
    key = f'{first_conv}.weight'
    want = model.state_dict().get(key)
    have = state_dict.get(key)
    if want is None or have is None or have.dim() != 4 or have.shape[1] == want.shape[1]:
        return state_dict
    return dict(state_dict, **{key: adapt_input_conv(want.shape[1], have)})


def _first_reason(error: RuntimeError) -> str:
    """The first detail line of a ``load_state_dict`` error (its first line only names the class)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[1] if len(lines) > 1 else (lines[0] if lines else 'no detail')
    return reason if len(reason) <= 300 else reason[:300] + ' ...'


def load_weights(model: nn.Module, checkpoint: Union[PathLike, Mapping[str, Any]], *, reset_head: bool = False,
                 source: Optional[str] = None, log: Callable[[str], None] = print) -> nn.Module:
    """Load a checkpoint into ``model``: the one way weights are loaded in this package.

    Args:
        model: any ``nn.Module``. A model with a ``filter_checkpoint(state_dict)`` method has the weights passed
            through it first: a UniConvNet takes the official key layout or ours, and names the variant a checkpoint
            of another one is for.
        checkpoint: a ``.pt``/``.pth``/``.safetensors`` file (read safely, see :func:`load_checkpoint_file`) or
            what one holds. Weights under ``'model'``, ``'model_ema'`` or ``'state_dict'`` and ``module.``
            prefixes are unwrapped.
        reset_head: when the checkpoint's classifier has another class count, drop it and keep the model's
            freshly initialised head (fine-tuning) instead of failing.
        source: how messages name the checkpoint (default: its path).
        log: where the note about a re-initialised head goes.

    Anything else that does not fit fails with a :class:`CheckpointError` (a ``ValueError``) naming the
    checkpoint, the model and the first misfit. A first convolution trained on another number of input channels is adapted as timm does.
    """
    source = source or str(checkpoint if not isinstance(checkpoint, Mapping) else 'the checkpoint')
    state_dict = unwrap_state_dict(checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint_file(checkpoint))
    filter_checkpoint = getattr(model, 'filter_checkpoint', None)
    if callable(filter_checkpoint):  # e.g. UniConvNet: official key names, shapes checked against the variant
        state_dict = filter_checkpoint(state_dict)
    state_dict = _fit_classifier(state_dict, model, source, reset_head, log)
    state_dict = _adapt_first_conv(state_dict, model)
    prefix = _classifier_prefix(model) if reset_head else None
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=prefix is None)
    except RuntimeError as e:
        raise CheckpointError(f'{source} does not fit {_model_label(model)}: {_first_reason(e)}') from e
    missing = [k for k in missing if prefix is None or not k.startswith(prefix)]
    if missing or unexpected:
        raise CheckpointError(f'{source} does not fit {_model_label(model)}: missing {missing[:5]}, '
                              f'unexpected {list(unexpected)[:5]}')
    return model


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# errno values that mean "no room to write": no space on the device, over a quota, over the file size limit
_OUT_OF_SPACE = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'the disk quota is exceeded',
                 errno.EFBIG: 'the file size limit is reached (ulimit -f)'}


class OutOfSpaceError(OSError):
    """A file could not be written for lack of space; the message (one line) says where, how much was needed and
    free, and that nothing was half-written. ``errno`` is the system's (ENOSPC, EDQUOT or EFBIG)."""

    def __init__(self, message: str, code: int = errno.ENOSPC):
        super().__init__(message)
        self.errno = code


def out_of_space_errno(error: BaseException) -> Optional[int]:
    """ENOSPC, EDQUOT or EFBIG when ``error`` (or an error it was raised from) means the disk, a quota or the file
    size limit is full; None otherwise. Writers that wrap the system's error keep it as the cause or context
    (torch, writing to a Python file) or in their message (safetensors' ``os error 28``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
            return error.errno
        for code in _OUT_OF_SPACE:
            if f'os error {code})' in str(error) or os.strerror(code) in str(error):
                return code
        error = error.__cause__ or error.__context__
    return None


def _megabytes(size: int) -> str:
    return f'{size / 2 ** 20:.1f} MB' if size >= 2 ** 20 else f'{size / 1024:.0f} kB'


def atomic_write(path: PathLike, write: Callable[[str], Any], size: Optional[Callable[[], int]] = None) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The folder must exist (FileNotFoundError naming it otherwise). The file gets the usual permissions of a new
    file; if ``write`` fails, the temporary file is removed and ``path`` is untouched. A write that fails for lack
    of space (full disk, quota, file size limit) raises :class:`OutOfSpaceError`, whose message names the file, the
    space it needs (``size()`` bytes, asked only then; else at least what was written) and the space free.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f'output folder does not exist: {path.parent} (create it first)')
    existed, tmp = path.exists(), None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions of a new file
        os.replace(tmp, path)
    except Exception as e:
        code = out_of_space_errno(e)
        if code is None:
            raise
        written = 0
        if tmp is not None and os.path.exists(tmp):
            written = os.path.getsize(tmp)
            os.unlink(tmp)  # before measuring what is free
        needed = f'about {_megabytes(size())}' if size is not None else f'more than {_megabytes(written)}'
        kept = 'keeps its previous contents' if existed else 'was not created'
        raise OutOfSpaceError(f'{_OUT_OF_SPACE[code]} while writing {path}: it needs {needed} and '
                              f'{_megabytes(shutil.disk_usage(path.parent).free)} are free there; nothing was '
                              f'half-written ({path.name} {kept})', code) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


class _CountingSink(io.RawIOBase):
    """A writable stream that keeps nothing and counts the bytes written to it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)


def serialized_size(obj: Any) -> int:
    """Bytes ``torch.save(obj)`` writes, measured without writing them anywhere."""
    sink = _CountingSink()
    torch.save(obj, sink)
    return sink.count


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    def save(tmp: str) -> None:
        # through a Python file, so that a failed write keeps the system's error (errno) as the context of torch's
        with open(tmp, 'wb') as f:
            torch.save(obj, f)

    return atomic_write(path, save, size=lambda: serialized_size(obj))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write a text file (JSON, JSON lines, Markdown) atomically."""
    data = text.encode('utf-8')
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), size=lambda: len(data))


def atomic_save_image(image: Any, path: PathLike) -> Path:
    """Save a PIL image atomically, in the format its suffix names (``.png``, ``.jpg`` ...)."""
    from PIL import Image
    suffix = Path(path).suffix.lower()
    image_format = Image.registered_extensions().get(suffix)
    if image_format is None:
        raise ValueError(f'{path}: {suffix or "no suffix"} is not an image format PIL writes (e.g. .png, .jpg)')
    return atomic_write(path, lambda tmp: image.save(tmp, format=image_format))


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: PathLike,
                     metadata: Optional[Dict[str, str]] = None) -> Path:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    # the tensors' bytes and a header of their names and shapes
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata),
                        size=lambda: sum(t.nbytes for t in tensors.values()) + 100 * len(tensors))
