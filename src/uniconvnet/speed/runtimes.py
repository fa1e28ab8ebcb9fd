"""The runtimes a model is timed in, and how each model gets there.

=============== =========================================================================================
``eager``        PyTorch, float32
``eager_bf16``   PyTorch under ``torch.autocast(dtype=torch.bfloat16)``
``onnxruntime``  onnxruntime's CPU execution provider on an ONNX graph
``openvino``     OpenVINO's CPU plugin at its default precision (bfloat16 on CPUs with AMX or AVX512-BF16)
``openvino_f32`` the same with ``INFERENCE_PRECISION_HINT=f32``
=============== =========================================================================================

Every runtime uses the same number of threads (onnxruntime ``intra_op_num_threads``, OpenVINO
``INFERENCE_NUM_THREADS``, PyTorch ``torch.set_num_threads`` inside :func:`uniconvnet.host.torch_threads`), one stream, and the
latency hint. UniConvNet reaches the deployment runtimes through :func:`uniconvnet.export.export_model` (the graph
this library makes for each runtime); any other model the way a new user exports it: ``torch.onnx.export`` with
ONNX opset 17 and a dynamic batch (:data:`PEER_ONNX_OPSET`), and for OpenVINO the IR converted from that ONNX file
(float32 weights, as ours). Models are expected reparameterized (``timm.utils.reparameterize_model``) first.

Sessions are opened by :func:`deployed` and released in reverse order of opening. OpenVINO's CPU plugin (2025.x)
installs an alternate signal stack of its own for every compiled model and puts back the one it found when the
model is released: released in any other order, a freed stack stays installed, and the next signal the process
handles (for example SIGCHLD from a DataLoader worker) kills it with a segmentation fault.
"""
import contextlib
import importlib.util
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..export import export_model

__all__ = ['DEPLOYMENT_RUNTIMES', 'PEER_ONNX_OPSET', 'RUNTIMES', 'Exporter', 'Runtime', 'check_runtimes', 'deployed',
           'usable_runtimes']

PEER_ONNX_OPSET = 17
Session = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class Runtime:
    """One way of running a model: its name in reports and on the command line, and what it needs."""
    name: str
    title: str  # for table headings and plots
    short: str  # for table cells
    format: Optional[str] = None  # the export it runs (``'onnx'``, ``'openvino'``); None: the PyTorch module
    package: Optional[str] = None  # the Python package it needs
    options: Tuple[Tuple[str, Any], ...] = ()  # extra OpenVINO compile options

    @property
    def deployment(self) -> bool:
        """Runs an exported graph on the CPU (not PyTorch)."""
        return self.format is not None

    def why_not(self) -> Optional[str]:
        """Why this runtime cannot run here (its package is missing), or None."""
        # found, not imported: importing openvino loads the TBB library it ships, which numba would then pick
        # as the threading layer of our DCN kernels, slowing the eager columns measured next (see frontier._versions)
        if self.package is None or importlib.util.find_spec(self.package) is not None:
            return None
        return f'{self.name}: {self.package} is not installed (pip install {self.package})'


_RUNTIMES = (
    Runtime('eager', 'eager fp32', 'eager'),
    Runtime('eager_bf16', 'eager bf16 autocast', 'eager bf16'),
    Runtime('onnxruntime', 'onnxruntime', 'ORT', 'onnx', 'onnxruntime'),
    Runtime('openvino', 'OpenVINO (default precision)', 'OV', 'openvino', 'openvino'),
    Runtime('openvino_f32', 'OpenVINO f32', 'OV f32', 'openvino', 'openvino', (('INFERENCE_PRECISION_HINT', 'f32'),)),
)
RUNTIME_BY_NAME: Dict[str, Runtime] = {r.name: r for r in _RUNTIMES}
RUNTIMES: Tuple[str, ...] = tuple(RUNTIME_BY_NAME)
DEPLOYMENT_RUNTIMES: Tuple[str, ...] = tuple(r.name for r in _RUNTIMES if r.deployment)


def check_runtimes(names: Sequence[str], choices: Sequence[str] = RUNTIMES) -> List[str]:
    """``names`` if every one is known, else ValueError naming the unknown ones and the choices."""
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise ValueError(f'unknown runtime(s) {", ".join(unknown)}; choose from: {", ".join(choices)}')
    if not names:
        raise ValueError(f'no runtime to measure; choose from: {", ".join(choices)}')
    return list(dict.fromkeys(names))


def usable_runtimes(names: Sequence[str], device: str, log: Callable[[str], None]) -> List[str]:
    """The runtimes among ``names`` that can run here; each one skipped is logged with the reason."""
    usable = []
    for name in check_runtimes(names):
        runtime = RUNTIME_BY_NAME[name]
        reason = runtime.why_not()
        if runtime.deployment and device != 'cpu':
            reason = f'{name}: a CPU runtime, skipped on {device}'
        if reason:
            log(f'{reason}: skipping its latency')
        else:
            usable.append(name)
    return usable


def _file_stem(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9_]', '_', name)


class Exporter:
    """Exports each model once per format into ``folder`` (both OpenVINO runtimes read the same IR)."""

    def __init__(self, folder: Path, image_size: int):
        self.folder = Path(folder)
        self.image_size = image_size
        self._done: Dict[Tuple[str, str], Path] = {}

    def __call__(self, name: str, model: nn.Module, ours: bool, format: str) -> Path:
        key = (name, format)
        if key not in self._done:
            suffix = '.xml' if format == 'openvino' else '.onnx'
            path = self.folder / f'{_file_stem(name)}{suffix}'
            size = (self.image_size, self.image_size)
            self._done[key] = (export_model(model, path, format, size) if ours
                               else _export_as_a_user_does(model, path, format, self.image_size))
        return self._done[key]


def _export_as_a_user_does(model: nn.Module, path: Path, format: str, image_size: int) -> Path:
    """ONNX from ``torch.onnx.export`` (opset 17, dynamic batch); OpenVINO IR converted from that ONNX file."""
    onnx_path = path.with_suffix('.onnx')
    if not onnx_path.is_file():
        example = torch.randn(1, getattr(model, 'in_chans', 3), image_size, image_size)
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on shape checks and the exporter's on its own future: not the user's model's fault
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export',
                                    category=DeprecationWarning)
            torch.onnx.export(model.eval(), (example,), str(onnx_path), dynamo=False, opset_version=PEER_ONNX_OPSET,
                              input_names=['images'], output_names=['logits'],
                              dynamic_axes={'images': {0: 'batch'}, 'logits': {0: 'batch'}})
    if format == 'onnx':
        return onnx_path
    import openvino as ov
    ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


class _Session:
    """A callable on a batch of images that holds its runtime objects until :meth:`close` drops them."""

    def __init__(self, run: Callable[[Any], Any], *objects: Any, numpy: bool = True):
        self._run: Optional[Callable[[Any], Any]] = run
        self._objects = objects
        self._numpy = numpy

    def __call__(self, images: torch.Tensor) -> Any:
        if self._run is None:
            raise RuntimeError('this runtime session was released')
        return self._run(images.numpy() if self._numpy else images)

    def close(self) -> None:
        self._run, self._objects = None, ()


def _eager_session(model: nn.Module, bf16: bool, device: str) -> _Session:
    def run(images: torch.Tensor) -> Any:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            return model(images.to(device))
    return _Session(run, numpy=False)


def _onnxruntime_session(path: Path, threads: int) -> _Session:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no spinning: with the models interleaved, one session's pool spinning after its run holds the cores from the
    # next model (measured in a loop of 12: the first call of each visit 1.5-3x slower with onnxruntime's default)
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return _Session(lambda images: session.run(None, {name: images}), session)


def _openvino_session(core: Any, path: Path, threads: int, options: Mapping[str, Any]) -> Tuple[_Session, str]:
    config = {'INFERENCE_NUM_THREADS': threads, 'NUM_STREAMS': 1, 'PERFORMANCE_HINT': 'LATENCY', **options}
    compiled = core.compile_model(str(path), 'CPU', config)
    request = compiled.create_infer_request()
    hint = compiled.get_property('INFERENCE_PRECISION_HINT')  # an openvino Type: its name is 'bf16', 'f32', ...
    precision = hint.get_type_name() if hasattr(hint, 'get_type_name') else str(hint)
    return _Session(lambda images: request.infer({0: images}), compiled, request), precision


@contextlib.contextmanager
def deployed(models: Mapping[str, Tuple[nn.Module, bool]], runtime: str, exporter: Exporter, threads: int,
             device: str = 'cpu', log: Callable[[str], None] = lambda message: None,
             ) -> Iterator[Tuple[Dict[str, Session], Dict[str, str], Dict[str, str]]]:
    """Sessions of every model in ``runtime``: ``(sessions, errors, precisions)``.

    ``models`` maps a name to ``(module, ours)``: ``ours`` models are exported with :func:`export_model`, the
    others as a user does. A model that fails to export or open gets an entry in ``errors`` (the message) and no
    session; the others go on. ``precisions`` is OpenVINO's inference precision per model. On exit every session
    is released, the last opened first.
    """
    spec = RUNTIME_BY_NAME[runtime]
    sessions: Dict[str, _Session] = {}
    errors: Dict[str, str] = {}
    precisions: Dict[str, str] = {}
    core = None
    if spec.format == 'openvino':
        import openvino as ov
        core = ov.Core()
    try:
        for name, (model, ours) in models.items():
            try:
                if not spec.deployment:
                    sessions[name] = _eager_session(model, runtime == 'eager_bf16', device)
                    continue
                log(f'{runtime}: exporting and opening {name}')
                path = exporter(name, model, ours, spec.format)
                if spec.format == 'onnx':
                    sessions[name] = _onnxruntime_session(path, threads)
                else:
                    sessions[name], precisions[name] = _openvino_session(core, path, threads, dict(spec.options))
            except Exception as e:  # one model's failure is reported, the run goes on
                errors[name] = f'{type(e).__name__}: {e}'.strip().splitlines()[0][:300]
                log(f'{runtime}: {name} not measured: {errors[name]}')
        yield dict(sessions), errors, precisions
    finally:
        for session in reversed(list(sessions.values())):
            session.close()
